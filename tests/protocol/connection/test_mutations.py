"""Corrupt valid TLS 1.3 handshakes byte by byte; every corruption must end in a proper alert.

A reference handshake between our client and server is recorded per scenario (fixed configs;
Ed25519 certificates, so every run's flights have exactly the reference lengths and one byte
map serves all runs). For every byte of every flight a fresh client/server pair is driven up
to that flight, the byte is corrupted in transit (XOR 0x01 and 0xFF), and the exchange runs on
until nothing moves. RFC 8446 §6.2 leaves three acceptable endings:

* the handshake completes identically on both sides -- only for bytes nobody may check
  (legacy_record_version of records read before any key, §5.1);
* a side detects the corruption: exactly one ``ConnectionFailed`` with the alert that fits the
  corrupted field (the rule tables below), the connection stays "failed" (receive_data returns
  nothing, send_data raises), the alert record it queued is one well-formed fatal alert,
  protected iff it had write keys, and the peer reports ``ConnectionFailed(by_peer=True)`` with
  the same alert -- unless the corruption left the two sides with different keys, so the peer
  cannot read the alert (and says bad_record_mac);
* a length grew, so the stream is merely incomplete: nothing happens until more bytes come,
  and then it fails with an alert.

Corrupting ciphertext only exercises the AEAD, so the encrypted messages are also corrupted
*before* their sender protects them (its ``_queue_handshake`` is wrapped): that reaches the
parsers and checks of EncryptedExtensions, Certificate, CertificateVerify and Finished. Every
handshake message is also truncated at every length (lengths fixed up), every flight is cut in
two at every length (which must change nothing), and hypothesis throws random corruption and
garbage at endpoints in every state.
"""

from __future__ import annotations

import fnmatch
import struct
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handshake.alerts import AlertDescription as AD
from handshake.extensions import ExtensionType
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
from protocol.errors import ConnectionStateError
from protocol.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
)
from protocol.pki import PKI
from tests.conftest import NOW

Side = Literal["client", "server"]
OTHER: dict[Side, Side] = {"client": "server", "server": "client"}
FLIPS = (0x01, 0xFF)

# Corrupt certificates make cryptography warn (e.g. about a negative serial number).
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

# --- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    client: dict[str, Any]
    server: dict[str, Any]
    mutual: bool = False
    every_byte: bool = True  # False: long fields are sampled (see ``positions``)


BASIC = Scenario(
    "basic",
    client={"groups": ("x25519",), "cipher_suites": ("TLS_AES_128_GCM_SHA256",)},
    server={},
)
# HelloRetryRequest (the client's x25519 share is not what the server wants), a SHA-384 suite
# and client authentication: five flights, protected messages in both directions.
RETRY_MUTUAL = Scenario(
    "retry-mtls",
    client={"groups": ("x25519", "secp256r1"), "cipher_suites": ("TLS_AES_256_GCM_SHA384",)},
    server={"groups": ("secp256r1",)},
    mutual=True,
    every_byte=False,
)
SCENARIOS = {s.name: s for s in (BASIC, RETRY_MUTUAL)}
# (scenario, flight index): the handshake flights, then the server's post-handshake flight
# (NewSessionTicket), which a server may or may not send.
HANDSHAKE_FLIGHTS = {"basic": 3, "retry-mtls": 5}
FLIGHTS = [(name, k) for name, n in HANDSHAKE_FLIGHTS.items() for k in range(n + 1)]


@dataclass(frozen=True)
class Configs:
    client: ClientConfig
    server: ServerConfig


def make_configs(pki: Path, scenario: Scenario) -> Configs:
    client: dict[str, Any] = {"server_name": "localhost", "cafile": pki / "ca.pem"}
    server: dict[str, Any] = {"certfile": pki / "server.pem", "keyfile": pki / "server.key"}
    if scenario.mutual:
        client.update(certfile=pki / "client.pem", keyfile=pki / "client.key")
        server.update(cafile=pki / "ca.pem", verify_client=True)
    return Configs(
        ClientConfig(**{**client, **scenario.client}),
        ServerConfig(**{**server, **scenario.server}),
    )


# --- driving a pair -------------------------------------------------------------------------

Tamper = Callable[[Side, bytes], bytes]


