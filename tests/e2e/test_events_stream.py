"""``GET /events`` of a real issuer process (issue 17 §2), on SQLite and PostgreSQL.

A subscriber (httpx streaming) sees each kind of event arrive, signed with a key of the JWKS
(verified with joserfc), with the right subject: ``/revoke`` of an access token (jti), refresh
reuse (fid), ``issuer users disable`` through the CLI (sub, hashed), ``issuer keys revoke``
through the CLI (kid, signed by the replacement key). Resuming with ``Last-Event-ID`` gets
exactly the missed events; an event recorded while the issuer is down is served after its
restart; a stopping issuer ends open streams; the subscriber cap answers 503 and a bad
``Last-Event-ID`` 400; a disconnected subscriber frees its slot.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from shared import security_events as se
from tests.e2e.oidc_world import unverified_claims
from tests.support import web
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

PASSWORD = "alice-password-1"


@dataclass
class Message:
    seq: int
    token: str

    @property
    def claims(self) -> dict[str, Any]:
        return unverified_claims(self.token)

    @property
    def rule(self) -> se.DenyRule:
        return se.rule_from_claims(self.claims)


@dataclass
class Subscriber:
    """Reads an SSE stream in a thread; ``messages`` grows as events arrive."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    keepalives: int = 0
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Subscriber:
        threading.Thread(target=self._run, daemon=True).start()
        deadline = time.monotonic() + 20
        while self.status is None and not self.ended.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.status == 200, self.status
        return self

    def _run(self) -> None:
        try:
            with (
                web.Client(timeout=httpx.Timeout(10, read=30)) as http,
                http.stream("GET", self.url + "/events", headers=self.headers) as response,
            ):
                self.status = response.status_code
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.keepalives += 1
                    elif line == "":
                        if "data" in fields:
                            self.messages.append(Message(int(fields["id"]), fields["data"]))
                        fields = {}
                    else:
                        name, _, value = line.partition(": ")
                        fields[name] = value
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} events, expected {count}"
        return self.messages

    def stop(self) -> None:
        self._stop.set()


