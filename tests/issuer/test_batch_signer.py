"""Tokens asked for in one event-loop turn are signed back to back, each going to its caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from issuer.batch_signer import MAX_BATCH, BatchSigner
from shared.tokens import TokenSigner
from tests.issuer.conftest import App


class Recorder:
    """A signer that notes each signature in a shared event list."""

    def __init__(self, events: list[str], fail_on: str | None = None) -> None:
        self.events = events
        self.fail_on = fail_on

    def sign(self, claims: Mapping[str, Any]) -> str:
        name = str(claims["name"])
        if name == self.fail_on:
            raise RuntimeError(f"cannot sign {name}")
        self.events.append(f"sign {name}")
        return f"token-for-{name}"


async def _request(batch: BatchSigner, signer: Recorder, name: str) -> str:
    signer.events.append(f"glue {name}")
    token = await batch.sign({"name": name})
    signer.events.append(f"answer {name}")
    return token


def test_requests_of_one_turn_are_signed_together_then_answered() -> None:
    events: list[str] = []

    async def main() -> list[str]:
        signer = Recorder(events)
        batch = BatchSigner(lambda: signer)
        return await asyncio.gather(*(_request(batch, signer, n) for n in "abc"))

    assert asyncio.run(main()) == ["token-for-a", "token-for-b", "token-for-c"]
    # Inline signing would interleave: glue a, sign a, answer a, glue b, ...
    assert events == [
        *("glue a", "glue b", "glue c"),
        *("sign a", "sign b", "sign c"),
        *("answer a", "answer b", "answer c"),
    ]


def test_a_lone_request_is_signed_in_the_next_turn() -> None:
    events: list[str] = []

    async def main() -> str:
        signer = Recorder(events)
        return await _request(BatchSigner(lambda: signer), signer, "solo")

    assert asyncio.run(main()) == "token-for-solo"
    assert events == ["glue solo", "sign solo", "answer solo"]


def test_a_batch_holds_at_most_max_batch_and_the_rest_follow_after_their_answers() -> None:
    events: list[str] = []
    names = [f"r{i}" for i in range(MAX_BATCH + 3)]

    async def main() -> list[str]:
        signer = Recorder(events)
        batch = BatchSigner(lambda: signer)
        return await asyncio.gather(*(_request(batch, signer, n) for n in names))

    assert asyncio.run(main()) == [f"token-for-{n}" for n in names]
    signs = [i for i, e in enumerate(events) if e.startswith("sign")]
    first_answer = events.index(f"answer {names[0]}")
    # The first MAX_BATCH are signed, then answered, before the remaining three are signed.
    assert len([i for i in signs if i < first_answer]) == MAX_BATCH
    assert events.index(f"answer {names[MAX_BATCH - 1]}") < events.index(f"sign {names[-1]}")


def test_a_failing_signature_fails_only_its_own_request() -> None:
    events: list[str] = []

    async def main() -> list[Any]:
        signer = Recorder(events, fail_on="b")
        batch = BatchSigner(lambda: signer)
        return await asyncio.gather(
            *(_request(batch, signer, n) for n in "abc"), return_exceptions=True
        )

    a, b, c = asyncio.run(main())
    assert (a, c) == ("token-for-a", "token-for-c")
    assert isinstance(b, RuntimeError)
    assert str(b) == "cannot sign b"


def test_a_cancelled_request_is_not_signed() -> None:
    events: list[str] = []

    async def main() -> str:
        signer = Recorder(events)
        batch = BatchSigner(lambda: signer)
        gone = asyncio.ensure_future(_request(batch, signer, "gone"))
        kept = asyncio.ensure_future(_request(batch, signer, "kept"))
        await asyncio.sleep(0)  # both reach the batch
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(main()) == "token-for-kept"
    assert "sign gone" not in events
    assert "sign kept" in events


def test_a_second_event_loop_signs_inline_while_the_first_has_a_batch_open() -> None:
    """Futures never cross loops: another loop's request is signed right away."""
    events: list[str] = []
    signer = Recorder(events)
    batch = BatchSigner(lambda: signer)
    opened, other_done = threading.Event(), threading.Event()
    result: list[str] = []

    def other_loop() -> None:
        opened.wait(timeout=5)
        result.append(asyncio.run(batch.sign({"name": "other"})))
        other_done.set()

    async def main() -> str:
        pending = asyncio.ensure_future(batch.sign({"name": "first"}))
        await asyncio.sleep(0)  # "first" is in the batch, whose flush is queued on this loop
        opened.set()
        # Block this loop (no turn passes) until the other loop has its token.
        assert other_done.wait(timeout=5)
        return await pending

    thread = threading.Thread(target=other_loop)
    thread.start()
    assert asyncio.run(main()) == "token-for-first"
    thread.join()
    assert result == ["token-for-other"]
    assert events == ["sign other", "sign first"]


def test_the_token_service_batches_concurrent_client_credentials(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real service: ten requests in one turn authenticate first, then all sign."""
    creds = app.new_client()
    tokens = app.issuer.tokens
    authenticated = 0
    seen_at_sign: list[int] = []
    real_authenticate, real_sign = tokens.authenticate, TokenSigner.sign

    def counting_authenticate(form: dict[str, str], authorization: str | None) -> Any:
        nonlocal authenticated
        client = real_authenticate(form, authorization)
        authenticated += 1
        return client

    def spying_sign(self: TokenSigner, claims: Mapping[str, Any]) -> str:
        seen_at_sign.append(authenticated)
        return real_sign(self, claims)

    monkeypatch.setattr(tokens, "authenticate", counting_authenticate)
    monkeypatch.setattr(TokenSigner, "sign", spying_sign)
    form = {"grant_type": "client_credentials", "audience": "photos"}

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(tokens.token(dict(form), creds.auth["Authorization"]) for _ in range(10))
        )

    responses = asyncio.run(main())
    assert len({r.body["access_token"] for r in responses}) == 10
    assert seen_at_sign == [10] * 10
