"""Signature schemes for CertificateVerify (RFC 8446 §4.2.3, §4.4.3).

RSA keys: cryptography loads an RSASSA-PSS (id-RSASSA-PSS OID) key as a plain ``RSAPublicKey``
/ ``RSAPrivateKey``, so the key object alone cannot tell rsa_pss_rsae_* from rsa_pss_pss_*. The
distinction lives in the certificate's SubjectPublicKeyInfo algorithm; callers pass it as
``rsassa_pss_key`` (use :func:`is_rsassa_pss_certificate`). §4.2.3: rsae schemes require the
rsaEncryption OID, pss schemes the RSASSA-PSS OID; the signature computation is the same.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import PublicKeyAlgorithmOID

from .alerts import AlertDescription, HandshakeError, illegal_parameter


class SignatureScheme(IntEnum):
    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pkcs1_sha512 = 0x0601
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806
    ed25519 = 0x0807
    ed448 = 0x0808
    rsa_pss_pss_sha256 = 0x0809
    rsa_pss_pss_sha384 = 0x080A
    rsa_pss_pss_sha512 = 0x080B


S = SignatureScheme

# For "signature_algorithms" (CertificateVerify): no RSASSA-PKCS1-v1_5, no SHA-1 (§4.4.3).
DEFAULT_SIGNATURE_SCHEMES: tuple[int, ...] = (
    S.ecdsa_secp256r1_sha256,
    S.ecdsa_secp384r1_sha384,
    S.ecdsa_secp521r1_sha512,
    S.ed25519,
    S.ed448,
    S.rsa_pss_rsae_sha256,
    S.rsa_pss_rsae_sha384,
    S.rsa_pss_rsae_sha512,
    S.rsa_pss_pss_sha256,
    S.rsa_pss_pss_sha384,
    S.rsa_pss_pss_sha512,
)
# For "signature_algorithms_cert": PKCS#1 v1.5 remains valid in certificates (§4.2.3).
CERT_SIGNATURE_SCHEMES: tuple[int, ...] = (
    *DEFAULT_SIGNATURE_SCHEMES,
    S.rsa_pkcs1_sha256,
    S.rsa_pkcs1_sha384,
    S.rsa_pkcs1_sha512,
)

_SHA256 = hashes.SHA256()
_SHA384 = hashes.SHA384()
_SHA512 = hashes.SHA512()

# scheme -> (curve name, algorithm): ECDSA schemes fix the curve in TLS 1.3 (§4.2.3). The
# ec.ECDSA objects are built once: their constructor costs several µs per sign or verify.
_ECDSA: dict[int, tuple[str, ec.ECDSA]] = {
    S.ecdsa_secp256r1_sha256: ("secp256r1", ec.ECDSA(_SHA256)),
    S.ecdsa_secp384r1_sha384: ("secp384r1", ec.ECDSA(_SHA384)),
    S.ecdsa_secp521r1_sha512: ("secp521r1", ec.ECDSA(_SHA512)),
}
_PSS_RSAE: dict[int, hashes.HashAlgorithm] = {
    S.rsa_pss_rsae_sha256: _SHA256,
    S.rsa_pss_rsae_sha384: _SHA384,
    S.rsa_pss_rsae_sha512: _SHA512,
}
_PSS_PSS: dict[int, hashes.HashAlgorithm] = {
    S.rsa_pss_pss_sha256: _SHA256,
    S.rsa_pss_pss_sha384: _SHA384,
    S.rsa_pss_pss_sha512: _SHA512,
}
_CONTEXT_SERVER = b"TLS 1.3, server CertificateVerify"
_CONTEXT_CLIENT = b"TLS 1.3, client CertificateVerify"


def is_valid_for_certificate_verify(scheme: int) -> bool:
    """False for RSASSA-PKCS1-v1_5, SHA-1 and unknown schemes: not allowed in CV (§4.4.3)."""
    return scheme in DEFAULT_SIGNATURE_SCHEMES


def is_rsassa_pss_certificate(cert: x509.Certificate) -> bool:
    """True if the certificate's key carries the id-RSASSA-PSS OID (RFC 5756)."""
    return cert.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS


