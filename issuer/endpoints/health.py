"""Operations: ``/healthz`` (the issuer and its signing key) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer.http import issuer_of


async def healthz(request: Request) -> Response:
    issuer = issuer_of(request)
    signer = issuer.keyring.signer()
    body = {"status": "ok", "issuer": issuer.settings.issuer_url, "signing_kid": signer.kid}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    issuer = issuer_of(request)
    issuer.metrics.published_keys.set(len(json.loads(issuer.keyring.jwks()[0])["keys"]))
    return Response(generate_latest(issuer.metrics.registry), media_type=CONTENT_TYPE_LATEST)
