"""The slow-client attack of scenario 8 (issue 13, point 1; the scenario itself is
bench/scenarios/slowclients.py, which starts this program on the load CPU).

``python bench/slow_clients.py attack ...`` is a bounded asyncio program (it stops by itself
after ``--seconds`` and closes everything) that prints one ``ATTACK_JSON`` line of what it saw:

  1. ``--trickle`` connections (a few hundred) from 127.0.0.6-9, half sending a request head one
     byte per second, half sending a declared body one byte per second;
  2. from ``--flood-start`` on, ``--flood`` connections (thousands) from 127.0.0.2-5, each sending
     half a request head and then waiting.

  A connection the server closes is opened again (after ``--retry`` seconds when it was refused at
  once: the per-address cap), so the pressure lasts the whole run. For every connection it
  notes how long it stayed open until the server closed it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import cast

TRICKLE_SOURCES = ("127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9")
FLOOD_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
TRICKLE_CONNECTIONS = 300
FLOOD_CONNECTIONS = 4000  # 1,000 per source address, about 4x the default per-address cap
FLOOD_RAMP_RATE = 2000.0  # new flood connections a second while the flood builds up
TRICKLE_INTERVAL = 1.0  # seconds between two trickled bytes
# A connection closed with no answer was refused by a cap (a held one always gets its 408): it is
# opened again after this long, as slowloris reopens its dead sockets once per round.
REFUSED_RETRY = 5.0
FD_MARGIN = 200  # descriptors the attack leaves for everything else in its process


@dataclass
class AttackStats:
    connections: int = 0  # connections opened
    refused: int = 0  # closed by the server with nothing sent back (a cap)
    longest_refused_s: float = 0.0  # from connect() to the close of a refused one
    answered_408: int = 0
    other_answers: int = 0
    closed_by_server: int = 0  # after being held (not refused)
    connect_errors: int = 0
    longest_open_s: float = 0.0  # longest a held connection stayed open until the server closed it
    longest_open_kind: str = ""
    still_open_at_end: int = 0
    oldest_still_open_s: float = 0.0  # the oldest connection the attack itself closed at the end
    fd_limit: int = 0
    attacker_lag_s: float = 0.0  # the attack's own worst event-loop delay: its times are late by
    # up to this much when it could not keep up (a busy machine)
    trickle: int = 0
    flood: int = 0
    by_kind: dict[str, float] = field(default_factory=dict)  # longest open per kind


class SlowConnection(asyncio.Protocol):
    """One attack connection: sends its opening bytes, then (a trickle) one byte per tick of the
    attack's ticker until the server answers; notes what the server sends and when it closes."""

    def __init__(self, attack: Attack, kind: str, source: str) -> None:
        self.attack = attack
        self.kind = kind
        self.source = source
        self.opened = 0.0
        self.answer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = cast(asyncio.Transport, transport)  # (uvloop's is no subclass of asyncio's)
        self.transport = conn
        self.opened = self.attack.loop.time()
        self.attack.live.add(self)
        conn.write(self.attack.opening[self.kind])

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.attack.live.discard(self)
        self.attack.closed(self)


