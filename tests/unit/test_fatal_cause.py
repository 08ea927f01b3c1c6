"""A service that gives up names the exception that killed it, not its server's last word (trial 15).

digitalocean/sample-django raises ``Exception("DATABASE_URL environment variable not defined")``
in its settings; gunicorn then logs "Reason: Worker failed to boot." on stderr, which became the
whole FATAL error: the user saw nothing of DATABASE_URL.
"""

from maestro_runtime.ops.logs import known_cause, last_error

GUNICORN = [
    "t err [2026-11-30 11:10:27 +0000] [466] [ERROR] Exception in worker process",
    "t err Traceback (most recent call last):",
    't err   File "/app/mysite/settings.py", line 92, in <module>',
    't err     raise Exception("DATABASE_URL environment variable not defined")',
    "t err Exception: DATABASE_URL environment variable not defined",
    "t err [2026-11-30 11:10:27 +0000] [466] [INFO] Worker exiting (pid: 466)",
    "t err [2026-11-30 11:10:27 +0000] [460] [INFO] Shutting down: Master",
    "t err [2026-11-30 11:10:27 +0000] [460] [INFO] Reason: Worker failed to boot.",
]


def test_the_exception_before_the_servers_last_words():
    assert last_error(GUNICORN) == "Exception: DATABASE_URL environment variable not defined"
    dotted = ["t err django.core.exceptions.ImproperlyConfigured: Set the SECRET_KEY environment variable",
              "t err Reason: Worker failed to boot."]
    assert last_error(dotted) == dotted[0][6:]
    # no exception: still the last stderr line, and stdout never counts as one
    assert last_error(["t err starting", "t out Exception: in a page it served", "t err bye"]) == "bye"


def test_a_missing_variable_the_app_names_is_a_known_cause():
    for line in ("Exception: DATABASE_URL environment variable not defined",
                 "RuntimeError: REDIS_URL env var is missing",
                 "django.core.exceptions.ImproperlyConfigured: Set the SECRET_KEY environment variable"):
        name = next(w for w in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") if w in line)
        assert known_cause(line).startswith(f"the app reads {name} from its environment: set it"), line
    assert known_cause("Exception: something else broke") is None


def test_a_refused_probe_says_nothing_listens_on_port():
    """render-examples/hapi-quick-start listens on a fixed 3000: RUNNING, and its health said only
    "Connect call failed ('127.0.0.1', N)". A real probe of a loopback port nobody listens on."""
    import asyncio
    import socket

    from maestro_runtime.control.probes import probe_http, probe_tcp

    with socket.socket() as sock:  # a free port, closed again: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for probe in (probe_tcp(port, 2.0), probe_http(port, "/", None, 2.0)):
        result = asyncio.run(probe)
        assert not result.ok
        assert result.detail == (f"port {port}: connection refused, nothing listens there "
                                 "(does the app listen on $PORT?)")
