"""ASGI entry point for uvicorn (``issuer.asgi:app``, a factory): settings from the environment."""

from __future__ import annotations

from starlette.applications import Starlette

from issuer.app import create_app
from issuer.settings import IssuerSettings


def app() -> Starlette:
    return create_app(IssuerSettings.from_env())
