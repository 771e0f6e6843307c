"""Events a connection reports to the application: small immutable values (h11's style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509

from handshake.alerts import AlertDescription
from handshake.psk import Session


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """Every parameter the handshake settled (names as IANA registers them)."""

    version: str  # "TLS 1.3" | "DTLS 1.3"
    cipher_suite: str
    group: str | None
    signature_scheme: str | None
    alpn: str | None
    server_name: str | None
    hello_retry: bool
    resumed: bool
    psk_mode: str | None
    early_data: Literal["accepted", "rejected", "not_sent"]
    peer_certificates: tuple[x509.Certificate, ...] = field(repr=False)
    client_authenticated: bool
    peer_record_size_limit: int | None

    @property
    def peer_certificate_subject(self) -> str | None:
        if not self.peer_certificates:
            return None
        return self.peer_certificates[0].subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class ApplicationData:
    data: bytes


@dataclass(frozen=True, slots=True)
class KeyUpdated:
    """Keys moved forward: ``direction`` is "receive" (the peer updated) or "send"."""

    direction: Literal["receive", "send"]
    update_requested: bool
    epoch: int


@dataclass(frozen=True, slots=True)
class AlertReceived:
    """A non-fatal alert (user_canceled, RFC 8446 §6.1)."""

    description: AlertDescription


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer sent close_notify: it will send nothing more (RFC 8446 §6.1)."""


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection is dead: ``alert`` was sent by us, or received when ``by_peer``;
    None when no alert was exchanged (a DTLS handshake that timed out)."""

    alert: AlertDescription | None
    reason: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class EarlyDataReceived:
    """0-RTT application data the server accepted (RFC 8446 §2.3, §4.2.10).

    Early data is not protected against replay the way 1-RTT data is (§8, §E.5): the server
    limits replays (single-use tickets, ClientHello recording within a freshness window), but
    an application must only act on early data that is safe to repeat.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class SessionTicketReceived:
    """The server sent a NewSessionTicket (RFC 8446 §4.6.1): ``session`` can resume a later
    connection (``session=`` or a config's ``session_store``, which already has it)."""

    session: Session


@dataclass(frozen=True, slots=True)
class ClientAuthenticated:
    """Server: the client answered ``request_client_certificate`` (RFC 8446 §4.6.2) with
    a verified ``certificates`` chain, or with none when the request allowed that."""

    certificates: tuple[x509.Certificate, ...] = field(repr=False)
    # The certificate_request_context of the request answered (answers may come in any
    # order, §4.6.2): what ``request_client_certificate`` returned.
    context: bytes = b""

    @property
    def subject(self) -> str | None:
        return self.certificates[0].subject.rfc4514_string() if self.certificates else None


@dataclass(frozen=True, slots=True)
class CertificateRequested:
    """Client: the server asked for our certificate after the handshake (RFC 8446 §4.6.2)
    and we answered, with the configured certificate if the request allowed it."""

    certificate_sent: bool


@dataclass(frozen=True, slots=True)
class ConnectionIdsReceived:
    """DTLS: the peer sent NewConnectionId (RFC 9147 §9), ``cids`` as it sent them. With
    ``immediate`` our records already carry ``cids[0]``; the others are spares (at most 8 are
    kept: ``spare_connection_ids``; ``switch_connection_id`` takes the next). An empty
    ``cids`` answers our RequestConnectionId with none."""

    cids: tuple[bytes, ...]
    immediate: bool


Event = (
    HandshakeComplete
    | ApplicationData
    | KeyUpdated
    | AlertReceived
    | ConnectionClosed
    | ConnectionFailed
    | EarlyDataReceived
    | SessionTicketReceived
    | ConnectionIdsReceived
    | ClientAuthenticated
    | CertificateRequested
)
