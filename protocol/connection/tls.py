"""TLS 1.3 connections over a byte stream, Sans-IO (RFC 8446).

Bytes from the peer go in with ``receive_data(data, now)`` and come back as events; bytes for
the peer accumulate and are taken with ``data_to_send()``. The handshake state machine (in
``handshake/``) decides; this module frames its messages into records and installs its keys.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Literal

from handshake.actions import (
    Action,
    CertificateRequested,
    ClientAuthenticated,
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
from handshake.psk import Session
from handshake.server import ServerHandshake
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.negotiated import handshake_complete_event
from protocol.errors import ConnectionStateError, ProtocolError
from protocol.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    EarlyDataReceived,
    Event,
    HandshakeComplete,
    KeyUpdated,
    SessionTicketReceived,
)
from protocol.events import (
    CertificateRequested as CertificateRequestedEvent,
)
from protocol.events import (
    ClientAuthenticated as ClientAuthenticatedEvent,
)
from protocol.trace import TraceEvent, content_type_name, handshake_name
from records.aead import RecordCipher
from records.content_types import ContentType
from records.errors import RecordError
from records.tls import TLSRecordLayer

# A handshake message larger than this is refused (a certificate chain fits many times over).
MAX_HANDSHAKE_MESSAGE = 256 * 1024

# Session stores are keyed by (server name, port); TLS's usual port when none is given.
DEFAULT_PORT = 443

TLS12_LEGACY_RECORD_VERSION = 0x0303
TLS10_RECORD_VERSION = 0x0301

State = Literal["handshaking", "connected", "closed", "failed"]

_APPDATA = int(ContentType.application_data)
_HANDSHAKE = int(ContentType.handshake)
_ALERT = int(ContentType.alert)
_CCS = int(ContentType.change_cipher_spec)


class HandshakeReassembler:
    """Cuts the handshake byte stream into whole messages (RFC 8446 §5.1: they may span
    records, and several may share one)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> bool:
        return bool(self._buf)

    def next_message(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 4:
            return None
        length = int.from_bytes(buf[1:4], "big")
        if length > MAX_HANDSHAKE_MESSAGE:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"handshake message of {length} bytes is too large",
            )
        end = 4 + length
        if len(buf) < end:
            return None
        message = bytes(buf[:end])
        del buf[:end]
        return message


