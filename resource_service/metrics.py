"""Prometheus metrics of a resource service, read from the JWKS client, the authenticator, its
deny-list and the subscription to the issuer's revocation events."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.deny_list import KINDS
from shared.event_stream import CONNECTED, CONNECTING, DISABLED, DOWN, EventSubscriber
from shared.jwks_client import JWKSClient
from shared.jwks_fetch import FAILURE_REASONS
from shared.verification import BearerAuthenticator

EVENT_OUTCOMES = ("applied", "refused", "replayed", "expired")
SUBSCRIPTION_STATES = (CONNECTED, CONNECTING, DOWN, DISABLED)


class _Collector(Collector):
    def __init__(
        self,
        jwks: JWKSClient,
        authenticator: BearerAuthenticator,
        events: EventSubscriber | None,
    ) -> None:
        self.jwks = jwks
        self.authenticator = authenticator
        self.events = events

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

        yield from self._revocation()

    def _revocation(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        events = self.events
        outcomes = CounterMetricFamily(
            "keyhouse_events",
            "Revocation events received from the issuer, by outcome (refused: forged or "
            "malformed, nothing changed).",
            labels=["outcome"],
        )
        for outcome in EVENT_OUTCOMES:
            outcomes.add_metric([outcome], 0 if events is None else events.outcomes[outcome])
        yield outcomes
        state = GaugeMetricFamily(
            "keyhouse_events_subscription",
            "The subscription to the issuer's events: 1 for its current state.",
            labels=["state"],
        )
        current = DISABLED if events is None else events.status
        for name in SUBSCRIPTION_STATES:
            state.add_metric([name], 1 if name == current else 0)
        yield state
        if events is not None:
            yield CounterMetricFamily(
                "keyhouse_events_connections",
                "Connections to the issuer's event stream that got the stream.",
                events.connects,
            )
        deny = self.authenticator.deny
        entries = GaugeMetricFamily(
            "keyhouse_deny_list_entries", "Deny-list entries held, by claim.", labels=["claim"]
        )
        for claim, count in deny.counts().items():
            entries.add_metric([claim], count)
        yield entries
        yield GaugeMetricFamily(
            "keyhouse_deny_list_capacity",
            "Most deny-list entries held at once (RESOURCE_DENY_LIST_SIZE).",
            deny.max_entries,
        )
        yield CounterMetricFamily(
            "keyhouse_deny_list_evictions",
            "Unexpired deny-list entries dropped because the list was full.",
            deny.evicted,
        )
        refusals = CounterMetricFamily(
            "keyhouse_deny_list_refusals",
            "Tokens refused as revoked, by the claim that matched.",
            labels=["claim"],
        )
        for claim in KINDS:
            refusals.add_metric([claim], deny.refusals[claim])
        yield refusals


class ResourceMetrics:
    def __init__(
        self,
        jwks: JWKSClient,
        authenticator: BearerAuthenticator,
        events: EventSubscriber | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(jwks, authenticator, events))
