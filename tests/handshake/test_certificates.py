"""Certificate validation: every failure class with real generated certificates, and its alert
(RFC 8446 §4.4.2.4, §6.2; choices documented in handshake/certificates.py)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding

from handshake import certificates
from handshake.alerts import AlertDescription, HandshakeError
from handshake.certificates import (
    BAD_CERTIFICATE,
    BAD_SIGNATURE,
    CANNOT_PARSE,
    EXPIRED,
    HOSTNAME_MISMATCH,
    NOT_YET_VALID,
    PIN_MISMATCH,
    UNKNOWN_CA,
    UNSUPPORTED,
    CertificateVerifyError,
    TrustAnchors,
    leaf_public_key,
    load_pem_certificates,
    load_private_key,
    parse_certificate_chain,
    server_subject,
    spki_sha256,
    system_roots,
    verify_client_certificate,
    verify_server_certificate,
)
from protocol.pki import (
    PKI,
    CertificateAuthority,
    create_intermediate_ca,
    create_root_ca,
    generate_key,
    generate_pki,
    issue_leaf,
)

A = AlertDescription
UTC = datetime.UTC


@pytest.fixture(scope="module")
def pki() -> PKI:
    return generate_pki()


@pytest.fixture(scope="module")
def pki_inter() -> PKI:
    return generate_pki(intermediate=True)


@pytest.fixture(scope="module")
def other() -> PKI:
    """An unrelated PKI with its own keys."""
    return generate_pki(key_set="unrelated")


def now() -> float:
    return time.time()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def rejected(
    chain_der: Sequence[bytes],
    roots: Sequence[x509.Certificate] | TrustAnchors,
    *,
    server_name: str | None = "localhost",
    at: float | None = None,
    pins: Sequence[bytes] = (),
    relaxed: bool = False,
) -> CertificateVerifyError:
    with pytest.raises(CertificateVerifyError) as info:
        verify_server_certificate(
            chain_der,
            server_name=server_name,
            now=now() if at is None else at,
            roots=roots,
            pins=pins,
            relaxed_extensions=relaxed,
        )
    return info.value


def assert_failure(err: CertificateVerifyError, alert: AlertDescription, kind: str) -> None:
    assert (err.alert, err.kind) == (alert, kind), err.reason
    assert err.reason.startswith(kind + ": ")
    assert err.detail  # the underlying message is kept
    assert isinstance(err, HandshakeError)


# --- success paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1"])
def test_valid_chain_by_dns_name_and_ip(pki: PKI, name: str) -> None:
    chain = verify_server_certificate(
        pki.server.chain_der, server_name=name, now=now(), roots=pki.roots
    )
    assert chain == [pki.server.certificate, pki.ca.certificate]


def test_intermediate_chain_in_any_order_with_extras(pki_inter: PKI, pki: PKI) -> None:
    # RFC 8446 §4.4.2: extraneous certificates and arbitrary order after the leaf are tolerated.
    leaf, inter = pki_inter.server.chain
    chain_der = [der(leaf), der(pki.ca.certificate), der(pki_inter.ca.certificate), der(inter)]
    chain = verify_server_certificate(
        chain_der, server_name="localhost", now=now(), roots=pki_inter.roots
    )
    assert chain == [leaf, inter, pki_inter.ca.certificate]


def test_trust_anchors_object_and_plain_list_agree(pki: PKI) -> None:
    anchors = TrustAnchors(pki.roots)
    for roots in (anchors, pki.roots, tuple(pki.roots)):
        chain = verify_server_certificate(
            pki.server.chain_der, server_name="localhost", now=now(), roots=roots
        )
        assert chain[-1] == pki.ca.certificate


# --- time ---------------------------------------------------------------------------------------
def test_expired_leaf(pki: PKI) -> None:
    past = datetime.datetime.now(UTC) - datetime.timedelta(days=10)
    leaf = pki.issue("server", not_before=past, not_after=past + datetime.timedelta(days=1))
    assert_failure(rejected(leaf.chain_der, pki.roots), A.certificate_expired, EXPIRED)


def test_not_yet_valid_leaf(pki: PKI) -> None:
    future = datetime.datetime.now(UTC) + datetime.timedelta(days=2)
    leaf = pki.issue("server", not_before=future, not_after=future + datetime.timedelta(days=1))
    # §6.2 certificate_expired: "has expired or is not currently valid".
    assert_failure(rejected(leaf.chain_der, pki.roots), A.certificate_expired, NOT_YET_VALID)


def test_now_argument_is_the_validation_time(pki: PKI) -> None:
    chain_der = pki.server.chain_der
    err = rejected(chain_der, pki.roots, at=now() + 90 * 86400)
    assert_failure(err, A.certificate_expired, EXPIRED)
    err = rejected(chain_der, pki.roots, at=now() - 2 * 86400)
    assert_failure(err, A.certificate_expired, NOT_YET_VALID)


def test_expired_intermediate(pki: PKI) -> None:
    past = datetime.datetime.now(UTC) - datetime.timedelta(days=10)
    inter = create_intermediate_ca(
        pki.ca, not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    leaf = issue_leaf(inter, "server")
    err = rejected(leaf.chain_der, pki.roots)
    assert "candidates exhausted" in err.detail  # the error surfaced from the issuer search
    assert_failure(err, A.certificate_expired, EXPIRED)


# --- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["example.com", "sub.localhost", "127.0.0.2", "::1"])
def test_hostname_and_ip_mismatch(pki: PKI, name: str) -> None:
    err = rejected(pki.server.chain_der, pki.roots, server_name=name)
    assert_failure(err, A.bad_certificate, HOSTNAME_MISMATCH)


def test_leaf_without_san_cannot_match_a_name(pki: PKI) -> None:
    leaf = pki.issue("server", san=False)
    for relaxed in (False, True):
        err = rejected(leaf.chain_der, pki.roots, relaxed=relaxed)
        assert_failure(err, A.bad_certificate, HOSTNAME_MISMATCH)


def test_ipv6_san(pki: PKI) -> None:
    leaf = pki.issue("server", hosts=("localhost", "::1"))
    chain = verify_server_certificate(leaf.chain_der, server_name="::1", now=now(), roots=pki.roots)
    assert chain[0] == leaf.certificate


def test_no_server_name_still_validates_chain_and_eku(pki: PKI, other: PKI) -> None:
    chain = verify_server_certificate(
        pki.server.chain_der, server_name=None, now=now(), roots=pki.roots
    )
    assert chain[0] == pki.server.certificate
    assert_failure(
        rejected(other.server.chain_der, pki.roots, server_name=None), A.unknown_ca, UNKNOWN_CA
    )
    # A client certificate is not a server certificate, name or no name.
    err = rejected(pki.client.chain_der, pki.roots, server_name=None)
    assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
    assert "EKU" in err.detail


# --- trust --------------------------------------------------------------------------------------
def test_unknown_ca(pki: PKI, other: PKI) -> None:
    assert_failure(rejected(other.server.chain_der, pki.roots), A.unknown_ca, UNKNOWN_CA)


def test_missing_intermediate_is_unknown_ca(pki_inter: PKI) -> None:
    leaf_only = pki_inter.server.chain_der[:1]
    assert_failure(rejected(leaf_only, pki_inter.roots), A.unknown_ca, UNKNOWN_CA)


def test_impostor_ca_with_the_same_name_is_a_bad_signature(pki: PKI) -> None:
    cn = pki.ca.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    impostor = create_root_ca(common_name=str(cn), key_set="impostor")
    assert impostor.certificate.subject == pki.ca.certificate.subject
    forged = issue_leaf(impostor, "server")
    err = rejected(forged.chain_der, pki.roots)
    assert_failure(err, A.bad_certificate, BAD_SIGNATURE)


def test_tampered_signature(pki: PKI) -> None:
    raw = bytearray(der(pki.server.certificate))
    raw[-1] ^= 0x01  # last byte of the signature value
    assert_failure(rejected([bytes(raw)], pki.roots), A.bad_certificate, BAD_SIGNATURE)


def test_system_store_does_not_trust_the_test_ca(pki: PKI) -> None:
    # ca-certificates is installed by .ci/run; an empty store would make this test vacuous.
    assert system_roots(), "no system trust store (install ca-certificates)"
    with pytest.raises(CertificateVerifyError) as info:
        verify_server_certificate(
            pki.server.chain_der, server_name="localhost", now=now(), roots=None
        )
    assert info.value.alert == A.unknown_ca


def test_ssl_cert_file_selects_the_system_store(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        b"junk before\n" + pki.ca.cert_pem + b"\n-----BEGIN CERTIFICATE-----\nAA==\n"
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    certificates._system_anchors.cache_clear()
    try:
        # The unparsable block is skipped, the good root is kept.
        assert system_roots() == [pki.ca.certificate]
        chain = verify_server_certificate(
            pki.server.chain_der, server_name="localhost", now=now(), roots=None
        )
        assert chain[-1] == pki.ca.certificate
    finally:
        certificates._system_anchors.cache_clear()


# --- pins ---------------------------------------------------------------------------------------
def test_pin_on_leaf_passes_and_mismatch_fails(pki: PKI, other: PKI) -> None:
    leaf_pin = spki_sha256(pki.server.certificate)
    chain = verify_server_certificate(
        pki.server.chain_der, server_name="localhost", now=now(), roots=pki.roots, pins=[leaf_pin]
    )
    assert chain[0] == pki.server.certificate
    wrong = spki_sha256(other.server.certificate)
    err = rejected(pki.server.chain_der, pki.roots, pins=[wrong])
    assert_failure(err, A.bad_certificate, PIN_MISMATCH)


def test_backup_pin_passes(pki: PKI, other: PKI) -> None:
    pins = [spki_sha256(other.server.certificate), bytes(32), spki_sha256(pki.server.certificate)]
    verify_server_certificate(
        pki.server.chain_der, server_name="localhost", now=now(), roots=pki.roots, pins=pins
    )


@pytest.mark.parametrize("which", ["intermediate", "root"])
def test_pin_on_intermediate_or_root_passes(pki_inter: PKI, which: str) -> None:
    assert pki_inter.intermediate is not None
    ca: CertificateAuthority = pki_inter.intermediate if which == "intermediate" else pki_inter.ca
    verify_server_certificate(
        pki_inter.server.chain_der,
        server_name="localhost",
        now=now(),
        roots=pki_inter.roots,
        pins=[spki_sha256(ca.certificate)],
    )


def test_pin_on_an_unvalidated_extra_certificate_does_not_count(pki: PKI, other: PKI) -> None:
    # The extra certificate is sent but is not part of the validated chain.
    chain_der = [*pki.server.chain_der, der(other.ca.certificate)]
    err = rejected(chain_der, pki.roots, pins=[spki_sha256(other.ca.certificate)])
    assert_failure(err, A.bad_certificate, PIN_MISMATCH)


def test_pin_does_not_replace_path_validation(pki: PKI, other: PKI) -> None:
    err = rejected(other.server.chain_der, pki.roots, pins=[spki_sha256(other.server.certificate)])
    assert_failure(err, A.unknown_ca, UNKNOWN_CA)


def test_spki_sha256_matches_openssl(pki: PKI, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl CLI is installed by interop/setup_peers.sh"
    pem = tmp_path / "leaf.pem"
    pem.write_bytes(pki.server.certificate.public_bytes(Encoding.PEM))
    pub = subprocess.run(
        [openssl, "x509", "-in", str(pem), "-noout", "-pubkey"], capture_output=True, check=True
    ).stdout
    spki = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True, check=True
    ).stdout
    assert spki_sha256(pki.server.certificate) == hashlib.sha256(spki).digest()


# --- extension profile --------------------------------------------------------------------------
def test_leaf_without_aki_ski_needs_the_relaxed_policy(pki: PKI) -> None:
    leaf = pki.issue("server", key_identifiers=False)
    err = rejected(leaf.chain_der, pki.roots)
    assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
    assert "2.5.29.35" in err.detail  # authorityKeyIdentifier
    chain = verify_server_certificate(
        leaf.chain_der,
        server_name="localhost",
        now=now(),
        roots=pki.roots,
        relaxed_extensions=True,
    )
    assert chain[0] == leaf.certificate


def test_relaxed_policy_still_checks_name_time_trust_and_eku(pki: PKI, other: PKI) -> None:
    leaf = pki.issue("server", key_identifiers=False)
    err = rejected(leaf.chain_der, pki.roots, server_name="example.com", relaxed=True)
    assert_failure(err, A.bad_certificate, HOSTNAME_MISMATCH)
    err = rejected(leaf.chain_der, pki.roots, at=now() + 90 * 86400, relaxed=True)
    assert_failure(err, A.certificate_expired, EXPIRED)
    err = rejected(other.server.chain_der, pki.roots, relaxed=True)
    assert_failure(err, A.unknown_ca, UNKNOWN_CA)
    client_leaf = pki.issue("client", hosts=("localhost",))
    err = rejected(client_leaf.chain_der, pki.roots, relaxed=True)
    assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
    assert "required EKU not found" in err.detail


def _reissue(
    pki: PKI, extra: list[tuple[x509.ExtensionType, bool]], drop: type[x509.ExtensionType] | None
) -> x509.Certificate:
    """The server leaf re-signed by the test CA with extensions added / removed."""
    base = pki.server.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(base.subject)
        .issuer_name(base.issuer)
        .public_key(base.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(base.not_valid_before_utc)
        .not_valid_after(base.not_valid_after_utc)
    )
    for ext in base.extensions:
        if drop is None or not isinstance(ext.value, drop):
            builder = builder.add_extension(ext.value, ext.critical)
    for value, critical in extra:
        builder = builder.add_extension(value, critical)
    key = pki.ca.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return builder.sign(key, hashes.SHA256())


def test_key_usage_without_digital_signature_is_unsupported(pki: PKI) -> None:
    # RFC 8446 §4.4.2.2: digitalSignature MUST be set when keyUsage is present.
    key_encipherment_only = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    leaf = _reissue(pki, [(key_encipherment_only, True)], drop=x509.KeyUsage)
    for relaxed in (False, True):
        err = rejected([der(leaf)], pki.roots, relaxed=relaxed)
        assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
        assert "digitalSignature" in err.detail


def test_unknown_critical_extension_is_rejected_even_when_relaxed(pki: PKI) -> None:
    # RFC 5280 §4.2: an unrecognized critical extension must be rejected.
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    leaf = _reissue(pki, [(unknown, True)], drop=None)
    for relaxed in (False, True):
        err = rejected([der(leaf)], pki.roots, relaxed=relaxed)
        assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
        assert "critical extensions" in err.detail


def _root_with_key_usage(key_usage: x509.KeyUsage | None) -> CertificateAuthority:
    """A root like create_root_ca's but with the given keyUsage (None: no keyUsage at all)."""
    key = generate_key("ecdsa-p256", slot="ku-test-root")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "KU test root")])
    start = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return CertificateAuthority(builder.sign(key, hashes.SHA256()), key, "ecdsa-p256")


