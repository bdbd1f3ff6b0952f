"""ASGI entry point for uvicorn (``webapp.asgi:app``, a factory)."""

from __future__ import annotations

from starlette.applications import Starlette

from webapp.app import create_app
from webapp.settings import WebappSettings


def app() -> Starlette:
    return create_app(WebappSettings.from_env())
