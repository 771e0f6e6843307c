"""DTLS handshake fragmentation and reassembly (RFC 9147 §5.2, §5.5, §5.8.1, §7)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.dtls.fragments import (
    HEADER_LENGTH,
    MAX_BUFFERED_BYTES,
    MAX_FUTURE_MESSAGES,
    MAX_MESSAGE_SIZE,
    FragmentError,
    FragmentHeader,
    HandshakeReassembler,
    decode_header,
    encode_header,
    fragment_message,
    split_record,
    to_tls_form,
)
from records.content_types import ContentType
from records.dtls_header import PlaintextRecord, parse_datagram
from tests.shared_data import SHARED

DECODE_ERROR = 50
ILLEGAL_PARAMETER = 47
UNEXPECTED_MESSAGE = 10

CAPTURE = SHARED / "captures" / "wolfssl-client-nss-server-hrr-mlkem.json"


def message(msg_type: int, size: int, seed: int = 0) -> bytes:
    return to_tls_form(msg_type, random.Random(seed).randbytes(size))


def drain(r: HandshakeReassembler) -> list[tuple[int, bytes]]:
    out = []
    while (item := r.next_message()) is not None:
        out.append(item)
    return out


# -- header codec and fragmentation ---------------------------------------------------------


def test_header_wire_layout() -> None:
    # msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3), RFC 9147 §5.2
    raw = encode_header(1, 0x0005F2, 0x0102, 0x00055F, 0x000093)
    assert raw == bytes.fromhex("01 0005f2 0102 00055f 000093")
    assert len(raw) == HEADER_LENGTH == 12
    assert decode_header(raw) == FragmentHeader(1, 0x5F2, 0x102, 0x55F, 0x93)


@given(
    st.integers(0, 255),
    st.integers(0, 2**24 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**24 - 1),
    st.integers(0, 2**24 - 1),
)
def test_header_round_trip(t: int, length: int, seq: int, off: int, flen: int) -> None:
    raw = encode_header(t, length, seq, off, flen)
    assert decode_header(b"xx" + raw, 2) == (t, length, seq, off, flen)


def test_header_errors() -> None:
    with pytest.raises(ValueError):
        encode_header(256, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        encode_header(1, 0, 2**16, 0, 0)
    with pytest.raises(FragmentError) as info:
        decode_header(b"\x01" * 11)
    assert info.value.alert == DECODE_ERROR


def test_to_tls_form() -> None:
    assert to_tls_form(20, b"abc") == b"\x14\x00\x00\x03abc"
    assert to_tls_form(5, b"") == b"\x05\x00\x00\x00"
    with pytest.raises(ValueError):
        to_tls_form(300, b"")


@given(st.binary(max_size=3000), st.integers(13, 1500), st.integers(0, 2**16 - 1))
def test_fragment_message_shape(body: bytes, max_fragment: int, seq: int) -> None:
    msg = to_tls_form(11, body)
    pieces = fragment_message(msg, seq, max_fragment)
    assert all(len(p) <= max_fragment for p in pieces)
    expected_off = 0
    for piece in pieces:
        h = decode_header(piece)
        assert (h.msg_type, h.length, h.message_seq) == (11, len(body), seq)
        assert h.fragment_offset == expected_off  # contiguous, never overlapping (§5.5)
        assert h.fragment_length == len(piece) - HEADER_LENGTH
        expected_off += h.fragment_length
    assert expected_off == len(body)
    assert b"".join(p[HEADER_LENGTH:] for p in pieces) == body


def test_empty_body_is_one_fragment() -> None:
    pieces = fragment_message(to_tls_form(5, b""), 7, 13)
    assert pieces == [encode_header(5, 0, 7, 0, 0)]
    r = HandshakeReassembler(7)
    assert r.add_record(pieces[0]).new_messages == 1
    assert r.next_message() == (7, b"\x05\x00\x00\x00")


def test_fragment_message_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fragment_message(message(1, 10), 0, 12)
    with pytest.raises(ValueError):
        fragment_message(b"\x01\x00\x00\x05abc", 0, 100)  # length field lies
    with pytest.raises(ValueError):
        fragment_message(message(1, 10), 65536, 100)


def test_split_record() -> None:
    a = fragment_message(message(2, 40), 0, 30)
    parts = split_record(b"".join(a))
    assert [h.fragment_offset for h, _ in parts] == [0, 18, 36]
    assert b"".join(body for _, body in parts) == message(2, 40)[4:]


# -- reassembly ------------------------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(min_size=0, max_size=4000),
    sizes=st.lists(st.integers(13, 700), min_size=1, max_size=3),
    dup=st.floats(0, 1),
    pack=st.integers(1, 4),
    rnd=st.randoms(use_true_random=False),
)
def test_round_trip_permuted_overlapping(
    body: bytes, sizes: list[int], dup: float, pack: int, rnd: random.Random
) -> None:
    """The same message cut at several sizes, interleaved, duplicated and shuffled, with
    several fragments per record: exactly one message, byte-identical (§5.5)."""
    msg = to_tls_form(11, body)
    frags = [f for size in sizes for f in fragment_message(msg, 4, size)]
    frags += [f for f in frags if rnd.random() < dup]
    rnd.shuffle(frags)
    r = HandshakeReassembler(4)
    total = 0
    for i in range(0, len(frags), pack):
        result = r.add_record(b"".join(frags[i : i + pack]))
        assert result.discarded == 0 and not result.retransmission_seen
        total += result.new_messages
    assert total == 1
    assert drain(r) == [(4, msg)]
    assert r.pending_bytes == 0 and r.next_seq == 5
    # Now everything of message 4 is a retransmission of a processed message (§5.8.1).
    again = r.add_record(frags[0])
    assert again.retransmission_seen and again.new_messages == 0


@settings(max_examples=100)
@given(
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=MAX_FUTURE_MESSAGES + 1),
    max_fragment=st.integers(13, 400),
    rnd=st.randoms(use_true_random=False),
)
def test_flight_out_of_order(sizes: list[int], max_fragment: int, rnd: random.Random) -> None:
    """A whole flight shuffled across messages: delivered strictly in message_seq order."""
    msgs = [message(t % 250 + 1, size, t) for t, size in enumerate(sizes)]
    frags = [f for seq, m in enumerate(msgs) for f in fragment_message(m, seq, max_fragment)]
    rnd.shuffle(frags)
    r = HandshakeReassembler()
    got: list[tuple[int, bytes]] = []
    for frag in frags:
        result = r.add_record(frag)
        assert result.acknowledgeable
        new = drain(r)
        assert len(new) == result.new_messages
        got += new
    assert got == list(enumerate(msgs))
    assert r.pending_bytes == 0


def test_later_message_first() -> None:
    one, two = message(8, 50, 1), message(11, 50, 2)
    r = HandshakeReassembler(1)
    res = r.add_record(fragment_message(two, 2, 200)[0])
    assert res.new_messages == 0 and res.out_of_order  # §7.1: not the next expected message
    assert r.next_message() is None
    res = r.add_record(fragment_message(one, 1, 200)[0])
    assert res.new_messages == 2 and not res.out_of_order
    assert drain(r) == [(1, one), (2, two)]


def test_gap_in_current_message_is_out_of_order() -> None:
    frags = fragment_message(message(11, 100), 0, 42)  # bodies of 30 bytes
    r = HandshakeReassembler()
    assert not r.add_record(frags[0]).out_of_order
    assert r.add_record(frags[2]).out_of_order  # skips frags[1]
    assert not r.add_record(frags[1]).out_of_order
    assert r.add_record(frags[3]).new_messages == 1


def test_several_messages_in_one_record() -> None:
    a, b = message(2, 10, 1), message(8, 20, 2)
    record = b"".join(fragment_message(a, 0, 100) + fragment_message(b, 1, 100))
    r = HandshakeReassembler()
    res = r.add_record(record)
    assert (res.new_messages, res.fragments, res.out_of_order) == (2, 2, False)
    assert drain(r) == [(0, a), (1, b)]


def test_old_messages_flag_retransmission() -> None:
    ch = message(1, 300)
    r = HandshakeReassembler()
    r.add_record(fragment_message(ch, 0, 400)[0])
    assert drain(r) == [(0, ch)]
    res = r.add_record(fragment_message(ch, 0, 100)[1])  # a re-fragmented copy counts too
    assert res.retransmission_seen and res.new_messages == 0 and res.acknowledgeable
    # A record holding an old message and new data is not "only a retransmission".
    nxt = fragment_message(message(1, 40), 1, 100)[0]
    mixed = r.add_record(fragment_message(ch, 0, 400)[0] + nxt)
    assert not mixed.retransmission_seen and mixed.new_messages == 1


def test_stateless_server_starts_at_one() -> None:
    ch1, ch2 = message(1, 80, 1), message(1, 90, 2)
    r = HandshakeReassembler(next_seq=1)
    assert r.add_record(fragment_message(ch1, 0, 200)[0]).retransmission_seen
    assert r.add_record(fragment_message(ch2, 1, 200)[0]).new_messages == 1
    assert r.next_message() == (1, ch2)


def test_reset_to_drops_buffered_state() -> None:
    r = HandshakeReassembler()
    r.add_record(fragment_message(message(11, 100), 3, 50)[0])
    assert r.pending_bytes == 104 and r.buffered_messages == 1
    r.reset_to(2)
    assert (r.pending_bytes, r.buffered_messages, r.next_seq) == (0, 0, 2)
    r.next_seq = 5
    assert r.next_seq == 5
    assert r.add_record(fragment_message(message(11, 10), 4, 50)[0]).retransmission_seen
    with pytest.raises(ValueError):
        r.reset_to(-1)
    with pytest.raises(ValueError):
        r.reset_to(65537)


def test_zero_length_fragment_of_nonempty_message_ignored() -> None:
    r = HandshakeReassembler()
    res = r.add_record(encode_header(11, 100, 0, 50, 0))
    assert res.new_messages == 0 and not res.retransmission_seen and res.acknowledgeable
    assert r.pending_bytes == 0 and r.buffered_messages == 0


def test_empty_message_in_the_middle() -> None:
    r = HandshakeReassembler()
    empty = to_tls_form(5, b"")
    res = r.add_record(fragment_message(empty, 1, 50)[0])
    assert res.new_messages == 0 and r.pending_bytes == 4
    res = r.add_record(fragment_message(message(8, 3), 0, 50)[0])
    assert res.new_messages == 2
    assert [m for _, m in drain(r)] == [message(8, 3), empty]


# -- bounds ----------------------------------------------------------------------------------


def test_future_window() -> None:
    r = HandshakeReassembler(10)
    inside = fragment_message(message(11, 10), 10 + MAX_FUTURE_MESSAGES, 100)[0]
    outside = fragment_message(message(11, 10), 11 + MAX_FUTURE_MESSAGES, 100)[0]
    res = r.add_record(inside)
    assert res.discarded == 0 and r.buffered_messages == 1
    res = r.add_record(outside)
    assert res.discarded == 1 and not res.acknowledgeable and res.out_of_order
    assert r.buffered_messages == 1  # §5.2 MAY discard; nothing kept


def test_message_size_cap() -> None:
    r = HandshakeReassembler()
    too_big = encode_header(11, MAX_MESSAGE_SIZE + 1, 0, 0, 1) + b"x"
    with pytest.raises(FragmentError) as info:
        r.add_record(too_big)
    assert info.value.alert == ILLEGAL_PARAMETER
    assert r.pending_bytes == 0
    # Exactly the cap is fine, and memory is the preallocated message (TLS form).
    r.add_record(encode_header(11, MAX_MESSAGE_SIZE, 0, 0, 1) + b"x")
    assert r.pending_bytes == MAX_MESSAGE_SIZE + 4
    # An oversized *old* message is just a retransmission: nothing is allocated for it.
    r2 = HandshakeReassembler(3)
    assert r2.add_record(too_big).retransmission_seen


def test_buffer_budget_reserves_room_for_next_message() -> None:
    r = HandshakeReassembler(max_message_size=1000, max_buffered_bytes=2 * 1004)
    # Future messages share max_buffered - (max_message_size + 4) = 1004 bytes.
    assert r.add_record(encode_header(11, 600, 1, 0, 1) + b"a").discarded == 0
    assert r.add_record(encode_header(11, 397, 2, 0, 1) + b"b").discarded == 1
    assert r.add_record(encode_header(11, 396, 2, 0, 1) + b"b").discarded == 0
    assert r.pending_bytes == 1004
    # The next expected message is always admitted, up to max_message_size.
    assert r.add_record(encode_header(11, 1000, 0, 0, 1) + b"c").discarded == 0
    assert r.pending_bytes == 2008
    # A default reassembler can hold a full-size next message and a full-size future one.
    assert MAX_BUFFERED_BYTES >= 2 * (MAX_MESSAGE_SIZE + 4) - 8


def test_range_cap_discards_new_gaps_only() -> None:
    r = HandshakeReassembler(max_ranges=4)
    for off in (0, 10, 20, 30):
        assert r.add_record(encode_header(11, 100, 0, off, 1) + b"z").discarded == 0
    assert r.add_record(encode_header(11, 100, 0, 40, 1) + b"z").discarded == 1
    # Extending or bridging existing ranges is still accepted.
    assert r.add_record(encode_header(11, 100, 0, 1, 9) + b"z" * 9).discarded == 0
    assert r.add_record(encode_header(11, 100, 0, 40, 1) + b"z").discarded == 0


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(1, 3000)), max_size=40))
def test_memory_never_exceeds_budget(messages: list[tuple[int, int]]) -> None:
    limit, cap = 2000, 5000
    r = HandshakeReassembler(max_message_size=limit, max_buffered_bytes=cap)
    lengths: dict[int, int] = {}
    for seq, length in messages:
        try:
            result = r.add_record(encode_header(11, length, seq, 0, 1) + b"q")
        except FragmentError as exc:
            # Too large, or a different length for a message_seq already buffered.
            assert exc.alert == ILLEGAL_PARAMETER
            assert length > limit or lengths.get(seq, length) != length
        else:
            if not result.discarded:
                lengths.setdefault(seq, length)
        assert r.pending_bytes <= cap


# -- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "alert"),
    [
        (b"", UNEXPECTED_MESSAGE),  # RFC 8446 §5.1: no zero-length handshake fragments
        (b"\x01\x00\x00", DECODE_ERROR),  # truncated header
        (encode_header(1, 10, 0, 0, 5) + b"abc", DECODE_ERROR),  # body shorter than said
        (encode_header(1, 10, 0, 6, 5) + b"abcde", DECODE_ERROR),  # past the message end
        (encode_header(1, 10, 0, 0, 10) + b"0123456789" + b"\x01", DECODE_ERROR),  # trailer
        (encode_header(1, 10, 5, 8, 5) + b"abcde", DECODE_ERROR),  # old seq: still checked
    ],
)
def test_decode_errors(record: bytes, alert: int) -> None:
    with pytest.raises(FragmentError) as info:
        HandshakeReassembler().add_record(record)
    assert info.value.alert == alert
    assert info.value.reason


@pytest.mark.parametrize(
    "conflict",
    [
        encode_header(2, 10, 0, 5, 5) + b"fghij",  # msg_type changed
        encode_header(1, 11, 0, 5, 5) + b"fghij",  # length changed
        encode_header(1, 10, 0, 3, 5) + b"dXfgh",  # overlapping byte changed (§5.5)
    ],
)
def test_inconsistent_fragments_are_illegal_parameter(conflict: bytes) -> None:
    r = HandshakeReassembler()
    r.add_record(encode_header(1, 10, 0, 0, 5) + b"abcde")
    with pytest.raises(FragmentError) as info:
        r.add_record(conflict)
    assert info.value.alert == ILLEGAL_PARAMETER


def test_changed_bytes_of_complete_buffered_message() -> None:
    r = HandshakeReassembler()
    r.add_record(encode_header(1, 4, 1, 0, 4) + b"abcd")  # complete, waiting for seq 0
    r.add_record(encode_header(1, 4, 1, 1, 2) + b"bc")  # identical overlap is fine
    with pytest.raises(FragmentError) as info:
        r.add_record(encode_header(1, 4, 1, 1, 2) + b"bX")
    assert info.value.alert == ILLEGAL_PARAMETER


def test_failed_record_leaves_state_unchanged() -> None:
    r = HandshakeReassembler()
    r.add_record(encode_header(1, 10, 0, 0, 3) + b"abc")
    before = r.pending_bytes
    bad = (
        encode_header(1, 10, 0, 3, 3)  # extends message 0 ...
        + b"def"
        + encode_header(8, 4, 1, 0, 4)  # ... creates message 1 ...
        + b"wxyz"
        + encode_header(1, 10, 0, 0, 2)  # ... then contradicts message 0
        + b"aX"
    )
    with pytest.raises(FragmentError):
        r.add_record(bad)
    assert r.pending_bytes == before and r.buffered_messages == 1
    # Bytes 3..5 of message 0 are not considered received: 6..9 alone do not complete it.
    assert r.add_record(encode_header(1, 10, 0, 6, 4) + b"ghij").new_messages == 0
    assert r.add_record(encode_header(1, 10, 0, 3, 3) + b"def").new_messages == 1
    assert r.next_message() == (0, b"\x01\x00\x00\x0aabcdefghij")


@settings(max_examples=500)
@given(st.binary(max_size=200), st.integers(0, 3))
def test_garbage_only_raises_fragment_error(data: bytes, next_seq: int) -> None:
    r = HandshakeReassembler(next_seq)
    try:
        r.add_record(data)
    except FragmentError as exc:
        assert exc.alert in (DECODE_ERROR, ILLEGAL_PARAMETER, UNEXPECTED_MESSAGE)
    drain(r)


_fragment = st.builds(
    lambda t, length, seq, off, flen, body: encode_header(t, length, seq, off, flen) + body,
    st.sampled_from([1, 2, 11]),
    st.integers(0, 40) | st.integers(0, 2**24 - 1),
    st.integers(0, 10),
    st.integers(0, 40),
    st.integers(0, 40),
    st.binary(max_size=40) | st.just(b"\x00" * 40),
)


@settings(max_examples=300)
@given(st.lists(st.lists(_fragment, min_size=1, max_size=4).map(b"".join), max_size=20))
def test_structured_garbage_keeps_invariants(records: list[bytes]) -> None:
    """Plausible headers with random fields, fed in sequence: only FragmentError, memory
    within budget, and every delivered message's length field matches its body."""
    r = HandshakeReassembler(max_message_size=1000, max_buffered_bytes=3000)
    for record in records:
        try:
            r.add_record(record)
        except FragmentError as exc:
            assert exc.alert in (DECODE_ERROR, ILLEGAL_PARAMETER)
        assert r.pending_bytes <= 3000
        for _, msg in drain(r):
            assert int.from_bytes(msg[1:4], "big") == len(msg) - 4


