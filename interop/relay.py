"""A seeded lossy UDP relay: one client on one side, one server on the other.

Every handshake-phase datagram either way goes through the same decision stream, drawn from
``random.Random(seed)``: dropped (``drop``), sent twice (``duplicate``), or held back and sent
after the next datagram in the same direction (``reorder``; a held datagram is released after
``hold`` seconds at the latest, so a lone final flight is delayed, not lost). The decisions are
fixed by the seed and the datagrams' order of arrival, so a failing cell's seed (recorded in
its detail) reproduces the same pattern as far as the peers' timing allows.

    with LossyRelay(listen_port, ("127.0.0.1", server_port), seed=7) as relay:
        ...  # the client talks to 127.0.0.1:listen_port
    relay.stats  # {"forwarded": .., "dropped": .., "duplicated": .., "reordered": ..}
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

Address = tuple[str, int]


@dataclass
class Impairment:
    """Probabilities per datagram; ``first_free`` datagrams each way pass untouched (0: none)."""

    drop: float = 0.1
    duplicate: float = 0.1
    reorder: float = 0.1
    hold: float = 0.05  # seconds a reordered datagram waits for a successor
    first_free: int = 0
    # DTLS never retransmits application data (RFC 9147 §5), so impairing it would test the
    # application, not DTLS: only datagrams that start with a handshake-phase record are
    # impaired (plaintext epoch 0, or a unified header with epoch bits 2).
    handshake_only: bool = True
    # Forced actions for the n-th impaired datagram of a direction ("up": client to server),
    # so that every run drops, duplicates and reorders at least once whatever the seed.
    script: dict[tuple[str, int], str] = field(default_factory=dict)


#: What the matrix's dtls-lossy cells use: 10% each, plus one of each action for certain
#: (the server's first flight duplicated and reordered, the client's second datagram lost).
MATRIX_IMPAIRMENT = Impairment(
    drop=0.1,
    duplicate=0.1,
    reorder=0.1,
    script={("down", 1): "duplicate", ("down", 2): "reorder", ("up", 2): "drop"},
)


def handshake_phase(datagram: bytes) -> bool:
    """The datagram's first record is in epoch 0 (DTLSPlaintext: handshake 22, alert 21,
    ack 26) or epoch 2 (unified header 001CSLEE with EE = 2, RFC 9147 §4)."""
    if not datagram:
        return False
    first = datagram[0]
    if first in (21, 22, 26):
        return True
    return first & 0xE0 == 0x20 and first & 0x03 == 2


@dataclass
class RelayStats:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.forwarded} forwarded, {self.dropped} dropped, "
            f"{self.duplicated} duplicated, {self.reordered} reordered"
        )


class LossyRelay:
    """Listens on ``listen`` (127.0.0.1); the first sender there is the client, ``target`` the
    server. Runs in a daemon thread until ``close()``."""

    def __init__(
        self,
        listen_port: int,
        target: Address,
        *,
        seed: int,
        impairment: Impairment | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.target = target
        self.seed = seed
        self.impairment = impairment or Impairment()
        self.stats = RelayStats()
        self._rng = random.Random(seed)
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind((host, listen_port))
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.bind((host, 0))
        self._back.connect(target)
        self.port: int = self._front.getsockname()[1]
        self._client: Address | None = None
        # direction -> (datagram, release time) held back for reordering
        self._held: dict[str, tuple[bytes, float] | None] = {"up": None, "down": None}
        self._count = {"up": 0, "down": 0}
        self._impaired = {"up": 0, "down": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)
        self._thread.start()

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._front, self._back], [], [], 0.01)
            for sock in readable:
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:
                    continue  # ICMP unreachable from a peer that went away
                if sock is self._front:
                    if self._client is None:
                        self._client = source
                    if source != self._client:
                        continue  # one client per relay
                    self._decide("up", data)
                else:
                    self._decide("down", data)
            self._release_due()

    def _send(self, direction: str, data: bytes) -> None:
        with contextlib.suppress(OSError):
            if direction == "up":
                self._back.send(data)
            elif self._client is not None:
                self._front.sendto(data, self._client)
        self.stats.forwarded += 1

    def _decide(self, direction: str, data: bytes) -> None:
        imp = self.impairment
        self._count[direction] += 1
        roll = self._rng.random()  # drawn for every datagram: the stream depends on the seed only
        if self._count[direction] <= imp.first_free or (
            imp.handshake_only and not handshake_phase(data)
        ):
            action = "pass"
        else:
            self._impaired[direction] += 1
            scripted = imp.script.get((direction, self._impaired[direction]))
            if scripted is not None:
                action = scripted
            elif roll < imp.drop:
                action = "drop"
            elif roll < imp.drop + imp.duplicate:
                action = "duplicate"
            elif roll < imp.drop + imp.duplicate + imp.reorder:
                action = "reorder"
            else:
                action = "pass"
        self.stats.log.append(f"{direction} #{self._count[direction]} {len(data)}B {action}")
        held = self._held[direction]
        if action == "drop":
            self.stats.dropped += 1
            return
        if action == "reorder" and held is None:
            self.stats.reordered += 1
            self._held[direction] = (data, time.monotonic() + imp.hold)
            return
        self._send(direction, data)
        if action == "duplicate":
            self.stats.duplicated += 1
            self._send(direction, data)
        if held is not None:  # the held datagram goes out after this one: reordered
            self._held[direction] = None
            self._send(direction, held[0])

    def _release_due(self) -> None:
        now = time.monotonic()
        for direction, held in self._held.items():
            if held is not None and held[1] <= now:
                self._held[direction] = None
                self._send(direction, held[0])

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for sock in (self._front, self._back):
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> LossyRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def lossy_relay(
    listen_port: int, target: Address, *, seed: int, impairment: Impairment | None = None
) -> Iterator[LossyRelay]:
    relay = LossyRelay(listen_port, target, seed=seed, impairment=impairment)
    try:
        yield relay
    finally:
        relay.close()