class TLSConnection:
    """What client and server connections share: record handling, alerts, events."""

    is_client: bool
    # A client's ClientHello is produced on first use (see TLSClientConnection.start).
    _started = True
    # Records each new write key may protect, when below the AEAD's own limit (RFC 8446
    # §5.5; records/aead.py): lets a test drive a connection through automatic KeyUpdates.
    _confidentiality_limit: int | None = None

    def __init__(
        self,
        handshake: ClientHandshake | ServerHandshake,
        config: ClientConfig | ServerConfig,
    ) -> None:
        self._hs = handshake
        self._config = config
        self._records = TLSRecordLayer()
        self._reassembler = HandshakeReassembler()
        # Encoded records waiting for data_to_send, joined once there.
        self._out: list[bytes] = []
        self._pending_handshake = bytearray()
        self._events: list[Event] = []
        self._state: State = "handshaking"
        self._keylog = config.open_keylog()
        self._trace = config.trace
        self._read_epoch = 0
        self._write_epoch = 0
        self._close_sent = False
        self._close_received = False
        self._seen_client_hello = self.is_client
        # RFC 8446 §5.1: only a client's initial ClientHello may carry 0x0301.
        self._initial_hello_pending = self.is_client
        self._peer_finished = False
        # Application records may go straight to events: 1-RTT read keys are in and the
        # peer's Finished was seen (a client: its read keys follow the server's Finished),
        # and nothing is traced. Kept current by _update_fast_receive.
        self._fast_receive = False
        # RFC 8446 §4.2.10: bytes of accepted 0-RTT data the server may still read.
        self._early_budget: int | None = None
        self.parameters: NegotiatedParameters | None = None
        self.bytes_sent = 0  # application bytes
        self.bytes_received = 0
        self.error: ProtocolError | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def handshake_complete(self) -> bool:
        return self.parameters is not None

    def receive_data(self, data: bytes, now: float | None = None) -> list[Event]:
        """Feed bytes received from the peer; returns the events they caused."""
        if self._state in ("failed", "closed") or not data:
            return self._take_events()
        if now is None:
            now = time.time()
        records = self._records
        try:
            records.feed(data)
            while self._state != "failed" and not self._close_received:
                record = records.read_record()
                if record is None:
                    break
                if record[0] == _APPDATA and self._fast_receive:
                    # Established connection: 1-RTT application data becomes an event
                    # without the checks _handle_record makes during the handshake.
                    payload = record[1]
                    self.bytes_received += len(payload)
                    self._events.append(ApplicationData(payload))
                else:
                    self._handle_record(record[0], record[1], now)
        except HandshakeError as exc:
            self._fail(exc.alert, exc.reason)
        except RecordError as exc:
            self._fail(AlertDescription(exc.alert), exc.reason)
        return self._take_events()

    def send_data(self, data: bytes) -> None:
        """Queue application data (protected with the current application keys)."""
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError(f"cannot send application data in state {self._state}")
        if not data:
            return
        if self._trace is None:
            due = self._records.write_application_data(data, self._out)
            if due is None:
                self._send_records(data)
            elif due:
                self._key_update_for_limit()
        else:
            self._send_records(data)
        self.bytes_sent += len(data)

    def _send_records(self, data: bytes) -> None:
        """Application data through ``encode`` (several records, padding or tracing), cut
        where the write key has to change (RFC 8446 §5.5)."""
        records = self._records
        per_record = records.write_limit - 1  # RFC 8449 §4: the limit counts the type byte
        with memoryview(data) as view:
            pos = 0
            while pos < len(view):
                if records.needs_key_update:
                    self._key_update_for_limit()
                end = pos + max(1, records.records_until_key_update) * per_record
                with view[pos:end] as part:
                    self._emit_record(_APPDATA, part)
                pos = end

    def _key_update_for_limit(self) -> None:
        """RFC 8446 §5.5: the write key nears its usage limit, so move to the next one (the
        peer need not update its own)."""
        self._apply(self._hs.request_key_update(False))
        self._events.append(
            KeyUpdated(direction="send", update_requested=False, epoch=self._write_epoch)
        )

    def data_to_send(self) -> bytes:
        """Everything that must go to the peer now (empty when there is nothing)."""
        if self._pending_handshake or not self._started:
            self._prepare_output()
        out = self._out
        if not out:
            return b""
        self._out = []
        return b"".join(out)

    def _prepare_output(self) -> None:
        self._flush_handshake()

    def key_update(self, request_peer_update: bool = True) -> None:
        """Send KeyUpdate (RFC 8446 §4.6.3); ``request_peer_update`` asks the peer to follow."""
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError("KeyUpdate needs an open, established connection")
        self._apply(self._hs.request_key_update(request_peer_update))
        self._events.append(
            KeyUpdated(
                direction="send", update_requested=request_peer_update, epoch=self._write_epoch
            )
        )

    def close(self) -> None:
        """Send close_notify (RFC 8446 §6.1); nothing more can be sent afterwards."""
        if self._close_sent or self._state == "failed":
            return
        self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
        self._close_sent = True
        if self._close_received or self._state == "handshaking":
            self._state = "closed"

    def cancel(self) -> None:
        """user_canceled then close_notify (RFC 8446 §6.1): abandon a handshake politely."""
        if self._close_sent or self._state == "failed":
            return
        self._send_alert(AlertLevel.WARNING, AlertDescription.user_canceled)
        self.close()

    def next_timer(self) -> float | None:
        """TLS over a stream needs no timers; present for symmetry with DTLS."""
        return None

    def handle_timer(self, now: float) -> list[Event]:
        return self._take_events()

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        """RFC 8446 §7.5 exporter (e.g. for channel binding)."""
        return self._hs.export_keying_material(label, context, length)

    @property
    def events_pending(self) -> bool:
        return bool(self._events)

    # -- records in ----------------------------------------------------------------------------

    def _handle_record(self, content_type: int, payload: bytes, now: float) -> None:
        trace = self._trace
        if trace is not None:
            trace(
                TraceEvent(
                    "received",
                    "record",
                    self._read_epoch,
                    content_type_name(content_type),
                    len(payload),
                    data=payload,
                )
            )
        if content_type == _HANDSHAKE:
            self._handle_handshake_bytes(payload, now)
            return
        if self._reassembler.pending() and content_type != _ALERT:
            # RFC 8446 §5.1: "if a handshake message is split over two or more records,
            # there MUST NOT be any other records between them." (An alert is still read:
            # it carries the peer's own reason for giving up.)
            raise HandshakeError(
                AlertDescription.unexpected_message,
                f"{content_type_name(content_type)} record inside a fragmented handshake message",
            )
        if content_type == _APPDATA and self._read_epoch == 1:
            self._handle_early_data(payload)
        elif content_type == _APPDATA:
            if self._read_epoch < 3 or not self._peer_finished_or_client():
                raise HandshakeError(
                    AlertDescription.unexpected_message, "application data before the handshake"
                )
            self.bytes_received += len(payload)
            self._events.append(ApplicationData(payload))
        elif content_type == _ALERT:
            self._handle_alert(payload)
        elif content_type == _CCS:
            # RFC 8446 §5: dropped only between the first ClientHello and the peer's Finished.
            if not self._seen_client_hello or self._peer_finished:
                raise HandshakeError(
                    AlertDescription.unexpected_message, "ChangeCipherSpec outside the handshake"
                )
        else:
            raise HandshakeError(
                AlertDescription.unexpected_message, f"unexpected record type {content_type}"
            )

    def _handle_early_data(self, payload: bytes) -> None:
        budget = self._early_budget
        if self.is_client or budget is None:
            raise HandshakeError(AlertDescription.unexpected_message, "unexpected early data")
        if len(payload) > budget:
            # RFC 8446 §4.2.10: more 0-RTT data than max_early_data_size.
            raise HandshakeError(
                AlertDescription.unexpected_message, "early data exceeds max_early_data_size"
            )
        self._early_budget = budget - len(payload)
        self.bytes_received += len(payload)
        self._events.append(EarlyDataReceived(payload))

    def _peer_finished_or_client(self) -> bool:
        # A client reads application data once the server's Finished installed the keys; a
        # server only after the client's Finished.
        return self.is_client or self._peer_finished

    def _handle_handshake_bytes(self, payload: bytes, now: float) -> None:
        reassembler = self._reassembler
        reassembler.feed(payload)
        while (message := reassembler.next_message()) is not None:
            trace = self._trace
            if trace is not None:
                trace(
                    TraceEvent(
                        "received",
                        "handshake",
                        self._read_epoch,
                        "handshake",
                        len(message),
                        detail=handshake_name(message[0]),
                        data=message,
                    )
                )
            if message[0] == 1:
                self._seen_client_hello = True
            self._apply(self._hs.handle(message, now))
        if self._fast_receive == reassembler.pending():
            self._update_fast_receive()  # a message part-way in stops the fast path (§5.1)

    def _handle_alert(self, payload: bytes) -> None:
        # RFC 8446 §6: an alert record carries exactly one two-byte alert.
        if len(payload) != 2:
            raise HandshakeError(AlertDescription.decode_error, "malformed alert")
        try:
            description = AlertDescription(payload[1])
        except ValueError:
            description = None
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "received",
                    "alert",
                    self._read_epoch,
                    "alert",
                    2,
                    detail=description.name if description is not None else f"alert({payload[1]})",
                )
            )
        if description is AlertDescription.close_notify:
            self._close_received = True
            self._events.append(ConnectionClosed())
            # Answer with our own close_notify so the peer can close cleanly.
            if not self._close_sent:
                self.close()
            self._state = "closed"
            return
        if description is AlertDescription.user_canceled:
            self._events.append(AlertReceived(description))
            return
        # RFC 8446 §6.2: every other alert is fatal, whatever its level says.
        alert = description or AlertDescription.illegal_parameter
        reason = f"peer sent alert {alert.name}" if description else f"unknown alert {payload[1]}"
        self.error = ProtocolError(alert, reason, by_peer=True)
        self._state = "failed"
        self._events.append(ConnectionFailed(alert, reason, by_peer=True))

    # -- actions from the handshake ---------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendMessage):
                if action.epoch == 0 and self._write_epoch == 1:
                    # A ClientHello after HelloRetryRequest goes in the clear again, not
                    # under the 0-RTT keys (RFC 8446 §4.1.2, §4.2.10).
                    self._flush_handshake()
                    self._records.set_write_cipher(None)
                    self._write_epoch = 0
                self._queue_handshake(action.data)
            elif isinstance(action, InstallKeys):
                self._install(action)
            elif isinstance(action, SendChangeCipherSpec):
                self._flush_handshake()
                self._emit_record(ContentType.change_cipher_spec, b"\x01")
            elif isinstance(action, LogSecret):
                if self._keylog is not None:
                    self._keylog(action.label, self._hs.client_random, action.secret)
            elif isinstance(action, HandshakeFinished):
                self._on_handshake_finished(action.parameters)
            elif isinstance(action, KeyUpdateReceived):
                self._events.append(
                    KeyUpdated("receive", action.update_requested, self._read_epoch)
                )
            elif isinstance(action, EarlyDataDecision):
                self._on_early_data_decision(action)
            elif isinstance(action, NewSession):
                self._on_new_session(action.session)
            elif isinstance(action, ClientAuthenticated):
                self._events.append(ClientAuthenticatedEvent(action.chain, action.context))
            elif isinstance(action, CertificateRequested):
                self._events.append(CertificateRequestedEvent(action.certificate_sent))

    def _on_early_data_decision(self, decision: EarlyDataDecision) -> None:
        if self.is_client:
            return  # the client connection reads the handshake's early_data_status
        if decision.accepted:
            self._early_budget = decision.max_size
        else:
            # RFC 8446 §4.2.10: skip 0-RTT records we cannot (or will not) read, up to a bound.
            self._records.set_early_data_skip(decision.max_size)

    def _on_new_session(self, session: Session) -> None:
        self._events.append(SessionTicketReceived(session))

    def _queue_handshake(self, message: bytes) -> None:
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent",
                    "handshake",
                    self._write_epoch,
                    "handshake",
                    len(message),
                    detail=handshake_name(message[0]),
                    data=message,
                )
            )
        # Messages of one flight under one key share records (RFC 8446 §5.1 allows it).
        self._pending_handshake += message

    def _flush_handshake(self) -> None:
        if self._pending_handshake:
            data = bytes(self._pending_handshake)
            self._pending_handshake.clear()
            legacy_version = TLS12_LEGACY_RECORD_VERSION
            if self._initial_hello_pending:
                # RFC 8446 §5.1: an initial ClientHello MAY use legacy_record_version 0x0301
                # for middleboxes that choke on 0x0303; every later record, including a
                # ClientHello after HelloRetryRequest, uses 0x0303.
                self._initial_hello_pending = False
                legacy_version = TLS10_RECORD_VERSION
            self._emit_record(ContentType.handshake, data, legacy_version=legacy_version)

    def _install(self, action: InstallKeys) -> None:
        suite = action.suite
        cipher = RecordCipher(suite.aead, action.keys.key, action.keys.iv, suite.tag_len)
        if action.direction == "read":
            # RFC 8446 §5.1: handshake messages must not span a key change.
            if self._reassembler.pending():
                raise HandshakeError(
                    AlertDescription.unexpected_message, "handshake message spans a key change"
                )
            self._records.set_read_cipher(cipher)
            self._read_epoch = action.epoch
            self._update_fast_receive()
        else:
            self._flush_handshake()
            if self._confidentiality_limit is not None:
                cipher.confidentiality_limit = min(
                    cipher.confidentiality_limit, self._confidentiality_limit
                )
            self._records.set_write_cipher(cipher)
            self._write_epoch = action.epoch
        if self._keylog is not None and action.log_label:
            self._keylog(action.log_label, self._hs.client_random, action.secret)
        if self._trace is not None:
            self._trace(
                TraceEvent(
                    "sent" if action.direction == "write" else "received",
                    "note",
                    action.epoch,
                    "keys",
                    0,
                    detail=f"{action.direction} keys for epoch {action.epoch}",
                )
            )

    def _update_fast_receive(self) -> None:
        self._fast_receive = (
            self._trace is None
            and self._read_epoch >= 3
            and self._peer_finished_or_client()
            and not self._reassembler.pending()  # §5.1: checked in _handle_record
        )

    def _on_handshake_finished(self, parameters: NegotiatedParameters) -> None:
        self._flush_handshake()
        self.parameters = parameters
        self._peer_finished = True
        self._update_fast_receive()
        self._state = "connected"
        if parameters.peer_record_size_limit is not None:
            # RFC 8449 §4: the peer's limit counts the content type byte in TLS 1.3.
            self._records.set_write_limit(parameters.peer_record_size_limit)
        if parameters.peer_record_size_limit is not None and (
            self._config.record_size_limit is not None
        ):
            # RFC 8449 §4: our own limit binds the peer only once both sides sent the
            # extension (a peer that ignored it may send records of any legal size).
            self._records.set_read_limit(self._config.record_size_limit)
        self._events.append(handshake_complete_event(parameters))

    # -- records out -----------------------------------------------------------------------------

    def _emit_record(
        self,
        content_type: int,
        data: bytes | bytearray | memoryview,
        *,
        legacy_version: int = TLS12_LEGACY_RECORD_VERSION,
    ) -> None:
        encoded = self._records.encode(content_type, data, legacy_version=legacy_version)
        self._out.append(encoded)
        if self._trace is not None:
            self._trace_records(content_type, data, encoded)

    def _trace_records(
        self, content_type: int, data: bytes | bytearray | memoryview, encoded: bytes
    ) -> None:
        """One trace event per record written (the record layer may have split ``data``)."""
        assert self._trace is not None
        name = content_type_name(content_type)
        offset = consumed = 0
        while offset + 5 <= len(encoded):
            wire = int.from_bytes(encoded[offset + 3 : offset + 5], "big")
            share = bytes(data[consumed : consumed + wire])  # plaintext carried (upper bound)
            self._trace(
                TraceEvent(
                    "sent",
                    "record",
                    self._write_epoch,
                    name,
                    len(share),
                    detail=f"{name} record ({5 + wire} bytes on the wire)",
                    data=share,
                )
            )
            offset += 5 + wire
            consumed += len(share)

    def _send_alert(self, level: AlertLevel, description: AlertDescription) -> None:
        self._flush_handshake()
        if self._trace is not None:
            self._trace(
                TraceEvent("sent", "alert", self._write_epoch, "alert", 2, detail=description.name)
            )
        self._emit_record(ContentType.alert, bytes((level, description)))

    def _fail(self, alert: AlertDescription, reason: str) -> None:
        if self._state == "failed":
            return
        self.error = ProtocolError(alert, reason)
        # The alert goes out under whatever keys we send with now (RFC 8446 §6).
        self._pending_handshake.clear()
        # If even the alert cannot be protected (keys exhausted) the peer sees the close.
        with contextlib.suppress(RecordError):
            self._send_alert(AlertLevel.FATAL, alert)
        self._state = "failed"
        self._events.append(ConnectionFailed(alert, reason, by_peer=False))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


