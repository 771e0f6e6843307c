"""CertificateVerify signature schemes (RFC 8446 §4.2.3, §4.4.3)."""

from __future__ import annotations

import datetime
import functools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from handshake.alerts import AlertDescription, HandshakeError
from handshake.signatures import (
    CERT_SIGNATURE_SCHEMES,
    DEFAULT_SIGNATURE_SCHEMES,
    SignatureScheme,
    certificate_verify_input,
    is_rsassa_pss_certificate,
    is_valid_for_certificate_verify,
    schemes_for_key,
    sign,
    verify,
)

S = SignatureScheme
DATA = certificate_verify_input(True, bytes(range(32)))

# An RSASSA-PSS (OID 1.2.840.113549.1.1.10) key and self-signed certificate made with
# `openssl genpkey -algorithm RSA-PSS`: cryptography cannot create such keys itself.
PSS_CERT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIDZTCCAhigAwIBAgIUNau6uc8gMpFMJ6XDdtIGFXOBsqUwQgYJKoZIhvcNAQEK
MDWgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEF
AKIEAgIA3jAOMQwwCgYDVQQDDANwc3MwHhcNMjYxMTIzMTA1NjEzWhcNMjYxMjAz
MTA1NjEzWjAOMQwwCgYDVQQDDANwc3MwggEgMAsGCSqGSIb3DQEBCgOCAQ8AMIIB
CgKCAQEA5hhlfL/B82ONPWhO7yVgZ+XTyDhwfbgLw592kOz/gaOyKQqmf+DkeGFO
sZz/zfMPd+ZilvCDNN1jclE6jnNLYcqIorthMA3T2WcnAydHlJf9Ha5puieXoOzH
IKQhdEAWiE9rgDwf15n0eSvTLYCq7QB1C1Um5Q1mgvyt/M0vcgTYDuDS+3rJ4IF5
VYg8U1XefQdYfQxaDTPVGP1ZdqFT0hdGShqqQiniGnzHFNkY4U8QAHXawq1FauMl
WoH+FT4UwvWByZ8JRBHPBfBMNz71ylLeLmKthkp/6UJBFkHvNkoWtwYywUq72wCM
5Nh8n7Vh/cihE3EEeuqf9sVSuAKS1QIDAQABo1MwUTAdBgNVHQ4EFgQU4f0m3LQ/
7ohEPbZ/iNKD6xmOk7YwHwYDVR0jBBgwFoAU4f0m3LQ/7ohEPbZ/iNKD6xmOk7Yw
DwYDVR0TAQH/BAUwAwEB/zBCBgkqhkiG9w0BAQowNaAPMA0GCWCGSAFlAwQCAQUA
oRwwGgYJKoZIhvcNAQEIMA0GCWCGSAFlAwQCAQUAogQCAgDeA4IBAQDQGdzvQvTj
FHKhO9o6EdzANiA3IVJJttpZM87aR5muIao5gWl3/ZaLDsW+Si2+0T6283RQEnvr
A0zME3ch+31pZoZJ4dqjrui3ys1rkioHzJgdbF64ydwPFXvCtRhOcX/qoZIfux3n
6YcujCVlVO/3RbaU0Czzkxdq2ibYE3nMSzflGcmr3sKokjJQPg180dKKm9imIN6D
70p7bEQV0NDLCKKIXzcdgOtWOI/cNNuM6X0WMwIngV9lZqC5q6O5azLfjnkR++Q+
mNgzKYpPn5jcj0DSWjzFGQMHhIVBgK5RxbgfzqAgW3dt3rwfOynvnHmzWj7tk/6v
dKGBlS4ByG3K
-----END CERTIFICATE-----
"""
PSS_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIEvAIBADALBgkqhkiG9w0BAQoEggSoMIIEpAIBAAKCAQEA5hhlfL/B82ONPWhO
7yVgZ+XTyDhwfbgLw592kOz/gaOyKQqmf+DkeGFOsZz/zfMPd+ZilvCDNN1jclE6
jnNLYcqIorthMA3T2WcnAydHlJf9Ha5puieXoOzHIKQhdEAWiE9rgDwf15n0eSvT
LYCq7QB1C1Um5Q1mgvyt/M0vcgTYDuDS+3rJ4IF5VYg8U1XefQdYfQxaDTPVGP1Z
dqFT0hdGShqqQiniGnzHFNkY4U8QAHXawq1FauMlWoH+FT4UwvWByZ8JRBHPBfBM
Nz71ylLeLmKthkp/6UJBFkHvNkoWtwYywUq72wCM5Nh8n7Vh/cihE3EEeuqf9sVS
uAKS1QIDAQABAoIBAAE3bs3ui514UMZa11P/XBegiPKdjca0YueJX8ybXCx4y5fY
9RFnBH44cXyR6m5R0yqcnrfSlLcCVqTDli4roOHm+rr1h6mD4TNcjsG/AutftFhk
VC3GSNBygAkFpSGitxvIY7adWsO+jiLX3vl2HTE8l+HT9O0wGXMm19qm0RHmvxZn
A9soXgLnPkV2Xkj9RR0qEX81AP3JbTxsCpIMMuu+5WmCU5YAJa5xVAQWn84Aoss0
V5jvXAPwjr604mpTRI4zBD3RLYWOXc6zVBz6dGa+bgboJR54c2e/sZYwV1felSEQ
aEY1PDgnzXO2gWYyVz3qD+DT5PRDPOUrHMKXcS8CgYEA+fobj5fdIl1JlcyrXYlz
T4hcJAW9UW04W1xf5emITbd6LSduD3o+dLr8AfM8/0LAVHuDSOnswV+N0u+/JwCe
tedZ2xliGiTvao68k1TV0dY4HKb78TvVHzjh/AQcBZdSls4nmgljXiyCi4+BeQFd
gIbZa2fajP4wHLBU27J5hy8CgYEA66On45WwvRuYi3aomdB+X1nAgvJSNjeAE4W8
20oJKZusIJf4Q1vhUZncyISB83oHrfgaPifWWPjPFx3UHL5qQ4vDOLpFjK+n2YTF
CY7fzzZadqjj8iOeeUq3M8uk9yIpXuyJYfX1FndvJkNFMx91epShyYPcE6GHDGUY
OqhLhTsCgYBAp+8vAdGhjM12oHyGcgHQRW3Hp3BjOkPEZa0sM24c4+MHANbXy/+R
g7eg7YAOaf6DG3tGhbLGBWgScg5YETH7zL4SDIuyRXFjd03RMbUoVCcpSguKRraG
H9lbrNhuncgv11yo29rGxe5yGIkdejvr/XUI8dC2fRyGnxkjxhLm4wKBgQCq4WWQ
7y7aFLcM/CHMWZwrPYUT8PKZiqoAfk20oP4ABHpQsKRDBNBjQrcPWrh6fpYvHOq7
BFy27MgRNXpq1dNt5F7QNpTVL1UDsvrIsamwNPRpdJTJNfdocjxk/VtGNKnXwqTm
O11ey4H5N3NpXXjuSfcBkfP48HxlCrMFZqJNnQKBgQDR3q9mT7OmeZWMMDOp9dzl
+cFIhrHnsp0Ss9lJW+unWASQAZszNZR43OCBdE4dCpVA92V4LdtAsRnJC2I9xNeY
ObAVBODPoqxPbvC+oVoevU60WXr8iuWZg+4Fz/Wv9FdLHi7wBowP7z2W7vxBfWtt
mraavvD0gQ/4vDJIqvC86w==
-----END PRIVATE KEY-----
"""


