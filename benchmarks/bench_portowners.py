"""What one look at a port's holders costs while many sockets are open (the controller's guard_ports
looks every tick, 0.5-1 s, while any service is down): the kernel's filtered sock_diag query
(``portowners.listeners``) against the /proc/net/tcp{,6} read it falls back to, measured in the
same run, alternating. SOCKETS loopback sockets (half as many connections) stand for a busy or
hostile service's.

    python3 -m benchmarks.bench_portowners [--sockets 12000] [--runs 15]
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import time
from pathlib import Path

from maestro_runtime.control import portowners


def _proc_read(ports: set[int]) -> dict[int, set[int]]:
    held: dict[int, set[int]] = {}
    for name in ("tcp", "tcp6"):
        with (Path("/proc/net") / name).open("rb") as table:
            text = table.read(portowners.READ_LIMIT).decode("ascii", "replace")
        for port, uids in portowners.listener_uids(text, ports).items():
            held.setdefault(port, set()).update(uids)
    return held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=12000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    held = []
    for _ in range(args.sockets // 2):
        client = socket.socket()
        client.connect(server.getsockname())
        held += [client, server.accept()[0]]
    ports = {20555}
    proc, diag = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        _proc_read(ports)
        proc.append(time.perf_counter() - start)
        start = time.perf_counter()
        portowners.listeners(ports)
        diag.append(time.perf_counter() - start)
    ms = lambda xs: f"median {statistics.median(xs) * 1e3:.2f} ms (range {min(xs) * 1e3:.2f}-{max(xs) * 1e3:.2f})"  # noqa: E731
    print(f"{len(held)} sockets: /proc/net/tcp read {ms(proc)}; sock_diag {ms(diag)}; "
          f"ratio {statistics.median(proc) / statistics.median(diag):.1f}x")
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