def test_ca_key_usage_in_strict_and_relaxed_policies() -> None:
    # RFC 5280 §4.2.1.3: a CA's keyUsage, when present, asserts keyCertSign.
    signature_only = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    bad_root = _root_with_key_usage(signature_only)
    leaf = issue_leaf(bad_root, "server")
    for relaxed in (False, True):
        err = rejected(leaf.chain_der, [bad_root.certificate], relaxed=relaxed)
        assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
        assert "keyCertSign" in err.detail
    # A CA without keyUsage: outside the CA/B profile, acceptable when relaxed.
    bare_root = _root_with_key_usage(None)
    leaf = issue_leaf(bare_root, "server")
    err = rejected(leaf.chain_der, [bare_root.certificate])
    assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
    chain = verify_server_certificate(
        leaf.chain_der,
        server_name="localhost",
        now=now(),
        roots=[bare_root.certificate],
        relaxed_extensions=True,
    )
    assert chain[-1] == bare_root.certificate


def test_eddsa_ca_signature_is_unsupported() -> None:
    # cryptography's CA/B-Forum profile forbids EdDSA certificate signatures.
    root = create_root_ca(key_type="ed25519")
    leaf = issue_leaf(root, "server")
    err = rejected(leaf.chain_der, [root.certificate])
    assert_failure(err, A.unsupported_certificate, UNSUPPORTED)
    assert "Forbidden" in err.detail


