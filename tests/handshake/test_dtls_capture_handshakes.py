"""Real NSS <-> wolfSSL DTLS 1.3 handshakes replayed through handshake/ and protocol/ codecs.

The records test (tests/records/test_dtls_captures.py) decrypts every record of
/work/shared/captures/*.json. Here the handshake layer takes over, with nothing but our own
code and the peers' bytes:

* each direction's handshake records go through our HandshakeReassembler (RFC 9147 §5.2,
  §5.5), including the HRR capture's second ClientHello split over two records/datagrams;
* every message decodes with decode_message(dtls=True) and re-encodes byte for byte;
* the transcript is rebuilt with our Transcript (TLS-form headers, RFC 9147 §5.2; message_hash
  after a HelloRetryRequest, RFC 8446 §4.4.1) and both Finished MACs are recomputed from the
  logged handshake traffic secrets with the "dtls13" labels (RFC 8446 §4.4.4, RFC 9147 §5.9);
* every CertificateVerify is checked against the leaf certificate (RFC 8446 §4.4.3);
* our traffic_keys / next_traffic_secret decrypt the real records, epoch 4 included
  (RFC 8446 §7.2, §7.3; RFC 9147 §4.2.3, §8);
* ACKs refer only to records that carried handshake messages (RFC 9147 §7);
* the ClientHellos show what /work/shared/PEERS.md says about the peers.

The Finished and CertificateVerify values were produced by two independent stacks, so every
check below is an exact comparison that fails if our transcript, labels or codecs are off.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509

from handshake.alerts import AlertDescription, HandshakeError
from handshake.cipher_suites import CIPHER_SUITES, CipherSuite
from handshake.extensions import HandshakeType
from handshake.groups import NamedGroup
from handshake.key_schedule import KeySchedule, TrafficKeys, traffic_keys
from handshake.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    Finished,
    HandshakeMessage,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    client_hello_truncated_for_binders,
    decode_message,
    encode_message,
)
from handshake.signatures import (
    certificate_verify_input,
    is_rsassa_pss_certificate,
    verify,
)
from handshake.transcript import Transcript
from protocol.dtls.fragments import (
    HandshakeReassembler,
    ReassemblyResult,
    encode_header,
    split_record,
)
from records.aead import RecordCipher
from records.content_types import ContentType
from records.dtls_epoch import DTLSEpochCipher
from records.dtls_layer import DTLSRecordLayer
from records.record_numbers import decode_ack
from tests.records.test_dtls_captures import (
    CAPTURE_DIR,
    CAPTURES,
    CapturedRecord,
    connection_suites,
    decrypted_records,
)
from tests.records.test_dtls_captures import hkdf_expand_label as records_expand_label

DTLS13 = 0xFEFC  # RFC 9147 §5.3 supported_versions value
DTLS12 = 0xFEFD  # legacy_version of DTLS 1.3 hellos (RFC 9147 §5.3, §5.4)
HT = HandshakeType
M = TypeVar("M")
_PEER = {"client": "server", "server": "client"}

KEYUPDATE = CAPTURE_DIR / "wolfssl-client-nss-server-keyupdate.json"
HRR_MLKEM = CAPTURE_DIR / "wolfssl-client-nss-server-hrr-mlkem.json"
RESUMPTION = CAPTURE_DIR / "nss-client-wolfssl-server-resumption.json"
MTLS = CAPTURE_DIR / "nss-client-wolfssl-server-mtls.json"
NSS_NSS = CAPTURE_DIR / "nss-nss-full.json"


# -- reassembly and decoding ----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One handshake message as the peer's reassembler delivered it."""

    sender: str
    message_seq: int
    raw: bytes  # TLS form: msg_type || uint24 length || body (RFC 9147 §5.2)
    message: HandshakeMessage
    records: tuple[tuple[int, int], ...]  # (epoch, seq) of the records that carried it
    datagrams: tuple[int, ...]  # datagram index of each of those records

    @property
    def label(self) -> str:
        if isinstance(self.message, ServerHello) and self.message.is_hello_retry_request:
            return f"{self.sender[0]}:hello_retry_request"
        return f"{self.sender[0]}:{HT(self.raw[0]).name}"


