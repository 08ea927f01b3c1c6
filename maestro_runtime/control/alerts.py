"""Webhook alerts: JSON events POSTed to MAESTRO_ALERT_WEBHOOK (httpx).

Delivery runs on one worker thread fed by a bounded queue, so a slow or dead
webhook never delays supervision: ``emit`` only enqueues (and drops, counting,
when the queue is full). Each event is rate-limited per service and event name.
With MAESTRO_ALERT_SECRET set, ``X-Maestro-Signature: sha256=<hex>`` is the
HMAC-SHA256 of the exact body bytes, as GitHub's webhooks do.

The event API is generic: ``emit(event, service, detail, **fields)``; the
events today are gave_up, exited, unhealthy, recovered, build_failed (and
task_finished, for tasks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("maestro.alerts")
VERSION = 1
SIGNATURE_HEADER = "X-Maestro-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header or "")


def event_body(event: str, service: str, detail: str, now: float, fields: dict[str, Any]) -> bytes:
    payload = {
        "version": VERSION, "event": event, "service": service, "detail": detail,
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "host": socket.gethostname(), **fields,
    }
    return json.dumps(payload, sort_keys=True).encode()


class RateLimit:
    """At most one event per (service, event) every ``interval`` seconds (pure apart from its memory)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last: dict[tuple[str, str], float] = {}

    def allow(self, service: str, event: str, now: float) -> bool:
        key = (service, event)
        if now - self.last.get(key, float("-inf")) < self.interval:
            return False
        self.last[key] = now
        return True


class Alerts:
    def __init__(self, url: str, secret: str = "", *, rate_interval: float = 60.0, timeout: float = 5.0,
                 retries: int = 3, queue_size: int = 256, post: Callable[[bytes, dict[str, str]], int] | None = None):
        self.url, self.secret, self.timeout, self.retries = url, secret, timeout, retries
        self.limit = RateLimit(rate_interval)
        self.queue: queue.Queue[tuple[bytes, dict[str, str]] | None] = queue.Queue(queue_size)
        self.dropped = 0
        self.sent = 0
        self._post = post or self._httpx_post
        self._client: Any = None
        self.thread = threading.Thread(target=self._work, name="maestro-alerts", daemon=True)
        if url:
            self.thread.start()

    def emit(self, event: str, service: str, detail: str = "", now: float | None = None, **fields: Any) -> bool:
        """Queue one event; False when rate-limited, dropped or no webhook is set. Never blocks."""
        now = time.time() if now is None else now
        if not self.url or not self.limit.allow(service, event, now):
            return False
        body = event_body(event, service, detail, now, fields)
        headers = {"Content-Type": "application/json", "User-Agent": "maestro-runtime", "X-Maestro-Event": event}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            self.queue.put_nowait((body, headers))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, wait: float = 2.0) -> None:
        if self.thread.is_alive():
            try:
                self.queue.put((b"", {}), timeout=wait)  # a sentinel after what is queued
            except queue.Full:
                return
            self.thread.join(wait)

    def _httpx_post(self, body: bytes, headers: dict[str, str]) -> int:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client.post(self.url, content=body, headers=headers).status_code

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None or not item[0]:
                return
            body, headers = item
            for attempt in range(self.retries + 1):
                try:
                    status = self._post(body, headers)
                    if status < 500:
                        self.sent += 1
                        if status >= 400:
                            log.warning("alert webhook refused an event: HTTP %s", status)
                        break
                    why = f"HTTP {status}"
                except Exception as exc:
                    why = type(exc).__name__
                if attempt == self.retries:
                    log.warning("alert webhook: event dropped after %d attempts (%s)", attempt + 1, why)
                else:
                    time.sleep(min(30.0, 0.5 * 2 ** attempt))
