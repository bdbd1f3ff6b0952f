from .pg_fixture import postgres_server, postgres_url  # noqa: F401  (fixtures for this folder)
