"""Client and server configuration: frozen, validated once, secure by default.

Files are read and trust stores built when a config is created, so every connection made
from it starts without parsing anything.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509

from handshake.certificates import TrustAnchors, load_pem_certificates, load_private_key
from handshake.cipher_suites import DEFAULT_CIPHER_SUITES, suite_by_name
from handshake.config import Credential, HandshakeConfig, PeerVerification
from handshake.groups import DEFAULT_GROUPS, GROUP_NAMES, SERVER_DEFAULT_GROUPS
from handshake.psk import ExternalPsk, parse_psk_modes
from handshake.signatures import DEFAULT_SIGNATURE_SCHEMES, SignatureScheme
from handshake.tickets import (
    DEFAULT_FRESHNESS_WINDOW,
    DEFAULT_TICKET_COUNT,
    DEFAULT_TICKET_LIFETIME,
    ReplayStore,
    TicketKeyRing,
    TicketManager,
)
from protocol.keylog import KeyLog, open_keylog
from protocol.sessions import SessionStore
from protocol.trace import TraceHook

PathLike = str | Path

# DTLS defaults (RFC 9147 §5.8.2: initial timer 1 s; §4.4: assume IPv6's 1280-byte MTU)
DEFAULT_MTU = 1280
DEFAULT_RETRANSMIT_INITIAL = 1.0
DEFAULT_RETRANSMIT_MAX = 60.0
DEFAULT_MAX_RETRANSMITS = 6


def parse_groups(names: Sequence[str | int]) -> tuple[int, ...]:
    by_name = {name.lower(): code for code, name in GROUP_NAMES.items()}
    aliases = {"p-256": 23, "p256": 23, "p-384": 24, "p384": 24, "p-521": 25, "p521": 25}
    out: list[int] = []
    for name in names:
        if isinstance(name, int):
            code: int | None = name
        else:
            key = name.strip().lower()
            code = by_name.get(key, aliases.get(key))
        if code is None or code not in GROUP_NAMES:
            raise ValueError(f"unknown group {name!r}; known: {', '.join(GROUP_NAMES.values())}")
        out.append(code)
    return tuple(out)


def parse_cipher_suites(names: Sequence[str | int]) -> tuple[int, ...]:
    return tuple(n if isinstance(n, int) else suite_by_name(n.strip()).code for n in names)


def parse_signature_schemes(names: Sequence[str | int]) -> tuple[int, ...]:
    return tuple(n if isinstance(n, int) else int(SignatureScheme[n.strip()]) for n in names)


def _pin(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ValueError("a SHA-256 pin is 32 bytes")
        return value
    raw = base64.b64decode(value.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"pin {value!r} is not a base64 SHA-256 digest")
    return raw


def _credential(certfile: PathLike, keyfile: PathLike) -> Credential:
    certs = load_pem_certificates(Path(certfile).read_bytes())
    if not certs:
        raise ValueError(f"no certificate in {certfile}")
    key = load_private_key(Path(keyfile).read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    return Credential(chain=tuple(c.public_bytes(Encoding.DER) for c in certs), private_key=key)


def _anchors(
    cafile: PathLike | None, ca_certificates: Sequence[x509.Certificate]
) -> TrustAnchors | None:
    certs = list(ca_certificates)
    if cafile is not None:
        certs.extend(load_pem_certificates(Path(cafile).read_bytes()))
    return TrustAnchors(certs) if certs else None


@dataclass(frozen=True)
class _Common:
    alpn: tuple[str, ...] = ()
    groups: tuple[str | int, ...] = ()
    cipher_suites: tuple[str | int, ...] = ()
    signature_schemes: tuple[str | int, ...] = ()
    record_size_limit: int | None = None
    # Where secrets go in NSS key log format (SSLKEYLOGFILE); a path or a callable per line.
    keylog: PathLike | Callable[[str], None] | None = None
    # Sees every record and handshake message sent and received; None costs nothing.
    trace: TraceHook | None = None
    # Loosen the CA/Browser-Forum certificate profile for private PKIs (chain, signatures,
    # names and validity are still checked).
    relaxed_certificate_extensions: bool = False
    # DTLS
    mtu: int = DEFAULT_MTU
    retransmit_initial: float = DEFAULT_RETRANSMIT_INITIAL
    retransmit_max: float = DEFAULT_RETRANSMIT_MAX
    max_retransmits: int = DEFAULT_MAX_RETRANSMITS
    cid_length: int | None = None  # DTLS Connection ID we ask the peer to use (0 = empty)
    # RFC 8446 §4.2.9 PSK key exchange modes in preference order: "psk_dhe_ke" keeps forward
    # secrecy; "psk_ke" (no (EC)DHE) must be opted into on both sides.
    psk_modes: tuple[str | int, ...] = ("psk_dhe_ke",)

    _default_groups: ClassVar[tuple[int, ...]] = DEFAULT_GROUPS

    def _base(self, dtls: bool) -> dict[str, Any]:
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 2**14 + 1:
            raise ValueError("record_size_limit must be within 64..16385 (RFC 8449)")
        return {
            "dtls": dtls,
            "cipher_suites": parse_cipher_suites(self.cipher_suites) or DEFAULT_CIPHER_SUITES,
            "groups": parse_groups(self.groups) or self._default_groups,
            "signature_schemes": parse_signature_schemes(self.signature_schemes)
            or tuple(DEFAULT_SIGNATURE_SCHEMES),
            "alpn": tuple(p.encode() for p in self.alpn),
            "record_size_limit": self.record_size_limit,
            "psk_modes": parse_psk_modes(self.psk_modes),
        }

    def open_keylog(self) -> KeyLog | None:
        return open_keylog(self.keylog)


@dataclass(frozen=True)
class ClientConfig(_Common):
    """A client's settings. Verification is on: ``cafile``/``ca_certificates`` or the system
    store, the server name, validity at handshake time, and any ``pins``."""

    server_name: str | None = None
    cafile: PathLike | None = None
    ca_certificates: tuple[x509.Certificate, ...] = ()
    pins_sha256: tuple[bytes | str, ...] = ()  # SPKI SHA-256 pins; any one matching passes
    certfile: PathLike | None = None  # for client authentication
    keyfile: PathLike | None = None
    # More client chains: a CertificateRequest is answered with the first whose key fits,
    # preferring one from a CA it names (certificate_authorities, RFC 8446 §4.2.4).
    credentials: tuple[Credential, ...] = ()
    key_share_groups: int = 1
    compatibility_mode: bool = True
    # Turns off every certificate check. Only for tests against throwaway peers.
    dangerously_skip_certificate_verification: bool = False
    # Resumption (RFC 8446 §2.2): connections take a session for (server_name, port) from
    # here and put the tickets they receive back.
    session_store: SessionStore | None = None
    # A PSK provisioned out of band, offered in every ClientHello (after a ticket, if any).
    external_psk: ExternalPsk | None = None
    # Offer post-handshake client authentication (RFC 8446 §4.2.6, TLS only): a later
    # CertificateRequest is answered with certfile/keyfile (or an empty Certificate).
    post_handshake_auth: bool = False
    _tls: HandshakeConfig = field(init=False, repr=False, compare=False)
    _dtls: HandshakeConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        credentials = tuple(self.credentials)
        if self.certfile is not None:
            if self.keyfile is None:
                raise ValueError("certfile needs keyfile")
            credentials = (_credential(self.certfile, self.keyfile), *credentials)
        verification = PeerVerification(
            enabled=not self.dangerously_skip_certificate_verification,
            anchors=_anchors(self.cafile, self.ca_certificates),
            pins=tuple(_pin(p) for p in self.pins_sha256),
            relaxed_extensions=self.relaxed_certificate_extensions,
        )
        for dtls, name in ((False, "_tls"), (True, "_dtls")):
            hs = HandshakeConfig(
                **self._base(dtls),
                credentials=credentials,
                verification=verification,
                server_name=self.server_name,
                key_share_groups=self.key_share_groups,
                compatibility_mode=self.compatibility_mode and not dtls,
                external_psk=self.external_psk,
                post_handshake_auth=self.post_handshake_auth and not dtls,
            )
            object.__setattr__(self, name, hs)

    def handshake_config(self, dtls: bool) -> HandshakeConfig:
        return self._dtls if dtls else self._tls


@dataclass(frozen=True)
class ServerConfig(_Common):
    """A server's settings: its certificate chain and key, client authentication, tickets,
    PSKs and 0-RTT.

    Tickets (RFC 8446 §4.6.1) are sealed under ``ticket_keys`` (a fresh random key ring per
    config when None; share one ring between servers, and rotate it, to resume across them).
    ``max_early_data`` > 0 advertises and accepts 0-RTT data of up to that many bytes per
    connection; early data may be replayed (RFC 8446 §8), the server limits that with
    ``single_use_tickets`` and a ClientHello recording within ``early_data_window`` seconds.
    """

    certfile: PathLike | None = None
    keyfile: PathLike | None = None
    credentials: tuple[Credential, ...] = ()  # more chains (e.g. ECDSA and RSA)
    cafile: PathLike | None = None  # roots for client certificates
    ca_certificates: tuple[x509.Certificate, ...] = ()
    verify_client: bool = False  # require and verify a client certificate
    request_client_certificate: bool = False  # ask, but accept an empty answer
    _default_groups: ClassVar[tuple[int, ...]] = SERVER_DEFAULT_GROUPS
    always_hello_retry: bool = False
    tls_cookie: bool = False
    # DTLS: the stateless cookie exchange before any state is kept (RFC 9147 §5.1: on by
    # default), and its secret (random per server when None).
    dtls_cookie: bool = True
    cookie_secret: bytes | None = None
    tickets: int = DEFAULT_TICKET_COUNT  # NewSessionTickets after each handshake
    ticket_lifetime: int = DEFAULT_TICKET_LIFETIME  # seconds, at most 7 days
    ticket_keys: TicketKeyRing | None = None
    single_use_tickets: bool = False
    # Anti-replay memory (used single-use tickets, 0-RTT ClientHellos; RFC 8446 §8): per
    # config in memory when None. Servers sharing ``ticket_keys`` share one store to accept
    # each ticket or ClientHello once across all of them.
    replay_store: ReplayStore | None = None
    max_early_data: int = 0
    early_data_window: float = DEFAULT_FRESHNESS_WINDOW
    # identity -> key, for certificate-less deployments (RFC 8446 §2.2)
    external_psks: Mapping[bytes | str, ExternalPsk] = field(default_factory=dict)
    psk_only: bool = False  # refuse handshakes without an acceptable PSK
    _tls: HandshakeConfig = field(init=False, repr=False, compare=False)
    _dtls: HandshakeConfig = field(init=False, repr=False, compare=False)
    _tickets: TicketManager | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        credentials = list(self.credentials)
        if self.certfile is not None:
            if self.keyfile is None:
                raise ValueError("certfile needs keyfile")
            credentials.insert(0, _credential(self.certfile, self.keyfile))
        external: list[ExternalPsk] = []
        for identity, psk in self.external_psks.items():
            raw = identity.encode() if isinstance(identity, str) else bytes(identity)
            if raw != psk.identity:
                raise ValueError(f"external_psks key {identity!r} is not its PSK's identity")
            external.append(psk)
        if not credentials and not external:
            raise ValueError("a server needs certfile/keyfile, credentials or external_psks")
        manager = None
        if self.tickets > 0 or self.ticket_keys is not None:
            manager = TicketManager(
                self.ticket_keys,
                count=self.tickets,
                lifetime=self.ticket_lifetime,
                max_early_data=self.max_early_data,
                single_use=self.single_use_tickets,
                freshness_window=self.early_data_window,
                replay_store=self.replay_store,
            )
        object.__setattr__(self, "_tickets", manager)
        anchors = _anchors(self.cafile, self.ca_certificates)
        if self.verify_client and anchors is None:
            raise ValueError("verify_client needs cafile or ca_certificates")
        verification = PeerVerification(
            enabled=True,
            anchors=anchors,
            relaxed_extensions=self.relaxed_certificate_extensions,
        )
        for dtls, name in ((False, "_tls"), (True, "_dtls")):
            hs = HandshakeConfig(
                **self._base(dtls),
                credentials=tuple(credentials),
                verification=verification,
                require_client_certificate=self.verify_client,
                request_client_certificate=self.request_client_certificate,
                always_hello_retry=self.always_hello_retry,
                tls_cookie=self.tls_cookie,
                tickets=manager,
                external_psks=tuple(external),
                psk_only=self.psk_only,
            )
            object.__setattr__(self, name, hs)

    def handshake_config(self, dtls: bool) -> HandshakeConfig:
        return self._dtls if dtls else self._tls

    @property
    def ticket_manager(self) -> TicketManager | None:
        """The shared ticket state (key ring, anti-replay memory) of this configuration."""
        return self._tickets
