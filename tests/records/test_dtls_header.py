"""DTLS 1.3 record framing, record number encryption and the record layer (RFC 9147 §4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records.aead import RecordCipher
from records.dtls_epoch import DTLSEpochCipher
from records.dtls_header import (
    CiphertextRecord,
    PlaintextRecord,
    encode_plaintext,
    encode_unified_header,
    parse_datagram,
)
from records.dtls_layer import DTLSRecord, DTLSRecordLayer
from records.errors import (
    BAD_RECORD_MAC,
    DECODE_ERROR,
    INTERNAL_ERROR,
    RECORD_OVERFLOW,
    UNEXPECTED_MESSAGE,
    RecordError,
)
from records.record_numbers import (
    RecordNumber,
    decode_ack,
    encode_ack,
    reconstruct_seq,
    select_epoch,
)

AEADS = {  # name -> (key length, tag length)
    "AES-GCM": (16, 16),
    "AES-GCM-256": (32, 16),
    "CHACHA20-POLY1305": (32, 16),
    "AES-CCM": (16, 16),
    "AES-CCM-8": (16, 8),
}


def make_epoch(epoch: int, aead: str = "AES-GCM", seed: int = 1) -> DTLSEpochCipher:
    key_len, tag_len = AEADS[aead]
    name = "AES-GCM" if aead == "AES-GCM-256" else aead
    key = bytes((seed + i) & 0xFF for i in range(key_len))
    iv = bytes((seed * 7 + i) & 0xFF for i in range(12))
    sn_key = bytes((seed * 13 + i) & 0xFF for i in range(key_len))
    return DTLSEpochCipher(epoch, RecordCipher(name, key, iv, tag_len), sn_key, name)


def pair(
    epochs: tuple[int, ...] = (2, 3), aead: str = "AES-GCM"
) -> tuple[DTLSRecordLayer, DTLSRecordLayer]:
    """A sender and a receiver sharing keys for ``epochs``."""
    sender, receiver = DTLSRecordLayer(), DTLSRecordLayer()
    for epoch in epochs:
        sender.install_write_epoch(make_epoch(epoch, aead, seed=epoch))
        receiver.install_read_epoch(make_epoch(epoch, aead, seed=epoch))
    return sender, receiver


# -- DTLSPlaintext -----------------------------------------------------------------------------


def test_plaintext_wire_format() -> None:
    rec = encode_plaintext(22, 0x0102_0304_0506, b"hello")
    assert rec == bytes.fromhex("16 fefd 0000 010203040506 0005") + b"hello"


@given(
    content_type=st.sampled_from([21, 22, 26]),
    seq=st.integers(0, (1 << 48) - 1),
    fragment=st.binary(max_size=300),
    version=st.sampled_from([0xFEFD, 0xFEFF]),
)
def test_plaintext_round_trip(content_type: int, seq: int, fragment: bytes, version: int) -> None:
    data = encode_plaintext(content_type, seq, fragment, version=version)
    parsed = parse_datagram(data)
    assert parsed.discarded == []
    assert parsed.records == [PlaintextRecord(content_type, 0, seq, fragment, version)]


def test_plaintext_limits() -> None:
    with pytest.raises(ValueError):
        encode_plaintext(22, 1 << 48, b"")
    with pytest.raises(ValueError):
        encode_plaintext(22, 0, bytes((1 << 14) + 1))


def test_plaintext_nonzero_epoch_and_bad_length_discarded() -> None:
    bad_epoch = encode_plaintext(22, 1, b"abc", epoch=1)
    good = encode_plaintext(22, 2, b"def")
    parsed = parse_datagram(bad_epoch + good)
    assert [r.seq for r in parsed.records] == [2]  # type: ignore[union-attr]
    assert parsed.discarded == ["DTLSPlaintext with non-zero epoch"]
    truncated = encode_plaintext(22, 3, b"xyz")[:-1]
    parsed = parse_datagram(good + truncated)
    assert len(parsed.records) == 1
    assert parsed.discarded == ["DTLSPlaintext length exceeds the datagram"]


# -- unified header framing ------------------------------------------------------------------


def test_unified_header_bits() -> None:
    # RFC 9147 Figure 4 "minimal": 001000EE + 8-bit sequence number, no CID, no length.
    assert encode_unified_header(3, 0x1234, seq_len=1) == bytes([0b0010_0011, 0x34])
    # "full": 00111 1EE, CID, 16-bit sequence number, length.
    full = encode_unified_header(6, 0x1234, cid=b"\xaa\xbb", seq_len=2, length=0x0102)
    assert full == bytes([0b0011_1110, 0xAA, 0xBB, 0x12, 0x34, 0x01, 0x02])
    # The captures' form: S and L set, no CID.
    assert encode_unified_header(2, 7, length=16)[0] == 0x2E
    assert encode_unified_header(5, 7, cid=b"", length=16)[0] == 0x2D  # empty CID = no CID


unified_records = st.tuples(
    st.integers(0, (1 << 64) - 1),  # epoch
    st.integers(0, (1 << 64) - 1),  # sequence number
    st.sampled_from([1, 2]),  # sequence number length
    st.binary(min_size=16, max_size=80),  # encrypted_record
)


@given(
    cid_len=st.sampled_from([0, 1, 4, 20]),
    plain=st.lists(st.binary(max_size=40), max_size=3),
    records=st.lists(unified_records, min_size=1, max_size=4),
    last_without_length=st.booleans(),
)
def test_datagram_round_trip(
    cid_len: int,
    plain: list[bytes],
    records: list[tuple[int, int, int, bytes]],
    last_without_length: bool,
) -> None:
    """Plaintext and unified-header records packed into one datagram split back exactly."""
    cid = bytes(range(1, cid_len + 1)) or None
    datagram = b"".join(encode_plaintext(22, i, f) for i, f in enumerate(plain))
    for i, (epoch, seq, seq_len, body) in enumerate(records):
        no_length = last_without_length and i == len(records) - 1
        length = None if no_length else len(body)
        datagram += encode_unified_header(epoch, seq, cid=cid, seq_len=seq_len, length=length)
        datagram += body
    parsed = parse_datagram(datagram, cid_length=cid_len)
    assert parsed.discarded == []
    assert len(parsed.records) == len(plain) + len(records)
    for i, frag in enumerate(plain):
        assert parsed.records[i] == PlaintextRecord(22, 0, i, frag)
    for rec, (epoch, seq, seq_len, body) in zip(parsed.records[len(plain) :], records, strict=True):
        assert isinstance(rec, CiphertextRecord)
        assert rec.cid == cid
        assert rec.epoch_bits == epoch & 3
        assert rec.seq_len == seq_len
        assert rec.masked_seq == seq & ((1 << (8 * seq_len)) - 1)
        assert rec.encrypted_record == body


def test_record_without_length_takes_rest_of_datagram() -> None:
    body = bytes(range(40))
    datagram = encode_unified_header(3, 1) + body  # L bit clear
    (rec,) = parse_datagram(datagram).records
    assert isinstance(rec, CiphertextRecord)
    assert rec.encrypted_record == body


@pytest.mark.parametrize(
    ("datagram", "cid_len", "reason"),
    [
        (bytes([0x17, 0xFE, 0xFD]) + bytes(30), 0, "cannot demultiplex first byte 0x17"),
        (bytes([0x14]) + bytes(30), 0, "cannot demultiplex first byte 0x14"),
        (bytes([0x40]) + bytes(30), 0, "cannot demultiplex first byte 0x40"),
        (bytes([0x3E]) + bytes(30), 0, "record carries a CID but none was negotiated"),
        (bytes([0x2E, 0, 1, 0, 40]) + bytes(20), 0, "DTLSCiphertext length exceeds the datagram"),
        (bytes([0x2E, 0, 1, 0, 15]) + bytes(15), 0, "encrypted record shorter than 16 bytes"),
        (bytes([0x23, 0x01]) + bytes(15), 0, "encrypted record shorter than 16 bytes"),
        (bytes([0x3E, 1, 2]), 4, "truncated unified header"),
        (bytes([0x16, 0xFE, 0xFD, 0]), 0, "truncated DTLSPlaintext header"),
    ],
)
def test_invalid_records_are_reported_not_raised(
    datagram: bytes, cid_len: int, reason: str
) -> None:
    parsed = parse_datagram(datagram, cid_length=cid_len)
    assert parsed.records == []
    assert parsed.discarded == [reason]


@given(st.binary(max_size=200), st.sampled_from([0, 2, 8]))
def test_parse_garbage_never_raises(data: bytes, cid_len: int) -> None:
    parsed = parse_datagram(data, cid_length=cid_len)
    assert len(parsed.records) + len(parsed.discarded) <= len(data)


# -- sequence number and epoch reconstruction (§4.2.2) ----------------------------------------


@given(
    expected=st.integers(0, (1 << 64) - 1),
    offset=st.integers(-(1 << 15), (1 << 15) - 1),
    bits=st.sampled_from([8, 16]),
)
def test_reconstruct_within_half_window(expected: int, offset: int, bits: int) -> None:
    half = 1 << (bits - 1)
    if not -half < offset < half:
        offset %= half
    actual = expected + offset
    if not 0 <= actual < 1 << 64:
        return
    low = actual & ((1 << bits) - 1)
    assert reconstruct_seq(low, bits, expected) == actual


def test_reconstruct_edges() -> None:
    assert reconstruct_seq(0xFF, 8, 0) == 0xFF  # cannot go below zero
    assert reconstruct_seq(0x00, 8, 0xFF) == 0x100
    assert reconstruct_seq(0xFE, 8, 0x101) == 0xFE  # late record from before the wrap
    assert reconstruct_seq(0x02, 16, 0xFFFF) == 0x1_0002
    top = (1 << 64) - 1
    assert reconstruct_seq(0x00, 8, top) == top - 0xFF  # cannot go above 2^64-1


def test_select_epoch() -> None:
    assert select_epoch(2, [2, 3]) == 2
    assert select_epoch(0, [2, 3, 4]) == 4
    assert select_epoch(3, [3, 7]) == 7  # most recent epoch with matching bits
    assert select_epoch(1, [2, 3]) is None
    assert select_epoch(0, [0, 3]) is None  # epoch 0 is never protected


# -- record number encryption (§4.2.3) --------------------------------------------------------


def test_aes_mask_is_aes_ecb_of_sample() -> None:
    # FIPS-197 C.1: AES-128(000102..0f, 00112233..ff) = 69c4e0d8...
    key = bytes(range(16))
    cipher = DTLSEpochCipher(2, RecordCipher("AES-GCM", key, bytes(12), 16), key)
    sample = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert cipher.record_mask(sample + b"tail") == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_chacha_mask_uses_counter_then_nonce() -> None:
    # RFC 8439 §2.3.2: key 00..1f, counter 1, nonce 000000090000004a00000000 -> 10f1e7e4...
    key = bytes(range(32))
    cipher = DTLSEpochCipher(2, RecordCipher("CHACHA20-POLY1305", key, bytes(12), 16), key)
    sample = (1).to_bytes(4, "little") + bytes.fromhex("000000090000004a00000000")
    assert cipher.record_mask(sample)[:2] == bytes.fromhex("10f1")


@pytest.mark.parametrize("aead", list(AEADS))
def test_aad_is_header_with_unmasked_sequence_number(aead: str) -> None:
    """§4: AAD = unified header before record number encryption; seq bits masked on the wire."""
    ep = make_epoch(3, aead)
    record = ep.protect(23, b"application data!", 0x1234, cid=b"\x09\x08", seq_len=2)
    header, ciphertext = record[:7], record[7:]
    mask = ep.record_mask(ciphertext)
    assert header[3:5] == bytes([0x12 ^ mask[0], 0x34 ^ mask[1]])
    clear_header = encode_unified_header(3, 0x1234, cid=b"\x09\x08", length=len(ciphertext))
    inner = make_epoch(3, aead).cipher.open(0x1234, clear_header, ciphertext)
    assert inner == b"application data!\x17"


def test_short_plaintext_is_padded_to_16_bytes_of_ciphertext() -> None:
    ep = make_epoch(2, "AES-CCM-8")  # 8-byte tag: 1 byte content type alone is too short
    record = ep.protect(21, b"", 0, seq_len=1, with_length=False)
    assert len(record) - 2 == 16
    parsed = parse_datagram(record).records[0]
    assert isinstance(parsed, CiphertextRecord)
    seq, ctype, content = make_epoch(2, "AES-CCM-8").unprotect(parsed, 0)
    assert (seq, ctype, content) == (0, 21, b"")


@settings(max_examples=60, deadline=None)
@given(
    aead=st.sampled_from(list(AEADS)),
    epoch=st.integers(1, 1 << 20),
    seq=st.integers(0, (1 << 48)),
    drift=st.integers(-100, 100),
    seq_len=st.sampled_from([1, 2]),
    with_length=st.booleans(),
    cid=st.sampled_from([None, b"\x01", b"conn-id-20-bytes!!!!"]),
    payload=st.binary(max_size=64),
    padding=st.integers(0, 20),
    content_type=st.sampled_from([21, 22, 23, 26]),
)
def test_protect_unprotect_round_trip(
    aead: str,
    epoch: int,
    seq: int,
    drift: int,
    seq_len: int,
    with_length: bool,
    cid: bytes | None,
    payload: bytes,
    padding: int,
    content_type: int,
) -> None:
    sender = make_epoch(epoch, aead)
    record = sender.protect(
        content_type,
        payload,
        seq,
        cid=cid,
        seq_len=seq_len,
        with_length=with_length,
        padding=padding,
    )
    tag_len = AEADS[aead][1]
    auto_padding = max(0, 16 - tag_len - (len(payload) + 1 + padding))  # §4.2.3
    overhead = sender.overhead(cid=cid, seq_len=seq_len, with_length=with_length)
    assert len(record) == overhead + len(payload) + padding + auto_padding
    (parsed,) = parse_datagram(record, cid_length=len(cid) if cid else 0).records
    assert isinstance(parsed, CiphertextRecord)
    expected = max(0, seq + (drift if seq_len == 1 else drift * 100))
    receiver = make_epoch(epoch, aead)
    assert receiver.unprotect(parsed, expected) == (seq, content_type, payload)


# -- record layer ---------------------------------------------------------------------------


def test_layer_round_trip_several_records_per_datagram() -> None:
    sender, receiver = pair()
    n0, r0 = sender.encode_record(22, b"ServerHello", epoch=0)
    n1, r1 = sender.encode_record(22, b"EncryptedExtensions", epoch=2)
    n2, r2 = sender.encode_record(22, b"Finished", epoch=2, with_length=False)
    assert (n0, n1, n2) == (RecordNumber(0, 0), RecordNumber(2, 0), RecordNumber(2, 1))
    got = receiver.decode_datagram(r0 + r1 + r2)
    assert got == [
        DTLSRecord(0, 0, 22, b"ServerHello"),
        DTLSRecord(2, 0, 22, b"EncryptedExtensions"),
        DTLSRecord(2, 1, 22, b"Finished"),
    ]
    assert got[2].record_number == RecordNumber(2, 1)
    assert receiver.stats.records == 3 and receiver.stats.discarded == 0


def test_layer_write_epochs_and_retransmission_in_old_epoch() -> None:
    sender, receiver = pair()
    assert sender.write_epoch == 3 and sender.write_epochs == (0, 2, 3)
    assert sender.encode_record(23, b"a")[0] == RecordNumber(3, 0)
    # §4.2.1: a retransmission uses the epoch of the original transmission.
    assert sender.encode_record(22, b"Finished again", epoch=2)[0] == RecordNumber(2, 0)
    assert sender.next_write_seq() == 1 and sender.next_write_seq(2) == 1
    with pytest.raises(ValueError):
        sender.install_write_epoch(make_epoch(2))
    with pytest.raises(ValueError):
        sender.drop_write_epoch(3)
    sender.drop_write_epoch(2)
    assert list(sender.write_epochs) == [0, 3]
    with pytest.raises(ValueError):
        sender.encode_record(22, b"Finished", epoch=2)
    assert receiver.read_epochs == (2, 3)


def test_record_overhead_matches_encoding() -> None:
    sender, _ = pair(aead="AES-CCM-8")
    sender.send_cid = b"abcd"
    _, data = sender.encode_record(23, b"x" * 100)
    assert len(data) - 100 == sender.record_overhead() == 1 + 4 + 2 + 2 + 1 + 8
    assert sender.record_overhead(0) == 13
    assert sender.record_overhead(seq_len=1, with_length=False) == 1 + 4 + 1 + 1 + 8


def test_layer_sequence_numbers_across_8_bit_wraps() -> None:
    sender, receiver = pair(epochs=(3,))
    records = [sender.encode_record(23, b"%d" % i, seq_len=1)[1] for i in range(700)]
    got = [r for data in records for r in receiver.decode_datagram(data)]
    assert [r.seq for r in got] == list(range(700))
    assert [r.payload for r in got] == [b"%d" % i for i in range(700)]


def test_layer_reordering_and_replay() -> None:
    sender, receiver = pair(epochs=(3,))
    records = [sender.encode_record(23, bytes([i]))[1] for i in range(10)]
    order = [0, 3, 1, 2, 9, 4, 8, 5, 7, 6]
    got = [r.seq for i in order for r in receiver.decode_datagram(records[i])]
    assert got == order
    for data in records:
        assert receiver.decode_datagram(data) == []
    assert receiver.stats.replays == 10 and receiver.stats.discarded == 10


def test_layer_epoch_transition_keyupdate() -> None:
    """§8: old and new read epochs coexist; the E bits pick the key (§4.2.2)."""
    sender, receiver = pair(epochs=(3,))
    old = sender.encode_record(23, b"old")[1]
    sender.install_write_epoch(make_epoch(4, seed=4))
    receiver.install_read_epoch(make_epoch(4, seed=4))
    new = sender.encode_record(23, b"new")[1]
    assert receiver.decode_datagram(new) == [DTLSRecord(4, 0, 23, b"new")]
    assert receiver.highest_read_epoch_used == 4
    assert receiver.decode_datagram(old) == [DTLSRecord(3, 0, 23, b"old")]
    receiver.drop_read_epoch(3)
    assert receiver.decode_datagram(sender.encode_record(23, b"late", epoch=3)[1]) == []
    assert receiver.stats.reasons["no read keys for epoch"] == 1


def test_install_read_epoch_replaces_same_low_bits() -> None:
    layer = DTLSRecordLayer()
    for epoch in (1, 2, 3, 4):
        layer.install_read_epoch(make_epoch(epoch))
    layer.install_read_epoch(make_epoch(5))
    assert layer.read_epochs == (2, 3, 4, 5)


def test_layer_rejects_wrong_key_silently() -> None:
    sender, _ = pair(epochs=(2,))
    receiver = DTLSRecordLayer()
    receiver.install_read_epoch(make_epoch(2, seed=99))
    assert receiver.decode_datagram(sender.encode_record(22, b"hi")[1]) == []
    assert receiver.stats.auth_failures == 1
    assert receiver.stats.reasons["record failed AEAD authentication"] == 1


def test_layer_invalid_inner_plaintext_discarded() -> None:
    sender, receiver = pair(epochs=(3,))
    bad = [
        sender._write[3].protect(0, b"", 50),  # all-zero inner plaintext
        sender._write[3].protect(24, b"hb", 51),  # heartbeat: not a DTLS 1.3 type here
        sender._write[3].protect(20, b"\x01", 52),  # change_cipher_spec inside protection
    ]
    for data in bad:
        assert receiver.decode_datagram(data) == []
    assert receiver.stats.discarded == 3
    # Discarded records do not move the window (§4.5.1), so seq 50 is still acceptable.
    good = sender._write[3].protect(23, b"ok", 50)
    assert receiver.decode_datagram(good) == [DTLSRecord(3, 50, 23, b"ok")]


def test_layer_fatal_content_errors() -> None:
    sender, receiver = pair(epochs=(3,))
    receiver.read_limit = 100
    with pytest.raises(RecordError) as exc:
        receiver.decode_datagram(sender.encode_record(23, b"x" * 100)[1])
    assert exc.value.alert == RECORD_OVERFLOW
    with pytest.raises(RecordError) as exc:
        receiver.decode_datagram(sender.encode_record(22, b"")[1])
    assert exc.value.alert == UNEXPECTED_MESSAGE
    assert receiver.decode_datagram(sender.encode_record(23, b"")[1]) == [DTLSRecord(3, 2, 23, b"")]
    sender.write_limit = 10
    with pytest.raises(ValueError):
        sender.encode_record(23, b"x" * 10)


def test_layer_connection_ids() -> None:
    sender, receiver = pair(epochs=(3,))
    sender.send_cid = b"\x05\x05"
    receiver.set_receive_cids([b"\x05\x05", b"\x06\x06"])
    one = sender.encode_record(23, b"one")[1]
    assert one[0] & 0x10
    assert receiver.decode_datagram(one) == [DTLSRecord(3, 0, 23, b"one")]
    # Missing CID: that record is dropped (§4 "MUST be contained in all datagrams").
    sender.send_cid = None
    no_cid = sender.encode_record(23, b"two")[1]
    assert receiver.decode_datagram(no_cid) == []
    # A foreign CID after a good record: the rest of the datagram is dropped (§4).
    sender.send_cid = b"\x05\x05"
    good = sender.encode_record(23, b"three")[1]
    sender.send_cid = b"\x07\x07"
    foreign = sender.encode_record(23, b"four")[1]
    sender.send_cid = b"\x06\x06"
    after = sender.encode_record(23, b"five")[1]
    got = receiver.decode_datagram(good + foreign + after)
    assert got == [DTLSRecord(3, 2, 23, b"three")]
    assert receiver.stats.reasons["unknown CID; rest of datagram dropped"] == 1
    with pytest.raises(ValueError):
        receiver.set_receive_cids([b"a", b"bb"])
    # Without negotiated CIDs a record carrying one is rejected (§9).
    plain_receiver = DTLSRecordLayer()
    plain_receiver.install_read_epoch(make_epoch(3, seed=3))
    assert plain_receiver.decode_datagram(after) == []


def test_layer_plaintext_switch_and_version() -> None:
    sender, receiver = pair()
    sender.plaintext_version = 0xFEFF
    data = sender.encode_record(22, b"ClientHello", epoch=0)[1]
    assert data[1:3] == b"\xfe\xff"
    receiver.accept_plaintext = False
    assert receiver.decode_datagram(data) == []
    assert receiver.stats.reasons["plaintext record no longer accepted"] == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_layer_garbage_is_discarded_never_raised(data: bytes) -> None:
    _, receiver = pair(epochs=(1, 2, 3, 4))
    receiver.set_receive_cids([b"\x00\x00"])
    got = receiver.decode_datagram(data)
    assert all(r.epoch == 0 for r in got)  # only unauthenticated plaintext can get through
    assert receiver.stats.records == len(got)


@settings(deadline=None)
@given(st.binary(max_size=60))
def test_layer_garbage_after_valid_record(tail: bytes) -> None:
    sender, receiver = pair(epochs=(3,))
    good = sender.encode_record(23, b"payload")[1]
    got = receiver.decode_datagram(good + tail)
    assert got[0] == DTLSRecord(3, 0, 23, b"payload")
    assert all(r.epoch == 0 for r in got[1:])


# -- AEAD limits (§4.5.3) -------------------------------------------------------------------


def test_confidentiality_limit_signals_then_refuses() -> None:
    sender, _ = pair(epochs=(3,))
    cipher = sender._write[3].cipher
    limit = cipher.confidentiality_limit
    assert limit == int(2**24.5)
    assert not sender.needs_key_update
    cipher.sealed = limit * 3 // 4
    assert sender.needs_key_update
    cipher.sealed = limit
    with pytest.raises(RecordError) as exc:
        sender.encode_record(23, b"one too many")
    assert exc.value.alert == INTERNAL_ERROR


def test_integrity_limit_closes_connection() -> None:
    sender, receiver = pair(epochs=(3,), aead="AES-CCM-8")
    assert receiver._read[3].cipher.integrity_limit == 128  # RFC 9147 §A.3: v <= 2^7
    forged = bytearray(sender.encode_record(23, b"payload")[1])
    forged[-1] ^= 0xFF
    for _ in range(96):
        assert receiver.decode_datagram(bytes(forged)) == []
    assert receiver.request_peer_update and receiver.needs_key_update
    for _ in range(32):
        receiver.decode_datagram(bytes(forged))
    with pytest.raises(RecordError) as exc:
        receiver.decode_datagram(bytes(forged))  # the 129th failure exceeds the limit
    assert exc.value.alert == BAD_RECORD_MAC


def test_integrity_limit_drops_old_epoch_after_key_update() -> None:
    sender, receiver = pair(epochs=(3,), aead="AES-CCM-8")
    forged = bytearray(sender.encode_record(23, b"payload")[1])
    forged[-1] ^= 0xFF
    receiver.install_read_epoch(make_epoch(4, "AES-CCM-8", seed=4))
    for _ in range(129):
        assert receiver.decode_datagram(bytes(forged)) == []
    assert receiver.read_epochs == (4,)  # §4.5.3: drop the previous keys instead


def test_gcm_integrity_limit_value() -> None:
    assert make_epoch(3).integrity_limit == 1 << 36
    assert make_epoch(3, "AES-CCM").integrity_limit == int(2**23.5)


# -- ACK (§7) ---------------------------------------------------------------------------------


def test_ack_round_trip_and_order() -> None:
    body = encode_ack([(3, 5), RecordNumber(2, 1), (2, 0)])
    assert body[:2] == struct.pack("!H", 48)
    assert decode_ack(body) == [RecordNumber(2, 0), RecordNumber(2, 1), RecordNumber(3, 5)]
    assert decode_ack(encode_ack([])) == []


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x10" + bytes(15), b"\x00\x0f" + bytes(15)])
def test_ack_decode_errors(body: bytes) -> None:
    with pytest.raises(RecordError) as exc:
        decode_ack(body)
    assert exc.value.alert == DECODE_ERROR
