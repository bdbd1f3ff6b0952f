"""ASGI entry point for uvicorn (``resource_service.asgi:app``, a factory)."""

from __future__ import annotations

from starlette.applications import Starlette

from resource_service.app import create_app
from resource_service.settings import ResourceSettings


def app() -> Starlette:
    return create_app(ResourceSettings.from_env())
