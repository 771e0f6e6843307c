"""TLS resumption and PSKs between our client and server, in memory (RFC 8446 §2.2, §4.2.11,
§4.6.1), and the client session stores."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from handshake.psk import ExternalPsk, Session
from handshake.tickets import TicketKeyRing
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.events import (
    ConnectionFailed,
    HandshakeComplete,
    SessionTicketReceived,
)
from protocol.sessions import FileSessionStore, InMemorySessionStore
from tests.conftest import NOW
from tests.protocol.memory_pump import Pump

PSK = ExternalPsk(b"device-17", bytes.fromhex("00112233445566778899aabbccddeeff" * 2))


def client_config(pki_dir: Path, **overrides: Any) -> ClientConfig:
    return ClientConfig(**{"server_name": "localhost", "cafile": pki_dir / "ca.pem", **overrides})


def server_config(pki_dir: Path, **overrides: Any) -> ServerConfig:
    return ServerConfig(
        **{"certfile": pki_dir / "server.pem", "keyfile": pki_dir / "server.key", **overrides}
    )


def run(client: TLSClientConnection, server: TLSServerConnection, now: float = NOW) -> Pump:
    pump = Pump(client, server, now)
    pump.run()
    return pump


def complete(pump: Pump) -> tuple[HandshakeComplete, HandshakeComplete]:
    (client,) = pump.of("client", HandshakeComplete)
    (server,) = pump.of("server", HandshakeComplete)
    return client, server


def first_session(pki_dir: Path, server: ServerConfig, **client: Any) -> Session:
    pump = run(TLSClientConnection(client_config(pki_dir, **client)), TLSServerConnection(server))
    tickets = pump.of("client", SessionTicketReceived)
    assert len(tickets) == server.tickets
    return tickets[0].session  # type: ignore[no-any-return]


def test_full_handshake_issues_two_tickets(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    pump = run(TLSClientConnection(client_config(pki_dir)), TLSServerConnection(server))
    client_done, _ = complete(pump)
    assert not client_done.resumed and client_done.psk_mode is None
    sessions = [e.session for e in pump.of("client", SessionTicketReceived)]
    assert len(sessions) == 2
    # RFC 8446 §4.6.1: each ticket has its own ticket_age_add and PSK (distinct nonces).
    assert sessions[0].age_add != sessions[1].age_add
    assert sessions[0].psk != sessions[1].psk and sessions[0].ticket != sessions[1].ticket
    assert sessions[0].lifetime == 7200 and sessions[0].sni == "localhost"


def test_resumption(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = first_session(pki_dir, server)
    pump = run(
        TLSClientConnection(client_config(pki_dir), session=session),
        TLSServerConnection(server),
        NOW + 60,
    )
    client_done, server_done = complete(pump)
    for done in (client_done, server_done):
        assert (done.resumed, done.psk_mode, done.early_data) == (True, "psk_dhe_ke", "not_sent")
        assert done.signature_scheme is None and done.peer_certificates == ()
    # A resumed connection gets fresh tickets too.
    assert len(pump.of("client", SessionTicketReceived)) == 2


def test_resumption_psk_ke_when_both_opt_in(pki_dir: Path) -> None:
    server = server_config(pki_dir, psk_modes=("psk_ke", "psk_dhe_ke"))
    session = first_session(pki_dir, server)
    client = client_config(pki_dir, psk_modes=("psk_dhe_ke", "psk_ke"))
    pump = run(TLSClientConnection(client, session=session), TLSServerConnection(server))
    client_done, server_done = complete(pump)
    assert client_done.psk_mode == server_done.psk_mode == "psk_ke"
    assert client_done.group is None


def test_session_store_round_trip(pki_dir: Path) -> None:
    store = InMemorySessionStore()
    server = server_config(pki_dir)
    client = client_config(pki_dir, session_store=store)
    pump = run(TLSClientConnection(client, port=8443), TLSServerConnection(server))
    assert not complete(pump)[0].resumed
    assert len(store) == 2
    pump = run(TLSClientConnection(client, port=8443), TLSServerConnection(server))
    assert complete(pump)[0].resumed
    assert len(store) == 3  # one taken (RFC 8446 §C.4: used once), two new
    # Another port is another server.
    pump = run(TLSClientConnection(client, port=9443), TLSServerConnection(server))
    assert not complete(pump)[0].resumed


@pytest.mark.parametrize("position", [0, 10, -1])
def test_tampered_ticket_falls_back_to_full_handshake(pki_dir: Path, position: int) -> None:
    server = server_config(pki_dir)
    session = first_session(pki_dir, server)
    ticket = bytearray(session.ticket)
    ticket[position] ^= 0x40
    forged = replace(session, ticket=bytes(ticket))
    pump = run(
        TLSClientConnection(client_config(pki_dir), session=forged), TLSServerConnection(server)
    )
    client_done, server_done = complete(pump)
    assert not client_done.resumed and not server_done.resumed
    assert client_done.signature_scheme is not None  # a certificate handshake


def test_expired_ticket_falls_back(pki_dir: Path) -> None:
    server = server_config(pki_dir, ticket_lifetime=60)
    session = first_session(pki_dir, server)
    # The client still believes in it (say its clock is behind): the server refuses.
    believed = replace(session, lifetime=3600)
    pump = run(
        TLSClientConnection(client_config(pki_dir), session=believed),
        TLSServerConnection(server),
        NOW + 61,
    )
    assert not complete(pump)[1].resumed


def test_ticket_for_another_name_falls_back(pki_dir: Path) -> None:
    server = server_config(pki_dir)
    session = first_session(pki_dir, server, server_name="localhost")
    # Offered under another name (the client would not do that by itself).
    moved = replace(session, sni="127.0.0.1.nip.io")
    client = client_config(
        pki_dir, server_name="127.0.0.1.nip.io", dangerously_skip_certificate_verification=True
    )
    pump = run(TLSClientConnection(client, session=moved), TLSServerConnection(server))
    client_done, server_done = complete(pump)
    assert not client_done.resumed and not server_done.resumed


def test_ticket_for_another_alpn_falls_back(pki_dir: Path) -> None:
    server = server_config(pki_dir, alpn=("h2", "http/1.1"))
    session = first_session(pki_dir, server, alpn=("h2",))
    assert session.alpn == b"h2"
    client = client_config(pki_dir, alpn=("http/1.1",))
    pump = run(TLSClientConnection(client, session=session), TLSServerConnection(server))
    client_done, _ = complete(pump)
    assert not client_done.resumed and client_done.alpn == "http/1.1"


def test_ticket_from_another_server_key_falls_back(pki_dir: Path) -> None:
    session = first_session(pki_dir, server_config(pki_dir))
    pump = run(
        TLSClientConnection(client_config(pki_dir), session=session),
        TLSServerConnection(server_config(pki_dir)),  # a fresh random key ring
    )
    assert not complete(pump)[0].resumed


def test_shared_ticket_keys_resume_across_servers(pki_dir: Path) -> None:
    ring = TicketKeyRing()
    session = first_session(pki_dir, server_config(pki_dir, ticket_keys=ring))
    pump = run(
        TLSClientConnection(client_config(pki_dir), session=session),
        TLSServerConnection(server_config(pki_dir, ticket_keys=ring)),
    )
    assert complete(pump)[0].resumed


def test_single_use_tickets(pki_dir: Path) -> None:
    server = server_config(pki_dir, single_use_tickets=True)
    session = first_session(pki_dir, server)
    first = run(
        TLSClientConnection(client_config(pki_dir), session=session), TLSServerConnection(server)
    )
    assert complete(first)[1].resumed
    again = run(
        TLSClientConnection(client_config(pki_dir), session=session), TLSServerConnection(server)
    )
    assert not complete(again)[1].resumed  # RFC 8446 §8.1


def test_resumption_after_hello_retry(pki_dir: Path) -> None:
    # The server wants secp256r1 while the client leads with x25519: ClientHello2 carries
    # recomputed binders over message_hash(CH1) + HelloRetryRequest (RFC 8446 §4.1.2).
    server = server_config(pki_dir, groups=("secp256r1",))
    client = client_config(pki_dir, groups=("x25519", "secp256r1"))
    session = first_session(pki_dir, server, groups=("x25519", "secp256r1"))
    pump = run(TLSClientConnection(client, session=session), TLSServerConnection(server))
    client_done, server_done = complete(pump)
    assert client_done.hello_retry and client_done.resumed and server_done.resumed


def test_resumed_session_keeps_client_authentication(pki_dir: Path) -> None:
    server = server_config(pki_dir, cafile=pki_dir / "ca.pem", verify_client=True)
    mtls = {"certfile": pki_dir / "client.pem", "keyfile": pki_dir / "client.key"}
    session = first_session(pki_dir, server, **mtls)
    pump = run(
        TLSClientConnection(client_config(pki_dir, **mtls), session=session),
        TLSServerConnection(server),
    )
    _, server_done = complete(pump)
    assert server_done.resumed and server_done.client_authenticated

    # A ticket from a connection without client authentication does not resume on a server
    # that requires it (same ticket keys): a full handshake authenticates the client.
    ring = TicketKeyRing()
    plain = first_session(pki_dir, server_config(pki_dir, ticket_keys=ring))
    strict = server_config(pki_dir, cafile=pki_dir / "ca.pem", verify_client=True, ticket_keys=ring)
    pump = run(
        TLSClientConnection(client_config(pki_dir, **mtls), session=plain),
        TLSServerConnection(strict),
    )
    _, server_done = complete(pump)
    assert not server_done.resumed and server_done.client_authenticated


@pytest.mark.parametrize("mode", ["psk_dhe_ke", "psk_ke"])
def test_external_psk_without_certificates(pki_dir: Path, mode: str) -> None:
    server = ServerConfig(external_psks={PSK.identity: PSK}, psk_modes=(mode,), tickets=0)
    client = ClientConfig(server_name="device.example", external_psk=PSK, psk_modes=(mode,))
    pump = run(TLSClientConnection(client), TLSServerConnection(server))
    client_done, server_done = complete(pump)
    for done in (client_done, server_done):
        assert (done.psk_mode, done.resumed) == (mode, False)
        assert done.peer_certificates == ()
    assert (client_done.group is None) == (mode == "psk_ke")


def test_external_psk_wrong_key_is_decrypt_error(pki_dir: Path) -> None:
    server = ServerConfig(external_psks={"device-17": PSK}, tickets=0)
    wrong = ExternalPsk(PSK.identity, b"not the key")
    pump = run(
        TLSClientConnection(ClientConfig(server_name="d", external_psk=wrong)),
        TLSServerConnection(server),
    )
    failed = pump.of("server", ConnectionFailed)
    assert [f.alert for f in failed] == [AlertDescription.decrypt_error]


def test_psk_only_server_refuses_certificate_handshake(pki_dir: Path) -> None:
    server = server_config(pki_dir, external_psks={PSK.identity: PSK}, psk_only=True)
    pump = run(TLSClientConnection(client_config(pki_dir)), TLSServerConnection(server))
    assert [f.alert for f in pump.of("server", ConnectionFailed)] == [
        AlertDescription.handshake_failure
    ]


def test_unknown_external_identity_falls_back_to_certificate(pki_dir: Path) -> None:
    server = server_config(pki_dir, external_psks={PSK.identity: PSK})
    other = ExternalPsk(b"someone-else", b"k" * 32)
    pump = run(
        TLSClientConnection(client_config(pki_dir, external_psk=other)), TLSServerConnection(server)
    )
    client_done, _ = complete(pump)
    assert client_done.psk_mode is None and client_done.signature_scheme is not None


def test_server_config_validation(pki_dir: Path) -> None:
    with pytest.raises(ValueError):
        ServerConfig(external_psks={b"other": PSK})
    with pytest.raises(ValueError):
        ServerConfig()
    with pytest.raises(ValueError):
        server_config(pki_dir, ticket_lifetime=8 * 86400)  # RFC 8446 §4.6.1


def test_keylog_of_resumed_handshake(pki_dir: Path, tmp_path: Path) -> None:
    server = server_config(pki_dir)
    session = first_session(pki_dir, server)
    log = tmp_path / "keys.log"
    pump = run(
        TLSClientConnection(client_config(pki_dir, keylog=log), session=session),
        TLSServerConnection(server),
    )
    assert complete(pump)[0].resumed
    labels = {line.split()[0] for line in log.read_text().splitlines() if line}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} <= labels


# -- file session store --------------------------------------------------------------------------


def make_session(received_at: float, lifetime: int = 100, ticket: bytes = b"t") -> Session:
    return Session(
        ticket=ticket,
        psk=b"p" * 32,
        suite=0x1301,
        lifetime=lifetime,
        age_add=7,
        received_at=received_at,
        max_early_data=512,
        alpn=b"h2",
        sni="example.com",
    )


def test_file_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "sessions.json"
    store = FileSessionStore(path)
    now = time.time()
    a, b = make_session(now, ticket=b"a"), make_session(now, ticket=b"b")
    store.add("example.com", 443, a)
    store.add("example.com", 443, b)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds PSKs
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == ("tls13-sessions", 1)
    # A second store object (another process) sees the same sessions; newest first, once each.
    again = FileSessionStore(path)
    assert again.take("example.com", 443) == b
    assert store.take("example.com", 443) == a
    assert store.take("example.com", 443) is None
    assert store.take("example.org", 443) is None
    # Nothing but the file itself remains in the directory (the temporary file was renamed).
    assert sorted(p.name for p in path.parent.iterdir()) == ["sessions.json"]


def test_file_store_drops_expired(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    store = FileSessionStore(path)
    now = time.time()
    store.add("example.com", 443, make_session(now - 200, lifetime=100, ticket=b"old"))
    store.add("example.com", 443, make_session(now, ticket=b"new"))
    assert [s.ticket for s in store.load()[("example.com", 443)]] == [b"new"]
    assert [e["ticket"] for e in json.loads(path.read_text())["sessions"]] == [b"new".hex()]
    assert store.take("example.com", 443, now + 1000) is None  # expired by then


def test_file_store_atomic_write_survives_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sessions.json"
    store = FileSessionStore(path)
    now = time.time()
    store.add("example.com", 443, make_session(now, ticket=b"kept"))
    before = path.read_bytes()

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        store.add("example.com", 443, make_session(now, ticket=b"lost"))
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions.json"]  # no temp left


def test_file_store_rejects_other_versions(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"format": "tls13-sessions", "version": 99, "sessions": []}))
    with pytest.raises(ValueError):
        FileSessionStore(path).load()


def test_file_store_with_connections(pki_dir: Path, tmp_path: Path) -> None:
    store = FileSessionStore(tmp_path / "s.json")
    server = server_config(pki_dir)
    client = client_config(pki_dir, session_store=store)
    run(TLSClientConnection(client), TLSServerConnection(server))
    pump = run(TLSClientConnection(client), TLSServerConnection(server))
    assert complete(pump)[0].resumed
