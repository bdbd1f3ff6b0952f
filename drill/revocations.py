"""The drill's revocations, measured: a user's (``--revoke-user``: disabled through the admin
API, enabled again after the drill) and the signing key's (``--revoke``).

For each, every service gets ``--probes`` probes, each holding a token the action covers (the
user's, or one signed by the key) and sending it until its first refusal; the action's request
time is when the admin call was sent, and the probes start with it, while the load goes on.
When both are asked for, the user is revoked first: the key revocation then ends the drill as
it did before, and the user's tokens (all refused by then) do not blur the key's measurement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from drill.client import describe
from drill.config import DrillError
from drill.records import ProbeRun, Revocation, ServiceState
from drill.stream import claims_of
from shared.security_events import subject_hash

if TYPE_CHECKING:
    from drill.runner import Drill

# A probe's pause between two requests: PROBE_PAUSE, or longer so that a service's probes
# together send at most PROBE_RATE requests a second (the probes must not become the load they
# measure). They start staggered over the pause, so together they send at an even pace.
PROBE_PAUSE = 0.1
PROBE_RATE = 100.0


def probe_pause(probes: int) -> float:
    """Seconds between two requests of one probe, for ``probes`` probes at a service."""
    return max(PROBE_PAUSE, probes / PROBE_RATE)


async def measure(
    drill: Drill,
    kind: str,
    subject: str,
    held: Mapping[str, Sequence[str]],
    action: Callable[[], Awaitable[dict[str, Any]]],
    deadline_s: float,
    event: tuple[str, str] = ("", ""),
) -> Revocation:
    """Run ``action`` (the admin call) with every service's probes holding ``held`` tokens,
    until each probe is refused or ``deadline_s`` after the request; the record."""
    services = list(drill.services.values())
    states = await asyncio.gather(*(drill.stack.subscription(s.url) for s in services))
    requested = time.time()
    revocation = Revocation(kind, subject, requested, requested, requested + deadline_s)
    revocation.event_claim, revocation.event_value = event
    n = drill.config.probes
    for service, state in zip(services, states, strict=True):
        revocation.runs[service.name] = ProbeRun(
            subscription=state, probes=n, first_refusals=[None] * n
        )
    drill.revocations.append(revocation)
    probes = [
        asyncio.create_task(_probe(drill, s, revocation, i, held[s.name][i % len(held[s.name])]))
        for s in services
        for i in range(n)
    ]
    try:
        revocation.response = await action()
    except BaseException:
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        raise
    revocation.answered_at = time.time()
    await asyncio.gather(*probes)
    return revocation


async def _probe(
    drill: Drill, service: ServiceState, revocation: Revocation, index: int, token: str
) -> None:
    run = revocation.runs[service.name]
    pause = probe_pause(run.probes)
    await asyncio.sleep(pause * index / max(1, run.probes))
    while time.time() < revocation.deadline and not drill.stop.is_set():
        sent = time.time()
        try:
            response = await drill.http.get(
                service.url + "/whoami", headers={"Authorization": f"Bearer {token}"}
            )
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = "error: " + describe(exc)
        answered = time.time()
        run.requests += 1
        run.statuses[status] += 1
        run.round_trips.append(answered - sent)
        if index == 0:
            run.log.append((sent, answered, status))
        if status == "401":
            run.first_refusals[index] = answered
            return
        await asyncio.sleep(pause)


async def revoke_user(drill: Drill) -> Revocation:
    """Disable ``--revoke-user`` while its tokens are in the load; measure the refusals."""
    username = drill.config.revoke_user
    assert username is not None
    drill.phase = f"user revocation: {username}"
    held: dict[str, list[str]] = {}
    for service in drill.services.values():
        if not service.user_tokens:
            raise DrillError(f"no token of user {username} for {service.name} to probe with")
        held[service.name] = list(service.user_tokens)
    # The load stops using the user's tokens (the probes hold them) and mints no more.
    drill.user_stopped = True
    for service in drill.services.values():
        service.user_token = None
    path = f"/admin/users/{quote(username, safe='')}/disable"
    # The admin token is minted first: the measurement starts when the disable call is sent.
    token = await drill.stack.admin_token()

    async def disable() -> dict[str, Any]:
        drill.user_disabled = True
        return await drill.stack.admin("POST", path, token=token)

    sub = next(iter(held.values()))[0]
    sub_claim = claims_of(sub).get("sub")
    event = ("sub", subject_hash(sub_claim)) if isinstance(sub_claim, str) else ("", "")
    revocation = await measure(
        drill, "user", username, held, disable, drill.config.refusal_deadline, event
    )
    drill.phase = "after user revocation"
    return revocation


async def enable_user(drill: Drill) -> None:
    """Enable ``--revoke-user`` again after the drill; the outcome goes in the report."""
    username = drill.config.revoke_user
    assert username is not None
    path = f"/admin/users/{quote(username, safe='')}/enable"
    try:
        out = await drill.stack.admin("POST", path)
    except DrillError as exc:
        drill.user_enabled = {"enabled": False, "error": str(exc)}
        drill.problems.append(
            f"could not enable user {username} again ({exc}): run `issuer users enable {username}`"
        )
        return
    drill.user_enabled = {"enabled": out.get("disabled") is False, "response": out}


async def revoke_key(drill: Drill) -> Revocation:
    """Revoke the signing key while tokens it signed are in the load; measure the refusals,
    then wait for every service to accept the replacement key's tokens."""
    cfg = drill.config
    drill.phase = "key revocation"
    listing = await drill.stack.admin("GET", "/admin/keys")
    signing = [k for k in listing.get("keys", []) if k.get("signing")]
    if not signing:
        raise DrillError("the issuer reports no signing key")
    kid = str(signing[0]["kid"])
    # Hold tokens signed by the key about to be revoked, for every service.
    deadline = time.time() + 10
    while any(kid not in s.tokens_by_kid for s in drill.services.values()):
        if time.time() > deadline:
            raise DrillError(f"no token signed by {kid} to probe the revocation with")
        for service in drill.services.values():
            if kid not in service.tokens_by_kid:
                await drill.mint(service)
        await asyncio.sleep(0.05)
    held = {s.name: list(s.tokens_by_kid[kid]) for s in drill.services.values()}
    token = await drill.stack.admin_token()  # minted first, as for the user

    async def revoke() -> dict[str, Any]:
        path = f"/admin/keys/{quote(kid, safe='')}/revoke"
        out = await drill.stack.admin("POST", path, token=token)
        drill.remint_now()  # the load goes on with the replacement key's tokens
        return out

    revocation = await measure(
        drill, "key", kid, held, revoke, cfg.revocation_bound + 10, ("kid", kid)
    )
    signing_kid = revocation.response.get("signing_kid")
    revocation.replacement_kid = signing_kid if isinstance(signing_kid, str) else None
    drill.phase = "after key revocation"
    if revocation.replacement_kid:
        await drill.wait_for_acceptance(revocation.replacement_kid, time.time() + 10)
    await asyncio.sleep(1.0)
    return revocation
