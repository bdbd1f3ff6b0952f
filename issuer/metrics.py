"""The issuer's Prometheus metrics, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IssuerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tokens_issued = Counter(
            "keyhouse_issuer_tokens_issued",
            "Access tokens issued, by grant type.",
            ["grant_type"],
            registry=self.registry,
        )
        self.token_errors = Counter(
            "keyhouse_issuer_token_errors",
            "Token endpoint errors, by RFC 6749 error code.",
            ["error"],
            registry=self.registry,
        )
        self.jwks_requests = Counter(
            "keyhouse_issuer_jwks_requests",
            "JWKS requests, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "keyhouse_issuer_token_verifications",
            "Admin API bearer-token verifications, by result (valid or the RFC 6750 error code).",
            ["result"],
            registry=self.registry,
        )
        self.published_keys = Gauge(
            "keyhouse_issuer_published_keys",
            "Keys currently published in the JWKS.",
            registry=self.registry,
        )
        self.events_recorded = Counter(
            "keyhouse_issuer_security_events_recorded",
            "Security events this process found new in the store (recorded here or elsewhere).",
            registry=self.registry,
        )
        self.events_served = Counter(
            "keyhouse_issuer_security_events_served",
            "Security events sent to subscribers of GET /events (one per event and subscriber).",
            registry=self.registry,
        )
        self.event_subscribers = Gauge(
            "keyhouse_issuer_security_event_subscribers",
            "Open GET /events streams of this process.",
            registry=self.registry,
        )
        # Label children bound once: ``labels()`` validates and locks on every call, and the
        # token endpoint counts every request.
        self._issued: dict[str, Counter] = {}
        self._errors: dict[str, Counter] = {}

    def token_issued(self, grant_type: str) -> None:
        _inc(self._issued, self.tokens_issued, grant_type)

    def token_error(self, error: str) -> None:
        _inc(self._errors, self.token_errors, error)


def _inc(children: dict[str, Counter], counter: Counter, label: str) -> None:
    """``counter.labels(label).inc()``, through a child bound once per label."""
    child = children.get(label)
    if child is None:
        child = children[label] = counter.labels(label)
    child.inc()
