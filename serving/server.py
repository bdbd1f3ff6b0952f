"""Running a Keyhouse ASGI app under uvicorn with the production options the README explains.

uvloop when installed (accepting every waiting connection in a turn: ``serving.accept``),
httptools with each response's head and body in one write
(``serving.protocol``), no access log unless asked (it costs throughput and would record
URLs), no ``Server`` header, and ``X-Forwarded-For`` ignored unless the operator names the
proxies allowed to set it: uvicorn's own default trusts it from 127.0.0.1, which lets anything
on the host pick the address the login throttle counts against. The app is given as an import
string of a factory so ``workers > 1`` works. Every connection gets deadlines on reading its
requests and counts against the caps of ``limits`` (``serving.limits``); the process's
open-file limit is raised to fit the connection cap (or the cap lowered to fit the limit, with a
warning). WebSocket upgrades are off: no Keyhouse server speaks WebSocket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import cast

from serving.limits import ConnectionLimits

logger = logging.getLogger("keyhouse.connections")

FORWARDED_ALLOW_IPS_HELP = (
    "comma-separated addresses of the reverse proxies whose X-Forwarded-For/-Proto are honoured"
    " (default: none; '*' trusts every peer)"
)


def _loop() -> str:
    """uvloop that accepts every waiting connection in a turn (``serving.accept``), else asyncio."""
    try:
        __import__("uvloop")
    except ImportError:
        return "asyncio"
    return "serving.accept:new_event_loop"


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
    limits: ConnectionLimits | None = None,
) -> None:
    import uvicorn

    from serving.protocol import GuardedHttpToolsProtocol

    limits = fit_descriptors(limits or ConnectionLimits())
    protocol = functools.partial(GuardedHttpToolsProtocol, limits=limits)
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop=_loop(),
        # A partial, not a class: uvicorn only calls it, and pickles it for worker processes.
        http=cast(type[asyncio.Protocol], protocol),
        ws="none",
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
    )


def fit_descriptors(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise this process's open-file limit to fit ``limits.max_connections`` (worker processes
    inherit it), or lower the cap to fit the limit, with a warning."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not POSIX)
        return limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fitted, new_soft, message = limits.fit_descriptors(soft, hard)
    if new_soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError):
            fitted, _, message = limits.fit_descriptors(soft, soft)
    if message:
        logger.warning("%s", message)
    return fitted