@dataclass
class Connection:
    index: int
    suite: CipherSuite
    messages: list[Received]  # both directions, in the order they completed
    results: dict[tuple[str, int, int], ReassemblyResult]  # (sender, epoch, seq) -> result
    records: list[CapturedRecord]
    secrets: dict[str, bytes]  # NSS key log label -> secret

    def handshake(self) -> list[Received]:
        """ClientHello .. client Finished: the messages the transcript covers (§4.4.1)."""
        end = next(
            i
            for i, m in enumerate(self.messages)
            if m.sender == "client" and isinstance(m.message, Finished)
        )
        return self.messages[: end + 1]

    def post_handshake(self) -> list[Received]:
        return self.messages[len(self.handshake()) :]

    def first(self, sender: str, cls: type) -> Received:
        return next(m for m in self.messages if m.sender == sender and isinstance(m.message, cls))

    def get(self, sender: str, cls: type[M]) -> M:
        """The decoded message of the first ``cls`` from ``sender``, typed."""
        msg = self.first(sender, cls).message
        assert isinstance(msg, cls)
        return msg

    def all(self, sender: str, cls: type) -> list[Received]:
        return [m for m in self.messages if m.sender == sender and isinstance(m.message, cls)]


def _keylog(path: Path) -> dict[bytes, dict[str, bytes]]:
    by_random: dict[bytes, dict[str, bytes]] = {}
    for line in json.loads(path.read_text())["keylog"]:
        label, random_hex, secret_hex = line.split()
        by_random.setdefault(bytes.fromhex(random_hex), {})[label] = bytes.fromhex(secret_hex)
    return by_random


@cache
def _connections(path: Path) -> tuple[Connection, ...]:
    records = decrypted_records(path)
    suites = connection_suites(path)
    keylog = _keylog(path)
    out = []
    for index in sorted(suites):
        suite = CIPHER_SUITES[suites[index]]
        conn_records = [r for r in records if r.connection == index]
        reassemblers = {"client": HandshakeReassembler(), "server": HandshakeReassembler()}
        carriers: dict[tuple[str, int], list[CapturedRecord]] = {}
        delivered: dict[tuple[str, int], bytes] = {}
        messages: list[Received] = []
        results: dict[tuple[str, int, int], ReassemblyResult] = {}
        for rec in conn_records:
            if rec.content_type != ContentType.handshake:
                continue
            reassembler = reassemblers[rec.sender]
            fragments = split_record(rec.payload)
            for header, body in fragments:
                if header.message_seq < reassembler.next_seq:
                    # A retransmission (§5.8): it must repeat the delivered bytes exactly.
                    raw = delivered[rec.sender, header.message_seq]
                    assert raw[0] == header.msg_type
                    assert len(raw) - 4 == header.length
                    start = 4 + header.fragment_offset
                    assert raw[start : start + header.fragment_length] == body
                else:
                    carriers.setdefault((rec.sender, header.message_seq), []).append(rec)
            result = reassembler.add_record(rec.payload)
            results[rec.sender, rec.epoch, rec.seq] = result
            assert result.acknowledgeable, (rec, result)
            while (item := reassembler.next_message()) is not None:
                message_seq, raw = item
                delivered[rec.sender, message_seq] = raw
                msg = decode_message(raw[0], raw[4:], dtls=True, hash_len=suite.hash_len)
                carried = carriers.pop((rec.sender, message_seq))
                messages.append(
                    Received(
                        rec.sender,
                        message_seq,
                        raw,
                        msg,
                        tuple((r.epoch, r.seq) for r in carried),
                        tuple(r.datagram for r in carried),
                    )
                )
        # Nothing left half-assembled at the end of a capture.
        assert not carriers
        assert all(r.buffered_messages == 0 for r in reassemblers.values())
        client_hello = next(m.message for m in messages if isinstance(m.message, ClientHello))
        secrets = keylog[client_hello.random]  # the key log is indexed by client_random
        out.append(Connection(index, suite, messages, results, conn_records, secrets))
    return tuple(out)


def _is_hrr(m: Received) -> bool:
    return isinstance(m.message, ServerHello) and m.message.is_hello_retry_request


def _transcript_hashes(conn: Connection) -> list[bytes]:
    """Transcript-Hash after each handshake message, with our Transcript (§4.4.1)."""
    t = Transcript()
    t.set_hash(conn.suite.hash_name)
    hashes = []
    for m in conn.handshake():
        if _is_hrr(m):
            t.restart_with_message_hash()  # CH1 -> message_hash(Hash(CH1))
        t.add(m.raw)
        hashes.append(t.digest())
    return hashes


def _index(conn: Connection, sender: str, cls: type) -> int:
    return next(
        i
        for i, m in enumerate(conn.handshake())
        if m.sender == sender and isinstance(m.message, cls)
    )


