"""Peer certificate validation (RFC 8446 §4.4.2, §4.4.2.4) and the alert for each failure (§6.2).

Path building, signatures, validity, name matching and the extension profile are all done by
``cryptography.x509.verification``; this module only picks the policy, maps its errors to
alerts, and adds the TLS-specific checks (keyUsage digitalSignature, §4.4.2.2) and SPKI pins.

Alerts chosen per failure (§6.2 defines them only loosely; the choices match Go's crypto/tls):

- expired / not yet valid -> ``certificate_expired`` ("has expired or is not currently valid").
- hostname mismatch -> ``bad_certificate``: §6.2 has no name alert (``unrecognized_name`` is a
  server's SNI answer), ``certificate_unknown`` is for unspecified issues, and the certificate is
  simply not acceptable for this peer. Go and OpenSSL 3.0 (``s_client -verify_hostname``, seen
  here) send ``bad_certificate`` too.
- unknown CA (no path to a trust anchor, chain too deep) -> ``unknown_ca``.
- a signature in the chain does not verify -> ``bad_certificate`` ("contained signatures that did
  not verify correctly").
- pin mismatch -> ``bad_certificate``: the chain is valid but is not the certificate we accept.
- outside the supported profile (forbidden algorithm, weak RSA key, wrong EKU or keyUsage,
  missing required / unknown critical extension, not X.509v3) -> ``unsupported_certificate``,
  §4.4.2.2's default when no acceptable chain can be built.
- undecodable DER -> ``bad_certificate`` ("corrupt"); anything else -> ``bad_certificate``.

Relaxed extension policy (PEERS.md §7): private/IoT PKIs often lack what the CA/B Forum profile
requires (AKI, SKI, CA keyUsage, critical-extension hygiene). ``relaxed_extensions=True`` starts
from ``ExtensionPolicy.permit_all()`` and keeps only what ``cryptography`` itself insists on
(basicConstraints on CAs, subjectAltName on a named server) plus EKU, CA keyUsage and the leaf's
digitalSignature checks *when present*. Chain, signatures, validity and the name are still
verified.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    ServerVerifier,
    Store,
    Subject,
    VerificationError,
)

from .alerts import AlertDescription, HandshakeError

__all__ = [
    "BAD_CERTIFICATE",
    "BAD_SIGNATURE",
    "CANNOT_PARSE",
    "EXPIRED",
    "HOSTNAME_MISMATCH",
    "NOT_YET_VALID",
    "PIN_MISMATCH",
    "UNKNOWN_CA",
    "UNSUPPORTED",
    "CertificateVerifyError",
    "PrivateKey",
    "PublicKey",
    "TrustAnchors",
    "leaf_public_key",
    "load_pem_certificates",
    "load_private_key",
    "parse_certificate_chain",
    "server_subject",
    "spki_sha256",
    "system_roots",
    "verify_client_certificate",
    "verify_server_certificate",
]

# The keys TLS 1.3 can sign a CertificateVerify with (RFC 8446 §4.2.3).
PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
PublicKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

# Short, exact reasons (CertificateVerifyError.kind); the detail follows after ": ".
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
HOSTNAME_MISMATCH = "hostname mismatch"
UNKNOWN_CA = "unknown CA"
PIN_MISMATCH = "pin mismatch"
BAD_SIGNATURE = "bad signature"
BAD_CERTIFICATE = "bad certificate"
UNSUPPORTED = "unsupported certificate"
CANNOT_PARSE = "cannot parse certificate"

_A = AlertDescription


class CertificateVerifyError(HandshakeError):
    """A rejected peer certificate: ``kind`` is one of the short reasons above, ``reason`` is
    ``"<kind>: <detail>"`` where the detail is usually ``cryptography``'s own message."""

    def __init__(self, alert: AlertDescription, kind: str, detail: str = "") -> None:
        super().__init__(alert, f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


# --- classification of cryptography's VerificationError texts --------------------------------
# Matched as substrings, in order, against the texts of cryptography 50's verifier (found by
# experiment and in its error strings; the common ones are exercised by test_certificates.py).
# "candidates exhausted: X" wraps the error X of the last issuer candidate tried, so matching on
# substrings classifies X. An unknown text falls back to bad_certificate with the raw message.
_TIME_ERROR = "not valid at validation time"
_CLASSIFICATION: tuple[tuple[str, AlertDescription, str], ...] = (
    ("no matching subjectAltName", _A.bad_certificate, HOSTNAME_MISMATCH),
    ("leaf server certificate has no subjectAltName", _A.bad_certificate, HOSTNAME_MISMATCH),
    ("exhausted with no interior errors", _A.unknown_ca, UNKNOWN_CA),
    ("exceeds max depth", _A.unknown_ca, UNKNOWN_CA),
    ("signature does not match", _A.bad_certificate, BAD_SIGNATURE),
    ("ASN.1 parsing error", _A.bad_certificate, CANNOT_PARSE),
    ("Forbidden public key algorithm", _A.unsupported_certificate, UNSUPPORTED),
    ("Forbidden signature algorithm", _A.unsupported_certificate, UNSUPPORTED),
    ("too weak", _A.unsupported_certificate, UNSUPPORTED),
    ("EKU", _A.unsupported_certificate, UNSUPPORTED),
    ("keyUsage", _A.unsupported_certificate, UNSUPPORTED),
    ("basicConstraints", _A.unsupported_certificate, UNSUPPORTED),
    ("critical extensions", _A.unsupported_certificate, UNSUPPORTED),
    ("invalid extension", _A.unsupported_certificate, UNSUPPORTED),
    ("missing required extension", _A.unsupported_certificate, UNSUPPORTED),
    ("X509v3", _A.unsupported_certificate, UNSUPPORTED),
)


def _time_kind(certs: Iterable[x509.Certificate], when: datetime.datetime) -> str:
    for cert in certs:
        if when > cert.not_valid_after_utc:
            return EXPIRED
        if when < cert.not_valid_before_utc:
            return NOT_YET_VALID
    return EXPIRED


def _classify(
    message: str,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    when: datetime.datetime,
) -> CertificateVerifyError:
    if _TIME_ERROR in message:
        # cryptography does not say which bound failed nor (inside "candidates exhausted")
        # which certificate: look at the leaf first, then what the chain could have used.
        issuers = {c.issuer for c in (leaf, *intermediates)}
        roots = [a for a in anchors.certificates if a.subject in issuers]
        return CertificateVerifyError(
            _A.certificate_expired, _time_kind((leaf, *intermediates, *roots), when), message
        )
    for needle, alert, kind in _CLASSIFICATION:
        if needle in message:
            return CertificateVerifyError(alert, kind, message)
    return CertificateVerifyError(_A.bad_certificate, BAD_CERTIFICATE, message)


# --- extension policies --------------------------------------------------------------------------
def _require_eku(
    purpose: x509.ObjectIdentifier,
) -> Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    """RFC 5280 §4.2.1.12: when EKU is present it must allow the purpose (or anyExtendedKeyUsage).
    The message reuses cryptography's own text so that classification is uniform."""

    def validator(
        _policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
    ) -> None:
        allowed = (purpose, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        if eku is not None and not any(oid in eku for oid in allowed):
            raise ValueError("required EKU not found")

    return validator


def _ca_key_usage(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # RFC 5280 §4.2.1.3: a CA's keyUsage, when present, must assert keyCertSign.
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("keyUsage.keyCertSign must be asserted in a CA certificate")


def _ee_key_usage(strict: bool) -> Callable[[Policy, x509.Certificate, x509.KeyUsage | None], None]:
    """The leaf's keyUsage, checked inside the verifier (only that extension is decoded).

    RFC 8446 §4.4.2.2: "the digitalSignature bit MUST be set if the Key Usage extension is
    present" (CertificateVerify is a signature); the CA/B profile does not check it. ``strict``
    keeps the rule of cryptography's webpki EE policy that this validator replaces: an
    end-entity keyUsage must not assert keyCertSign (same message as cryptography's)."""

    def validator(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
        if ku is None:
            return
        if strict and ku.key_cert_sign:
            raise ValueError("EE keyUsage must not assert keyCertSign")
        if not ku.digital_signature:
            raise ValueError("leaf keyUsage lacks digitalSignature")

    return validator


class _Purpose(Enum):
    SERVER = "server"  # a server certificate checked against a name
    SERVER_UNNAMED = "server-unnamed"  # no server_name: chain + serverAuth EKU, no name
    CLIENT = "client"


def _extension_policies(
    purpose: _Purpose, relaxed: bool
) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    agnostic = Criticality.AGNOSTIC
    if not relaxed:
        ca = ExtensionPolicy.webpki_defaults_ca()
        ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.KeyUsage, agnostic, _ee_key_usage(strict=True)
        )
        if purpose is _Purpose.SERVER_UNNAMED:
            # A client verifier (it needs no subject) asks for clientAuth: require serverAuth.
            server_eku = _require_eku(ExtendedKeyUsageOID.SERVER_AUTH)
            ee = ee.may_be_present(x509.ExtendedKeyUsage, agnostic, server_eku)
        return ca, ee
    # cryptography refuses a CA policy without basicConstraints and a server policy without SAN.
    ca = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, agnostic, None)
        .may_be_present(x509.KeyUsage, agnostic, _ca_key_usage)
    )
    eku = (
        ExtendedKeyUsageOID.CLIENT_AUTH
        if purpose is _Purpose.CLIENT
        else ExtendedKeyUsageOID.SERVER_AUTH
    )
    ee = (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _require_eku(eku))
        .may_be_present(x509.KeyUsage, agnostic, _ee_key_usage(strict=False))
    )
    if purpose is _Purpose.SERVER:
        ee = ee.require_present(x509.SubjectAlternativeName, agnostic, None)
    return ca, ee