# --- client certificates ------------------------------------------------------------------------
def test_client_certificate_with_client_auth_eku(pki_inter: PKI) -> None:
    chain = verify_client_certificate(pki_inter.client.chain_der, now=now(), roots=pki_inter.roots)
    assert chain == [*pki_inter.client.chain, pki_inter.ca.certificate]


@pytest.mark.parametrize("relaxed", [False, True])
def test_server_certificate_is_not_a_client_certificate(pki: PKI, relaxed: bool) -> None:
    with pytest.raises(CertificateVerifyError) as info:
        verify_client_certificate(
            pki.server.chain_der, now=now(), roots=pki.roots, relaxed_extensions=relaxed
        )
    assert_failure(info.value, A.unsupported_certificate, UNSUPPORTED)


def test_client_certificate_failures(pki: PKI, other: PKI) -> None:
    with pytest.raises(CertificateVerifyError) as info:
        verify_client_certificate(other.client.chain_der, now=now(), roots=TrustAnchors(pki.roots))
    assert_failure(info.value, A.unknown_ca, UNKNOWN_CA)
    with pytest.raises(CertificateVerifyError) as info:
        verify_client_certificate(pki.client.chain_der, now=now() + 90 * 86400, roots=pki.roots)
    assert_failure(info.value, A.certificate_expired, EXPIRED)
    with pytest.raises(CertificateVerifyError) as info:
        verify_client_certificate(
            pki.client.chain_der, now=now(), roots=pki.roots, pins=[bytes(32)]
        )
    assert_failure(info.value, A.bad_certificate, PIN_MISMATCH)


