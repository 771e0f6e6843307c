"""DTLS 1.3 resumption and 0-RTT through the seeded network simulator (RFC 9147 §5.6, §5.7,
§7; RFC 8446 §4.2.10, §4.6.1)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from handshake.psk import ExternalPsk, Session
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSClientConnection
from protocol.connection.dtls_server import DTLSServer
from protocol.events import (
    ConnectionFailed,
    EarlyDataReceived,
    HandshakeComplete,
    SessionTicketReceived,
)
from protocol.sessions import InMemorySessionStore
from tests.protocol.netsim import Link, Simulation

# One virtual clock across the connections of a test: a ticket must not look issued in the
# future of the connection that resumes it.
CLOCK = [time.time()]


def client_config(pki_dir: Path, **overrides: Any) -> ClientConfig:
    return ClientConfig(**{"server_name": "localhost", "cafile": pki_dir / "ca.pem", **overrides})


def server_config(pki_dir: Path, **overrides: Any) -> ServerConfig:
    settings = {"certfile": pki_dir / "server.pem", "keyfile": pki_dir / "server.key", **overrides}
    return ServerConfig(**settings)


def connect(
    client: DTLSClientConnection,
    server: DTLSServer,
    *,
    link: Link | None = None,
    seed: int = 0,
    port: int = 40000,
    early: bytes = b"",
) -> Simulation:
    sim = Simulation(
        client, server, link or Link(), seed, now=CLOCK[0], client_address=("192.0.2.1", port)
    )
    if early:
        client.send_early_data(early, sim.now)
    client.start(sim.now)
    done = sim.run_until(
        lambda: (
            bool(sim.of("client", HandshakeComplete) and sim.of("server", HandshakeComplete))
            or bool(sim.of("client", ConnectionFailed) or sim.of("server", ConnectionFailed))
        ),
        limit=60,
    )
    assert done
    sim.run(until=5)  # tickets and their ACKs
    CLOCK[0] = sim.now + 1
    return sim


def first_session(pki_dir: Path, server: DTLSServer, **client: Any) -> Session:
    sim = connect(DTLSClientConnection(client_config(pki_dir, **client)), server)
    tickets = sim.of("client", SessionTicketReceived)
    assert len(tickets) == 2
    session: Session = tickets[0].session
    assert session.dtls
    return session


def test_tickets_are_acknowledged(pki_dir: Path) -> None:
    server = DTLSServer(server_config(pki_dir))
    sim = connect(DTLSClientConnection(client_config(pki_dir)), server)
    assert len(sim.of("client", SessionTicketReceived)) == 2
    (association,) = server.connections
    # RFC 9147 §5.7/§7: the NewSessionTicket flight is ACKed, so nothing is pending or resent.
    assert association.next_timer() is None
    assert association.retransmissions == 0


@pytest.mark.parametrize("cookie", [True, False])
def test_resumption(pki_dir: Path, cookie: bool) -> None:
    server = DTLSServer(server_config(pki_dir, dtls_cookie=cookie))
    session = first_session(pki_dir, server)
    sim = connect(DTLSClientConnection(client_config(pki_dir), session=session), server, port=2)
    (client_done,) = sim.of("client", HandshakeComplete)
    (server_done,) = sim.of("server", HandshakeComplete)
    # With the cookie exchange the binders of ClientHello2 cover message_hash(CH1) + HRR,
    # which the stateless server rebuilds from its cookie (RFC 8446 §4.2.11.2).
    assert client_done.hello_retry is cookie
    assert client_done.resumed and server_done.resumed
    assert client_done.psk_mode == "psk_dhe_ke"


def test_early_data_accepted_without_cookie(pki_dir: Path) -> None:
    server = DTLSServer(server_config(pki_dir, dtls_cookie=False, max_early_data=500))
    session = first_session(pki_dir, server)
    client = DTLSClientConnection(client_config(pki_dir), session=session)
    sim = connect(client, server, port=2, early=b"early datagram")
    assert [e.data for e in sim.of("server", EarlyDataReceived)] == [b"early datagram"]
    assert sim.of("client", HandshakeComplete)[0].early_data == "accepted"
    assert sim.of("server", HandshakeComplete)[0].early_data == "accepted"


def test_early_data_rejected_by_cookie_exchange(pki_dir: Path) -> None:
    # The stateless cookie exchange answers with HelloRetryRequest: no 0-RTT (§4.2.10).
    server = DTLSServer(server_config(pki_dir, max_early_data=500))
    session = first_session(pki_dir, server)
    client = DTLSClientConnection(client_config(pki_dir), session=session)
    sim = connect(client, server, port=2, early=b"early datagram")
    assert sim.of("server", EarlyDataReceived) == []
    (client_done,) = sim.of("client", HandshakeComplete)
    assert client_done.early_data == "rejected" and client_done.resumed


def test_early_data_over_the_limit(pki_dir: Path) -> None:
    server = DTLSServer(server_config(pki_dir, dtls_cookie=False, max_early_data=50))
    session = replace(first_session(pki_dir, server), max_early_data=10_000)
    client = DTLSClientConnection(client_config(pki_dir), session=session)
    sim = connect(client, server, port=2, early=b"z" * 200)
    assert [f.alert for f in sim.of("server", ConnectionFailed)] == [
        AlertDescription.unexpected_message
    ]


@pytest.mark.parametrize("seed", range(8))
def test_resumption_over_lossy_network(pki_dir: Path, seed: int) -> None:
    link = Link(loss=0.2, duplicate=0.1, reorder=0.1)
    store = InMemorySessionStore()
    server = DTLSServer(server_config(pki_dir))
    client = client_config(pki_dir, session_store=store)
    connect(DTLSClientConnection(client), server, link=link, seed=seed)
    # Tickets are retransmitted until ACKed (RFC 9147 §5.8.4): the seeded loss cannot eat them.
    assert len(store), "no ticket arrived despite retransmissions"
    sim = connect(DTLSClientConnection(client), server, link=link, seed=seed + 100, port=3)
    assert sim.of("client", HandshakeComplete)[0].resumed


def test_external_psk_over_dtls(pki_dir: Path) -> None:
    psk = ExternalPsk(b"sensor-9", b"\x42" * 32)
    server = DTLSServer(ServerConfig(external_psks={psk.identity: psk}, tickets=0))
    client = DTLSClientConnection(ClientConfig(server_name="sensor", external_psk=psk))
    sim = connect(client, server)
    (done,) = sim.of("client", HandshakeComplete)
    assert done.psk_mode == "psk_dhe_ke" and done.peer_certificates == ()


def test_tls_ticket_is_not_offered_over_dtls(pki_dir: Path) -> None:
    from protocol.connection.tls import TLSClientConnection, TLSServerConnection
    from tests.protocol.memory_pump import Pump

    config = server_config(pki_dir)
    pump = Pump(TLSClientConnection(client_config(pki_dir)), TLSServerConnection(config), CLOCK[0])
    pump.run()
    tls_session = pump.of("client", SessionTicketReceived)[0].session
    sim = connect(
        DTLSClientConnection(client_config(pki_dir), session=tls_session), DTLSServer(config)
    )
    assert not sim.of("client", HandshakeComplete)[0].resumed
