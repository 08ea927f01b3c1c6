"""``python -m maestro_runtime.control``: the controller (supervisord's ``maestro-controller``).

The boot priority is set here, before the controller's modules are imported, so that
their import is part of what yields to the services starting up (bootnice.py).
"""

from maestro_runtime.engine import bootnice
from maestro_runtime.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    niced = bootnice.lower_while_booting(bootnice.boot_marker(settings.runtime_dir))
    from maestro_runtime.control.controller import main as run

    run(settings, niced=niced)


if __name__ == "__main__":
    main()
