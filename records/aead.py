"""Record protection with one AEAD key (RFC 8446 §5.2, §5.3, §5.5).

A :class:`RecordCipher` owns one traffic key: the ``cryptography`` AEAD object is built once,
the static IV is kept as an int so the per-record nonce is a single XOR, and it counts how
many records it protected and how many failed to open, for the usage limits of
RFC 8446 §5.5 and RFC 9147 §4.5.3. Sequence numbers are owned by the caller (the TLS or
DTLS record layer); this class is shared by both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .errors import BAD_RECORD_MAC, INTERNAL_ERROR, RecordError

BytesLike = bytes | bytearray | memoryview


class _AEAD(Protocol):
    def encrypt(self, nonce: bytes, data: BytesLike, associated_data: BytesLike) -> bytes: ...

    def decrypt(self, nonce: bytes, data: BytesLike, associated_data: BytesLike) -> bytes: ...


def _ccm8(key: bytes) -> _AEAD:
    return AESCCM(key, tag_length=8)


# aead name -> (constructor, permitted key lengths, tag length). RFC 8446 §B.4, RFC 5116,
# RFC 6655 (CCM, CCM_8), RFC 8439 (ChaCha20-Poly1305).
_AEADS: Final[dict[str, tuple[Callable[[bytes], _AEAD], tuple[int, ...], int]]] = {
    "AES-GCM": (AESGCM, (16, 32), 16),
    "CHACHA20-POLY1305": (ChaCha20Poly1305, (32,), 16),
    "AES-CCM": (AESCCM, (16,), 16),
    "AES-CCM-8": (_ccm8, (16,), 8),
}

# RFC 8446 §5.3: iv_length = max(8, N_MIN) = 12 for every TLS 1.3 AEAD.
IV_LEN: Final = 12

# Records that may be protected under one key (confidentiality), RFC 8446 §5.5 (AES-GCM
# 2^24.5; ChaCha20-Poly1305 has none below sequence-number exhaustion) and RFC 9147 §4.5.3
# (AES-CCM 2^23, the same for CCM_8 per its §B.3).
_CONFIDENTIALITY_LIMIT: Final[dict[str, int]] = {
    "AES-GCM": int(2**24.5),
    "CHACHA20-POLY1305": 1 << 64,
    "AES-CCM": 1 << 23,
    "AES-CCM-8": 1 << 23,
}
# Records that may fail authentication under one key, RFC 9147 §4.5.3. CCM_8 has no safe
# value (the RFC leaves it to additional forgery protection), hence None.
_INTEGRITY_LIMIT: Final[dict[str, int | None]] = {
    "AES-GCM": 1 << 36,
    "CHACHA20-POLY1305": 1 << 36,
    "AES-CCM": int(2**23.5),
    "AES-CCM-8": None,
}

# aead name -> everything __init__ needs, in one lookup (a key is installed 8 times per
# handshake).
_SPECS: Final = {
    name: (*spec, _CONFIDENTIALITY_LIMIT[name], _INTEGRITY_LIMIT[name])
    for name, spec in _AEADS.items()
}


class RecordCipher:
    """One direction's AEAD key and static IV (RFC 8446 §5.2, §5.3)."""

    __slots__ = (
        "_aead",
        "_decrypt",
        "_encrypt",
        "_iv",
        "aead",
        "confidentiality_limit",
        "failed",
        "integrity_limit",
        "opened",
        "sealed",
        "tag_len",
    )

    def __init__(self, aead: str, key: bytes, iv: bytes, tag_len: int) -> None:
        spec = _SPECS.get(aead)
        if spec is None:
            raise ValueError(f"unknown AEAD {aead!r}")
        factory, key_lens, expected_tag, confidentiality, integrity = spec
        if len(key) not in key_lens:
            raise ValueError(f"{aead} key must be {key_lens} bytes, got {len(key)}")
        if len(iv) != IV_LEN:
            raise ValueError(f"TLS 1.3 record IV must be {IV_LEN} bytes, got {len(iv)}")
        if tag_len != expected_tag:
            raise ValueError(f"{aead} has a {expected_tag}-byte tag, not {tag_len}")
        self.aead = aead
        self.tag_len = tag_len
        self._aead = aead_object = factory(key if type(key) is bytes else bytes(key))
        # Bound once: seal and open run per record.
        self._encrypt = aead_object.encrypt
        self._decrypt = aead_object.decrypt
        self._iv = int.from_bytes(iv, "big")
        self.sealed = 0  # records protected (RFC 8446 §5.5 confidentiality limit)
        self.opened = 0  # records successfully deprotected
        self.failed = 0  # records that failed authentication (RFC 9147 §4.5.3 integrity limit)
        self.confidentiality_limit = confidentiality
        self.integrity_limit = integrity

    def nonce(self, seq: int) -> bytes:
        """RFC 8446 §5.3: the 64-bit sequence number, left-padded to iv_length, XOR the IV."""
        # seq >> 64 is non-zero both for seq >= 2^64 and for negative seq.
        if seq >> 64:
            raise RecordError(INTERNAL_ERROR, f"sequence number {seq} outside 64 bits")
        return (self._iv ^ seq).to_bytes(IV_LEN, "big")

    def seal(self, seq: int, aad: BytesLike, plaintext: BytesLike) -> bytes:
        """Encrypt ``plaintext``; returns ciphertext || tag (RFC 8446 §5.2 AEADEncrypted)."""
        # The nonce is computed inline (see nonce()): this runs once per record.
        if seq >> 64:
            raise RecordError(INTERNAL_ERROR, f"sequence number {seq} outside 64 bits")
        out = self._encrypt((self._iv ^ seq).to_bytes(IV_LEN, "big"), plaintext, aad)
        self.sealed += 1
        return out

    def open(self, seq: int, aad: BytesLike, ciphertext: BytesLike) -> bytes:
        """Decrypt and verify; any failure is bad_record_mac (RFC 8446 §5.2).

        ``ciphertext`` may be any buffer (a memoryview into the receive buffer avoids a copy).
        """
        if seq >> 64:
            raise RecordError(INTERNAL_ERROR, f"sequence number {seq} outside 64 bits")
        try:
            out = self._decrypt((self._iv ^ seq).to_bytes(IV_LEN, "big"), ciphertext, aad)
        except InvalidTag:
            self.failed += 1
            raise RecordError(BAD_RECORD_MAC, "record failed AEAD authentication") from None
        self.opened += 1
        return out
