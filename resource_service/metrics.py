"""Prometheus metrics of a resource service, read from the JWKS client and authenticator."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.jwks_client import JWKSClient
from shared.jwks_fetch import FAILURE_REASONS
from shared.verification import BearerAuthenticator


class _Collector(Collector):
    def __init__(self, jwks: JWKSClient, authenticator: BearerAuthenticator) -> None:
        self.jwks = jwks
        self.authenticator = authenticator

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        fetches = CounterMetricFamily(
            "keyhouse_jwks_fetches", "JWKS fetches by result.", labels=["result"]
        )
        for result in ("ok", "not_modified", "error"):
            fetches.add_metric([result], self.jwks.fetch_counts.get(result, 0))
        yield fetches
        failures = CounterMetricFamily(
            "keyhouse_jwks_fetch_failures",
            "Failed JWKS or metadata fetches by reason (the last good keys were kept).",
            labels=["reason"],
        )
        for reason in FAILURE_REASONS:
            failures.add_metric([reason], self.jwks.failure_counts.get(reason, 0))
        yield failures
        yield GaugeMetricFamily(
            "keyhouse_jwks_keys", "Verification keys held.", len(self.jwks.kids)
        )
        age = self.jwks.age()
        yield GaugeMetricFamily(
            "keyhouse_jwks_cache_age_seconds",
            "Seconds since the issuer last confirmed the key set (-1: never).",
            -1.0 if age is None else age,
        )
        verifications = CounterMetricFamily(
            "keyhouse_token_verifications", "Token verifications by result.", labels=["result"]
        )
        for result, count in sorted(self.authenticator.results.items()):
            verifications.add_metric([result], count)
        yield verifications
        cache = self.authenticator.cache
        yield CounterMetricFamily(
            "keyhouse_token_cache_hits", "Verified-token cache hits.", cache.hits
        )
        yield CounterMetricFamily(
            "keyhouse_token_cache_misses", "Verified-token cache misses.", cache.misses
        )
        yield GaugeMetricFamily(
            "keyhouse_token_cache_entries", "Tokens held in the verified-token cache.", len(cache)
        )
        dpop = self.authenticator.dpop
        if dpop is not None:
            replay = dpop.replay_cache
            yield GaugeMetricFamily(
                "keyhouse_dpop_replay_cache_entries",
                "DPoP proof jtis remembered (full at keyhouse_dpop_replay_cache_capacity).",
                len(replay),
            )
            yield GaugeMetricFamily(
                "keyhouse_dpop_replay_cache_capacity",
                "Most DPoP proof jtis remembered at once (RESOURCE_DPOP_REPLAY_CACHE_SIZE).",
                replay.max_entries,
            )


class ResourceMetrics:
    def __init__(self, jwks: JWKSClient, authenticator: BearerAuthenticator) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(jwks, authenticator))
