"""``remove-service``'s cleanup, once the service's programs have stopped.

In order: what escaped the stop (ops/leftovers.py) is ended while the account is still the
service's; cgroups and allow-host additions go; the files with ``--purge``; the account with
``--delete-user`` (only one the runtime made, used by no other service, with nothing left
running as it). A deleted account's uid may be the next account's (useradd takes the id below
the lowest in use), so its kept folders become root's: the next service never owns them.
Whatever cannot be done is one warning naming it, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from maestro_runtime.ops import accounts, leftovers

if TYPE_CHECKING:
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.state.records import ServiceRecord

log = logging.getLogger("maestro")


def cleanup(provisioner: Provisioner, record: ServiceRecord, *, purge: bool, delete_user: bool) -> None:
    registry, prefix = provisioner.accounts, provisioner.settings.accounts_prefix
    alone = leftovers.sole_account(registry, provisioner.store.all(), record.user, record.id)
    ids = accounts.ids(record.user, prefix) if alone else None
    left = leftovers.end_all(*ids) if ids and ids[0] > 0 and not provisioner.identity_degraded else []
    provisioner.policy.forget(record)
    if purge and record.directory:
        _purge(Path(record.directory))
    deletable = delete_user and registry.created(record.user)
    if delete_user and not deletable:
        log.warning("user %s was not created by maestro-runtime: kept", record.user)
    elif delete_user and left:
        log.warning("user %s kept: processes %s still run as it", record.user, " ".join(map(str, left)))
    if deletable and alone and not left:
        accounts.delete_account(record.user, prefix)
        registry.forget(record.user)
        if purge and record.home:
            _purge(Path(record.home))
        for kept in [] if purge else [p for p in (record.directory, record.home) if p]:
            _seal(Path(kept))
    elif purge and record.home:
        # The account stays (maybe shared): remove only this service's per-project dirs.
        for sub in (".maestro", ".cache"):
            _purge(Path(record.home) / sub, under=Path(record.home).parent)


def _seal(path: Path) -> None:
    try:
        accounts.seal(path)
    except (accounts.AccountError, OSError) as exc:
        log.warning("could not give %s to root: %s", path, exc)


def _purge(path: Path, under: Path | None = None) -> None:
    """--purge after the service is gone: what cannot be removed is named, never a traceback."""
    try:
        accounts.purge_tree(path, under)
    except (accounts.AccountError, OSError) as exc:
        log.warning("could not delete %s: %s", path, exc)
