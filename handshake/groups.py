"""Key exchange groups (RFC 8446 §4.2.7, §4.2.8.2, §7.4) and the X25519MLKEM768 hybrid
(draft-ietf-tls-ecdhe-mlkem, codepoint 0x11EC).

Every operation goes through ``cryptography``. A share the peer sent that cannot be used (wrong
length, compressed or off-curve point, invalid ML-KEM key, all-zero X25519/X448 result) is an
``illegal_parameter`` (RFC 8446 §4.2.8 / §7.4.2).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .alerts import illegal_parameter


class NamedGroup(IntEnum):
    secp256r1 = 23
    secp384r1 = 24
    secp521r1 = 25
    x25519 = 29
    x448 = 30
    X25519MLKEM768 = 0x11EC


GROUP_NAMES: dict[int, str] = {g.value: g.name for g in NamedGroup}

SUPPORTED_GROUPS: tuple[int, ...] = (
    NamedGroup.x25519,
    NamedGroup.X25519MLKEM768,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.secp521r1,
    NamedGroup.x448,
)
# A client sends a key share for the first only (cheap, universally supported); the others
# are reachable through HelloRetryRequest.
DEFAULT_GROUPS: tuple[int, ...] = SUPPORTED_GROUPS
# A server takes any share the client sent for a group it supports, preferring the hybrid
# post-quantum group when the client offers its share (RFC 8446 §4.2.8 leaves the choice open).
SERVER_DEFAULT_GROUPS: tuple[int, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.secp521r1,
    NamedGroup.x448,
)

# RFC 8446 §4.2.8.2: uncompressed point = 0x04 || X || Y, coordinates of the field size.
_EC_CURVES: dict[int, tuple[ec.EllipticCurve, int]] = {
    NamedGroup.secp256r1: (ec.SECP256R1(), 32),
    NamedGroup.secp384r1: (ec.SECP384R1(), 48),
    NamedGroup.secp521r1: (ec.SECP521R1(), 66),
}
_X25519_LEN = 32
_X448_LEN = 56
# draft-ietf-tls-ecdhe-mlkem: ML-KEM-768 part first, X25519 part second, in shares and secret.
_MLKEM768_EK_LEN = 1184
_MLKEM768_CT_LEN = 1088
_MLKEM768_SEED_LEN = 64


def _check_len(group: int, share: bytes, expected: int) -> None:
    if len(share) != expected:
        raise illegal_parameter(
            f"{GROUP_NAMES[group]} key share is {len(share)} bytes, expected {expected}"
        )


def _not_zero(group: int, secret: bytes) -> bytes:
    # RFC 8446 §7.4.2 / RFC 7748 §6: an all-zero X25519/X448 result means a low-order point.
    if secret == bytes(len(secret)):
        raise illegal_parameter(f"{GROUP_NAMES[group]} shared secret is all zero")
    return secret


# -- per-family primitives ---------------------------------------------------------------------


def _ec_private(group: int, private_bytes: bytes | None) -> ec.EllipticCurvePrivateKey:
    curve, size = _EC_CURVES[group]
    if private_bytes is None:
        return ec.generate_private_key(curve)
    if len(private_bytes) != size:
        raise ValueError(f"{GROUP_NAMES[group]} private scalar must be {size} bytes")
    return ec.derive_private_key(int.from_bytes(private_bytes, "big"), curve)


def _ec_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _ec_exchange(group: int, key: ec.EllipticCurvePrivateKey, peer: bytes) -> bytes:
    curve, size = _EC_CURVES[group]
    _check_len(group, peer, 1 + 2 * size)
    if peer[0] != 4:
        # TLS 1.3 has a single point format (§4.2.8.2); compressed points are not accepted.
        raise illegal_parameter(f"{GROUP_NAMES[group]} key share is not an uncompressed point")
    try:
        # from_encoded_point performs the §4.2.8.2 checks: coordinates in range, on the curve.
        public = ec.EllipticCurvePublicKey.from_encoded_point(curve, peer)
        return key.exchange(ec.ECDH(), public)
    except ValueError:
        raise illegal_parameter(f"{GROUP_NAMES[group]} key share is not a valid point") from None


def _x25519_private(private_bytes: bytes | None) -> x25519.X25519PrivateKey:
    if private_bytes is None:
        return x25519.X25519PrivateKey.generate()
    return x25519.X25519PrivateKey.from_private_bytes(private_bytes)


def _x25519_exchange(group: int, key: x25519.X25519PrivateKey, peer: bytes) -> bytes:
    try:
        secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        # cryptography refuses low-order points itself ("Error computing shared key").
        raise illegal_parameter(f"{GROUP_NAMES[group]} key share is unusable") from None
    return _not_zero(group, secret)


def _x448_private(private_bytes: bytes | None) -> x448.X448PrivateKey:
    if private_bytes is None:
        return x448.X448PrivateKey.generate()
    return x448.X448PrivateKey.from_private_bytes(private_bytes)


def _x448_exchange(key: x448.X448PrivateKey, peer: bytes) -> bytes:
    try:
        secret = key.exchange(x448.X448PublicKey.from_public_bytes(peer))
    except ValueError:
        raise illegal_parameter("x448 key share is unusable") from None
    return _not_zero(NamedGroup.x448, secret)


# -- client side ---------------------------------------------------------------------------------


class KeyShare:
    """One client key share: ``public`` goes into the ClientHello, ``exchange`` takes the
    server's share from the ServerHello and returns the shared secret."""

    __slots__ = ("_exchange", "group", "public")

    def __init__(self, group: int, public: bytes, exchange: Callable[[bytes], bytes]) -> None:
        self.group = group
        self.public = public
        self._exchange = exchange

    def exchange(self, server_share: bytes) -> bytes:
        return self._exchange(bytes(server_share))

    def __repr__(self) -> str:
        return f"KeyShare({GROUP_NAMES.get(self.group, hex(self.group))})"