class Run:
    """A fresh client/server pair pumped flight by flight. A test can take any flight out of
    the pump (``advance``) and deliver what it likes instead, or have messages altered before
    their sender frames and protects them (``tamper``)."""

    def __init__(self, configs: Configs, tamper: Tamper | None = None) -> None:
        self.conns: dict[Side, TLSConnection] = {
            "client": TLSClientConnection(configs.client),
            "server": TLSServerConnection(configs.server),
        }
        self.events: list[tuple[Side, Event]] = []  # in the order they happened
        self.wire: list[tuple[Side, bytes]] = []  # every flight, as its sender produced it
        self._turn: Side = "client"
        if tamper is not None:
            for side, conn in self.conns.items():
                _wrap_queue_handshake(conn, side, tamper)

    def receive(self, side: Side, data: bytes) -> None:
        self.events += [(side, e) for e in self.conns[side].receive_data(data, NOW)]
        self._turn = side

    def _next_flight(self) -> tuple[Side, bytes] | None:
        for _ in range(2):
            side = self._turn
            self._turn = OTHER[side]
            data = self.conns[side].data_to_send()
            if data:
                self.wire.append((side, data))
                return side, data
        return None

    def advance(self, index: int) -> tuple[Side, bytes]:
        """Deliver the flights before ``index``; return flight ``index`` undelivered."""
        while (flight := self._next_flight()) is not None:
            if len(self.wire) == index + 1:
                return flight
            self.receive(OTHER[flight[0]], flight[1])
        raise AssertionError(f"the exchange ended before flight {index}")

    def pump(self) -> None:
        """Deliver flights alternately until neither side has anything to send."""
        while (flight := self._next_flight()) is not None:
            self.receive(OTHER[flight[0]], flight[1])

    def of(self, side: Side, kind: type) -> list[Any]:
        return [e for s, e in self.events if s == side and isinstance(e, kind)]

    def failures(self) -> list[tuple[Side, ConnectionFailed]]:
        return [(s, e) for s, e in self.events if isinstance(e, ConnectionFailed)]

    def completed(self) -> bool:
        return bool(self.of("client", HandshakeComplete) and self.of("server", HandshakeComplete))


def _wrap_queue_handshake(conn: TLSConnection, side: Side, tamper: Tamper) -> None:
    # Every handshake message a connection sends passes here before it is framed and
    # protected; the sender's transcript already holds the original.
    original = conn._queue_handshake

    def queue(message: bytes) -> None:
        original(tamper(side, message))

    conn._queue_handshake = queue  # type: ignore[method-assign]


def tamper_nth(index: int, change: Callable[[bytes], bytes]) -> Tamper:
    """Alter the ``index``-th handshake message sent (both sides counted together)."""
    count = 0

    def tamper(side: Side, message: bytes) -> bytes:
        nonlocal count
        count += 1
        return change(message) if count - 1 == index else message

    return tamper


