"""Automatic KeyUpdate before a write key's usage limit (RFC 8446 §5.5), between our own
client and server in memory. The limit is lowered through the connection's private
``_confidentiality_limit`` so that a few hundred records cross it."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
from protocol.events import ApplicationData, Event, KeyUpdated
from records.tls import key_update_threshold
from tests.conftest import NOW

LIMIT = 40  # records per key; KeyUpdate once 30 are used


def connected(
    pki_dir: Path, *, trace: bool = False
) -> tuple[TLSClientConnection, TLSServerConnection]:
    traced: list[object] = []
    extra = {"trace": traced.append} if trace else {}
    client = TLSClientConnection(
        ClientConfig(server_name="localhost", cafile=pki_dir / "ca.pem", **extra)  # type: ignore[arg-type]
    )
    server = TLSServerConnection(
        ServerConfig(certfile=pki_dir / "server.pem", keyfile=pki_dir / "server.key", tickets=0)
    )
    client._confidentiality_limit = LIMIT
    for _ in range(10):
        to_server = client.data_to_send()
        if to_server:
            server.receive_data(to_server, NOW)
        to_client = server.data_to_send()
        if to_client:
            client.receive_data(to_client, NOW)
        if not to_server and not to_client:
            break
    assert client.state == server.state == "connected"
    return client, server


def sealed(conn: TLSConnection) -> int:
    cipher = conn._records.write_cipher
    assert cipher is not None and cipher.confidentiality_limit == LIMIT
    return cipher.sealed


def data_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ApplicationData))


@pytest.mark.parametrize("trace", [False, True], ids=["fast", "traced"])
def test_rekeys_before_the_limit_and_peer_follows(pki_dir: Path, trace: bool) -> None:
    client, server = connected(pki_dir, trace=trace)
    assert key_update_threshold(LIMIT) == 30
    client_events: list[Event] = []
    server_events: list[Event] = []
    sent = bytearray()
    for i in range(200):
        message = i.to_bytes(2, "big") * 20
        client.send_data(message)
        sent += message
        # Never more than the limit under one key, and a KeyUpdate well before it.
        assert sealed(client) <= key_update_threshold(LIMIT)
        server_events += server.receive_data(client.data_to_send(), NOW)
        server.send_data(b"ack")
        client_events += client.receive_data(server.data_to_send(), NOW)
    # A KeyUpdate after every 30 application records: epochs 4 .. 9 (RFC 8446 §7.2).
    sends = [e for e in client_events if isinstance(e, KeyUpdated)]
    assert sends == [KeyUpdated("send", False, epoch) for epoch in range(4, 10)]
    received = [e for e in server_events if isinstance(e, KeyUpdated)]
    assert received == [KeyUpdated("receive", False, e.epoch) for e in sends]
    # The peer followed every update and read everything; it did not update its own key.
    assert data_of(server_events) == bytes(sent)
    assert data_of(client_events) == b"ack" * 200
    assert client.state == server.state == "connected"
    assert server._write_epoch == 3 and client._write_epoch == sends[-1].epoch


def test_large_send_is_cut_at_the_key_change(pki_dir: Path) -> None:
    """One send_data spanning several limits: each key protects at most LIMIT records."""
    client, server = connected(pki_dir)
    payload = bytes(range(256)) * 64 * 100  # 1.6 MB: 100 records of 16 KiB
    wire = bytearray()
    client.send_data(payload)
    wire += client.data_to_send()
    events = server.receive_data(bytes(wire), NOW)
    assert data_of(events) == payload
    updates = [e for e in events if isinstance(e, KeyUpdated)]
    assert len(updates) == 3 and all(e.direction == "receive" for e in updates)
    assert sealed(client) <= key_update_threshold(LIMIT)
    client.send_data(b"after")
    assert data_of(server.receive_data(client.data_to_send(), NOW)) == b"after"


def test_default_limit_is_the_aead_limit(pki_dir: Path) -> None:
    client = TLSClientConnection(ClientConfig(server_name="localhost", cafile=pki_dir / "ca.pem"))
    server = TLSServerConnection(
        ServerConfig(certfile=pki_dir / "server.pem", keyfile=pki_dir / "server.key", tickets=0)
    )
    server.receive_data(client.data_to_send(), NOW)
    client.receive_data(server.data_to_send(), NOW)
    server.receive_data(client.data_to_send(), NOW)
    cipher = client._records.write_cipher
    assert cipher is not None and cipher.confidentiality_limit == int(2**24.5)
    assert client._records.records_until_key_update == key_update_threshold(int(2**24.5))