def schemes_for_key(private_key: PrivateKeyTypes, *, rsassa_pss_key: bool = False) -> list[int]:
    """CertificateVerify schemes usable with ``private_key``, most preferred first."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        curve = private_key.curve.name
        return [s for s, (c, _) in _ECDSA.items() if c == curve]
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return [S.ed25519]
    if isinstance(private_key, ed448.Ed448PrivateKey):
        return [S.ed448]
    if isinstance(private_key, rsa.RSAPrivateKey):
        return list(_PSS_PSS if rsassa_pss_key else _PSS_RSAE)
    return []


def certificate_verify_input(is_server: bool, transcript_hash: bytes) -> bytes:
    """§4.4.3: 64 spaces || context string || 0x00 || Transcript-Hash."""
    context = _CONTEXT_SERVER if is_server else _CONTEXT_CLIENT
    return b"\x20" * 64 + context + b"\x00" + transcript_hash


def _make_pss(hash_alg: hashes.HashAlgorithm) -> padding.PSS:
    # §4.2.3: MGF1 with the same hash, salt length equal to the digest length (checked exactly
    # on verify, not auto-detected).
    return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)


# One (immutable) PSS padding object per hash, built once.
_PSS_PADDING: dict[str, padding.PSS] = {h.name: _make_pss(h) for h in (_SHA256, _SHA384, _SHA512)}


def _pss(hash_alg: hashes.HashAlgorithm) -> padding.PSS:
    return _PSS_PADDING.get(hash_alg.name) or _make_pss(hash_alg)


def _rsa_hash(scheme: int, rsassa_pss_key: bool) -> hashes.HashAlgorithm | None:
    table = _PSS_PSS if rsassa_pss_key else _PSS_RSAE
    return table.get(scheme)


def sign(
    private_key: PrivateKeyTypes, scheme: int, data: bytes, *, rsassa_pss_key: bool = False
) -> bytes:
    """Sign ``data`` (the full certificate_verify_input) with ``scheme``.

    Our own scheme choice not fitting our key is a programming error: ``ValueError``.
    """
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        ecdsa = _ECDSA.get(scheme)
        if ecdsa is not None and ecdsa[0] == private_key.curve.name:
            return private_key.sign(data, ecdsa[1])
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        if scheme == S.ed25519:
            return private_key.sign(data)
    elif isinstance(private_key, ed448.Ed448PrivateKey):
        if scheme == S.ed448:
            return private_key.sign(data)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        hash_alg = _rsa_hash(scheme, rsassa_pss_key)
        if hash_alg is not None:
            return private_key.sign(data, _pss(hash_alg), hash_alg)
    raise ValueError(f"signature scheme {scheme:#06x} cannot be used with this key")


def verify(
    public_key: PublicKeyTypes,
    scheme: int,
    data: bytes,
    signature: bytes,
    *,
    rsassa_pss_key: bool = False,
) -> None:
    """Verify a peer's CertificateVerify signature over ``data``.

    A scheme that is not valid in CertificateVerify or does not fit the certificate's key is
    ``illegal_parameter`` (§4.2.3, §4.4.3); a signature that does not verify is
    ``decrypt_error`` (§4.4.3).
    """
    if not is_valid_for_certificate_verify(scheme):
        raise illegal_parameter(f"signature scheme {scheme:#06x} not allowed in CertificateVerify")
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            ecdsa = _ECDSA.get(scheme)
            if ecdsa is None or ecdsa[0] != public_key.curve.name:
                raise _mismatch(scheme, f"ECDSA {public_key.curve.name}")
            public_key.verify(signature, data, ecdsa[1])
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            if scheme != S.ed25519:
                raise _mismatch(scheme, "Ed25519")
            public_key.verify(signature, data)
        elif isinstance(public_key, ed448.Ed448PublicKey):
            if scheme != S.ed448:
                raise _mismatch(scheme, "Ed448")
            public_key.verify(signature, data)
        elif isinstance(public_key, rsa.RSAPublicKey):
            hash_alg = _rsa_hash(scheme, rsassa_pss_key)
            if hash_alg is None:
                raise _mismatch(scheme, "RSASSA-PSS" if rsassa_pss_key else "rsaEncryption")
            public_key.verify(signature, data, _pss(hash_alg), hash_alg)
        else:
            raise _mismatch(scheme, type(public_key).__name__)
    except InvalidSignature:
        raise HandshakeError(
            AlertDescription.decrypt_error, "CertificateVerify signature does not verify"
        ) from None


def _mismatch(scheme: int, key_kind: str) -> HandshakeError:
    try:
        name = SignatureScheme(scheme).name
    except ValueError:
        name = f"{scheme:#06x}"
    return illegal_parameter(f"signature scheme {name} does not match the {key_kind} key")
