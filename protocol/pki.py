"""A throwaway PKI for the demo, the tests and the interop peers (pure ``cryptography``).

Certificates carry the extensions a real PKI has (PEERS.md §7), because ``cryptography``'s
verifier applies the CA/Browser-Forum profile and so do the peers:

- CA: basicConstraints CA:TRUE (critical), keyUsage keyCertSign + cRLSign (critical), SKI, AKI.
- leaf: basicConstraints CA:FALSE, keyUsage digitalSignature (critical; RFC 8446 §4.4.2.2; RSA
  leaves also keyEncipherment, which NSS requires of RSA server certificates), extendedKeyUsage
  serverAuth / clientAuth, subjectAltName (DNS names and IP addresses), SKI, AKI, validity
  now-1h .. now+``days``.

Key types: ``KEY_TYPES``. ``rsa-pss`` is an RSA-2048 key (rsaEncryption SPKI, so TLS uses
rsa_pss_rsae_*) whose certificates are signed with RSASSA-PSS; ``cryptography`` cannot write an
id-RSASSA-PSS SubjectPublicKeyInfo. EdDSA keys are used for leaves only: the CA/B-Forum profile
that ``cryptography``'s verifier enforces forbids EdDSA certificate signatures, so an EdDSA leaf
is issued by an ECDSA P-256 CA (RFC 8446 §4.4.2.4 allows a key to be signed with another
algorithm) unless ``ca_key_type`` says otherwise.

Key generation is the slow part (RSA), so keys are cached per (key type, role, key set) within
the process; certificates, names and serial numbers are always fresh. Each root CA's name carries
a random suffix, so two PKIs never chain into each other by name; for distinct key material too
(e.g. an unrelated CA whose SPKI must not match a pin) pass another ``key_set`` or ``fresh_keys``.

Files written by :func:`write_pki` (names are stable: interop scripts use them): ``ca.pem``,
``ca.key``, ``server.pem`` (leaf + intermediates), ``server.key``, ``client.pem``, ``client.key``,
``server.p12`` (PKCS#12 without password, friendly name "server", for NSS ``pk12util -W ''``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KEY_TYPES",
    "PKI",
    "CertificateAuthority",
    "Credentials",
    "Purpose",
    "SigningKey",
    "create_intermediate_ca",
    "create_root_ca",
    "generate_key",
    "generate_pki",
    "issue_leaf",
    "main_make_certs",
    "write_pki",
]

SigningKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
Purpose = Literal["server", "client"]

KEY_TYPES: tuple[str, ...] = (
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
    "rsa2048",
    "rsa-pss",
    "ed25519",
    "ed448",
)
# Key types whose signatures cryptography's (CA/B Forum) verifier accepts on certificates.
_CA_KEY_TYPES = frozenset({"ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa2048", "rsa-pss"})
_CURVES: dict[str, ec.EllipticCurve] = {
    "ecdsa-p256": ec.SECP256R1(),
    "ecdsa-p384": ec.SECP384R1(),
    "ecdsa-p521": ec.SECP521R1(),
}
# The hash matching each curve's strength (as the ecdsa_secpXXXrY_shaZZZ schemes pair them).
_EC_HASHES: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "ecdsa-p256": hashes.SHA256(),
    "ecdsa-p384": hashes.SHA384(),
    "ecdsa-p521": hashes.SHA512(),
}
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
DEFAULT_CLIENT_NAME = "client.tls13.test"  # RFC 2606 reserved TLD
_CLOCK_SKEW = datetime.timedelta(hours=1)

_KEY_CACHE: dict[tuple[str, str], SigningKey] = {}


def _new_key(key_type: str) -> SigningKey:
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type in ("rsa2048", "rsa-pss"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def generate_key(key_type: str, *, slot: str = "", fresh: bool = False) -> SigningKey:
    """A private key of ``key_type``; the same ``slot`` returns the same cached key unless
    ``fresh`` (key generation dominates test time, certificates are cheap)."""
    if fresh:
        return _new_key(key_type)
    cache_key = (key_type, slot)
    key = _KEY_CACHE.get(cache_key)
    if key is None:
        key = _KEY_CACHE[cache_key] = _new_key(key_type)
    return key


@dataclass(frozen=True)
class Credentials:
    """An end-entity identity: what a TLS server or client presents."""

    cert_pem: bytes  # leaf then intermediates (the certificate_list, RFC 8446 §4.4.2)
    key_pem: bytes  # PKCS#8, unencrypted
    chain: list[x509.Certificate]  # leaf first, then intermediates; never the root
    private_key: SigningKey

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def chain_der(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.chain]


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its key; ``intermediates`` is what a leaf it issues must carry
    after itself: this CA (unless it is the root) and its own issuers below the root."""

    certificate: x509.Certificate
    private_key: SigningKey
    key_type: str
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.private_key)


