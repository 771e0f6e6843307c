"""The caches added for handshake speed change no result: zero-PSK key schedule constants,
verifiers reused within one validation second, certificates parsed once per DER, the
pre_shared_key codec (RFC 8446 §4.2.11) and prebuilt signature parameters."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import math

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from handshake import certificates, extensions
from handshake.alerts import AlertDescription, HandshakeError
from handshake.certificates import (
    EXPIRED,
    CertificateVerifyError,
    TrustAnchors,
    parse_certificate_chain,
    verify_client_certificate,
    verify_server_certificate,
)
from handshake.cipher_suites import CIPHER_SUITES
from handshake.extensions import OfferedPsks, PskIdentity
from handshake.key_schedule import KeySchedule, derive_secret, hkdf_extract, traffic_keys
from protocol.pki import PKI, generate_pki

UTC = datetime.UTC


@pytest.fixture(scope="module")
def pki() -> PKI:
    return generate_pki()


# --- key schedule ------------------------------------------------------------------------------
def _expected_handshake_secret(hash_name: str, psk: bytes | None, dhe: bytes, dtls: bool) -> bytes:
    """RFC 8446 §7.1 computed step by step, without any cache."""
    size = hashlib.new(hash_name).digest_size
    zeros = bytes(size)
    early = hmac.digest(zeros, psk or zeros, hash_name)
    empty = hashlib.new(hash_name).digest()
    salt = derive_secret(hash_name, early, b"derived", empty, dtls=dtls)
    return hmac.digest(salt, dhe, hash_name)


@pytest.mark.parametrize("code", sorted(CIPHER_SUITES))
@pytest.mark.parametrize("dtls", [False, True])
def test_zero_psk_constants_match_the_rfc_computation(code: int, dtls: bool) -> None:
    suite = CIPHER_SUITES[code]
    h = suite.hash_name
    dhe = bytes(range(suite.hash_len))
    schedule = KeySchedule(suite, dtls=dtls)
    zeros = bytes(suite.hash_len)
    assert schedule.early_secret == hkdf_extract(h, zeros, zeros)
    schedule.enter_handshake(dhe)
    assert schedule.handshake_secret == _expected_handshake_secret(h, None, dhe, dtls)
    # A PSK replaces the constants; dropping it again restores them (§7.1).
    psk = b"\x42" * suite.hash_len
    schedule.set_psk(psk)
    schedule.enter_handshake(dhe)
    assert schedule.handshake_secret == _expected_handshake_secret(h, psk, dhe, dtls)
    schedule.set_psk(None)
    schedule.enter_handshake(dhe)
    assert schedule.handshake_secret == _expected_handshake_secret(h, None, dhe, dtls)


def test_dtls_and_tls_zero_psk_salts_differ() -> None:
    suite = CIPHER_SUITES[0x1301]
    tls, dtls = KeySchedule(suite), KeySchedule(suite, dtls=True)
    tls.enter_handshake(bytes(32))
    dtls.enter_handshake(bytes(32))
    assert tls.handshake_secret != dtls.handshake_secret  # "tls13 " vs "dtls13" (RFC 9147 §5.9)


@pytest.mark.parametrize("dtls", [False, True])
def test_traffic_keys_match_hkdf_expand_label(dtls: bool) -> None:
    suite = CIPHER_SUITES[0x1301]
    secret = bytes(range(32))
    prefix = b"dtls13" if dtls else b"tls13 "

    def label(name: bytes, length: int) -> bytes:
        full = prefix + name
        return length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"

    def expand(name: bytes, length: int) -> bytes:
        return HKDFExpand(hashes.SHA256(), length, label(name, length)).derive(secret)

    keys = traffic_keys(suite, secret, dtls=dtls)
    assert keys.key == expand(b"key", 16)
    assert keys.iv == expand(b"iv", 12)
    assert keys.sn_key == (expand(b"sn", 16) if dtls else None)


# --- certificates ------------------------------------------------------------------------------
def test_verifier_is_reused_within_a_second_only(pki: PKI) -> None:
    anchors = TrustAnchors(pki.roots)
    purpose = certificates._Purpose.SERVER
    subject = certificates.server_subject("localhost")
    t = math.floor(datetime.datetime.now(UTC).timestamp())
    first = anchors._verifier(purpose, False, subject, t + 0.1)
    assert anchors._verifier(purpose, False, subject, t + 0.9) is first
    assert anchors._verifier(purpose, False, subject, t + 1.0) is not first
    assert anchors._verifier(purpose, True, subject, t + 1.0) is not first


def test_cached_verifier_still_sees_the_time(pki: PKI) -> None:
    """A verifier cached for one second is never used for another: validating a minute
    after a certificate's notAfter fails even right after a successful validation."""
    leaf = pki.server.certificate
    not_after = leaf.not_valid_after_utc.timestamp()
    anchors = TrustAnchors(pki.roots)
    chain_der = pki.server.chain_der
    verify_server_certificate(chain_der, server_name="localhost", now=not_after, roots=anchors)
    # cryptography validates whole seconds: half a second past notAfter is still that second.
    verify_server_certificate(
        chain_der, server_name="localhost", now=not_after + 0.5, roots=anchors
    )
    with pytest.raises(CertificateVerifyError) as info:
        verify_server_certificate(
            chain_der, server_name="localhost", now=not_after + 1, roots=anchors
        )
    assert (info.value.alert, info.value.kind) == (AlertDescription.certificate_expired, EXPIRED)


