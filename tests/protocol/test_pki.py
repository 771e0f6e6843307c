"""The throwaway PKI: real-PKI extensions (PEERS.md §7), every key type verifies, stable files."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from handshake.certificates import (
    load_pem_certificates,
    load_private_key,
    spki_sha256,
    verify_client_certificate,
    verify_server_certificate,
)
from protocol.pki import KEY_TYPES, PKI, generate_pki, main_make_certs

UTC = datetime.UTC
FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key", "server.p12")


E = TypeVar("E", bound=x509.ExtensionType)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


LEAF_KEYS: dict[str, type] = {
    "ecdsa-p256": ec.EllipticCurvePrivateKey,
    "ecdsa-p384": ec.EllipticCurvePrivateKey,
    "ecdsa-p521": ec.EllipticCurvePrivateKey,
    "rsa2048": rsa.RSAPrivateKey,
    "rsa-pss": rsa.RSAPrivateKey,
    "ed25519": ed25519.Ed25519PrivateKey,
    "ed448": ed448.Ed448PrivateKey,
}


@pytest.mark.parametrize("intermediate", [False, True])
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_every_key_type_verifies(key_type: str, intermediate: bool) -> None:
    pki = generate_pki(key_type=key_type, intermediate=intermediate)
    assert isinstance(pki.server.private_key, LEAF_KEYS[key_type])
    assert isinstance(pki.client.private_key, LEAF_KEYS[key_type])
    now = time.time()
    for name in ("localhost", "127.0.0.1"):
        chain = verify_server_certificate(
            pki.server.chain_der, server_name=name, now=now, roots=pki.roots
        )
        assert chain[0] == pki.server.certificate
        assert chain[-1] == pki.ca.certificate
        assert len(chain) == (3 if intermediate else 2)
    chain = verify_client_certificate(pki.client.chain_der, now=now, roots=pki.roots)
    assert chain[0] == pki.client.certificate


def test_key_type_specifics() -> None:
    curve = generate_pki(key_type="ecdsa-p384").server.private_key
    assert isinstance(curve, ec.EllipticCurvePrivateKey) and curve.curve.name == "secp384r1"
    pss = generate_pki(key_type="rsa-pss")
    assert pss.server.certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert pss.ca.certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    rsa_pki = generate_pki(key_type="rsa2048")
    assert (
        rsa_pki.server.certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    )
    # NSS wants keyEncipherment on RSA server certificates; EC leaves only sign.
    assert ext(rsa_pki.server.certificate, x509.KeyUsage).value.key_encipherment
    assert not ext(generate_pki().server.certificate, x509.KeyUsage).value.key_encipherment
    # EdDSA leaves are issued by an ECDSA P-256 CA (the verifier forbids EdDSA CA signatures).
    ed = generate_pki(key_type="ed448")
    assert isinstance(ed.ca.private_key, ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError, match="unknown key type"):
        generate_pki(key_type="dsa")


def test_real_pki_extensions() -> None:
    pki = generate_pki(intermediate=True)
    assert pki.intermediate is not None
    for ca_cert, path_length in ((pki.ca.certificate, None), (pki.intermediate.certificate, 0)):
        bc = ext(ca_cert, x509.BasicConstraints)
        assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=path_length)
        ku = ext(ca_cert, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert not ku.value.digital_signature
        ext(ca_cert, x509.SubjectKeyIdentifier)
    server, client = pki.server.certificate, pki.client.certificate
    san = ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(ext(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert list(ext(client, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for leaf in (server, client):
        assert ext(leaf, x509.BasicConstraints).value.ca is False
        ku = ext(leaf, x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
        aki = ext(leaf, x509.AuthorityKeyIdentifier).value
        issuer_ski = ext(pki.intermediate.certificate, x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == issuer_ski.digest
        ext(leaf, x509.SubjectKeyIdentifier)
        assert leaf.issuer == pki.intermediate.certificate.subject
    assert pki.server.chain == [server, pki.intermediate.certificate]


def test_validity_defaults_and_overrides() -> None:
    before = datetime.datetime.now(UTC)
    pki = generate_pki(days=7)
    leaf = pki.server.certificate
    one_hour = datetime.timedelta(hours=1)
    assert abs(leaf.not_valid_before_utc - (before - one_hour)) < datetime.timedelta(minutes=1)
    assert abs(leaf.not_valid_after_utc - (before + datetime.timedelta(days=7))) < one_hour
    nb = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    na = datetime.datetime(2020, 2, 1, tzinfo=UTC)
    old = generate_pki(not_before=nb, not_after=na)
    assert old.server.certificate.not_valid_before_utc == nb
    assert old.client.certificate.not_valid_after_utc == na
    assert old.ca.certificate.not_valid_after_utc > before  # CAs stay valid


def test_hosts_become_dns_and_ip_sans() -> None:
    pki = generate_pki(hosts=("example.test", "10.1.2.3", "::1"))
    san = ext(pki.server.certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    ]


def test_key_cache_and_fresh_serials() -> None:
    a, b = generate_pki(), generate_pki()
    # Keys are reused for speed, but certificates, serials and CA names are fresh...
    assert spki_sha256(a.server.certificate) == spki_sha256(b.server.certificate)
    assert a.server.certificate.serial_number != b.server.certificate.serial_number
    assert a.ca.certificate.subject != b.ca.certificate.subject
    # ...so PKIs do not chain into each other.
    with pytest.raises(Exception, match="unknown CA"):
        verify_server_certificate(
            b.server.chain_der, server_name="localhost", now=time.time(), roots=a.roots
        )
    # Another key set or fresh keys give distinct key material.
    c = generate_pki(key_set="another")
    d = generate_pki(fresh_keys=True)
    spkis = {spki_sha256(p.server.certificate) for p in (a, c, d)}
    assert len(spkis) == 3
    roles = {spki_sha256(x) for x in (a.ca.certificate, a.server.certificate, a.client.certificate)}
    assert len(roles) == 3


def _check_files(directory: Path, pki: PKI | None = None) -> None:
    for name in FILES:
        assert (directory / name).is_file(), name
    ca = load_pem_certificates((directory / "ca.pem").read_bytes())
    server_chain = load_pem_certificates((directory / "server.pem").read_bytes())
    client_chain = load_pem_certificates((directory / "client.pem").read_bytes())
    assert len(ca) == 1
    now = time.time()
    verify_server_certificate(
        [c.public_bytes(Encoding.DER) for c in server_chain],
        server_name="localhost",
        now=now,
        roots=ca,
    )
    verify_client_certificate(
        [c.public_bytes(Encoding.DER) for c in client_chain], now=now, roots=ca
    )
    for cert_file, key_file in (("server.pem", "server.key"), ("client.pem", "client.key")):
        leaf = load_pem_certificates((directory / cert_file).read_bytes())[0]
        key = load_private_key((directory / key_file).read_bytes())
        assert key.public_key() == leaf.public_key()
        assert stat.S_IMODE(os.stat(directory / key_file).st_mode) == 0o600
    if pki is not None:
        assert ca == pki.roots
        assert server_chain == pki.server.chain


@pytest.mark.parametrize("intermediate", [False, True])
def test_files_and_pkcs12(tmp_path: Path, intermediate: bool) -> None:
    pki = generate_pki(tmp_path, key_type="ecdsa-p256", intermediate=intermediate)
    _check_files(tmp_path, pki)
    p12 = pkcs12.load_pkcs12((tmp_path / "server.p12").read_bytes(), None)
    assert p12.cert is not None and p12.key is not None
    assert p12.cert.friendly_name == b"server"
    assert p12.cert.certificate == pki.server.certificate
    assert p12.key.public_key() == pki.server.private_key.public_key()
    assert [c.certificate for c in p12.additional_certs] == pki.server.chain[1:]
    # NSS imports it with an empty password (pk12util -W ''); OpenSSL agrees on the MAC.
    openssl = shutil.which("openssl")
    if openssl is not None:
        subprocess.run(
            [openssl, "pkcs12", "-in", str(tmp_path / "server.p12"), "-passin", "pass:", "-noout"],
            check=True,
            capture_output=True,
        )


def test_make_certs_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert main_make_certs([str(out), "--key-type", "rsa2048", "--days", "3"]) == 0
    _check_files(out)
    leaf = load_pem_certificates((out / "server.pem").read_bytes())[0]
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    assert "server.p12" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main_make_certs([str(out), "--key-type", "dsa"])


def test_make_certs_cli_hosts_and_intermediate(tmp_path: Path) -> None:
    assert main_make_certs([str(tmp_path), "--host", "peer.test", "--intermediate"]) == 0
    chain = load_pem_certificates((tmp_path / "server.pem").read_bytes())
    assert len(chain) == 2
    san = ext(chain[0], x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["peer.test"]
    assert (tmp_path / "intermediate.pem").is_file()
