"""Targeted protocol violations, each answered with the exact alert RFC 8446 §6 / RFC 9147 names.

Messages a peer would never send are built by hand with ``handshake.messages`` and fed to a
connection directly: ClientHellos to a ``TLSServerConnection``, plaintext ServerHellos to a
client that has sent its ClientHello. Protected messages need the server's keys, so a real
server runs and one of its messages is replaced just before it frames it (its
``_queue_handshake``); the server's own transcript keeps the original.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription as AD
from handshake.groups import NamedGroup, generate_key_share
from handshake.messages import (
    DOWNGRADE_TLS11,
    DOWNGRADE_TLS12,
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Extensions,
    Finished,
    KeyShareEntry,
    KeyUpdate,
    ServerHello,
    decode_message,
    encode_message,
)
from handshake.signatures import SignatureScheme
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSClientConnection, DTLSServerConnection
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
from protocol.dtls.fragments import fragment_message
from protocol.errors import ConnectionStateError
from protocol.events import ApplicationData, ConnectionFailed, Event, HandshakeComplete
from protocol.pki import PKI
from records.content_types import ContentType
from records.dtls_header import encode_plaintext
from tests.conftest import NOW

TLS13, DTLS13 = 0x0304, 0xFEFC
AES128 = 0x1301
X25519, P256 = int(NamedGroup.x25519), int(NamedGroup.secp256r1)
ED25519 = int(SignatureScheme.ed25519)

# --- helpers ------------------------------------------------------------------------------


def record(payload: bytes, content_type: int = 22, version: int = 0x0303) -> bytes:
    """A TLSPlaintext record (RFC 8446 §5.1) around ``payload``."""
    return struct.pack(">BHH", content_type, version, len(payload)) + payload


def hello_extensions(**changes: Any) -> Extensions:
    """A complete TLS 1.3 ClientHello extension set (x25519 share), with ``changes``."""
    share = generate_key_share(X25519)
    base = Extensions(
        server_name="localhost",
        supported_groups=(X25519, P256),
        signature_algorithms=(int(SignatureScheme.ecdsa_secp256r1_sha256), ED25519),
        key_share_entries=(KeyShareEntry(X25519, share.public),),
        supported_versions=(TLS13,),
    )
    return replace(base, **changes)


def client_hello(dtls: bool = False, **changes: Any) -> ClientHello:
    fields: dict[str, Any] = {
        "random": os.urandom(32),
        "legacy_session_id": b"" if dtls else os.urandom(32),
        "cipher_suites": (AES128,),
        "extensions": hello_extensions(supported_versions=(DTLS13,) if dtls else (TLS13,)),
        "legacy_cookie": b"" if dtls else None,
    }
    fields.update(changes)
    return ClientHello(**fields)


def only_failure(events: list[Event]) -> ConnectionFailed:
    failures = [e for e in events if isinstance(e, ConnectionFailed)]
    assert len(failures) == 1, events
    assert not failures[0].by_peer
    assert all(not isinstance(e, HandshakeComplete) for e in events), events
    return failures[0]


def assert_fails(
    conn: TLSConnection, events: list[Event], alert: AD, reason: str, *, protected: bool = False
) -> bytes:
    """Exactly one ConnectionFailed with ``alert``; the alert record is queued for the peer
    (plaintext before keys, protected after); the connection is dead for good. Returns
    what the connection sent."""
    failed = only_failure(events)
    assert failed.alert is alert, failed
    assert reason.lower() in failed.reason.lower(), failed.reason
    out = conn.data_to_send()
    if protected:
        assert out[-(5 + 3 + 16) :][:3] == b"\x17\x03\x03", out.hex()
    else:
        assert out.endswith(b"\x15\x03\x03\x00\x02\x02" + bytes([alert])), out.hex()
    assert conn.state == "failed"
    assert conn.receive_data(b"\x16\x03\x03\x00\x01\x01", NOW) == []
    with pytest.raises(ConnectionStateError):
        conn.send_data(b"late")
    return out


def assert_peer_reads(peer: TLSConnection, sent: bytes, alert: AD) -> None:
    """The alert record is well formed: the peer reports it as the peer's alert."""
    failures = [e for e in peer.receive_data(sent, NOW) if isinstance(e, ConnectionFailed)]
    assert failures == [ConnectionFailed(alert, f"peer sent alert {alert.name}", by_peer=True)]
    assert peer.state == "failed"


@pytest.fixture(scope="module")
def pki(pki_factory: Callable[..., tuple[PKI, Path]]) -> Path:
    return pki_factory("ed25519")[1]


def server_config(pki: Path, **kw: Any) -> ServerConfig:
    return ServerConfig(certfile=pki / "server.pem", keyfile=pki / "server.key", **kw)


def client_config(pki: Path, **kw: Any) -> ClientConfig:
    return ClientConfig(server_name="localhost", cafile=pki / "ca.pem", **kw)