# --- trust anchors -------------------------------------------------------------------------------
class TrustAnchors:
    """Trusted roots with their ``cryptography`` Store, built once per configuration.

    The store and the per-purpose policy builders are cached on the object, so repeated
    handshakes only add the validation time and the subject.
    """

    __slots__ = ("_builders", "_verifiers", "certificates", "store")

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self.certificates: tuple[x509.Certificate, ...] = tuple(certificates)
        if not self.certificates:
            raise ValueError("TrustAnchors needs at least one certificate")
        self.store = Store(list(self.certificates))
        self._builders: dict[tuple[_Purpose, bool], PolicyBuilder] = {}
        # (purpose, relaxed, subject) -> (validation second, verifier); see _verifier().
        self._verifiers: dict[
            tuple[_Purpose, bool, Subject | None], tuple[int, ServerVerifier | ClientVerifier]
        ] = {}

    @classmethod
    def from_pem(cls, data: bytes) -> TrustAnchors:
        return cls(load_pem_certificates(data))

    @classmethod
    def system(cls) -> TrustAnchors:
        """The operating system's roots (cached for the process)."""
        return _system_anchors()

    def __len__(self) -> int:
        return len(self.certificates)

    def __iter__(self) -> Iterator[x509.Certificate]:
        return iter(self.certificates)

    def __repr__(self) -> str:
        return f"TrustAnchors({len(self.certificates)} certificates)"

    def _builder(self, purpose: _Purpose, relaxed: bool) -> PolicyBuilder:
        builder = self._builders.get((purpose, relaxed))
        if builder is None:
            ca, ee = _extension_policies(purpose, relaxed)
            builder = (
                PolicyBuilder().store(self.store).extension_policies(ca_policy=ca, ee_policy=ee)
            )
            self._builders[(purpose, relaxed)] = builder
        return builder

    def _verifier(
        self, purpose: _Purpose, relaxed: bool, subject: Subject | None, now: float
    ) -> ServerVerifier | ClientVerifier:
        """The verifier for one validation time, reused within that second.

        cryptography validates at whole-second precision (the time is truncated, as X.509
        validity is encoded in seconds, RFC 5280 §4.1.2.5), so a verifier built for
        floor(now) checks exactly what one built for ``now`` would; building one afresh costs
        more than a tenth of the path validation itself.
        """
        second = math.floor(now)
        key = (purpose, relaxed, subject)
        cached = self._verifiers.get(key)
        if cached is not None and cached[0] == second:
            return cached[1]
        builder = self._builder(purpose, relaxed).time(_validation_time(second))
        verifier: ServerVerifier | ClientVerifier
        if subject is not None:
            verifier = _server_verifier(builder, subject)
        else:
            verifier = builder.build_client_verifier()
        if len(self._verifiers) >= _MAX_VERIFIERS:
            self._verifiers.clear()  # only with many distinct server names
        self._verifiers[key] = (second, verifier)
        return verifier


