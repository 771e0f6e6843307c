"""Decrypt real NSS <-> wolfSSL DTLS 1.3 sessions with the records/ DTLS layer.

/work/shared/captures/*.json hold UDP payloads plus NSS key logs. Keys are derived here
(records/ must not import handshake/), with HKDF-Expand-Label and the "dtls13" label prefix
(RFC 9147 §5.9), "key"/"iv"/"sn" (RFC 8446 §7.3, RFC 9147 §4.2.3) and "traffic upd" for
epochs past 3 (RFC 8446 §7.2, RFC 9147 §6.1).

``decrypted_records(path)`` is reusable by handshake tests (transcripts, Finished checks).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from records.aead import RecordCipher
from records.content_types import ContentType
from records.dtls_epoch import DTLSEpochCipher
from records.dtls_layer import DTLSRecordLayer
from records.record_numbers import decode_ack
from tests.shared_data import SHARED

CAPTURE_DIR = SHARED / "captures"
CAPTURES = sorted(CAPTURE_DIR.glob("*.json"))

# code -> (hash, key length, aead name, tag length) (RFC 8446 §B.4)
SUITES: dict[int, tuple[str, int, str, int]] = {
    0x1301: ("sha256", 16, "AES-GCM", 16),
    0x1302: ("sha384", 32, "AES-GCM", 16),
    0x1303: ("sha256", 32, "CHACHA20-POLY1305", 16),
    0x1304: ("sha256", 16, "AES-CCM", 16),
    0x1305: ("sha256", 16, "AES-CCM-8", 8),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}

# NSS key log label -> (sender, epoch) (RFC 9147 §6.1)
_KEYLOG_EPOCHS = {
    "CLIENT_EARLY_TRAFFIC_SECRET": ("client", 1),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": ("client", 2),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": ("server", 2),
    "CLIENT_TRAFFIC_SECRET_0": ("client", 3),
    "SERVER_TRAFFIC_SECRET_0": ("server", 3),
}
LAST_EPOCH = 4  # the captures reach epoch 4 (one KeyUpdate each way)
_PEER = {"client": "server", "server": "client"}


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label with an empty context and the DTLS "dtls13" prefix (RFC 9147 §5.9)."""
    full = b"dtls13" + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(_HASHES[hash_name], length, info).derive(secret)


class CapturedRecord(NamedTuple):
    """One record of a capture after deprotection (epoch 0 records are plaintext)."""

    connection: int
    sender: str  # "client" | "server"
    datagram: int  # index in the capture's datagram list
    epoch: int
    seq: int
    content_type: int
    payload: bytes


@dataclass
class _Capture:
    records: list[CapturedRecord]
    suites: dict[int, int]  # connection -> cipher suite code
    unified_headers: int  # independently counted DTLSCiphertext records
    datagrams: list[dict[str, Any]]


def _walk(data: bytes) -> list[tuple[bool, int]]:
    """Independent minimal record walker: [(is_unified, first_byte)] (RFC 9147 §4)."""
    out = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first in (21, 22, 26):
            (length,) = struct.unpack_from("!H", data, pos + 11)
            pos += 13 + length
            out.append((False, first))
            continue
        assert first >> 5 == 1, f"unexpected first byte {first:#x}"
        assert not first & 0x10, "the captures do not negotiate CIDs"
        hlen = 1 + (2 if first & 0x08 else 1)
        if first & 0x04:
            (length,) = struct.unpack_from("!H", data, pos + hlen)
            pos += hlen + 2 + length
        else:
            pos = len(data)
        out.append((True, first))
    assert pos == len(data)
    return out


def _server_hello_suite(fragment: bytes) -> int | None:
    """cipher_suite of a ServerHello in a DTLS handshake fragment (RFC 9147 §5.2, §5.4)."""
    msg_type = fragment[0]
    fragment_offset = int.from_bytes(fragment[6:9], "big")
    if msg_type != 2 or fragment_offset != 0:
        return None
    body = fragment[12:]
    sid_len = body[34]  # legacy_version(2) random(32) legacy_session_id_echo<0..32>
    return int.from_bytes(body[35 + sid_len : 37 + sid_len], "big")


def _client_hello_random(fragment: bytes) -> bytes | None:
    if fragment[0] != 1 or int.from_bytes(fragment[6:9], "big") != 0:
        return None
    return fragment[12 + 2 : 12 + 34]


def _secrets(keylog: list[str]) -> dict[bytes, dict[tuple[str, int], bytes]]:
    by_random: dict[bytes, dict[tuple[str, int], bytes]] = {}
    for line in keylog:
        label, random_hex, secret_hex = line.split()
        if label in _KEYLOG_EPOCHS:
            by_random.setdefault(bytes.fromhex(random_hex), {})[_KEYLOG_EPOCHS[label]] = (
                bytes.fromhex(secret_hex)
            )
    return by_random


