"""The containers' health check: ``GET PATH`` on 127.0.0.1:PORT, status 0 when it answers 200.

    python3 -I -S /opt/keyhouse/healthcheck.py [PORT [PATH]]

PORT defaults to $HEALTHCHECK_PORT (else 8000), PATH to /readyz. Docker runs it every 2 s in
every container of the compose stack, so it is as cheap as a Python check gets: no site
packages (-S), no environment (-I), no urllib (a third of the CPU of
``python3 -c 'import urllib.request; ...'``, which it replaced), a raw HTTP/1.0 request on a
socket. Standard library only; one line on stderr when it fails.
"""

from __future__ import annotations

import os
import socket
import sys

TIMEOUT_S = 2.0


def status_of(port: int, path: str, *, timeout: float = TIMEOUT_S) -> int:
    """The HTTP status the server on 127.0.0.1:``port`` answers ``GET path`` with."""
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            head += chunk
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {head[:40]!r}")
    return int(parts[1])


def main(argv: list[str]) -> int:
    try:
        port = int(argv[1]) if len(argv) > 1 else int(os.environ.get("HEALTHCHECK_PORT", "8000"))
        path = argv[2] if len(argv) > 2 else "/readyz"
        status = status_of(port, path)
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: GET {path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