@dataclass(frozen=True)
class PKI:
    ca: CertificateAuthority  # the root, the trust anchor
    intermediate: CertificateAuthority | None
    server: Credentials
    client: Credentials
    key_type: str

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.ca.certificate]

    @property
    def issuer(self) -> CertificateAuthority:
        """The CA that issued the leaves (the intermediate when there is one)."""
        return self.intermediate if self.intermediate is not None else self.ca

    def issue(
        self,
        purpose: Purpose,
        *,
        key_type: str | None = None,
        hosts: Sequence[str] | None = None,
        days: int = 30,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        san: bool = True,
        key_identifiers: bool = True,
        key_set: str = "default",
    ) -> Credentials:
        """Another leaf from the same issuing CA (tests: expired, wrong host, no AKI, ...);
        the keywords are :func:`issue_leaf`'s."""
        return issue_leaf(
            self.issuer,
            purpose,
            key_type=key_type or self.key_type,
            hosts=hosts,
            days=days,
            not_before=not_before,
            not_after=not_after,
            san=san,
            key_identifiers=key_identifiers,
            key_set=key_set,
        )


def _key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sign(
    builder: x509.CertificateBuilder, issuer_key: SigningKey, issuer_key_type: str
) -> x509.Certificate:
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return builder.sign(issuer_key, None)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return builder.sign(issuer_key, _EC_HASHES.get(issuer_key_type, hashes.SHA256()))
    if issuer_key_type == "rsa-pss":
        # Salt length = digest length: the only RSASSA-PSS form the CA/B profile (and
        # cryptography's verifier) accepts.
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return builder.sign(issuer_key, hashes.SHA256(), rsa_padding=pss)
    return builder.sign(issuer_key, hashes.SHA256())


def _validity(
    days: int, not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return (
        not_before if not_before is not None else now - _CLOCK_SKEW,
        not_after if not_after is not None else now + datetime.timedelta(days=days),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tls13 test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey
    | rsa.RSAPublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey,
    validity: tuple[datetime.datetime, datetime.datetime],
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _default_ca_key_type(key_type: str) -> str:
    return key_type if key_type in _CA_KEY_TYPES else "ecdsa-p256"


def create_root_ca(
    *,
    key_type: str = "ecdsa-p256",
    common_name: str | None = None,
    days: int = 30,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    key_set: str = "default",
    fresh_key: bool = False,
) -> CertificateAuthority:
    """A self-signed root. Its name has a random suffix so independent roots never collide."""
    key = generate_key(key_type, slot=f"{key_set}/root", fresh=fresh_key)
    name = _name(common_name or f"tls13 Test Root CA {secrets.token_hex(4)}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = _ca_builder(
        name, name, key.public_key(), _validity(days + 1, not_before, not_after), None
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
    )
    return CertificateAuthority(_sign(builder, key, key_type), key, key_type)


def _authority_key_identifier(issuer: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key())


def create_intermediate_ca(
    issuer: CertificateAuthority,
    *,
    key_type: str | None = None,
    common_name: str | None = None,
    days: int = 30,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    key_set: str = "default",
    fresh_key: bool = False,
) -> CertificateAuthority:
    """A CA issued by ``issuer`` that may only issue leaves (pathLenConstraint 0)."""
    key_type = key_type or issuer.key_type
    key = generate_key(key_type, slot=f"{key_set}/intermediate", fresh=fresh_key)
    name = _name(common_name or f"tls13 Test Intermediate CA {secrets.token_hex(4)}")
    builder = _ca_builder(
        name,
        issuer.certificate.subject,
        key.public_key(),
        _validity(days + 1, not_before, not_after),
        0,
    ).add_extension(_authority_key_identifier(issuer), critical=False)
    cert = _sign(builder, issuer.private_key, issuer.key_type)
    return CertificateAuthority(cert, key, key_type, (cert, *issuer.intermediates))


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_leaf(
    issuer: CertificateAuthority,
    purpose: Purpose,
    *,
    key_type: str = "ecdsa-p256",
    hosts: Sequence[str] | None = None,
    common_name: str | None = None,
    days: int = 30,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    san: bool = True,
    key_identifiers: bool = True,
    key_set: str = "default",
    fresh_key: bool = False,
) -> Credentials:
    """An end-entity certificate for ``purpose`` issued by ``issuer``.

    ``hosts`` become subjectAltName entries (IP literals as iPAddress); the default is
    ``DEFAULT_HOSTS`` for a server and ``DEFAULT_CLIENT_NAME`` for a client. ``san=False`` or
    ``key_identifiers=False`` (no SKI/AKI) build leaves a private IoT PKI might have, for tests
    of the relaxed extension policy. ``not_before``/``not_after`` override the validity.
    """
    if hosts is None:
        hosts = DEFAULT_HOSTS if purpose == "server" else (DEFAULT_CLIENT_NAME,)
    key = generate_key(key_type, slot=f"{key_set}/{purpose}", fresh=fresh_key)
    eku = (
        ExtendedKeyUsageOID.SERVER_AUTH if purpose == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    cn = common_name or (hosts[0] if hosts else f"tls13 {purpose}")
    validity = _validity(days, not_before, not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # NSS checks TLS server certificates against TLS 1.2 RSA key transport, so an
                # RSA leaf needs keyEncipherment there (as every public RSA certificate has).
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    )
    if san and hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(hosts)), critical=False
        )
    if key_identifiers:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        ).add_extension(_authority_key_identifier(issuer), critical=False)
    cert = _sign(builder, issuer.private_key, issuer.key_type)
    chain = [cert, *issuer.intermediates]
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return Credentials(cert_pem, _key_pem(key), chain, key)