def server_gets(
    pki: Path, hello: ClientHello | bytes, **kw: Any
) -> tuple[TLSServerConnection, list[Event]]:
    server = TLSServerConnection(server_config(pki, **kw))
    data = hello if isinstance(hello, bytes) else record(encode_message(hello))
    return server, server.receive_data(data, NOW)


class Pair:
    """Our client against our server in memory; ``tamper`` rewrites messages a side sends
    (TLS form) just before they are framed, so protected messages can be forged."""

    def __init__(
        self,
        client: ClientConfig,
        server: ServerConfig,
        tamper: Callable[[str, bytes], bytes] | None = None,
    ) -> None:
        self.client = TLSClientConnection(client)
        self.server = TLSServerConnection(server)
        self.events: dict[str, list[Event]] = {"client": [], "server": []}
        if tamper is not None:
            for side, conn in (("client", self.client), ("server", self.server)):
                original = conn._queue_handshake

                def queue(message: bytes, side: str = side, original: Any = original) -> None:
                    original(tamper(side, message))

                conn._queue_handshake = queue  # type: ignore[method-assign]

    def to_server(self) -> list[Event]:
        events = self.server.receive_data(self.client.data_to_send(), NOW)
        self.events["server"] += events
        return events

    def to_client(self) -> list[Event]:
        events = self.client.receive_data(self.server.data_to_send(), NOW)
        self.events["client"] += events
        return events

    def run(self) -> None:
        for _ in range(10):
            a, b = self.client.data_to_send(), self.server.data_to_send()
            if not a and not b:
                return
            if a:
                self.events["server"] += self.server.receive_data(a, NOW)
            if b:
                self.events["client"] += self.client.receive_data(b, NOW)

    def connect(self) -> None:
        self.run()
        assert self.client.state == self.server.state == "connected", self.events


def replace_message(
    side: str, msg_type: int, new: Callable[[bytes], bytes]
) -> Callable[[str, bytes], bytes]:
    def tamper(who: str, message: bytes) -> bytes:
        return new(message) if who == side and message[0] == msg_type else message

    return tamper


def started_client(pki: Path, **kw: Any) -> tuple[TLSClientConnection, ClientHello]:
    """A client whose ClientHello went out; returns it and the hello it sent."""
    client = TLSClientConnection(client_config(pki, **kw))
    data = client.data_to_send()
    hello = decode_message(1, data[9:])
    assert isinstance(hello, ClientHello)
    return client, hello


def server_hello_for(hello: ClientHello, **changes: Any) -> bytes:
    """A plausible TLS 1.3 ServerHello answering ``hello`` (x25519), with ``changes``."""
    share = generate_key_share(X25519)
    fields: dict[str, Any] = {
        "random": os.urandom(32),
        "legacy_session_id_echo": hello.legacy_session_id,
        "cipher_suite": AES128,
        "extensions": Extensions(
            key_share_entry=KeyShareEntry(X25519, share.public), selected_version=TLS13
        ),
    }
    fields.update(changes)
    return record(encode_message(ServerHello(**fields)))


def hello_retry_for(hello: ClientHello, **extensions: Any) -> bytes:
    return record(
        encode_message(
            ServerHello(
                random=HELLO_RETRY_REQUEST_RANDOM,
                legacy_session_id_echo=hello.legacy_session_id,
                cipher_suite=AES128,
                extensions=Extensions(selected_version=TLS13, **extensions),
            )
        )
    )


# --- ClientHello (server side) --------------------------------------------------------------


def test_client_offering_only_tls12_is_protocol_version(pki: Path) -> None:
    # A TLS 1.2 ClientHello: TLS 1.2 suites, no supported_versions (RFC 8446 §4.2.1, §D.2).
    hello = client_hello(
        cipher_suites=(0xC02B, 0xC02F),
        extensions=hello_extensions(supported_versions=None, key_share_entries=None),
    )
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.protocol_version, "does not offer")


def test_supported_versions_without_tls13_is_protocol_version(pki: Path) -> None:
    hello = client_hello(extensions=hello_extensions(supported_versions=(0x0303, 0x0302)))
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.protocol_version, "does not offer")


def test_client_hello_without_extensions_is_protocol_version(pki: Path) -> None:
    # An SSLv3/TLS 1.0-style hello: no extensions block at all (§4.1.2).
    body = struct.pack(">H", 0x0303) + os.urandom(32) + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
    server, events = server_gets(pki, record(b"\x01" + len(body).to_bytes(3, "big") + body))
    assert_fails(server, events, AD.protocol_version, "without extensions")


def test_missing_signature_algorithms_is_missing_extension(pki: Path) -> None:
    hello = client_hello(extensions=hello_extensions(signature_algorithms=None))
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.missing_extension, "signature_algorithms")


