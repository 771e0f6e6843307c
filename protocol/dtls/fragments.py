"""DTLS 1.3 handshake message fragmentation and reassembly (RFC 9147 §5.2, §5.5).

On the wire every handshake message carries a 12-byte header: msg_type(1) length(3)
message_seq(2) fragment_offset(3) fragment_length(3). The transcript and the handshake state
machines use the TLS form (msg_type, uint24 length, body) with the three DTLS fields removed
(§5.2, §5.5), so this module converts between the two.

The receive side is a bounded, hostile-input-safe reassembler:

* messages are handed out strictly in ``message_seq`` order from ``next_seq`` (§5.2
  next_receive_seq); fragments of earlier messages are discarded ("MUST be discarded", §5.2)
  and reported, because a peer resending them lost our answer (§5.8.1 exit 3 of WAITING);
* fragments of later messages are queued ("SHOULD queue ... MAY discard", §5.2), but only
  within a window of message numbers and a byte budget, and fragments that do not fit are
  reported as discarded so the connection does not ACK their records (§7: "MUST NOT
  acknowledge records containing handshake messages or fragments which have not been
  processed or buffered");
* overlapping and duplicate fragments are accepted ("MUST be able to handle overlapping
  fragment ranges", §5.5) and the overlap is compared: a changed byte, including a changed
  msg_type or length, aborts with illegal_parameter (§5.5 "SHOULD abort the handshake with an
  illegal_parameter alert if the value of a byte changes").

Every problem with the peer's bytes raises :class:`FragmentError`; a record that raises leaves
the reassembler exactly as it was before the record.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from handshake.alerts import AlertDescription

__all__ = [
    "HEADER",
    "HEADER_LENGTH",
    "MAX_BUFFERED_BYTES",
    "MAX_FUTURE_MESSAGES",
    "MAX_MESSAGE_SEQ",
    "MAX_MESSAGE_SIZE",
    "MAX_RANGES_PER_MESSAGE",
    "FragmentError",
    "FragmentHeader",
    "HandshakeReassembler",
    "ReassemblyResult",
    "decode_header",
    "encode_header",
    "fragment_message",
    "split_record",
    "to_tls_form",
]

# msg_type(1) length(3) | message_seq(2) | fragment_offset(3) fragment_length(3), read as
# uint32 | uint16 | uint16 | uint32 so no 3-byte field needs int.from_bytes: msg_type and
# length share the first word; the offset's top 16 bits are the uint16 and its low byte
# heads the last word, whose low 24 bits are fragment_length (RFC 9147 §5.2).
HEADER = struct.Struct("!IHHI")
HEADER_LENGTH = HEADER.size  # 12
_TLS_HEADER = struct.Struct("!I")  # msg_type(1) length(3) (RFC 8446 §4)
_U24 = 0xFFFFFF

MAX_MESSAGE_SEQ = 0xFFFF  # uint16; bis §5.2: message_seq MUST NOT wrap
# A handshake message longer than this is refused (RFC 8446 has no limit short of 2^24; a
# certificate chain fits many times over). Same bound as the TLS reassembler.
MAX_MESSAGE_SIZE = 256 * 1024
# How far past the next expected message_seq fragments are queued (§5.2 SHOULD queue): seqs
# next_seq .. next_seq + MAX_FUTURE_MESSAGES. The largest flight (ServerHello .. Finished,
# §5.7) is six messages.
MAX_FUTURE_MESSAGES = 8
# Total bytes held in message buffers (TLS form, header included). One MAX_MESSAGE_SIZE
# share is reserved for the next expected message so queued future messages can never
# starve it.
MAX_BUFFERED_BYTES = 2 * MAX_MESSAGE_SIZE
# Disjoint byte ranges kept per message: bounds the cost of a peer sending many tiny
# non-adjacent fragments. A fragment that would open one more gap is discarded (not ACKed,
# so the peer resends it). Real loss patterns stay far below this.
MAX_RANGES_PER_MESSAGE = 512


class FragmentError(Exception):
    """The peer's handshake fragments are malformed; ``alert`` is the RFC 8446 §6 code."""

    def __init__(self, alert: int, reason: str) -> None:
        super().__init__(f"{alert}: {reason}")
        self.alert = alert
        self.reason = reason