def _epoch_cipher(suite: int, epoch: int, secret: bytes) -> DTLSEpochCipher:
    hash_name, key_len, aead, tag_len = SUITES[suite]
    key = hkdf_expand_label(hash_name, secret, b"key", key_len)
    iv = hkdf_expand_label(hash_name, secret, b"iv", 12)
    sn_key = hkdf_expand_label(hash_name, secret, b"sn", key_len)  # RFC 9147 §4.2.3
    return DTLSEpochCipher(epoch, RecordCipher(aead, key, iv, tag_len), sn_key, aead)


def _receiver(suite: int, secrets: dict[tuple[str, int], bytes], sender: str) -> DTLSRecordLayer:
    """A record layer that reads what ``sender`` sends, with every epoch installed."""
    hash_name = SUITES[suite][0]
    layer = DTLSRecordLayer()
    for epoch in (1, 2):
        if (sender, epoch) in secrets:
            layer.install_read_epoch(_epoch_cipher(suite, epoch, secrets[sender, epoch]))
    secret = secrets[sender, 3]
    hash_len = _HASHES[hash_name].digest_size
    # Epochs 5 and 6 would share their low bits with 1 and 2 and replace them (§4.2.2).
    for epoch in range(3, LAST_EPOCH + 1):
        layer.install_read_epoch(_epoch_cipher(suite, epoch, secret))
        secret = hkdf_expand_label(hash_name, secret, b"traffic upd", hash_len)  # §7.2
    return layer


@cache
def _load(path: str) -> _Capture:
    capture = json.loads(Path(path).read_text())
    datagrams: list[dict[str, Any]] = capture["datagrams"]
    secrets = _secrets(capture["keylog"])
    # Pass 1: plaintext records give each connection's client random and cipher suite.
    probe = DTLSRecordLayer()
    suites: dict[int, int] = {}
    randoms: dict[int, bytes] = {}
    unified = 0
    for dgram in datagrams:
        data = bytes.fromhex(dgram["hex"])
        unified += sum(is_unified for is_unified, _ in _walk(data))
        for rec in probe.decode_datagram(data):
            assert rec.epoch == 0, "no keys installed: only plaintext can decode"
            if rec.content_type != ContentType.handshake:
                continue
            conn = dgram["connection"]
            if dgram["from"] == "server" and (code := _server_hello_suite(rec.payload)):
                assert suites.setdefault(conn, code) == code  # HRR and SH agree (§4.1.4)
            if dgram["from"] == "client" and (rnd := _client_hello_random(rec.payload)):
                assert randoms.setdefault(conn, rnd) == rnd  # CH2 repeats the random
    assert probe.stats.discarded == unified  # no read keys yet: every unified header dropped
    # Pass 2: one receiving record layer per connection and direction.
    layers = {
        (conn, sender): _receiver(suites[conn], secrets[randoms[conn]], sender)
        for conn in range(capture["connections"])
        for sender in ("client", "server")
    }
    records: list[CapturedRecord] = []
    for index, dgram in enumerate(datagrams):
        layer = layers[dgram["connection"], dgram["from"]]
        for rec in layer.decode_datagram(bytes.fromhex(dgram["hex"])):
            records.append(CapturedRecord(dgram["connection"], dgram["from"], index, *rec))
    for (conn, sender), layer in layers.items():
        assert layer.stats.discarded == 0, (conn, sender, layer.stats.reasons)
    return _Capture(records, suites, unified, datagrams)


def decrypted_records(capture_path: str | Path) -> list[CapturedRecord]:
    """Every record of a capture, decrypted, in capture order (for handshake tests)."""
    return list(_load(str(capture_path)).records)


def connection_suites(capture_path: str | Path) -> dict[int, int]:
    """Cipher suite of each connection of a capture, from its ServerHello."""
    return dict(_load(str(capture_path)).suites)


# -- tests ---------------------------------------------------------------------------------


