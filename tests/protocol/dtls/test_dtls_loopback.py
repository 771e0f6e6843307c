"""DTLS 1.3: our client and server through the seeded network simulator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSClientConnection
from protocol.connection.dtls_server import DTLSServer
from protocol.events import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    HandshakeComplete,
    KeyUpdated,
)
from tests.protocol.netsim import Link, Simulation


def simulation(
    pki_dir: Path,
    *,
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    link: Link | None = None,
    seed: int = 0,
) -> Simulation:
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
    sim = Simulation(
        DTLSClientConnection(client_config), DTLSServer(server_config), link or Link(), seed
    )
    sim.client.start(sim.now)
    return sim


def established(sim: Simulation) -> bool:
    return bool(sim.of("client", HandshakeComplete)) and bool(sim.of("server", HandshakeComplete))


def test_full_handshake_with_cookie(pki_dir: Path) -> None:
    sim = simulation(pki_dir)
    assert sim.run_until(lambda: established(sim), limit=30)
    client = sim.of("client", HandshakeComplete)[0]
    server = sim.of("server", HandshakeComplete)[0]
    assert client.version == server.version == "DTLS 1.3"
    assert client.hello_retry and server.hello_retry  # the stateless cookie exchange
    assert sim.client.handshake_round_trips == 2
    assert sim.client.retransmissions == 0
    sim.run(until=5)  # the server ACKs the client's final flight; nothing is resent
    assert sim.client.retransmissions == 0
    assert sim.client.next_timer() is None


def test_without_cookie_exchange(pki_dir: Path) -> None:
    sim = simulation(pki_dir, server={"dtls_cookie": False})
    assert sim.run_until(lambda: established(sim), limit=30)
    assert not sim.of("client", HandshakeComplete)[0].hello_retry
    assert sim.client.handshake_round_trips == 1


def test_application_data_and_key_update(pki_dir: Path) -> None:
    sim = simulation(pki_dir)
    assert sim.run_until(lambda: established(sim), limit=30)
    server_conn = sim.server.connections[0]
    sim.client.send_data(b"hello over datagrams")
    sim.run(until=1)
    assert [e.data for e in sim.of("server", ApplicationData)] == [b"hello over datagrams"]
    sim.client.key_update(request_peer_update=True)
    sim.run(until=2)
    sim.client.send_data(b"after update")
    server_conn.send_data(b"reply after update")
    sim.run(until=2)
    assert sim.of("server", KeyUpdated)
    assert b"after update" in [e.data for e in sim.of("server", ApplicationData)]
    assert [e.data for e in sim.of("client", ApplicationData)] == [b"reply after update"]
    assert sim.client._layer.write_epoch == 4
    assert server_conn._layer.write_epoch == 4


def test_fragmented_flights_small_mtu(pki_dir: Path) -> None:
    sim = simulation(pki_dir, client={"mtu": 300}, server={"mtu": 300}, link=Link(mtu=300 - 48))
    assert sim.run_until(lambda: established(sim), limit=30)
    assert sim.dropped == 0


def test_connection_id_and_address_change(pki_dir: Path) -> None:
    sim = simulation(pki_dir, client={"cid_length": 4}, server={"cid_length": 8})
    assert sim.run_until(lambda: established(sim), limit=30)
    conn = sim.server.connections[0]
    assert sim.client.cid_sent == conn.cid_received and len(conn.cid_received or b"") == 8
    assert conn.cid_sent == sim.client.cid_received and len(sim.client.cid_received or b"") == 4
    sim.client_address = ("198.51.100.7", 50000)  # NAT rebinding
    sim.client.send_data(b"from a new address")
    sim.run(until=1)
    assert [e.data for e in sim.of("server", ApplicationData)] == [b"from a new address"]
    assert sim.server.connection_for(("198.51.100.7", 50000)) is conn
    conn.send_data(b"answer to the new address")
    sim.run(until=1)
    assert [e.data for e in sim.of("client", ApplicationData)] == [b"answer to the new address"]


def test_close_notify(pki_dir: Path) -> None:
    sim = simulation(pki_dir)
    assert sim.run_until(lambda: established(sim), limit=30)
    sim.client.close()
    sim.run(until=1)
    assert sim.of("server", ConnectionClosed)


def test_retransmission_budget_then_timeout(pki_dir: Path) -> None:
    sim = simulation(
        pki_dir, client={"max_retransmits": 3, "retransmit_initial": 0.5}, link=Link(loss=1.0)
    )
    sim.run(until=120)
    failed = sim.of("client", ConnectionFailed)
    assert len(failed) == 1 and failed[0].alert is None
    assert "3 retransmissions" in failed[0].reason
    assert sim.client.retransmissions == 3


@pytest.mark.parametrize("seed", range(40))
def test_lossy_network(pki_dir: Path, seed: int) -> None:
    link = Link(loss=0.3, duplicate=0.1, reorder=0.2, delay=0.03, jitter=0.05)
    sim = simulation(pki_dir, link=link, seed=seed, client={"cid_length": 2})
    done = sim.run_until(
        lambda: established(sim) or bool(sim.of("client", ConnectionFailed)), limit=600
    )
    assert done
    if not established(sim):
        # Only a spent retransmission budget may end it.
        failed = sim.of("client", ConnectionFailed) + sim.of("server", ConnectionFailed)
        assert failed and all(f.alert is None for f in failed), failed
        return
    payloads = [os.urandom(100) + bytes([i]) for i in range(20)]
    for p in payloads:
        sim.client.send_data(p)
    sim.run(until=10)
    got = [e.data for e in sim.of("server", ApplicationData)]
    assert len(got) == len(set(got))  # never delivered twice
    assert set(got) <= set(payloads)


def test_many_handshakes_at_30_percent_loss(pki_dir: Path) -> None:
    """Hundreds of seeded handshakes: each completes, or fails only by spending its budget;
    data is never delivered twice and replayed records are dropped."""
    outcomes = {"established": 0, "timed_out": 0}
    retransmissions = 0
    replays = 0
    for seed in range(1000, 3000):
        link = Link(loss=0.3, duplicate=0.2, reorder=0.2, delay=0.02, jitter=0.04)
        sim = simulation(pki_dir, link=link, seed=seed)
        sim.run_until(
            lambda sim=sim: (
                established(sim)  # type: ignore[misc]
                or bool(sim.of("client", ConnectionFailed))
            ),
            limit=600,
        )
        if not established(sim):
            failed = sim.of("client", ConnectionFailed)
            assert failed and failed[0].alert is None, (seed, failed, sim.server_events)
            outcomes["timed_out"] += 1
            continue
        outcomes["established"] += 1
        retransmissions += sim.client.retransmissions
        sim.client.send_data(b"reading %d" % seed)
        sim.run(until=3)
        got = [e.data for e in sim.of("server", ApplicationData)]
        assert len(got) <= 1 and set(got) <= {b"reading %d" % seed}
        replays += sim.server.connections[0].record_stats.replays  # type: ignore[attr-defined]
    assert outcomes["established"] >= 1900, outcomes  # 6 retransmissions rarely all fail
    assert retransmissions > 100  # the loss was real and recovered from
    assert replays > 0  # duplicated datagrams were caught by the replay window


def test_ack_naming_a_later_epoch_is_illegal(pki_dir: Path) -> None:
    # RFC 9147 §7.2 (bis): every record number in an ACK has an epoch ≤ the ACK's own.
    from records.record_numbers import RecordNumber, encode_ack

    sim = simulation(pki_dir)
    assert sim.run_until(lambda: established(sim), limit=30)
    layer = sim.client._layer
    _, record = layer.encode_record(26, encode_ack([RecordNumber(layer.write_epoch + 1, 0)]))
    sim.client._out.append(record)
    sim.run(until=1)
    failed = sim.of("server", ConnectionFailed)
    assert failed and failed[0].alert == 47  # illegal_parameter


def test_retransmissions_back_off_to_smaller_datagrams(pki_dir: Path) -> None:
    # RFC 9147 §4.4: a path whose MTU is below the configured one drops every large
    # datagram; after two unanswered retransmissions the flight is cut to fit any path.
    from protocol.connection.dtls import SMALL_DATAGRAM

    sim = simulation(pki_dir, link=Link(mtu=SMALL_DATAGRAM))
    assert sim.run_until(lambda: established(sim), limit=120)
    assert sim.dropped > 0  # the first transmissions were too large
    conn = sim.server.connections[0]
    assert conn.retransmissions >= 2
    sim.client.send_data(b"through the narrow path")
    sim.run(until=1)
    assert [e.data for e in sim.of("server", ApplicationData)] == [b"through the narrow path"]