def flip(data: bytes, pos: int, mask: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


# --- what the bytes are: a label per byte -----------------------------------------------------

_EXT_NAMES = {int(e): e.name for e in ExtensionType}
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_MESSAGE_NAMES = {
    1: "client_hello",
    2: "server_hello",
    4: "new_session_ticket",
    8: "encrypted_extensions",
    11: "certificate",
    13: "certificate_request",
    15: "certificate_verify",
    20: "finished",
}


class Labels(list[str]):
    def add(self, label: str, n: int) -> None:
        self.extend([label] * n)


def dissect_flight(data: bytes) -> list[str]:
    """Label every byte of a TLS record stream (our flights keep whole messages in a record)."""
    out = Labels()
    pos = 0
    while pos < len(data):
        ctype, _, length = struct.unpack_from(">BHH", data, pos)
        kind = {20: "ccs", 22: "plain", 23: "protected"}[ctype]
        out.add(f"{kind}.record.type", 1)
        out.add(f"{kind}.record.version.major", 1)
        out.add(f"{kind}.record.version.minor", 1)
        out.add(f"{kind}.record.length", 2)
        body = data[pos + 5 : pos + 5 + length]
        if kind == "plain":
            offset = 0
            while offset < len(body):
                size = 4 + int.from_bytes(body[offset + 1 : offset + 4], "big")
                out += dissect_message(body[offset : offset + size])
                offset += size
        elif kind == "protected":
            out.add("protected.ciphertext", length - 16)
            out.add("protected.tag", 16)
        else:
            out.add("ccs.body", length)
        pos += 5 + length
    assert len(out) == len(data)
    return out


def dissect_message(message: bytes) -> list[str]:
    """Label every byte of one handshake message (TLS form)."""
    out = Labels()
    msg_type, body = message[0], message[4:]
    name = _MESSAGE_NAMES[msg_type]
    if msg_type == 2 and body[2:34] == _HRR_RANDOM:
        name = "hello_retry_request"
    out.add(f"{name}.type", 1)
    out.add(f"{name}.length", 3)
    if msg_type in (1, 2):
        _dissect_hello(body, name, out)
    elif msg_type == 8:
        _dissect_extensions(body, 0, name, out)
    elif msg_type in (11, 13):
        out.add(f"{name}.context.length", 1)
        out.add(f"{name}.context", body[0])
        pos = 1 + body[0]
        if msg_type == 13:
            _dissect_extensions(body, pos, name, out)
        else:
            out.add(f"{name}.list.length", 3)
            pos += 3
            while pos < len(body):
                size = int.from_bytes(body[pos : pos + 3], "big")
                out.add(f"{name}.cert_data.length", 3)
                out.add(f"{name}.cert_data", size)
                pos = _dissect_extensions(body, pos + 3 + size, f"{name}.entry", out)
    elif msg_type == 4:
        out.add(f"{name}.lifetime", 4)
        out.add(f"{name}.age_add", 4)
        out.add(f"{name}.nonce.length", 1)
        out.add(f"{name}.nonce", body[8])
        pos = 9 + body[8]
        size = int.from_bytes(body[pos : pos + 2], "big")
        out.add(f"{name}.ticket.length", 2)
        out.add(f"{name}.ticket", size)
        _dissect_extensions(body, pos + 2 + size, name, out)
    elif msg_type == 15:
        out.add(f"{name}.algorithm", 2)
        out.add(f"{name}.signature.length", 2)
        out.add(f"{name}.signature", len(body) - 4)
    else:
        out.add(f"{name}.verify_data", len(body))
    assert len(out) == len(message)
    return out


def _dissect_hello(body: bytes, name: str, out: Labels) -> None:
    out.add(f"{name}.legacy_version", 2)
    out.add(f"{name}.random", 32)
    out.add(f"{name}.session_id.length", 1)
    out.add(f"{name}.session_id", body[34])
    pos = 35 + body[34]
    if name == "client_hello":
        suites = int.from_bytes(body[pos : pos + 2], "big")
        out.add(f"{name}.cipher_suites.length", 2)
        out.add(f"{name}.cipher_suites", suites)
        pos += 2 + suites
        out.add(f"{name}.compression.length", 1)
        out.add(f"{name}.compression", body[pos])
        pos += 1 + body[pos]
    else:
        out.add(f"{name}.cipher_suite", 2)
        out.add(f"{name}.compression", 1)
        pos += 3
    _dissect_extensions(body, pos, name, out)


def _dissect_extensions(body: bytes, pos: int, name: str, out: Labels) -> int:
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    out.add(f"{name}.extensions.length", 2)
    pos += 2
    while pos < end:
        ext_type, ext_len = struct.unpack_from(">HH", body, pos)
        ext = f"{name}.ext.{_EXT_NAMES.get(ext_type, ext_type)}"
        out.add(f"{ext}.type", 2)
        out.add(f"{ext}.length", 2)
        out.add(f"{ext}.body", ext_len)
        pos += 4 + ext_len
    return end


def positions(labels: list[str], every_byte: bool) -> Iterator[int]:
    """Every position, or: every byte of short fields, and of long ones (ciphertext,
    certificates, key shares, signatures) the first and last 16 bytes and every 7th."""
    start = 0
    while start < len(labels):
        end = start
        while end < len(labels) and labels[end] == labels[start]:
            end += 1
        for pos in range(start, end):
            edge = pos < start + 16 or pos >= end - 16
            if every_byte or end - start <= 40 or edge or (pos - start) % 7 == 0:
                yield pos
        start = end


# --- which alert fits which field (RFC 8446 §6.2) ----------------------------------------------
# Outcomes are written "complete", "stall" (a length grew: the receiver waits), or
# "R:<alert>" / "S:<alert>": detected by the receiver of the corrupted bytes, or by their
# sender (the receiver accepted them; the transcripts differ, and the sender sees it when it
# cannot deprotect the answer, or the receiver echoed the corrupted field back).
# The first matching pattern wins.

_FRAMING = {"R:unexpected_message", "R:record_overflow"}
_CH_EXTENSION = {
    "R:decode_error",
    "R:illegal_parameter",
    "R:handshake_failure",  # e.g. ed25519 removed from signature_algorithms
    "R:protocol_version",  # supported_versions no longer names TLS 1.3
    "R:missing_extension",  # a mandatory extension's type was changed
    "S:bad_record_mac",  # an ignorable change (an unknown type, another signature scheme...)
}
_HANDSHAKE_LENGTH = {"R:decode_error", "R:unexpected_message", "R:illegal_parameter", "stall"}

WIRE_RULES: list[tuple[str, set[str]]] = [
    # Record layer (§5.1, §5.2): after keys, anything but an intact record is fatal.
    ("protected.ciphertext", {"R:bad_record_mac"}),
    ("protected.tag", {"R:bad_record_mac"}),
    ("protected.record.type", {"R:unexpected_message"}),
    ("protected.record.version.*", {"R:protocol_version"}),
    ("protected.record.length", {"R:bad_record_mac", "R:record_overflow", "stall"}),
    ("ccs.record.type", {"R:unexpected_message", "R:decode_error"}),  # 0x15: a 1-byte alert
    ("ccs.record.version.major", {"R:protocol_version"}),
    ("ccs.record.version.minor", {"complete", "R:protocol_version"}),  # free only before keys
    ("ccs.record.length", _FRAMING),
    ("ccs.body", {"R:unexpected_message"}),  # §5: only the single byte 0x01 is dropped
    ("plain.record.type", {"R:unexpected_message"}),
    ("plain.record.version.major", {"R:protocol_version"}),
    ("plain.record.version.minor", {"complete"}),  # §5.1: ignored in plaintext records
    ("plain.record.length", _FRAMING | {"stall"}),
    # Hello messages: every byte is in the transcript, so nothing may complete.
    ("*.ext.*.length", {"R:decode_error"}),
    ("*.extensions.length", {"R:decode_error"}),
    ("*.session_id.length", {"R:decode_error"}),
    ("*.cipher_suites.length", {"R:decode_error"}),
    ("*.compression.length", {"R:decode_error"}),
    ("client_hello.ext.*", _CH_EXTENSION),
    ("client_hello.legacy_version", {"S:bad_record_mac"}),  # §4.2.1: ignored, but hashed
    # a retried ClientHello must repeat random and session id (§4.1.2)
    ("client_hello.random", {"S:bad_record_mac", "R:illegal_parameter"}),
    ("client_hello.session_id", {"S:illegal_parameter", "R:illegal_parameter"}),
    # no suite in common, or the server picks another offered suite the client never sent
    (
        "client_hello.cipher_suites",
        {"R:handshake_failure", "R:illegal_parameter"} | {"S:illegal_parameter"},
    ),
    ("client_hello.compression", {"R:illegal_parameter"}),  # §4.1.2: must be [0]
    (
        "server_hello.ext.key_share.body",
        {"R:illegal_parameter", "R:decode_error", "R:bad_record_mac"},
    ),
    ("server_hello.ext.supported_versions.body", {"R:illegal_parameter"}),  # §4.2.1
    (
        "server_hello.ext.*.type",
        {"R:unsupported_extension", "R:illegal_parameter", "R:protocol_version"},
    ),
    ("server_hello.legacy_version", {"R:protocol_version"}),
    ("server_hello.random", {"R:bad_record_mac"}),  # different keys
    ("server_hello.session_id", {"R:illegal_parameter"}),  # §4.1.3 echo
    ("server_hello.cipher_suite", {"R:illegal_parameter"}),
    ("server_hello.compression", {"R:illegal_parameter"}),
    ("hello_retry_request.ext.*.type", {"R:unsupported_extension", "R:illegal_parameter"}),
    ("hello_retry_request.ext.*.body", {"R:illegal_parameter"}),  # group not offered/sent
    ("hello_retry_request.legacy_version", {"R:protocol_version"}),
    # no longer the magic value: a ServerHello whose key_share holds only a group
    ("hello_retry_request.random", {"R:decode_error"}),
    ("hello_retry_request.session_id", {"R:illegal_parameter"}),
    ("hello_retry_request.cipher_suite", {"R:illegal_parameter"}),
    ("hello_retry_request.compression", {"R:illegal_parameter"}),
    ("*.type", {"R:unexpected_message"}),
    ("*.length", _HANDSHAKE_LENGTH),
]

# Protected messages corrupted before protection. The receiver always detects it: either in
# the message itself or, if it accepted it, at CertificateVerify/Finished (decrypt_error).
MESSAGE_RULES: list[tuple[str, set[str]]] = [
    ("*.ext.*.length", {"R:decode_error"}),
    ("*.extensions.length", {"R:decode_error"}),
    ("encrypted_extensions.ext.*", {"R:unsupported_extension", "R:illegal_parameter"}),
    # certificate_authorities retyped to an unknown type is ignored (§4.2), which leaves
    # only the transcript to notice: decrypt_error at the next CertificateVerify/Finished.
    (
        "certificate_request.ext.certificate_authorities.type",
        {"R:illegal_parameter", "R:decrypt_error"},
    ),
    ("certificate_request.ext.*.type", {"R:missing_extension", "R:illegal_parameter"}),
    ("certificate_request.ext.*.body", {"R:decode_error", "R:decrypt_error"}),
    ("*.context.length", {"R:decode_error"}),
    ("certificate.list.length", {"R:decode_error"}),
    ("certificate.cert_data.length", {"R:decode_error"}),
    (
        "certificate.cert_data",
        {
            "R:bad_certificate",
            "R:unknown_ca",  # the issuer name changed
            "R:unsupported_certificate",
            "R:certificate_expired",  # a validity date changed (checked before signatures)
            # DER the verifier tolerates (e.g. the unused-bits octet of the signature BIT
            # STRING): the certificate passes, the transcript does not.
            "R:decrypt_error",
        },
    ),
    ("certificate_verify.algorithm", {"R:illegal_parameter"}),  # §4.4.3
    ("certificate_verify.signature.length", {"R:decode_error"}),
    ("certificate_verify.signature", {"R:decrypt_error"}),  # §4.4.3
    ("finished.verify_data", {"R:decrypt_error"}),  # §4.4.4
    ("*.type", {"R:unexpected_message"}),
    ("*.length", _HANDSHAKE_LENGTH),
]

# Exceptions that escape receive_data and are known bugs: counted, not hidden (none now).
KNOWN_ESCAPES: dict[type[BaseException], str] = {}


def allowed(rules: list[tuple[str, set[str]]], label: str) -> set[str]:
    for pattern, outcomes in rules:
        if fnmatch.fnmatchcase(label, pattern):
            return outcomes
    raise AssertionError(f"no rule for {label}")


# --- judging one exchange -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    result: str  # "complete", "R:<alert>" or "S:<alert>"
    stalled: bool
    reason: str = ""

    def __str__(self) -> str:
        return ("stall -> " if self.stalled else "") + self.result


class Reference:
    """The uncorrupted handshake of a scenario: its flights, messages and parameters."""

    def __init__(self, configs: Configs) -> None:
        self.configs = configs
        sent: list[tuple[Side, bytes]] = []

        def record(side: Side, message: bytes) -> bytes:
            sent.append((side, message))
            return message

        run = Run(configs, record)
        run.pump()
        assert run.completed() and not run.failures(), run.events
        self.wire = run.wire
        self.messages = sent
        self.params = {side: negotiated(run, side) for side in OTHER}
        assert self.params["client"] == self.params["server"]
        self.labels = [dissect_flight(data) for _, data in run.wire]


def negotiated(run: Run, side: Side) -> tuple[Any, ...]:
    done = run.of(side, HandshakeComplete)
    assert len(done) == 1, run.events
    e = done[0]
    return (e.version, e.cipher_suite, e.group, e.signature_scheme, e.alpn, e.hello_retry)


def judge(run: Run, reference: Reference, receiver: Side) -> Outcome:
    """Assert every rule for an exchange whose bytes to ``receiver`` were corrupted, once it
    has come to rest, and say how it ended."""
    stalled = False
    if not run.failures() and (not run.completed() or run.conns[receiver]._records.pending()):
        # An incomplete stream: the receiver waits for the rest and says nothing meanwhile.
        stalled = True
        assert run.conns[receiver].state != "failed"
        assert not run.of(receiver, ConnectionFailed)
        # Any further bytes end the wait: a record of zeros is never acceptable.
        run.receive(receiver, bytes(2**14 + 256 + 5))
        run.pump()
        assert run.failures(), "more bytes did not end the stalled handshake"
    failures = run.failures()
    if not failures:
        for side in OTHER:
            assert negotiated(run, side) == reference.params[side]
            assert run.conns[side].state == "connected"
        check_application_data(run)
        return Outcome("complete", stalled)
    detector, failed = failures[0]
    assert not failed.by_peer, failures
    assert failed.alert is not None
    check_alert_record(run, detector, failed.alert)
    peer = OTHER[detector]
    assert [s for s, _ in failures] == [detector, peer], failures
    seen = failures[1][1]
    if seen.by_peer:
        assert seen.alert is failed.alert, failures
    else:
        # Only an alert protected under keys the peer does not share may go unread.
        assert seen.alert is AD.bad_record_mac, failures
        write = run.conns[detector]._records.write_cipher
        read = run.conns[peer]._records.read_cipher
        assert write is not None and read is not None, failures
        assert write.nonce(0) != read.nonce(0), (
            "the peer could not read an alert it shares keys for"
        )
    for side in OTHER:
        check_dead(run.conns[side])
    role = "R" if detector == receiver else "S"
    return Outcome(f"{role}:{failed.alert.name}", stalled, failed.reason)


def check_dead(conn: TLSConnection) -> None:
    """RFC 8446 §6.2: after a fatal alert nothing more is received or sent."""
    assert conn.state == "failed"
    assert conn.receive_data(b"\x16\x03\x03\x00\x01\x01", NOW) == []
    assert conn.receive_data(b"\x15\x03\x03\x00\x02\x02\x28", NOW) == []
    with pytest.raises(ConnectionStateError):
        conn.send_data(b"x")
    assert conn.data_to_send() == b""


def check_alert_record(run: Run, detector: Side, alert: AD) -> None:
    sent = [data for side, data in run.wire if side == detector]
    assert sent, "the alert was never sent"
    check_alert_sent(run.conns[detector], sent[-1], alert)


def check_alert_sent(conn: TLSConnection, sent: bytes, alert: AD) -> None:
    """The last record sent is one fatal alert, protected iff the sender had keys."""
    assert sent, "the alert was never sent"
    record = split_records(sent)[-1]
    records = conn._records
    cipher = records.write_cipher
    if cipher is None:
        assert record == b"\x15\x03\x03\x00\x02\x02" + bytes([alert]), record.hex()
        return
    assert record[:5] == b"\x17\x03\x03" + (3 + cipher.tag_len).to_bytes(2, "big"), record.hex()
    inner = cipher.open(records.write_seq - 1, record[:5], record[5:])
    assert inner == bytes([2, alert, 21]), inner.hex()


def split_records(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        end = pos + 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
        out.append(data[pos:end])
        pos = end
    return out


def check_application_data(run: Run) -> None:
    client, server = run.conns["client"], run.conns["server"]
    label = b"EXPERIMENTAL mutation"
    assert client.export_keying_material(label, b"", 32) == (
        server.export_keying_material(label, b"", 32)
    )
    client.send_data(b"ping")
    server.send_data(b"pong")
    run.pump()
    assert [e.data for e in run.of("server", ApplicationData)] == [b"ping"]
    assert [e.data for e in run.of("client", ApplicationData)] == [b"pong"]


class Sweep:
    """Runs many corruptions, checks each outcome against the rules, collects the misfits."""

    def __init__(self, reference: Reference, rules: list[tuple[str, set[str]]]) -> None:
        self.reference = reference
        self.rules = rules
        self.count = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.problems: list[str] = []
        self.known: Counter[str] = Counter()

    def check(self, label: str, what: str, receiver: Side, run: Callable[[], Run]) -> None:
        self.count += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                outcome = judge(run(), self.reference, receiver)
        except tuple(KNOWN_ESCAPES) as exc:
            self.known[KNOWN_ESCAPES[type(exc)]] += 1
            return
        except Exception:
            lines = traceback.format_exc().strip().splitlines()
            self.problems.append(f"{what} [{label}]: {' | '.join(lines[-3:])}")
            return
        self.outcomes[(label, str(outcome))] += 1
        expected = allowed(self.rules, label)
        if outcome.result not in expected or (outcome.stalled and "stall" not in expected):
            self.problems.append(
                f"{what} [{label}]: {outcome} ({outcome.reason}); expected one of "
                f"{sorted(expected)}"
            )

    def assert_clean(self) -> None:
        kinds = Counter(result for (_, result), n in self.outcomes.items() for _ in range(n))
        print(f"\n{self.count} corruptions: {dict(kinds)}; known bugs: {dict(self.known)}")
        assert not self.problems, f"{len(self.problems)} misfits:\n" + "\n".join(self.problems[:30])


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ed25519_pki(pki_factory: Callable[..., tuple[PKI, Path]]) -> Path:
    return pki_factory("ed25519")[1]


@pytest.fixture(scope="module")
def references(ed25519_pki: Path) -> dict[str, Reference]:
    return {
        name: Reference(make_configs(ed25519_pki, scenario)) for name, scenario in SCENARIOS.items()
    }


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_reference_flights_are_reproducible(references: dict[str, Reference], name: str) -> None:
    reference = references[name]
    again = Reference(reference.configs)
    assert [(s, len(d)) for s, d in again.wire] == [(s, len(d)) for s, d in reference.wire]
    assert again.labels == reference.labels
    assert len(reference.wire) in (HANDSHAKE_FLIGHTS[name], HANDSHAKE_FLIGHTS[name] + 1)
    assert [side for side, _ in reference.wire[:2]] == ["client", "server"]


def flight_of(reference: Reference, flight: int) -> tuple[Side, bytes, list[str]]:
    # The server's tickets form the flight after the handshake: it must be there.
    assert flight < len(reference.wire), "the server sent nothing after the handshake"
    sender, data = reference.wire[flight]
    return sender, data, reference.labels[flight]


@pytest.mark.parametrize(("name", "flight"), FLIGHTS)
def test_corrupt_every_byte_on_the_wire(
    references: dict[str, Reference], name: str, flight: int
) -> None:
    reference = references[name]
    sender, data, labels = flight_of(reference, flight)
    sweep = Sweep(reference, WIRE_RULES)
    for pos in positions(labels, SCENARIOS[name].every_byte):
        for mask in FLIPS:

            def corrupted(pos: int = pos, mask: int = mask) -> Run:
                run = Run(reference.configs)
                side, live = run.advance(flight)
                assert side == sender and len(live) == len(data)
                run.receive(OTHER[side], flip(live, pos, mask))
                run.pump()
                return run

            sweep.check(
                labels[pos], f"flight {flight} byte {pos} ^{mask:#04x}", OTHER[sender], corrupted
            )
    sweep.assert_clean()


# Protected messages of each scenario, by their index among all messages sent.
PROTECTED_MESSAGES = [
    ("basic", 2, "encrypted_extensions"),
    ("basic", 3, "certificate"),
    ("basic", 4, "certificate_verify"),
    ("basic", 5, "finished"),
    ("basic", 6, "finished"),  # the client's
    ("retry-mtls", 4, "encrypted_extensions"),
    ("retry-mtls", 5, "certificate_request"),
    ("retry-mtls", 6, "certificate"),
    ("retry-mtls", 7, "certificate_verify"),
    ("retry-mtls", 8, "finished"),
    ("retry-mtls", 9, "certificate"),  # the client's
    ("retry-mtls", 10, "certificate_verify"),
    ("retry-mtls", 11, "finished"),
]


@pytest.mark.parametrize(("name", "index", "message"), PROTECTED_MESSAGES)
def test_corrupt_every_byte_of_protected_messages(
    references: dict[str, Reference], name: str, index: int, message: str
) -> None:
    reference = references[name]
    sender, original = reference.messages[index]
    labels = dissect_message(original)
    assert labels[0] == f"{message}.type"
    sweep = Sweep(reference, MESSAGE_RULES)
    for pos in positions(labels, SCENARIOS[name].every_byte):
        for mask in FLIPS:

            def corrupted(pos: int = pos, mask: int = mask) -> Run:
                run = Run(reference.configs, tamper_nth(index, lambda m: flip(m, pos, mask)))
                run.pump()
                return run

            sweep.check(labels[pos], f"{message} byte {pos} ^{mask:#04x}", OTHER[sender], corrupted)
    sweep.assert_clean()


TRUNCATION_RULES: list[tuple[str, set[str]]] = [
    # §4.1.2/§4.2.1: a hello without extensions cannot offer or select TLS 1.3.
    ("client_hello.no-extensions", {"R:protocol_version"}),
    ("server_hello.no-extensions", {"R:protocol_version"}),
    ("*", {"R:decode_error"}),
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_truncate_every_message(references: dict[str, Reference], name: str) -> None:
    """Each message cut short, its length fixed up: the syntax no longer holds (§6)."""
    reference = references[name]
    sweep = Sweep(reference, TRUNCATION_RULES)
    for index, (sender, original) in enumerate(reference.messages):
        labels = dissect_message(original)
        body = original[4:]
        for size in positions(labels[4:], every_byte=False):
            kind = labels[0].removesuffix(".type")
            label = f"{kind}.truncated"
            if (
                labels[4 + size] == f"{kind}.extensions.length"
                and labels[3 + size] != labels[4 + size]
            ):
                label = f"{kind}.no-extensions"
            short = original[:1] + size.to_bytes(3, "big") + body[:size]

            def truncated(index: int = index, short: bytes = short) -> Run:
                run = Run(reference.configs, tamper_nth(index, lambda _: short))
                run.pump()
                return run

            sweep.check(label, f"message {index} cut to {size}", OTHER[sender], truncated)
    sweep.assert_clean()


@pytest.mark.parametrize(("name", "flight"), FLIGHTS)
def test_cut_every_flight_in_two(references: dict[str, Reference], name: str, flight: int) -> None:
    """A flight delivered in two pieces, split anywhere: the first piece alone causes nothing
    (a valid prefix is never an error), the second completes the handshake."""
    reference = references[name]
    _, _, labels = flight_of(reference, flight)
    count = 0
    for cut in positions(labels, SCENARIOS[name].every_byte):
        if cut == 0:
            continue
        run = Run(reference.configs)
        sender, data = run.advance(flight)
        run.receive(OTHER[sender], data[:cut])
        assert not run.failures(), (cut, run.events)
        assert run.conns[OTHER[sender]].state != "failed"
        run.receive(OTHER[sender], data[cut:])
        run.pump()
        assert judge(run, reference, OTHER[sender]) == Outcome("complete", False), cut
        count += 1
    print(f"\n{count} cuts")


# --- random corruption and garbage (hypothesis) ---------------------------------------------

_ALL_WIRE_OUTCOMES = set().union(*(outcomes for _, outcomes in WIRE_RULES)) - {"stall"}
_FITTING = {o.split(":")[1] for o in _ALL_WIRE_OUTCOMES if ":" in o} | {
    "decrypt_error",
    "bad_certificate",
}

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SETTINGS
@given(data=st.data())
def test_random_corruptions_of_a_flight(
    references: dict[str, Reference], data: st.DataObject
) -> None:
    """Several bytes changed at once, anywhere in any flight of the basic handshake."""
    reference = references["basic"]
    flight = data.draw(st.integers(0, len(reference.wire) - 1), label="flight")
    sender, original = reference.wire[flight]
    labels = reference.labels[flight]
    edits = data.draw(
        st.dictionaries(
            st.integers(0, len(original) - 1), st.integers(0, 255), min_size=1, max_size=8
        ),
        label="edits",
    )
    run = Run(reference.configs)
    side, live = run.advance(flight)
    corrupted = bytearray(live)
    for pos, value in edits.items():
        corrupted[pos] = value
    run.receive(OTHER[side], bytes(corrupted))
    run.pump()
    outcome = judge(run, reference, OTHER[sender])
    changed = {labels[pos] for pos, value in edits.items() if live[pos] != value}
    if outcome.result == "complete":
        assert all("complete" in allowed(WIRE_RULES, label) for label in changed), changed
    else:
        assert outcome.result.split(":")[1] in _FITTING, (outcome, changed)


# Endpoints waiting in every state of the handshake, and after it.
STATES = [
    "server before ClientHello",
    "client before ServerHello",
    "client after ServerHello",  # handshake keys installed, the rest of the flight missing
    "server before Finished",
    "client connected",
    "server connected",
]


def run_to_state(reference: Reference, state: str) -> tuple[Run, Side]:
    run = Run(reference.configs)
    if state == "server before ClientHello":
        return run, "server"
    if state == "client before ServerHello":
        run.advance(0)  # the ClientHello is sent (and lost)
        return run, "client"
    if state == "client after ServerHello":
        _, flight = run.advance(1)
        plain = split_records(flight)[0] + split_records(flight)[1]  # ServerHello and CCS
        run.receive("client", plain)
        return run, "client"
    if state == "server before Finished":
        run.advance(2)
        return run, "server"
    run.pump()
    return run, "client" if state.startswith("client") else "server"


def garbage() -> st.SearchStrategy[bytes]:
    """Raw bytes, and bytes framed as records (and as handshake messages) so that they get
    past the first checks."""
    raw = st.binary(min_size=1, max_size=300)
    content_type = st.sampled_from([20, 21, 22, 23, 24, 0, 255])
    version = st.sampled_from([0x0303, 0x0301, 0x0304, 0x0300, 0xFEFD])
    record = st.builds(
        lambda t, v, body: struct.pack(">BHH", t, v, len(body)) + body, content_type, version, raw
    )
    msg_type = st.sampled_from([1, 2, 4, 5, 8, 11, 13, 15, 20, 24, 254, 9])
    handshake = st.builds(
        lambda t, body: (
            struct.pack(">BHHB", 22, 0x0303, len(body) + 4, t) + len(body).to_bytes(3, "big") + body
        ),
        msg_type,
        raw,
    )
    return st.one_of(raw, record, handshake, st.lists(record, min_size=2, max_size=4).map(b"".join))


@pytest.mark.parametrize("state", STATES)
@_SETTINGS
@given(junk=garbage())
def test_garbage_in_every_state(references: dict[str, Reference], state: str, junk: bytes) -> None:
    run, side = run_to_state(references["basic"], state)
    conn = run.conns[side]
    events = conn.receive_data(junk, NOW)  # must not raise, whatever the bytes
    allowed_events = (ConnectionFailed, ConnectionClosed, AlertReceived)
    assert all(isinstance(e, allowed_events) for e in events), events
    failures = [e for e in events if isinstance(e, ConnectionFailed)]
    assert len(failures) <= 1, events
    if conn.state not in ("failed", "closed"):
        # Not (yet) an error: a valid prefix, a dropped CCS or a user_canceled. More bytes of
        # zeros are never valid.
        assert not failures
        failures = [
            e for e in conn.receive_data(bytes(2**14 + 300), NOW) if isinstance(e, ConnectionFailed)
        ]
        assert len(failures) == 1
    if conn.state == "closed":
        return
    failed = failures[0]
    if not failed.by_peer:  # the garbage may also be a well-formed alert from the "peer"
        assert failed.alert is not None and failed.alert.name in _FITTING, failed
        check_alert_sent(conn, conn.data_to_send(), failed.alert)
    conn.data_to_send()
    check_dead(conn)


# --- corrupt certificates: once bugs, now regression tests ---------------------------------------

_X509_V3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT Version INTEGER 2 (v3), RFC 5280 §4.1


def _unknown_x509_version(message: bytes) -> bytes:
    at = message.index(_X509_V3) + len(_X509_V3) - 1
    return flip(message, at, 0x01)  # version 3 ("v4"): no such X.509 version


@pytest.mark.parametrize(("index", "receiver"), [(6, "client"), (9, "server")])
def test_certificate_with_unknown_x509_version_is_bad_certificate(
    references: dict[str, Reference], index: int, receiver: Side
) -> None:
    reference = references["retry-mtls"]
    assert reference.messages[index][1][0] == 11  # the server's / the client's Certificate
    run = Run(reference.configs, tamper_nth(index, _unknown_x509_version))
    run.pump()
    assert judge(run, reference, receiver).result == "R:bad_certificate"


def _unverified(pki: Path) -> Configs:
    configs = make_configs(pki, BASIC)
    client = ClientConfig(
        server_name="localhost",
        dangerously_skip_certificate_verification=True,
        **BASIC.client,
    )
    return Configs(client, configs.server)


# The leaf's SubjectPublicKeyInfo made unusable: an unknown algorithm OID (id-Ed25519
# 1.3.101.112 -> 1.3.100.112), or an ECDSA point that is not on the curve.
_BROKEN_KEYS = {
    "ed25519": (b"\x06\x03\x2b\x65\x70", 3, AD.unsupported_certificate),
    "ecdsa-p256": (b"\x03\x42\x00\x04", 4 + 63, AD.bad_certificate),
}


@pytest.mark.parametrize("key_type", _BROKEN_KEYS)
def test_unverified_certificate_with_unusable_key_fails_with_an_alert(
    pki_factory: Callable[..., tuple[PKI, Path]], key_type: str
) -> None:
    needle, offset, alert = _BROKEN_KEYS[key_type]
    configs = _unverified(pki_factory(key_type)[1])
    reference = Reference(configs)
    index = [m[0] for _, m in reference.messages].index(11)

    def break_key(message: bytes) -> bytes:
        return flip(message, message.index(needle) + offset, 0x01)

    run = Run(configs, tamper_nth(index, break_key))
    run.pump()
    assert judge(run, reference, "client").result == f"R:{alert.name}"


UNVERIFIED_RULES: list[tuple[str, set[str]]] = [
    (
        "certificate.cert_data",
        {
            "R:bad_certificate",  # does not parse
            "R:unsupported_certificate",  # a key TLS 1.3 cannot use
            "R:illegal_parameter",  # the key type changed: ed25519 no longer fits it
            "R:decrypt_error",  # another key, or the transcript differs
        },
    ),
    *MESSAGE_RULES,
]


def test_corrupt_every_byte_of_an_unverified_certificate(ed25519_pki: Path) -> None:
    """Without verification, nothing stands between a corrupt certificate and the parsers."""
    configs = _unverified(ed25519_pki)
    reference = Reference(configs)
    index = [m[0] for _, m in reference.messages].index(11)
    labels = dissect_message(reference.messages[index][1])
    sweep = Sweep(reference, UNVERIFIED_RULES)
    for pos in positions(labels, every_byte=True):
        for mask in FLIPS:

            def corrupted(pos: int = pos, mask: int = mask) -> Run:
                run = Run(configs, tamper_nth(index, lambda m: flip(m, pos, mask)))
                run.pump()
                return run

            sweep.check(labels[pos], f"certificate byte {pos} ^{mask:#04x}", "client", corrupted)
    assert not sweep.known, "no escape is acceptable here"
    sweep.assert_clean()