def test_client_without_key_identifiers_needs_relaxed(pki: PKI) -> None:
    leaf = pki.issue("client", key_identifiers=False)
    with pytest.raises(CertificateVerifyError) as info:
        verify_client_certificate(leaf.chain_der, now=now(), roots=pki.roots)
    assert info.value.alert == A.unsupported_certificate
    chain = verify_client_certificate(
        leaf.chain_der, now=now(), roots=pki.roots, relaxed_extensions=True
    )
    assert chain[0] == leaf.certificate


# --- decoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("position", [0, 1])
def test_garbage_der(pki: PKI, position: int) -> None:
    chain_der = [*pki.server.chain_der, der(pki.ca.certificate)]
    chain_der[position] = b"\x30\x03\x02\x01\x00"
    err = rejected(chain_der, pki.roots)
    assert_failure(err, A.bad_certificate, CANNOT_PARSE)
    assert f"entry {position}" in err.detail


def test_empty_lists() -> None:
    with pytest.raises(HandshakeError) as info:
        verify_server_certificate([], server_name="localhost", now=now(), roots=None)
    assert info.value.alert == A.decode_error  # RFC 8446 §4.4.2.4
    with pytest.raises(HandshakeError) as info:
        verify_client_certificate([], now=now(), roots=None)
    assert info.value.alert == A.certificate_required