def generate_pki(
    directory: Path | None = None,
    *,
    key_type: str = "ecdsa-p256",
    hosts: Sequence[str] = DEFAULT_HOSTS,
    client_names: Sequence[str] = (DEFAULT_CLIENT_NAME,),
    days: int = 30,
    intermediate: bool = False,
    ca_key_type: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    key_set: str = "default",
    fresh_keys: bool = False,
) -> PKI:
    """A root CA (optionally an intermediate), a server leaf for ``hosts`` and a client leaf.

    ``key_type`` is the leaves' key; the CAs use ``ca_key_type`` (default: ``key_type``, or
    ECDSA P-256 for EdDSA leaves, see the module docstring). ``not_before``/``not_after``
    override the leaves' validity (CAs stay valid). ``key_set`` names an independent set of
    cached keys: ``generate_pki(key_set="other")`` builds an unrelated PKI. Files are written
    when ``directory`` is given.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")
    ca_type = ca_key_type or _default_ca_key_type(key_type)
    root = create_root_ca(key_type=ca_type, days=days, key_set=key_set, fresh_key=fresh_keys)
    inter = (
        create_intermediate_ca(root, days=days, key_set=key_set, fresh_key=fresh_keys)
        if intermediate
        else None
    )
    issuer = inter if inter is not None else root
    server = issue_leaf(
        issuer,
        "server",
        key_type=key_type,
        hosts=hosts,
        days=days,
        not_before=not_before,
        not_after=not_after,
        key_set=key_set,
        fresh_key=fresh_keys,
    )
    client = issue_leaf(
        issuer,
        "client",
        key_type=key_type,
        hosts=client_names,
        common_name="tls13 client",
        days=days,
        not_before=not_before,
        not_after=not_after,
        key_set=key_set,
        fresh_key=fresh_keys,
    )
    pki = PKI(ca=root, intermediate=inter, server=server, client=client, key_type=key_type)
    if directory is not None:
        write_pki(pki, directory)
    return pki


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # Keys are created 0600 (they are throwaway, but tools such as ssh-style checks complain).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def server_pkcs12(pki: PKI) -> bytes:
    """The server identity as PKCS#12 (no password, friendly name "server"), for NSS.

    NoEncryption still writes a (SHA-256) MAC keyed with the empty password, which
    ``pk12util -i server.p12 -W ''`` and ``openssl pkcs12 -passin pass:`` accept.
    """
    return pkcs12.serialize_key_and_certificates(
        b"server",
        pki.server.private_key,
        pki.server.certificate,
        pki.server.chain[1:] or None,
        serialization.NoEncryption(),
    )


def write_pki(pki: PKI, directory: Path) -> list[Path]:
    """Write the stable set of files (see the module docstring); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes, bool]] = [
        ("ca.pem", pki.ca.cert_pem, False),
        ("ca.key", pki.ca.key_pem, True),
        ("server.pem", pki.server.cert_pem, False),
        ("server.key", pki.server.key_pem, True),
        ("client.pem", pki.client.cert_pem, False),
        ("client.key", pki.client.key_pem, True),
        ("server.p12", server_pkcs12(pki), True),
    ]
    if pki.intermediate is not None:
        files.append(("intermediate.pem", pki.intermediate.cert_pem, False))
    written = []
    for name, data, private in files:
        _write(directory / name, data, private=private)
        written.append(directory / name)
    return written


def main_make_certs(argv: Sequence[str] | None = None) -> int:
    """``python -m protocol make-certs DIR [--key-type T] [--host H ...] [--days N]
    [--intermediate]``: write a fresh throwaway PKI to DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m protocol make-certs",
        description="Write a throwaway CA, server and client certificates (PEM, PKCS#12).",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--key-type", choices=KEY_TYPES, default="ecdsa-p256")
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="NAME_OR_IP",
        help="subjectAltName of the server certificate (repeatable; default: "
        + ", ".join(DEFAULT_HOSTS)
        + ")",
    )
    parser.add_argument("--days", type=int, default=365, help="validity (default 365)")
    parser.add_argument("--intermediate", action="store_true", help="issue through an intermediate")
    args = parser.parse_args(argv)
    pki = generate_pki(
        key_type=args.key_type,
        hosts=tuple(args.hosts or DEFAULT_HOSTS),
        days=args.days,
        intermediate=args.intermediate,
        fresh_keys=True,
    )
    for path in write_pki(pki, args.directory):
        print(path)
    return 0