def test_key_share_without_supported_groups_is_missing_extension(pki: Path) -> None:
    hello = client_hello(extensions=hello_extensions(supported_groups=None))
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.missing_extension, "supported_groups")


def test_compression_method_1_is_illegal_parameter(pki: Path) -> None:
    server, events = server_gets(pki, client_hello(legacy_compression_methods=b"\x01"))
    assert_fails(server, events, AD.illegal_parameter, "compression")


def test_duplicate_extension_is_illegal_parameter(pki: Path) -> None:
    # supported_groups twice: the typed field plus a raw copy (encode_extensions writes both).
    groups = struct.pack(">HH", 2, X25519)
    hello = client_hello(extensions=hello_extensions(unknown=((10, groups),)))
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.illegal_parameter, "duplicate extension 10")


def test_invalid_x25519_share_from_client_is_illegal_parameter(pki: Path) -> None:
    # The all-zero point is of low order: the shared secret would be all zero (§7.4.2).
    hello = client_hello(
        extensions=hello_extensions(key_share_entries=(KeyShareEntry(X25519, bytes(32)),))
    )
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.illegal_parameter, "x25519 key share")


def test_short_x25519_share_from_client_is_illegal_parameter(pki: Path) -> None:
    hello = client_hello(
        extensions=hello_extensions(key_share_entries=(KeyShareEntry(X25519, bytes(31)),))
    )
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.illegal_parameter, "31 bytes")


def test_key_share_for_group_not_in_supported_groups_is_illegal_parameter(pki: Path) -> None:
    hello = client_hello(extensions=hello_extensions(supported_groups=(P256,)))
    server, events = server_gets(pki, hello)
    assert_fails(server, events, AD.illegal_parameter, "key_share")


# --- ServerHello / HelloRetryRequest (client side) -----------------------------------------------


def tls12_server_hello(hello: ClientHello, sentinel: bytes, extensions: bool) -> bytes:
    """A TLS 1.2 ServerHello (ECDHE-RSA-AES128-GCM): no supported_versions (§4.1.3)."""
    random = os.urandom(24) + sentinel if sentinel else os.urandom(32)
    body = (
        struct.pack(">H", 0x0303)
        + random
        + bytes([len(hello.legacy_session_id)])
        + hello.legacy_session_id
        + struct.pack(">HB", 0xC02F, 0)
        + (b"\x00\x05\xff\x01\x00\x01\x00" if extensions else b"")  # renegotiation_info
    )
    return record(b"\x02" + len(body).to_bytes(3, "big") + body)


@pytest.mark.parametrize("extensions", [True, False], ids=["with-extensions", "bare"])
def test_tls12_server_hello_is_protocol_version(pki: Path, extensions: bool) -> None:
    client, hello = started_client(pki)
    events = client.receive_data(tls12_server_hello(hello, b"", extensions), NOW)
    assert_fails(client, events, AD.protocol_version, "below 1.3")


@pytest.mark.parametrize("sentinel", [DOWNGRADE_TLS12, DOWNGRADE_TLS11], ids=["tls12", "tls11"])
def test_tls12_server_hello_with_downgrade_sentinel_is_illegal_parameter(
    pki: Path, sentinel: bytes
) -> None:
    # RFC 8446 §4.1.3: a TLS 1.3 client MUST check the sentinel and abort with illegal_parameter.
    client, hello = started_client(pki)
    events = client.receive_data(tls12_server_hello(hello, sentinel, True), NOW)
    assert_fails(client, events, AD.illegal_parameter, "downgrade")


def test_supported_versions_selecting_tls12_is_illegal_parameter(pki: Path) -> None:
    # §4.2.1: a selected version "prior to TLS 1.3" MUST be illegal_parameter.
    client, hello = started_client(pki)
    share = generate_key_share(X25519)
    sh = server_hello_for(
        hello,
        extensions=Extensions(
            key_share_entry=KeyShareEntry(X25519, share.public), selected_version=0x0303
        ),
    )
    assert_fails(client, client.receive_data(sh, NOW), AD.illegal_parameter, "not offered")


def test_server_selecting_suite_not_offered_is_illegal_parameter(pki: Path) -> None:
    client, hello = started_client(pki, cipher_suites=("TLS_AES_128_GCM_SHA256",))
    events = client.receive_data(server_hello_for(hello, cipher_suite=0x1302), NOW)
    assert_fails(client, events, AD.illegal_parameter, "cipher suite")