def test_unclassified_message_falls_back_to_bad_certificate(pki: PKI) -> None:
    err = certificates._classify(
        "validation failed: something new",
        pki.server.certificate,
        [],
        TrustAnchors(pki.roots),
        datetime.datetime.now(UTC),
    )
    assert (err.alert, err.kind) == (A.bad_certificate, BAD_CERTIFICATE)
    assert err.reason == "bad certificate: validation failed: something new"


# --- caching ------------------------------------------------------------------------------------
def test_trust_anchors_cache_policy_builders(pki: PKI) -> None:
    anchors = TrustAnchors(pki.roots)
    purpose = certificates._Purpose.SERVER
    assert anchors._builder(purpose, False) is anchors._builder(purpose, False)
    assert anchors._builder(purpose, False) is not anchors._builder(purpose, True)
    # Repeated verifications with different times reuse the cached builder safely.
    for at in (now(), now() + 60):
        verify_server_certificate(
            pki.server.chain_der, server_name="localhost", now=at, roots=anchors
        )
    assert_failure(
        rejected(pki.server.chain_der, anchors, at=now() + 90 * 86400),
        A.certificate_expired,
        EXPIRED,
    )


def test_plain_root_lists_are_cached_by_value(pki: PKI, other: PKI) -> None:
    first = certificates._resolve_anchors(list(pki.roots))
    assert certificates._resolve_anchors(list(pki.roots)) is first  # a fresh but equal list
    assert certificates._resolve_anchors(list(other.roots)) is not first
    anchors = TrustAnchors(pki.roots)
    assert certificates._resolve_anchors(anchors) is anchors