def _decode_error(reason: str) -> FragmentError:
    return FragmentError(AlertDescription.decode_error, reason)


def _illegal_parameter(reason: str) -> FragmentError:
    return FragmentError(AlertDescription.illegal_parameter, reason)


class FragmentHeader(NamedTuple):
    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment_length: int


def encode_header(
    msg_type: int, length: int, message_seq: int, fragment_offset: int, fragment_length: int
) -> bytes:
    """The 12-byte DTLSHandshake header (RFC 9147 §5.2)."""
    if not (
        0 <= msg_type <= 0xFF
        and 0 <= length <= _U24
        and 0 <= message_seq <= MAX_MESSAGE_SEQ
        and 0 <= fragment_offset <= _U24
        and 0 <= fragment_length <= _U24
    ):
        raise ValueError("DTLS handshake header field out of range")
    return HEADER.pack(
        (msg_type << 24) | length,
        message_seq,
        fragment_offset >> 8,
        ((fragment_offset & 0xFF) << 24) | fragment_length,
    )


def _unpack(data: bytes | memoryview, offset: int) -> FragmentHeader:
    word, seq, off_hi, word2 = HEADER.unpack_from(data, offset)
    return FragmentHeader(word >> 24, word & _U24, seq, (off_hi << 8) | (word2 >> 24), word2 & _U24)


def decode_header(data: bytes | memoryview, offset: int = 0) -> FragmentHeader:
    """Parse one 12-byte header at ``offset``; fewer than 12 bytes -> decode_error."""
    if len(data) - offset < HEADER_LENGTH or offset < 0:
        raise _decode_error("truncated DTLS handshake header")
    return _unpack(data, offset)


def split_record(payload: bytes | memoryview) -> list[tuple[FragmentHeader, bytes]]:
    """The fragments in one handshake record's payload, checked for framing only.

    A fragment never spans records (§5.5: each fragment is delivered in a single datagram,
    and in a single record), so any leftover byte is a decode_error.
    """
    view = memoryview(payload)
    out: list[tuple[FragmentHeader, bytes]] = []
    pos = 0
    end = len(view)
    while pos < end:
        header = decode_header(view, pos)
        body_start = pos + HEADER_LENGTH
        pos = body_start + header.fragment_length
        if pos > end:
            raise _decode_error("DTLS handshake fragment longer than its record")
        if header.fragment_offset + header.fragment_length > header.length:
            raise _decode_error("DTLS handshake fragment extends past the message length")
        out.append((header, bytes(view[body_start:pos])))
    return out


def to_tls_form(msg_type: int, body: bytes | memoryview) -> bytes:
    """msg_type(1) || uint24 length || body: the form hashed into the transcript (§5.2)."""
    if not 0 <= msg_type <= 0xFF or len(body) > _U24:
        raise ValueError("handshake message type or length out of range")
    return _TLS_HEADER.pack((msg_type << 24) | len(body)) + body


def fragment_message(message: bytes, message_seq: int, max_fragment: int) -> list[bytes]:
    """Cut a TLS-form handshake message into DTLS handshake fragments (RFC 9147 §5.5).

    Each fragment (12-byte header + body slice) is at most ``max_fragment`` bytes; the
    ranges are contiguous and do not overlap ("MUST NOT overlap", §5.5). An empty body yields
    one fragment with fragment_length 0.
    """
    if max_fragment < HEADER_LENGTH + 1:
        raise ValueError("max_fragment must leave room for at least one body byte")
    if not 0 <= message_seq <= MAX_MESSAGE_SEQ:
        raise ValueError("message_seq out of range (uint16, never wraps: RFC 9147 §5.2)")
    if len(message) < 4:
        raise ValueError("not a TLS-form handshake message")
    (word,) = _TLS_HEADER.unpack_from(message)
    length = word & _U24
    if length != len(message) - 4:
        raise ValueError("handshake message length field does not match its body")
    body = memoryview(message)[4:]
    step = max_fragment - HEADER_LENGTH
    pack = HEADER.pack
    return [
        pack(word, message_seq, off >> 8, ((off & 0xFF) << 24) | min(step, length - off))
        + body[off : off + step]
        for off in range(0, max(length, 1), step)
    ]