# Debian/Ubuntu, RHEL/Fedora, Alpine/macOS (OpenSSL's default), SUSE.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
)
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _load_bundle(path: Path) -> list[x509.Certificate]:
    """Every parsable certificate of a system bundle: one odd root must not lose them all."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    certs = []
    with warnings.catch_warnings():
        # Some long-lived roots have non-positive serial numbers (deprecated, still trusted).
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM_BLOCK.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return certs


def _system_bundle_paths() -> list[Path]:
    paths = [Path(p) for p in (os.environ.get("SSL_CERT_FILE"),) if p]
    paths.extend(Path(p) for p in _SYSTEM_BUNDLES)
    try:
        import certifi  # type: ignore[import-not-found,unused-ignore]

        paths.append(Path(certifi.where()))
    except ImportError:
        pass
    return paths


@functools.cache
def _system_anchors() -> TrustAnchors:
    for path in _system_bundle_paths():
        certs = _load_bundle(path)
        if certs:
            return TrustAnchors(certs)
    raise ValueError("no system trust store found (set SSL_CERT_FILE or pass roots)")


def system_roots() -> list[x509.Certificate]:
    """The system's trusted roots (SSL_CERT_FILE, the distribution bundle, else certifi)."""
    return list(_system_anchors().certificates)


@functools.lru_cache(maxsize=16)
def _anchors_for(roots: tuple[x509.Certificate, ...]) -> TrustAnchors:
    # Keyed by value (x509.Certificate hashes and compares its DER), so a reused id() can never
    # return another configuration's store.
    return TrustAnchors(roots)


