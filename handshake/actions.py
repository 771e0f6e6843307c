"""What a handshake state machine asks of the layer that drives it.

The handshake never touches records: it hands out messages to send and secrets to install, in
the order they must take effect (aioquic's split). ``protocol/`` frames the messages (TLS or
DTLS), installs the keys into the record layer, and turns the rest into public events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from cryptography import x509

from .cipher_suites import CipherSuite
from .key_schedule import TrafficKeys
from .psk import Session


class Epoch(IntEnum):
    """Key phases, numbered as DTLS 1.3 epochs (RFC 9147 §6.1); TLS uses the same order."""

    INITIAL = 0
    EARLY_DATA = 1
    HANDSHAKE = 2
    APPLICATION = 3


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A whole handshake message in its TLS form (type, uint24 length, body), for ``epoch``."""

    epoch: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SendChangeCipherSpec:
    """The compatibility-mode ChangeCipherSpec (RFC 8446 §D.4); never sent in DTLS."""


@dataclass(frozen=True, slots=True)
class InstallKeys:
    """Switch one direction to ``epoch`` with these keys (RFC 8446 §7.3, RFC 9147 §4.2.3).

    ``log_label`` is the NSS key log label of ``secret`` (e.g. CLIENT_HANDSHAKE_TRAFFIC_SECRET),
    or "" for secrets the key log format has no name for (updated traffic secrets).
    """

    direction: Literal["read", "write"]
    epoch: int
    suite: CipherSuite
    secret: bytes = field(repr=False)
    keys: TrafficKeys = field(repr=False)
    log_label: str


@dataclass(frozen=True, slots=True)
class LogSecret:
    """A secret for the key log only (e.g. EXPORTER_SECRET)."""

    label: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class NegotiatedParameters:
    """Everything the handshake settled, as reported to the application."""

    version: int
    cipher_suite: CipherSuite
    group: int | None
    signature_scheme: int | None
    alpn: bytes | None
    server_name: str | None
    hello_retry: bool
    resumed: bool
    psk_mode: str | None
    early_data: Literal["accepted", "rejected", "not_sent"]
    peer_certificates: tuple[x509.Certificate, ...]
    client_authenticated: bool
    peer_record_size_limit: int | None


@dataclass(frozen=True, slots=True)
class HandshakeFinished:
    """The handshake is complete in this direction's view (RFC 8446 §2)."""

    parameters: NegotiatedParameters


@dataclass(frozen=True, slots=True)
class KeyUpdateReceived:
    """The peer moved its sending keys forward (RFC 8446 §4.6.3)."""

    update_requested: bool


@dataclass(frozen=True, slots=True)
class ConnectionIdNegotiated:
    """RFC 9146 / RFC 9147 §9: records we protect from now on carry ``peer_cid``."""

    peer_cid: bytes


@dataclass(frozen=True, slots=True)
class NewSession:
    """A client received a NewSessionTicket: this session can resume (RFC 8446 §4.6.1)."""

    session: Session


@dataclass(frozen=True, slots=True)
class EarlyDataDecision:
    """Whether the server takes the client's 0-RTT data (RFC 8446 §4.2.10).

    Server: accepted -> read epoch-1 application data, at most ``max_size`` bytes;
    rejected -> skip 0-RTT records up to ``max_size`` bytes. Client: stop sending early data.
    """

    accepted: bool
    max_size: int


@dataclass(frozen=True, slots=True)
class ClientAuthenticated:
    """Server: the client answered our post-handshake CertificateRequest (RFC 8446 §4.6.2);
    an empty ``chain`` means it declined and the request did not require a certificate."""

    context: bytes
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class CertificateRequested:
    """Client: we answered a post-handshake CertificateRequest (RFC 8446 §4.6.2)."""

    context: bytes
    certificate_sent: bool


Action = (
    SendMessage
    | SendChangeCipherSpec
    | InstallKeys
    | LogSecret
    | HandshakeFinished
    | KeyUpdateReceived
    | ConnectionIdNegotiated
    | NewSession
    | EarlyDataDecision
    | ClientAuthenticated
    | CertificateRequested
)
