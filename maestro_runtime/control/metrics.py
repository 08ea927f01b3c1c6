"""Prometheus exposition on MAESTRO_METRICS_ADDR (prometheus_client), off by default.

A custom collector reads the controller's latest snapshot at scrape time, so a
scrape costs nothing between scrapes and shows the numbers list-services shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

STATES = ("RUNNING", "STARTING", "BACKOFF", "STOPPED", "EXITED", "FATAL", "FAILED", "NOT_LOADED", "unknown")
HEALTHS = ("starting", "healthy", "unhealthy", "none")
log = logging.getLogger("maestro")


class SnapshotCollector(Collector):
    """``snapshot()`` returns {"services": [row, ...], "version": str} with the list-services --json rows."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        snap = self.snapshot()
        rows = snap.get("services", [])
        info = InfoMetricFamily("maestro_runtime", "maestro-runtime build and controller information")
        info.add_metric([], {"version": str(snap.get("version", "")), "services": str(len(rows))})
        yield info
        up = GaugeMetricFamily("maestro_service_up", "1 when the service's process runs", labels=["service"])
        state = GaugeMetricFamily("maestro_service_state", "1 for the service's current state",
                                  labels=["service", "state"])
        health = GaugeMetricFamily("maestro_service_health", "1 for the service's current health",
                                   labels=["service", "health"])
        restarts = CounterMetricFamily("maestro_service_restarts", "restarts by the controller, ever",
                                       labels=["service"])
        cpu = CounterMetricFamily("maestro_service_cpu_seconds", "CPU time of the live process tree",
                                  labels=["service"])
        rss = GaugeMetricFamily("maestro_service_memory_rss_bytes", "resident memory of the process tree",
                                labels=["service"])
        build = GaugeMetricFamily("maestro_service_last_build_duration_seconds",
                                  "duration of the last dependency build", labels=["service"])
        for row in rows:
            name = row["name"]
            up.add_metric([name], 1.0 if row.get("status") in ("RUNNING", "STARTING") else 0.0)
            for value in STATES:
                state.add_metric([name, value], 1.0 if row.get("status") == value else 0.0)
            current = row.get("health") or "none"
            for value in HEALTHS:
                health.add_metric([name, value], 1.0 if current == value else 0.0)
            restarts.add_metric([name], float(row.get("restarts") or 0))
            cpu.add_metric([name], float(row.get("cpu_seconds") or 0.0))
            rss.add_metric([name], float(row.get("memory_rss") or 0))
            if row.get("build_seconds") is not None:
                build.add_metric([name], float(row["build_seconds"]))
        yield from (up, state, health, restarts, cpu, rss, build)


# prometheus_client's own server starts a thread per connection and never times one out: a
# service (or anyone who reaches the address) holding idle connections grew the controller a
# thread each, until the container's pids limit stopped every fork. Here a connection has
# TIMEOUT seconds to be served, and at most MAX_CLIENTS are served at once (more are closed).
TIMEOUT = 10.0
MAX_CLIENTS = 8


def serve(bind: tuple[str, int], snapshot: Callable[[], dict[str, Any]]) -> Any:
    """Start the exposition server on its own daemon thread; returns the server."""
    import socket
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    slots = threading.BoundedSemaphore(MAX_CLIENTS)

    class Handler(WSGIRequestHandler):
        timeout = TIMEOUT  # socketserver sets it on the connection: a silent client is dropped

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per scrape

    class Server(ThreadingWSGIServer):
        request_queue_size = 64  # a burst of connections is refused at once, not left to SYN retries

        def process_request(self, request: Any, client_address: Any) -> None:
            if not slots.acquire(blocking=False):
                self.shutdown_request(request)  # busy: this client is refused, no thread started
                return
            super().process_request(request, client_address)

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out or went away: socketserver would print a traceback

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                slots.release()

    family, _, _, _, address = socket.getaddrinfo(bind[0] or None, bind[1], type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    Server.address_family = family  # an IPv6 address such as [::] works as with start_http_server
    server = make_server(address[0], bind[1], make_wsgi_app(registry), Server, handler_class=Handler)
    threading.Thread(target=server.serve_forever, name="maestro-metrics", daemon=True).start()
    return server


def start(ops, snapshot: Callable[[], dict[str, Any]]) -> None:
    """Serve on MAESTRO_METRICS_ADDR; one error line when the address cannot be had."""
    try:
        serve(ops.metrics_bind, snapshot)
        log.info("metrics on http://%s:%d/metrics", *ops.metrics_bind)
    except OSError as exc:
        log.error("metrics: cannot listen on %s: %s", ops.metrics_addr, exc)


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maestro-runtime")
    except PackageNotFoundError:
        return "unknown"