def test_captures_present() -> None:
    assert len(CAPTURES) >= 6


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_every_protected_record_decrypts(path: Path) -> None:
    cap = _load(str(path))
    protected = [r for r in cap.records if r.epoch != 0]
    assert cap.unified_headers > 0
    assert len(protected) == cap.unified_headers
    for r in protected:
        assert r.content_type in (21, 22, 23, 26)
    # Both sides used the handshake and the application epochs in every connection.
    epochs = {(r.connection, r.sender, r.epoch) for r in protected}
    for conn in cap.suites:
        for sender in ("client", "server"):
            assert {(conn, sender, 2), (conn, sender, 3)} <= epochs


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_record_numbers_unique_and_dense(path: Path) -> None:
    """Reconstructed sequence numbers: no duplicates, each epoch counts up from 0 (§4.2)."""
    cap = _load(str(path))
    seqs: dict[tuple[int, str, int], list[int]] = {}
    for r in cap.records:
        seqs.setdefault((r.connection, r.sender, r.epoch), []).append(r.seq)
    for key, numbers in seqs.items():
        assert len(set(numbers)) == len(numbers), key
        # Senders number records 0, 1, 2, ... per epoch; the capture saw all of them
        # (epoch 0 includes a ClientHello sent before the HRR in some files).
        assert sorted(numbers) == list(range(len(numbers))), (key, numbers)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_acks_reference_earlier_handshake_records(path: Path) -> None:
    cap = _load(str(path))
    sent = {(r.connection, r.sender, r.epoch, r.seq): r for r in cap.records}
    acks = [r for r in cap.records if r.content_type == ContentType.ack]
    assert acks, "every capture contains ACKs"
    referenced = 0
    for ack in acks:
        for number in decode_ack(ack.payload):
            target = sent.get((ack.connection, _PEER[ack.sender], number.epoch, number.seq))
            assert target is not None, f"ACK for a record that was never sent: {number}"
            assert target.datagram < ack.datagram, "ACK precedes the record it acknowledges"
            assert target.content_type == ContentType.handshake  # §7: handshake records only
            # rfc9147bis §7: no ACK references an epoch above the one it is sent in.
            assert number.epoch <= ack.epoch
            referenced += 1
    assert referenced > 0


def test_keyupdate_capture_reaches_epoch_4() -> None:
    cap = _load(str(CAPTURE_DIR / "wolfssl-client-nss-server-keyupdate.json"))
    epoch4 = Counter(r.sender for r in cap.records if r.epoch == 4)
    assert epoch4["client"] > 0 and epoch4["server"] > 0
    # Both KeyUpdate messages (RFC 8446 §4.6.3, type 24) went in epoch 3.
    key_updates = [
        r for r in cap.records if r.content_type == ContentType.handshake and r.payload[0] == 24
    ]
    assert {r.sender for r in key_updates} == {"client", "server"}
    assert {r.epoch for r in key_updates} == {3}


def test_suites_from_server_hello() -> None:
    suites = connection_suites(CAPTURE_DIR / "nss-client-wolfssl-server-mlkem-1rtt.json")
    assert suites == {0: 0x1302}  # TLS_AES_256_GCM_SHA384, per the capture description
    assert connection_suites(CAPTURE_DIR / "nss-nss-full.json") == {0: 0x1301}


def test_resumption_capture_has_two_connections() -> None:
    cap = _load(str(CAPTURE_DIR / "nss-client-wolfssl-server-resumption.json"))
    assert set(cap.suites) == {0, 1}
    # A NewSessionTicket (type 4) travelled in epoch 3 of the first connection.
    assert any(
        r.connection == 0 and r.epoch == 3 and r.content_type == 22 and r.payload[0] == 4
        for r in cap.records
    )


def test_tampered_capture_record_is_discarded_not_raised() -> None:
    """Flip one ciphertext bit in a real record: silently dropped and counted (§4.5.2)."""
    path = CAPTURE_DIR / "nss-nss-full.json"
    cap = _load(str(path))
    secrets = _secrets(json.loads(path.read_text())["keylog"])
    (secret_set,) = secrets.values()
    layer = _receiver(cap.suites[0], secret_set, "client")
    index = next(
        i
        for i, d in enumerate(cap.datagrams)
        if d["from"] == "client" and d["hex"][0] == "2"  # first protected client datagram
    )
    data = bytearray(bytes.fromhex(cap.datagrams[index]["hex"]))
    data[-1] ^= 1
    assert layer.decode_datagram(bytes(data)) == []
    assert layer.stats.auth_failures == 1 and layer.stats.discarded == 1
    # The untouched datagram still decrypts afterwards: the window was not updated.
    good = layer.decode_datagram(bytes.fromhex(cap.datagrams[index]["hex"]))
    assert len(good) == 1 and good[0].epoch == 2
    # And its replay is rejected.
    assert layer.decode_datagram(bytes.fromhex(cap.datagrams[index]["hex"])) == []
    assert layer.stats.replays == 1


def report(path: Path) -> dict[str, int]:  # pragma: no cover - used for the summary only
    cap = _load(str(path))
    return dict(Counter(f"epoch{r.epoch}" for r in cap.records))
