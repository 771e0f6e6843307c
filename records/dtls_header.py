"""DTLS 1.3 record framing: DTLSPlaintext and the DTLSCiphertext unified header (RFC 9147 §4).

Pure framing, no cryptography: the sequence-number bytes of a unified header are handled
here exactly as they are on the wire (masked when received, see records/dtls_epoch.py).
Parsing never raises: a malformed record is reported as discarded (RFC 9147 §4.5.2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from records.content_types import ContentType

__all__ = [
    "CIPHERTEXT_FIXED_BITS",
    "DTLS13_VERSION",
    "FLAG_CID",
    "FLAG_LENGTH",
    "FLAG_SEQ16",
    "MAX_CIPHERTEXT_LENGTH",
    "MAX_PLAINTEXT_LENGTH",
    "MAX_PLAINTEXT_SEQ",
    "MIN_ENCRYPTED_LENGTH",
    "PLAINTEXT_CONTENT_TYPES",
    "PLAINTEXT_HEADER_LENGTH",
    "CiphertextRecord",
    "DatagramRecords",
    "PlaintextRecord",
    "encode_plaintext",
    "encode_unified_header",
    "next_record",
    "parse_datagram",
    "unified_header_length",
]

DTLS13_VERSION = 0xFEFD  # {254, 253} (RFC 9147 §4)
PLAINTEXT_HEADER_LENGTH = 13
MAX_PLAINTEXT_LENGTH = 1 << 14  # RFC 8446 §5.1
MAX_CIPHERTEXT_LENGTH = (1 << 14) + 256  # RFC 8446 §5.2
MIN_ENCRYPTED_LENGTH = 16  # record number encryption samples 16 bytes (RFC 9147 §4.2.3)
MAX_PLAINTEXT_SEQ = (1 << 48) - 1

# First byte of a unified header: 0 0 1 C S L E E (RFC 9147 §4, Figure 3).
CIPHERTEXT_FIXED_BITS = 0x20
_FIXED_MASK = 0xE0
FLAG_CID = 0x10
FLAG_SEQ16 = 0x08
FLAG_LENGTH = 0x04
_EPOCH_BITS = 0x03

# RFC 9147 §4.1: these first bytes MUST be read as DTLSPlaintext.
PLAINTEXT_CONTENT_TYPES = frozenset(
    {ContentType.alert, ContentType.handshake, ContentType.ack},
)

# type, legacy_record_version, epoch, sequence_number (uint48 = 16 + 32 bits), length
_PLAINTEXT = struct.Struct("!BHHHIH")
_U16 = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class PlaintextRecord:
    """A received DTLSPlaintext record (always epoch 0 in DTLS 1.3, §6.1)."""

    content_type: int
    epoch: int
    seq: int
    fragment: bytes
    version: int = DTLS13_VERSION


@dataclass(frozen=True, slots=True)
class CiphertextRecord:
    """A received DTLSCiphertext record, still protected and with its sequence bits masked."""

    header: bytes  # the unified header exactly as received
    cid: bytes | None
    encrypted_record: bytes

    @property
    def epoch_bits(self) -> int:
        return self.header[0] & _EPOCH_BITS

    @property
    def seq_len(self) -> int:
        return 2 if self.header[0] & FLAG_SEQ16 else 1

    @property
    def seq_offset(self) -> int:
        return 1 + (len(self.cid) if self.cid is not None else 0)

    @property
    def masked_seq(self) -> int:
        off = self.seq_offset
        return int.from_bytes(self.header[off : off + self.seq_len], "big")


@dataclass(frozen=True, slots=True)
class DatagramRecords:
    """Result of splitting one datagram into records."""

    records: list[PlaintextRecord | CiphertextRecord]
    # Why individual records were skipped, in order; the last entry may say the rest of the
    # datagram was dropped because no further record boundary could be trusted.
    discarded: list[str]


def encode_plaintext(
    content_type: int,
    seq: int,
    fragment: bytes | memoryview,
    *,
    epoch: int = 0,
    version: int = DTLS13_VERSION,
) -> bytes:
    """A DTLSPlaintext record. ``version`` may be 0xFEFF for the very first ClientHello (§4)."""
    if not 0 <= seq <= MAX_PLAINTEXT_SEQ:
        raise ValueError("DTLSPlaintext sequence numbers must stay below 2^48 (RFC 9147 §4)")
    if len(fragment) > MAX_PLAINTEXT_LENGTH:
        raise ValueError("DTLSPlaintext fragment longer than 2^14")
    header = _PLAINTEXT.pack(
        content_type, version, epoch & 0xFFFF, seq >> 32, seq & 0xFFFFFFFF, len(fragment)
    )
    return header + fragment


def unified_header_length(*, cid: bytes | None, seq_len: int, with_length: bool) -> int:
    return 1 + (len(cid) if cid else 0) + seq_len + (2 if with_length else 0)


def encode_unified_header(
    epoch: int,
    seq: int,
    *,
    cid: bytes | None = None,
    seq_len: int = 2,
    length: int | None = None,
) -> bytes:
    """A unified header carrying the *unmasked* low ``seq_len`` bytes of ``seq``.

    This is the AEAD additional data (RFC 9147 §4: the header "prior to record number
    encryption"). An empty ``cid`` is sent as no CID (RFC 9146: zero length = not used).
    ``length=None`` clears the L bit; such a record must be the datagram's last (§4).
    """
    if seq_len not in (1, 2):
        raise ValueError("unified header sequence numbers are 8 or 16 bits")
    first = CIPHERTEXT_FIXED_BITS | (epoch & _EPOCH_BITS)
    if seq_len == 2:
        first |= FLAG_SEQ16
    if cid:
        first |= FLAG_CID
    if length is not None:
        first |= FLAG_LENGTH
    seq_bytes = (seq & ((1 << (8 * seq_len)) - 1)).to_bytes(seq_len, "big")
    header = bytes((first,)) + (cid or b"") + seq_bytes
    return header if length is None else header + _U16.pack(length)


def parse_datagram(datagram: bytes | memoryview, cid_length: int = 0) -> DatagramRecords:
    """Split a datagram into records (RFC 9147 §4, §4.1, §4.3). Never raises.

    ``cid_length`` is the length of the CIDs we asked the peer to send; a unified header
    with the C bit set cannot be delimited without it, so with ``cid_length == 0`` such a
    header ends parsing (and "If no CID is negotiated, then the receiver MUST reject any
    records it receives that contain a CID", §9).
    """
    view = datagram if type(datagram) is bytes else bytes(datagram)
    pos: int | None = 0
    records: list[PlaintextRecord | CiphertextRecord] = []
    discarded: list[str] = []
    while pos is not None and pos < len(view):
        pos, record, reason = next_record(view, pos, cid_length)
        if record is not None:
            records.append(record)
        if reason is not None:
            discarded.append(reason)
    return DatagramRecords(records, discarded)


def next_record(
    view: bytes | memoryview, pos: int, cid_length: int
) -> tuple[int | None, PlaintextRecord | CiphertextRecord | None, str | None]:
    """The record starting at ``pos``: (where the next one starts, or None when the rest of
    the datagram cannot be delimited; the record, or None; why it was discarded, or None).
    One record at a time, so a receiver can take each record's effect (new keys, a CID)
    into account before it looks at the next one (see ``parse_datagram``). Pass ``bytes``:
    the fields are then plain slices (a memoryview works too, at the cost of a copy more)."""
    end = len(view)
    first = view[pos]
    if first in PLAINTEXT_CONTENT_TYPES:
        if end - pos < PLAINTEXT_HEADER_LENGTH:
            return None, None, "truncated DTLSPlaintext header"
        ctype, version, epoch, seq_hi, seq_lo, length = _PLAINTEXT.unpack_from(view, pos)
        start = pos + PLAINTEXT_HEADER_LENGTH
        if length > end - start:
            return None, None, "DTLSPlaintext length exceeds the datagram"
        stop = start + length
        if epoch != 0:
            # §4: "uint16 epoch = 0"; protected records never use this header in 1.3.
            return stop, None, "DTLSPlaintext with non-zero epoch"
        if length > MAX_PLAINTEXT_LENGTH:
            return stop, None, "DTLSPlaintext fragment longer than 2^14"
        seq = (seq_hi << 32) | seq_lo
        return stop, PlaintextRecord(ctype, epoch, seq, bytes(view[start:stop]), version), None
    if first & _FIXED_MASK != CIPHERTEXT_FIXED_BITS:
        # §4.1: neither plaintext nor 001xxxxx: rejected like a deprotection failure;
        # without a length we cannot find the next record.
        return None, None, f"cannot demultiplex first byte {first:#04x}"
    cid: bytes | None = None
    header_len = 1
    if first & FLAG_CID:
        if cid_length == 0:
            return None, None, "record carries a CID but none was negotiated"
        header_len += cid_length
    header_len += 2 if first & FLAG_SEQ16 else 1
    if first & FLAG_LENGTH:
        header_len += 2
    if end - pos < header_len:
        return None, None, "truncated unified header"
    if first & FLAG_CID:
        cid = bytes(view[pos + 1 : pos + 1 + cid_length])
    start = pos + header_len
    if first & FLAG_LENGTH:
        (length,) = _U16.unpack_from(view, start - 2)
        if length > end - start:
            return None, None, "DTLSCiphertext length exceeds the datagram"
    else:
        length = end - start  # §4: no length field -> the rest of the datagram
    stop = start + length
    if length < MIN_ENCRYPTED_LENGTH:
        return stop, None, "encrypted record shorter than 16 bytes"  # §4.2.3
    if length > MAX_CIPHERTEXT_LENGTH:
        return stop, None, "encrypted record longer than 2^14 + 256"
    # bytes() is free on the slices of a bytes datagram and copies a memoryview's.
    header = bytes(view[pos:start])
    return stop, CiphertextRecord(header, cid, bytes(view[start:stop])), None
