"""0-RTT over TLS between our client and server (RFC 8446 §2.3, §4.2.10, §8)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from handshake.psk import Session
from handshake.tickets import TicketKeyRing
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.errors import ConnectionStateError
from protocol.events import (
    ApplicationData,
    ConnectionFailed,
    EarlyDataReceived,
    HandshakeComplete,
    SessionTicketReceived,
)
from tests.conftest import NOW
from tests.protocol.memory_pump import Pump

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def client_config(pki_dir: Path, **overrides: Any) -> ClientConfig:
    return ClientConfig(**{"server_name": "localhost", "cafile": pki_dir / "ca.pem", **overrides})


def server_config(pki_dir: Path, **overrides: Any) -> ServerConfig:
    settings = {
        "certfile": pki_dir / "server.pem",
        "keyfile": pki_dir / "server.key",
        "max_early_data": 1000,
        **overrides,
    }
    return ServerConfig(**settings)


def ticket(pki_dir: Path, server: ServerConfig, **client: Any) -> Session:
    pump = Pump(
        TLSClientConnection(client_config(pki_dir, **client)), TLSServerConnection(server), NOW
    )
    pump.run()
    session: Session = pump.of("client", SessionTicketReceived)[0].session
    return session


def resume(
    pki_dir: Path, server: ServerConfig, session: Session, *early: bytes, **client: Any
) -> Pump:
    connection = TLSClientConnection(client_config(pki_dir, **client), session=session)
    for data in early:
        connection.send_early_data(data)
    # The client's ticket age and the server's clock must agree (RFC 8446 §8.3).
    connection.start(NOW + 1)
    pump = Pump(connection, TLSServerConnection(server), NOW + 1)
    pump.run()
    return pump


def statuses(pump: Pump) -> tuple[str, str]:
    (client,) = pump.of("client", HandshakeComplete)
    (server,) = pump.of("server", HandshakeComplete)
    return client.early_data, server.early_data


def test_ticket_advertises_max_early_data(pki_dir: Path) -> None:
    assert ticket(pki_dir, server_config(pki_dir)).max_early_data == 1000
    assert ticket(pki_dir, server_config(pki_dir, max_early_data=0)).max_early_data == 0


def test_early_data_accepted(pki_dir: Path, tmp_path: Path) -> None:
    server = server_config(pki_dir)
    session = ticket(pki_dir, server)
    log = tmp_path / "client.keys"
    pump = resume(pki_dir, server, session, REQUEST[:10], REQUEST[10:], keylog=log)
    assert statuses(pump) == ("accepted", "accepted")
    early = pump.of("server", EarlyDataReceived)
    assert b"".join(e.data for e in early) == REQUEST
    # Early data arrives before the handshake completes on the server.
    kinds = [type(e) for e in pump.server_events]
    assert kinds.index(EarlyDataReceived) < kinds.index(HandshakeComplete)
    assert "CLIENT_EARLY_TRAFFIC_SECRET" in log.read_text()
    # The connection goes on normally.
    pump.client.send_data(b"after")
    pump.run()
    assert pump.of("server", ApplicationData)[-1].data == b"after"


def test_early_data_after_start_before_answer(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = ticket(pki_dir, server)
    client = TLSClientConnection(client_config(pki_dir), session=session)
    client.send_early_data(b"one ")
    client.start(NOW + 1)
    client.send_early_data(b"two")
    pump = Pump(client, TLSServerConnection(server), NOW + 1)
    pump.run()
    assert b"".join(e.data for e in pump.of("server", EarlyDataReceived)) == b"one two"
    with pytest.raises(ConnectionStateError):
        client.send_early_data(b"late")  # the handshake is over


def test_early_data_rejected_by_server_policy(pki_dir: Path) -> None:
    ring = TicketKeyRing()
    session = ticket(pki_dir, server_config(pki_dir, ticket_keys=ring))
    strict = server_config(pki_dir, ticket_keys=ring, max_early_data=0)
    pump = resume(pki_dir, strict, session, REQUEST)
    assert statuses(pump) == ("rejected", "rejected")
    assert pump.of("server", EarlyDataReceived) == []
    (client_done,) = pump.of("client", HandshakeComplete)
    assert client_done.resumed  # the PSK is fine, only 0-RTT is declined
    # Nothing is resent automatically; the application resends as 1-RTT data.
    assert pump.of("server", ApplicationData) == []
    pump.client.send_data(REQUEST)
    pump.run()
    assert [e.data for e in pump.of("server", ApplicationData)] == [REQUEST]


def test_early_data_rejected_with_full_handshake(pki_dir: Path) -> None:
    session = ticket(pki_dir, server_config(pki_dir))
    other = server_config(pki_dir)  # other ticket keys: the ticket is unknown there
    pump = resume(pki_dir, other, session, REQUEST * 20)
    assert statuses(pump) == ("rejected", "rejected")
    assert not pump.of("client", HandshakeComplete)[0].resumed


def test_early_data_rejected_by_hello_retry(pki_dir: Path) -> None:
    # RFC 8446 §4.2.10: after HelloRetryRequest the 0-RTT records are skipped unread.
    server = server_config(pki_dir, groups=("secp256r1",))
    groups = ("x25519", "secp256r1")
    session = ticket(pki_dir, server, groups=groups)
    pump = resume(pki_dir, server, session, REQUEST, groups=groups)
    assert statuses(pump) == ("rejected", "rejected")
    (client_done,) = pump.of("client", HandshakeComplete)
    assert client_done.hello_retry and client_done.resumed


def test_replayed_client_hello_gets_early_data_rejected(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = ticket(pki_dir, server)
    client = TLSClientConnection(client_config(pki_dir), session=session)
    client.send_early_data(REQUEST)
    client.start(NOW + 1)
    flight = client.data_to_send()
    first = TLSServerConnection(server).receive_data(flight, NOW + 1)
    assert [e.data for e in first if isinstance(e, EarlyDataReceived)] == [REQUEST]
    # An attacker replays the ClientHello and the 0-RTT records (RFC 8446 §8): the server
    # recorded the ClientHello, declines the early data and skips it.
    replayed = TLSServerConnection(server)
    events = replayed.receive_data(flight, NOW + 2)
    assert not [e for e in events if isinstance(e, (EarlyDataReceived, ConnectionFailed))]
    assert replayed.state == "handshaking"


def test_single_use_ticket_blocks_replay_entirely(pki_dir: Path) -> None:
    server = server_config(pki_dir, single_use_tickets=True)
    session = ticket(pki_dir, server)
    first = resume(pki_dir, server, session, REQUEST)
    assert statuses(first) == ("accepted", "accepted")
    second = resume(pki_dir, server, session, REQUEST)
    assert statuses(second) == ("rejected", "rejected")
    assert not second.of("server", HandshakeComplete)[0].resumed


def test_early_data_over_the_limit_is_unexpected_message(pki_dir: Path) -> None:
    server = server_config(pki_dir, max_early_data=100)
    session = ticket(pki_dir, server)
    # A client that ignores the ticket's limit (ours enforces it: lie about the ticket).
    greedy = replace(session, max_early_data=10_000)
    pump = resume(pki_dir, server, greedy, b"x" * 60, b"y" * 60)
    assert [f.alert for f in pump.of("server", ConnectionFailed)] == [
        AlertDescription.unexpected_message
    ]
    assert [e.data for e in pump.of("server", EarlyDataReceived)] == [b"x" * 60]


def test_client_enforces_the_ticket_limit(pki_dir: Path) -> None:
    server = server_config(pki_dir, max_early_data=100)
    session = ticket(pki_dir, server)
    client = TLSClientConnection(client_config(pki_dir), session=session)
    client.send_early_data(b"a" * 100)
    with pytest.raises(ConnectionStateError):
        client.send_early_data(b"b")


def test_no_early_data_without_a_session_that_allows_it(pki_dir: Path) -> None:
    with pytest.raises(ConnectionStateError):
        TLSClientConnection(client_config(pki_dir)).send_early_data(b"x")
    session = ticket(pki_dir, server_config(pki_dir, max_early_data=0))
    with pytest.raises(ConnectionStateError):
        TLSClientConnection(client_config(pki_dir), session=session).send_early_data(b"x")
    # §4.2.10: 0-RTT keeps the ticket's ALPN; a client now offering other protocols cannot.
    server = server_config(pki_dir, alpn=("h2", "http/1.1"))
    session = ticket(pki_dir, server, alpn=("h2",))
    other = TLSClientConnection(client_config(pki_dir, alpn=("http/1.1",)), session=session)
    with pytest.raises(ConnectionStateError):
        other.send_early_data(b"x")


def test_early_data_with_alpn(pki_dir: Path) -> None:
    server = server_config(pki_dir, alpn=("h2",))
    session = ticket(pki_dir, server, alpn=("h2",))
    pump = resume(pki_dir, server, session, REQUEST, alpn=("h2",))
    assert statuses(pump) == ("accepted", "accepted")
    assert pump.of("client", HandshakeComplete)[0].alpn == "h2"


def test_early_data_without_compatibility_mode(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = ticket(pki_dir, server)
    pump = resume(pki_dir, server, session, REQUEST, compatibility_mode=False)
    assert statuses(pump) == ("accepted", "accepted")


def test_not_sent_without_early_data(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = ticket(pki_dir, server)
    assert statuses(resume(pki_dir, server, session)) == ("not_sent", "not_sent")


def test_servers_sharing_keys_and_a_replay_store_accept_0rtt_once(pki_dir: Path) -> None:
    # RFC 8446 §8: "at most once ... across the serving infrastructure": two servers share
    # ticket keys and one ReplayStore; a ClientHello replayed to the second one loses 0-RTT.
    from handshake.tickets import MemoryReplayStore

    keys, store = TicketKeyRing(), MemoryReplayStore()
    first_server = server_config(pki_dir, ticket_keys=keys, replay_store=store)
    second_server = server_config(pki_dir, ticket_keys=keys, replay_store=store)
    session = ticket(pki_dir, first_server)
    client = TLSClientConnection(client_config(pki_dir), session=session)
    client.send_early_data(REQUEST)
    client.start(NOW + 1)
    flight = client.data_to_send()
    events = TLSServerConnection(first_server).receive_data(flight, NOW + 1)
    assert [e.data for e in events if isinstance(e, EarlyDataReceived)] == [REQUEST]
    replayed = TLSServerConnection(second_server).receive_data(flight, NOW + 2)
    assert not [e for e in replayed if isinstance(e, (EarlyDataReceived, ConnectionFailed))]
    # Without the shared store the second server would have taken it: its own memory.
    alone = server_config(pki_dir, ticket_keys=keys)
    again = TLSServerConnection(alone).receive_data(flight, NOW + 2)
    assert [e.data for e in again if isinstance(e, EarlyDataReceived)] == [REQUEST]


def test_single_use_tickets_across_servers_sharing_a_replay_store(pki_dir: Path) -> None:
    from handshake.tickets import MemoryReplayStore

    keys, store = TicketKeyRing(), MemoryReplayStore()
    servers = [
        server_config(pki_dir, ticket_keys=keys, replay_store=store, single_use_tickets=True)
        for _ in range(2)
    ]
    session = ticket(pki_dir, servers[0])
    assert resume(pki_dir, servers[0], session).of("server", HandshakeComplete)[0].resumed
    second = resume(pki_dir, servers[1], session)
    assert not second.of("server", HandshakeComplete)[0].resumed  # a full handshake instead


def test_single_use_ticket_taken_between_check_and_claim(pki_dir: Path) -> None:
    # Two servers look at the same single-use ticket at once: both find it unused, only one
    # claims it (ReplayStore.add_if_new is atomic); the other passes it over and takes the
    # client's next PSK, here an external one (RFC 8446 §8.1).
    from handshake.psk import ExternalPsk
    from handshake.tickets import MemoryReplayStore

    class RacingStore(MemoryReplayStore):
        def seen(self, key: bytes, now: float) -> bool:
            return False  # the other server's claim lands after our check

        def add_if_new(self, key: bytes, expiry: float, now: float) -> bool:
            if MemoryReplayStore.seen(self, key, now):  # ... but before our claim
                return False
            self.add(key, expiry, now)
            return True

    psk = ExternalPsk(b"device-7", os.urandom(32))
    keys, store = TicketKeyRing(), RacingStore()
    server = server_config(
        pki_dir,
        ticket_keys=keys,
        replay_store=store,
        single_use_tickets=True,
        external_psks={psk.identity: psk},
    )
    session = ticket(pki_dir, server)
    first = resume(pki_dir, server, session, external_psk=psk)
    assert first.of("server", HandshakeComplete)[0].resumed
    second = resume(pki_dir, server, session, external_psk=psk)
    (done,) = second.of("server", HandshakeComplete)
    assert done.psk_mode is not None and not done.resumed  # the external PSK, not the ticket