def _resolve_anchors(roots: TrustAnchors | Sequence[x509.Certificate] | None) -> TrustAnchors:
    if roots is None:
        return _system_anchors()
    if isinstance(roots, TrustAnchors):
        return roots
    return _anchors_for(tuple(roots))


# --- loading -------------------------------------------------------------------------------------
def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM file, in order. No certificate at all is a ValueError."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError("no PEM certificate found")
    return x509.load_pem_x509_certificates(data)


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM (or DER) private key usable for TLS 1.3 signatures (EC, RSA, Ed25519, Ed448)."""
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password)
    else:
        key = serialization.load_der_private_key(data, password)
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ValueError(f"{type(key).__name__} cannot sign a TLS 1.3 CertificateVerify")
    return key


# Parsed peer certificates by DER: a client meets the same server chain (and a server the
# same client chains) in handshake after handshake. A Certificate is immutable, and one that
# was already used also keeps what cryptography decoded lazily (key, extensions): a fresh
# parse costs ~20 µs more per verification. Only the parse is shared; every handshake still
# runs the whole path validation, signatures included.
_PARSED: dict[bytes, x509.Certificate] = {}
_MAX_PARSED = 128
_MAX_VERIFIERS = 256


def parse_certificate_chain(chain_der: Sequence[bytes]) -> list[x509.Certificate]:
    """DER certificates from a Certificate message; corrupt DER is ``bad_certificate``."""
    certs = []
    parsed = _PARSED
    for index, der in enumerate(chain_der):
        der = bytes(der)
        cert = parsed.get(der)
        if cert is None:
            try:
                cert = x509.load_der_x509_certificate(der)
            except (ValueError, x509.InvalidVersion) as exc:
                raise CertificateVerifyError(
                    _A.bad_certificate, CANNOT_PARSE, f"entry {index}: {exc}"
                ) from exc
            if len(parsed) >= _MAX_PARSED:
                del parsed[next(iter(parsed))]  # the oldest entry
            parsed[der] = cert
        certs.append(cert)
    return certs


def leaf_public_key(chain: Sequence[x509.Certificate]) -> PublicKey:
    """The end-entity key that must sign CertificateVerify (RFC 8446 §4.4.2.2, §4.4.3)."""
    try:
        key = chain[0].public_key()
    except UnsupportedAlgorithm as exc:
        raise CertificateVerifyError(_A.unsupported_certificate, UNSUPPORTED, str(exc)) from exc
    except ValueError as exc:
        raise CertificateVerifyError(_A.bad_certificate, CANNOT_PARSE, str(exc)) from exc
    if not isinstance(
        key,
        ec.EllipticCurvePublicKey
        | rsa.RSAPublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise CertificateVerifyError(
            _A.unsupported_certificate, UNSUPPORTED, f"{type(key).__name__} cannot sign in TLS 1.3"
        )
    return key


def spki_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the pin format (as HPKP, RFC 7469 §2.4)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


@functools.lru_cache(maxsize=256)
def server_subject(server_name: str) -> Subject:
    """The name to match: an IP literal as iPAddress, else a DNS name (a trailing root dot is
    dropped, IDNs become A-labels). cryptography checks DNS syntax only when a verifier is built:
    an invalid name then fails the handshake with internal_error. Cached: a client names the
    same few servers over and over, and telling an IP literal from a name costs an exception."""
    name = server_name[:-1] if server_name.endswith(".") else server_name
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    return x509.DNSName(name)


# --- verification --------------------------------------------------------------------------------
def _validation_time(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def _check_pins(chain: Sequence[x509.Certificate], pins: Sequence[bytes]) -> None:
    if not pins:
        return
    seen = {spki_sha256(c) for c in chain}
    if seen.isdisjoint(bytes(p) for p in pins):
        raise CertificateVerifyError(
            _A.bad_certificate, PIN_MISMATCH, "no pinned public key in the validated chain"
        )


def _server_verifier(builder: PolicyBuilder, subject: Subject) -> ServerVerifier:
    try:
        return builder.build_server_verifier(subject)
    except ValueError as exc:
        # cryptography checks the DNS name syntax only here. The name is local configuration,
        # not the peer's fault: internal_error (§6.2), and the config should have caught it.
        raise HandshakeError(
            _A.internal_error, f"invalid server name {subject.value!r}: {exc}"
        ) from exc


def _verify(
    chain_der: Sequence[bytes],
    purpose: _Purpose,
    subject: Subject | None,
    now: float,
    roots: TrustAnchors | Sequence[x509.Certificate] | None,
    pins: Sequence[bytes],
    relaxed: bool,
) -> list[x509.Certificate]:
    certs = parse_certificate_chain(chain_der)
    leaf, intermediates = certs[0], certs[1:]
    anchors = _resolve_anchors(roots)
    verifier = anchors._verifier(purpose, relaxed, subject, now)
    try:
        if isinstance(verifier, ServerVerifier):
            chain = verifier.verify(leaf, intermediates)
        else:
            chain = verifier.verify(leaf, intermediates).chain
    except VerificationError as exc:
        when = _validation_time(now)
        raise _classify(str(exc), leaf, intermediates, anchors, when) from exc
    except x509.UnsupportedGeneralNameType as exc:  # a client SAN cryptography cannot represent
        raise CertificateVerifyError(_A.unsupported_certificate, UNSUPPORTED, str(exc)) from exc
    # The leaf's keyUsage was checked by the extension policy (_ee_key_usage).
    _check_pins(chain, pins)
    return chain


def verify_server_certificate(
    chain_der: Sequence[bytes],
    *,
    server_name: str | None,
    now: float,
    roots: TrustAnchors | Sequence[x509.Certificate] | None = None,
    pins: Sequence[bytes] = (),
    relaxed_extensions: bool = False,
) -> list[x509.Certificate]:
    """Validate a server's certificate_list (leaf first, RFC 8446 §4.4.2) at POSIX time ``now``.

    ``server_name`` is a DNS name or an IP literal matched against subjectAltName; ``None``
    skips the name check only (chain, time and serverAuth EKU are still verified). ``roots``
    None means the system store. ``pins`` are SHA-256 SPKI digests (:func:`spki_sha256`): when
    given, one of them must match a certificate of the validated chain (leaf, intermediate or
    root); pins add to path validation, they never replace it.
    Returns the validated chain, leaf first, ending with the trust anchor. Raises
    :class:`CertificateVerifyError` (a HandshakeError); an empty list is a ``decode_error``.
    """
    if not chain_der:
        # RFC 8446 §4.4.2.4
        raise HandshakeError(_A.decode_error, "empty server certificate_list")
    subject = server_subject(server_name) if server_name is not None else None
    purpose = _Purpose.SERVER if subject is not None else _Purpose.SERVER_UNNAMED
    return _verify(chain_der, purpose, subject, now, roots, pins, relaxed_extensions)


def verify_client_certificate(
    chain_der: Sequence[bytes],
    *,
    now: float,
    roots: TrustAnchors | Sequence[x509.Certificate] | None,
    pins: Sequence[bytes] = (),
    relaxed_extensions: bool = False,
) -> list[x509.Certificate]:
    """Validate a client's certificate_list (clientAuth EKU when EKU is present).

    An empty list is ``certificate_required`` (§4.4.2.4): callers that accept unauthenticated
    clients check for it first. Otherwise as :func:`verify_server_certificate` without a name.
    """
    if not chain_der:
        raise HandshakeError(_A.certificate_required, "client sent no certificate")
    return _verify(chain_der, _Purpose.CLIENT, None, now, roots, pins, relaxed_extensions)