# -- real data -------------------------------------------------------------------------------


def _epoch0_handshake(sender: str) -> list[PlaintextRecord]:
    capture = json.loads(CAPTURE.read_text())
    out = []
    for datagram in capture["datagrams"]:
        if datagram["from"] != sender:
            continue
        for rec in parse_datagram(bytes.fromhex(datagram["hex"])).records:
            if isinstance(rec, PlaintextRecord) and rec.content_type == ContentType.handshake:
                out.append(rec)
    return out


def test_wolfssl_second_client_hello_spans_two_records() -> None:
    records = _epoch0_handshake("client")
    r = HandshakeReassembler()
    first = r.add_record(records[0].fragment)
    assert first.new_messages == 1
    seq0, ch1 = drain(r)[0]
    assert seq0 == 0 and ch1[0] == 1
    # The second ClientHello (after the HelloRetryRequest) is message_seq 1 in two records.
    parts = [split_record(rec.fragment) for rec in records[1:3]]
    assert [h.message_seq for part in parts for h, _ in part] == [1, 1]
    assert r.add_record(records[1].fragment).new_messages == 0
    assert r.add_record(records[2].fragment).new_messages == 1
    seq1, ch2 = drain(r)[0]
    assert seq1 == 1
    assert ch2[0] == 1 and ch2[4:6] == b"\xfe\xfd"  # ClientHello, legacy_version DTLS 1.2
    assert int.from_bytes(ch2[1:4], "big") == len(ch2) - 4 == 1522
    # In reverse order it reassembles identically, and the first record is then a gap.
    r2 = HandshakeReassembler(next_seq=1)
    assert r2.add_record(records[2].fragment).out_of_order
    assert r2.add_record(records[1].fragment).new_messages == 1
    assert r2.next_message() == (1, ch2)
    # Re-fragmenting our own way yields the same wire message back.
    r3 = HandshakeReassembler(next_seq=1)
    for piece in fragment_message(ch2, 1, 200):
        r3.add_record(piece)
    assert r3.next_message() == (1, ch2)


