"""Our client against our server, in memory: every suite, group, key type and feature."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from handshake.alerts import AlertDescription
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.errors import ConnectionStateError
from protocol.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    HandshakeComplete,
    KeyUpdated,
)
from protocol.pki import PKI
from tests.conftest import NOW
from tests.protocol.memory_pump import Pump

SUITES = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
]
GROUPS = ["x25519", "secp256r1", "secp384r1", "secp521r1", "x448", "X25519MLKEM768"]


def connect(
    pki_dir: Path,
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> Pump:
    client_config = ClientConfig(
        **{"server_name": "localhost", "cafile": pki_dir / "ca.pem", **(client or {})}
    )
    server_config = ServerConfig(
        **{
            "certfile": pki_dir / "server.pem",
            "keyfile": pki_dir / "server.key",
            **(server or {}),
        }
    )
    pump = Pump(TLSClientConnection(client_config), TLSServerConnection(server_config), NOW)
    pump.run()
    return pump


def completed(pump: Pump) -> tuple[HandshakeComplete, HandshakeComplete]:
    client = pump.of("client", HandshakeComplete)
    server = pump.of("server", HandshakeComplete)
    assert len(client) == 1, pump.client_events
    assert len(server) == 1, pump.server_events
    return client[0], server[0]


def failure(pump: Pump, side: str) -> ConnectionFailed:
    failures = pump.of(side, ConnectionFailed)
    assert len(failures) == 1, (pump.client_events, pump.server_events)
    return failures[0]


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("group", GROUPS)
def test_every_suite_and_group(pki_dir: Path, suite: str, group: str) -> None:
    pump = connect(
        pki_dir,
        client={"cipher_suites": (suite,), "groups": (group,)},
        server={"cipher_suites": tuple(SUITES)},
    )
    client, server = completed(pump)
    assert client.cipher_suite == server.cipher_suite == suite
    assert client.group == server.group == group
    assert not client.hello_retry
    pump.client.send_data(b"ping")
    pump.server.send_data(b"pong")
    pump.run()
    assert pump.of("server", ApplicationData) == [ApplicationData(b"ping")]
    assert pump.of("client", ApplicationData) == [ApplicationData(b"pong")]
    label, context = b"EXPERIMENTAL test", b"ctx"
    assert pump.client.export_keying_material(
        label, context, 32
    ) == pump.server.export_keying_material(label, context, 32)


@pytest.mark.parametrize(
    ("key_type", "scheme"),
    [
        ("ecdsa-p256", "ecdsa_secp256r1_sha256"),
        ("ecdsa-p384", "ecdsa_secp384r1_sha384"),
        ("ecdsa-p521", "ecdsa_secp521r1_sha512"),
        ("rsa2048", "rsa_pss_rsae_sha256"),
        ("rsa-pss", "rsa_pss_rsae_sha256"),
        ("ed25519", "ed25519"),
        ("ed448", "ed448"),
    ],
)
def test_every_key_type(
    pki_factory: Callable[..., tuple[PKI, Path]], key_type: str, scheme: str
) -> None:
    _, directory = pki_factory(key_type)
    client, server = completed(connect(directory))
    assert client.signature_scheme == server.signature_scheme == scheme
    assert client.peer_certificate_subject is not None


def test_intermediate_chain(pki_factory: Callable[..., tuple[PKI, Path]]) -> None:
    _, directory = pki_factory("ecdsa-p256", intermediate=True)
    client, _ = completed(connect(directory))
    assert len(client.peer_certificates) == 3  # leaf, intermediate, root


def test_hello_retry_for_another_group(pki_dir: Path) -> None:
    # RFC 8446 §4.1.4: the client offers a share only for x25519, the server wants P-384.
    pump = connect(
        pki_dir,
        client={"groups": ("x25519", "secp384r1")},
        server={"groups": ("secp384r1",)},
    )
    client, server = completed(pump)
    assert client.hello_retry and server.hello_retry
    assert client.group == server.group == "secp384r1"


def test_hello_retry_with_cookie(pki_dir: Path) -> None:
    pump = connect(pki_dir, server={"always_hello_retry": True, "tls_cookie": True})
    client, server = completed(pump)
    assert client.hello_retry and server.hello_retry
    assert client.group == "x25519"


def test_hello_retry_to_hybrid_group(pki_dir: Path) -> None:
    pump = connect(
        pki_dir,
        client={"groups": ("x25519", "X25519MLKEM768")},
        server={"groups": ("X25519MLKEM768",)},
    )
    client, _ = completed(pump)
    assert client.hello_retry and client.group == "X25519MLKEM768"


def test_no_common_group_is_handshake_failure(pki_dir: Path) -> None:
    pump = connect(pki_dir, client={"groups": ("x25519",)}, server={"groups": ("secp256r1",)})
    assert failure(pump, "server").alert is AlertDescription.handshake_failure
    assert failure(pump, "client").by_peer


def test_no_common_suite_is_handshake_failure(pki_dir: Path) -> None:
    pump = connect(
        pki_dir,
        client={"cipher_suites": ("TLS_AES_128_GCM_SHA256",)},
        server={"cipher_suites": ("TLS_AES_256_GCM_SHA384",)},
    )
    assert failure(pump, "server").alert is AlertDescription.handshake_failure


def test_mutual_tls(pki_dir: Path) -> None:
    pump = connect(
        pki_dir,
        client={"certfile": pki_dir / "client.pem", "keyfile": pki_dir / "client.key"},
        server={"cafile": pki_dir / "ca.pem", "verify_client": True},
    )
    client, server = completed(pump)
    assert client.client_authenticated and server.client_authenticated
    assert server.peer_certificate_subject is not None
    assert "client" in server.peer_certificate_subject.lower()


def test_missing_client_certificate_is_certificate_required(pki_dir: Path) -> None:
    pump = connect(pki_dir, server={"cafile": pki_dir / "ca.pem", "verify_client": True})
    assert failure(pump, "server").alert is AlertDescription.certificate_required
    assert failure(pump, "client").alert is AlertDescription.certificate_required


def test_optional_client_certificate_may_be_absent(pki_dir: Path) -> None:
    pump = connect(
        pki_dir,
        server={"cafile": pki_dir / "ca.pem", "request_client_certificate": True},
    )
    client, server = completed(pump)
    assert not client.client_authenticated and not server.client_authenticated


def test_alpn(pki_dir: Path) -> None:
    pump = connect(pki_dir, client={"alpn": ("h2", "http/1.1")}, server={"alpn": ("http/1.1",)})
    client, server = completed(pump)
    assert client.alpn == server.alpn == "http/1.1"


def test_alpn_mismatch_is_no_application_protocol(pki_dir: Path) -> None:
    pump = connect(pki_dir, client={"alpn": ("h2",)}, server={"alpn": ("http/1.1",)})
    assert failure(pump, "server").alert is AlertDescription.no_application_protocol


def test_hostname_mismatch(pki_dir: Path) -> None:
    pump = connect(pki_dir, client={"server_name": "example.org"})
    failed = failure(pump, "client")
    assert failed.alert is AlertDescription.bad_certificate
    assert "hostname mismatch" in failed.reason
    assert failure(pump, "server").by_peer


def test_unknown_ca(pki_dir: Path, pki_factory: Callable[..., tuple[PKI, Path]]) -> None:
    _, other = pki_factory("ed25519")  # signed by another CA
    pump = connect(
        pki_dir,
        server={"certfile": other / "server.pem", "keyfile": other / "server.key"},
    )
    failed = failure(pump, "client")
    assert failed.alert is AlertDescription.unknown_ca
    assert "unknown CA" in failed.reason


def _spki_pin(pem: bytes) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_pins(pki_dir: Path) -> None:
    good = _spki_pin((pki_dir / "server.pem").read_bytes())
    wrong = base64.b64encode(b"\x01" * 32).decode()
    completed(connect(pki_dir, client={"pins_sha256": (wrong, good)}))  # a backup pin matches
    failed = failure(connect(pki_dir, client={"pins_sha256": (wrong,)}), "client")
    assert "pin mismatch" in failed.reason


def test_key_update_both_ways(pki_dir: Path) -> None:
    pump = connect(pki_dir)
    completed(pump)
    for round_ in range(3):
        pump.client.key_update(request_peer_update=True)
        pump.client.send_data(b"after client update %d" % round_)
        pump.run()
        pump.server.key_update(request_peer_update=False)
        pump.server.send_data(b"after server update %d" % round_)
        pump.run()
    received = pump.of("server", KeyUpdated)
    assert [e.update_requested for e in received if e.direction == "receive"] == [True] * 3
    assert [e.data for e in pump.of("server", ApplicationData)] == [
        b"after client update %d" % i for i in range(3)
    ]
    assert [e.data for e in pump.of("client", ApplicationData)] == [
        b"after server update %d" % i for i in range(3)
    ]
    # client: 3 own updates; server: 3 answers + 3 own updates
    assert pump.client._hs.application_keys.write_epoch == 3 + 3
    assert pump.server._hs.application_keys.write_epoch == 3 + 6


def test_large_transfer_both_ways(pki_dir: Path) -> None:
    pump = connect(pki_dir)
    completed(pump)
    payload = os.urandom(8 * 1024 * 1024 + 7)
    pump.client.send_data(payload)
    pump.run()
    got = b"".join(e.data for e in pump.of("server", ApplicationData))
    assert got == payload
    pump.server.send_data(payload[::-1])
    pump.run()
    assert b"".join(e.data for e in pump.of("client", ApplicationData)) == payload[::-1]


def test_byte_by_byte_delivery(pki_dir: Path) -> None:
    client = TLSClientConnection(ClientConfig(server_name="localhost", cafile=pki_dir / "ca.pem"))
    server = TLSServerConnection(
        ServerConfig(certfile=pki_dir / "server.pem", keyfile=pki_dir / "server.key")
    )
    events: list[Any] = []
    for _ in range(5):
        for byte in client.data_to_send():
            events += server.receive_data(bytes([byte]), NOW)
        for byte in server.data_to_send():
            events += client.receive_data(bytes([byte]), NOW)
    assert sum(isinstance(e, HandshakeComplete) for e in events) == 2


def test_close_notify(pki_dir: Path) -> None:
    pump = connect(pki_dir)
    completed(pump)
    pump.client.send_data(b"last words")
    pump.client.close()
    with pytest.raises(ConnectionStateError):
        pump.client.send_data(b"too late")
    pump.run()
    assert pump.of("server", ApplicationData) == [ApplicationData(b"last words")]
    assert pump.of("server", ConnectionClosed)
    assert pump.of("client", ConnectionClosed)  # the server answered with its own
    assert pump.client.state == pump.server.state == "closed"


def test_user_canceled(pki_dir: Path) -> None:
    pump = connect(pki_dir)
    completed(pump)
    pump.client.cancel()
    pump.run()
    assert pump.of("server", AlertReceived) == [AlertReceived(AlertDescription.user_canceled)]
    assert pump.of("server", ConnectionClosed)


def test_record_size_limit(pki_dir: Path) -> None:
    pump = connect(pki_dir, client={"record_size_limit": 256}, server={"record_size_limit": 512})
    client, server = completed(pump)
    assert client.peer_record_size_limit == 512
    assert server.peer_record_size_limit == 256
    pump.server_wire.clear()
    pump.server.send_data(b"x" * 5000)
    pump.run()
    wire = b"".join(pump.server_wire)
    sizes = []
    while wire:
        length = int.from_bytes(wire[3:5], "big")
        sizes.append(length)
        wire = wire[5 + length :]
    # RFC 8449 §4: 255 bytes of data + 1 content type byte + 16 byte tag per record.
    assert max(sizes) == 256 + 16
    assert b"".join(e.data for e in pump.of("client", ApplicationData)) == b"x" * 5000


def test_compatibility_mode_sends_ccs(pki_dir: Path) -> None:
    pump = connect(pki_dir)
    completed(pump)
    assert b"\x14\x03\x03\x00\x01\x01" in b"".join(pump.client_wire)
    assert b"\x14\x03\x03\x00\x01\x01" in b"".join(pump.server_wire)
    quiet = connect(pki_dir, client={"compatibility_mode": False})
    completed(quiet)
    assert b"\x14\x03\x03\x00\x01\x01" not in b"".join(quiet.client_wire)
    assert b"\x14\x03\x03\x00\x01\x01" not in b"".join(quiet.server_wire)


def test_keylog(pki_dir: Path) -> None:
    client_lines: list[str] = []
    server_lines: list[str] = []
    pump = connect(
        pki_dir, client={"keylog": client_lines.append}, server={"keylog": server_lines.append}
    )
    completed(pump)
    labels = {line.split()[0] for line in client_lines}
    assert labels == {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    }
    assert sorted(client_lines) == sorted(server_lines)


def test_trace_sees_every_message(pki_dir: Path) -> None:
    seen: list[Any] = []
    pump = connect(pki_dir, client={"trace": seen.append})
    completed(pump)
    sent = [e.detail for e in seen if e.kind == "handshake" and e.direction == "sent"]
    received = [e.detail for e in seen if e.kind == "handshake" and e.direction == "received"]
    assert sent == ["client_hello", "finished"]
    assert received == [
        "server_hello",
        "encrypted_extensions",
        "certificate",
        "certificate_verify",
        "finished",
        # RFC 8446 §4.6.1: the server's default two session tickets
        "new_session_ticket",
        "new_session_ticket",
    ]


def test_skip_verification_is_explicit(pki_dir: Path) -> None:
    pump = connect(
        pki_dir,
        client={"server_name": "wrong.example", "dangerously_skip_certificate_verification": True},
    )
    completed(pump)


def test_expired_certificate(pki_dir: Path, pki_factory: Callable[..., tuple[PKI, Path]]) -> None:
    pump = connect(pki_dir)
    completed(pump)
    later = Pump(
        TLSClientConnection(ClientConfig(server_name="localhost", cafile=pki_dir / "ca.pem")),
        TLSServerConnection(
            ServerConfig(certfile=pki_dir / "server.pem", keyfile=pki_dir / "server.key")
        ),
        NOW + 400 * 86400,  # the Sans-IO clock decides validity
    )
    later.run()
    failed = failure(later, "client")
    assert failed.alert is AlertDescription.certificate_expired
    assert "expired" in failed.reason


@pytest.mark.parametrize("between", [None, 23, 20], ids=["nothing", "application", "ccs"])
def test_no_other_record_inside_a_fragmented_handshake_message(
    pki_dir: Path, between: int | None
) -> None:
    # RFC 8446 §5.1: a handshake message split over records has no other record between.
    pump = connect(pki_dir)
    completed(pump)
    key_update = bytes((24, 0, 0, 1, 0))  # KeyUpdate(update_not_requested)
    pump.server._emit_record(22, key_update[:3])
    if between is not None:
        pump.server._emit_record(between, b"\x01")
    pump.server._emit_record(22, key_update[3:])
    pump.run()
    if between is None:
        assert [e.direction for e in pump.of("client", KeyUpdated)] == ["receive"]
    else:
        assert failure(pump, "client").alert is AlertDescription.unexpected_message


def test_certificate_request_names_the_accepted_roots(pki_dir: Path) -> None:
    # RFC 8446 §4.2.4: certificate_authorities guides the client's choice of certificate.
    from cryptography import x509

    from handshake.messages import CertificateRequest, decode_message

    seen: list[bytes] = []

    def trace(event: Any) -> None:
        if event.kind == "handshake" and event.direction == "received" and event.data:
            seen.append(bytes(event.data))

    pump = connect(
        pki_dir,
        client={
            "certfile": pki_dir / "client.pem",
            "keyfile": pki_dir / "client.key",
            "trace": trace,
        },
        server={"cafile": pki_dir / "ca.pem", "verify_client": True},
    )
    completed(pump)
    (raw,) = [m for m in seen if m[0] == 13]
    request = decode_message(13, raw[4:])
    assert isinstance(request, CertificateRequest)
    root = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    assert request.extensions.certificate_authorities == (root.subject.public_bytes(),)