class Attack:
    """The attack's connections, opened again whenever the server closes them, until the end.

    Plain protocols and one ticker (no stream objects, no task per read): the attack must cost
    little CPU next to wrk, or it would measure itself."""

    def __init__(
        self,
        port: int,
        seconds: float,
        trickle: int,
        flood: int,
        flood_start: float,
        head_path: str,
        body_request: bytes,
    ) -> None:
        self.port = port
        self.trickle = trickle
        self.flood = flood
        self.flood_start = flood_start
        head = f"GET {head_path} HTTP/1.1\r\nHost: bench\r\n".encode()
        self.opening = {"flood": head, "head": head + b"X-Slow: ", "body": body_request}
        self.stats = AttackStats(trickle=trickle, flood=flood)
        self.live: set[SlowConnection] = set()
        self.pending: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        self.stop_at = self.loop.time() + seconds
        self.stopping = False

    def spawn(self, kind: str, source: str) -> None:
        if self.stopping:
            return
        task = self.loop.create_task(self._open(kind, source))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _open(self, kind: str, source: str) -> None:
        try:
            await self.loop.create_connection(
                lambda: SlowConnection(self, kind, source),
                "127.0.0.1",
                self.port,
                local_addr=(source, 0),
            )
        except OSError:
            self.stats.connect_errors += 1
            self.loop.call_later(REFUSED_RETRY, self.spawn, kind, source)
            return
        self.stats.connections += 1

    def closed(self, conn: SlowConnection) -> None:
        """The server closed ``conn`` (or the attack did, at its end)."""
        stats = self.stats
        held = self.loop.time() - conn.opened
        if self.stopping:
            stats.still_open_at_end += 1
            stats.oldest_still_open_s = max(stats.oldest_still_open_s, round(held, 3))
            return
        if not conn.answer:
            stats.refused += 1
            stats.longest_refused_s = max(stats.longest_refused_s, round(held, 3))
            self.loop.call_later(REFUSED_RETRY, self.spawn, conn.kind, conn.source)
            return
        if conn.answer.startswith(b"HTTP/1.1 408"):
            stats.answered_408 += 1
        else:
            stats.other_answers += 1
        stats.closed_by_server += 1
        if held > stats.longest_open_s:
            stats.longest_open_s = round(held, 3)
            stats.longest_open_kind = conn.kind
        stats.by_kind[conn.kind] = max(stats.by_kind.get(conn.kind, 0.0), round(held, 3))
        self.loop.call_later(0.1, self.spawn, conn.kind, conn.source)

    def tick(self) -> None:
        for conn in self.live:
            if conn.kind != "flood" and not conn.answer and conn.transport is not None:
                conn.transport.write(b"a")

    async def run(self) -> AttackStats:
        loop = self.loop
        now = loop.time()
        for i in range(self.trickle):
            kind = "head" if i % 2 == 0 else "body"
            source = TRICKLE_SOURCES[i % len(TRICKLE_SOURCES)]
            loop.call_at(now + i * 0.5 / max(1, self.trickle), self.spawn, kind, source)
        # The flood builds up at FLOOD_RAMP_RATE connections a second (a burst of thousands of
        # SYNs would overflow the listen backlog and measure the kernel, not the server).
        for i in range(self.flood):
            source = FLOOD_SOURCES[i % len(FLOOD_SOURCES)]
            loop.call_at(now + self.flood_start + i / FLOOD_RAMP_RATE, self.spawn, "flood", source)
        next_tick = now + TRICKLE_INTERVAL
        while loop.time() < self.stop_at:
            before = loop.time()
            await asyncio.sleep(min(0.05, max(0.0, self.stop_at - before)))
            late = loop.time() - before - 0.05
            self.stats.attacker_lag_s = max(self.stats.attacker_lag_s, round(late, 3))
            if loop.time() >= next_tick:
                self.tick()
                next_tick += TRICKLE_INTERVAL
        self.stopping = True
        for task in list(self.pending):
            task.cancel()
        for conn in list(self.live):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0.1)  # let connection_lost run for them
        return self.stats


def raise_fd_limit(want: int) -> int:
    """Raises this process's soft open-file limit towards ``want``; returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def attack_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="slow_clients.py attack")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--trickle", type=int, default=TRICKLE_CONNECTIONS)
    ap.add_argument("--flood", type=int, default=FLOOD_CONNECTIONS)
    ap.add_argument("--flood-start", type=float, default=1.0)
    ap.add_argument("--head-path", default="/healthz")
    ap.add_argument(
        "--body-request",
        default="POST /token HTTP/1.1\r\nHost: bench\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        help="the head of the request whose body is trickled",
    )
    args = ap.parse_args(argv)
    limit = raise_fd_limit(args.trickle + args.flood + FD_MARGIN)
    trickle, flood = args.trickle, args.flood
    room = limit - FD_MARGIN
    if trickle + flood > room:  # fewer connections than asked for, and say so in the stats
        flood = max(0, room - trickle)
        trickle = min(trickle, room)

    async def main() -> AttackStats:
        attack = Attack(
            args.port,
            args.seconds,
            trickle,
            flood,
            args.flood_start,
            args.head_path,
            args.body_request.encode(),
        )
        return await attack.run()

    try:
        import uvloop

        stats = uvloop.run(main())
    except ImportError:
        stats = asyncio.run(main())
    stats.fd_limit = limit
    print("ATTACK_JSON " + json.dumps(asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        sys.exit(attack_main(sys.argv[2:]))
    print("usage: python bench/slow_clients.py attack --port PORT --seconds S", file=sys.stderr)
    sys.exit(2)
