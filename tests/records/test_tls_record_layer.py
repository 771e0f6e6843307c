"""TLSRecordLayer behaviour: RFC 8446 §5.1-§5.4 and RFC 8449 (record_size_limit)."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records import errors
from records.aead import RecordCipher
from records.content_types import ContentType
from records.errors import RecordError
from records.tls import (
    MAX_CIPHERTEXT,
    MAX_INNER_PLAINTEXT,
    MAX_PLAINTEXT,
    SEQ_LIMIT,
    TLSRecordLayer,
    key_update_threshold,
)

HS = ContentType.handshake
ALERT = ContentType.alert
APP = ContentType.application_data
CCS = ContentType.change_cipher_spec

SUITES = [
    ("AES-GCM", 16, 16),
    ("AES-GCM", 32, 16),
    ("CHACHA20-POLY1305", 32, 16),
    ("AES-CCM", 16, 16),
    ("AES-CCM-8", 16, 8),
]
SUITE_IDS = ["aes128gcm", "aes256gcm", "chacha20", "aes128ccm", "aes128ccm8"]


def make_cipher(suite: tuple[str, int, int] = SUITES[0], seed: int = 1) -> RecordCipher:
    aead, key_len, tag_len = suite
    key = bytes((seed + i) & 0xFF for i in range(key_len))
    iv = bytes((seed * 7 + i) & 0xFF for i in range(12))
    return RecordCipher(aead, key, iv, tag_len)


def pair(suite: tuple[str, int, int] = SUITES[0]) -> tuple[TLSRecordLayer, TLSRecordLayer]:
    """A writer and a reader sharing one key."""
    writer, reader = TLSRecordLayer(), TLSRecordLayer()
    writer.set_write_cipher(make_cipher(suite))
    reader.set_read_cipher(make_cipher(suite))
    return writer, reader


def protected_record(cipher: RecordCipher, seq: int, inner: bytes, version: int = 0x0303) -> bytes:
    """Hand-built TLSCiphertext, for inputs encode() refuses to produce."""
    header = struct.pack(">BHH", 23, version, len(inner) + cipher.tag_len)
    return header + cipher.seal(seq, header, inner)


def plain_record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack(">BHH", ctype, version, len(body)) + body


def read_all(layer: TLSRecordLayer) -> list[tuple[int, bytes]]:
    out = []
    while (item := layer.read_record()) is not None:
        out.append(item)
    return out


def alert_of(layer: TLSRecordLayer) -> int:
    with pytest.raises(RecordError) as exc:
        layer.read_record()
    return exc.value.alert


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_round_trip_every_aead(suite: tuple[str, int, int]) -> None:
    writer, reader = pair(suite)
    messages = [
        (HS, b"\x08\x00\x00\x02\x00\x00"),
        (APP, b"hello"),
        (APP, b""),  # zero-length application data is allowed (§5.1, §5.4)
        (ALERT, b"\x01\x00"),
        (APP, bytes(range(256)) * 70),  # 17920 bytes: two records
    ]
    wire = b"".join(writer.encode(t, d) for t, d in messages)
    assert wire[0] == 23 and wire[1:3] == b"\x03\x03"
    reader.feed(wire)
    got = read_all(reader)
    assert got[:4] == messages[:4]
    assert got[4:] == [(APP, messages[4][1][:MAX_PLAINTEXT]), (APP, messages[4][1][MAX_PLAINTEXT:])]
    assert writer.write_seq == reader.read_seq == 6
    assert writer.write_cipher is not None and writer.write_cipher.sealed == 6
    assert reader.read_cipher is not None and reader.read_cipher.opened == 6


@settings(max_examples=60, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    ctype=st.sampled_from([HS, APP]),
    data=st.binary(min_size=1, max_size=3 * MAX_PLAINTEXT),
    limit=st.one_of(st.just(MAX_INNER_PLAINTEXT), st.integers(64, MAX_INNER_PLAINTEXT)),
    pad=st.integers(0, 300),
)
def test_round_trip_property(
    suite: tuple[str, int, int], ctype: int, data: bytes, limit: int, pad: int
) -> None:
    writer, reader = pair(suite)
    writer.padding = lambda _t, _n: pad
    writer.set_write_limit(limit)
    reader.set_read_limit(limit)
    wire = writer.encode(ctype, data)
    reader.feed(wire)
    got = read_all(reader)
    assert all(t == ctype for t, _ in got)
    assert b"".join(d for _, d in got) == data
    assert all(0 < len(d) <= limit - 1 for _, d in got)
    # Records are fragments of at most limit-1 content bytes, so the count is exact.
    assert len(got) == -(-len(data) // (limit - 1))


# -- tampering --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_tampering_any_protected_byte_is_bad_record_mac(suite: tuple[str, int, int]) -> None:
    writer, _ = pair(suite)
    wire = writer.encode(HS, b"\x14\x00\x00\x04abcd")
    for i in range(5, len(wire)):
        bad = bytearray(wire)
        bad[i] ^= 0x01
        _, reader = pair(suite)
        reader.feed(bytes(bad))
        assert alert_of(reader) == errors.BAD_RECORD_MAC, i
        assert reader.read_seq == 0  # a failed record does not advance the sequence number
        assert not reader.pending()  # ... but it has been consumed


def test_header_is_authenticated() -> None:
    cipher = make_cipher()
    inner = b"data\x17"
    header = struct.pack(">BHH", 23, 0x0303, len(inner) + 16)
    body = cipher.seal(0, header, inner)
    # Same body under a different (still acceptable-looking) length header: framing breaks
    # and authentication fails.
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(struct.pack(">BHH", 23, 0x0303, len(body) - 1) + body[:-1])
    assert alert_of(reader) == errors.BAD_RECORD_MAC


def test_wrong_key_is_bad_record_mac_and_counted() -> None:
    writer, _ = pair()
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher(seed=99))
    reader.feed(writer.encode(APP, b"x"))
    assert alert_of(reader) == errors.BAD_RECORD_MAC
    assert reader.read_cipher is not None and reader.read_cipher.failed == 1


# -- record_overflow boundaries (§5.1, §5.2, §5.4, RFC 8449) -----------------------------------


def test_plaintext_length_limit() -> None:
    ok = TLSRecordLayer()
    ok.feed(plain_record(HS, b"\x01" * MAX_PLAINTEXT))
    assert ok.read_record() == (HS, b"\x01" * MAX_PLAINTEXT)
    over = TLSRecordLayer()
    # Detected from the header alone: nothing needs to be buffered.
    over.feed(struct.pack(">BHH", HS, 0x0303, MAX_PLAINTEXT + 1))
    assert alert_of(over) == errors.RECORD_OVERFLOW


def test_ciphertext_length_limit_from_header_alone() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(struct.pack(">BHH", APP, 0x0303, MAX_CIPHERTEXT + 1))
    assert alert_of(reader) == errors.RECORD_OVERFLOW


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("limit", [MAX_INNER_PLAINTEXT, 64, 1000])
def test_inner_plaintext_limit_boundary(suite: tuple[str, int, int], limit: int) -> None:
    """TLSInnerPlaintext (content + type + padding) of exactly the limit passes; one more
    fails (RFC 8446 §5.4, RFC 8449 §4)."""
    cipher = make_cipher(suite)
    # Exactly at the limit, unpadded and padded.
    for inner in (b"\x02" * (limit - 1) + b"\x17", b"\x02" * 10 + b"\x17" + bytes(limit - 11)):
        reader = TLSRecordLayer()
        reader.set_read_cipher(make_cipher(suite))
        reader.set_read_limit(limit)
        reader.feed(protected_record(cipher, 0, inner))
        record = reader.read_record()
        assert record is not None and record[0] == APP
    for inner in (b"\x02" * limit + b"\x17", b"\x02" * 10 + b"\x17" + bytes(limit - 10)):
        reader = TLSRecordLayer()
        reader.set_read_cipher(make_cipher(suite))
        reader.set_read_limit(limit)
        wire = protected_record(cipher, 0, inner)
        reader.feed(wire[:5])  # the header is enough
        assert alert_of(reader) == errors.RECORD_OVERFLOW


def test_plaintext_records_ignore_record_size_limit() -> None:
    # RFC 8449 §4: "Unprotected messages are not subject to this limit."
    reader = TLSRecordLayer()
    reader.set_read_limit(64)
    reader.feed(plain_record(HS, b"\x01" * 1000))
    assert reader.read_record() == (HS, b"\x01" * 1000)
    writer = TLSRecordLayer()
    writer.set_write_limit(64)
    assert len(writer.encode(HS, b"\x01" * 1000)) == 1005


@pytest.mark.parametrize("bad", [0, 63])
def test_record_size_limit_below_64_is_refused(bad: int) -> None:
    layer = TLSRecordLayer()
    with pytest.raises(ValueError):
        layer.set_read_limit(bad)
    with pytest.raises(ValueError):
        layer.set_write_limit(bad)


def test_large_advertised_limit_is_clamped_to_tls13_maximum() -> None:
    layer = TLSRecordLayer()
    layer.set_write_limit(0xFFFF)
    layer.set_read_limit(0xFFFF)
    assert layer.write_limit == layer.read_limit == MAX_INNER_PLAINTEXT


# -- fragmentation ----------------------------------------------------------------------------


def _split_records(wire: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(wire):
        (length,) = struct.unpack_from(">H", wire, pos + 3)
        out.append(wire[pos : pos + 5 + length])
        pos += 5 + length
    assert pos == len(wire)
    return out


def test_fragmentation_at_2_14_protected() -> None:
    writer, reader = pair()
    data = bytes(range(256)) * 129  # 33024 bytes
    records = _split_records(writer.encode(APP, data))
    # 2^14 content + 1 type + 16 tag per full record.
    assert [len(r) - 5 for r in records] == [MAX_PLAINTEXT + 17, MAX_PLAINTEXT + 17, 256 + 17]
    exact = _split_records(pair()[0].encode(APP, b"\x00" * MAX_PLAINTEXT))
    assert len(exact) == 1
    reader.feed(b"".join(records))
    assert b"".join(d for _, d in read_all(reader)) == data


def test_fragmentation_at_2_14_plaintext_handshake() -> None:
    writer = TLSRecordLayer()
    data = b"\x01" * (MAX_PLAINTEXT * 2 + 5)
    records = _split_records(writer.encode(HS, data, legacy_version=0x0301))
    assert [len(r) - 5 for r in records] == [MAX_PLAINTEXT, MAX_PLAINTEXT, 5]
    assert all(r[:3] == b"\x16\x03\x01" for r in records)
    reader = TLSRecordLayer()
    reader.feed(b"".join(records))
    assert read_all(reader) == [
        (HS, data[:MAX_PLAINTEXT]),
        (HS, data[MAX_PLAINTEXT:-5]),
        (HS, b"\x01" * 5),
    ]


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_fragmentation_at_small_record_size_limit(suite: tuple[str, int, int]) -> None:
    writer, reader = pair(suite)
    writer.set_write_limit(100)
    reader.set_read_limit(100)
    data = bytes(range(250))
    records = _split_records(writer.encode(HS, data))
    # 99 content bytes + 1 type = 100 = the limit (RFC 8449 §4).
    assert [len(r) - 5 - suite[2] for r in records] == [100, 100, 53]
    reader.feed(b"".join(records))
    assert read_all(reader) == [(HS, data[:99]), (HS, data[99:198]), (HS, data[198:])]


def test_alerts_are_never_fragmented_and_empty_records_refused() -> None:
    writer, _ = pair()
    writer.set_write_limit(64)
    assert len(_split_records(writer.encode(ALERT, b"\x02\x28"))) == 1
    with pytest.raises(ValueError):
        writer.encode(ALERT, b"\x00" * 64)
    with pytest.raises(ValueError):
        writer.encode(HS, b"")
    with pytest.raises(ValueError):
        writer.encode(ALERT, b"")
    with pytest.raises(ValueError):
        TLSRecordLayer().encode(HS, b"")
    with pytest.raises(ValueError):
        TLSRecordLayer().encode(ALERT, b"\x00" * (MAX_PLAINTEXT + 1))


def test_application_data_is_never_sent_unprotected() -> None:
    with pytest.raises(ValueError):
        TLSRecordLayer().encode(APP, b"x")


def test_encode_rejects_unknown_types_and_versions() -> None:
    writer, _ = pair()
    for ctype in (0, 24, 25, 26, 255):
        with pytest.raises(ValueError):
            writer.encode(ctype, b"x")
    with pytest.raises(ValueError):
        writer.encode(HS, b"x", legacy_version=0x0301)  # only unprotected ClientHello
    with pytest.raises(ValueError):
        TLSRecordLayer().encode(HS, b"x", legacy_version=0x0302)


def test_zero_length_application_data_is_one_record() -> None:
    writer, reader = pair()
    wire = writer.encode(APP, b"")
    assert len(wire) == 5 + 1 + 16
    reader.feed(wire)
    assert read_all(reader) == [(APP, b"")]


# -- padding (§5.4) ---------------------------------------------------------------------------


def test_padding_policy_is_applied_and_stripped() -> None:
    calls: list[tuple[int, int]] = []

    def policy(ctype: int, length: int) -> int:
        calls.append((ctype, length))
        return 100

    writer, reader = pair()
    writer.padding = policy
    wire = writer.encode(HS, b"abc")
    assert len(wire) == 5 + 3 + 1 + 100 + 16
    assert calls == [(HS, 3)]
    reader.feed(wire)
    assert reader.read_record() == (HS, b"abc")


def test_padding_is_clamped_to_the_limit() -> None:
    writer, reader = pair()
    writer.padding = lambda _t, _n: 10**6
    writer.set_write_limit(200)
    records = _split_records(writer.encode(APP, b"q" * 150))
    assert [len(r) - 5 - 16 for r in records] == [200]  # 150 + type + 49 zeros
    reader.set_read_limit(200)
    reader.feed(records[0])
    assert reader.read_record() == (APP, b"q" * 150)


def test_negative_padding_is_a_caller_error() -> None:
    writer, _ = pair()
    writer.padding = lambda _t, _n: -1
    with pytest.raises(ValueError):
        writer.encode(APP, b"x")


def test_padding_constructor_argument() -> None:
    # Pad every TLSInnerPlaintext (content + type + zeros) to a multiple of 32.
    writer = TLSRecordLayer(padding=lambda _t, n: -(n + 1) % 32)
    writer.set_write_cipher(make_cipher())
    assert len(writer.encode(APP, b"12345")) == 5 + 32 + 16


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_all_zero_inner_plaintext_is_unexpected_message(suite: tuple[str, int, int]) -> None:
    for inner in (b"", b"\x00", bytes(300)):
        reader = TLSRecordLayer()
        reader.set_read_cipher(make_cipher(suite))
        reader.feed(protected_record(make_cipher(suite), 0, inner))
        assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("ctype", [HS, ALERT])
@pytest.mark.parametrize("padding", [0, 1, 50])
def test_zero_length_protected_handshake_or_alert(ctype: int, padding: int) -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(protected_record(make_cipher(), 0, bytes([ctype]) + bytes(padding)))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("inner_type", [0x01, 24, 25, 26, 0xFF])
def test_unknown_inner_content_type(inner_type: int) -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(protected_record(make_cipher(), 0, b"x" + bytes([inner_type]) + bytes(3)))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_padded_application_data_keeps_inner_zero_bytes() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(protected_record(make_cipher(), 0, b"a\x00\x00\x17" + bytes(7)))
    assert reader.read_record() == (APP, b"a\x00\x00")


# -- change_cipher_spec (§5, §D.4) -----------------------------------------------------------


def test_ccs_accepted_with_and_without_read_key() -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(CCS, b"\x01"))
    assert reader.read_record() == (CCS, b"\x01")
    reader.set_read_cipher(make_cipher())
    reader.feed(plain_record(CCS, b"\x01") + protected_record(make_cipher(), 0, b"hi\x16"))
    assert read_all(reader) == [(CCS, b"\x01"), (HS, b"hi")]
    assert reader.read_seq == 1  # CCS does not consume a sequence number


@pytest.mark.parametrize("body", [b"\x00", b"\x02", b"", b"\x01\x01"])
@pytest.mark.parametrize("keyed", [False, True])
def test_bad_ccs_is_unexpected_message(body: bytes, keyed: bool) -> None:
    reader = TLSRecordLayer()
    if keyed:
        reader.set_read_cipher(make_cipher())
    reader.feed(plain_record(CCS, body))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_protected_ccs_is_unexpected_message() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(protected_record(make_cipher(), 0, b"\x01\x14"))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_encoded_ccs_is_plain_and_exact() -> None:
    assert TLSRecordLayer().encode(CCS, b"\x01") == bytes.fromhex("140303000101")
    with pytest.raises(ValueError):
        TLSRecordLayer().encode(CCS, b"\x02")


# -- record type and version policing ----------------------------------------------------------


@pytest.mark.parametrize("ctype", [0, 19, 24, 25, 26, 0x47, 0x80, 0xFF])
def test_unknown_outer_content_type(ctype: int) -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(ctype, b"\x00\x01"))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_plaintext_handshake_after_read_key_is_unexpected_message() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(plain_record(HS, b"\x01\x00"))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_plaintext_alert_only_under_the_first_read_key() -> None:
    # A peer that failed on our hello alerts in plaintext; we report its alert.
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(plain_record(ALERT, b"\x02\x28"))
    assert reader.read_record() == (ALERT, b"\x02\x28")
    reader.feed(plain_record(ALERT, b"\x02\x28\x00"))  # not a single alert
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE
    later = TLSRecordLayer()
    later.set_read_cipher(make_cipher())
    later.set_read_cipher(make_cipher())
    later.feed(plain_record(ALERT, b"\x02\x28"))
    assert alert_of(later) == errors.UNEXPECTED_MESSAGE


def test_unprotected_application_data_is_unexpected_message() -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(APP, b"GET /"))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("ctype", [HS, ALERT])
def test_zero_length_plaintext_handshake_or_alert(ctype: int) -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(ctype, b""))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("version", [0x0301, 0x0303, 0x0300, 0x0302])
def test_any_03xx_version_before_protection(version: int) -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(HS, b"\x01\x00\x00\x00", version) * 2)
    assert read_all(reader) == [(HS, b"\x01\x00\x00\x00")] * 2


@pytest.mark.parametrize("version", [0x0000, 0x0200, 0x0403, 0xFEFD, 0x0304])
def test_non_tls_version_before_protection(version: int) -> None:
    reader = TLSRecordLayer()
    reader.feed(plain_record(HS, b"\x01\x00\x00\x00", version))
    if version == 0x0304:
        # 0x0304 has major 0x03: tolerated before protection like the major stacks do.
        assert reader.read_record() is not None
    else:
        assert alert_of(reader) == errors.PROTOCOL_VERSION


@pytest.mark.parametrize("version", [0x0301, 0x0302, 0x0304])
def test_exact_0303_once_protected(version: int) -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.feed(protected_record(make_cipher(), 0, b"x\x17", version))
    assert alert_of(reader) == errors.PROTOCOL_VERSION
    ccs = TLSRecordLayer()
    ccs.set_read_cipher(make_cipher())
    ccs.feed(plain_record(CCS, b"\x01", version))
    assert alert_of(ccs) == errors.PROTOCOL_VERSION
    # Still strict after the key is dropped again: the version has been negotiated.
    ccs2 = TLSRecordLayer()
    ccs2.set_read_cipher(make_cipher())
    ccs2.set_read_cipher(None)
    ccs2.feed(plain_record(HS, b"\x01", version))
    assert alert_of(ccs2) == errors.PROTOCOL_VERSION


# -- sequence numbers (§5.3) -----------------------------------------------------------------


def test_set_cipher_resets_sequence_numbers() -> None:
    writer, reader = pair()
    reader.feed(writer.encode(APP, b"a") + writer.encode(APP, b"b"))
    assert read_all(reader) == [(APP, b"a"), (APP, b"b")]
    assert writer.write_seq == reader.read_seq == 2
    writer.set_write_cipher(make_cipher(seed=5))
    reader.set_read_cipher(make_cipher(seed=5))
    assert writer.write_seq == reader.read_seq == 0
    reader.feed(writer.encode(HS, b"\x18\x00\x00\x01\x00"))
    assert reader.read_record() == (HS, b"\x18\x00\x00\x01\x00")
    # A record sealed at seq 0 of the new key does not open at seq 1.
    stale = TLSRecordLayer()
    stale.set_read_cipher(make_cipher(seed=5))
    stale.read_seq = 1
    stale.feed(protected_record(make_cipher(seed=5), 0, b"x\x17"))
    assert alert_of(stale) == errors.BAD_RECORD_MAC


def test_write_sequence_number_never_wraps() -> None:
    # ChaCha20-Poly1305: no usage limit below the 64-bit sequence space (RFC 8446 §5.5).
    writer, reader = pair(SUITES[2])
    writer.write_seq = SEQ_LIMIT - 1
    reader.read_seq = SEQ_LIMIT - 1
    reader.feed(writer.encode(APP, b"last"))
    assert reader.read_record() == (APP, b"last")
    assert writer.write_seq == SEQ_LIMIT
    with pytest.raises(RecordError) as exc:
        writer.encode(APP, b"one too many")
    assert exc.value.alert == errors.INTERNAL_ERROR
    # Multi-record writes are refused as a whole, before anything is sealed.
    writer2, _ = pair(SUITES[2])
    writer2.write_seq = SEQ_LIMIT - 1
    with pytest.raises(RecordError):
        writer2.encode(APP, b"x" * (MAX_PLAINTEXT + 1))
    assert writer2.write_seq == SEQ_LIMIT - 1
    assert writer2.write_cipher is not None and writer2.write_cipher.sealed == 0


@pytest.mark.parametrize("suite", [SUITES[0], SUITES[3]], ids=["aes-gcm", "aes-ccm"])
def test_write_key_usage_limit(suite: tuple[str, int, int]) -> None:
    """RFC 8446 §5.5: needs_key_update turns true at 3/4 of the confidentiality limit, and
    the key refuses to protect a record past the limit, whichever write path is used."""
    writer, reader = pair(suite)
    cipher = writer.write_cipher
    assert cipher is not None
    limit = cipher.confidentiality_limit
    assert limit == (int(2**24.5) if suite[0] == "AES-GCM" else 1 << 23)
    writer.write_seq = key_update_threshold(limit) - 1
    assert not writer.needs_key_update and writer.records_until_key_update == 1
    out: list[bytes] = []
    assert writer.write_application_data(b"a", out) is True
    assert writer.needs_key_update and writer.records_until_key_update == 0
    reader.read_seq = writer.write_seq - 1
    reader.feed(b"".join(out))
    assert reader.read_record() == (APP, b"a")
    writer.write_seq = limit - 1
    writer.encode(APP, b"last")
    for attempt in (
        lambda: writer.encode(APP, b"x"),
        lambda: writer.encode(HS, b"x"),
        lambda: writer.write_application_data(b"x", out),
    ):
        with pytest.raises(RecordError) as exc:
            attempt()
        assert exc.value.alert == errors.INTERNAL_ERROR
    assert writer.write_seq == limit
    # A new key starts over.
    writer.set_write_cipher(make_cipher(suite, seed=2))
    assert not writer.needs_key_update and writer.write_seq == 0


def test_write_application_data_matches_encode() -> None:
    a, reader = pair()
    b, _ = pair()
    out: list[bytes] = []
    for size in (0, 1, 64, MAX_PLAINTEXT):
        assert a.write_application_data(bytes(size), out) is False
        assert b"".join(out[-2:]) == b.encode(APP, bytes(size))
    # More than one record, padding or no key: left to encode().
    assert a.write_application_data(bytes(MAX_PLAINTEXT + 1), out) is None
    assert TLSRecordLayer().write_application_data(b"x", out) is None
    padded, _ = pair()
    padded.padding = lambda content_type, size: 3
    assert padded.write_application_data(b"x", out) is None
    assert len(out) == 8
    reader.feed(b"".join(out))
    assert [reader.read_record() for _ in range(4)] == [
        (APP, b""),
        (APP, bytes(1)),
        (APP, bytes(64)),
        (APP, bytes(MAX_PLAINTEXT)),
    ]


def test_read_sequence_number_never_wraps() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    reader.read_seq = SEQ_LIMIT
    reader.feed(protected_record(make_cipher(), 0, b"x\x17"))
    assert alert_of(reader) == errors.INTERNAL_ERROR


# -- buffering --------------------------------------------------------------------------------


def _mixed_stream() -> tuple[bytes, list[tuple[int, bytes]], TLSRecordLayer]:
    writer, reader = pair(SUITES[2])
    messages = [(HS, b"\x01" * 40), (APP, b""), (APP, b"z" * 20000), (ALERT, b"\x01\x00")]
    wire = b"".join(writer.encode(t, d) for t, d in messages)
    expected: list[tuple[int, bytes]] = [
        (HS, b"\x01" * 40),
        (APP, b""),
        (APP, b"z" * MAX_PLAINTEXT),
    ]
    expected += [(APP, b"z" * (20000 - MAX_PLAINTEXT)), (ALERT, b"\x01\x00")]
    return wire, expected, reader


def test_byte_by_byte_feeding_yields_the_same_records() -> None:
    wire, expected, reader = _mixed_stream()
    boundaries = set()
    pos = 0
    for record in _split_records(wire):
        pos += len(record)
        boundaries.add(pos)
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        got.extend(read_all(reader))
        # Between records nothing is pending; inside one, the partial record is.
        assert reader.pending() == (i + 1 not in boundaries)
    assert got == expected
    assert not reader.pending() and not reader.buffered_bytes()


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 40000), max_size=12))
def test_arbitrary_split_points_yield_the_same_records(cuts: list[int]) -> None:
    wire, expected, reader = _mixed_stream()
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    got: list[tuple[int, bytes]] = []
    for a, b in itertools.pairwise(points):
        reader.feed(memoryview(wire)[a:b])
        got.extend(read_all(reader))
    assert got == expected


def test_pending_reports_an_incomplete_record() -> None:
    writer, reader = pair()
    wire = writer.encode(HS, b"\x14\x00\x00\x01\x00")
    assert not reader.pending()
    reader.feed(wire[:3])
    assert reader.read_record() is None and reader.pending()
    reader.feed(wire[3:-1])
    assert reader.read_record() is None and reader.pending()
    reader.feed(wire[-1:])
    assert reader.read_record() == (HS, b"\x14\x00\x00\x01\x00")
    assert not reader.pending()


def test_long_stream_with_compaction() -> None:
    writer, reader = pair()
    payloads = [bytes([i & 0xFF]) * (1000 + i) for i in range(300)]  # ~345 KB
    wire = b"".join(writer.encode(APP, p) for p in payloads)
    got: list[bytes] = []
    for pos in range(0, len(wire), 4093):
        reader.feed(wire[pos : pos + 4093])
        got.extend(d for _, d in read_all(reader))
    assert got == payloads
    assert not reader.pending()


def test_feed_accepts_bytearray_and_stays_usable_after_errors() -> None:
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher())
    bad = bytearray(protected_record(make_cipher(), 0, b"x\x17"))
    bad[-1] ^= 1
    reader.feed(bad)
    assert alert_of(reader) == errors.BAD_RECORD_MAC
    # No memoryview export may outlive read_record(): the buffer must still be resizable.
    reader.feed(b"\x17\x03\x03")
    assert reader.read_record() is None


# -- 0-RTT skipping (RFC 8446 §4.2.10) -------------------------------------------------------


def test_rejected_early_data_is_skipped_by_trial_decryption() -> None:
    early = make_cipher(seed=40)
    handshake = make_cipher(seed=41)
    wire = protected_record(early, 0, b"e" * 100 + b"\x17") + protected_record(early, 1, b"f\x17")
    wire += protected_record(handshake, 0, b"\x14\x00\x00\x00\x16")
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher(seed=41))
    reader.set_early_data_skip(101)
    reader.feed(wire)
    assert read_all(reader) == [(HS, b"\x14\x00\x00\x00")]
    assert not reader.skipping_early_data  # ended by the first good record
    assert reader.read_seq == 1
    # With skipping over, a bad record is fatal again.
    reader.feed(protected_record(early, 2, b"g\x17"))
    assert alert_of(reader) == errors.BAD_RECORD_MAC


def test_early_data_skip_budget_is_enforced() -> None:
    early = make_cipher(seed=40)
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher(seed=41))
    reader.set_early_data_skip(100)
    reader.feed(protected_record(early, 0, b"e" * 100 + b"\x17"))  # exactly the budget
    assert reader.read_record() is None
    reader.feed(protected_record(early, 1, b"e\x17"))  # one byte over
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


def test_skipped_early_data_is_not_held_to_our_record_size_limit() -> None:
    # The client wrote its 0-RTT records before seeing our record_size_limit.
    early, handshake = make_cipher(seed=40), make_cipher(seed=41)
    reader = TLSRecordLayer()
    reader.set_read_cipher(make_cipher(seed=41))
    reader.set_read_limit(64)
    reader.set_early_data_skip(5000)
    reader.feed(protected_record(early, 0, b"e" * 4000 + b"\x17"))
    assert reader.read_record() is None
    # ... but a record that does deprotect is, even while skipping.
    reader.feed(protected_record(handshake, 0, b"h" * 64 + b"\x16"))
    assert alert_of(reader) == errors.RECORD_OVERFLOW


def test_early_data_skipped_after_hello_retry_request() -> None:
    early = make_cipher(seed=40)
    reader = TLSRecordLayer()
    reader.set_early_data_skip(1000)
    ch2 = plain_record(HS, b"\x01\x00\x00\x00")
    reader.feed(protected_record(early, 0, b"e" * 50 + b"\x17") + ch2)
    assert read_all(reader) == [(HS, b"\x01\x00\x00\x00")]
    reader.set_early_data_skip(None)
    reader.feed(protected_record(early, 1, b"e\x17"))
    assert alert_of(reader) == errors.UNEXPECTED_MESSAGE


# -- robustness -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2000),
    keyed=st.booleans(),
    prefix=st.sampled_from([b"", b"\x16\x03\x01", b"\x17\x03\x03", b"\x14\x03\x03\x00\x01"]),
)
def test_garbage_only_raises_record_error(data: bytes, keyed: bool, prefix: bytes) -> None:
    reader = TLSRecordLayer()
    if keyed:
        reader.set_read_cipher(make_cipher(SUITES[4]))
    reader.feed(prefix + data)
    try:
        for _ in range(len(prefix + data) + 1):
            item = reader.read_record()
            if item is None:
                break
            ctype, payload = item
            assert ctype in (20, 21, 22, 23) and isinstance(payload, bytes)
    except RecordError as exc:
        assert exc.alert in (10, 20, 22, 47, 50, 70, 80)


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.sampled_from([HS, ALERT]), st.binary(min_size=1, max_size=600)), max_size=8
    )
)
def test_plaintext_round_trip_property(records: list[tuple[int, bytes]]) -> None:
    writer, reader = TLSRecordLayer(), TLSRecordLayer()
    reader.feed(b"".join(writer.encode(t, d) for t, d in records))
    assert read_all(reader) == records