def resolve_session(
    config: ClientConfig, server_name: str | None, session: Session | None, port: int
) -> Session | None:
    """The session a new client connection offers: the one given, else one taken from the
    configured store for (server name, port)."""
    if session is not None or config.session_store is None or not server_name:
        return session
    return config.session_store.take(server_name, port)


class TLSClientConnection(TLSConnection):
    """A TLS 1.3 client. Call ``start()`` (or ``data_to_send()``) to get the ClientHello.

    Resumption: pass ``session=`` (from a ``SessionTicketReceived`` event) or configure a
    ``session_store`` (keyed by server name and ``port``). 0-RTT: ``send_early_data`` before
    ``start`` (see its caveats).
    """

    is_client = True

    def __init__(
        self,
        config: ClientConfig,
        *,
        server_name: str | None = None,
        session: Session | None = None,
        port: int = DEFAULT_PORT,
    ) -> None:
        hs_config = config.handshake_config(dtls=False)
        if server_name is not None and server_name != hs_config.server_name:
            hs_config = replace(hs_config, server_name=server_name)
        self.port = port
        session = resolve_session(config, hs_config.server_name, session, port)
        if session is not None:
            hs_config = replace(hs_config, session=session)
        super().__init__(ClientHandshake(hs_config), config)
        self._client_hs: ClientHandshake = self._hs  # type: ignore[assignment]
        self._started = False
        self._early_buffer: list[bytes] = []
        self._early_sent = 0

    def start(self, now: float | None = None) -> None:
        if self._started:
            return
        self._started = True
        hs = self._client_hs
        try:
            self._apply(
                hs.start(time.time() if now is None else now, early_data=bool(self._early_buffer))
            )
        except HandshakeError as exc:
            self._fail(exc.alert, exc.reason)
            return
        buffered, self._early_buffer = self._early_buffer, []
        if hs.early_data_offered:
            for data in buffered:
                self._emit_record(ContentType.application_data, data)

    def send_early_data(self, data: bytes, now: float | None = None) -> None:
        """Queue 0-RTT application data (RFC 8446 §2.3, §4.2.10).

        Possible only when resuming a session whose ticket allows early data, and only up to
        its ``max_early_data``; call before ``start()`` (or before the server's answer).
        ``HandshakeComplete.early_data`` then says whether the server took it: on
        "rejected" nothing is resent automatically, the application decides. Early data
        is not replay-protected like 1-RTT data (RFC 8446 §8, §E.5): send only requests that
        are safe to repeat.
        """
        if self._state != "handshaking" or self._close_sent:
            raise ConnectionStateError("early data only before the handshake completes")
        hs = self._client_hs
        if self._started:
            if not hs.early_data_offered or hs.early_data_status == "rejected":
                raise ConnectionStateError("early data was not offered or was rejected")
            if self._write_epoch != 1:
                raise ConnectionStateError("the early data phase is over")
        limit = hs.early_data_limit(time.time() if now is None else now)
        if limit == 0:
            raise ConnectionStateError("no session that allows early data")
        if self._early_sent + len(data) > limit:
            raise ConnectionStateError(f"early data is limited to {limit} bytes by the ticket")
        self._early_sent += len(data)
        if not data:
            return
        if self._started:
            self._emit_record(_APPDATA, data)
        else:
            self._early_buffer.append(bytes(data))

    def _on_new_session(self, session: Session) -> None:
        store = self._config.session_store  # type: ignore[union-attr]
        name = self._client_hs.config.server_name
        if store is not None and name:
            store.add(name, self.port, session)
        super()._on_new_session(session)

    def _prepare_output(self) -> None:
        if not self._started:
            self.start()
        self._flush_handshake()


