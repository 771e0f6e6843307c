"""The DTLS 1.3 record layer of one association (RFC 9147 §4), Sans-IO.

Receiving: :meth:`DTLSRecordLayer.decode_datagram` turns one datagram into the records that
deprotect and are not replays. Everything invalid -- undecodable headers, unknown epochs,
records that fail authentication, replays -- is silently discarded and counted in
:attr:`DTLSRecordLayer.stats` (RFC 9147 §4.5.2). Only conditions that end the association
raise :class:`RecordError`: the AEAD integrity limit (§4.5.3), and malformed content inside
a record that did authenticate (rfc9147bis §4.5.2: such errors originate from the peer).

Sending: :meth:`DTLSRecordLayer.encode_record` produces one record and its record number;
the caller packs records into datagrams and keeps the numbers for ACK processing (§7).
Several write epochs may be live because retransmissions "MUST" reuse the original epoch
(§4.2.1), and several read epochs because of reordering around epoch changes (§4.2.1, §8).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from records.content_types import ContentType
from records.dtls_epoch import DTLSEpochCipher, parse_inner_plaintext
from records.dtls_header import (
    DTLS13_VERSION,
    MAX_PLAINTEXT_LENGTH,
    MAX_PLAINTEXT_SEQ,
    PLAINTEXT_HEADER_LENGTH,
    CiphertextRecord,
    encode_plaintext,
    next_record,
)
from records.errors import (
    BAD_RECORD_MAC,
    INTERNAL_ERROR,
    RECORD_OVERFLOW,
    UNEXPECTED_MESSAGE,
    RecordError,
)
from records.record_numbers import RecordNumber, select_epoch
from records.replay import ReplayWindow

__all__ = ["DTLSRecord", "DTLSRecordLayer", "DTLSRecordStats"]

# RFC 8446 §5.4 / RFC 8449 §4: DTLSInnerPlaintext (content + type + padding) <= 2^14 + 1.
DEFAULT_PLAINTEXT_LIMIT = MAX_PLAINTEXT_LENGTH + 1

_HANDSHAKE = int(ContentType.handshake)
_NO_EPOCHS: tuple[None, ...] = (None, None, None, None)
_ALERT = int(ContentType.alert)


class DTLSRecord(NamedTuple):
    """A received record after deprotection."""

    epoch: int
    seq: int
    content_type: int
    payload: bytes

    @property
    def record_number(self) -> RecordNumber:
        return RecordNumber(self.epoch, self.seq)


@dataclass(slots=True)
class DTLSRecordStats:
    """Diagnostics for §4.5.2 ("an error MAY be logged"): counts, never exceptions."""

    datagrams: int = 0
    records: int = 0  # delivered records
    discarded: int = 0  # records (or datagram remainders) dropped as invalid
    replays: int = 0  # subset of ``discarded``: duplicates / left of the window (§4.5.1)
    auth_failures: int = 0  # subset of ``discarded``: AEAD authentication failed
    reasons: Counter[str] = field(default_factory=Counter)

    def discard(self, reason: str) -> None:
        self.discarded += 1
        self.reasons[reason] += 1


class _ReadEpoch:
    __slots__ = ("cipher", "window")

    def __init__(self, cipher: DTLSEpochCipher, window_size: int) -> None:
        self.cipher = cipher
        self.window = ReplayWindow(window_size)


class DTLSRecordLayer:
    """Record protection state of one DTLS 1.3 association (both directions)."""

    __slots__ = (
        "_read",
        "_read_by_bits",
        "_read_epochs",
        "_receive_cid_length",
        "_receive_cids",
        "_replay_window",
        "_write",
        "_write_epoch",
        "_write_seq",
        "accept_plaintext",
        "highest_read_epoch_used",
        "plaintext_version",
        "read_limit",
        "send_cid",
        "stats",
        "write_limit",
    )

    def __init__(self, *, replay_window: int = 64) -> None:
        self._replay_window = replay_window
        self._read: dict[int, _ReadEpoch] = {}
        # Derived from _read on every change (_read_changed), read per record: the epoch
        # each value of a unified header's two E bits selects (§4.2.2), and the sorted list.
        self._read_by_bits: tuple[_ReadEpoch | None, ...] = _NO_EPOCHS
        self._read_epochs: tuple[int, ...] = ()
        self._write: dict[int, DTLSEpochCipher] = {}
        self._write_seq: dict[int, int] = {0: 0}
        self._write_epoch = 0
        self._receive_cids: frozenset[bytes] = frozenset()
        self._receive_cid_length = 0
        self.stats = DTLSRecordStats()
        # CID we put in protected records: the one the peer asked for (RFC 9146; RFC 9147
        # §9). None or b"" -> no CID (a zero-length CID means "do not send one").
        self.send_cid: bytes | None = None
        # DTLSPlaintext legacy_record_version; {254, 255} is allowed for the first
        # ClientHello only (RFC 9147 §4).
        self.plaintext_version = DTLS13_VERSION
        # Whether epoch-0 records are still delivered; the protocol turns this off once
        # no plaintext handshake message can legitimately arrive.
        self.accept_plaintext = True
        # RFC 8449 record_size_limit values (DTLSInnerPlaintext incl. type and padding).
        self.read_limit = DEFAULT_PLAINTEXT_LIMIT
        self.write_limit = DEFAULT_PLAINTEXT_LIMIT
        # Highest epoch from which a record deprotected: older read keys may be dropped only
        # after this moves past them (§8: "retain the pre-update keying material until
        # receipt and successful decryption of a message using the new keys").
        self.highest_read_epoch_used = 0

    # -- configuration ---------------------------------------------------------------------

    def set_receive_cids(self, cids: Iterable[bytes]) -> None:
        """CIDs we issued to the peer; incoming protected records must carry one of them.

        They must share one length: the unified header does not encode the CID length
        (§4, "length as negotiated"). An empty set (or only b"") means no CID is expected.
        """
        live = frozenset(bytes(c) for c in cids if c)
        lengths = {len(c) for c in live}
        if len(lengths) > 1:
            raise ValueError("receive CIDs must all have the same length")
        self._receive_cids = live
        self._receive_cid_length = lengths.pop() if lengths else 0

    def install_read_epoch(self, cipher: DTLSEpochCipher) -> None:
        """Start accepting records of ``cipher.epoch``.

        An older epoch with the same two low bits is dropped: the unified header could not
        tell them apart (§4.2.2), and the newer one is the one the peer can be using.
        """
        epoch = cipher.epoch
        for old in [e for e in self._read if (e & 3) == (epoch & 3) and e < epoch]:
            del self._read[old]
        self._read[epoch] = _ReadEpoch(cipher, self._replay_window)
        self._read_changed()

    def drop_read_epoch(self, epoch: int) -> None:
        """Forget a read epoch (e.g. after the MSL-based grace period of §4.2.1)."""
        if self._read.pop(epoch, None) is not None:
            self._read_changed()

    def _read_changed(self) -> None:
        self._read_epochs = tuple(sorted(self._read))
        by_bits: list[_ReadEpoch | None] = []
        for bits in range(4):
            epoch = select_epoch(bits, self._read_epochs)
            by_bits.append(None if epoch is None else self._read[epoch])
        self._read_by_bits = tuple(by_bits)

    def install_write_epoch(self, cipher: DTLSEpochCipher) -> None:
        """Add a write epoch and make it the current one (it must be newer)."""
        if cipher.epoch <= self._write_epoch:
            raise ValueError("write epochs only move forward (RFC 9147 §4.2.1, §6.1)")
        self._write[cipher.epoch] = cipher
        self._write_seq[cipher.epoch] = 0
        self._write_epoch = cipher.epoch

    def drop_write_epoch(self, epoch: int) -> None:
        """Forget an older write epoch once nothing needs retransmitting in it."""
        if epoch == self._write_epoch:
            raise ValueError("cannot drop the current write epoch")
        self._write.pop(epoch, None)
        self._write_seq.pop(epoch, None)

    @property
    def read_epochs(self) -> tuple[int, ...]:
        return self._read_epochs

    @property
    def write_epoch(self) -> int:
        return self._write_epoch

    @property
    def write_epochs(self) -> tuple[int, ...]:
        return tuple(sorted(self._write_seq))

    def next_write_seq(self, epoch: int | None = None) -> int:
        return self._write_seq[self._write_epoch if epoch is None else epoch]

    def set_next_write_seq(self, epoch: int, seq: int) -> None:
        """Continue an epoch's record numbers from ``seq`` (only forward): an association
        created after a stateless HelloRetryRequest must not reuse that record's number."""
        if seq < self._write_seq.get(epoch, 0):
            raise ValueError("record numbers only move forward")
        self._write_seq[epoch] = seq

    # -- AEAD limits (RFC 9147 §4.5.3) -----------------------------------------------------

    @property
    def needs_key_update(self) -> bool:
        """True when a KeyUpdate should be initiated now (§4.5.3)."""
        return self.write_key_update_due or self.request_peer_update

    @property
    def write_key_update_due(self) -> bool:
        """The current write key nears its confidentiality limit (§4.5.3)."""
        cipher = self._write.get(self._write_epoch)
        return cipher is not None and cipher.write_key_update_due

    @property
    def request_peer_update(self) -> bool:
        """The newest read key nears its integrity limit: send KeyUpdate(update_requested)."""
        if not self._read:
            return False
        return self._read[max(self._read)].cipher.read_key_update_due

    # -- sending ---------------------------------------------------------------------------

    def record_overhead(
        self, epoch: int | None = None, *, seq_len: int = 2, with_length: bool = True
    ) -> int:
        """Expansion of one record in ``epoch`` (RFC 9147 §4.4: let the upper layer learn it)."""
        epoch = self._write_epoch if epoch is None else epoch
        if epoch == 0:
            return PLAINTEXT_HEADER_LENGTH
        cipher = self._write[epoch]
        return cipher.overhead(cid=self.send_cid, seq_len=seq_len, with_length=with_length)

    def encode_record(
        self,
        content_type: int,
        payload: bytes | memoryview,
        *,
        epoch: int | None = None,
        padding: int = 0,
        seq_len: int = 2,
        with_length: bool = True,
    ) -> tuple[RecordNumber, bytes]:
        """Encode one record in ``epoch`` (default: the current write epoch).

        Payloads must already fit the limits (the caller fragments): 2^14 for plaintext,
        ``write_limit`` for the protected inner plaintext (RFC 8449 §4).
        """
        epoch = self._write_epoch if epoch is None else epoch
        if epoch not in self._write_seq:
            raise ValueError(f"no write keys for epoch {epoch}")
        seq = self._write_seq[epoch]
        if epoch == 0:
            # §4: plaintext records carry a 48-bit sequence number that must not wrap.
            if seq > MAX_PLAINTEXT_SEQ:
                raise RecordError(INTERNAL_ERROR, "epoch 0 sequence numbers exhausted")
            data = encode_plaintext(content_type, seq, payload, version=self.plaintext_version)
        else:
            if len(payload) + 1 + padding > self.write_limit:
                raise ValueError("protected record exceeds the peer's record size limit")
            data = self._write[epoch].protect(
                content_type,
                payload,
                seq,
                cid=self.send_cid,
                seq_len=seq_len,
                with_length=with_length,
                padding=padding,
            )
        self._write_seq[epoch] = seq + 1
        return RecordNumber(epoch, seq), data

    # -- receiving -------------------------------------------------------------------------

    def decode_datagram(self, datagram: bytes | memoryview) -> list[DTLSRecord]:
        """All valid records of one datagram, in order; see the module docstring."""
        return list(self.iter_datagram(datagram))

    def iter_datagram(self, datagram: bytes | memoryview) -> Iterator[DTLSRecord]:
        """Like ``decode_datagram``, but each record is parsed and deprotected only once the
        previous one was consumed, so keys and CIDs it brings apply to the records after it
        (a ServerHello and the first epoch-2 records share a datagram, RFC 9147 §4.3)."""
        stats = self.stats
        stats.datagrams += 1
        view = datagram if type(datagram) is bytes else bytes(datagram)
        pos: int | None = 0
        while pos is not None and pos < len(view):
            pos, record, reason = next_record(view, pos, self._receive_cid_length)
            if reason is not None:
                stats.discard(reason)
            if record is None:
                continue
            if not isinstance(record, CiphertextRecord):
                if self.accept_plaintext:
                    # Epoch 0 has no protection, so it gets no replay window: letting
                    # unauthenticated records move a window would let anyone make genuine
                    # records look replayed (§4.5.1 updates only after deprotection).
                    # The handshake layer drops duplicate messages by message_seq (§5).
                    stats.records += 1
                    yield DTLSRecord(0, record.seq, record.content_type, record.fragment)
                else:
                    stats.discard("plaintext record no longer accepted")
                continue
            if self._receive_cids and record.cid not in self._receive_cids:
                if record.cid is None:
                    # §4: a negotiated CID "MUST be contained in all datagrams".
                    stats.discard("record without the negotiated CID")
                    continue
                # §4: a CID of another association -> discard the rest of the datagram.
                stats.discard("unknown CID; rest of datagram dropped")
                return
            result = self._unprotect(record)
            if result is not None:
                stats.records += 1
                yield result

    def _unprotect(self, record: CiphertextRecord) -> DTLSRecord | None:
        stats = self.stats
        state = self._read_by_bits[record.header[0] & 3]
        if state is None:
            # §6.1: no cipher state for the epoch -> handle as a deprotection failure.
            stats.discard("no read keys for epoch")
            return None
        cipher = state.cipher
        epoch = cipher.epoch
        window = state.window
        try:
            seq, inner = cipher.decrypt(record, window.next_expected)
        except RecordError as exc:
            stats.auth_failures += 1
            stats.discard(exc.reason)
            self._check_integrity_limit(epoch, cipher)
            return None
        try:
            content_type, content = parse_inner_plaintext(inner)
        except RecordError as exc:
            # rfc9147bis §4.5.2: invalid inner content type / padding -> discard; the
            # window is not updated for records that are discarded.
            stats.discard(exc.reason)
            return None
        # §4.5.1: replay check after deprotection; update the window only now.
        if not window.check_and_accept(seq):
            stats.replays += 1
            stats.discard("replayed record")
            return None
        if epoch > self.highest_read_epoch_used:
            self.highest_read_epoch_used = epoch
        if len(inner) > self.read_limit:
            # RFC 8449 §4 / RFC 8446 §5.4: an authenticated peer exceeded our limit.
            raise RecordError(RECORD_OVERFLOW, "protected record exceeds the record size limit")
        if not content and content_type in (_HANDSHAKE, _ALERT):
            # RFC 8446 §5.1/§5.4: zero-length handshake or alert fragments are not allowed.
            raise RecordError(UNEXPECTED_MESSAGE, "zero-length handshake or alert record")
        return DTLSRecord(epoch, seq, content_type, content)

    def _check_integrity_limit(self, epoch: int, cipher: DTLSEpochCipher) -> None:
        if not cipher.integrity_limit_exceeded:
            return
        if epoch < max(self._read):
            # §4.5.3: "Once a key update has been initiated, the previous keys can be
            # dropped when the limit is reached rather than closing the connection."
            del self._read[epoch]
            self._read_changed()
            return
        # §4.5.3: too many forgeries under the current key -> close the connection.
        raise RecordError(BAD_RECORD_MAC, f"AEAD integrity limit exceeded in epoch {epoch}")