def test_server_key_share_for_group_not_offered_is_illegal_parameter(pki: Path) -> None:
    # P-256 is in supported_groups, but the client sent a share for x25519 only (§4.2.8).
    client, hello = started_client(pki, groups=("x25519", "secp256r1"))
    share = generate_key_share(P256)
    sh = server_hello_for(
        hello,
        extensions=Extensions(
            key_share_entry=KeyShareEntry(P256, share.public), selected_version=TLS13
        ),
    )
    assert_fails(client, client.receive_data(sh, NOW), AD.illegal_parameter, "we did not send")


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (bytes(32), "x25519 key share"),
        (bytes([1] + [0] * 31), "x25519 key share"),  # order 1: the secret would be zero
        (os.urandom(31), "31 bytes"),
    ],
    ids=["zero", "order-1", "short"],
)
def test_invalid_x25519_share_from_server_is_illegal_parameter(
    pki: Path, point: bytes, reason: str
) -> None:
    client, hello = started_client(pki)
    sh = server_hello_for(
        hello,
        extensions=Extensions(key_share_entry=KeyShareEntry(X25519, point), selected_version=TLS13),
    )
    assert_fails(client, client.receive_data(sh, NOW), AD.illegal_parameter, reason)


def test_second_hello_retry_request_is_unexpected_message(pki: Path) -> None:
    client, hello = started_client(pki, groups=("x25519", "secp256r1"))
    assert client.receive_data(hello_retry_for(hello, key_share_selected_group=P256), NOW) == []
    second = client.data_to_send()
    assert second.startswith(b"\x14\x03\x03\x00\x01\x01\x16\x03\x03")  # CCS, ClientHello2
    events = client.receive_data(hello_retry_for(hello, key_share_selected_group=P256), NOW)
    assert_fails(client, events, AD.unexpected_message, "second HelloRetryRequest")


def test_hello_retry_for_group_not_offered_is_illegal_parameter(pki: Path) -> None:
    client, hello = started_client(pki, groups=("x25519", "secp256r1"))
    hrr = hello_retry_for(hello, key_share_selected_group=int(NamedGroup.secp384r1))
    assert_fails(client, client.receive_data(hrr, NOW), AD.illegal_parameter, "not offered")


def test_hello_retry_for_group_already_shared_is_illegal_parameter(pki: Path) -> None:
    # §4.1.4: a HelloRetryRequest that would not change the ClientHello.
    client, hello = started_client(pki, groups=("x25519", "secp256r1"))
    hrr = hello_retry_for(hello, key_share_selected_group=X25519)
    assert_fails(client, client.receive_data(hrr, NOW), AD.illegal_parameter, "already sent")


def test_hello_retry_requesting_nothing_is_illegal_parameter(pki: Path) -> None:
    client, hello = started_client(pki)
    assert_fails(
        client, client.receive_data(hello_retry_for(hello), NOW), AD.illegal_parameter, "no change"
    )


def test_server_hello_with_unsolicited_extension_is_unsupported_extension(pki: Path) -> None:
    client, hello = started_client(pki)
    share = generate_key_share(X25519)
    ext = Extensions(
        key_share_entry=KeyShareEntry(X25519, share.public),
        selected_version=TLS13,
        unknown=((0xFF01, b"\x00"),),  # renegotiation_info: never offered
    )
    sh = server_hello_for(hello, extensions=ext)
    assert_fails(client, client.receive_data(sh, NOW), AD.unsupported_extension, "65281")


# --- protected server messages (a real server, one message forged) -------------------------------


def forged(
    pki: Path, msg_type: int, new: Callable[[bytes], bytes], side: str = "server", **client_kw: Any
) -> Pair:
    pair = Pair(
        client_config(pki, **client_kw), server_config(pki), replace_message(side, msg_type, new)
    )
    pair.to_server()
    return pair


def test_encrypted_extensions_with_unsolicited_alpn_is_unsupported_extension(pki: Path) -> None:
    ee = encode_message(EncryptedExtensions(Extensions(alpn=(b"h2",))))
    pair = forged(pki, 8, lambda _: ee)
    sent = assert_fails(
        pair.client,
        pair.to_client(),
        AD.unsupported_extension,
        "application_layer_protocol_negotiation",
        protected=True,
    )
    assert_peer_reads(pair.server, sent, AD.unsupported_extension)


def test_encrypted_extensions_with_unknown_extension_is_unsupported_extension(pki: Path) -> None:
    ee = encode_message(EncryptedExtensions(Extensions(unknown=((0x7A7A, b""),))))
    pair = forged(pki, 8, lambda _: ee)
    assert_fails(pair.client, pair.to_client(), AD.unsupported_extension, "31354", protected=True)


def test_encrypted_extensions_with_key_share_is_illegal_parameter(pki: Path) -> None:
    # §4.2: a known extension in a message it is not defined for.
    body = struct.pack(">HH", X25519, 32) + bytes(32)
    ee = encode_message(EncryptedExtensions(Extensions(unknown=((51, body),))))
    pair = forged(pki, 8, lambda _: ee)
    assert_fails(pair.client, pair.to_client(), AD.illegal_parameter, "not allowed", protected=True)


def test_duplicate_extension_in_encrypted_extensions_is_illegal_parameter(pki: Path) -> None:
    ee = encode_message(EncryptedExtensions(Extensions(server_name="", unknown=((0, b""),))))
    pair = forged(pki, 8, lambda _: ee)
    assert_fails(pair.client, pair.to_client(), AD.illegal_parameter, "duplicate", protected=True)


