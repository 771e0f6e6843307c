"""A deterministic, seeded datagram network for DTLS tests: loss, duplication, reordering,
delay and an MTU, driving Sans-IO endpoints with a virtual clock (nothing sleeps)."""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field
from typing import Any

from protocol.connection.dtls import DTLSClientConnection
from protocol.connection.dtls_server import DTLSServer
from protocol.events import Event

CLIENT_ADDRESS = ("192.0.2.1", 40000)


@dataclass
class Link:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance a datagram takes an extra, longer delay
    delay: float = 0.02
    jitter: float = 0.01
    mtu: int | None = None  # datagrams larger than this are dropped (as a path would)


@dataclass
class Simulation:
    client: DTLSClientConnection
    server: DTLSServer
    link: Link = field(default_factory=Link)
    seed: int = 0
    now: float = field(default_factory=time.time)  # certificates are checked against it
    client_address: Any = CLIENT_ADDRESS
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    delivered: int = 0
    dropped: int = 0
    _queue: list[tuple[float, int, str, Any, bytes]] = field(default_factory=list)
    _counter: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _send(self, direction: str, address: Any, datagram: bytes) -> None:
        link, rng = self.link, self._rng
        if link.mtu is not None and len(datagram) > link.mtu:
            self.dropped += 1
            return
        copies = 2 if rng.random() < link.duplicate else 1
        for _ in range(copies):
            if rng.random() < link.loss:
                self.dropped += 1
                continue
            delay = link.delay + rng.random() * link.jitter
            if rng.random() < link.reorder:
                delay += link.delay * 3
            self._counter += 1
            heapq.heappush(
                self._queue, (self.now + delay, self._counter, direction, address, datagram)
            )

    def flush(self) -> None:
        for datagram in self.client.datagrams_to_send(self.now):
            self._send("to_server", self.client_address, datagram)
        for address, datagram in self.server.datagrams_to_send(self.now):
            self._send("to_client", address, datagram)

    def step(self) -> bool:
        """Advance to the next delivery or timer; False when nothing is left to happen."""
        self.flush()
        candidates = []
        if self._queue:
            candidates.append(self._queue[0][0])
        for timer in (self.client.next_timer(), self.server.next_timer()):
            if timer is not None:
                candidates.append(timer)
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, direction, address, datagram = heapq.heappop(self._queue)
            self.delivered += 1
            if direction == "to_server":
                events = self.server.receive_datagram(address, datagram, self.now)
                self.server_events.extend(e for _, e in events)
            else:
                self.client_events.extend(self.client.receive_datagram(datagram, self.now))
        timer = self.client.next_timer()
        if timer is not None and timer <= self.now:
            self.client_events.extend(self.client.handle_timer(self.now))
        timer = self.server.next_timer()
        if timer is not None and timer <= self.now:
            self.server_events.extend(e for _, e in self.server.handle_timer(self.now))
        self.flush()
        return True

    def run(self, *, until: float | None = None, max_steps: int = 100_000) -> None:
        deadline = None if until is None else self.now + until
        for _ in range(max_steps):
            if deadline is not None and self.now >= deadline:
                return
            if not self.step():
                return

    def run_until(self, predicate: Any, *, limit: float = 600.0) -> bool:
        deadline = self.now + limit
        while self.now < deadline:
            if predicate():
                return True
            if not self.step():
                return bool(predicate())
        return bool(predicate())

    def of(self, side: str, kind: type) -> list[Any]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, kind)]
