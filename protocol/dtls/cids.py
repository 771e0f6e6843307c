"""Connection IDs after the handshake: NewConnectionId and RequestConnectionId (RFC 9147 §9).

The handshake negotiates one CID each way (RFC 9146 via the ``connection_id`` extension).
Afterwards either side may hand the other more CIDs to put on its records (NewConnectionId,
"cid_immediate" or "cid_spare") or ask for some (RequestConnectionId). This module holds the
bookkeeping and the rules; ``DTLSConnection`` sends and receives the messages, which travel as
post-handshake flights acknowledged by ACKs (§5.8.4).

* ``peer`` CIDs are the peer's: we send them. ``own`` CIDs are ours: the peer sends them and
  our record layer (and ``DTLSServer``'s demultiplexer) accepts every one we issued.
* Every CID of a connection has the length negotiated in the handshake: the unified header
  does not encode it (RFC 9147 §4), so a receiver could not parse another length.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from handshake.alerts import AlertDescription, HandshakeError
from handshake.messages import NewConnectionId

# Spare CIDs of the peer's we keep (RFC 9147 §9: extra ones "MAY simply" be discarded).
MAX_SPARE_PEER_CIDS = 8
# CIDs of ours the peer may use at once: a bound on what a RequestConnectionId obtains.
MAX_OWN_CIDS = 16
# RequestConnectionId messages answered before too_many_cids_requested (§9 MAY).
MAX_CID_REQUESTS = 64
CID_IMMEDIATE, CID_SPARE = 0, 1


def fresh_cid(length: int, taken: Callable[[bytes], bool] | None) -> bytes | None:
    """A random CID of ``length`` bytes for which ``taken`` is false (a server's other
    associations' CIDs, ours already issued): a shared CID would route datagrams to the
    wrong association. None when every CID of that length is taken."""
    cid = os.urandom(length)
    if not cid or taken is None:
        return cid
    for _ in range(16):
        if not taken(cid):
            return cid
        cid = os.urandom(length)
    if length <= 2:  # a small space may be nearly full: look through all of it
        size = 1 << (8 * length)
        start = int.from_bytes(cid, "big")
        for step in range(size):
            candidate = ((start + step) % size).to_bytes(length, "big")
            if not taken(candidate):
                return candidate
    return None


def _unexpected(reason: str) -> HandshakeError:
    return HandshakeError(AlertDescription.unexpected_message, reason)


class ConnectionIds:
    """The CIDs of one DTLS association in both directions."""

    __slots__ = (
        "_taken",
        "deferred_request",
        "fresh_own",
        "own",
        "peer_current",
        "peer_spares",
        "request_unfulfilled",
        "requests_received",
    )

    def __init__(self) -> None:
        self.peer_current: bytes | None = None  # None: no CID negotiated
        self.peer_spares: deque[bytes] = deque()
        self.own: list[bytes] = []  # every CID of ours the peer may use; [] = none (or empty)
        self.fresh_own: list[bytes] = []  # issued since a demultiplexer last looked
        self.requests_received = 0
        self.request_unfulfilled = False  # our RequestConnectionId awaits a NewConnectionId
        self.deferred_request = 0  # CIDs the peer asked for while our last offer was un-ACKed
        self._taken: Callable[[bytes], bool] | None = None

    @property
    def negotiated(self) -> bool:
        return self.peer_current is not None

    def negotiated_with(self, peer_cid: bytes, own_cid: bytes | None) -> None:
        """The handshake's outcome: we send ``peer_cid`` (b"": none), the peer sends ours."""
        self.peer_current = peer_cid
        self.own = [own_cid] if own_cid else []

    def set_taken(self, taken: Callable[[bytes], bool] | None) -> None:
        """A check for CIDs already used elsewhere (a server's other associations)."""
        self._taken = taken

    # -- rules on what we may send (RFC 9147 §9) -----------------------------------------

    def check_can_issue(self) -> None:
        """NewConnectionId: only with a negotiated, non-empty CID of our own."""
        if not self.negotiated or not self.own:
            raise ValueError("no non-empty Connection ID of ours was negotiated (RFC 9147 §9)")

    def check_can_request(self) -> None:
        """RequestConnectionId: only while we send a non-empty CID, one request at a time."""
        if not self.peer_current:
            raise ValueError(
                "RequestConnectionId needs a negotiated, non-empty peer CID (RFC 9147 §9)"
            )
        if self.request_unfulfilled:
            raise ValueError("the previous RequestConnectionId is not fulfilled yet (§9)")

    def issue(self, count: int) -> list[bytes]:
        """Up to ``count`` fresh CIDs of ours (fewer once MAX_OWN_CIDS are live)."""
        self.check_can_issue()
        length = len(self.own[0])
        count = max(0, min(count, MAX_OWN_CIDS - len(self.own)))
        fresh: list[bytes] = []
        outside = self._taken

        def taken(cid: bytes) -> bool:
            return cid in self.own or cid in fresh or (outside is not None and outside(cid))

        while len(fresh) < count:
            cid = fresh_cid(length, taken)
            if cid is None:
                break  # this length has no CID left: hand out fewer (§9 allows it)
            fresh.append(cid)
        self.own.extend(fresh)
        self.fresh_own.extend(fresh)
        return fresh

    def take_fresh(self) -> list[bytes]:
        fresh, self.fresh_own = self.fresh_own, []
        return fresh

    # -- what the peer sends -------------------------------------------------------------

    def on_new_connection_id(self, msg: NewConnectionId) -> bytes | None:
        """Take the peer's NewConnectionId; returns the CID to send from now on, if it
        changes (cid_immediate)."""
        if not self.peer_current:
            # §9: a peer that did not negotiate a CID, or asked for an empty one, MUST NOT
            # send NewConnectionId.
            raise _unexpected("NewConnectionId without a negotiated non-empty CID")
        length = len(self.peer_current)
        if any(len(cid) != length for cid in msg.cids):
            # The length is fixed for the association (§4): another one could not be parsed
            # by the peer itself, and an empty one would turn CIDs off mid-association.
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"NewConnectionId carries a CID whose length is not the negotiated {length}",
            )
        self.request_unfulfilled = False
        cids = list(msg.cids)
        switch_to: bytes | None = None
        if msg.usage == CID_IMMEDIATE:
            if not cids:
                raise HandshakeError(
                    AlertDescription.illegal_parameter, "cid_immediate without any CID"
                )
            switch_to = cids.pop(0)  # §9: one of them MUST be used at once; take the first
            self.peer_current = switch_to
        for cid in cids:
            if len(self.peer_spares) >= MAX_SPARE_PEER_CIDS:
                break  # §9: extra CIDs "MAY simply" be discarded; the oldest are used first
            if cid != self.peer_current and cid not in self.peer_spares:
                self.peer_spares.append(cid)
        return switch_to

    def on_request_connection_id(self, num_cids: int) -> None:
        """Validate the peer's RequestConnectionId (the caller answers it)."""
        if not self.negotiated or not self.own:
            # §9: a peer that sends an empty CID (or none) MUST NOT request CIDs.
            raise _unexpected("RequestConnectionId without a negotiated non-empty CID")
        self.requests_received += 1
        if self.requests_received > MAX_CID_REQUESTS:
            raise HandshakeError(
                AlertDescription.too_many_cids_requested,
                f"more than {MAX_CID_REQUESTS} RequestConnectionId messages",
            )

    def next_spare(self) -> bytes:
        """The peer's oldest spare CID becomes the one we send (§9: in the order given)."""
        if not self.peer_spares:
            raise ValueError("no spare Connection ID from the peer")
        self.peer_current = self.peer_spares.popleft()
        return self.peer_current