def generate_key_share(group: int, private_bytes: bytes | None = None) -> KeyShare:
    """A fresh client key share for ``group``.

    ``private_bytes`` injects a known private key (test vectors): the big-endian scalar for the
    NIST curves, the raw key for x25519/x448, and for X25519MLKEM768 the 64-byte ML-KEM seed
    (d || z, FIPS 203) followed by the 32-byte X25519 private key.
    """
    if group in _EC_CURVES:
        ec_key = _ec_private(group, private_bytes)
        return KeyShare(group, _ec_public(ec_key), lambda s: _ec_exchange(group, ec_key, s))
    if group == NamedGroup.x25519:
        xk = _x25519_private(private_bytes)
        return KeyShare(group, xk.public_key().public_bytes_raw(), lambda s: _client_x25519(xk, s))
    if group == NamedGroup.x448:
        x4 = _x448_private(private_bytes)
        return KeyShare(group, x4.public_key().public_bytes_raw(), lambda s: _client_x448(x4, s))
    if group == NamedGroup.X25519MLKEM768:
        return _hybrid_client(private_bytes)
    raise ValueError(f"unsupported group {group:#06x}")


def _client_x25519(key: x25519.X25519PrivateKey, share: bytes) -> bytes:
    _check_len(NamedGroup.x25519, share, _X25519_LEN)
    return _x25519_exchange(NamedGroup.x25519, key, share)


def _client_x448(key: x448.X448PrivateKey, share: bytes) -> bytes:
    _check_len(NamedGroup.x448, share, _X448_LEN)
    return _x448_exchange(key, share)


def _hybrid_client(private_bytes: bytes | None) -> KeyShare:
    group = NamedGroup.X25519MLKEM768
    if private_bytes is None:
        kem = mlkem.MLKEM768PrivateKey.generate()
        xk = x25519.X25519PrivateKey.generate()
    else:
        if len(private_bytes) != _MLKEM768_SEED_LEN + _X25519_LEN:
            raise ValueError("X25519MLKEM768 private_bytes = 64-byte ML-KEM seed || X25519 key")
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private_bytes[:_MLKEM768_SEED_LEN])
        xk = x25519.X25519PrivateKey.from_private_bytes(private_bytes[_MLKEM768_SEED_LEN:])
    public = kem.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()

    def exchange(share: bytes) -> bytes:
        # server share = ML-KEM ciphertext (1088) || X25519 public (32)
        _check_len(group, share, _MLKEM768_CT_LEN + _X25519_LEN)
        # Decapsulation never fails on a well-sized ciphertext (FIPS 203 implicit rejection).
        kem_secret = kem.decapsulate(share[:_MLKEM768_CT_LEN])
        return kem_secret + _x25519_exchange(group, xk, share[_MLKEM768_CT_LEN:])

    return KeyShare(group, public, exchange)


# -- server side ---------------------------------------------------------------------------------


def respond_key_share(
    group: int, client_share: bytes, private_bytes: bytes | None = None
) -> tuple[bytes, bytes]:
    """Server side: (server_share, shared_secret) for the client's share in ``group``.

    For X25519MLKEM768 the server encapsulates to the client's ML-KEM key; ``private_bytes``
    can then only fix the X25519 half (cryptography offers no deterministic encapsulation).
    """
    client_share = bytes(client_share)
    if group in _EC_CURVES:
        ec_key = _ec_private(group, private_bytes)
        return _ec_public(ec_key), _ec_exchange(group, ec_key, client_share)
    if group == NamedGroup.x25519:
        _check_len(group, client_share, _X25519_LEN)
        xk = _x25519_private(private_bytes)
        return xk.public_key().public_bytes_raw(), _x25519_exchange(group, xk, client_share)
    if group == NamedGroup.x448:
        _check_len(group, client_share, _X448_LEN)
        x4 = _x448_private(private_bytes)
        return x4.public_key().public_bytes_raw(), _x448_exchange(x4, client_share)
    if group == NamedGroup.X25519MLKEM768:
        return _hybrid_server(client_share, private_bytes)
    raise ValueError(f"unsupported group {group:#06x}")


def _hybrid_server(client_share: bytes, private_bytes: bytes | None) -> tuple[bytes, bytes]:
    group = NamedGroup.X25519MLKEM768
    # client share = ML-KEM-768 encapsulation key (1184) || X25519 public (32)
    _check_len(group, client_share, _MLKEM768_EK_LEN + _X25519_LEN)
    try:
        # from_public_bytes runs the FIPS 203 §7.2 encapsulation key (modulus) check.
        ek = mlkem.MLKEM768PublicKey.from_public_bytes(client_share[:_MLKEM768_EK_LEN])
    except ValueError:
        raise illegal_parameter("X25519MLKEM768 ML-KEM encapsulation key is invalid") from None
    xk = _x25519_private(private_bytes)
    x_secret = _x25519_exchange(group, xk, client_share[_MLKEM768_EK_LEN:])
    kem_secret, ciphertext = ek.encapsulate()
    return ciphertext + xk.public_key().public_bytes_raw(), kem_secret + x_secret
