"""Drives two Sans-IO connections against each other through memory, recording events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.events import Event


@dataclass
class Pump:
    client: Any
    server: Any
    now: float
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    client_wire: list[bytes] = field(default_factory=list)
    server_wire: list[bytes] = field(default_factory=list)

    def run(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            to_server = self.client.data_to_send()
            if to_server:
                self.client_wire.append(to_server)
                self.server_events += self.server.receive_data(to_server, self.now)
            to_client = self.server.data_to_send()
            if to_client:
                self.server_wire.append(to_client)
                self.client_events += self.client.receive_data(to_client, self.now)
            if not to_server and not to_client:
                return

    def of(self, side: str, kind: type) -> list[Any]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, kind)]
