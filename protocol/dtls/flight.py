"""Reliable delivery of handshake flights over datagrams (RFC 9147 §5.8, §7).

A ``Flight`` holds the handshake messages of one flight (or one post-handshake message),
already cut into DTLS handshake fragments. Each transmission puts the fragments not yet
acknowledged into fresh records; the flight remembers which record carried which fragment,
so an ACK (§7.2) removes exactly those fragments from later retransmissions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from handshake.actions import InstallKeys
from records.record_numbers import RecordNumber


class FlightState(Enum):
    """RFC 9147 §5.8.1 (PREPARING is the time between creating a flight and sending it)."""

    PREPARING = "PREPARING"
    SENDING = "SENDING"
    WAITING = "WAITING"
    FINISHED = "FINISHED"


@dataclass(slots=True)
class Fragment:
    epoch: int
    data: bytes  # a whole DTLS handshake fragment: 12-byte header and body
    acked: bool = False


@dataclass
class Flight:
    """One flight and its retransmission state."""

    label: str
    # True when nothing answers this flight, so only an explicit ACK completes it (§5.7
    # note 1: the client's final flight, NewSessionTicket, KeyUpdate, CID messages).
    needs_ack: bool
    fragments: list[Fragment] = field(default_factory=list)
    records: dict[RecordNumber, list[int]] = field(default_factory=dict)
    state: FlightState = FlightState.PREPARING
    timeout: float = 1.0
    deadline: float | None = None
    retransmissions: int = 0
    # Keys to switch to once acknowledged (§8: a KeyUpdate's new sending keys wait for it).
    on_ack: InstallKeys | None = None
    # The peer's next flight has begun to arrive: that acknowledges this one (§7), but its
    # timer keeps running until the peer's flight is complete, so a partial answer cannot
    # leave us waiting forever (§5.8.1); the peer's own retransmissions no longer prompt ours.
    answered: bool = False
    # Set once unanswered retransmissions made us cut the flight smaller (RFC 9147 §4.4):
    # the largest datagram it may use from then on.
    datagram_limit: int | None = None

    def pending(self) -> list[int]:
        return [i for i, f in enumerate(self.fragments) if not f.acked]

    @property
    def complete(self) -> bool:
        return self.state is FlightState.FINISHED

    def carried(self, number: RecordNumber, indices: list[int]) -> None:
        self.records[number] = indices

    def acknowledge(self, numbers: list[RecordNumber]) -> bool:
        """Mark fragments carried by these records; True if anything new was acknowledged.

        §7.2: a record counts as acknowledged if it appears in any ACK.
        """
        progress = False
        for number in numbers:
            for index in self.records.get(number, ()):
                fragment = self.fragments[index]
                if not fragment.acked:
                    fragment.acked = True
                    progress = True
        if not self.pending():
            self.finish()
        return progress

    def shrink(self, split: Callable[[bytes], list[bytes]]) -> None:
        """Re-cut the unacknowledged fragments with ``split``; ACKs of records sent before
        still acknowledge every piece of what they carried."""
        fragments: list[Fragment] = []
        new_indices: list[list[int]] = []
        for fragment in self.fragments:
            pieces = [fragment.data] if fragment.acked else split(fragment.data)
            start = len(fragments)
            fragments.extend(Fragment(fragment.epoch, p, fragment.acked) for p in pieces)
            new_indices.append(list(range(start, len(fragments))))
        self.fragments = fragments
        self.records = {
            number: [i for old in olds for i in new_indices[old]]
            for number, olds in self.records.items()
        }

    def finish(self) -> None:
        """All of it arrived (ACKed, or implicitly by the peer's next flight): no more
        retransmissions (§5.8.1)."""
        self.state = FlightState.FINISHED
        self.deadline = None

    def armed(self, now: float, timeout: float) -> None:
        self.state = FlightState.WAITING
        self.timeout = timeout
        self.deadline = now + timeout