# Every message of every connection, in completion order (sender initial: message type).
FLOWS: dict[str, list[list[str]]] = {
    "nss-nss-full": [
        [
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:finished",
        ]
    ],
    "nss-client-wolfssl-server-mlkem-1rtt": [
        [
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:finished",
            "s:new_session_ticket",
        ]
    ],
    "nss-client-wolfssl-server-mtls": [
        [
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate_request",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:certificate",
            "c:certificate_verify",
            "c:finished",
            "s:new_session_ticket",
        ]
    ],
    "nss-client-wolfssl-server-resumption": [
        [
            "c:client_hello",
            "s:hello_retry_request",
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:finished",
            "s:new_session_ticket",
        ],
        [
            "c:client_hello",
            "s:hello_retry_request",
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:finished",
            "c:finished",
            "s:new_session_ticket",
        ],
    ],
    "wolfssl-client-nss-server-hrr-mlkem": [
        [
            "c:client_hello",
            "s:hello_retry_request",
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:finished",
        ]
    ],
    "wolfssl-client-nss-server-keyupdate": [
        [
            "c:client_hello",
            "s:hello_retry_request",
            "c:client_hello",
            "s:server_hello",
            "s:encrypted_extensions",
            "s:certificate",
            "s:certificate_verify",
            "s:finished",
            "c:finished",
            "c:key_update",
            "s:key_update",
        ]
    ],
}

params = pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)


def test_every_capture_has_a_flow() -> None:
    assert sorted(FLOWS) == sorted(p.stem for p in CAPTURES)


@params
def test_messages_reassemble_in_order(path: Path) -> None:
    conns = _connections(path)
    assert [[m.label for m in c.messages] for c in conns] == FLOWS[path.stem]
    for conn in conns:
        for sender in ("client", "server"):
            seqs = [m.message_seq for m in conn.messages if m.sender == sender]
            assert seqs == list(range(len(seqs)))  # message_seq counts from 0 (§5.2)
            for m in conn.messages:
                # Records of one message are in one epoch and sent in order.
                assert len({e for e, _ in m.records}) == 1
                assert list(m.records) == sorted(m.records)


@params
def test_every_message_reencodes_byte_for_byte(path: Path) -> None:
    count = 0
    for conn in _connections(path):
        for m in conn.messages:
            assert encode_message(m.message, dtls=True) == m.raw, m.label
            # And the decoder is strict: one byte less is refused.
            with pytest.raises(HandshakeError):
                decode_message(m.raw[0], m.raw[4:-1], dtls=True, hash_len=conn.suite.hash_len)
            count += 1
    assert count == sum(len(flow) for flow in FLOWS[path.stem])


def test_fragmented_messages_reassembled() -> None:
    """The HRR capture's second ClientHello spans two records in two datagrams (§5.5)."""
    (conn,) = _connections(HRR_MLKEM)
    ch2 = conn.all("client", ClientHello)[1]
    assert ch2.records == ((0, 1), (0, 2))
    assert len(set(ch2.datagrams)) == 2
    assert len(ch2.raw) == 4 + 1522
    first, second = (conn.results["client", e, s] for e, s in ch2.records)
    assert (first.new_messages, first.out_of_order) == (0, False)
    assert (second.new_messages, second.out_of_order) == (1, False)
    # The server Certificate is split too (NSS server, 980 bytes over two records).
    for path in (HRR_MLKEM, NSS_NSS):
        (conn,) = _connections(path)
        cert = conn.first("server", Certificate)
        assert len(cert.records) == 2 and len(cert.raw) == 4 + 980


def test_retransmissions_are_recognised() -> None:
    """Resent NewSessionTicket / KeyUpdate records add nothing (§5.2) and were flagged."""
    retransmitted = {}
    for path in (RESUMPTION, KEYUPDATE):
        for conn in _connections(path):
            retransmitted[path.stem, conn.index] = sorted(
                key for key, r in conn.results.items() if r.retransmission_seen
            )
    assert retransmitted == {
        ("nss-client-wolfssl-server-resumption", 0): [("server", 3, 3)],
        ("nss-client-wolfssl-server-resumption", 1): [("server", 3, 3)],
        ("wolfssl-client-nss-server-keyupdate", 0): [("client", 3, 3)],
    }


# -- transcript, Finished, CertificateVerify -------------------------------------------------


def _independent_transcript_hash(conn: Connection) -> bytes:
    """hashlib over the concatenated TLS-form messages, with §4.4.1's message_hash by hand."""
    name = conn.suite.hash_name
    msgs = [m.raw for m in conn.handshake()]
    if _is_hrr(conn.handshake()[1]):
        digest = hashlib.new(name, msgs[0]).digest()
        msgs[0] = bytes((254, 0, 0, len(digest))) + digest
    return hashlib.new(name, b"".join(msgs)).digest()


