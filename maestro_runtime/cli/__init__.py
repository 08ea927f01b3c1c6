"""Operator commands (click): parse, call, print. Exit codes: 0 ok, 1 user error, 2 usage.

``common`` (what every command shares), ``services`` (list-services, remove-service, deploy-from-env,
allow-host, export), ``deployment`` (deploy), ``lifecycle`` (start, stop, restart, logs); tasks add run and cancel.
"""

from __future__ import annotations

import click

from maestro_runtime.cli.deployment import deploy
from maestro_runtime.cli.services import allow_host, deploy_from_env, export, list_services, remove_service
from maestro_runtime.tasks.cli import cancel_task, run_task

__all__ = ["deploy", "deploy_from_env", "list_services", "maestro", "remove_service"]


# ---------------------------------------------------------------- the group


def _ops_commands() -> tuple[click.Command, ...]:
    from maestro_runtime.cli.lifecycle import COMMANDS  # start, stop, restart, logs

    return COMMANDS


class _Maestro(click.Group):
    """The ``maestro`` group; ``sandbox`` is loaded only when used (it is the heaviest import)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "sandbox"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "sandbox":
            from maestro_runtime.sandbox.cli import main as sandbox_main

            return sandbox_main
        return super().get_command(ctx, name)


@click.group(cls=_Maestro)
@click.version_option(package_name="maestro-runtime")
def maestro() -> None:
    """maestro-runtime: many projects in one container, each as its own user under supervisord."""


for _command in (list_services, remove_service, deploy_from_env, deploy, allow_host, export):
    maestro.add_command(_command)
for _command in _ops_commands():
    maestro.add_command(_command)
maestro.add_command(remove_service, "remove-project")
maestro.add_command(run_task)  # one-shot tasks: maestro run / maestro cancel
maestro.add_command(cancel_task)
