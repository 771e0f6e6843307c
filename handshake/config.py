"""The loaded, validated parameters a handshake runs with.

``protocol.config`` builds these once per user configuration (reading files, building trust
stores), so starting a connection costs no parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from .certificates import TrustAnchors
from .cipher_suites import DEFAULT_CIPHER_SUITES
from .groups import DEFAULT_GROUPS
from .psk import PSK_DHE_KE, ExternalPsk, Session
from .signatures import DEFAULT_SIGNATURE_SCHEMES, is_rsassa_pss_certificate, schemes_for_key
from .tickets import TicketManager

# Roots a CertificateRequest lists by name at most (see certificate_authorities).
MAX_CA_NAMES = 16


@dataclass(frozen=True, eq=False)
class Credential:
    """A certificate chain (leaf first, DER) and its private key."""

    chain: tuple[bytes, ...]
    private_key: CertificateIssuerPrivateKeyTypes = field(repr=False)

    @cached_property
    def rsassa_pss(self) -> bool:
        """An RSASSA-PSS certificate signs only with rsa_pss_pss_* (RFC 8446 §4.2.3)."""
        return is_rsassa_pss_certificate(x509.load_der_x509_certificate(self.chain[0]))

    @cached_property
    def signature_schemes(self) -> tuple[int, ...]:
        return tuple(schemes_for_key(self.private_key, rsassa_pss_key=self.rsassa_pss))

    def schemes(self) -> tuple[int, ...]:
        return self.signature_schemes

    @cached_property
    def dns_names(self) -> tuple[str, ...]:
        """The leaf's subjectAltName DNS names, lower case (for choosing by server_name)."""
        leaf = x509.load_der_x509_certificate(self.chain[0])
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ()
        return tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))

    @cached_property
    def issuer_names(self) -> frozenset[bytes]:
        """DER issuer names along the chain (for choosing by certificate_authorities)."""
        return frozenset(
            x509.load_der_x509_certificate(der).issuer.public_bytes() for der in self.chain
        )

    def serves(self, server_name: str) -> bool:
        """The leaf names ``server_name`` (RFC 6125: a wildcard stands for one label)."""
        name = server_name.lower().rstrip(".")
        for pattern in self.dns_names:
            if pattern == name:
                return True
            if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
                return True
        return False


@dataclass(frozen=True)
class PeerVerification:
    """How the peer's certificate is checked (RFC 8446 §4.4.2.4)."""

    enabled: bool = True
    anchors: TrustAnchors | None = None  # None: the system store
    pins: tuple[bytes, ...] = ()  # SHA-256 of SubjectPublicKeyInfo
    relaxed_extensions: bool = False


@dataclass(frozen=True)
class HandshakeConfig:
    """Shared by both roles; fields a role does not use are ignored."""

    dtls: bool = False
    cipher_suites: tuple[int, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[int, ...] = DEFAULT_GROUPS
    key_share_groups: int = 1  # the client sends shares for the first N groups
    signature_schemes: tuple[int, ...] = tuple(DEFAULT_SIGNATURE_SCHEMES)
    alpn: tuple[bytes, ...] = ()
    credentials: tuple[Credential, ...] = ()
    verification: PeerVerification = PeerVerification()
    record_size_limit: int | None = None
    # DTLS Connection ID we want the peer to put on records to us (RFC 9146); b"" offers
    # the extension without asking for one; None does not negotiate CIDs at all.
    connection_id: bytes | None = None
    # RFC 8446 §4.2.9 modes, in preference order: the client offers them, the server picks
    # its first one the client offered. psk_ke (no (EC)DHE, no forward secrecy) is opt-in.
    psk_modes: tuple[int, ...] = (PSK_DHE_KE,)
    # client only
    server_name: str | None = None
    compatibility_mode: bool = True  # RFC 8446 §D.4; forced off for DTLS (RFC 9147 §5)
    session: Session | None = None  # a ticket to resume with (RFC 8446 §4.6.1)
    external_psk: ExternalPsk | None = None  # offered after the ticket, if both
    post_handshake_auth: bool = False  # RFC 8446 §4.2.6 (TLS only): answer later requests
    # server only
    require_client_certificate: bool = False
    request_client_certificate: bool = False
    always_hello_retry: bool = False  # e.g. to exercise HRR paths against a peer
    tls_cookie: bool = False  # send a cookie in a TLS HelloRetryRequest
    tickets: TicketManager | None = None  # issues/accepts session tickets; None: neither
    external_psks: tuple[ExternalPsk, ...] = ()
    psk_only: bool = False  # refuse handshakes that would not use a PSK
    # RFC 8446 §4.2.7: groups listed in EncryptedExtensions' supported_groups (None: omitted)
    advertised_groups: tuple[int, ...] | None = None
    random_bytes: Callable[[int], bytes] | None = None  # test vectors inject randoms
    key_share_private: Sequence[bytes] = ()  # test vectors inject ephemeral keys, in use order

    @cached_property
    def certificate_authorities(self) -> tuple[bytes, ...] | None:
        """DER subjects of the roots we accept peer chains from, for the certificate_authorities
        extension of a CertificateRequest (RFC 8446 §4.2.4); None with the system store or
        more than MAX_CA_NAMES roots (a long list costs every handshake and guides little)."""
        anchors = self.verification.anchors
        if anchors is None or len(anchors.certificates) > MAX_CA_NAMES:
            return None
        return tuple(c.subject.public_bytes() for c in anchors.certificates)
