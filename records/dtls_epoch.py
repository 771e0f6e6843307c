"""One direction's DTLS 1.3 epoch: AEAD protection plus record number encryption.

RFC 9147 §4 (AAD = unified header before record number encryption), §4.2.3 (record number
encryption), §4.5.3 (AEAD limits). The AEAD itself is :class:`records.aead.RecordCipher`
(nonce = iv XOR 64-bit sequence number, RFC 8446 §5.3; DTLS uses the 64-bit sequence number
of the epoch, not the epoch, §4).
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from records.aead import RecordCipher
from records.content_types import ContentType
from records.dtls_header import (
    CIPHERTEXT_FIXED_BITS,
    FLAG_CID,
    FLAG_LENGTH,
    FLAG_SEQ16,
    MAX_CIPHERTEXT_LENGTH,
    MIN_ENCRYPTED_LENGTH,
    CiphertextRecord,
    unified_header_length,
)
from records.errors import BAD_RECORD_MAC, INTERNAL_ERROR, UNEXPECTED_MESSAGE, RecordError
from records.record_numbers import MAX_EPOCH, reconstruct_seq

__all__ = [
    "CCM_8_DEFAULT_INTEGRITY_LIMIT",
    "PROTECTED_CONTENT_TYPES",
    "DTLSEpochCipher",
    "parse_inner_plaintext",
]

# RFC 9147 §4.1 Figure 4: the decrypted content types DTLS 1.3 delivers. Heartbeat (24) is
# listed there too but is never negotiated by this implementation, so it is invalid here.
PROTECTED_CONTENT_TYPES: Final = frozenset(
    {ContentType.alert, ContentType.handshake, ContentType.application_data, ContentType.ack}
)

# RFC 9147 Appendix A.3: for AEAD_AES_128_CCM_8 preserving TLS's margins means v <= 2^7
# forgery attempts; the RFC demands an explicit limit, so this is the default.
CCM_8_DEFAULT_INTEGRITY_LIMIT: Final = 1 << 7

_SEQ8: Final = struct.Struct("!B")
_SEQ16: Final = struct.Struct("!H")
_U16: Final = struct.Struct("!H")


# Ask for a key update once three quarters of a limit are used (RFC 9147 §4.5.3:
# "SHOULD initiate a key update before reaching this limit"), leaving room for the
# KeyUpdate/ACK exchange of §8 to complete.
def _soft(limit: int) -> int:
    return limit * 3 // 4


def parse_inner_plaintext(inner: bytes) -> tuple[int, bytes]:
    """Split DTLSInnerPlaintext into (content type, content) (RFC 8446 §5.4, RFC 9147 §4).

    All-zero plaintext or a content type DTLS 1.3 does not carry is invalid
    (rfc9147bis §4.5.2 lists both among records to discard).
    """
    if inner and inner[-1]:
        # Unpadded (the usual case): the last octet is the type; one slice, no rstrip copy.
        content_type = inner[-1]
        if content_type not in PROTECTED_CONTENT_TYPES:
            raise RecordError(UNEXPECTED_MESSAGE, f"invalid inner content type {content_type}")
        return content_type, inner[:-1]
    stripped = inner.rstrip(b"\x00")
    if not stripped:
        raise RecordError(UNEXPECTED_MESSAGE, "inner plaintext has no content type")
    content_type = stripped[-1]
    if content_type not in PROTECTED_CONTENT_TYPES:
        raise RecordError(UNEXPECTED_MESSAGE, f"invalid inner content type {content_type}")
    return content_type, stripped[:-1]


class DTLSEpochCipher:
    """Keys of one epoch in one direction: AEAD key/iv (in ``cipher``) and ``sn_key``.

    ``aead`` is the suite's AEAD name ("AES-GCM", "CHACHA20-POLY1305", "AES-CCM",
    "AES-CCM-8"); it selects the record number mask function of §4.2.3 and must match the
    cipher's. ``integrity_limit`` overrides the §4.5.3 failed-authentication limit (only
    sensible for CCM_8, whose limit depends on deployment-specific forgery protection).
    """

    __slots__ = ("_ecb", "_integrity_limit", "_sn_key", "aead", "cipher", "epoch")

    def __init__(
        self,
        epoch: int,
        cipher: RecordCipher,
        sn_key: bytes,
        aead: str | None = None,
        *,
        integrity_limit: int | None = None,
    ) -> None:
        if not 0 < epoch <= MAX_EPOCH:
            raise ValueError("protected epochs are 1..2^64-1 (RFC 9147 §6.1)")
        aead = cipher.aead if aead is None else aead
        if aead != cipher.aead:
            raise ValueError(f"aead {aead!r} does not match the record cipher's {cipher.aead!r}")
        self.epoch = epoch
        self.cipher = cipher
        self.aead = aead
        self._sn_key = bytes(sn_key)
        self._ecb: CipherContext | None = None
        if aead == "CHACHA20-POLY1305":
            if len(sn_key) != 32:
                raise ValueError("ChaCha20 sn_key must be 32 bytes")
        elif aead.startswith("AES-"):
            # ECB over exactly one block is stateless, so one context serves every record.
            self._ecb = Cipher(algorithms.AES(self._sn_key), modes.ECB()).encryptor()
        else:
            raise ValueError(f"no record number encryption defined for {aead!r} (§4.2.3)")
        if integrity_limit is None:
            integrity_limit = cipher.integrity_limit
            if integrity_limit is None:
                integrity_limit = CCM_8_DEFAULT_INTEGRITY_LIMIT
        self._integrity_limit = integrity_limit

    # -- record number encryption (RFC 9147 §4.2.3) ---------------------------------------

    def record_mask(self, sample: bytes) -> bytes:
        """The mask for a record whose ciphertext starts with ``sample`` (16 bytes)."""
        if self._ecb is not None:
            # Mask = AES-ECB(sn_key, Ciphertext[0..15])
            return self._ecb.update(sample[:16])
        # Mask = ChaCha20(sn_key, Ciphertext[0..3], Ciphertext[4..15]): cryptography's
        # 16-byte ChaCha20 "nonce" is exactly the RFC 8439 §2.3 block counter (4 bytes,
        # little endian) followed by the 12-byte nonce, so the sample is passed unchanged.
        # The nonce changes per record, hence a fresh context each time (~5 µs).
        ctx = Cipher(algorithms.ChaCha20(self._sn_key, bytes(sample[:16])), None).encryptor()
        return ctx.update(b"\x00\x00")

    # -- sending ---------------------------------------------------------------------------

    def overhead(
        self, *, cid: bytes | None = None, seq_len: int = 2, with_length: bool = True
    ) -> int:
        """Bytes added to a payload: header, inner content type, AEAD tag (§4.4)."""
        header = unified_header_length(cid=cid, seq_len=seq_len, with_length=with_length)
        return header + 1 + self.cipher.tag_len

    def protect(
        self,
        content_type: int,
        payload: bytes | memoryview,
        seq: int,
        *,
        cid: bytes | None = None,
        seq_len: int = 2,
        with_length: bool = True,
        padding: int = 0,
    ) -> bytes:
        """One DTLSCiphertext record: unified header (sequence bits masked) || ciphertext."""
        cipher = self.cipher
        if cipher.sealed >= cipher.confidentiality_limit:
            # RFC 9147 §4.5.3 / RFC 8446 §5.5: do not protect more records than the limit.
            raise RecordError(INTERNAL_ERROR, "AEAD confidentiality limit reached for epoch")
        if padding < 0:
            raise ValueError("padding must be non-negative")
        tag_len = cipher.tag_len
        # §4.2.3: the ciphertext must be at least 16 bytes; "Senders MUST pad short
        # plaintexts out" (matters for CCM_8's 8-byte tag).
        size = len(payload)
        short = MIN_ENCRYPTED_LENGTH - tag_len - (size + 1 + padding)
        if short > 0:
            padding += short
        if padding:
            inner = b"".join((payload, bytes((content_type,)), bytes(padding)))
        else:
            inner = b"".join((payload, bytes((content_type,))))
        ct_len = size + 1 + padding + tag_len
        if ct_len > MAX_CIPHERTEXT_LENGTH:
            raise ValueError("record too large for DTLSCiphertext")
        if seq_len not in (1, 2):
            raise ValueError("unified header sequence numbers are 8 or 16 bits")
        # The unified header (RFC 9147 §4, Figure 3): 0 0 1 C S L E E, CID, sequence bits,
        # length. Built twice from struct, with the sequence bits clear (the AAD, §4) and
        # masked (§4.2.3), instead of patching a copy.
        first = CIPHERTEXT_FIXED_BITS | (self.epoch & 3)
        cid = cid or b""
        if cid:
            first |= FLAG_CID
        if seq_len == 2:
            first |= FLAG_SEQ16
            low = seq & 0xFFFF
            seq_format = _SEQ16
        else:
            low = seq & 0xFF
            seq_format = _SEQ8
        tail = b""
        if with_length:
            first |= FLAG_LENGTH
            tail = _U16.pack(ct_len)
        lead = bytes((first,)) + cid
        header = lead + seq_format.pack(low) + tail
        # §4: the AAD is the header "prior to record number encryption".
        ciphertext = cipher.seal(seq, header, inner)
        mask = self.record_mask(ciphertext)
        masked = low ^ (((mask[0] << 8) | mask[1]) if seq_len == 2 else mask[0])
        return b"".join((lead, seq_format.pack(masked), tail, ciphertext))

    # -- receiving -------------------------------------------------------------------------

    def decrypt(self, record: CiphertextRecord, expected_seq: int) -> tuple[int, bytes]:
        """Unmask, reconstruct the full sequence number and open the record.

        ``expected_seq`` is one plus the highest deprotected sequence number of this epoch
        (§4.2.2). Returns (sequence number, DTLSInnerPlaintext). Authentication failure
        raises RecordError(bad_record_mac) and is counted toward the integrity limit.
        """
        encrypted = record.encrypted_record
        if len(encrypted) < MIN_ENCRYPTED_LENGTH:
            raise RecordError(BAD_RECORD_MAC, "encrypted record shorter than 16 bytes")
        ecb = self._ecb
        mask = ecb.update(encrypted[:16]) if ecb is not None else self.record_mask(encrypted)
        header = record.header
        off = 1 if record.cid is None else 1 + len(record.cid)
        if header[0] & FLAG_SEQ16:
            seq_len = 2
            low = ((header[off] << 8) | header[off + 1]) ^ ((mask[0] << 8) | mask[1])
            seq = reconstruct_seq(low, 16, expected_seq)
            clear = _SEQ16.pack(low)
        else:
            seq_len = 1
            low = header[off] ^ mask[0]
            seq = reconstruct_seq(low, 8, expected_seq)
            clear = _SEQ8.pack(low)
        aad = b"".join((header[:off], clear, header[off + seq_len :]))
        return seq, self.cipher.open(seq, aad, encrypted)

    def unprotect(self, record: CiphertextRecord, expected_seq: int) -> tuple[int, int, bytes]:
        """Full deprotection: (sequence number, content type, content). Raises RecordError."""
        seq, inner = self.decrypt(record, expected_seq)
        content_type, content = parse_inner_plaintext(inner)
        return seq, content_type, content

    # -- AEAD limits (RFC 9147 §4.5.3, RFC 8446 §5.5) --------------------------------------

    @property
    def records_protected(self) -> int:
        return self.cipher.sealed

    @property
    def auth_failures(self) -> int:
        return self.cipher.failed

    @property
    def confidentiality_limit(self) -> int:
        return self.cipher.confidentiality_limit

    @property
    def integrity_limit(self) -> int:
        return self._integrity_limit

    @property
    def write_key_update_due(self) -> bool:
        """Sending side: a KeyUpdate should be started now."""
        return self.cipher.sealed >= _soft(self.cipher.confidentiality_limit)

    @property
    def read_key_update_due(self) -> bool:
        """Receiving side: ask the peer to update (update_requested) before the limit."""
        return self.cipher.failed >= _soft(self._integrity_limit)

    @property
    def integrity_limit_exceeded(self) -> bool:
        return self.cipher.failed > self._integrity_limit