def test_empty_server_certificate_is_decode_error(pki: Path) -> None:
    # RFC 8446 §4.4.2.4: a server Certificate with no certificates -> decode_error.
    empty = encode_message(Certificate(certificate_request_context=b"", entries=()))
    pair = forged(pki, 11, lambda _: empty)
    assert_fails(pair.client, pair.to_client(), AD.decode_error, "no certificate", protected=True)


@pytest.mark.parametrize(
    "extensions",
    [Extensions(status_request=b"\x01\x00\x00"), Extensions(unknown=((18, b"sct"),))],
    ids=["status_request", "signed_certificate_timestamp"],
)
def test_unsolicited_certificate_entry_extension_is_unsupported_extension(
    pki: Path, extensions: Extensions
) -> None:
    # RFC 8446 §4.4.2: entry extensions must answer ClientHello ones; we request none.
    def add_extension(message: bytes) -> bytes:
        cert = decode_message(message[0], message[4:])
        assert isinstance(cert, Certificate)
        first = CertificateEntry(cert.entries[0].cert_data, extensions)
        return encode_message(Certificate(b"", (first, *cert.entries[1:])))

    pair = forged(pki, 11, add_extension)
    assert_fails(
        pair.client, pair.to_client(), AD.unsupported_extension, "CertificateEntry", protected=True
    )


def _flip_last(message: bytes) -> bytes:
    return message[:-1] + bytes([message[-1] ^ 0x01])


def test_bad_certificate_verify_signature_is_decrypt_error(pki: Path) -> None:
    pair = forged(pki, 15, _flip_last)
    assert_fails(pair.client, pair.to_client(), AD.decrypt_error, "does not verify", protected=True)


def test_certificate_verify_with_rsa_pkcs1_is_illegal_parameter(
    pki_factory: Callable[..., tuple[PKI, Path]],
) -> None:
    # §4.4.3: RSASSA-PKCS1-v1_5 is never valid in CertificateVerify -- even though this
    # client offers it (for certificates) in signature_algorithms.
    _, rsa = pki_factory("rsa2048")

    def to_pkcs1(message: bytes) -> bytes:
        cv = decode_message(15, message[4:])
        assert isinstance(cv, CertificateVerify)
        return encode_message(replace(cv, algorithm=int(SignatureScheme.rsa_pkcs1_sha256)))

    schemes = ("rsa_pss_rsae_sha256", "rsa_pkcs1_sha256")
    pair = Pair(
        client_config(rsa, signature_schemes=schemes),
        server_config(rsa),
        replace_message("server", 15, to_pkcs1),
    )
    pair.to_server()
    assert_fails(pair.client, pair.to_client(), AD.illegal_parameter, "0x0401", protected=True)


def test_wrong_server_finished_is_decrypt_error(pki: Path) -> None:
    pair = forged(pki, 20, _flip_last)
    assert_fails(pair.client, pair.to_client(), AD.decrypt_error, "verify_data", protected=True)


def test_wrong_client_finished_is_decrypt_error(pki: Path) -> None:
    pair = forged(pki, 20, _flip_last, side="client")
    assert pair.to_client() and pair.client.state == "connected"
    sent = assert_fails(
        pair.server, pair.to_server(), AD.decrypt_error, "verify_data", protected=True
    )
    assert_peer_reads(pair.client, sent, AD.decrypt_error)  # under the application keys


def test_finished_of_wrong_length_is_decode_error(pki: Path) -> None:
    short = encode_message(Finished(verify_data=bytes(31)))
    pair = forged(pki, 20, lambda _: short)
    assert_fails(
        pair.client, pair.to_client(), AD.decode_error, "Finished is 31 bytes", protected=True
    )


# --- record layer and message sequencing ---------------------------------------------------------


def test_application_data_before_handshake_is_unexpected_message(pki: Path) -> None:
    server, events = server_gets(pki, record(b"hello", content_type=23))
    assert_fails(server, events, AD.unexpected_message, "application_data")


def test_protected_application_data_before_client_finished_is_unexpected_message(pki: Path) -> None:
    # Application data under the client's handshake keys, after ServerHello (§2, §5).
    pair = Pair(client_config(pki), server_config(pki))
    pair.to_server()
    server_flight = pair.server.data_to_send()
    server_hello_and_ccs = server_flight[: 5 + server_flight[4] + 256 * server_flight[3] + 6]
    pair.client.receive_data(server_hello_and_ccs, NOW)  # handshake write keys installed
    pair.client._emit_record(ContentType.application_data, b"too early")
    events = pair.server.receive_data(pair.client.data_to_send(), NOW)
    assert_fails(pair.server, events, AD.unexpected_message, "before the handshake", protected=True)


