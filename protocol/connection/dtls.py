"""DTLS 1.3 connections over datagrams, Sans-IO (RFC 9147).

The same handshake state machines as TLS run underneath; this module adds what datagrams
need: handshake fragmentation to the path MTU and reassembly (§5.5), flights with
retransmission and exponential backoff (§5.8), ACKs (§7), KeyUpdate's ACK rule (§8),
Connection IDs (§9) and the stateless cookie exchange (§5.1).

The driver feeds datagrams with ``receive_datagram(data, now)``, sends what
``datagrams_to_send(now)`` returns, and calls ``handle_timer(now)`` once ``next_timer()``
has passed. Nothing here sleeps, reads a clock or touches a socket.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from handshake.actions import (
    Action,
    ConnectionIdNegotiated,
    EarlyDataDecision,
    HandshakeFinished,
    InstallKeys,
    KeyUpdateReceived,
    LogSecret,
    NegotiatedParameters,
    NewSession,
    SendChangeCipherSpec,
    SendMessage,
)
from handshake.alerts import AlertDescription, AlertLevel, HandshakeError
from handshake.client import ClientHandshake
from handshake.common import parse_message
from handshake.messages import NewConnectionId, RequestConnectionId, encode_message
from handshake.psk import Session
from handshake.server import RetryParameters, ServerHandshake
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.negotiated import handshake_complete_event
from protocol.connection.tls import DEFAULT_PORT, resolve_session
from protocol.dtls.cids import CID_IMMEDIATE, CID_SPARE, ConnectionIds, fresh_cid
from protocol.dtls.cookie import CookieSealer, HelloCollector, address_bytes
from protocol.dtls.flight import Flight, FlightState, Fragment
from protocol.dtls.fragments import (
    MAX_MESSAGE_SEQ,
    FragmentError,
    HandshakeReassembler,
    fragment_message,
    split_fragment,
)
from protocol.errors import ConnectionStateError, ProtocolError
from protocol.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionIdsReceived,
    EarlyDataReceived,
    Event,
    KeyUpdated,
    SessionTicketReceived,
)
from protocol.trace import TraceEvent, content_type_name, handshake_name
from records.aead import RecordCipher
from records.content_types import ContentType
from records.dtls_epoch import DTLSEpochCipher
from records.dtls_layer import DTLSRecord, DTLSRecordLayer
from records.errors import RecordError
from records.record_numbers import RecordNumber, decode_ack, encode_ack

State = Literal["handshaking", "connected", "closed", "failed"]

# IPv6 + UDP headers: what a path MTU leaves for the DTLS datagram (RFC 9147 §4.4).
IP_UDP_OVERHEAD = 48
# Application data that arrives before the peer's Finished is held, not lost (§5.8.1).
MAX_EARLY_APPLICATION_RECORDS = 32
# RFC 9147 §4.4: after this many unanswered retransmissions a flight goes out in smaller
# records and datagrams ("2-3 seems appropriate"), at most SMALL_DATAGRAM bytes: what any
# IPv4 path carries (576-byte datagrams less IP and UDP headers).
BACKOFF_AFTER_RETRANSMISSIONS = 2
SMALL_DATAGRAM = 548
# RFC 9147 §5.10: our fatal alert is sent again when the peer keeps sending (it may have
# lost the first, alerts are never retransmitted), this many times at most.
MAX_REPEATED_ALERTS = 3
# RFC 9147 §5.8.1 suggests an ACK timer of 1/4 of the retransmission timer.
ACK_DELAY_FRACTION = 0.25
# Handshake message types that are single-message post-handshake flights needing an ACK.
_POST_HANDSHAKE_ACKED = {
    4,
    9,
    10,
    24,
}  # NewSessionTicket, RequestConnectionId, NewConnectionId, KeyUpdate
_REQUEST_CONNECTION_ID, _NEW_CONNECTION_ID, _KEY_UPDATE = 9, 10, 24


def _carries(flight: Flight, msg_type: int) -> bool:
    return any(f.data[0] == msg_type for f in flight.fragments)


class DTLSConnection:
    """What DTLS clients and servers share."""

    is_client: bool

    def __init__(
        self,
        handshake: ClientHandshake | ServerHandshake,
        config: ClientConfig | ServerConfig,
    ) -> None:
        self._hs = handshake
        self._config = config
        self._layer = DTLSRecordLayer()
        self._reassembler = HandshakeReassembler()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._state: State = "handshaking"
        self._keylog = config.open_keylog()
        self._trace = config.trace
        self._payload_limit = max(config.mtu - IP_UDP_OVERHEAD, 64)
        self._send_seq = 0  # next message_seq we assign (RFC 9147 §5.2)
        self._flight: Flight | None = None  # the handshake flight in progress
        self._post_flights: list[Flight] = []  # post-handshake messages awaiting ACK (§5.8.4)
        self._new_flight: Flight | None = None  # being assembled from handshake actions
        self._incoming: list[RecordNumber] = []  # handshake records of the peer's current flight
        self._ack_deadline: float | None = None
        self._peer_finished = False
        self._held_application: list[bytes] = []
        self._close_sent = False
        self._pending_write_keys: InstallKeys | None = None
        self.parameters: NegotiatedParameters | None = None
        self.error: ProtocolError | None = None
        self.retransmissions = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.handshake_round_trips = 0
        self.cid_sent: bytes | None = None  # the CID we put on records (the peer's)
        self.cid_received: bytes | None = None  # the CID the peer puts on records (ours)
        self._bytes_in = 0
        self._bytes_out = 0
        self._now = 0.0  # the latest time the driver told us
        self._own_cid: bytes | None = None  # the CID we ask the peer to use (RFC 9146)
        self._cids = ConnectionIds()  # both directions' CIDs after the handshake (§9)
        self._peer_update_requested_at = -1  # read epoch whose integrity limit we reported
        self._alerts_repeated = 0
        self._peer_updated_in_epoch: int | None = None  # where the peer's last KeyUpdate came
        self.address_validated = True
        # RFC 8446 §4.2.10: bytes of accepted 0-RTT (epoch 1) data the server may still read.
        self._early_budget: int | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def handshake_complete(self) -> bool:
        return self.parameters is not None

    @property
    def mtu(self) -> int:
        """The configured path MTU: datagrams carry at most ``mtu`` - 48 bytes (D1)."""
        return self._config.mtu

    def receive_datagram(self, data: bytes, now: float) -> list[Event]:
        """Process one datagram from the peer; invalid records in it are dropped (§4.5.2)."""
        if self._state in ("failed", "closed"):
            self._repeat_alert()
            return self._take_events()
        self._now = now
        self.datagrams_received += 1
        self._bytes_in += len(data)
        try:
            # Lazily: a record's new keys (or CID) apply to the ones after it (§4.3).
            for record in self._layer.iter_datagram(data):
                if self._state in ("failed", "closed"):
                    break
                self._handle_record(record, now)
            self._after_input(now)
        except HandshakeError as exc:
            self._fail(exc.alert, exc.reason)
        except FragmentError as exc:
            self._fail(AlertDescription(exc.alert), exc.reason)
        except RecordError as exc:
            self._fail(AlertDescription(exc.alert), exc.reason)
        return self._take_events()

    def datagrams_to_send(self, now: float | None = None) -> list[bytes]:
        """The datagrams to put on the wire now, each at most the path MTU's payload."""
        out = self._out
        if not self.address_validated:
            # RFC 9147 §5.1: at most three times what the unvalidated address sent us.
            # The base of 1200 bytes (QUIC's rule, RFC 9000 §8.1) lets a flight out even
            # to a client whose small hello and plaintext ACKs alone would stall it.
            budget = 3 * max(self._bytes_in, 1200) - self._bytes_out
            allowed: list[bytes] = []
            while out and len(out[0]) <= budget:
                budget -= len(out[0])
                allowed.append(out.pop(0))
            out, self._out = allowed, out
        else:
            self._out = []
        for datagram in out:
            self._bytes_out += len(datagram)
        self.datagrams_sent += len(out)
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (None: no timer running)."""
        if self._state in ("failed", "closed"):
            return None  # handle_timer does nothing any more
        deadlines = [f.deadline for f in self._live_flights() if f.deadline is not None]
        if self._ack_deadline is not None:
            deadlines.append(self._ack_deadline)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Event]:
        self._now = now
        if self._state in ("failed", "closed"):
            return self._take_events()
        try:
            if self._ack_deadline is not None and now >= self._ack_deadline:
                self._send_ack()
            for flight in self._live_flights():
                if flight.deadline is not None and now >= flight.deadline:
                    self._retransmit(flight, now)
                    if self._state == "failed":
                        break
        except RecordError as exc:
            self._fail(AlertDescription(exc.alert), exc.reason)
        return self._take_events()

    def send_data(self, data: bytes) -> None:
        """Queue application data: one record per datagram-sized piece (epoch 3 or later)."""
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError(f"cannot send application data in state {self._state}")
        limit = self._layer.write_limit - 1
        step = min(limit, self._payload_limit - self._layer.record_overhead())
        view = memoryview(data)
        for start in range(0, len(data), step):
            self._emit(ContentType.application_data, bytes(view[start : start + step]))
        if not data:
            self._emit(ContentType.application_data, b"")
        self.bytes_sent += len(data)
        if self._layer.write_key_update_due:
            self._rekey_before_limits()

    def key_update(self, request_peer_update: bool = True) -> None:
        """Send KeyUpdate; our new keys take effect once the peer ACKs it (RFC 9147 §8)."""
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError("KeyUpdate needs an open, established connection")
        if self._key_update_outstanding():
            raise ConnectionStateError("the previous KeyUpdate is not acknowledged yet (§8)")
        self._check_message_seq_left()
        self._apply(self._hs.request_key_update(request_peer_update), self._now)
        self._events.append(KeyUpdated("send", request_peer_update, self._layer.write_epoch + 1))

    # -- Connection IDs (RFC 9147 §9) --------------------------------------------------------

    @property
    def connection_ids_issued(self) -> tuple[bytes, ...]:
        """Every CID of ours the peer may put on its records (the negotiated one first)."""
        return tuple(self._cids.own)

    @property
    def spare_connection_ids(self) -> tuple[bytes, ...]:
        """CIDs the peer gave us for later (NewConnectionId with cid_spare), oldest first."""
        return tuple(self._cids.peer_spares)

    def issue_connection_ids(self, count: int, *, immediate: bool = False) -> tuple[bytes, ...]:
        """Send NewConnectionId with ``count`` fresh CIDs of ours (§9); with ``immediate``
        the peer must switch to the first at once. We accept all of them from now on.

        Needs a negotiated non-empty CID of ours; one NewConnectionId at a time (§5.8.4).
        """
        self._check_post_handshake_send(_NEW_CONNECTION_ID, "NewConnectionId")
        if not 0 < count <= 255:
            raise ValueError("count must be 1..255")
        try:
            fresh = self._cids.issue(count)
        except ValueError as exc:
            raise ConnectionStateError(str(exc)) from exc
        if immediate and not fresh:
            raise ConnectionStateError("no CID left to issue (the peer holds the maximum)")
        self._send_new_connection_id(fresh, CID_IMMEDIATE if immediate else CID_SPARE)
        return tuple(fresh)

    def request_connection_ids(self, count: int = 1) -> None:
        """Send RequestConnectionId (§9): ask the peer for ``count`` spare CIDs, which
        arrive as a ``ConnectionIdsReceived`` event. One request at a time."""
        self._check_post_handshake_send(_REQUEST_CONNECTION_ID, "RequestConnectionId")
        if not 0 < count <= 255:
            raise ValueError("count must be 1..255")
        try:
            self._cids.check_can_request()
        except ValueError as exc:
            raise ConnectionStateError(str(exc)) from exc
        self._cids.request_unfulfilled = True
        self._send_post_handshake(encode_message(RequestConnectionId(count), dtls=True))

    def switch_connection_id(self) -> bytes:
        """Put the peer's oldest spare CID on our records from now on, e.g. before sending
        from a new address (§9: "SHOULD use a new CID whenever sending on a new path")."""
        if self._state != "connected":
            raise ConnectionStateError("no established connection")
        try:
            cid = self._cids.next_spare()
        except ValueError as exc:
            raise ConnectionStateError(str(exc)) from exc
        self._set_send_cid(cid)
        return cid

    def take_new_connection_ids(self) -> list[bytes]:
        """CIDs of ours issued since the last call (a demultiplexer registers them)."""
        return self._cids.take_fresh() if self._cids.fresh_own else []

    def close(self) -> None:
        """Send close_notify (alerts are not retransmitted, RFC 9147 §5.10)."""
        if self._close_sent or self._state == "failed":
            return
        self._send_alert(AlertDescription.close_notify)
        self._close_sent = True
        self._state = "closed"

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        return self._hs.export_keying_material(label, context, length)

    @property
    def record_stats(self) -> object:
        return self._layer.stats

    # -- input -------------------------------------------------------------------------------

    def _handle_record(self, record: DTLSRecord, now: float) -> None:
        ctype = record.content_type
        if record.epoch >= 2 and not self.address_validated:
            # Only a client that received our ServerHello can protect a record with the
            # handshake keys: its address is proven (RFC 9147 §5.1).
            self.address_validated = True
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "received",
                    "record",
                    record.epoch,
                    content_type_name(ctype),
                    len(record.payload),
                    detail=f"record {record.epoch}:{record.seq}",
                    data=record.payload,
                )
            )
        if ctype == ContentType.handshake:
            self._handle_handshake(record, now)
        elif ctype == ContentType.ack:
            self._handle_ack(record)
        elif ctype == ContentType.application_data:
            self._handle_application(record)
        elif ctype == ContentType.alert:
            self._handle_alert(record)
        # Anything else (e.g. a ChangeCipherSpec, which DTLS 1.3 never sends, §5) is an
        # invalid record: dropped silently (§4.5.2).

    def _handle_handshake(self, record: DTLSRecord, now: float) -> None:
        result = self._reassembler.add_record(record.payload)
        number = RecordNumber(record.epoch, record.seq)
        if result.retransmission_seen and not result.new_messages:
            self._peer_retransmitted(number, now)
            return
        # §7: never ACK a record whose fragments were dropped rather than processed/buffered.
        if result.acknowledgeable and (record.epoch > 0 or self.handshake_complete):
            self._incoming.append(number)
        if result.out_of_order:
            # §7.1: a gap is a sign of disruption: tell the peer what we hold.
            self._ack_deadline = now
        while (item := self._reassembler.next_message()) is not None:
            _, message = item
            self._trace_message("received", record.epoch, message)
            if self.handshake_complete and record.epoch == self._peer_updated_in_epoch:
                # RFC 9147 §8: "After sending KeyUpdate in an epoch, implementations MUST NOT
                # send any new post-handshake messages in that epoch."
                raise HandshakeError(
                    AlertDescription.unexpected_message,
                    f"{handshake_name(message[0])} after the peer's KeyUpdate in epoch "
                    f"{record.epoch}",
                )
            if self.handshake_complete and message[0] == _KEY_UPDATE:
                self._peer_updated_in_epoch = record.epoch
            self._on_message(message, now)
            if self._state == "failed":
                return
            if self.handshake_complete and message[0] in _POST_HANDSHAKE_ACKED:
                self._ack_deadline = now  # §7: post-handshake messages are ACKed at once

    def _on_message(self, message: bytes, now: float) -> None:
        if self.handshake_complete and message[0] in (_REQUEST_CONNECTION_ID, _NEW_CONNECTION_ID):
            # DTLS-only record-layer business, outside the TLS handshake state machine.
            self._on_cid_message(message)
            return
        flight = self._flight
        if flight is not None and not flight.needs_ack and not flight.complete:
            # §7: a message of the peer's next flight acknowledges our previous one; the
            # flight finishes when we send our next one or the handshake completes, and until
            # then its timer stands in for the rest of the peer's flight (§5.8.1).
            flight.answered = True
        if message[0] == 1 and not self.is_client:
            self.handshake_round_trips += 1
        keys = self._hs.application_keys
        if keys is not None:
            # §8: while our own KeyUpdate awaits its ACK we may not send another; it already
            # moves our keys forward, which is what a peer's update_requested asks for.
            keys.answer_update_requests = not self._key_update_outstanding()
        self._apply(self._hs.handle(message, now), now)

    @property
    def key_update_pending(self) -> bool:
        """Our KeyUpdate awaits its ACK (RFC 9147 §8): ``key_update()`` would raise, and a
        peer's update_requested is not answered with another one."""
        return self._key_update_outstanding()

    def _key_update_outstanding(self) -> bool:
        """Our KeyUpdate's new keys are not in use yet (§8: it, and every message before
        it, must be acknowledged first)."""
        return any(f.on_ack is not None for f in self._post_flights)

    def _on_cid_message(self, message: bytes) -> None:
        msg = parse_message(message, dtls=True, hash_len=32)
        if isinstance(msg, NewConnectionId):
            switch_to = self._cids.on_new_connection_id(msg)
            if switch_to is not None:
                self._set_send_cid(switch_to)  # §9 cid_immediate: "for all future records"
            self._events.append(ConnectionIdsReceived(msg.cids, msg.usage == CID_IMMEDIATE))
        elif isinstance(msg, RequestConnectionId):
            self._cids.on_request_connection_id(msg.num_cids)
            if self._outstanding(_NEW_CONNECTION_ID) or self._key_update_outstanding():
                # §5.8.4: one NewConnectionId at a time; §8: nothing after our KeyUpdate in
                # its epoch. Answer once the ACK comes.
                self._cids.deferred_request = max(self._cids.deferred_request, msg.num_cids)
            else:
                self._answer_cid_request(msg.num_cids)

    def _answer_cid_request(self, num_cids: int) -> None:
        # §9: SHOULD answer with cid_spare "as soon as possible"; fewer (even none) when the
        # request is excessive, which also tells the peer its request is fulfilled.
        self._send_new_connection_id(self._cids.issue(num_cids), CID_SPARE)

    def _send_new_connection_id(self, cids: list[bytes], usage: int) -> None:
        self._layer.set_receive_cids(self._cids.own)
        self._send_post_handshake(encode_message(NewConnectionId(tuple(cids), usage), dtls=True))

    def _send_post_handshake(self, message: bytes) -> None:
        self._apply([SendMessage(self._layer.write_epoch, message)], self._now)

    def _check_post_handshake_send(self, msg_type: int, name: str) -> None:
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError(f"{name} needs an open, established connection")
        if self._outstanding(msg_type):
            raise ConnectionStateError(f"the previous {name} is not acknowledged yet (§5.8.4)")
        if self._key_update_outstanding():
            # RFC 9147 §8: "After sending KeyUpdate in an epoch, implementations MUST NOT send
            # any new post-handshake messages in that epoch."
            raise ConnectionStateError(f"{name} waits for our KeyUpdate's acknowledgement (§8)")
        self._check_message_seq_left()

    def _check_message_seq_left(self) -> None:
        if self._send_seq > MAX_MESSAGE_SEQ:
            raise ConnectionStateError(
                "message_seq is exhausted: only a new association can send handshake messages "
                "(RFC 9147 §5.2)"
            )

    def _outstanding(self, msg_type: int) -> bool:
        return any(_carries(f, msg_type) for f in self._post_flights if not f.complete)

    def _set_send_cid(self, cid: bytes) -> None:
        self._layer.send_cid = cid
        self.cid_sent = cid

    def _peer_retransmitted(self, number: RecordNumber, now: float) -> None:
        """The peer resent something we already processed: it lost our answer (§5.8.1)."""
        flight = self._flight
        if (
            flight is not None
            and not flight.complete
            and not flight.answered
            and flight.state is FlightState.WAITING
        ):
            self._retransmit(flight, now, count=False)
            return
        if self.handshake_complete:
            # Our ACK of its final flight (or of a post-handshake message) went missing.
            self._incoming.append(number)
            self._ack_deadline = now

    def _handle_ack(self, record: DTLSRecord) -> None:
        numbers = decode_ack(record.payload)
        if numbers:
            # RFC 9147 §7.2 (bis): during the handshake an ACK never names an epoch above its
            # own record's. After it each side's epoch moves on its own (one-sided KeyUpdates,
            # §8), so the peer may ACK our newer records from an older epoch: there the bound
            # is what we have sent (D19).
            limit = self._layer.write_epoch if self.handshake_complete else record.epoch
            if max(n.epoch for n in numbers) > limit:
                raise HandshakeError(
                    AlertDescription.illegal_parameter, "ACK names a record of a later epoch"
                )
        for flight in self._live_flights():
            # An ACK of part of a flight leaves the rest to the retransmission timer, which
            # then resends only what is missing (§5.8.1 allows resending at once; waiting
            # avoids duplicating fragments that are merely still on their way).
            flight.acknowledge(numbers)
        self._install_acknowledged_updates()
        # (A KeyUpdate whose keys wait for earlier messages stays listed.)
        self._post_flights = [
            f for f in self._post_flights if not f.complete or f.on_ack is not None
        ]
        deferred = self._cids.deferred_request
        if (
            deferred
            and self._state == "connected"
            and not self._outstanding(_NEW_CONNECTION_ID)
            and not self._key_update_outstanding()
        ):
            self._cids.deferred_request = 0
            self._answer_cid_request(deferred)

    def _install_acknowledged_updates(self) -> None:
        """RFC 9147 §8: "MUST NOT send records with the new keys until the KeyUpdate and
        all preceding messages have been acknowledged": in send order, up to the first
        message still unacknowledged."""
        if self._flight is not None and not self._flight.complete:
            return  # the handshake's own final flight comes first
        for flight in self._post_flights:
            if not flight.complete:
                return
            if flight.on_ack is not None:
                keys, flight.on_ack = flight.on_ack, None
                self._install(keys)

    def _handle_application(self, record: DTLSRecord) -> None:
        if record.epoch == 1:
            self._handle_early_data(record.payload)
            return
        if record.epoch >= 3 and 1 in self._layer.read_epochs:
            # RFC 9147 §5.6: epoch 1 is not accepted indefinitely once epoch 3 data flows.
            self._layer.drop_read_epoch(1)
        if not self._peer_finished:
            # §5.8.1: data of epoch 3 may overtake the peer's Finished; hold a little.
            if len(self._held_application) < MAX_EARLY_APPLICATION_RECORDS:
                self._held_application.append(record.payload)
            return
        self.bytes_received += len(record.payload)
        self._events.append(ApplicationData(record.payload))

    def _handle_early_data(self, payload: bytes) -> None:
        budget = self._early_budget
        if self.is_client or budget is None:
            return  # invalid record (§4.5.2)
        if len(payload) > budget:
            # RFC 8446 §4.2.10: more 0-RTT data than max_early_data_size.
            raise HandshakeError(
                AlertDescription.unexpected_message, "early data exceeds max_early_data_size"
            )
        self._early_budget = budget - len(payload)
        self.bytes_received += len(payload)
        self._events.append(EarlyDataReceived(payload))

    def _handle_alert(self, record: DTLSRecord) -> None:
        payload = record.payload
        if len(payload) != 2:
            return  # invalid record (§4.5.2)
        try:
            description = AlertDescription(payload[1])
        except ValueError:
            description = None
        if description is AlertDescription.close_notify:
            self._events.append(ConnectionClosed())
            if not self._close_sent:
                self.close()
            self._state = "closed"
            return
        if description is AlertDescription.user_canceled:
            self._events.append(AlertReceived(description))
            return
        alert = description or AlertDescription.illegal_parameter
        reason = f"peer sent alert {alert.name}"
        self.error = ProtocolError(alert, reason, by_peer=True)
        self._state = "failed"
        self._events.append(ConnectionFailed(alert, reason, by_peer=True))

    def _rekey_before_limits(self) -> None:
        """RFC 9147 §4.5.3: start a KeyUpdate before our write key reaches its
        confidentiality limit, and ask for the peer's (update_requested) before our read key
        reaches its integrity limit, once per read epoch. At most one KeyUpdate is in flight
        (§8); the soft limits (3/4) leave room for the records sent until its ACK."""
        layer = self._layer
        if (
            self._state != "connected"
            or self._close_sent
            or self._key_update_outstanding()
            or self._send_seq > MAX_MESSAGE_SEQ  # no KeyUpdate can be sent any more (§5.2)
        ):
            return
        read_epoch = layer.read_epochs[-1] if layer.read_epochs else -1
        ask = layer.request_peer_update and read_epoch != self._peer_update_requested_at
        if not (ask or layer.write_key_update_due):
            return
        if ask:
            self._peer_update_requested_at = read_epoch
        self.key_update(request_peer_update=ask)

    def _after_input(self, now: float) -> None:
        """Decide about ACKs for a partly received flight (§7.1)."""
        if self._state == "connected" and self._layer.needs_key_update:
            self._rekey_before_limits()
        if self._new_flight is not None:
            self._send_flight(now)
        if self._incoming and self._ack_deadline is None and not self.handshake_complete:
            # Part of the peer's flight came and nothing we send answers it yet.
            self._ack_deadline = now + self._config.retransmit_initial * ACK_DELAY_FRACTION
        if self._ack_deadline is not None and self._ack_deadline <= now:
            self._send_ack()

    # -- actions from the handshake -----------------------------------------------------------

    def _apply(self, actions: list[Action], now: float | None) -> None:
        for action in actions:
            if isinstance(action, SendMessage):
                self._queue_message(action)
            elif isinstance(action, InstallKeys):
                if (
                    action.direction == "write"
                    and self.handshake_complete
                    and self._new_flight is not None
                ):
                    # §8: KeyUpdate's new sending keys wait for its ACK.
                    self._new_flight.on_ack = action
                else:
                    self._install(action)
            elif isinstance(action, ConnectionIdNegotiated):
                self._use_peer_cid(action.peer_cid)
            elif isinstance(action, LogSecret):
                if self._keylog is not None:
                    self._keylog(action.label, self._hs.client_random, action.secret)
            elif isinstance(action, HandshakeFinished):
                self._on_handshake_finished(action.parameters)
            elif isinstance(action, KeyUpdateReceived):
                self._events.append(
                    KeyUpdated("receive", action.update_requested, self._layer.read_epochs[-1])
                )
            elif isinstance(action, SendChangeCipherSpec):
                pass  # RFC 9147 §5: never in DTLS (the handshake does not ask for it)
            elif isinstance(action, EarlyDataDecision):
                if not self.is_client and action.accepted:
                    self._early_budget = action.max_size
                # Rejected 0-RTT records have an epoch we hold no keys for: they are
                # dropped as invalid records (RFC 9147 §4.5.2), nothing to skip explicitly.
            elif isinstance(action, NewSession):
                self._on_new_session(action.session)
        if self._new_flight is not None:
            self._send_flight(self._now if now is None else now)

    def _queue_message(self, action: SendMessage) -> None:
        if self._send_seq > MAX_MESSAGE_SEQ:
            # RFC 9147 §5.2 (bis): message_seq never wraps; the association ends instead
            # (here only when the peer makes us answer, e.g. a KeyUpdate's update_requested).
            raise HandshakeError(
                AlertDescription.internal_error, "message_seq exhausted: association ended"
            )
        flight = self._new_flight
        if flight is None:
            flight = Flight(
                label=handshake_name(action.data[0]),
                needs_ack=self.handshake_complete,
                timeout=self._config.retransmit_initial,
            )
            self._new_flight = flight
        self._trace_message("sent", action.epoch, action.data)
        overhead = self._layer.record_overhead(action.epoch)
        max_fragment = self._payload_limit - overhead
        if action.epoch > 0:
            max_fragment = min(max_fragment, self._layer.write_limit - 1)
        for piece in fragment_message(action.data, self._send_seq, max_fragment):
            flight.fragments.append(Fragment(action.epoch, piece))
        self._send_seq += 1

    def _send_flight(self, now: float) -> None:
        flight, self._new_flight = self._new_flight, None
        assert flight is not None
        if self.is_client and _carries(flight, 1):
            self.handshake_round_trips += 1  # each ClientHello costs the client a round trip
        if self.is_client and not self.handshake_complete and _carries(flight, 20):
            # §5.7 note 1: nothing answers the client's final flight but an ACK.
            flight.needs_ack = True
        if self.handshake_complete:
            self._post_flights.append(flight)
        else:
            # A new handshake flight answers the peer's: clear what we would ACK (§7).
            if self._flight is not None:
                self._flight.finish()
            self._flight = flight
            self._incoming.clear()
            self._ack_deadline = None
        self._transmit(flight, now, flight.timeout)

    def _install(self, action: InstallKeys) -> None:
        suite = action.suite
        cipher = RecordCipher(suite.aead, action.keys.key, action.keys.iv, suite.tag_len)
        assert action.keys.sn_key is not None
        epoch_cipher = DTLSEpochCipher(action.epoch, cipher, action.keys.sn_key, suite.aead)
        if action.direction == "read":
            self._layer.install_read_epoch(epoch_cipher)
        else:
            self._layer.install_write_epoch(epoch_cipher)
        if self._keylog is not None and action.log_label:
            self._keylog(action.log_label, self._hs.client_random, action.secret)

    def _on_new_session(self, session: Session) -> None:
        self._events.append(SessionTicketReceived(session))

    def _use_peer_cid(self, peer_cid: bytes) -> None:
        # RFC 9146: both sides offered the extension; an empty CID means "send none".
        self._layer.send_cid = peer_cid or None
        self.cid_sent = peer_cid
        own = self._own_cid
        self.cid_received = own or None
        self._cids.negotiated_with(peer_cid, own)
        self._layer.set_receive_cids(self._cids.own)

    def _on_handshake_finished(self, parameters: NegotiatedParameters) -> None:
        self.parameters = parameters
        self._peer_finished = True
        self._state = "connected"
        if self._flight is not None and self._flight.answered:
            self._flight.finish()  # the peer's final flight is complete
        if parameters.peer_record_size_limit is not None:
            self._layer.write_limit = min(
                self._layer.write_limit, parameters.peer_record_size_limit
            )
        if parameters.peer_record_size_limit is not None and (
            self._config.record_size_limit is not None
        ):
            # RFC 8449 §4: binding only when negotiated (both sides sent the extension).
            self._layer.read_limit = self._config.record_size_limit
        self.address_validated = True
        self._events.append(handshake_complete_event(parameters))
        for payload in self._held_application:
            self.bytes_received += len(payload)
            self._events.append(ApplicationData(payload))
        self._held_application.clear()
        if not self.is_client:
            # §7: the client's final flight needs an explicit ACK, now.
            self._ack_deadline = 0.0

    # -- output -----------------------------------------------------------------------------

    def _transmit(self, flight: Flight, now: float, timeout: float) -> None:
        """Send every fragment not yet acknowledged, in fresh records (§5.8.1 SENDING)."""
        datagram = bytearray()
        limit = flight.datagram_limit or self._payload_limit
        for index in flight.pending():
            fragment = flight.fragments[index]
            number, record = self._layer.encode_record(
                ContentType.handshake, fragment.data, epoch=fragment.epoch
            )
            flight.carried(number, [index])
            # Before the peer's address is proven, one record per datagram lets the 3x budget
            # release the flight record by record (RFC 9147 §5.1).
            if datagram and (not self.address_validated or len(datagram) + len(record) > limit):
                self._out.append(bytes(datagram))
                datagram = bytearray()
            datagram += record
        if datagram:
            self._out.append(bytes(datagram))
        flight.armed(now, timeout)

    def _retransmit(self, flight: Flight, now: float, *, count: bool = True) -> None:
        if count:
            if flight.retransmissions >= self._config.max_retransmits:
                self._timeout(flight)
                return
            flight.retransmissions += 1
            timeout = min(flight.timeout * 2, self._config.retransmit_max)  # §5.8.2 backoff
        else:
            timeout = flight.timeout
        self.retransmissions += 1
        if (
            flight.retransmissions >= BACKOFF_AFTER_RETRANSMISSIONS
            and flight.datagram_limit is None
            and self._payload_limit > SMALL_DATAGRAM
        ):
            self._shrink(flight)
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent",
                    "note",
                    self._layer.write_epoch,
                    "retransmit",
                    0,
                    detail=f"retransmitting {flight.label} flight (#{flight.retransmissions})",
                )
            )
        self._transmit(flight, now, timeout)

    def _shrink(self, flight: Flight) -> None:
        """RFC 9147 §4.4: maybe the path MTU is smaller than we think; fragment anew."""
        flight.datagram_limit = SMALL_DATAGRAM
        overhead = max(self._layer.record_overhead(e) for e in {f.epoch for f in flight.fragments})
        flight.shrink(lambda data: split_fragment(data, SMALL_DATAGRAM - overhead))

    def _timeout(self, flight: Flight) -> None:
        reason = (
            f"{flight.label} flight not acknowledged after "
            f"{self._config.max_retransmits} retransmissions"
        )
        self.error = ProtocolError(None, reason)
        self._state = "failed"
        self._events.append(ConnectionFailed(None, reason, by_peer=False))

    def _send_ack(self) -> None:
        self._ack_deadline = None
        numbers = sorted(set(self._incoming))
        if not numbers:
            return
        epoch = self._layer.write_epoch
        payload = encode_ack(numbers)
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent",
                    "ack",
                    epoch,
                    "ack",
                    len(payload),
                    detail="ACK " + " ".join(f"{n.epoch}:{n.seq}" for n in numbers),
                )
            )
        _, record = self._layer.encode_record(ContentType.ack, payload, epoch=epoch)
        self._out.append(record)
        if self.handshake_complete:
            # Post-handshake ACKs cover what was processed; keep the final flight's
            # record numbers to ACK its retransmissions again (§5.8.1 FINISHED).
            self._incoming = [n for n in numbers if n.epoch == 2]

    def _emit(self, content_type: int, payload: bytes) -> None:
        _, record = self._layer.encode_record(content_type, payload)
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent",
                    "record",
                    self._layer.write_epoch,
                    content_type_name(content_type),
                    len(payload),
                    data=payload,
                )
            )
        self._out.append(record)

    def _send_alert(self, description: AlertDescription) -> None:
        level = AlertLevel.WARNING if description in (0, 90) else AlertLevel.FATAL
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent", "alert", self._layer.write_epoch, "alert", 2, detail=description.name
                )
            )
        self._emit(ContentType.alert, bytes((level, description)))

    def _fail(self, alert: AlertDescription, reason: str) -> None:
        if self._state == "failed":
            return
        self.error = ProtocolError(alert, reason)
        with contextlib.suppress(RecordError, ValueError):
            self._send_alert(alert)  # best effort: alerts are not retransmitted (§5.10)
        self._state = "failed"
        self._events.append(ConnectionFailed(alert, reason, by_peer=False))

    def _repeat_alert(self) -> None:
        """RFC 9147 §5.10: the peer sends on after our fatal alert, which it may have lost:
        "SHOULD generate a new alert message if the offending record is received again"."""
        error = self.error
        if (
            self._state != "failed"
            or error is None
            or error.alert is None
            or error.by_peer
            or self._alerts_repeated >= MAX_REPEATED_ALERTS
        ):
            return
        self._alerts_repeated += 1
        with contextlib.suppress(RecordError, ValueError):
            self._send_alert(error.alert)

    def _live_flights(self) -> list[Flight]:
        flights = [f for f in self._post_flights if not f.complete]
        if self._flight is not None and not self._flight.complete:
            flights.insert(0, self._flight)
        return flights

    def _trace_message(
        self, direction: Literal["sent", "received"], epoch: int, msg: bytes
    ) -> None:
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    direction,
                    "handshake",
                    epoch,
                    "handshake",
                    len(msg),
                    detail=handshake_name(msg[0]),
                    data=msg,
                )
            )

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


