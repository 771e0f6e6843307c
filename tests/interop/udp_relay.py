"""A seeded, lossy UDP relay between a DTLS client and server on loopback.

The client talks to ``relay.port``; the relay forwards to the server's port from a socket of
its own and sends the answers back to whichever address the client last used. Each
direction has its own ``random.Random`` seeded from (seed, direction), and every datagram
draws the same number of values whatever happens to it, so the n-th datagram of a direction
meets the same fate in every run with that seed: a failing seed can be replayed.

Impairments, per direction:

- *loss*: the datagram is dropped. By default only datagrams whose records are all
  handshake-phase records (DTLSPlaintext of epoch 0, or unified headers of epoch 2) can be
  lost: DTLS does not retransmit application data (RFC 9147 §5: it is as unreliable as UDP),
  so losing it is not a protocol failure to test, and "data arrives exactly once" can only
  be asserted if it can arrive. ``loss_scope="all"`` drops anything.
- *duplication*: a second copy follows after ``duplicate_delay`` seconds (any epoch: the
  replay window and message_seq checks must hide it from the application).
- *reordering*: the datagram is held back until the next one of its direction has gone
  (or ``hold_limit`` seconds pass), so the two swap places.

Every decision is written to an optional log, with the datagram in hex, to debug a failing
handshake byte by byte (``describe()`` gives a summary for assertion messages).
"""

from __future__ import annotations

import heapq
import itertools
import random
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

HOST = "127.0.0.1"
Direction = Literal["c2s", "s2c"]
LossScope = Literal["handshake", "all"]


