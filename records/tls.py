"""The TLS 1.3 record layer, Sans-IO (RFC 8446 §5.1-§5.4, RFC 8449).

Bytes in: :meth:`TLSRecordLayer.feed`, then :meth:`TLSRecordLayer.read_record` until it
returns ``None``. Bytes out: :meth:`TLSRecordLayer.encode`. Keys are installed per direction
by the protocol layer; records are only deprotected when read, so a key installed between two
``read_record`` calls applies to every record after that point even if its bytes were
already buffered.

Every peer-caused failure raises :class:`~records.errors.RecordError`. When it is raised for
a complete record (bad_record_mac, bad inner content), that record has been consumed; when it
is raised for a header (unknown type, version, length), nothing is consumed. Either way the
connection is expected to be torn down (RFC 8446 §5.2, §6.2), except for the 0-RTT skipping
described at :meth:`TLSRecordLayer.set_early_data_skip`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from .aead import BytesLike, RecordCipher
from .content_types import ContentType
from .errors import (
    INTERNAL_ERROR,
    PROTOCOL_VERSION,
    RECORD_OVERFLOW,
    UNEXPECTED_MESSAGE,
    RecordError,
)

HEADER_LEN: Final = 5
MAX_PLAINTEXT: Final = 1 << 14  # RFC 8446 §5.1: TLSPlaintext.length <= 2^14
MAX_INNER_PLAINTEXT: Final = MAX_PLAINTEXT + 1  # RFC 8446 §5.4: content + type <= 2^14 + 1
MAX_CIPHERTEXT: Final = MAX_PLAINTEXT + 256  # RFC 8446 §5.2: TLSCiphertext.length <= 2^14 + 256
MIN_RECORD_SIZE_LIMIT: Final = 64  # RFC 8449 §4
SEQ_LIMIT: Final = 1 << 64  # RFC 8446 §5.3: 64-bit sequence numbers must not wrap

TLS12_VERSION: Final = 0x0303
TLS10_VERSION: Final = 0x0301

# Overhead assumed for a skipped 0-RTT record whose AEAD is unknown (the HelloRetryRequest
# case): a 16-byte tag plus the content type byte.
_MAX_OVERHEAD: Final = 17

PaddingPolicy = Callable[[int, int], int]
"""``padding(content_type, content_length) -> number of zero bytes`` (RFC 8446 §5.4)."""

_HEADER = struct.Struct(">BHH")
_CCS = ContentType.change_cipher_spec.value
_ALERT = ContentType.alert.value
_HANDSHAKE = ContentType.handshake.value
_APPDATA = ContentType.application_data.value
_TLS13_TYPES: Final = frozenset((_CCS, _ALERT, _HANDSHAKE, _APPDATA))
_TYPE_BYTE: Final = {t: bytes((t,)) for t in (_ALERT, _HANDSHAKE, _APPDATA)}
_APPDATA_BYTE: Final = _TYPE_BYTE[_APPDATA]
_CCS_RECORD: Final = _HEADER.pack(_CCS, TLS12_VERSION, 1) + b"\x01"

# Record bodies up to this size are sliced (a small copy) rather than viewed: a memoryview
# costs more than copying a few hundred bytes.
_COPY_BELOW: Final = 512

# Compact the input buffer only once this much consumed data sits in front of it.
_COMPACT_AT: Final = 1 << 16


def _fail(alert: int, reason: str) -> RecordError:
    return RecordError(alert, reason)


def _key_exhausted(guard: int) -> RecordError:
    if guard >= SEQ_LIMIT:
        return RecordError(INTERNAL_ERROR, "write sequence number would wrap")
    return RecordError(INTERNAL_ERROR, "write key reached its usage limit (RFC 8446 §5.5)")


def key_update_threshold(limit: int) -> int:
    """Records after which to start a KeyUpdate for a key allowed ``limit`` records.

    Three quarters of the limit, as the DTLS record layer does (records/dtls_epoch.py): RFC
    8446 §5.5 requires rekeying before the limit, and the margin leaves room for the records
    already queued and the KeyUpdate itself.
    """
    return limit * 3 // 4


class TLSRecordLayer:
    """Record framing and protection for one TLS 1.3 connection (RFC 8446 §5)."""

    __slots__ = (
        "_buf",
        "_early_skip",
        "_fast_read_max",
        "_off",
        "_protected_seen",
        "_read_cipher",
        "_read_keys_installed",
        "_read_limit",
        "_write_cipher",
        "_write_guard",
        "_write_limit",
        "_write_rekey_at",
        "padding",
        "read_seq",
        "write_seq",
    )

    def __init__(self, *, padding: PaddingPolicy | None = None) -> None:
        self.padding = padding
        # Unread input: the caller's own bytes object while it is consumed record by record
        # (no copy), a private bytearray once a partial record has to be completed.
        self._buf: bytes | bytearray = b""
        self._off = 0  # start of the first unread record in _buf
        self._read_cipher: RecordCipher | None = None
        self._write_cipher: RecordCipher | None = None
        self.read_seq = 0
        self.write_seq = 0
        # Records the write key may still protect: write_seq stays below _write_guard (the
        # 64-bit sequence space, RFC 8446 §5.3, and the AEAD's confidentiality limit, §5.5),
        # and reaching _write_rekey_at makes needs_key_update true. write_seq equals the
        # number of records the current write key sealed (both restart with the key).
        self._write_guard = SEQ_LIMIT
        self._write_rekey_at = SEQ_LIMIT
        self._read_limit = MAX_INNER_PLAINTEXT
        self._write_limit = MAX_INNER_PLAINTEXT
        self._protected_seen = False
        self._read_keys_installed = 0
        self._early_skip: int | None = None
        # Largest protected application_data record the fast path of read_record accepts
        # without the full header checks (-1: never, e.g. no read key).
        self._fast_read_max = -1

    # -- keys and limits -------------------------------------------------------------------

    @property
    def read_cipher(self) -> RecordCipher | None:
        return self._read_cipher

    @property
    def write_cipher(self) -> RecordCipher | None:
        return self._write_cipher

    def set_read_cipher(self, cipher: RecordCipher | None) -> None:
        # RFC 8446 §5.3: the sequence number restarts at 0 whenever the key changes.
        self._read_cipher = cipher
        self.read_seq = 0
        if cipher is not None:
            self._protected_seen = True
            self._read_keys_installed += 1
        self._update_fast_read()

    def _update_fast_read(self) -> None:
        # What _check_header would accept for a protected application_data record: at most
        # 2^14 + 256 bytes and an inner plaintext within our limit (RFC 8446 §5.2, RFC 8449).
        cipher = self._read_cipher
        if cipher is None or self._early_skip is not None:
            self._fast_read_max = -1
        else:
            self._fast_read_max = min(MAX_CIPHERTEXT, self._read_limit + cipher.tag_len)

    def set_write_cipher(self, cipher: RecordCipher | None) -> None:
        self._write_cipher = cipher
        self.write_seq = 0
        if cipher is None:
            self._write_guard = self._write_rekey_at = SEQ_LIMIT
        else:
            limit = min(SEQ_LIMIT, cipher.confidentiality_limit)
            self._write_guard = limit
            self._write_rekey_at = key_update_threshold(limit)

    @property
    def needs_key_update(self) -> bool:
        """True once the write key has protected enough records that a KeyUpdate should go
        out now, well before its usage limit (RFC 8446 §5.5); the same name as the DTLS
        record layer's."""
        return self.write_seq >= self._write_rekey_at

    @property
    def records_until_key_update(self) -> int:
        """Records the write key may protect before :attr:`needs_key_update` turns true."""
        return max(0, self._write_rekey_at - self.write_seq)

    @property
    def read_limit(self) -> int:
        return self._read_limit

    @property
    def write_limit(self) -> int:
        return self._write_limit

    def set_read_limit(self, limit: int) -> None:
        """The record_size_limit we advertised (RFC 8449 §4).

        In TLS 1.3 it bounds the whole TLSInnerPlaintext (content, type and padding) of
        protected records; unprotected records keep the 2^14 limit of RFC 8446 §5.1.
        """
        self._read_limit = _check_limit(limit)
        self._update_fast_read()

    def set_write_limit(self, limit: int) -> None:
        """The record_size_limit the peer advertised (RFC 8449 §4).

        Protected records we send carry at most ``limit - 1`` content bytes (the inner
        content type and any padding count against it). A value above the TLS 1.3 maximum
        of 2^14 + 1 is clamped to it: RFC 8449 §4 forbids the server from enforcing that
        maximum, and we can never send more anyway.
        """
        self._write_limit = _check_limit(limit)

    def set_early_data_skip(self, max_bytes: int | None) -> None:
        """Discard 0-RTT records the server will not read (RFC 8446 §4.2.10).

        While enabled, an application_data record that fails to deprotect under the current
        read key, or that arrives while no read key is installed (the HelloRetryRequest
        case), is dropped and its plaintext size charged against ``max_bytes``; going over
        it is unexpected_message. The first record that deprotects ends the skipping, as
        does ``set_early_data_skip(None)``.
        """
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._early_skip = max_bytes
        self._update_fast_read()

    @property
    def skipping_early_data(self) -> bool:
        return self._early_skip is not None

    # -- input ------------------------------------------------------------------------------

    def feed(self, data: BytesLike) -> None:
        """Append received bytes; records are parsed lazily by :meth:`read_record`."""
        if not data:
            return
        buf = self._buf
        off = self._off
        if off >= len(buf):
            # Nothing unread: read the records straight out of the caller's bytes (immutable,
            # so holding a reference is safe); anything mutable is copied once.
            self._buf = data if type(data) is bytes else bytearray(data)
            self._off = 0
            return
        if isinstance(buf, bytearray):
            if off >= _COMPACT_AT:
                # Compacting is a memmove of the unread tail; doing it only when the consumed
                # prefix is large keeps it rare.
                del buf[:off]
                self._off = 0
            buf += data
            return
        # A partial record is left in the caller's bytes: continue in a private buffer.
        with memoryview(buf) as view:
            pending = bytearray(view[off:])
        pending += data
        self._buf = pending
        self._off = 0

    def pending(self) -> bool:
        """True when unread bytes are buffered; after ``read_record`` returned None that is
        an incomplete record. The protocol layer uses it to tell a truncated stream from a
        clean end, and to see whether bytes were already buffered at a key change (they are
        only deprotected when read, under whatever key is installed then; RFC 8446 §5.1)."""
        return len(self._buf) > self._off

    def buffered_bytes(self) -> bool:
        """Same as :meth:`pending` (the name used in DESIGN.md)."""
        return len(self._buf) > self._off

    def read_record(self) -> tuple[int, bytes] | None:
        """Return the next record as ``(content_type, content)``, or None if incomplete.

        Protected records are returned with their inner content type and without padding.
        An unprotected ChangeCipherSpec is returned as ``(20, b"\\x01")`` at any time; the
        protocol layer decides whether it was allowed (RFC 8446 §5, §D.4).
        """
        while True:
            buf = self._buf
            off = self._off
            size = len(buf)
            if size - off < HEADER_LEN:
                return None
            ctype, version, length = _HEADER.unpack_from(buf, off)
            start = off + HEADER_LEN
            end = start + length
            if ctype == _APPDATA and version == TLS12_VERSION and length <= self._fast_read_max:
                # Fast path, one protected record (every one after the handshake): the
                # header checks of _check_header hold by construction of _fast_read_max.
                if size < end:
                    return None
                seq = self.read_seq
                if seq >= SEQ_LIMIT:
                    raise _fail(INTERNAL_ERROR, "read sequence number would wrap")
                if end == size:
                    # Last buffered record: drop the buffer rather than keep it for feed().
                    self._buf = b""
                    self._off = 0
                else:
                    self._off = end
                cipher = self._read_cipher
                assert cipher is not None  # _fast_read_max is -1 without a read key
                if length <= _COPY_BELOW:
                    inner = cipher.open(seq, buf[off:start], buf[start:end])
                else:
                    # Large bodies are decrypted from a view of the buffer (no copy); the
                    # view is released before feed() could resize the buffer.
                    with memoryview(buf) as view:
                        inner = cipher.open(seq, buf[off:start], view[start:end])
                self.read_seq = seq + 1
                if inner and inner[-1] == _APPDATA:
                    return _APPDATA, inner[:-1]
                return _strip_inner(inner)
            cipher = self._read_cipher
            # Everything knowable from the header is checked before waiting for the body, so
            # a bogus length never makes us buffer up to 64 KiB.
            self._check_header(ctype, version, length, cipher)
            if size < end:
                return None
            # Consume first: errors below leave the stream after this record. A fully read
            # buffer is dropped (an idle connection keeps no input around).
            if end == size:
                self._buf = b""
                self._off = 0
            else:
                self._off = end

            if ctype == _APPDATA:
                if cipher is None:
                    # Only reachable while skipping 0-RTT after HelloRetryRequest.
                    self._charge_early_data(length - _MAX_OVERHEAD)
                    continue
                result = self._open(cipher, buf, off, start, end, length)
                if result is None:
                    continue
                return result
            if ctype == _CCS:
                if buf[start] != 1:
                    raise _fail(UNEXPECTED_MESSAGE, "change_cipher_spec value is not 0x01")
                return _CCS, b"\x01"
            payload = buf[start:end]
            return ctype, payload if type(payload) is bytes else bytes(payload)

    def _check_header(
        self, ctype: int, version: int, length: int, cipher: RecordCipher | None
    ) -> None:
        if ctype not in _TLS13_TYPES:
            # RFC 8446 §5: unexpected record type; covers heartbeat/ack/tls12_cid which are
            # never negotiated here, and non-TLS bytes.
            raise _fail(UNEXPECTED_MESSAGE, f"unexpected record content type {ctype}")
        # RFC 8446 §5.1 says legacy_record_version "MUST be ignored for all purposes", yet
        # OpenSSL, BoringSSL and Go all police it. We match their leniency: until a read key
        # has ever been installed (the version is not negotiated yet: ClientHello, all of its
        # fragments, ServerHello/HelloRetryRequest, CCS) any 0x03XX is accepted, e.g. the
        # 0x0301 an initial ClientHello SHOULD carry; after that, exactly 0x0303 (§5.2).
        if version != TLS12_VERSION and (self._protected_seen or version >> 8 != 0x03):
            raise _fail(PROTOCOL_VERSION, f"bad legacy_record_version 0x{version:04x}")
        if ctype == _APPDATA:
            if cipher is not None:
                if length > MAX_CIPHERTEXT:
                    raise _fail(RECORD_OVERFLOW, f"TLSCiphertext length {length} > 2^14+256")
                # RFC 8449 §4 / RFC 8446 §5.4: the inner plaintext (ciphertext minus the
                # tag) may not exceed our advertised limit. Rejected 0-RTT records were sent
                # before the peer saw that limit, so while skipping them the check waits
                # until a record actually deprotects (_open).
                if length - cipher.tag_len > self._read_limit and self._early_skip is None:
                    raise _fail(
                        RECORD_OVERFLOW,
                        f"inner plaintext {length - cipher.tag_len} > limit {self._read_limit}",
                    )
                if self.read_seq >= SEQ_LIMIT:
                    raise _fail(INTERNAL_ERROR, "read sequence number would wrap")
                return
            if self._early_skip is None:
                # RFC 8446 §5.1: application data is never sent unprotected.
                raise _fail(UNEXPECTED_MESSAGE, "unprotected application_data record")
            if length > MAX_CIPHERTEXT:
                raise _fail(RECORD_OVERFLOW, f"TLSCiphertext length {length} > 2^14+256")
            return
        if length > MAX_PLAINTEXT:
            raise _fail(RECORD_OVERFLOW, f"TLSPlaintext length {length} > 2^14")
        if ctype == _CCS:
            # RFC 8446 §5: only the single byte 0x01 may be dropped; anything else aborts.
            if length != 1:
                raise _fail(UNEXPECTED_MESSAGE, "change_cipher_spec record is not one byte")
            return
        if cipher is not None and not (
            ctype == _ALERT and length == 2 and self._read_keys_installed == 1
        ):
            # RFC 8446 §5.2: once protection is on, only the compatibility CCS is plaintext.
            # One exception while the first (handshake) read key is fresh: a peer that failed
            # to process our hello has no keys yet and can only alert in plaintext, and
            # reporting its alert beats replacing it with an unexpected_message of ours.
            raise _fail(UNEXPECTED_MESSAGE, f"unprotected record of type {ctype} after keys")
        if length == 0:
            # RFC 8446 §5.1 forbids zero-length handshake fragments and alerts carry exactly
            # one message; §5.4 names unexpected_message for the protected equivalent.
            raise _fail(UNEXPECTED_MESSAGE, f"zero-length record of type {ctype}")

    def _open(
        self,
        cipher: RecordCipher,
        buf: bytes | bytearray,
        off: int,
        start: int,
        end: int,
        length: int,
    ) -> tuple[int, bytes] | None:
        aad = buf[off:start]  # RFC 8446 §5.2: additional_data is the record header
        # The memoryviews are released before anything else can touch the bytearray (a
        # live export would make the next feed() fail with BufferError).
        with memoryview(buf) as view, view[start:end] as body:
            try:
                inner = cipher.open(self.read_seq, aad, body)
            except RecordError:
                if self._early_skip is None:
                    raise
                # RFC 8446 §4.2.10: trial decryption failed, assume rejected 0-RTT data.
                self._charge_early_data(length - cipher.tag_len - 1)
                return None
        self.read_seq += 1
        if self._early_skip is not None:
            self._early_skip = None  # the first record under the expected key ends skipping
            self._update_fast_read()
        if len(inner) > self._read_limit:
            raise _fail(RECORD_OVERFLOW, f"inner plaintext {len(inner)} > {self._read_limit}")
        return _strip_inner(inner)

    def _charge_early_data(self, size: int) -> None:
        budget = self._early_skip
        assert budget is not None
        size = max(size, 0)
        if size > budget:
            raise _fail(UNEXPECTED_MESSAGE, "skipped early data exceeds max_early_data_size")
        self._early_skip = budget - size

    # -- output ------------------------------------------------------------------------------

    def write_application_data(self, data: BytesLike, out: list[bytes]) -> bool | None:
        """Protect ``data`` as one unpadded application_data record and append it to ``out``.

        The record ``encode(23, data)`` would make, appended as two parts (header, AEAD
        output) so that a caller joining its queue once copies each record only once.
        Returns whether the write key now needs a KeyUpdate (:attr:`needs_key_update`), or
        None, writing nothing, when ``data`` needs more than one record, padding or no key:
        the caller then uses :meth:`encode`.
        """
        cipher = self._write_cipher
        n = len(data)
        if cipher is None or self.padding is not None or n >= self._write_limit:
            return None
        seq = self.write_seq
        if seq >= self._write_guard:
            raise _key_exhausted(self._write_guard)
        # TLSInnerPlaintext is the data and its type byte (RFC 8446 §5.2).
        header = _HEADER.pack(_APPDATA, TLS12_VERSION, n + 1 + cipher.tag_len)
        sealed = cipher.seal(seq, header, b"".join((data, _APPDATA_BYTE)))
        out.append(header)
        out.append(sealed)
        seq += 1
        self.write_seq = seq
        return seq >= self._write_rekey_at

    def encode(
        self, content_type: int, data: BytesLike, *, legacy_version: int = TLS12_VERSION
    ) -> bytes:
        """Frame (and, with a write key, protect) ``data`` as one or more records.

        Handshake and application data are fragmented at the write limit; an alert must fit
        one record; zero-length application data is one empty record; zero-length handshake
        or alert data is refused (RFC 8446 §5.1, §5.4). ChangeCipherSpec is always the
        unprotected compatibility record ``14 03 03 00 01 01`` (§D.4) and uses no sequence
        number. ``legacy_version=0x0301`` is only for an initial ClientHello (§5.1).
        """
        cipher = self._write_cipher
        if (
            content_type == _APPDATA
            and cipher is not None
            and self.padding is None
            and legacy_version == TLS12_VERSION
        ):
            n = len(data)
            if n < self._write_limit:
                # Fast path, one unpadded application record: TLSInnerPlaintext is the data
                # and its type byte (RFC 8446 §5.2), built with a single copy.
                seq = self.write_seq
                if seq >= self._write_guard:
                    raise _key_exhausted(self._write_guard)
                header = _HEADER.pack(_APPDATA, TLS12_VERSION, n + 1 + cipher.tag_len)
                sealed = cipher.seal(seq, header, b"".join((data, _APPDATA_BYTE)))
                self.write_seq = seq + 1
                return header + sealed
        if content_type == _CCS:
            if bytes(data) != b"\x01":
                raise ValueError("change_cipher_spec payload must be exactly 0x01")
            return _CCS_RECORD
        if content_type not in _TYPE_BYTE:
            raise ValueError(f"cannot send content type {content_type} over TLS 1.3")
        if legacy_version not in (TLS12_VERSION, TLS10_VERSION):
            raise ValueError("legacy_record_version must be 0x0303 (or 0x0301)")
        n = len(data)
        if n == 0 and content_type != _APPDATA:
            raise ValueError("handshake and alert records must not be empty (RFC 8446 §5.1)")
        if cipher is None:
            return self._encode_plain(content_type, data, n, legacy_version)
        if legacy_version != TLS12_VERSION:
            raise ValueError("protected records always carry 0x0303 (RFC 8446 §5.2)")
        return self._encode_protected(cipher, content_type, data, n)

    def _encode_plain(self, content_type: int, data: BytesLike, n: int, version: int) -> bytes:
        if content_type == _APPDATA:
            raise ValueError("application data must be protected (RFC 8446 §5.1)")
        if content_type == _ALERT and n > MAX_PLAINTEXT:
            raise ValueError("alerts must not be fragmented (RFC 8446 §5.1)")
        # RFC 8449 §4: unprotected records are not subject to record_size_limit.
        if n <= MAX_PLAINTEXT:
            return _HEADER.pack(content_type, version, n) + data
        parts: list[BytesLike] = []
        with memoryview(data) as view:
            for pos in range(0, n, MAX_PLAINTEXT):
                chunk = view[pos : pos + MAX_PLAINTEXT]
                parts.append(_HEADER.pack(content_type, version, len(chunk)))
                parts.append(chunk)
            out = b"".join(parts)
            for part in parts:
                if isinstance(part, memoryview):
                    part.release()
        return out

    def _encode_protected(
        self, cipher: RecordCipher, content_type: int, data: BytesLike, n: int
    ) -> bytes:
        max_content = self._write_limit - 1  # RFC 8449 §4: the limit includes the type byte
        seq = self.write_seq
        type_byte = _TYPE_BYTE[content_type]
        policy = self.padding
        if n <= max_content:
            # One record: the common case, kept free of slicing and loops.
            if seq >= self._write_guard:
                # RFC 8446 §5.3, §5.5: never wrap, never exceed the key's usage limit; the
                # caller must rekey (KeyUpdate) or close.
                raise _key_exhausted(self._write_guard)
            suffix = type_byte if policy is None else _suffix(policy, content_type, n, max_content)
            header = _HEADER.pack(_APPDATA, TLS12_VERSION, n + len(suffix) + cipher.tag_len)
            sealed = cipher.seal(seq, header, b"".join((data, suffix)))
            self.write_seq = seq + 1
            return header + sealed
        if content_type == _ALERT:
            raise ValueError("alerts must not be fragmented (RFC 8446 §5.1)")
        if seq + -(-n // max_content) > self._write_guard:
            raise _key_exhausted(self._write_guard)
        tag_len = cipher.tag_len
        parts: list[bytes] = []
        with memoryview(data) as view:
            for pos in range(0, n, max_content):
                with view[pos : pos + max_content] as chunk:
                    size = len(chunk)
                    suffix = type_byte
                    if policy is not None:
                        suffix = _suffix(policy, content_type, size, max_content)
                    header = _HEADER.pack(_APPDATA, TLS12_VERSION, size + len(suffix) + tag_len)
                    inner = b"".join((chunk, suffix))
                parts.append(header)
                parts.append(cipher.seal(seq, header, inner))
                seq += 1
        self.write_seq = seq
        return b"".join(parts)


def _suffix(policy: PaddingPolicy, content_type: int, size: int, max_content: int) -> bytes:
    """TLSInnerPlaintext.type || zeros for one record (RFC 8446 §5.4)."""
    pad = policy(content_type, size)
    if pad < 0:
        raise ValueError("padding policy returned a negative length")
    # Padding may not push the inner plaintext past the limit (§5.4, RFC 8449 §4), so a
    # greedy policy is clamped rather than obeyed.
    pad = min(pad, max_content - size)
    return _TYPE_BYTE[content_type] + bytes(pad) if pad else _TYPE_BYTE[content_type]


def _strip_inner(inner: bytes) -> tuple[int, bytes]:
    """Split TLSInnerPlaintext into (type, content), RFC 8446 §5.2, §5.4."""
    if inner and inner[-1]:
        # Unpadded: the last octet is the content type.
        ctype = inner[-1]
        content = inner[:-1]
    else:
        # Padded: the type is the last non-zero octet (rstrip runs in C, no Python loop).
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise _fail(UNEXPECTED_MESSAGE, "TLSInnerPlaintext has no non-zero octet")
        ctype = stripped[-1]
        content = stripped[:-1]
    if ctype == _APPDATA:
        return ctype, content
    if ctype in (_HANDSHAKE, _ALERT):
        if not content:
            # RFC 8446 §5.4: zero-length handshake/alert content.
            raise _fail(UNEXPECTED_MESSAGE, f"zero-length protected record of type {ctype}")
        return ctype, content
    if ctype == _CCS:
        raise _fail(UNEXPECTED_MESSAGE, "protected change_cipher_spec record (RFC 8446 §5)")
    raise _fail(UNEXPECTED_MESSAGE, f"unexpected inner content type {ctype}")


def _check_limit(limit: int) -> int:
    if limit < MIN_RECORD_SIZE_LIMIT:
        raise ValueError(f"record_size_limit must be >= {MIN_RECORD_SIZE_LIMIT} (RFC 8449 §4)")
    return min(limit, MAX_INNER_PLAINTEXT)
