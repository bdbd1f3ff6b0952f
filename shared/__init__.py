"""Keyhouse's framework-free core, shared by the issuer and the resource services.

Nothing in this package imports Starlette: protocol logic lives here as pure functions and
small classes; the HTTP glue lives in ``issuer`` and ``resource_service``.
"""