@params
def test_finished_messages_verify(path: Path) -> None:
    for conn in _connections(path):
        hashes = _transcript_hashes(conn)
        assert hashes[-1] == _independent_transcript_hash(conn)
        ks = KeySchedule(conn.suite, dtls=True)
        for sender, label in (
            ("server", "SERVER_HANDSHAKE_TRAFFIC_SECRET"),
            ("client", "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        ):
            i = _index(conn, sender, Finished)
            finished = conn.handshake()[i].message
            assert isinstance(finished, Finished)
            assert len(finished.verify_data) == conn.suite.hash_len
            base_key = conn.secrets[label]
            assert ks.finished_verify_data(base_key, hashes[i - 1]) == finished.verify_data
            ks.verify_finished(base_key, hashes[i - 1], finished.verify_data)
            # The "tls13 " labels give another MAC: the DTLS prefix is essential (§5.9).
            tls = KeySchedule(conn.suite, dtls=False)
            assert tls.finished_verify_data(base_key, hashes[i - 1]) != finished.verify_data
            with pytest.raises(HandshakeError) as err:
                ks.verify_finished(base_key, hashes[i - 2], finished.verify_data)
            assert err.value.alert == AlertDescription.decrypt_error


@params
def test_transcript_uses_tls_form_headers(path: Path) -> None:
    """Hashing the 12-byte DTLS headers instead (RFC 9147 §5.2 says not to) breaks Finished."""
    for conn in _connections(path):
        h = hashlib.new(conn.suite.hash_name)
        msgs = conn.handshake()
        for m in msgs[:-1]:
            body = m.raw[4:]
            h.update(encode_header(m.raw[0], len(body), m.message_seq, 0, len(body)) + body)
        finished = msgs[-1].message
        assert isinstance(finished, Finished)
        ks = KeySchedule(conn.suite, dtls=True)
        secret = conn.secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"]
        assert ks.finished_verify_data(secret, h.digest()) != finished.verify_data


def test_hrr_transcript_needs_message_hash() -> None:
    """Without the §4.4.1 rewrite (CH1 hashed as is) the server Finished does not match."""
    for path in (HRR_MLKEM, KEYUPDATE, RESUMPTION):
        for conn in _connections(path):
            msgs = conn.handshake()
            assert _is_hrr(msgs[1])
            i = _index(conn, "server", Finished)
            plain = hashlib.new(conn.suite.hash_name, b"".join(m.raw for m in msgs[:i])).digest()
            good = _transcript_hashes(conn)[i - 1]
            ks = KeySchedule(conn.suite, dtls=True)
            secret = conn.secrets["SERVER_HANDSHAKE_TRAFFIC_SECRET"]
            finished = msgs[i].message
            assert isinstance(finished, Finished)
            assert ks.finished_verify_data(secret, good) == finished.verify_data
            assert ks.finished_verify_data(secret, plain) != finished.verify_data


def _check_certificate_verify(conn: Connection, sender: str) -> x509.Certificate:
    hashes = _transcript_hashes(conn)
    i_cert = _index(conn, sender, Certificate)
    i_cv = _index(conn, sender, CertificateVerify)
    assert i_cv == i_cert + 1  # §4.4.3: CertificateVerify follows Certificate
    cert_msg = conn.handshake()[i_cert].message
    cv = conn.handshake()[i_cv].message
    assert isinstance(cert_msg, Certificate) and isinstance(cv, CertificateVerify)
    leaf = x509.load_der_x509_certificate(cert_msg.entries[0].cert_data)
    pss = is_rsassa_pss_certificate(leaf)
    is_server = sender == "server"
    data = certificate_verify_input(is_server, hashes[i_cert])
    verify(leaf.public_key(), cv.algorithm, data, cv.signature, rsassa_pss_key=pss)
    # The other side's context string, or the hash before Certificate, fails (decrypt_error).
    for wrong in (
        certificate_verify_input(not is_server, hashes[i_cert]),
        certificate_verify_input(is_server, hashes[i_cert - 1]),
    ):
        with pytest.raises(HandshakeError) as err:
            verify(leaf.public_key(), cv.algorithm, wrong, cv.signature, rsassa_pss_key=pss)
        assert err.value.alert == AlertDescription.decrypt_error
    return leaf


@params
def test_server_certificate_verify(path: Path) -> None:
    checked = 0
    for conn in _connections(path):
        if not conn.all("server", Certificate):
            assert conn.get("client", ClientHello).extensions.pre_shared_key
            continue  # PSK resumption: no certificate (§2.2)
        _check_certificate_verify(conn, "server")
        cert = conn.get("server", Certificate)
        cv = conn.get("server", CertificateVerify)
        ch = conn.get("client", ClientHello)
        assert cert.certificate_request_context == b""  # §4.4.2: empty for the server
        assert ch.extensions.signature_algorithms is not None
        assert cv.algorithm in ch.extensions.signature_algorithms  # §4.4.3
        checked += 1
    assert checked == (1 if path == RESUMPTION else len(_connections(path)))


def test_client_certificate_verify() -> None:
    (conn,) = _connections(MTLS)
    leaf = _check_certificate_verify(conn, "client")
    request = conn.get("server", CertificateRequest)
    cert = conn.get("client", Certificate)
    cv = conn.get("client", CertificateVerify)
    # §4.4.2: the client echoes the request's context (empty during the handshake).
    assert cert.certificate_request_context == request.certificate_request_context == b""
    assert request.extensions.signature_algorithms is not None
    assert cv.algorithm in request.extensions.signature_algorithms
    server_leaf = x509.load_der_x509_certificate(
        conn.get("server", Certificate).entries[0].cert_data
    )
    assert leaf.public_key() != server_leaf.public_key()


# -- record keys -------------------------------------------------------------------------------

_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": ("client", 2),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": ("server", 2),
    "CLIENT_TRAFFIC_SECRET_0": ("client", 3),
    "SERVER_TRAFFIC_SECRET_0": ("server", 3),
}


def _epoch_cipher(suite: CipherSuite, epoch: int, keys: TrafficKeys) -> DTLSEpochCipher:
    assert keys.sn_key is not None
    cipher = RecordCipher(suite.aead, keys.key, keys.iv, suite.tag_len)
    return DTLSEpochCipher(epoch, cipher, keys.sn_key, suite.aead)


@params
def test_traffic_keys_match_record_test_derivation(path: Path) -> None:
    """Our traffic_keys(dtls=True) == the records test's independent "dtls13" expansion."""
    for conn in _connections(path):
        suite = conn.suite
        for label in _LABELS:
            secret = conn.secrets[label]
            keys = traffic_keys(suite, secret, dtls=True)
            h = suite.hash_name
            assert keys.key == records_expand_label(h, secret, b"key", suite.key_len)
            assert keys.iv == records_expand_label(h, secret, b"iv", 12)
            assert keys.sn_key == records_expand_label(h, secret, b"sn", suite.key_len)
            # With the TLS labels (no "sn" key in TLS) the key differs.
            assert traffic_keys(suite, secret, dtls=False).key != keys.key


@params
def test_our_keys_decrypt_every_record(path: Path) -> None:
    """Record layers keyed by handshake/key_schedule reproduce the records test's plaintexts."""
    datagrams = json.loads(path.read_text())["datagrams"]
    for conn in _connections(path):
        ks = KeySchedule(conn.suite, dtls=True)
        for sender in ("client", "server"):
            layer = DTLSRecordLayer()
            secrets = {e: conn.secrets[lbl] for lbl, (s, e) in _LABELS.items() if s == sender}
            secrets[4] = ks.next_traffic_secret(secrets[3])  # §7.2 "traffic upd"
            for epoch, secret in secrets.items():
                keys = traffic_keys(conn.suite, secret, dtls=True)
                layer.install_read_epoch(_epoch_cipher(conn.suite, epoch, keys))
            ours = [
                (epoch, seq, ctype, payload)
                for d in datagrams
                if d["connection"] == conn.index and d["from"] == sender
                for epoch, seq, ctype, payload in layer.decode_datagram(bytes.fromhex(d["hex"]))
            ]
            theirs = [
                (r.epoch, r.seq, r.content_type, r.payload)
                for r in conn.records
                if r.sender == sender
            ]
            assert ours == theirs
            assert layer.stats.discarded == 0
            assert any(epoch == 3 for epoch, *_ in ours)


# -- KeyUpdate -----------------------------------------------------------------------------------


def _decrypt_epoch4(conn: Connection, sender: str, secret: bytes) -> DTLSRecordLayer:
    layer = DTLSRecordLayer()
    keys = traffic_keys(conn.suite, secret, dtls=True)
    layer.install_read_epoch(_epoch_cipher(conn.suite, 4, keys))
    return layer


def test_key_update_moves_to_epoch_4() -> None:
    (conn,) = _connections(KEYUPDATE)
    datagrams = json.loads(KEYUPDATE.read_text())["datagrams"]
    # RFC 8446 §4.6.3: the client requests an update, NSS answers without requesting one.
    client_ku = conn.first("client", KeyUpdate)
    server_ku = conn.first("server", KeyUpdate)
    assert client_ku.message == KeyUpdate(1) and server_ku.message == KeyUpdate(0)
    assert [m.label for m in conn.post_handshake()] == ["c:key_update", "s:key_update"]
    ks = KeySchedule(conn.suite, dtls=True)
    acks = [r for r in conn.records if r.content_type == ContentType.ack]
    for sender, ku, label in (
        ("client", client_ku, "CLIENT_TRAFFIC_SECRET_0"),
        ("server", server_ku, "SERVER_TRAFFIC_SECRET_0"),
    ):
        assert {e for e, _ in ku.records} == {3}  # sent with the old keys
        epoch4 = [r for r in conn.records if r.sender == sender and r.epoch == 4]
        assert epoch4
        wanted = sorted({r.datagram for r in epoch4})
        assert all(
            r.epoch == 4 for r in conn.records if r.sender == sender and r.datagram in wanted
        )
        secret_1 = ks.next_traffic_secret(conn.secrets[label])
        layer = _decrypt_epoch4(conn, sender, secret_1)
        got = [
            (rec.epoch, rec.seq, rec.content_type, rec.payload)
            for i in wanted
            for rec in layer.decode_datagram(bytes.fromhex(datagrams[i]["hex"]))
        ]
        assert got == [(4, r.seq, r.content_type, r.payload) for r in epoch4]
        assert {ctype for _, _, ctype, _ in got} >= {ContentType.application_data}
        # The un-updated secret, or a "tls13 traffic upd" update, does not decrypt them.
        tls_update = KeySchedule(conn.suite, dtls=False).next_traffic_secret(conn.secrets[label])
        for wrong in (conn.secrets[label], tls_update):
            layer = _decrypt_epoch4(conn, sender, wrong)
            for i in wanted:
                assert layer.decode_datagram(bytes.fromhex(datagrams[i]["hex"])) == []
            assert layer.stats.auth_failures == len(epoch4)
        # RFC 9147 §8: no records with the new keys before the KeyUpdate was acknowledged.
        ku_records = {(e, s) for e, s in ku.records}
        acked_at = min(
            a.datagram
            for a in acks
            if a.sender == _PEER[sender] and ku_records & set(decode_ack(a.payload))
        )
        assert min(r.datagram for r in epoch4) > acked_at


# -- ACKs ----------------------------------------------------------------------------------------

# Per connection: (ACK sender, ACK epoch, the messages carried by each acknowledged record).
# What the peers do, for the record: wolfSSL ACKs the client's last flight in epoch 3 (and
# both Finished and KeyUpdate in epoch 4); NSS as a client ACKs the server's flight late,
# leaving out the record with the server Finished in the full handshakes, and ACKs the first
# NewSessionTicket record only, not its retransmission (3, 3).
ACKS: dict[tuple[str, int], list[tuple[str, int, list[str]]]] = {
    ("nss-client-wolfssl-server-mlkem-1rtt", 0): [("server", 3, ["c:finished"])],
    ("nss-client-wolfssl-server-mtls", 0): [
        ("server", 3, ["c:certificate", "c:certificate_verify", "c:finished"])
    ],
    ("nss-client-wolfssl-server-resumption", 0): [
        ("server", 3, ["c:finished"]),
        (
            "client",
            3,
            [
                "s:server_hello",
                "s:encrypted_extensions",
                "s:certificate",
                "s:certificate_verify",
                "s:new_session_ticket",
            ],
        ),
    ],
    ("nss-client-wolfssl-server-resumption", 1): [
        ("server", 3, ["c:finished"]),
        (
            "client",
            3,
            ["s:server_hello", "s:encrypted_extensions", "s:finished", "s:new_session_ticket"],
        ),
    ],
    ("nss-nss-full", 0): [
        ("server", 3, ["c:finished"]),
        (
            "client",
            3,
            [
                "s:server_hello",
                "s:encrypted_extensions",
                "s:certificate",
                "s:certificate",  # the two records of the fragmented Certificate
                "s:certificate_verify",
            ],
        ),
    ],
    ("wolfssl-client-nss-server-hrr-mlkem", 0): [("server", 3, ["c:finished"])],
    ("wolfssl-client-nss-server-keyupdate", 0): [
        ("server", 3, ["c:finished"]),
        ("client", 3, ["s:key_update"]),
        ("server", 4, ["c:finished", "c:key_update"]),
    ],
}


@params
def test_acks_refer_to_handshake_records(path: Path) -> None:
    """RFC 9147 §7: ACKs name records that carried handshake messages we processed."""
    for conn in _connections(path):
        carried: dict[tuple[str, int, int], list[str]] = {}
        for m in conn.messages:
            for epoch, seq in m.records:
                carried.setdefault((m.sender, epoch, seq), []).append(m.label)
        seen = []
        for ack in (r for r in conn.records if r.content_type == ContentType.ack):
            numbers = decode_ack(ack.payload)
            assert numbers == sorted(numbers)  # §7: record_numbers in increasing order
            labels: list[str] = []
            for number in numbers:
                key = (_PEER[ack.sender], number.epoch, number.seq)
                # The record went through our reassembler and its fragments were kept.
                result = conn.results.get(key)
                assert result is not None, f"ACK for a non-handshake record {key}"
                assert result.fragments > 0 and result.acknowledgeable
                labels += carried.get(key, ["retransmission"])
            seen.append((ack.sender, ack.epoch, labels))
        assert seen == ACKS[path.stem, conn.index]


# -- what the ClientHellos say about the peers (PEERS.md) ---------------------------------------


def _hellos(conn: Connection) -> tuple[list[ClientHello], list[ServerHello]]:
    chs = [m.message for m in conn.all("client", ClientHello)]
    shs = [m.message for m in conn.all("server", ServerHello)]
    return (
        [c for c in chs if isinstance(c, ClientHello)],
        [s for s in shs if isinstance(s, ServerHello)],
    )


def _without_retry_fields(ch: ClientHello) -> ClientHello:
    ext = replace(ch.extensions, key_share_entries=None, cookie=None, pre_shared_key=None)
    return replace(ch, extensions=replace(ext, order=()))


@params
def test_hellos_are_dtls13(path: Path) -> None:
    for conn in _connections(path):
        chs, shs = _hellos(conn)
        for ch in chs:
            assert ch.legacy_version == DTLS12 and ch.legacy_cookie == b""  # RFC 9147 §5.3
            assert ch.extensions.supported_versions is not None
            assert DTLS13 in ch.extensions.supported_versions
            assert ch.random == chs[0].random  # §4.1.2: CH2 repeats CH1 but for listed fields
        sh = shs[-1]
        assert not sh.is_hello_retry_request
        assert all(s.is_hello_retry_request for s in shs[:-1])
        for s in shs:
            assert s.legacy_version == DTLS12 and s.extensions.selected_version == DTLS13
            assert s.cipher_suite == conn.suite.code  # §4.1.4: HRR and SH agree
            assert s.legacy_session_id_echo == chs[0].legacy_session_id
        assert sh.cipher_suite in chs[-1].cipher_suites
        assert sh.extensions.key_share_entry is not None
        offered = {k.group for k in chs[-1].extensions.key_share_entries or ()}
        assert sh.extensions.key_share_entry.group in offered
        if len(chs) == 2:
            ch1, ch2 = chs
            hrr = shs[0]
            # §4.2.2: the second ClientHello echoes the HRR cookie.
            assert hrr.extensions.cookie and ch2.extensions.cookie == hrr.extensions.cookie
            # §4.1.2: only key_share, cookie, pre_shared_key may change (order aside).
            assert _without_retry_fields(ch2) == _without_retry_fields(ch1)
            if hrr.extensions.key_share_selected_group is not None:
                group = hrr.extensions.key_share_selected_group
                assert [k.group for k in ch2.extensions.key_share_entries or ()] == [group]


NSS_DEFAULT_CLIENT = ["nss-nss-full", "nss-client-wolfssl-server-mlkem-1rtt"]
NSS_DEFAULT_CLIENT += ["nss-client-wolfssl-server-mtls"]


@pytest.mark.parametrize("stem", NSS_DEFAULT_CLIENT)
def test_nss_client_hello_offers_mlkem_hybrid(stem: str) -> None:
    """PEERS.md §2: NSS's only key share is X25519MLKEM768 (1,216 B); versions hold 0xfefc."""
    (conn,) = _connections(CAPTURE_DIR / f"{stem}.json")
    chs, shs = _hellos(conn)
    (ch,) = chs
    assert ch.extensions.key_share_entries is not None
    assert [(k.group, len(k.key_exchange)) for k in ch.extensions.key_share_entries] == [
        (NamedGroup.X25519MLKEM768, 1184 + 32)
    ]
    assert ch.extensions.supported_groups is not None
    assert ch.extensions.supported_groups[0] == NamedGroup.X25519MLKEM768
    assert ch.extensions.supported_versions == (DTLS13,)
    # The server's share: ML-KEM-768 ciphertext (1,088) || X25519 (32).
    share = shs[-1].extensions.key_share_entry
    assert share is not None
    assert (share.group, len(share.key_exchange)) == (NamedGroup.X25519MLKEM768, 1088 + 32)
    assert len(shs) == 1  # no HRR: the server accepted the share


@pytest.mark.parametrize("path", [HRR_MLKEM, KEYUPDATE], ids=lambda p: p.stem)
def test_wolfssl_client_gets_hrr_with_cookie(path: Path) -> None:
    """PEERS.md: wolfSSL offers P-256 + ffdhe2048; NSS answers HRR to X25519MLKEM768 with a
    114-byte cookie; the second ClientHello carries the hybrid share and is fragmented."""
    (conn,) = _connections(path)
    (ch1, ch2), (hrr, sh) = _hellos(conn)
    assert [(k.group, len(k.key_exchange)) for k in ch1.extensions.key_share_entries or ()] == [
        (NamedGroup.secp256r1, 65),
        (0x0100, 256),  # ffdhe2048 (RFC 7919)
    ]
    assert ch1.extensions.supported_versions == (DTLS13,)
    assert hrr.is_hello_retry_request
    assert hrr.extensions.key_share_selected_group == NamedGroup.X25519MLKEM768
    assert hrr.extensions.cookie is not None and len(hrr.extensions.cookie) == 114
    assert ch1.extensions.cookie is None and ch2.extensions.cookie == hrr.extensions.cookie
    assert [(k.group, len(k.key_exchange)) for k in ch2.extensions.key_share_entries or ()] == [
        (NamedGroup.X25519MLKEM768, 1216)
    ]
    assert sh.extensions.key_share_entry is not None
    assert sh.extensions.key_share_entry.group == NamedGroup.X25519MLKEM768
    assert len(conn.all("client", ClientHello)[1].records) == 2


def test_wolfssl_server_cookie_only_hrr_and_resumption() -> None:
    """PEERS.md §1/§3: the wolfSSL server's HRR is cookie-only (extensions 43, 44). The second
    connection resumes with the first one's ticket (RFC 8446 §4.2.11, §4.6.1)."""
    conn0, conn1 = _connections(RESUMPTION)
    datagrams = json.loads(RESUMPTION.read_text())["datagrams"]
    for conn in (conn0, conn1):
        (ch1, ch2), (hrr, _) = _hellos(conn)
        assert hrr.extensions.order == (43, 44)
        assert hrr.extensions.key_share_selected_group is None
        assert ch2.extensions.cookie == hrr.extensions.cookie
        # NSS with -I x25519,P256: x25519 share only, no ML-KEM.
        assert ch1.extensions.supported_groups == (NamedGroup.x25519, NamedGroup.secp256r1)
        assert [k.group for k in ch1.extensions.key_share_entries or ()] == [NamedGroup.x25519]
    assert not _hellos(conn0)[0][0].extensions.pre_shared_key
    ticket = conn0.first("server", NewSessionTicket)
    assert isinstance(ticket.message, NewSessionTicket)
    t_ticket = datagrams[ticket.datagrams[-1]]["t"]
    for ch_msg in conn1.all("client", ClientHello):
        ch = ch_msg.message
        assert isinstance(ch, ClientHello)
        psk = ch.extensions.pre_shared_key
        assert psk is not None and ch.extensions.order[-1] == 41  # last (§4.2.11)
        (identity,) = psk.identities
        assert identity.identity == ticket.message.ticket
        # §4.2.11.1: obfuscated_ticket_age = age in ms + ticket_age_add (mod 2^32).
        age = (identity.obfuscated_ticket_age - ticket.message.ticket_age_add) % 2**32
        elapsed_ms = (datagrams[ch_msg.datagrams[0]]["t"] - t_ticket) * 1000
        assert abs(age - elapsed_ms) < 10
        (binder,) = psk.binders
        assert len(binder) == conn1.suite.hash_len
        truncated = client_hello_truncated_for_binders(ch_msg.raw, dtls=True)
        assert truncated == ch_msg.raw[: -(2 + 1 + len(binder))]
    _, (_, sh1) = _hellos(conn1)
    assert sh1.extensions.selected_identity == 0
    assert sh1.extensions.key_share_entry is not None  # psk_dhe_ke
    assert not conn1.all("server", Certificate)