def test_nss_server_hello_retry_request() -> None:
    records = _epoch0_handshake("server")
    r = HandshakeReassembler()
    r.add_record(records[0].fragment)
    seq, hrr = drain(r)[0]
    assert seq == 0 and hrr[0] == 2 and hrr[4:6] == b"\xfe\xfd"
    assert r.add_record(records[1].fragment).new_messages == 1  # ServerHello, seq 1
    assert r.next_message() is not None


def test_split_fragment_covers_the_same_bytes() -> None:
    from protocol.dtls.flight import Flight, Fragment
    from protocol.dtls.fragments import split_fragment
    from records.record_numbers import RecordNumber

    message = bytes((11,)) + (3000).to_bytes(3, "big") + bytes(range(256)) * 11 + bytes(184)
    (whole,) = fragment_message(message, 7, 4000)
    pieces = split_fragment(whole, 500)
    assert len(pieces) == 7 and all(len(p) <= 500 for p in pieces)
    reassembler = HandshakeReassembler()
    reassembler.reset_to(7)
    for piece in reversed(pieces):
        reassembler.add_record(piece)
    assert reassembler.next_message() == (7, message)
    assert split_fragment(pieces[0], 500) == [pieces[0]]  # small enough already
    # A flight re-cut after a transmission: an ACK of the old record covers every piece.
    flight = Flight("certificate", needs_ack=True, fragments=[Fragment(2, whole)])
    flight.carried(RecordNumber(2, 0), [0])
    flight.shrink(lambda data: split_fragment(data, 500))
    assert len(flight.pending()) == 7
    flight.acknowledge([RecordNumber(2, 0)])
    assert flight.complete