class DTLSClientConnection(DTLSConnection):
    """A DTLS 1.3 client; ``start(now)`` queues the ClientHello."""

    is_client = True

    def __init__(
        self,
        config: ClientConfig,
        *,
        server_name: str | None = None,
        session: Session | None = None,
        port: int = DEFAULT_PORT,
    ) -> None:
        hs_config = config.handshake_config(dtls=True)
        if server_name is not None:
            hs_config = replace(hs_config, server_name=server_name)
        self.port = port
        session = resolve_session(config, hs_config.server_name, session, port)
        own_cid = b"" if config.cid_length is None else os.urandom(config.cid_length)
        hs_config = replace(hs_config, connection_id=own_cid, session=session)
        super().__init__(ClientHandshake(hs_config), config)
        self._client_hs: ClientHandshake = self._hs  # type: ignore[assignment]
        self._own_cid = own_cid
        self._started = False
        self._early_buffer: list[bytes] = []
        self._early_sent = 0

    def start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        hs = self._client_hs
        try:
            self._apply(hs.start(now, early_data=bool(self._early_buffer)), now)
        except HandshakeError as exc:
            self._fail(exc.alert, exc.reason)
            return
        buffered, self._early_buffer = self._early_buffer, []
        if hs.early_data_offered:
            for data in buffered:
                self._emit_early(data)

    def send_early_data(self, data: bytes, now: float | None = None) -> None:
        """Queue 0-RTT data, sent in epoch 1 (RFC 9147 §5.6, RFC 8446 §4.2.10).

        As for TLS: only with a session whose ticket allows it, up to its max_early_data,
        before the handshake completes; may be replayed (RFC 8446 §8), and, being datagrams,
        may be lost: it is never retransmitted. A server doing the stateless cookie exchange
        answers with HelloRetryRequest, which rejects early data (RFC 8446 §4.2.10).
        """
        if self._state != "handshaking" or self._close_sent:
            raise ConnectionStateError("early data only before the handshake completes")
        hs = self._client_hs
        if self._started and (not hs.early_data_offered or hs.early_data_status == "rejected"):
            raise ConnectionStateError("early data was not offered or was rejected")
        limit = hs.early_data_limit(self._now if now is None else now)
        if limit == 0:
            raise ConnectionStateError("no session that allows early data")
        if self._early_sent + len(data) > limit:
            raise ConnectionStateError(f"early data is limited to {limit} bytes by the ticket")
        self._early_sent += len(data)
        if self._started:
            self._emit_early(bytes(data))
        else:
            self._early_buffer.append(bytes(data))

    def _emit_early(self, data: bytes) -> None:
        step = min(
            self._layer.write_limit - 1, self._payload_limit - self._layer.record_overhead(1)
        )
        view = memoryview(data)
        for start in range(0, len(data), step):
            piece = bytes(view[start : start + step])
            _, record = self._layer.encode_record(ContentType.application_data, piece, epoch=1)
            self._out.append(record)

    def _on_new_session(self, session: Session) -> None:
        store = self._config.session_store  # type: ignore[union-attr]
        name = self._client_hs.config.server_name
        if store is not None and name:
            store.add(name, self.port, session)
        super()._on_new_session(session)