@pytest.mark.parametrize("side", ["client", "server"])
def test_change_cipher_spec_after_handshake_is_unexpected_message(pki: Path, side: str) -> None:
    pair = Pair(client_config(pki), server_config(pki))
    pair.connect()
    conn = pair.client if side == "client" else pair.server
    events = conn.receive_data(b"\x14\x03\x03\x00\x01\x01", NOW)
    assert_fails(conn, events, AD.unexpected_message, "ChangeCipherSpec", protected=True)


def test_change_cipher_spec_with_body_2_is_unexpected_message(pki: Path) -> None:
    client, _ = started_client(pki)
    events = client.receive_data(b"\x14\x03\x03\x00\x01\x02", NOW)
    assert_fails(client, events, AD.unexpected_message, "change_cipher_spec")


def test_change_cipher_spec_of_two_bytes_is_unexpected_message(pki: Path) -> None:
    server, events = server_gets(pki, b"\x14\x03\x03\x00\x02\x01\x01")
    assert_fails(server, events, AD.unexpected_message, "change_cipher_spec")


def test_oversize_plaintext_record_is_record_overflow(pki: Path) -> None:
    server, events = server_gets(pki, struct.pack(">BHH", 22, 0x0303, 2**14 + 1))
    assert_fails(server, events, AD.record_overflow, "2^14")


def test_oversize_ciphertext_record_is_record_overflow(pki: Path) -> None:
    pair = Pair(client_config(pki), server_config(pki))
    pair.connect()
    events = pair.server.receive_data(struct.pack(">BHH", 23, 0x0303, 2**14 + 256 + 1), NOW)
    assert_fails(pair.server, events, AD.record_overflow, "2^14+256", protected=True)


def test_oversize_inner_plaintext_is_record_overflow(pki: Path) -> None:
    # The record length passes (<= 2^14 + 256); the decrypted TLSInnerPlaintext does not.
    pair = Pair(client_config(pki), server_config(pki))
    pair.connect()
    records = pair.client._records
    cipher = records.write_cipher
    assert cipher is not None
    inner = bytes(2**14 + 1) + b"\x17"  # 2^14 + 1 bytes of data plus the content type
    header = struct.pack(">BHH", 23, 0x0303, len(inner) + cipher.tag_len)
    sealed = header + cipher.seal(records.write_seq, header, inner)
    events = pair.server.receive_data(sealed, NOW)
    assert_fails(pair.server, events, AD.record_overflow, "inner plaintext", protected=True)


@pytest.mark.parametrize("alert", [b"\x02", b"\x02\x28\x00"], ids=["one-byte", "three-bytes"])
def test_alert_record_of_wrong_length_is_decode_error(pki: Path, alert: bytes) -> None:
    client, _ = started_client(pki)
    events = client.receive_data(record(alert, content_type=21), NOW)
    assert_fails(client, events, AD.decode_error, "malformed alert")


def test_protected_alert_of_wrong_length_is_decode_error(pki: Path) -> None:
    pair = Pair(client_config(pki), server_config(pki))
    pair.connect()
    pair.client._emit_record(ContentType.alert, b"\x02\x28\x00")
    events = pair.server.receive_data(pair.client.data_to_send(), NOW)
    assert_fails(pair.server, events, AD.decode_error, "malformed alert", protected=True)


def test_handshake_message_spanning_a_key_change_is_unexpected_message(pki: Path) -> None:
    # §5.1: "Handshake messages MUST NOT span key changes": the ServerHello record also
    # carries the first bytes of the next (which must come protected) message.
    client, hello = started_client(pki)
    sh = server_hello_for(hello)
    events = client.receive_data(record(sh[5:] + b"\x08\x00"), NOW)
    assert_fails(client, events, AD.unexpected_message, "spans a key change")


def test_key_update_with_request_update_2_is_illegal_parameter(pki: Path) -> None:
    pair = Pair(client_config(pki), server_config(pki))
    pair.connect()
    pair.client._emit_record(ContentType.handshake, encode_message(KeyUpdate(request_update=2)))
    events = pair.server.receive_data(pair.client.data_to_send(), NOW)
    sent = assert_fails(pair.server, events, AD.illegal_parameter, "request_update", protected=True)
    assert_peer_reads(pair.client, sent, AD.illegal_parameter)


def test_key_update_before_handshake_completes_is_unexpected_message(pki: Path) -> None:
    # §4.6.3: KeyUpdate only after Finished; here under the client's handshake keys.
    pair = Pair(client_config(pki), server_config(pki))
    pair.to_server()
    flight = pair.server.data_to_send()
    pair.client.receive_data(flight[: 5 + int.from_bytes(flight[3:5], "big") + 6], NOW)
    pair.client._emit_record(ContentType.handshake, encode_message(KeyUpdate(request_update=0)))
    events = pair.server.receive_data(pair.client.data_to_send(), NOW)
    assert_fails(pair.server, events, AD.unexpected_message, "KeyUpdate", protected=True)