def split_fragment(fragment: bytes, max_fragment: int) -> list[bytes]:
    """Cut one DTLS handshake fragment (12-byte header and body) into fragments of at most
    ``max_fragment`` bytes covering the same bytes of the same message (RFC 9147 §5.5: a
    retransmission may fragment differently, the message bytes never change, §4.4)."""
    if len(fragment) <= max_fragment:
        return [fragment]
    if max_fragment < HEADER_LENGTH + 1:
        raise ValueError("max_fragment must leave room for at least one body byte")
    word, message_seq, off_high, last = HEADER.unpack_from(fragment)
    start = (off_high << 8) | (last >> 24)
    body = memoryview(fragment)[HEADER_LENGTH:]
    step = max_fragment - HEADER_LENGTH
    pack = HEADER.pack
    pieces = []
    for rel in range(0, len(body), step):
        off = start + rel
        chunk = body[rel : rel + step]
        pieces.append(pack(word, message_seq, off >> 8, ((off & 0xFF) << 24) | len(chunk)) + chunk)
    return pieces


class ReassemblyResult(NamedTuple):
    """What one handshake record did to the reassembler (a NamedTuple: built per record)."""

    # Messages next_message() now returns that it would not have returned before.
    new_messages: int = 0
    # The record held fragments, all of messages already handed out: the peer resent
    # something we processed, so it probably lost our reply (RFC 9147 §5.8.1).
    retransmission_seen: bool = False
    # A fragment was not the next expected piece (a later message, or a gap in the current
    # one): a sign of disruption that RFC 9147 §7.1 says should trigger an ACK.
    out_of_order: bool = False
    # Fragments neither processed nor buffered (outside the window or the memory budget).
    # RFC 9147 §7: a record with such a fragment MUST NOT be acknowledged.
    discarded: int = 0
    # Fragments in the record.
    fragments: int = 0

    @property
    def acknowledgeable(self) -> bool:
        """Every fragment was processed or buffered, so the record may be ACKed (§7)."""
        return self.discarded == 0


class _Message:
    """One message being reassembled: a preallocated TLS-form buffer and covered ranges."""

    __slots__ = ("buf", "ends", "length", "msg_type", "starts", "whole")

    def __init__(self, msg_type: int, length: int, whole: bytes | None = None) -> None:
        self.msg_type = msg_type
        self.length = length
        self.whole = whole  # set when the message arrived in one piece: no copy needed
        if whole is None:
            self.buf = bytearray(4 + length)
            _TLS_HEADER.pack_into(self.buf, 0, (msg_type << 24) | length)
            self.starts: list[int] = []
            self.ends: list[int] = []
        else:
            self.buf = bytearray()
            self.starts = [0]
            self.ends = [length]

    @property
    def allocation(self) -> int:
        return 4 + self.length

    @property
    def complete(self) -> bool:
        return len(self.starts) == 1 and self.starts[0] == 0 and self.ends[0] == self.length

    def view(self) -> memoryview:
        return memoryview(self.whole if self.whole is not None else self.buf)

    def prefix_end(self) -> int:
        """End of the range received contiguously from offset 0."""
        return self.ends[0] if self.starts and self.starts[0] == 0 else 0

    def message(self) -> bytes:
        return self.whole if self.whole is not None else bytes(self.buf)


# (message, index, ranges replaced there): one merge of _insert, reverted on error.
_RangeEdit = tuple[_Message, int, list[int], list[int]]


