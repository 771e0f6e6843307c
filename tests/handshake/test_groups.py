"""Key exchange groups (RFC 8446 §4.2.7, §4.2.8.2, §7.4) and X25519MLKEM768."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from handshake.alerts import AlertDescription, HandshakeError
from handshake.groups import (
    DEFAULT_GROUPS,
    GROUP_NAMES,
    SUPPORTED_GROUPS,
    NamedGroup,
    generate_key_share,
    respond_key_share,
)

G = NamedGroup
# (client share length, server share length, shared secret length)
SIZES = {
    G.secp256r1: (65, 65, 32),
    G.secp384r1: (97, 97, 48),
    G.secp521r1: (133, 133, 66),
    G.x25519: (32, 32, 32),
    G.x448: (56, 56, 56),
    G.X25519MLKEM768: (1184 + 32, 1088 + 32, 64),
}
P256_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1


def _illegal(excinfo: pytest.ExceptionInfo[HandshakeError]) -> None:
    assert excinfo.value.alert == AlertDescription.illegal_parameter


def test_codepoints_and_names() -> None:
    assert [int(g) for g in G] == [23, 24, 25, 29, 30, 0x11EC]
    assert GROUP_NAMES[0x11EC] == "X25519MLKEM768"
    assert GROUP_NAMES[29] == "x25519" and GROUP_NAMES[23] == "secp256r1"
    assert set(SUPPORTED_GROUPS) == set(G)
    # The client offers every group and a share for the first (x25519) only.
    assert DEFAULT_GROUPS[0] == G.x25519 and set(DEFAULT_GROUPS) == set(G)


@pytest.mark.parametrize("group", list(G), ids=lambda g: GROUP_NAMES[g])
def test_round_trip(group: int) -> None:
    client = generate_key_share(group)
    assert client.group == group
    server_share, server_secret = respond_key_share(group, client.public)
    client_len, server_len, secret_len = SIZES[G(group)]
    assert len(client.public) == client_len
    assert len(server_share) == server_len
    assert len(server_secret) == secret_len
    assert client.exchange(server_share) == server_secret
    # Fresh keys every time.
    assert generate_key_share(group).public != client.public


@pytest.mark.parametrize("group", [G.secp256r1, G.secp384r1, G.secp521r1])
def test_ec_private_scalar_injection(group: int) -> None:
    size = SIZES[G(group)][2]
    scalar = (12345678901234567890).to_bytes(size, "big")
    share = generate_key_share(group, scalar)
    curve = {G.secp256r1: ec.SECP256R1(), G.secp384r1: ec.SECP384R1(), G.secp521r1: ec.SECP521R1()}
    expected = ec.derive_private_key(12345678901234567890, curve[G(group)]).public_key()
    assert share.public == expected.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert share.public[0] == 4
    with pytest.raises(ValueError):
        generate_key_share(group, scalar[1:])


def test_x25519_rfc7748_vector() -> None:
    # RFC 7748 §6.1
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    share = generate_key_share(G.x25519, alice)
    assert share.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    server_share, secret = respond_key_share(G.x25519, share.public, bob)
    assert server_share.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    assert secret.hex() == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert share.exchange(server_share) == secret


def test_x448_rfc7748_vector() -> None:
    # RFC 7748 §6.2
    alice = bytes.fromhex(
        "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
        "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b"
    )
    bob = bytes.fromhex(
        "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d"
        "6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d"
    )
    share = generate_key_share(G.x448, alice)
    server_share, secret = respond_key_share(G.x448, share.public, bob)
    assert share.exchange(server_share) == secret
    assert secret.hex() == (
        "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
        "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d"
    )


def test_hybrid_wire_layout_mlkem_first() -> None:
    # draft-ietf-tls-ecdhe-mlkem: ek || x25519 (client), ct || x25519 (server),
    # shared secret = ML-KEM ss || X25519 ss. Checked piecewise against cryptography.
    seed = bytes(range(64))
    x_priv = bytes(range(100, 132))
    client = generate_key_share(G.X25519MLKEM768, seed + x_priv)
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    xk = x25519.X25519PrivateKey.from_private_bytes(x_priv)
    assert client.public[:1184] == kem.public_key().public_bytes_raw()
    assert client.public[1184:] == xk.public_key().public_bytes_raw()

    server_x = bytes(range(200, 232))
    server_share, secret = respond_key_share(G.X25519MLKEM768, client.public, server_x)
    server_xk = x25519.X25519PrivateKey.from_private_bytes(server_x)
    assert server_share[1088:] == server_xk.public_key().public_bytes_raw()
    assert secret[:32] == kem.decapsulate(server_share[:1088])
    assert secret[32:] == xk.exchange(server_xk.public_key())
    assert client.exchange(server_share) == secret

    with pytest.raises(ValueError):
        generate_key_share(G.X25519MLKEM768, seed)  # missing the X25519 half


def test_hybrid_tampered_ciphertext_gives_different_secret() -> None:
    # ML-KEM implicit rejection: no error here, the handshake fails at Finished instead.
    client = generate_key_share(G.X25519MLKEM768)
    server_share, secret = respond_key_share(G.X25519MLKEM768, client.public)
    tampered = bytes((server_share[0] ^ 1,)) + server_share[1:]
    assert client.exchange(tampered) != secret


@pytest.mark.parametrize("group", list(G), ids=lambda g: GROUP_NAMES[g])
def test_wrong_length_shares_rejected(group: int) -> None:
    client = generate_key_share(group)
    server_share, _ = respond_key_share(group, client.public)
    for bad in (client.public[:-1], client.public + b"\x00", b""):
        with pytest.raises(HandshakeError) as exc:
            respond_key_share(group, bad)
        _illegal(exc)
    for bad in (server_share[:-1], server_share + b"\x00", b""):
        with pytest.raises(HandshakeError) as exc:
            client.exchange(bad)
        _illegal(exc)


@pytest.mark.parametrize("group", [G.secp256r1, G.secp384r1, G.secp521r1])
def test_ec_compressed_and_invalid_points_rejected(group: int) -> None:
    client = generate_key_share(group)
    size = SIZES[G(group)][2]
    x, y = client.public[1 : 1 + size], client.public[1 + size :]
    compressed = bytes((2 + (y[-1] & 1),)) + x
    off_curve = b"\x04" + x + (int.from_bytes(y, "big") ^ 1).to_bytes(size, "big")
    # A compressed-format prefix padded to the uncompressed length is still not format 4.
    wrong_prefix = bytes((2 + (y[-1] & 1),)) + x + y
    infinity = b"\x04" + bytes(2 * size)
    for bad in (compressed, off_curve, wrong_prefix, infinity):
        with pytest.raises(HandshakeError) as exc:
            respond_key_share(group, bad)
        _illegal(exc)
        with pytest.raises(HandshakeError) as exc:
            client.exchange(bad)
        _illegal(exc)


def test_p256_coordinate_out_of_range_rejected() -> None:
    # x = p is not a field element (§4.2.8.2 step 2) even though x mod p = 0 may be on the curve.
    bad = b"\x04" + P256_PRIME.to_bytes(32, "big") + bytes(31) + b"\x01"
    with pytest.raises(HandshakeError) as exc:
        respond_key_share(G.secp256r1, bad)
    _illegal(exc)


# Low-order X25519 points (RFC 7748 §6.1 / cr.yp.to): the result would be all zero.
X25519_LOW_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("point", X25519_LOW_ORDER, ids=["zero", "one", "order8"])
def test_x25519_low_order_points_rejected(point: bytes) -> None:
    with pytest.raises(HandshakeError) as exc:
        respond_key_share(G.x25519, point)
    _illegal(exc)
    with pytest.raises(HandshakeError) as exc:
        generate_key_share(G.x25519).exchange(point)
    _illegal(exc)


def test_x448_zero_point_rejected() -> None:
    with pytest.raises(HandshakeError) as exc:
        respond_key_share(G.x448, bytes(56))
    _illegal(exc)
    with pytest.raises(HandshakeError) as exc:
        generate_key_share(G.x448).exchange(bytes(56))
    _illegal(exc)


def test_hybrid_invalid_components_rejected() -> None:
    client = generate_key_share(G.X25519MLKEM768)
    # Encapsulation key with coefficients >= q fails the FIPS 203 modulus check.
    bad_ek = b"\xff" * 1184 + client.public[1184:]
    with pytest.raises(HandshakeError) as exc:
        respond_key_share(G.X25519MLKEM768, bad_ek)
    _illegal(exc)
    zero_x = client.public[:1184] + bytes(32)
    with pytest.raises(HandshakeError) as exc:
        respond_key_share(G.X25519MLKEM768, zero_x)
    _illegal(exc)
    server_share, _ = respond_key_share(G.X25519MLKEM768, client.public)
    with pytest.raises(HandshakeError) as exc:
        client.exchange(server_share[:1088] + bytes(32))
    _illegal(exc)


def test_unknown_group_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        generate_key_share(0x0100)  # ffdhe2048: not supported
    with pytest.raises(ValueError):
        respond_key_share(0x0100, b"\x00" * 256)