class TLSServerConnection(TLSConnection):
    """A TLS 1.3 server: feed it the client's bytes."""

    is_client = False

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(ServerHandshake(config.handshake_config(dtls=False)), config)
        self._server_hs: ServerHandshake = self._hs  # type: ignore[assignment]

    @property
    def post_handshake_auth_offered(self) -> bool:
        """The client offered post-handshake authentication (RFC 8446 §4.2.6)."""
        return self._server_hs.post_handshake_auth_offered

    def request_client_certificate(self, *, required: bool = True) -> bytes:
        """Ask the client for its certificate now (RFC 8446 §4.6.2). Its answer arrives as a
        ``ClientAuthenticated`` event carrying the returned certificate_request_context;
        with ``required`` an answer without a certificate ends the connection with
        certificate_required. Application data keeps flowing meanwhile."""
        if self._state != "connected" or self._close_sent:
            raise ConnectionStateError("post-handshake authentication needs an open connection")
        if not self.post_handshake_auth_offered:
            raise ConnectionStateError(
                "the client did not offer post_handshake_auth (RFC 8446 §4.6.2)"
            )
        try:
            context, actions = self._server_hs.request_client_certificate(required=required)
        except RuntimeError as exc:  # e.g. too many requests open
            raise ConnectionStateError(str(exc)) from exc
        self._apply(actions)
        return context


__all__ = [
    "HandshakeComplete",
    "TLSClientConnection",
    "TLSConnection",
    "TLSServerConnection",
]