class HandshakeReassembler:
    """Reassembles DTLS handshake fragments into TLS-form messages, in message_seq order.

    ``add_record`` takes the payload of one handshake record; ``next_message`` then yields
    ``(message_seq, message)`` for each complete message in order. Limits are per instance so
    tests (and constrained deployments) can tighten them.
    """

    def __init__(
        self,
        next_seq: int = 0,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_future_messages: int = MAX_FUTURE_MESSAGES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_ranges: int = MAX_RANGES_PER_MESSAGE,
    ) -> None:
        if not 0 <= max_message_size <= _U24:
            raise ValueError("max_message_size must fit a uint24")
        if max_future_messages < 0 or max_ranges < 1:
            raise ValueError("negative window or fewer than one range per message")
        if max_buffered_bytes < 4 + max_message_size:
            raise ValueError("max_buffered_bytes must hold one message of max_message_size")
        self._max_message_size = max_message_size
        self._window = max_future_messages
        self._max_ranges = max_ranges
        # Budget for messages other than the next expected one (see MAX_BUFFERED_BYTES).
        self._future_budget = max_buffered_bytes - (4 + max_message_size)
        self._messages: dict[int, _Message] = {}
        self._pending = 0
        self._next_seq = 0
        self.reset_to(next_seq)

    # -- state ---------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """message_seq of the next message ``next_message`` returns (§5.2 next_receive_seq)."""
        return self._next_seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self.reset_to(value)

    @property
    def pending_bytes(self) -> int:
        """Bytes held in message buffers (TLS form, 4-byte header included)."""
        return self._pending

    @property
    def buffered_messages(self) -> int:
        """Messages held, complete or not, not yet returned by ``next_message``."""
        return len(self._messages)

    def reset_to(self, next_seq: int) -> None:
        """Drop everything buffered and expect ``next_seq`` next (e.g. 1 after a stateless
        HelloRetryRequest answered ClientHello 0, RFC 9147 §5.1)."""
        if not 0 <= next_seq <= MAX_MESSAGE_SEQ + 1:
            raise ValueError("next_seq out of range")
        self._messages.clear()
        self._pending = 0
        self._next_seq = next_seq

    def next_message(self) -> tuple[int, bytes] | None:
        """The next complete message as (message_seq, TLS-form bytes), or None."""
        seq = self._next_seq
        msg = self._messages.get(seq)
        if msg is None or not msg.complete:
            return None
        del self._messages[seq]
        self._pending -= msg.allocation
        self._next_seq = seq + 1
        return seq, msg.message()

    # -- input ---------------------------------------------------------------------------

    def add_record(self, payload: bytes | memoryview) -> ReassemblyResult:
        """Take the fragments of one handshake record (RFC 9147 §5.5)."""
        view = memoryview(payload)
        end = len(view)
        if end == 0:
            # RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
            raise FragmentError(AlertDescription.unexpected_message, "empty handshake record")
        messages = self._messages
        next_seq = self._next_seq
        current = self._first_incomplete()
        ready_before = current - next_seq
        # Undo log so a FragmentError leaves the state untouched: range edits to messages that
        # existed before this record, and the messages it created. Bytes written into
        # uncovered space need no undo; bytes written over covered space are identical.
        undo: list[_RangeEdit] = []
        created: list[int] = []
        pending_before = self._pending
        old = discarded = count = 0
        out_of_order = False
        pos = 0
        try:
            while pos < end:
                if end - pos < HEADER_LENGTH:
                    raise _decode_error("truncated DTLS handshake header")
                word, seq, off_hi, word2 = HEADER.unpack_from(view, pos)
                msg_type, length = word >> 24, word & _U24
                off, flen = (off_hi << 8) | (word2 >> 24), word2 & _U24
                start = pos + HEADER_LENGTH
                pos = start + flen
                count += 1
                if pos > end:
                    raise _decode_error("DTLS handshake fragment longer than its record")
                if off + flen > length:
                    # §5.5: fragment_offset + fragment_length covers part of length bytes.
                    raise _decode_error("DTLS handshake fragment extends past the message")
                if seq < next_seq:
                    old += 1  # §5.2: already processed, MUST be discarded
                    continue
                if seq - next_seq > self._window:
                    discarded += 1  # §5.2: MAY discard; not buffered, so never ACKed
                    out_of_order = True
                    continue
                msg = messages.get(seq)
                if msg is not None and (msg.msg_type != msg_type or msg.length != length):
                    # §5.5: every fragment carries the original length; a changed header
                    # byte is a changed message byte -> illegal_parameter.
                    raise _illegal_parameter(
                        f"fragment of message {seq} disagrees with earlier fragments "
                        "on msg_type or length"
                    )
                if flen == 0 and length > 0:
                    continue  # carries nothing
                if seq > current or (
                    seq == current and off > (msg.prefix_end() if msg is not None else 0)
                ):
                    out_of_order = True
                body = view[start:pos]
                if msg is None:
                    if length > self._max_message_size:
                        # RFC 8446 §6.2: well-formed but unacceptable -> illegal_parameter.
                        raise _illegal_parameter(
                            f"handshake message of {length} bytes exceeds the "
                            f"{self._max_message_size}-byte limit"
                        )
                    if seq != next_seq and self._future_bytes() + 4 + length > self._future_budget:
                        discarded += 1
                        continue
                    if flen == length:
                        msg = _Message(msg_type, length, _TLS_HEADER.pack(word) + body)
                    else:
                        msg = _Message(msg_type, length)
                        self._insert(msg, off, body, None)
                    messages[seq] = msg
                    created.append(seq)
                    self._pending += msg.allocation
                elif not self._insert(msg, off, body, None if seq in created else undo):
                    discarded += 1
                    continue
                if seq == current:
                    current = self._first_incomplete(current)
        except FragmentError:
            for seq in created:
                del messages[seq]
            for edit_msg, i, starts, ends in reversed(undo):
                edit_msg.starts[i : i + 1] = starts
                edit_msg.ends[i : i + 1] = ends
            self._pending = pending_before
            raise
        return ReassemblyResult(
            current - next_seq - ready_before,  # new_messages
            old == count,  # retransmission_seen
            out_of_order,
            discarded,
            count,  # fragments
        )

    # -- helpers -------------------------------------------------------------------------

    def _first_incomplete(self, seq: int | None = None) -> int:
        """The lowest message_seq >= ``seq`` (default next_seq) not yet complete."""
        if seq is None:
            seq = self._next_seq
        messages = self._messages
        while (msg := messages.get(seq)) is not None and msg.complete:
            seq += 1
        return seq

    def _future_bytes(self) -> int:
        msg = self._messages.get(self._next_seq)
        return self._pending - (msg.allocation if msg is not None else 0)

    def _insert(
        self, msg: _Message, off: int, body: memoryview, undo: list[_RangeEdit] | None
    ) -> bool:
        """Merge [off, off+len(body)) into ``msg``; False if it would exceed the range cap.

        Overlaps with bytes already held are compared first (§5.5 byte-change check). The
        ranges replaced are appended to ``undo`` (when given) before anything changes.
        """
        end = off + len(body)
        starts, ends = msg.starts, msg.ends
        # Ranges touching [off, end]: first whose end >= off .. last whose start <= end.
        i = bisect_left(ends, off)
        j = bisect_right(starts, end)
        if i < j:
            held = msg.view()
            for k in range(i, j):
                lo = max(off, starts[k])
                hi = min(end, ends[k])
                if lo < hi and held[4 + lo : 4 + hi] != body[lo - off : hi - off]:
                    raise _illegal_parameter(
                        "retransmitted handshake bytes differ from those already received"
                    )
            if msg.whole is not None:
                return True  # complete already: nothing to write
            new_start = min(off, starts[i])
            new_end = max(end, ends[j - 1])
        else:
            if len(starts) >= self._max_ranges:
                return False
            new_start, new_end = off, end
        if undo is not None:
            undo.append((msg, i, starts[i:j], ends[i:j]))
        msg.buf[4 + off : 4 + end] = body
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        return True