def test_trust_anchors_reject_empty() -> None:
    with pytest.raises(ValueError):
        TrustAnchors([])


# --- helpers ------------------------------------------------------------------------------------
def test_server_subject() -> None:
    assert server_subject("127.0.0.1") == x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    assert isinstance(server_subject("::1"), x509.IPAddress)
    assert server_subject("example.com.") == x509.DNSName("example.com")
    assert server_subject("bücher.example") == x509.DNSName("xn--bcher-kva.example")


def test_invalid_server_name_is_a_local_error(pki: PKI) -> None:
    with pytest.raises(HandshakeError) as info:
        verify_server_certificate(
            pki.server.chain_der, server_name="not a host!", now=now(), roots=pki.roots
        )
    assert info.value.alert == A.internal_error
    assert not isinstance(info.value, CertificateVerifyError)


def test_load_pem_certificates(pki_inter: PKI) -> None:
    certs = load_pem_certificates(pki_inter.server.cert_pem)
    assert certs == pki_inter.server.chain
    with pytest.raises(ValueError):
        load_pem_certificates(b"no certificates here")


def test_load_private_key(pki: PKI) -> None:
    key = load_private_key(pki.server.key_pem)
    assert (
        spki_sha256(pki.server.certificate)
        == hashlib.sha256(
            key.public_key().public_bytes(
                Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
    )
    der_key = pki.server.private_key.private_bytes(
        Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert load_private_key(der_key).public_key() == key.public_key()
    encrypted = pki.server.private_key.private_bytes(
        Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    assert load_private_key(encrypted, b"secret").public_key() == key.public_key()
    x = x25519.X25519PrivateKey.generate().private_bytes(
        Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="cannot sign"):
        load_private_key(x)


def test_leaf_public_key(pki: PKI) -> None:
    assert leaf_public_key(pki.server.chain) == pki.server.private_key.public_key()
    # An X25519 key cannot sign a CertificateVerify.
    xkey = x25519.X25519PrivateKey.generate().public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.server.certificate.subject)
        .issuer_name(pki.ca.certificate.subject)
        .public_key(xkey)
        .serial_number(1)
        .not_valid_before(datetime.datetime.now(UTC))
        .not_valid_after(datetime.datetime.now(UTC) + datetime.timedelta(days=1))
        .sign(pki.ca.private_key, hashes.SHA256())
    )
    with pytest.raises(CertificateVerifyError) as info:
        leaf_public_key([cert])
    assert info.value.alert == A.unsupported_certificate


def test_parse_certificate_chain(pki_inter: PKI) -> None:
    assert parse_certificate_chain(pki_inter.server.chain_der) == pki_inter.server.chain
    with pytest.raises(CertificateVerifyError) as info:
        parse_certificate_chain([b"junk"])
    assert info.value.alert == A.bad_certificate