def _verify(stack: Stack, token: str) -> dict[str, Any]:
    """The SET's payload, its signature checked against the issuer's JWKS now."""
    jwks = web.get(stack.issuer_url + "/.well-known/jwks.json", timeout=10).json()
    result = jws.deserialize_compact(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    header = result.headers()
    assert header["typ"] == "secevent+jwt"
    assert header["alg"] == "RS256"
    payload = json.loads(result.payload)
    assert payload["iss"] == stack.issuer_url
    assert payload["aud"] == stack.issuer_url + "/events"
    return dict(payload)


@pytest.fixture
def stack(tmp_path: Path, issuer_database_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path, database_url=issuer_database_url)
    try:
        yield s
    finally:
        s.stop_all()


def test_events_are_pushed_signed_resumed_and_survive_a_restart(stack: Stack) -> None:
    env = {"ISSUER_EVENTS_HEARTBEAT": "0.5", "ISSUER_EVENTS_MAX_SUBSCRIBERS": "3"}
    issuer = stack.issuer(**env).start()
    metadata = web.get(stack.issuer_url + "/.well-known/openid-configuration").json()
    assert metadata["keyhouse_events_endpoint"] == stack.issuer_url + "/events"
    client = stack.create_client(
        scope="photos:read",
        audiences=["photos"],
        grants=("client_credentials", "password", "refresh_token"),
    )
    stack.create_user("alice", PASSWORD, "photos:read")
    live = Subscriber(stack.issuer_url).start()

    # 1. /revoke of an access token of the client: its jti.
    access = stack.token(client)["access_token"]
    revoked = web.post(
        stack.issuer_url + "/revoke",
        data={"token": access},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert revoked.status_code == 200
    (first,) = live.wait_for(1)
    payload = _verify(stack, first.token)
    assert se.rule_from_claims(payload) == se.DenyRule(
        "jti", unverified_claims(access)["jti"], None, unverified_claims(access)["exp"]
    )

    # 2. Refresh-token reuse: the family (the access token's fid).
    login = stack.token(client, grant_type="password", username="alice", password=PASSWORD)
    login_claims = unverified_claims(login["access_token"])
    stack.token(client, grant_type="refresh_token", refresh_token=login["refresh_token"])
    reuse = web.post(
        stack.issuer_url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert reuse.status_code == 400
    second = live.wait_for(2)[1]
    rule = se.rule_from_claims(_verify(stack, second.token))
    assert (rule.claim, rule.value) == ("fid", login_claims["fid"])
    assert rule.before is not None
    assert rule.before >= login_claims["iat"]

    # 3. The CLI disables alice: her hashed sub (found by this process's poller).
    stack.cli("users", "disable", "alice")
    third = live.wait_for(3)[2]
    rule = se.rule_from_claims(_verify(stack, third.token))
    assert (rule.claim, rule.value) == ("sub", se.subject_hash(login_claims["sub"]))

    # 4. The CLI revokes the signing key: signed by its replacement, which the JWKS has.
    kid = web.get(stack.issuer_url + "/.well-known/jwks.json").json()["keys"][0]["kid"]
    stack.cli("keys", "revoke", kid)
    fourth = live.wait_for(4)[3]
    assert (fourth.rule.claim, fourth.rule.value) == ("kid", kid)
    payload = _verify(stack, fourth.token)  # the revoked key is no longer in the JWKS
    assert web.get(stack.issuer_url + "/.well-known/jwks.json").json()["keys"][0]["kid"] != kid
    seqs = [m.seq for m in live.messages]
    assert seqs == sorted(seqs)
    assert len(live.messages) == 4  # nothing else, nothing twice
    assert live.keepalives >= 1

    # Resume: exactly the missed ones, by Last-Event-ID and by ?after=.
    resumed = Subscriber(stack.issuer_url, {"Last-Event-ID": str(seqs[1])}).start()
    assert [m.seq for m in resumed.wait_for(2)] == seqs[2:]
    time.sleep(1.0)
    assert [m.token for m in resumed.messages] == [m.token for m in live.messages[2:]]
    resumed.stop()
    everything = Subscriber(stack.issuer_url).start()
    assert [m.seq for m in everything.wait_for(4)] == seqs
    everything.stop()

    # The cap: 3 subscribers (live + two that may not have noticed their stop yet: wait for the
    # slots to free first, then fill them).
    _wait_for_subscribers(stack, 1)
    extra = [Subscriber(stack.issuer_url, {"Last-Event-ID": str(seqs[-1])}).start() for _ in "ab"]
    over = web.get(stack.issuer_url + "/events", timeout=10)
    assert over.status_code == 503
    assert over.json()["error"] == "temporarily_unavailable"
    assert "retry-after" in over.headers
    for sub in extra:
        sub.stop()
    bad = web.get(stack.issuer_url + "/events", headers={"Last-Event-ID": "12x"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_request"

    # A stopping issuer ends the open stream (no hang), and loses nothing: an event recorded
    # while it is down (the CLI, on the database) is served after the restart.
    started = time.monotonic()
    status = issuer.stop()
    assert time.monotonic() - started < 10  # not the harness's 15 s grace before SIGKILL
    assert status == 0, issuer.log_tail()
    assert live.ended.wait(5)
    stack.cli("users", "enable", "alice")
    stack.cli("users", "disable", "alice")
    issuer.start()
    after_restart = Subscriber(stack.issuer_url, {"Last-Event-ID": str(seqs[-1])}).start()
    (missed,) = after_restart.wait_for(1)
    assert missed.seq > seqs[-1]
    rule = se.rule_from_claims(_verify(stack, missed.token))
    assert (rule.claim, rule.value) == ("sub", se.subject_hash(login_claims["sub"]))
    after_restart.stop()


def _wait_for_subscribers(stack: Stack, count: int, timeout: float = 10.0) -> None:
    """Until the issuer's gauge says ``count`` open streams (disconnects are noticed at once)."""
    deadline = time.monotonic() + timeout
    gauge = "keyhouse_issuer_security_event_subscribers "
    value = -1.0
    while time.monotonic() < deadline:
        text = web.get(stack.issuer_url + "/metrics", timeout=10).text
        value = float(next(line for line in text.splitlines() if line.startswith(gauge)).split()[1])
        if value == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{value} subscribers, expected {count}")