def test_client_verifier_cached_per_second(pki: PKI) -> None:
    anchors = TrustAnchors(pki.roots)
    t = datetime.datetime.now(UTC).timestamp()
    chain = verify_client_certificate(pki.client.chain_der, now=t, roots=anchors)
    again = verify_client_certificate(pki.client.chain_der, now=t, roots=anchors)
    assert chain == again


def test_certificates_are_parsed_once_per_der(pki: PKI) -> None:
    chain_der = pki.server.chain_der
    first = parse_certificate_chain(chain_der)
    second = parse_certificate_chain([bytes(bytearray(d)) for d in chain_der])  # equal copies
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert first == [pki.server.certificate]


def test_parse_cache_is_bounded() -> None:
    certificates._PARSED.clear()
    pki = generate_pki()
    for _ in range(2):
        parse_certificate_chain(pki.server.chain_der)
    assert len(certificates._PARSED) <= certificates._MAX_PARSED
    with pytest.raises(CertificateVerifyError):
        parse_certificate_chain([b"\x30\x03\x02\x01\x00"])
    assert b"\x30\x03\x02\x01\x00" not in certificates._PARSED


# --- pre_shared_key codec -----------------------------------------------------------------------
def _psk_body(identities: list[tuple[bytes, int]], binders: list[bytes]) -> bytes:
    ids = b"".join(len(i).to_bytes(2, "big") + i + a.to_bytes(4, "big") for i, a in identities)
    bs = b"".join(bytes((len(b),)) + b for b in binders)
    return len(ids).to_bytes(2, "big") + ids + len(bs).to_bytes(2, "big") + bs


def test_offered_psks_roundtrip() -> None:
    value = OfferedPsks(
        (PskIdentity(b"ticket-1", 7), PskIdentity(b"t" * 300, 2**32 - 1)),
        (b"\x01" * 32, b"\x02" * 48),
    )
    body = extensions._e_offered_psks(value, 1)
    assert body == _psk_body(
        [(b"ticket-1", 7), (b"t" * 300, 2**32 - 1)], [b"\x01" * 32, b"\x02" * 48]
    )
    assert extensions._d_offered_psks(body, 1) == value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00", "truncated structure"),
        (b"\x00\x06" + b"\x00\x01a\x00\x00\x00", "vector shorter than its minimum of 7"),
        (b"\x00\x07\x00\x00" + b"\x00" * 5, "vector shorter than its minimum of 1"),
        (b"\x00\x07\x00\x02ab\x00\x00", "truncated structure"),
        (b"\x00\x07\x00\x01a\x00\x00\x00\x00", "truncated structure"),
        (b"\x00\x07\x00\x01a\x00\x00\x00\x00\x00\x20" + b"\x1f" + b"x" * 31, "vector shorter"),
        (b"\x00\x07\x00\x01a\x00\x00\x00\x00\x00\x21" + b"\x1f" + b"x" * 32, "vector shorter"),
        (b"\x00\x07\x00\x01a\x00\x00\x00\x00\x00\x21" + b"\x21" + b"x" * 32, "truncated"),
        (_psk_body([(b"a", 0)], [b"x" * 32]) + b"\x00", "trailing bytes inside a vector"),
    ],
)
def test_offered_psks_malformed_is_decode_error(body: bytes, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        extensions._d_offered_psks(body, 1)
    assert info.value.alert == AlertDescription.decode_error
    assert reason in info.value.reason


def test_offered_psks_binder_count_mismatch() -> None:
    body = _psk_body([(b"a", 0), (b"b", 0)], [b"x" * 32])
    with pytest.raises(HandshakeError) as info:
        extensions._d_offered_psks(body, 1)
    assert info.value.alert == AlertDescription.illegal_parameter