@dataclass(frozen=True)
class Impairment:
    """Probabilities for one direction (each drawn independently per datagram)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0


@dataclass
class DirectionStats:
    received: int = 0
    forwarded: int = 0  # copies sent, duplicates included
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


def handshake_phase(datagram: bytes) -> bool:
    """Whether every record in ``datagram`` belongs to the handshake epochs 0 or 2.

    DTLSPlaintext (RFC 9147 §4) starts with its content type (22 handshake, 21 alert, 26
    ack) and is always epoch 0 here; a unified header starts with 0b001CSLEE and carries the
    epoch's two low bits (§4). Records are walked with their length fields; a unified header
    without the L bit runs to the end of the datagram. Anything unparsable counts as not
    handshake (so it is never dropped under ``loss_scope="handshake"``).
    """
    pos, size = 0, len(datagram)
    if size == 0:
        return False
    while pos < size:
        first = datagram[pos]
        if first in (21, 22, 26):
            if pos + 13 > size:
                return False
            pos += 13 + int.from_bytes(datagram[pos + 11 : pos + 13], "big")
            continue
        if first & 0xE0 != 0x20 or first & 0x03 != 2:
            return False
        # A CID's length is not on the wire: only the connection knows it. Records with a
        # CID are rare in a handshake (ours start after ServerHello); treat them as
        # handshake only if they are the last record, which is all we can check.
        if first & 0x10:
            return True
        header = 1 + (2 if first & 0x08 else 1)
        if not first & 0x04:
            return True  # no length: the record fills the datagram
        if pos + header + 2 > size:
            return False
        pos += header + 2 + int.from_bytes(datagram[pos + header : pos + header + 2], "big")
    return pos == size


def first_epoch(datagram: bytes) -> int | None:
    """The epoch of a datagram's first record: 0 for DTLSPlaintext, the two low bits of the
    epoch for a unified header (RFC 9147 §4), None if it is neither."""
    if not datagram:
        return None
    if datagram[0] in (21, 22, 26):
        return 0
    if datagram[0] & 0xE0 == 0x20:
        return datagram[0] & 0x03
    return None


@dataclass
class UdpRelay:
    """Forwards between a client (which sends to ``port``) and a server at ``server_port``."""

    server_port: int
    seed: int
    c2s: Impairment = field(default_factory=Impairment)
    s2c: Impairment = field(default_factory=Impairment)
    loss_scope: LossScope = "handshake"
    duplicate_delay: float = 0.02
    hold_limit: float = 0.1
    log_path: Path | None = None

    def __post_init__(self) -> None:
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind((HOST, 0))
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.bind((HOST, 0))
        self._back.connect((HOST, self.server_port))
        self.port: int = self._front.getsockname()[1]
        self.stats: dict[Direction, DirectionStats] = {
            "c2s": DirectionStats(),
            "s2c": DirectionStats(),
        }
        self._rng: dict[Direction, random.Random] = {
            "c2s": random.Random(f"{self.seed}/c2s"),
            "s2c": random.Random(f"{self.seed}/s2c"),
        }
        self._client: tuple[str, int] | None = None
        self._held: dict[Direction, tuple[float, int, bytes] | None] = {"c2s": None, "s2c": None}
        self._delayed: list[tuple[float, int, Direction, bytes]] = []  # heap by due time
        self._order = itertools.count()
        self._count: dict[Direction, int] = {"c2s": 0, "s2c": 0}
        #: (seconds since start, direction, index, action, datagram) for every decision;
        #: action is "drop", "hold", "pass", "late" or "dup" (index -1 for duplicates).
        self.events: list[tuple[float, Direction, int, str, bytes]] = []
        self._stop = threading.Event()
        self._log: IO[str] | None = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> UdpRelay:
        if self.log_path is not None:
            self._log = self.log_path.open("w", encoding="utf-8")
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._front.close()
        self._back.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def describe(self) -> str:
        parts = [f"relay seed={self.seed} scope={self.loss_scope}"]
        for direction, stats in self.stats.items():
            parts.append(
                f"{direction}: in={stats.received} out={stats.forwarded} "
                f"dropped={stats.dropped} duplicated={stats.duplicated} "
                f"reordered={stats.reordered}"
            )
        if self.log_path is not None:
            parts.append(f"log: {self.log_path}")
        return "; ".join(parts)

    # -- forwarding ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            self._release_due(now)
            wait = self._next_due(now)
            readable, _, _ = select.select([self._front, self._back], [], [], wait)
            for sock in readable:
                try:
                    data, address = sock.recvfrom(65535)
                except OSError:
                    continue  # an ICMP refusal from a peer that is gone
                if sock is self._front:
                    self._client = address
                    self._arrive("c2s", data)
                else:
                    self._arrive("s2c", data)

    def _next_due(self, now: float) -> float:
        due = [when for when, *_ in self._delayed]
        due += [held[0] for held in self._held.values() if held is not None]
        return max(0.0, min(due) - now) if due else 0.05

    def _arrive(self, direction: Direction, data: bytes) -> None:
        stats = self.stats[direction]
        stats.received += 1
        index = self._count[direction]
        self._count[direction] += 1
        rules = self.c2s if direction == "c2s" else self.s2c
        rng = self._rng[direction]
        # Always three draws, so a datagram's fate depends only on its index and the seed.
        lose, duplicate, reorder = rng.random(), rng.random(), rng.random()
        losable = self.loss_scope == "all" or handshake_phase(data)
        now = time.monotonic()
        # The client's first datagram is always lost on a lossy link, so every run really
        # exercises a retransmission whatever the seed draws.
        forced = direction == "c2s" and index == 0 and rules.loss > 0
        if losable and (lose < rules.loss or forced):
            stats.dropped += 1
            self._note(direction, index, "drop", data)
            return
        held = self._held[direction]
        if held is None and reorder < rules.reorder:
            stats.reordered += 1
            self._held[direction] = (now + self.hold_limit, index, data)
            self._note(direction, index, "hold", data)
        else:
            self._forward(direction, index, data, "pass")
            if held is not None:  # the held one goes after this one: they swapped places
                self._held[direction] = None
                self._forward(direction, held[1], held[2], "late")
        if duplicate < rules.duplicate:
            stats.duplicated += 1
            entry = (now + self.duplicate_delay, next(self._order), direction, data)
            heapq.heappush(self._delayed, entry)

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, direction, data = heapq.heappop(self._delayed)
            self._forward(direction, -1, data, "dup")
        for direction, held in self._held.items():
            if held is not None and held[0] <= now:
                self._held[direction] = None
                self._forward(direction, held[1], held[2], "late")

    def _forward(self, direction: Direction, index: int, data: bytes, action: str) -> None:
        try:
            if direction == "c2s":
                self._back.send(data)
            elif self._client is not None:
                self._front.sendto(data, self._client)
            else:
                return
        except OSError:
            return  # the other side has gone: like a network would, say nothing
        self.stats[direction].forwarded += 1
        self._note(direction, index, action, data)

    def _note(self, direction: Direction, index: int, action: str, data: bytes) -> None:
        elapsed = time.monotonic() - self._started
        self.events.append((elapsed, direction, index, action, data))
        if self._log is None:
            return
        self._log.write(
            f"{elapsed:9.4f} {direction} #{index:<4d} {action:5s} {len(data):5d} {data.hex()}\n"
        )
        self._log.flush()


@contextmanager
def udp_relay(
    server_port: int,
    seed: int,
    *,
    c2s: Impairment | None = None,
    s2c: Impairment | None = None,
    loss_scope: LossScope = "handshake",
    log_path: Path | None = None,
) -> Iterator[UdpRelay]:
    """A running relay to ``server_port``; closed (thread joined, sockets closed) on exit."""
    relay = UdpRelay(
        server_port,
        seed,
        c2s=c2s or Impairment(),
        s2c=s2c or Impairment(),
        loss_scope=loss_scope,
        log_path=log_path,
    ).start()
    try:
        yield relay
    finally:
        relay.close()
