"""Operations: ``/healthz`` (liveness: the process runs; with its signing key), ``/readyz``
(readiness: a signing key and a reachable database, :mod:`issuer.readiness`) and ``/metrics``
(Prometheus)."""

from __future__ import annotations

import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import issuer_of

_NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: Request) -> Response:
    issuer = issuer_of(request)
    signer = issuer.keyring.signer()
    body = {"status": "ok", "issuer": issuer.settings.issuer_url, "signing_kid": signer.kid}
    return JSONResponse(body, headers=_NO_STORE)


async def readyz(request: Request) -> Response:
    """200 ``{"status": "ready"}``, or 503 ``{"status": "unavailable", "reason": ...}``."""
    reason = await issuer_of(request).readiness.reason()
    if reason is None:
        return JSONResponse({"status": "ready"}, headers=_NO_STORE)
    body = {"status": "unavailable", "reason": reason}
    return JSONResponse(body, status_code=503, headers=_NO_STORE)


async def metrics(request: Request) -> Response:
    issuer = issuer_of(request)
    issuer.metrics.published_keys.set(len(json.loads(issuer.keyring.jwks()[0])["keys"]))
    return Response(generate_latest(issuer.metrics.registry), media_type=CONTENT_TYPE_LATEST)