# --- DTLS 1.3 ---------------------------------------------------------------------------------

DTLS_ADDRESS = ("198.51.100.7", 4433)


def dtls_client_hello(hello: ClientHello) -> bytes:
    """One epoch-0 DTLSPlaintext record carrying the whole ClientHello (RFC 9147 §4, §5.2)."""
    [fragment] = fragment_message(encode_message(hello, dtls=True), 0, 2**14)
    return encode_plaintext(ContentType.handshake, 0, fragment)


def dtls_server(pki: Path, *, cookie_exchange: bool) -> DTLSServerConnection:
    return DTLSServerConnection(
        server_config(pki), peer_address=DTLS_ADDRESS, cookie_exchange=cookie_exchange
    )


def assert_dtls_fails(
    conn: DTLSServerConnection, events: list[Event], alert: AD, reason: str
) -> None:
    failed = only_failure(events)
    assert failed.alert is alert and reason in failed.reason, failed
    [datagram] = conn.datagrams_to_send(NOW)
    # DTLSPlaintext alert, epoch 0, 2 bytes: fatal, alert (RFC 9147 §4)
    assert datagram[0] == 21 and datagram[-2:] == bytes([2, alert]), datagram.hex()
    assert conn.state == "failed"
    assert conn.receive_datagram(datagram, NOW) == []


@pytest.mark.parametrize("cookie_exchange", [True, False], ids=["stateless", "stateful"])
def test_dtls_non_empty_legacy_cookie_is_illegal_parameter(
    pki: Path, cookie_exchange: bool
) -> None:
    server = dtls_server(pki, cookie_exchange=cookie_exchange)
    events = server.receive_datagram(
        dtls_client_hello(client_hello(dtls=True, legacy_cookie=b"\x01" * 20)), NOW
    )
    assert_dtls_fails(server, events, AD.illegal_parameter, "legacy_cookie")


def test_dtls_forged_cookie_is_illegal_parameter(pki: Path) -> None:
    # RFC 9147 §5.1: a ClientHello with an invalid cookie -> illegal_parameter.
    server = dtls_server(pki, cookie_exchange=True)
    hello = client_hello(
        dtls=True, extensions=hello_extensions(supported_versions=(DTLS13,), cookie=os.urandom(48))
    )
    assert_dtls_fails(
        server,
        server.receive_datagram(dtls_client_hello(hello), NOW),
        AD.illegal_parameter,
        "invalid cookie",
    )


def test_dtls_cookie_altered_by_client_is_illegal_parameter(pki: Path) -> None:
    client = DTLSClientConnection(client_config(pki))
    server = dtls_server(pki, cookie_exchange=True)
    client.start(NOW)
    for datagram in client.datagrams_to_send(NOW):
        assert server.receive_datagram(datagram, NOW) == []
    [hrr] = server.datagrams_to_send(NOW)
    cookie_at = hrr.index(b"\x00\x2c")  # the cookie extension; its MAC ends the cookie
    cookie_len = int.from_bytes(hrr[cookie_at + 4 : cookie_at + 6], "big")
    last = cookie_at + 6 + cookie_len - 1
    client.receive_datagram(hrr[:last] + bytes([hrr[last] ^ 0x01]) + hrr[last + 1 :], NOW)
    events: list[Event] = []
    for datagram in client.datagrams_to_send(NOW):
        events += server.receive_datagram(datagram, NOW)
    assert_dtls_fails(server, events, AD.illegal_parameter, "invalid cookie")


def dtls_garbage() -> list[bytes]:
    """Datagrams no DTLS 1.3 record layer can accept (RFC 9147 §4.5.2)."""
    return [
        b"",
        b"\x00",
        os.urandom(1),
        b"\xff" * 40,  # not a plaintext type nor 001xxxxx
        b"\x17\xfe\xfd" + bytes(10),  # truncated DTLSPlaintext header
        b"\x16\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x04" + b"abcd",  # plaintext header, epoch 1
        b"\x16\xfe\xfd" + bytes(8) + b"\x40\x01",  # length beyond the datagram
        b"\x2f\x00\x01\x00\x20" + os.urandom(32),  # epoch 3 record that does not authenticate
        b"\x2e\x00\x00\x00\x20" + os.urandom(32),  # epoch 2 record that does not authenticate
        b"\x2c\x00\x05" + os.urandom(40),  # no length: the rest of the datagram, garbage
        b"\x3f" + os.urandom(30),  # a CID although none was negotiated
        b"\x2f\x00\x01\x00\x05" + os.urandom(5),  # shorter than the minimum
        b"\x14\xfe\xfd" + bytes(8) + b"\x00\x01\x01",  # ChangeCipherSpec: never in DTLS 1.3
        b"\x2f" + os.urandom(200),
    ]


