"""deploy: one service (or task) from flags or answers, applied at once."""


from __future__ import annotations

import time

import click

from maestro_runtime.cli.common import (
    apply_changes,
    command_settings,
    ends_its_children,
    one_line_errors,
)
from maestro_runtime.engine.supervisord import Supervisor
from maestro_runtime.settings import Settings
from maestro_runtime.spec.naming import env_pair

# ---------------------------------------------------------------- deploy



@click.command("deploy")
@click.option("--repo", help="Source: folder, file:// URL, git URL or archive URL.")
@click.option("--port", help="Port (0 or empty: pick a free one).")
@click.option("--ref", help="Branch, tag or commit (default: the repository's default branch).")
@click.option("--name", help="Service name (default: from the source).")
@click.option("--user", help="UNIX user (default svc_<name>).")
@click.option("--cmd", help="Start command (default: detected).")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Environment for the service.")
@click.option("--yes", "-y", is_flag=True, help="No questions: take the flags and defaults as they are.")
@click.option("--wait", default=20.0, show_default=True, help="Seconds to wait for the service to run.")
@click.option("--allow-system-path", is_flag=True,
              help="Allow a local --repo under /etc, /root, /proc, /run, the runtime's state... (refused by default).")
@click.option("--task", "as_task", is_flag=True, help="A one-shot task (kind: task): runs once, never restarted.")
@click.option("--schedule", help="Cron expression for a task, e.g. '*/5 * * * *'.")
@click.option("--depends-on", "depends_on", multiple=True, metavar="NAME[:started|healthy|completed]",
              help="Start only once NAME meets the condition (default started).")
@ends_its_children
@one_line_errors
def deploy(yes: bool, wait: float, env_pairs: tuple[str, ...], allow_system_path: bool, as_task: bool,
           schedule: str | None, depends_on: tuple[str, ...], **given: str | None) -> None:
    """Deploy one service into the running system (asks for what the flags do not say)."""
    from dataclasses import replace

    from maestro_runtime.ops.provision import Assignment, Provisioner
    from maestro_runtime.spec import SpecError, make_spec, parse_env
    from maestro_runtime.spec.naming import default_user, unique_id

    settings = command_settings()
    fields = dict(given)
    if not yes:
        fields = _ask(fields)
    try:
        env = parse_env("deploy", dict(_pair(p) for p in env_pairs))
        spec = replace(make_spec("deploy", "deploy", fields), env=env, allow_system_path=allow_system_path)
        from maestro_runtime.spec.tasks import task_fields

        spec = replace(spec, **task_fields("deploy", {"kind": "task" if as_task else None, "schedule": schedule,
                                                      "depends_on": ",".join(depends_on)}))
    except SpecError as exc:
        raise click.ClickException(str(exc)) from exc
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        existing = {r.id: r for r in provisioner.store.all()}
        unknown = sorted(set(spec.depends_on) - set(existing) - {r.name for r in existing.values()})
        if unknown:
            raise click.ClickException(f"deploy: depends_on: unknown service {unknown[0]!r} (see list-services)")
        base = spec.base_name
        program_id = base if base in existing and existing[base].kind == "deploy" else unique_id(base, existing)
        previous = existing.get(program_id)
        user = spec.user or (previous.user if previous else None)
        if not yes and not click.confirm(
            f"Deploy {program_id} from {spec.repo} (ref {spec.ref or 'default branch'})"
            f" as {user or default_user(program_id)}"
            f" on port {spec.port or 'auto'}?", default=True,
        ):
            raise click.Abort()
        spec = replace(spec, origin=f"deploy {program_id}")
        outcome = provisioner.provision(Assignment(spec, program_id, user or default_user(program_id)), refetch=True)
        applied = apply_changes(provisioner)
    if not outcome.ok:
        raise click.ClickException(headline(outcome.error or "deploy failed"))
    record = outcome.record
    assert record is not None
    if program_id != base and base in existing:  # the name was taken: say so, never a silent copy
        taken = existing[base]
        click.echo(f"note: {base} comes from {taken.origin} (change it there and run deploy-from-env); "
                   f"this deploy is a new service, {program_id}", err=True)
    if record.role == "task":
        when = f"on schedule {record.schedule!r}" if record.schedule else "now (see list-services --kind task)"
        click.echo(f"deployed task {record.id}: runs {when}, user {record.user}, command {record.command!r}"
                   + ("" if applied else " (supervisord not running)"))
        return
    status = _wait_running(settings, record.id, wait) if applied else "not started (supervisord not running)"
    if status == "STOPPED" and record.depends_on:  # not started by supervisord: the task runner starts it
        status = "waiting for " + ", ".join(f"{name} {cond}" for name, cond in record.depends_on.items())
    click.echo(f"deployed {record.id}: {status}, user {record.user}, port {record.port}, "
               f"command {record.command!r} ({record.command_reason})")
    if status in ("EXITED", "FATAL", "BACKOFF"):  # it ended at once: not a success for a script's `&&`
        raise click.ClickException(f"deploy {record.id}: the service ended right after it started "
                                   f"({status}); `maestro logs {record.id}` shows its output")
    click.echo(f"url: http://localhost:{record.port}/")


def headline(error: str) -> str:
    """The provisioner has logged the whole error just above, a build's last lines included:
    the closing ``Error:`` line repeats only its first line."""
    first, _, rest = error.partition("\n")
    return f"{first.removesuffix(', last lines:')} (its last lines are above)" if rest.strip() else first


def _pair(text: str) -> tuple[str, str]:
    try:
        return env_pair(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--env") from exc


def _ask(fields: dict[str, str | None]) -> dict[str, str | None]:
    """Prompt for each field the flags left out, with the default shown."""
    from maestro_runtime.spec.naming import default_user, name_from_repo, sanitize_name

    out = dict(fields)
    if not out.get("repo"):
        out["repo"] = click.prompt("Source (folder, file://, git or archive URL)")
    repo = out["repo"] or ""
    prompts = (
        ("port", "Port (0 = auto)", "0"),
        # Empty, not "main": the flags' and the spec's default is the repository's default branch.
        ("ref", "Git ref (empty = the repository's default branch)", ""),
        ("name", "Service name", name_from_repo(repo) or "service"),
        ("user", "UNIX user", None),
        ("cmd", "Start command (empty = detect)", ""),
    )
    for key, text, default in prompts:
        if out.get(key) is None:
            if key == "user":
                default = default_user(sanitize_name(out.get("name") or "") or "service")
            out[key] = click.prompt(text, default=default, show_default=bool(default))
    return out


def _wait_running(settings: Settings, program_id: str, timeout: float) -> str:
    supervisor = Supervisor(settings.supervisor_socket)
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            info = supervisor.call("supervisor.getProcessInfo", program_id)
            state = info["statename"]
            if state == "RUNNING" and time.time() - info["start"] < settings.startsecs:
                state = "STARTING"  # programs run with startsecs=0: started once up MAESTRO_STARTSECS
        except Exception:  # not added yet
            state = "unknown"
        if state in ("RUNNING", "FATAL", "STOPPED", "EXITED"):
            break
        time.sleep(0.2)
    return state


