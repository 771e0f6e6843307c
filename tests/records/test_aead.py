"""RecordCipher and TLSRecordLayer against the RFC 8448-style traces, byte for byte.

Every "complete record" in /work/shared/rfc/tls13-example-traces.txt (sections 3-7) is
decrypted to the trace's payload and re-encrypted to the trace's exact bytes, with the
keys, IVs and sequence numbers the trace implies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from records import errors
from records.aead import RecordCipher
from records.content_types import ContentType
from records.errors import RecordError
from records.tls import TLSRecordLayer
from tests.shared_data import SHARED

TRACE_PATH = SHARED / "rfc" / "tls13-example-traces.txt"

_SECTION = re.compile(r"^(\d+)\.  (\S.*)$")
_STEP = re.compile(r"^   \{(client|server)\}  (.*)$")
_FIELD = re.compile(r"^      (\S.*?) \((\d+) octets?\):\s*(.*)$")
_HEX_LINE = re.compile(r"^\s+((?:[0-9a-f]{2})(?: [0-9a-f]{2})*)\s*$")
_HEX = re.compile(r"^(?:[0-9a-f]{2})(?: [0-9a-f]{2})*$")
_KEYS = re.compile(r"derive (read|write) traffic keys for (.+?)(?: \(same.*)?:?$")
_SEND = re.compile(r"send (handshake|application_data|alert|change_cipher_spec) record:$")


@dataclass
class Step:
    section: int
    actor: str
    title: str
    fields: dict[str, bytes] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def parse_trace(text: str) -> list[Step]:
    """Steps of sections 3.. with their hex fields (page breaks between hex lines skipped)."""
    steps: list[Step] = []
    section = 0
    current: Step | None = None
    label: str | None = None
    for line in text.splitlines():
        if m := _SECTION.match(line):
            section = int(m.group(1))
            current, label = None, None
        elif section >= 3 and (m := _STEP.match(line)):
            current = Step(section, m.group(1), m.group(2).strip())
            steps.append(current)
            label = None
        elif current is not None and (m := _FIELD.match(line)):
            label = m.group(1)
            current.sizes[label] = int(m.group(2))
            rest = m.group(3).strip()
            current.fields[label] = bytes.fromhex(rest) if _HEX.match(rest) else b""
        elif current is not None and label is not None and (m := _HEX_LINE.match(line)):
            current.fields[label] += bytes.fromhex(m.group(1))
    return steps


@dataclass(frozen=True)
class TraceRecord:
    section: int
    writer: str
    content_type: int
    payload: bytes
    wire: bytes
    key: bytes | None  # None: sent unprotected
    iv: bytes | None
    seq: int

    def __repr__(self) -> str:  # short pytest ids
        return f"s{self.section}-{self.writer}-{self.content_type}-seq{self.seq}-{len(self.wire)}"


_TYPES = {
    "handshake": ContentType.handshake,
    "application_data": ContentType.application_data,
    "alert": ContentType.alert,
    "change_cipher_spec": ContentType.change_cipher_spec,
}
_OTHER = {"client": "server", "server": "client"}


def trace_records(steps: list[Step]) -> list[TraceRecord]:
    """Attach to every sent record the writer's current key and its sequence number.

    "A derive write traffic keys for K" switches A's write key to K; the values come from
    that step or from the peer's "derive read traffic keys for K" step (one of the two
    prints them). Sequence numbers restart at 0 for each key (RFC 8446 §5.3).
    """
    keys: dict[tuple[int, str, str], tuple[bytes, bytes]] = {}
    for st in steps:
        m = _KEYS.search(st.title)
        if m and "key expanded" in st.fields:
            writer = st.actor if m.group(1) == "write" else _OTHER[st.actor]
            keys[(st.section, writer, m.group(2))] = (
                st.fields["key expanded"],
                st.fields["iv expanded"],
            )
    current: dict[tuple[int, str], str] = {}
    seqs: dict[tuple[int, str, str], int] = {}
    out: list[TraceRecord] = []
    for st in steps:
        m = _KEYS.search(st.title)
        if m and m.group(1) == "write":
            current[(st.section, st.actor)] = m.group(2)
            continue
        s = _SEND.search(st.title)
        if not s or "complete record" not in st.fields:
            continue
        ctype = _TYPES[s.group(1)]
        wire = st.fields["complete record"]
        kind = current.get((st.section, st.actor))
        if wire[0] != ContentType.application_data:
            out.append(
                TraceRecord(st.section, st.actor, ctype, st.fields["payload"], wire, None, None, 0)
            )
            continue
        assert kind is not None, st
        key, iv = keys[(st.section, st.actor, kind)]
        seq = seqs.get((st.section, st.actor, kind), 0)
        seqs[(st.section, st.actor, kind)] = seq + 1
        out.append(
            TraceRecord(st.section, st.actor, ctype, st.fields["payload"], wire, key, iv, seq)
        )
    return out


STEPS = parse_trace(TRACE_PATH.read_text())
RECORDS = trace_records(STEPS)
PROTECTED = [r for r in RECORDS if r.key is not None]
PLAINTEXT = [r for r in RECORDS if r.key is None]


def _cipher(rec: TraceRecord) -> RecordCipher:
    assert rec.key is not None and rec.iv is not None
    return RecordCipher("AES-GCM", rec.key, rec.iv, 16)  # every trace uses TLS_AES_128_GCM_SHA256


# -- the parser itself must be right for the known answers to mean anything ----------------


def test_trace_parse_is_complete_and_sizes_match() -> None:
    for st in STEPS:
        for label, size in st.sizes.items():
            data = st.fields[label]
            if data:  # "(empty)" fields carry no hex
                assert len(data) == size, (st.section, st.title, label)
    # Sections 3-7 hold 41 "complete record" dumps, 27 of them protected (outer type 0x17).
    assert len(RECORDS) == 41
    assert len(PROTECTED) == 27
    by_section = {s: sum(r.section == s for r in PROTECTED) for s in range(3, 8)}
    assert by_section == {3: 7, 4: 8, 5: 4, 6: 4, 7: 4}


def test_section3_server_handshake_record_is_the_one_from_the_trace() -> None:
    # The record carrying EncryptedExtensions..Finished, under the server handshake key.
    rec = next(r for r in PROTECTED if r.section == 3 and len(r.wire) == 679)
    assert rec.key == bytes.fromhex("4d15c00e47317fe99c714f8ebd92c4d1")
    assert rec.iv == bytes.fromhex("18223084735f2f2d8588caaa")
    assert rec.seq == 0 and rec.writer == "server"
    assert rec.payload[:4] == bytes.fromhex("08000024")  # EncryptedExtensions
    assert rec.payload[-36:-32] == bytes.fromhex("14000020")  # Finished
    assert rec.wire[:8] == bytes.fromhex("17030302a2d86231")


def test_section3_sequence_numbers_follow_rfc8446_5_3() -> None:
    s3 = [(r.writer, r.content_type, r.seq, len(r.wire)) for r in PROTECTED if r.section == 3]
    assert s3 == [
        ("server", ContentType.handshake, 0, 679),  # EE..Finished, server hs key
        ("client", ContentType.handshake, 0, 58),  # client Finished, client hs key
        ("server", ContentType.handshake, 0, 227),  # NewSessionTicket, server app key
        ("client", ContentType.application_data, 0, 72),
        ("server", ContentType.application_data, 1, 72),
        ("client", ContentType.alert, 1, 24),
        ("server", ContentType.alert, 2, 24),
    ]


# -- RecordCipher on every protected record --------------------------------------------------


@pytest.mark.parametrize("rec", PROTECTED, ids=repr)
def test_record_cipher_opens_and_seals_trace_record(rec: TraceRecord) -> None:
    cipher = _cipher(rec)
    header, body = rec.wire[:5], rec.wire[5:]
    inner = cipher.open(rec.seq, header, body)
    # No trace record is padded: TLSInnerPlaintext = content || type.
    assert inner == rec.payload + bytes([rec.content_type])
    assert cipher.seal(rec.seq, header, inner) == body
    assert (cipher.opened, cipher.sealed, cipher.failed) == (1, 1, 0)


@pytest.mark.parametrize("rec", PROTECTED[:3], ids=repr)
def test_record_cipher_wrong_sequence_or_header_is_bad_record_mac(rec: TraceRecord) -> None:
    cipher = _cipher(rec)
    header, body = rec.wire[:5], rec.wire[5:]
    with pytest.raises(RecordError) as exc:
        cipher.open(rec.seq + 1, header, body)
    assert exc.value.alert == errors.BAD_RECORD_MAC
    bad_header = header[:2] + b"\x01" + header[3:]  # AAD is the whole header (§5.2)
    with pytest.raises(RecordError) as exc:
        cipher.open(rec.seq, bad_header, body)
    assert exc.value.alert == errors.BAD_RECORD_MAC
    assert (cipher.opened, cipher.failed) == (0, 2)


# -- TLSRecordLayer on every record ----------------------------------------------------------


@pytest.mark.parametrize("rec", RECORDS, ids=repr)
def test_layer_reads_trace_record(rec: TraceRecord) -> None:
    layer = TLSRecordLayer()
    if rec.key is not None:
        layer.set_read_cipher(_cipher(rec))
        layer.read_seq = rec.seq
    layer.feed(rec.wire)
    assert layer.read_record() == (rec.content_type, rec.payload)
    assert layer.read_record() is None
    assert not layer.pending()
    if rec.key is not None:
        assert layer.read_seq == rec.seq + 1


@pytest.mark.parametrize("rec", RECORDS, ids=repr)
def test_layer_encodes_trace_record(rec: TraceRecord) -> None:
    layer = TLSRecordLayer()
    if rec.key is not None:
        layer.set_write_cipher(_cipher(rec))
        layer.write_seq = rec.seq
    # The initial ClientHello record carries 0x0301 (RFC 8446 §5.1), as in the trace.
    version = int.from_bytes(rec.wire[1:3], "big")
    assert layer.encode(rec.content_type, rec.payload, legacy_version=version) == rec.wire


@pytest.mark.parametrize("section", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("reader", ["client", "server"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_layer_reads_whole_flight_stream(section: int, reader: str, chunk: int) -> None:
    """The peer's records of one section as one TCP stream: keys installed between reads
    apply to bytes that were already buffered (lazy deprotection)."""
    recs = [r for r in RECORDS if r.section == section and r.writer == _OTHER[reader]]
    stream = b"".join(r.wire for r in recs)
    layer = TLSRecordLayer()
    got: list[tuple[int, bytes]] = []
    installed: bytes | None = None
    pos = 0
    for rec in recs:
        if rec.key is not None and rec.key != installed:
            layer.set_read_cipher(_cipher(rec))
            installed = rec.key
        item = layer.read_record()
        while item is None:
            assert pos < len(stream)
            layer.feed(stream[pos : pos + chunk])
            pos += chunk
            item = layer.read_record()
        got.append(item)
    assert got == [(r.content_type, r.payload) for r in recs]
    assert layer.read_record() is None and not layer.pending()


def test_compatibility_mode_ccs_record_matches_trace() -> None:
    ccs = [r for r in RECORDS if r.content_type == ContentType.change_cipher_spec]
    assert len(ccs) == 2 and all(r.wire == bytes.fromhex("140303000101") for r in ccs)
    layer = TLSRecordLayer()
    layer.set_write_cipher(RecordCipher("AES-GCM", bytes(16), bytes(12), 16))
    assert layer.encode(ContentType.change_cipher_spec, b"\x01") == ccs[0].wire
    assert layer.write_seq == 0  # CCS is never protected and uses no sequence number


# -- RecordCipher construction and the other AEADs --------------------------------------------


AEADS = [
    ("AES-GCM", 16, 16, AESGCM),
    ("AES-GCM", 32, 16, AESGCM),
    ("CHACHA20-POLY1305", 32, 16, ChaCha20Poly1305),
    ("AES-CCM", 16, 16, AESCCM),
    ("AES-CCM-8", 16, 8, None),
]


def _xor_nonce(iv: bytes, seq: int) -> bytes:
    # Independent of the int arithmetic in RecordCipher: byte-wise, as RFC 8446 §5.3 reads.
    padded = seq.to_bytes(8, "big").rjust(len(iv), b"\x00")
    return bytes(a ^ b for a, b in zip(iv, padded, strict=True))


@pytest.mark.parametrize(("aead", "key_len", "tag_len", "cls"), AEADS)
def test_every_aead_matches_direct_construction(
    aead: str, key_len: int, tag_len: int, cls: type | None
) -> None:
    key = bytes(range(1, key_len + 1))
    iv = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
    direct = AESCCM(key, tag_length=8) if cls is None else cls(key)
    cipher = RecordCipher(aead, key, iv, tag_len)
    assert cipher.tag_len == tag_len
    aad = bytes.fromhex("1703030020")
    for seq in (0, 1, 255, 256, 0x0102030405060708, (1 << 64) - 1):
        assert cipher.nonce(seq) == _xor_nonce(iv, seq)
        sealed = cipher.seal(seq, aad, b"inner plaintext\x17")
        assert sealed == direct.encrypt(_xor_nonce(iv, seq), b"inner plaintext\x17", aad)
        assert len(sealed) == 16 + tag_len
        assert cipher.open(seq, aad, sealed) == b"inner plaintext\x17"
    assert cipher.sealed == 6 and cipher.opened == 6


def test_record_cipher_rejects_sequence_outside_64_bits() -> None:
    cipher = RecordCipher("AES-GCM", bytes(16), bytes(12), 16)
    for seq in (1 << 64, -1):
        with pytest.raises(RecordError) as exc:
            cipher.seal(seq, b"", b"x")
        assert exc.value.alert == errors.INTERNAL_ERROR


@pytest.mark.parametrize(
    ("aead", "key", "iv", "tag"),
    [
        ("AES-GCM", bytes(15), bytes(12), 16),
        ("AES-GCM", bytes(16), bytes(8), 16),
        ("AES-GCM", bytes(16), bytes(12), 8),
        ("CHACHA20-POLY1305", bytes(16), bytes(12), 16),
        ("AES-CCM", bytes(32), bytes(12), 16),
        ("AES-CCM-8", bytes(16), bytes(12), 16),
        ("AES-OCB", bytes(16), bytes(12), 16),
    ],
)
def test_record_cipher_rejects_bad_parameters(aead: str, key: bytes, iv: bytes, tag: int) -> None:
    with pytest.raises(ValueError):
        RecordCipher(aead, key, iv, tag)


def test_usage_limits_are_exposed() -> None:
    # RFC 8446 §5.5 (AES-GCM 2^24.5 records) and RFC 9147 §4.5.3 (forgery limits).
    gcm = RecordCipher("AES-GCM", bytes(16), bytes(12), 16)
    assert gcm.confidentiality_limit == 23726566 and gcm.integrity_limit == 1 << 36
    ccm = RecordCipher("AES-CCM", bytes(16), bytes(12), 16)
    assert ccm.confidentiality_limit == 1 << 23 and ccm.integrity_limit == int(2**23.5)
    assert RecordCipher("AES-CCM-8", bytes(16), bytes(12), 8).integrity_limit is None