@functools.cache
def key(kind: str, instance: int = 0) -> PrivateKeyTypes:
    """One cached key per (kind, instance); instance 1 is a second, unrelated key."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa-pss":
        return serialization.load_pem_private_key(PSS_KEY_PEM, None)
    raise AssertionError(kind)


# scheme -> (key kind, rsassa_pss_key)
PAIRING = {
    S.ecdsa_secp256r1_sha256: ("p256", False),
    S.ecdsa_secp384r1_sha384: ("p384", False),
    S.ecdsa_secp521r1_sha512: ("p521", False),
    S.ed25519: ("ed25519", False),
    S.ed448: ("ed448", False),
    S.rsa_pss_rsae_sha256: ("rsa", False),
    S.rsa_pss_rsae_sha384: ("rsa", False),
    S.rsa_pss_rsae_sha512: ("rsa", False),
    S.rsa_pss_pss_sha256: ("rsa-pss", True),
    S.rsa_pss_pss_sha384: ("rsa-pss", True),
    S.rsa_pss_pss_sha512: ("rsa-pss", True),
}


def _alert(exc: pytest.ExceptionInfo[HandshakeError]) -> AlertDescription:
    return exc.value.alert


def test_scheme_lists() -> None:
    assert set(PAIRING) == set(DEFAULT_SIGNATURE_SCHEMES)
    pkcs1 = {S.rsa_pkcs1_sha256, S.rsa_pkcs1_sha384, S.rsa_pkcs1_sha512}
    assert not pkcs1 & set(DEFAULT_SIGNATURE_SCHEMES)
    assert set(CERT_SIGNATURE_SCHEMES) == set(DEFAULT_SIGNATURE_SCHEMES) | pkcs1
    assert int(S.rsa_pss_pss_sha512) == 0x080B and int(S.ecdsa_secp521r1_sha512) == 0x0603


def test_valid_for_certificate_verify() -> None:
    for scheme in DEFAULT_SIGNATURE_SCHEMES:
        assert is_valid_for_certificate_verify(scheme)
    # §4.4.3: PKCS#1 v1.5 and SHA-1 never sign a CertificateVerify; unknown codes neither.
    for scheme in (0x0401, 0x0501, 0x0601, 0x0201, 0x0203, 0xFE00, 0x0000):
        assert not is_valid_for_certificate_verify(scheme)


def test_certificate_verify_input_rfc_example() -> None:
    # §4.4.3 worked example: server context, transcript hash of 32 bytes of 01.
    expected = bytes.fromhex(
        "20" * 64
        + "544c5320312e332c207365727665722043657274696669636174655665726966"
        + "79"
        + "00"
        + "01" * 32
    )
    assert certificate_verify_input(True, b"\x01" * 32) == expected
    client = certificate_verify_input(False, b"\x01" * 32)
    assert client == b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + b"\x01" * 32


def test_schemes_for_key() -> None:
    assert schemes_for_key(key("p256")) == [S.ecdsa_secp256r1_sha256]
    assert schemes_for_key(key("p384")) == [S.ecdsa_secp384r1_sha384]
    assert schemes_for_key(key("p521")) == [S.ecdsa_secp521r1_sha512]
    assert schemes_for_key(key("ed25519")) == [S.ed25519]
    assert schemes_for_key(key("ed448")) == [S.ed448]
    rsae = [S.rsa_pss_rsae_sha256, S.rsa_pss_rsae_sha384, S.rsa_pss_rsae_sha512]
    assert schemes_for_key(key("rsa")) == rsae
    pss = [S.rsa_pss_pss_sha256, S.rsa_pss_pss_sha384, S.rsa_pss_pss_sha512]
    assert schemes_for_key(key("rsa-pss"), rsassa_pss_key=True) == pss
    # Curves TLS 1.3 has no scheme for give nothing.
    assert schemes_for_key(ec.generate_private_key(ec.SECP256K1())) == []


@pytest.mark.parametrize("scheme", list(PAIRING), ids=lambda s: S(s).name)
def test_sign_verify_round_trip(scheme: int) -> None:
    kind, pss = PAIRING[S(scheme)]
    private = key(kind)
    assert scheme in schemes_for_key(private, rsassa_pss_key=pss)
    signature = sign(private, scheme, DATA, rsassa_pss_key=pss)
    public = private.public_key()
    verify(public, scheme, DATA, signature, rsassa_pss_key=pss)

    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01
    for bad_sig, data in ((bytes(flipped), DATA), (signature, DATA + b"x"), (b"", DATA)):
        with pytest.raises(HandshakeError) as exc:
            verify(public, scheme, data, bad_sig, rsassa_pss_key=pss)
        assert _alert(exc) == AlertDescription.decrypt_error


@pytest.mark.parametrize("scheme", list(PAIRING), ids=lambda s: S(s).name)
def test_signature_from_another_key_is_decrypt_error(scheme: int) -> None:
    kind, pss = PAIRING[S(scheme)]
    # A second key of the same type (for the embedded RSASSA-PSS key: any RSA key).
    other = key("rsa" if kind == "rsa-pss" else kind, 1)
    signature = sign(other, scheme, DATA, rsassa_pss_key=pss)
    public = key(kind).public_key()
    with pytest.raises(HandshakeError) as exc:
        verify(public, scheme, DATA, signature, rsassa_pss_key=pss)
    assert _alert(exc) == AlertDescription.decrypt_error


def test_pss_parameters_are_enforced() -> None:
    # §4.2.3: salt length = digest length and MGF1 with the same hash.
    private = key("rsa")
    assert isinstance(private, rsa.RSAPrivateKey)
    public = private.public_key()
    wrong = [
        padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
        padding.PSS(padding.MGF1(hashes.SHA256()), 20),
        padding.PSS(padding.MGF1(hashes.SHA1()), 32),
    ]
    for pad in wrong:
        signature = private.sign(DATA, pad, hashes.SHA256())
        with pytest.raises(HandshakeError) as exc:
            verify(public, S.rsa_pss_rsae_sha256, DATA, signature)
        assert _alert(exc) == AlertDescription.decrypt_error
    # A PSS signature made with SHA-384 does not verify as rsa_pss_rsae_sha256.
    signature = sign(private, S.rsa_pss_rsae_sha384, DATA)
    with pytest.raises(HandshakeError) as exc:
        verify(public, S.rsa_pss_rsae_sha256, DATA, signature)
    assert _alert(exc) == AlertDescription.decrypt_error


def test_pkcs1_is_illegal_in_certificate_verify_even_if_valid() -> None:
    private = key("rsa")
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = private.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(HandshakeError) as exc:
        verify(private.public_key(), S.rsa_pkcs1_sha256, DATA, signature)
    assert _alert(exc) == AlertDescription.illegal_parameter
    with pytest.raises(ValueError):
        sign(private, S.rsa_pkcs1_sha256, DATA)


MISMATCHES = [
    # (scheme, key kind, rsassa_pss_key)
    (S.ecdsa_secp256r1_sha256, "p384", False),  # §4.2.3: the scheme fixes the curve
    (S.ecdsa_secp384r1_sha384, "p256", False),
    (S.ecdsa_secp521r1_sha512, "p256", False),
    (S.ecdsa_secp256r1_sha256, "ed25519", False),
    (S.ed25519, "ed448", False),
    (S.ed448, "ed25519", False),
    (S.ed25519, "rsa", False),
    (S.rsa_pss_rsae_sha256, "p256", False),
    (S.rsa_pss_rsae_sha256, "rsa-pss", True),  # rsae needs the rsaEncryption OID
    (S.rsa_pss_pss_sha256, "rsa", False),  # pss needs the RSASSA-PSS OID
    (0xFE00, "p256", False),
]


@pytest.mark.parametrize(("scheme", "kind", "pss"), MISMATCHES)
def test_scheme_key_mismatch(scheme: int, kind: str, pss: bool) -> None:
    private = key(kind)
    # A genuine signature by this key under some scheme it supports, so only the pairing fails.
    own_scheme = schemes_for_key(private, rsassa_pss_key=pss)[0]
    signature = sign(private, own_scheme, DATA, rsassa_pss_key=pss)
    with pytest.raises(HandshakeError) as exc:
        verify(private.public_key(), scheme, DATA, signature, rsassa_pss_key=pss)
    assert _alert(exc) == AlertDescription.illegal_parameter
    if scheme != own_scheme:
        with pytest.raises(ValueError):
            sign(private, scheme, DATA, rsassa_pss_key=pss)


def _self_signed(private: PrivateKeyTypes) -> x509.Certificate:
    assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sig.test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(7)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    return builder.sign(private, hashes.SHA256())


def test_rsassa_pss_certificate_detection() -> None:
    pss_cert = x509.load_pem_x509_certificate(PSS_CERT_PEM)
    assert is_rsassa_pss_certificate(pss_cert)
    assert not is_rsassa_pss_certificate(_self_signed(key("rsa")))
    assert not is_rsassa_pss_certificate(_self_signed(key("p256")))
    # The certificate's key pairs with the embedded private key under rsa_pss_pss_*.
    signature = sign(key("rsa-pss"), S.rsa_pss_pss_sha384, DATA, rsassa_pss_key=True)
    verify(pss_cert.public_key(), S.rsa_pss_pss_sha384, DATA, signature, rsassa_pss_key=True)
    with pytest.raises(HandshakeError) as exc:
        verify(pss_cert.public_key(), S.rsa_pss_rsae_sha384, DATA, signature, rsassa_pss_key=True)
    assert _alert(exc) == AlertDescription.illegal_parameter


def test_unsupported_public_key_type_is_illegal_parameter() -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    public = x25519.X25519PrivateKey.generate().public_key()
    with pytest.raises(HandshakeError) as exc:
        verify(public, S.ed25519, DATA, b"\x00" * 64)
    assert _alert(exc) == AlertDescription.illegal_parameter