class DTLSServerConnection(DTLSConnection):
    """One DTLS 1.3 association on the server side.

    Standalone it performs the cookie exchange itself, holding nothing but collected
    ClientHello fragments until a valid cookie returns (RFC 9147 §5.1); ``DTLSServer``
    (protocol.connection.dtls_server)
    does the exchange for many clients and creates associations with
    ``from_cookie``.
    """

    is_client = False

    def __init__(
        self,
        config: ServerConfig,
        *,
        peer_address: object = None,
        cookie_exchange: bool | None = None,
        cid_taken: Callable[[bytes], bool] | None = None,
    ) -> None:
        hs_config = config.handshake_config(dtls=True)
        own_cid = None
        if config.cid_length is not None:
            # Every CID of this length in use by the server: the newest association shares one.
            own_cid = fresh_cid(config.cid_length, cid_taken) or os.urandom(config.cid_length)
        hs_config = replace(hs_config, connection_id=own_cid)
        super().__init__(ServerHandshake(hs_config), config)
        self._cids.set_taken(cid_taken)  # CIDs issued later avoid the same ones
        self._server_hs: ServerHandshake = self._hs  # type: ignore[assignment]
        self._own_cid = own_cid
        self._peer_address = address_bytes(peer_address)
        cookies = config.dtls_cookie if cookie_exchange is None else cookie_exchange
        self._cookies = CookieSealer(config.cookie_secret) if cookies else None
        self._hellos = HelloCollector() if cookies else None
        # RFC 9147 §5.1: until the cookie returns (or, without the exchange, until the client
        # shows it received our ServerHello) we send at most 3x what it sent.
        self.address_validated = False

    @classmethod
    def from_cookie(
        cls,
        config: ServerConfig,
        params: RetryParameters,
        cookie: bytes,
        message_seq: int,
        client_hello: bytes,
        now: float,
        *,
        peer_address: object = None,
        first_record_seq: int = 0,
        cid_taken: Callable[[bytes], bool] | None = None,
    ) -> tuple[DTLSServerConnection, list[Event]]:
        """An association for a ClientHello whose cookie the dispatcher validated.

        ``first_record_seq`` is where its epoch-0 record numbers start: after the stateless
        HelloRetryRequest's, so a peer's replay check (NSS) or an epoch-0 ACK of the retry
        can never be mistaken for our ServerHello (RFC 9147 §4.5.1, §7).
        """
        conn = cls(config, peer_address=peer_address, cookie_exchange=False, cid_taken=cid_taken)
        conn._now = now
        conn._layer.set_next_write_seq(0, first_record_seq)
        try:
            conn._resume(params, cookie, message_seq)
            conn._trace_message("received", 0, client_hello)
            DTLSConnection._on_message(conn, client_hello, now)
            conn._after_input(now)
        except HandshakeError as exc:
            conn._fail(exc.alert, exc.reason)
        return conn, conn._take_events()

    def _resume(self, params: RetryParameters, cookie: bytes, message_seq: int) -> None:
        self._server_hs.resume_after_retry(params, cookie)
        self._cookies = self._hellos = None
        self.address_validated = True  # §5.1: the cookie proved the client's address
        self.handshake_round_trips = 1  # the first ClientHello, answered statelessly
        self._reassembler.reset_to(message_seq + 1)
        self._send_seq = 1  # our HelloRetryRequest was message_seq 0

    def _handle_handshake(self, record: DTLSRecord, now: float) -> None:
        if self._hellos is None:
            super()._handle_handshake(record, now)
            return
        if record.epoch != 0:
            return  # nothing protected can be ours before the cookie exchange
        for message_seq, message in self._hellos.add(record.payload):
            self._trace_message("received", 0, message)
            self._cookie_exchange(message_seq, message, now)
            if self._hellos is None:
                break

    def _cookie_exchange(self, message_seq: int, message: bytes, now: float) -> None:
        """The stateless HelloRetryRequest of RFC 9147 §5.1."""
        assert self._cookies is not None
        cookie = client_hello_cookie(message)
        if cookie is not None:
            params = self._cookies.open(cookie, self._peer_address, now)
            if params is None:
                # §5.1: an invalid cookie is an illegal_parameter.
                raise HandshakeError(AlertDescription.illegal_parameter, "invalid cookie")
            self._resume(params, cookie, message_seq)
            DTLSConnection._on_message(self, message, now)
            return
        params, build = self._server_hs.stateless_retry(message)
        self.handshake_round_trips = 1
        for record in stateless_retry_records(
            build(self._cookies.seal(params, self._peer_address, now)),
            self._layer,
            self._payload_limit,
        ):
            self._out.append(record)
        if self._trace is not None:
            self._trace_message("sent", 0, build(b""))


def client_hello_cookie(message: bytes) -> bytes | None:
    """The cookie extension of a ClientHello (decoded strictly; errors become alerts)."""
    from handshake.common import parse_message
    from handshake.messages import ClientHello

    hello = parse_message(message, dtls=True, hash_len=32)
    if not isinstance(hello, ClientHello):
        raise HandshakeError(AlertDescription.unexpected_message, "expected a ClientHello")
    return hello.extensions.cookie


def stateless_retry_records(hrr: bytes, layer: DTLSRecordLayer, payload_limit: int) -> list[bytes]:
    """The HelloRetryRequest as epoch-0 records (message_seq 0), one per datagram."""
    return [
        layer.encode_record(ContentType.handshake, piece, epoch=0)[1]
        for piece in fragment_message(hrr, 0, payload_limit - 13)
    ]
