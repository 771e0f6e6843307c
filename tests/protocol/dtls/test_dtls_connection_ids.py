"""Connection IDs after the handshake (RFC 9147 §9) and automatic KeyUpdates before the AEAD
limits (§4.5.3), between our client and our server through the network simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from handshake.messages import NewConnectionId, RequestConnectionId, encode_message
from protocol.connection.dtls import DTLSConnection
from protocol.dtls.cids import MAX_CID_REQUESTS, MAX_OWN_CIDS
from protocol.errors import ConnectionStateError
from protocol.events import (
    ApplicationData,
    ConnectionFailed,
    ConnectionIdsReceived,
    KeyUpdated,
)
from tests.protocol.dtls.test_dtls_loopback import established, simulation
from tests.protocol.netsim import Link, Simulation


def connected(
    pki_dir: Path,
    client_cid: int | None = 4,
    server_cid: int | None = 8,
    server_extra: dict[str, Any] | None = None,
    **kw: object,
) -> Simulation:
    sim = simulation(
        pki_dir,
        client={"cid_length": client_cid},
        server={"cid_length": server_cid, **(server_extra or {})},
        **kw,  # type: ignore[arg-type]
    )
    assert sim.run_until(lambda: established(sim), limit=30)
    return sim


def force(sender: DTLSConnection, message: bytes) -> None:
    """Send a post-handshake message past our own sending rules (a misbehaving peer)."""
    sender._send_post_handshake(message)


def data_of(sim: Simulation, side: str) -> list[bytes]:
    return [e.data for e in sim.of(side, ApplicationData)]


def test_request_spare_cids_then_move_to_one(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    negotiated = sim.client.cid_sent
    sim.client.request_connection_ids(3)
    with pytest.raises(ConnectionStateError):
        sim.client.request_connection_ids(1)  # §9: one unfulfilled request at a time
    sim.run(until=2)
    received = sim.of("client", ConnectionIdsReceived)
    assert len(received) == 1 and not received[0].immediate
    spares = received[0].cids
    assert len(spares) == 3 and all(len(c) == 8 for c in spares)
    assert sim.client.spare_connection_ids == spares
    assert server_conn.connection_ids_issued == (negotiated, *spares)
    assert sim.client.next_timer() is None and server_conn.next_timer() is None  # ACKed
    # A new path: the client takes the first spare (§9, in the order given) and moves.
    assert sim.client.switch_connection_id() == spares[0]
    sim.client_address = ("198.51.100.9", 51000)
    sim.client.send_data(b"new path, new CID")
    sim.run(until=1)
    assert data_of(sim, "server") == [b"new path, new CID"]
    assert sim.server.connection_for(("198.51.100.9", 51000)) is server_conn
    server_conn.send_data(b"found you")
    sim.run(until=1)
    assert data_of(sim, "client") == [b"found you"]
    sim.client.request_connection_ids(1)  # the first request is fulfilled: allowed again
    sim.run(until=2)
    assert len(sim.of("client", ConnectionIdsReceived)) == 2


def test_server_moves_client_to_an_immediate_cid(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    (fresh,) = server_conn.issue_connection_ids(1, immediate=True)
    with pytest.raises(ConnectionStateError):
        server_conn.issue_connection_ids(1)  # §5.8.4: the first is not ACKed yet
    sim.run(until=2)
    event = sim.of("client", ConnectionIdsReceived)[0]
    assert event.immediate and event.cids == (fresh,)
    assert sim.client.cid_sent == fresh
    sim.client_address = ("203.0.113.5", 40001)
    sim.client.send_data(b"on the immediate CID")
    sim.run(until=1)
    assert data_of(sim, "server") == [b"on the immediate CID"]
    assert sim.server.connection_for(("203.0.113.5", 40001)) is server_conn
    server_conn.close()
    sim.run(until=1)
    assert not sim.server._by_cid  # every CID it issued is forgotten with it


def test_client_issues_cids_to_the_server(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    issued = sim.client.issue_connection_ids(2)
    assert all(len(c) == 4 for c in issued)
    sim.run(until=2)
    assert sim.of("server", ConnectionIdsReceived)[0].cids == issued
    assert server_conn.switch_connection_id() == issued[0]
    server_conn.send_data(b"to your spare CID")
    sim.run(until=1)
    assert data_of(sim, "client") == [b"to your spare CID"]
    assert server_conn.cid_sent == issued[0]


def test_request_during_an_unacknowledged_offer_is_answered_after_its_ack(
    pki_dir: Path,
) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    server_conn.issue_connection_ids(1)
    sim.client.request_connection_ids(2)  # reaches the server before the client's ACK
    sim.run(until=3)
    received = sim.of("client", ConnectionIdsReceived)
    assert [len(e.cids) for e in received] == [1, 2]
    assert len(set(server_conn.connection_ids_issued)) == 4
    assert server_conn.next_timer() is None


def test_excessive_request_gets_fewer_cids(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    sim.client.request_connection_ids(255)
    sim.run(until=2)
    (event,) = sim.of("client", ConnectionIdsReceived)
    assert len(event.cids) == MAX_OWN_CIDS - 1  # §9 MAY answer with fewer
    sim.client.request_connection_ids(5)
    sim.run(until=2)
    assert sim.of("client", ConnectionIdsReceived)[1].cids == ()  # none left: still answered


def test_too_many_requests_end_the_connection(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    server_conn._cids.requests_received = MAX_CID_REQUESTS
    force(sim.client, encode_message(RequestConnectionId(1), dtls=True))
    sim.run(until=2)
    failed = sim.of("server", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.too_many_cids_requested
    assert sim.of("client", ConnectionFailed)[0].by_peer


def test_cid_messages_without_negotiated_cids_are_unexpected(pki_dir: Path) -> None:
    sim = connected(pki_dir, client_cid=None, server_cid=None)
    with pytest.raises(ConnectionStateError):
        sim.client.request_connection_ids(1)
    with pytest.raises(ConnectionStateError):
        sim.client.issue_connection_ids(1)
    force(sim.client, encode_message(NewConnectionId((b"abcd",), 1), dtls=True))
    sim.run(until=2)
    failed = sim.of("server", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.unexpected_message


def test_request_while_sending_an_empty_cid_is_unexpected(pki_dir: Path) -> None:
    # The client asked for no CID (length 0): the server sends none, so it may neither
    # request CIDs (§9) nor be given any by the client.
    sim = connected(pki_dir, client_cid=0, server_cid=8)
    server_conn = sim.server.connections[0]
    assert server_conn.cid_sent == b"" and sim.client.cid_sent
    with pytest.raises(ConnectionStateError):
        server_conn.request_connection_ids(1)
    with pytest.raises(ConnectionStateError):
        sim.client.issue_connection_ids(1)
    force(server_conn, encode_message(RequestConnectionId(1), dtls=True))
    sim.run(until=2)
    failed = sim.of("client", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.unexpected_message


@pytest.mark.parametrize(
    ("cids", "usage"), [((b"abc",), 1), ((b"",), 1), ((), 0)], ids=["length", "empty", "none"]
)
def test_malformed_new_connection_id_is_illegal(
    pki_dir: Path, cids: tuple[bytes, ...], usage: int
) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    force(server_conn, encode_message(NewConnectionId(cids, usage), dtls=True))
    sim.run(until=2)
    failed = sim.of("client", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.illegal_parameter


@pytest.mark.parametrize("seed", range(5))
def test_cid_messages_survive_loss(pki_dir: Path, seed: int) -> None:
    sim = connected(pki_dir, link=Link(loss=0.3, duplicate=0.1, reorder=0.2), seed=seed)
    sim.client.request_connection_ids(2)
    sim.server.connections[0].issue_connection_ids(1)
    assert sim.run_until(lambda: len(sim.of("client", ConnectionIdsReceived)) == 2, limit=120)
    assert sorted(len(e.cids) for e in sim.of("client", ConnectionIdsReceived)) == [1, 2]
    assert not sim.of("client", ConnectionFailed) and not sim.of("server", ConnectionFailed)


# -- AEAD limits (RFC 9147 §4.5.3) ----------------------------------------------------------


def test_key_update_before_the_confidentiality_limit(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    cipher = sim.client._layer._write[3].cipher
    cipher.sealed = cipher.confidentiality_limit * 3 // 4  # as if 2^24 records went out
    sim.client.send_data(b"the record that crosses the soft limit")
    assert sim.client.key_update_pending
    sim.client.send_data(b"still on epoch 3 until the ACK")  # no second KeyUpdate (§8)
    sim.run(until=2)
    sent = [e for e in sim.of("client", KeyUpdated) if e.direction == "send"]
    assert len(sent) == 1 and not sent[0].update_requested
    assert sim.client._layer.write_epoch == 4
    sim.client.send_data(b"on fresh keys")
    sim.run(until=1)
    assert data_of(sim, "server")[-1] == b"on fresh keys"
    assert len([e for e in sim.of("client", KeyUpdated) if e.direction == "send"]) == 1


def test_key_update_requested_before_the_integrity_limit(pki_dir: Path) -> None:
    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    read = sim.client._layer._read[3].cipher
    read.cipher.failed = read.integrity_limit * 3 // 4  # many forgeries under epoch 3
    server_conn.send_data(b"one more record")
    sim.run(until=2)
    sent = [e for e in sim.of("client", KeyUpdated) if e.direction == "send"]
    assert len(sent) == 1 and sent[0].update_requested
    assert server_conn._layer.write_epoch == 4  # the server followed (RFC 8446 §4.6.3)
    server_conn.send_data(b"on fresh keys")
    sim.run(until=2)
    assert data_of(sim, "client")[-1] == b"on fresh keys"
    assert len([e for e in sim.of("client", KeyUpdated) if e.direction == "send"]) == 1


def test_message_seq_never_wraps(pki_dir: Path) -> None:
    # RFC 9147 §5.2 (bis): past message_seq 65535 no handshake message can be sent.
    from protocol.dtls.fragments import MAX_MESSAGE_SEQ

    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    sim.client._send_seq = MAX_MESSAGE_SEQ + 1
    for call in (sim.client.key_update, lambda: sim.client.request_connection_ids(1)):
        with pytest.raises(ConnectionStateError, match="message_seq"):
            call()
    sim.client.send_data(b"application data still flows")
    sim.run(until=1)
    assert data_of(sim, "server") == [b"application data still flows"]
    server_conn.key_update(request_peer_update=True)  # an answer we cannot give
    sim.run(until=2)
    failed = sim.of("client", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.internal_error


def test_one_sided_key_updates_in_a_row(pki_dir: Path) -> None:
    # Each side's epoch moves on its own: the server ACKs our epoch-4 KeyUpdate from epoch 3
    # (RFC 9147 §8); that is no "later epoch" ACK.
    sim = connected(pki_dir)
    for expected in (4, 5, 6):
        sim.client.key_update(request_peer_update=False)
        sim.run(until=2)
        assert sim.client._layer.write_epoch == expected
        sim.client.send_data(b"epoch %d" % expected)
        sim.run(until=1)
        assert data_of(sim, "server")[-1] == b"epoch %d" % expected
    assert sim.server.connections[0]._layer.write_epoch == 3
    assert not sim.of("server", ConnectionFailed) and not sim.of("client", ConnectionFailed)


def test_nothing_follows_our_key_update_in_its_epoch(pki_dir: Path) -> None:
    # RFC 9147 §8: after our KeyUpdate no post-handshake message goes out in that epoch;
    # a peer's RequestConnectionId is answered once the KeyUpdate is ACKed, in the new one.
    sent: list[tuple[int, str]] = []

    def trace(event: Any) -> None:
        if event.direction == "sent" and event.kind == "handshake":
            sent.append((event.epoch, event.detail))

    sim = connected(pki_dir, server_extra={"trace": trace})
    server_conn = sim.server.connections[0]
    server_conn.key_update(request_peer_update=False)
    with pytest.raises(ConnectionStateError, match="KeyUpdate"):
        server_conn.issue_connection_ids(1)
    sim.client.request_connection_ids(1)  # reaches the server before its KeyUpdate's ACK
    sim.run(until=3)
    assert server_conn._layer.write_epoch == 4
    (event,) = sim.of("client", ConnectionIdsReceived)
    assert len(event.cids) == 1
    assert sent[-2:] == [(3, "key_update"), (4, "new_connection_id")]
    assert not sim.of("client", ConnectionFailed)


def test_exhausted_message_seq_stops_automatic_key_updates_quietly(pki_dir: Path) -> None:
    from protocol.dtls.fragments import MAX_MESSAGE_SEQ

    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    sim.client._send_seq = MAX_MESSAGE_SEQ + 1
    read = sim.client._layer._read[3].cipher
    read.cipher.failed = read.integrity_limit * 3 // 4
    cipher = sim.client._layer._write[3].cipher
    cipher.sealed = cipher.confidentiality_limit * 3 // 4
    sim.client.send_data(b"no KeyUpdate possible, no exception either")
    server_conn.send_data(b"a datagram that would trigger one")
    sim.run(until=2)
    assert data_of(sim, "client") == [b"a datagram that would trigger one"]
    assert sim.client.state == "connected"


def test_server_cids_never_collide() -> None:
    # A DTLSServer's associations never share a CID, even with 1-byte CIDs (§9 routing).
    from protocol.dtls.cids import fresh_cid

    free = b"\x07"
    assert fresh_cid(1, lambda cid: cid != free) == free
    assert fresh_cid(1, lambda cid: True) is None  # all 256 taken
    assert len(fresh_cid(8, lambda cid: False) or b"") == 8
    assert fresh_cid(0, lambda cid: True) == b""
    # NewConnectionId draws from the same source: only the two CIDs nobody uses, no repeat.
    from protocol.dtls.cids import ConnectionIds

    ids = ConnectionIds()
    ids.negotiated_with(b"\x01", b"\x02")
    ids.set_taken(lambda cid: cid not in (b"\x09", b"\x0a"))
    assert sorted(ids.issue(5)) == [b"\x09", b"\x0a"]


def test_peer_message_after_its_key_update_in_the_same_epoch_is_unexpected(
    pki_dir: Path,
) -> None:
    # RFC 9147 §8: the receiver "MUST treat it as a protocol violation" (unexpected_message).
    from handshake.messages import KeyUpdate

    sim = connected(pki_dir)
    server_conn = sim.server.connections[0]
    force(server_conn, encode_message(KeyUpdate(0), dtls=True))  # keys change only on ACK
    force(server_conn, encode_message(RequestConnectionId(1), dtls=True))  # same epoch 3
    sim.run(until=2)
    failed = sim.of("client", ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.unexpected_message
    assert "after the peer's KeyUpdate" in failed[0].reason
