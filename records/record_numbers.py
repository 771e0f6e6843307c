"""DTLS 1.3 record numbers: reconstruction from partial header bits, and the ACK body.

RFC 9147 §4 (RecordNumber), §4.2.2 (reconstructing sequence number and epoch), §7 (ACK).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from records.errors import DECODE_ERROR, RecordError

__all__ = [
    "MAX_EPOCH",
    "MAX_SEQ",
    "RecordNumber",
    "decode_ack",
    "encode_ack",
    "reconstruct_seq",
    "select_epoch",
]

MAX_SEQ = (1 << 64) - 1
MAX_EPOCH = (1 << 64) - 1

_RECORD_NUMBER = struct.Struct("!QQ")
_U16 = struct.Struct("!H")


class RecordNumber(NamedTuple):
    """``struct { uint64 epoch; uint64 sequence_number; } RecordNumber;`` (RFC 9147 §4)."""

    epoch: int
    seq: int


def reconstruct_seq(low: int, bits: int, expected: int) -> int:
    """Full sequence number from its ``bits`` low bits (8 or 16; 48 never needs it).

    RFC 9147 §4.2.2: pick the value "numerically closest to one plus the sequence number of
    the highest successfully deprotected record" (``expected``). Ties go to the higher
    candidate; results stay within 0..2^64-1.
    """
    window = 1 << bits
    half = window >> 1
    candidate = (expected & ~(window - 1)) | low
    if candidate + half <= expected and candidate + window <= MAX_SEQ:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


def select_epoch(bits: int, epochs: Iterable[int]) -> int | None:
    """The epoch a unified header's two E bits refer to, among the epochs we can read.

    RFC 9147 §4.2.2: use the current epoch if its bits match, otherwise "the most recent
    past epoch which has matching bits" -- i.e. the highest readable epoch with those bits.
    Epoch 0 is never protected (§6.1), so it cannot match a unified header.
    """
    best: int | None = None
    for epoch in epochs:
        if epoch and (epoch & 3) == bits and (best is None or epoch > best):
            best = epoch
    return best


def encode_ack(record_numbers: Iterable[RecordNumber | tuple[int, int]]) -> bytes:
    """ACK body (RFC 9147 §7): ``RecordNumber record_numbers<0..2^16-1>``, increasing order."""
    items = sorted(set(record_numbers))
    body = b"".join(_RECORD_NUMBER.pack(epoch, seq) for epoch, seq in items)
    if len(body) > 0xFFFF:
        raise ValueError("too many record numbers for one ACK")
    return _U16.pack(len(body)) + body


def decode_ack(payload: bytes | memoryview) -> list[RecordNumber]:
    """Parse an ACK body; malformed bodies come from an authenticated peer -> decode_error.

    (rfc9147bis §4.5.2: errors inside successfully deprotected records are the peer's.)
    """
    view = memoryview(payload)
    if len(view) < 2:
        raise RecordError(DECODE_ERROR, "ACK shorter than its length field")
    (length,) = _U16.unpack_from(view)
    if length != len(view) - 2 or length % _RECORD_NUMBER.size:
        raise RecordError(DECODE_ERROR, "ACK record_numbers length is inconsistent")
    return [RecordNumber(e, s) for e, s in _RECORD_NUMBER.iter_unpack(view[2:])]
