"""A stdlib HTTP server on 127.0.0.1, served from a thread of the test process: the small fakes
the tests put beside real processes (a JWKS host, an issuer's event stream, a replica behind
HAProxy, a health endpoint)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that closes abruptly (HAProxy's health checks do) is not an error here


class LocalServer:
    """``handler`` on 127.0.0.1:``port`` (0: a free one the system picks), one thread per
    connection (daemon threads: a handler still streaming never holds up the end of a test).
    ``start()`` and ``stop()``, or ``with``. ``quiet``: connections closed abruptly by the client
    print nothing."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, port: int = 0, quiet: bool = False
    ) -> None:
        server_class = _QuietServer if quiet else ThreadingHTTPServer
        self.httpd = server_class(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the listening socket (safe to call twice, or unstarted)."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
