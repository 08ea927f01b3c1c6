"""``maestro-sandbox [--workdir DIR] [--net deny|allow] [--allow-host HOST]... [--user U] -- CMD ARGS``.

Thin shell over :func:`maestro_runtime.sandbox.runner.run`: parse, run, exit with the
command's status (125 when the sandbox itself could not be set up).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from maestro_runtime.sandbox import netpolicy, runner
from maestro_runtime.sandbox.bwrap import SandboxConfig, SandboxError
from maestro_runtime.settings import load_or_exit
from maestro_runtime.spec.naming import env_pair

SETUP_FAILED = 125  # like env/docker: the wrapper failed, not the command


def _env_pair(value: str) -> tuple[str, str]:
    try:
        return env_pair(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--env") from exc


@click.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The sandbox config as the runtime wrote it (builds); default: read the environment.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Folder the command runs in; bound read-write (default: the current folder).")
@click.option("--net", type=click.Choice([netpolicy.DENY, netpolicy.ALLOW]), default=None,
              help="Network policy (default: MAESTRO_SANDBOX_NET_POLICY). 'allow' also needs the policy file.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST",
              help="Add a host, *.domain or either with :PORT (default ports 80 and 443) to the allowlist; repeatable.")
@click.option("--user", default=None, help="Project user to run as (required when run as root).")
@click.option("--uid", type=click.IntRange(min=0), default=None,
              help="Run as this uid (with --gid, --home) instead of looking --user up.")
@click.option("--gid", type=click.IntRange(min=0), default=None)
@click.option("--home", default=None, help="HOME of the command (with --uid).")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Pass one variable; repeatable.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(config_file: Path | None, workdir: Path, net: str | None, allow_hosts: tuple[str, ...], user: str | None,
         uid: int | None, gid: int | None, home: str | None, env_pairs: tuple[str, ...],
         command: tuple[str, ...]) -> None:
    """Run COMMAND in a bubblewrap sandbox as a project's user, with limits and a network policy."""
    logging.basicConfig(level=logging.INFO, format="maestro-sandbox: %(message)s", stream=sys.stderr)
    term = None
    if config_file is not None:
        try:
            config = SandboxConfig.from_json(config_file.read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise click.ClickException(f"cannot read the sandbox config {config_file}: {exc}") from exc
    else:
        settings = load_or_exit("maestro-sandbox")  # bad settings: exit 2
        config, term = SandboxConfig.from_settings(settings), settings.term
        for problem in config.problems:
            logging.getLogger("maestro.sandbox").warning("%s", problem)
    try:
        hosts = tuple(netpolicy.validate_host(h) for h in allow_hosts)
    except netpolicy.NetPolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-host") from exc
    if user is None:
        import os
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    request = runner.RunRequest(
        argv=command, user=user, workdir=workdir, net=net or config.net_policy, allow_hosts=hosts,
        env=dict(_env_pair(p) for p in env_pairs), uid=uid, gid=gid, home=home,
        label=user,  # the log format already says maestro-sandbox: name whose command this is
    )
    try:
        code = runner.run(config, request, term=term)
    except SandboxError as exc:
        click.echo(f"maestro-sandbox: {exc}", err=True)
        sys.exit(SETUP_FAILED)
    sys.exit(code)


if __name__ == "__main__":
    main()