class DatagramPump:
    """Our DTLS client and a stateful server association, in memory, on a virtual clock."""

    def __init__(self, pki: Path) -> None:
        self.now = NOW
        self.client = DTLSClientConnection(client_config(pki))
        self.server = dtls_server(pki, cookie_exchange=False)
        self.events: list[Event] = []
        self.client.start(self.now)

    def step(self, *, timers: bool = True) -> bool:
        """Deliver what is queued; if nothing is, fire the next timer. False: all quiet."""
        to_server = self.client.datagrams_to_send(self.now)
        to_client = self.server.datagrams_to_send(self.now)
        for datagram in to_server:
            self.events += self.server.receive_datagram(datagram, self.now)
        for datagram in to_client:
            self.events += self.client.receive_datagram(datagram, self.now)
        if to_server or to_client:
            return True
        deadlines = [t for t in (self.client.next_timer(), self.server.next_timer()) if t]
        if not timers or not deadlines:
            return False
        self.now = max(self.now, min(deadlines))
        self.events += self.client.handle_timer(self.now) + self.server.handle_timer(self.now)
        return True

    def completed(self) -> bool:
        return sum(isinstance(e, HandshakeComplete) for e in self.events) == 2


def test_dtls_garbage_datagrams_are_dropped_silently(pki: Path) -> None:
    # RFC 9147 §4.5.2: invalid records are silently discarded, preserving the association.
    pump = DatagramPump(pki)

    def flood() -> None:
        for junk in dtls_garbage():
            assert pump.client.receive_datagram(junk, pump.now) == [], junk.hex()
            assert pump.server.receive_datagram(junk, pump.now) == [], junk.hex()
        assert pump.client.state != "failed" and pump.server.state != "failed"
        # Nothing answers garbage: no alert, no ACK, no retransmission.
        assert pump.client.datagrams_to_send(pump.now) == []
        assert pump.server.datagrams_to_send(pump.now) == []

    for _ in range(40):  # garbage before, between and after every flight and timer
        if pump.completed():
            break
        to_server = pump.client.datagrams_to_send(pump.now)
        to_client = pump.server.datagrams_to_send(pump.now)
        flood()
        for datagram in to_server:
            pump.events += pump.server.receive_datagram(datagram, pump.now)
        for datagram in to_client:
            pump.events += pump.client.receive_datagram(datagram, pump.now)
        if not to_server and not to_client:
            pump.step()
    assert pump.completed(), pump.events
    assert not [e for e in pump.events if isinstance(e, ConnectionFailed)]
    while pump.step():  # the server's ACK of the client's Finished
        pass
    flood()
    pump.client.send_data(b"still here")
    pump.server.send_data(b"me too")
    pump.step(timers=False)
    data = [e.data for e in pump.events if isinstance(e, ApplicationData)]
    assert sorted(data) == [b"me too", b"still here"]
    assert not any(isinstance(e, ConnectionFailed) for e in pump.events)


def test_dtls_server_flight_in_one_datagram_completes_without_retransmission(pki: Path) -> None:
    # ServerHello and the protected records of the server's flight share one datagram: the
    # keys the ServerHello yields must apply to the records after it (regression: they were
    # deprotected first, dropped, and only the 1 s retransmission completed the handshake).
    # Without the cookie exchange the server may send only 3x the ClientHello until the client
    # proves its address (RFC 9147 §5.1): the client's ACK of the partial flight (after a quarter of
    # the retransmission timer) does that, well before any retransmission.
    pump = DatagramPump(pki)
    while not pump.completed() and pump.step():
        pass
    assert pump.completed(), pump.server.datagrams_to_send(pump.now)
    assert pump.server.retransmissions == 0
    assert pump.client.retransmissions == 0
    assert pump.now - NOW < 1.0


def test_dtls_alert_repeated_when_the_offending_record_comes_again(pki: Path) -> None:
    # RFC 9147 §5.10: alerts are not retransmitted, but a repeated offender gets a new one.
    from protocol.connection.dtls import MAX_REPEATED_ALERTS

    server = dtls_server(pki, cookie_exchange=True)
    hello = client_hello(
        dtls=True, extensions=hello_extensions(supported_versions=(DTLS13,), cookie=os.urandom(48))
    )
    datagram = dtls_client_hello(hello)
    server.receive_datagram(datagram, NOW)
    first = server.datagrams_to_send(NOW)
    assert len(first) == 1 and server.state == "failed"
    repeats = []
    for _ in range(MAX_REPEATED_ALERTS + 2):
        assert server.receive_datagram(datagram, NOW) == []  # no second failure event
        repeats.append(server.datagrams_to_send(NOW))
    assert [len(r) for r in repeats] == [1] * MAX_REPEATED_ALERTS + [0, 0]
    assert all(r[0][-1] == AD.illegal_parameter for r in repeats[:MAX_REPEATED_ALERTS])
