"""Running a Keyhouse ASGI app under uvicorn with the production options the README explains.

uvloop when installed, httptools with each response's head and body in one write
(``shared.http_protocol``), no access log unless asked (it costs throughput and would record
URLs), no ``Server`` header, and ``X-Forwarded-For`` ignored unless the operator names the
proxies allowed to set it: uvicorn's own default trusts it from 127.0.0.1, which lets anything
on the host pick the address the login throttle counts against. The app is given as an import
string of a factory so ``workers > 1`` works. Not HTTP framework code: ``shared`` still never
imports Starlette.
"""

from __future__ import annotations

FORWARDED_ALLOW_IPS_HELP = (
    "comma-separated addresses of the reverse proxies whose X-Forwarded-For/-Proto are honoured"
    " (default: none; '*' trusts every peer)"
)


def _best(module: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return "auto"
    return module


def serve(
    factory: str,
    *,
    host: str,
    port: int,
    workers: int,
    access_log: bool,
    log_level: str,
    ssl_keyfile: str | None = None,
    ssl_certfile: str | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    import uvicorn

    from shared.http_protocol import CoalescingHttpToolsProtocol

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop=_best("uvloop"),
        http=CoalescingHttpToolsProtocol,
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
    )
