"""The issuer's endpoints, one module per group; ``issuer/app.py`` routes to them.

Each reads the container (:class:`issuer.container.Issuer`) from the lifespan state
(:func:`issuer.http.issuer_of`) and raises :class:`shared.errors.KeyhouseError` to refuse.
"""
