"""RFC 8448 §4 (resumed 0-RTT handshake) replayed through our client and server, byte for byte,
with the session §3's server issued.

The chain: our server reproduces §3's NewSessionTicket (its ticket bytes are NSS's sealed
state, so ``TraceTickets`` seals to them, and opens them back to the §3 session); our client
turns that NewSessionTicket into a ``Session`` whose PSK is §3's "resumption" secret; that
session resumes in §4 with the trace's randoms, key shares and the 6 bytes of early data.
Extension layout bridges are those of ``test_rfc8448_handshakes`` (NSS's renegotiation_info,
padding and order in the ClientHello; NSS's supported_groups in EncryptedExtensions).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from rfc8448_trace import find_blocks, hex_block
from test_rfc8448_handshakes import (
    NOW,
    Draws,
    Keys,
    Record,
    TraceClientHandshake,
    TraceSigner,
    Wire,
    _records,
    client_config,
    client_draws,
    credential,
    decode_as,
    describe,
    load,
    nss_server_layout,
    server_config,
)

from handshake.actions import EarlyDataDecision, NewSession, SendMessage
from handshake.alerts import AlertDescription, HandshakeError
from handshake.cipher_suites import TLS_AES_128_GCM_SHA256
from handshake.client import ClientState
from handshake.config import HandshakeConfig, PeerVerification
from handshake.messages import (
    ClientHello,
    EncryptedExtensions,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
    encode_message,
)
from handshake.psk import Session, binder_transcript_hash, compute_binder
from handshake.server import ServerHandshake, ServerState
from handshake.tickets import TicketManager, TicketState
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.events import ApplicationData, ConnectionClosed, EarlyDataReceived, HandshakeComplete

NOW4 = NOW + 0.005  # §4's obfuscated_ticket_age is ticket_age_add + 5 ms
EARLY_DATA = b"ABCDEF"


# -- §3's ticket ---------------------------------------------------------------------------------


def nst3() -> bytes:
    return hex_block("3", "construct a NewSessionTicket")


def resumption_psk3() -> bytes:
    return hex_block("3", 'generate resumption secret "tls13 resumption" | expanded')


class TraceTickets(TicketManager):
    """Seals to NSS's ticket bytes and opens them to §3's session (lifetime 30 s, 1024 bytes of
    early data), as NSS's server would have."""

    def __init__(self, **kwargs: Any) -> None:
        message = decode_as(NewSessionTicket, nst3())
        super().__init__(
            lifetime=message.ticket_lifetime,
            max_early_data=message.extensions.max_early_data_size or 0,
            **kwargs,
        )
        self.ticket = message.ticket
        self.sealed: list[TicketState] = []

    def seal(self, state: TicketState) -> bytes:
        self.sealed.append(state)
        return self.ticket

    def unseal(self, ticket: bytes) -> TicketState | None:
        if ticket != self.ticket:
            return None
        message = decode_as(NewSessionTicket, nst3())
        return TicketState(
            psk=resumption_psk3(),
            suite=TLS_AES_128_GCM_SHA256,
            created=NOW,
            lifetime=message.ticket_lifetime,
            age_add=message.ticket_age_add,
            max_early_data=1024,
            alpn=None,
            sni="server",
            client_auth=False,
            peer_chain_hash=b"",
            dtls=False,
        )


class AnyDraws(Draws):
    """Draws that also hand out the 4-byte ticket_age_add."""

    def __call__(self, n: int) -> bytes:
        assert self._values, "more random draws than the trace has values"
        value = self._values.pop(0)
        assert len(value) == n
        return value


def test_server_issues_section3_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    t = load("3")
    TraceSigner(monkeypatch).expect(
        credential("3", "server"), t.server_message(HandshakeType.certificate_verify)
    )
    nss_server_layout(monkeypatch, t)
    ticket = decode_as(NewSessionTicket, nst3())
    tickets = TraceTickets(count=1)
    draws = AnyDraws(t.server_hello.random, ticket.ticket_age_add.to_bytes(4, "big"))
    server = ServerHandshake(server_config(t, draws, tickets=tickets))
    server.handle(t.client_hellos[0], NOW)
    actions = server.handle(t.client_flight[-1], NOW)
    # RFC 8446 §4.6.1: after the client's Finished, under the application keys (epoch 3).
    assert describe(actions)[-1] == ("send", 3, "new_session_ticket", nst3().hex())
    (state,) = tickets.sealed
    assert state.psk == resumption_psk3()
    assert (state.sni, state.alpn, state.max_early_data, state.suite) == (
        "server",
        None,
        1024,
        TLS_AES_128_GCM_SHA256,
    )
    assert draws.drained()


def section3_session() -> Session:
    """Our §3 client, after the handshake, receiving §3's NewSessionTicket."""
    t = load("3")
    client = TraceClientHandshake(client_config(t, client_draws(t)), t.client_hellos)
    client.start(NOW)
    for message in t.server_flight:
        client.handle(message, NOW)
    assert client.state is ClientState.CONNECTED
    (action,) = client.handle(nst3(), NOW)
    assert isinstance(action, NewSession)
    return action.session


def test_client_session_from_section3_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    TraceSigner(monkeypatch)
    session = section3_session()
    message = decode_as(NewSessionTicket, nst3())
    assert session.psk == resumption_psk3()  # RFC 8446 §4.6.1 "resumption"
    assert session.ticket == message.ticket
    assert (session.lifetime, session.age_add, session.max_early_data) == (30, 0x933D0932, 1024)
    assert (session.suite, session.sni, session.alpn, session.received_at) == (
        TLS_AES_128_GCM_SHA256,
        "server",
        None,
        NOW,
    )
    assert session.obfuscated_age(NOW4) == 0x933D0937


# -- §4 values -----------------------------------------------------------------------------------


def _keys(who: str, direction: str, phase: str) -> Keys:
    heading = f"{{{who}}}  derive {direction} traffic keys for {phase} data | "
    return Keys(
        hex_block("4", heading + "PRK"),
        hex_block("4", heading + "key expanded"),
        hex_block("4", heading + "iv expanded"),
    )


def _secret(label: str, who: str) -> bytes:
    return hex_block("4", f'{{{who}}}  derive secret "{label}" | expanded')


def _constructed(who: str) -> list[bytes]:
    return [b.data for b in find_blocks("4", f"{{{who}}}  construct a ")]


# The "construct a ClientHello" block stops before the binders; the record carries it all.
CLIENT_HELLO = hex_block("4", "{client}  send handshake record | payload")
END_OF_EARLY_DATA, CLIENT_FINISHED = _constructed("client")[1:]
SERVER_HELLO, ENCRYPTED_EXTENSIONS, SERVER_FINISHED = _constructed("server")
EARLY = _keys("client", "write", "early application")
SERVER_HS = _keys("server", "write", "handshake")
CLIENT_HS = _keys("client", "write", "handshake")
SERVER_AP = _keys("server", "write", "application")
CLIENT_AP = _keys("client", "write", "application")


def key_step(direction: str, epoch: int, label: str, keys: Keys) -> tuple[Any, ...]:
    return (
        "keys",
        direction,
        epoch,
        TLS_AES_128_GCM_SHA256,
        label,
        keys.secret.hex(),
        keys.key.hex(),
        keys.iv.hex(),
        None,
    )


def send(epoch: int, message: bytes) -> tuple[Any, ...]:
    return ("send", epoch, HandshakeType(message[0]).name, message.hex())


def test_section4_vectors_are_consistent() -> None:
    assert len(CLIENT_HELLO) == 512
    assert CLIENT_HELLO.startswith(_constructed("client")[0])
    assert EARLY.secret == _secret("tls13 c e traffic", "client")
    assert SERVER_HS.secret == _secret("tls13 s hs traffic", "server")
    assert CLIENT_HS.secret == _secret("tls13 c hs traffic", "server")
    assert bytes.fromhex("05000000") == END_OF_EARLY_DATA


def test_binder_matches_trace() -> None:
    # RFC 8446 §4.2.11.2 over Truncate(ClientHello), keyed by "res binder".
    prefix = hex_block("4", "calculate PSK binder | ClientHello prefix")
    th = binder_transcript_hash("sha256", b"", prefix)
    assert th == hex_block("4", "calculate PSK binder | binder hash")
    binder = compute_binder(
        "sha256", resumption_psk3(), external=False, dtls=False, transcript_hash=th
    )
    assert binder == hex_block("4", "calculate PSK binder | finished")
    assert CLIENT_HELLO.endswith(binder)


# -- client side ---------------------------------------------------------------------------------


def client4(session: Session) -> TraceClientHandshake:
    hello = decode_as(ClientHello, CLIENT_HELLO)
    ext = hello.extensions
    assert ext.supported_groups is not None and ext.signature_algorithms is not None
    config = HandshakeConfig(
        cipher_suites=hello.cipher_suites,
        groups=ext.supported_groups,
        signature_schemes=ext.signature_algorithms,
        server_name=ext.server_name,
        record_size_limit=ext.record_size_limit,
        compatibility_mode=False,  # §4's ClientHello has an empty legacy_session_id
        verification=PeerVerification(enabled=False),
        random_bytes=Draws(hello.random),
        key_share_private=(
            hex_block("4", "{client}  create an ephemeral x25519 key pair | private"),
        ),
        session=session,
    )
    return TraceClientHandshake(config, [CLIENT_HELLO])


def test_client_reproduces_section4(monkeypatch: pytest.MonkeyPatch) -> None:
    TraceSigner(monkeypatch)
    client = client4(section3_session())
    assert client.early_data_limit(NOW4) == 1024
    assert describe(client.start(NOW4, early_data=True)) == [
        send(0, CLIENT_HELLO),
        key_step("write", 1, "CLIENT_EARLY_TRAFFIC_SECRET", EARLY),
        ("log", "EARLY_EXPORTER_SECRET", _secret("tls13 e exp master", "client").hex()),
    ]
    # The handshake keys wait: EndOfEarlyData still goes under the early keys (§4.5).
    assert describe(client.handle(SERVER_HELLO, NOW4)) == [
        key_step("read", 2, "SERVER_HANDSHAKE_TRAFFIC_SECRET", SERVER_HS)
    ]
    assert describe(client.handle(ENCRYPTED_EXTENSIONS, NOW4)) == [("EarlyDataDecision",)]
    assert client.early_data_status == "accepted"
    assert describe(client.handle(SERVER_FINISHED, NOW4)) == [
        key_step("read", 3, "SERVER_TRAFFIC_SECRET_0", SERVER_AP),
        ("log", "EXPORTER_SECRET", _secret("tls13 exp master", "server").hex()),
        send(1, END_OF_EARLY_DATA),
        key_step("write", 2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", CLIENT_HS),
        send(2, CLIENT_FINISHED),
        key_step("write", 3, "CLIENT_TRAFFIC_SECRET_0", CLIENT_AP),
        ("finished",),
    ]
    assert client.resumption_master_secret == _secret("tls13 res master", "client")
    params = client.parameters
    assert params is not None
    assert (params.resumed, params.psk_mode, params.early_data) == (True, "psk_dhe_ke", "accepted")
    assert params.peer_certificates == () and params.signature_scheme is None


def test_client_rejects_early_data_acceptance_for_wrong_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # §4.2.10: early_data in EncryptedExtensions needs the first PSK; here the server "picked"
    # an identity that does not exist: illegal_parameter at the ServerHello already.
    TraceSigner(monkeypatch)
    client = client4(section3_session())
    client.start(NOW4, early_data=True)
    sh = decode_as(ServerHello, SERVER_HELLO)
    bad = replace(sh, extensions=replace(sh.extensions, selected_identity=1))
    with pytest.raises(HandshakeError) as info:
        client.handle(encode_message(bad), NOW4)
    assert info.value.alert is AlertDescription.illegal_parameter


# -- server side ---------------------------------------------------------------------------------


def server4(tickets: TicketManager) -> ServerHandshake:
    ee = decode_as(EncryptedExtensions, ENCRYPTED_EXTENSIONS).extensions
    config = HandshakeConfig(
        cipher_suites=(TLS_AES_128_GCM_SHA256,),
        credentials=(credential("3", "server"),),
        verification=PeerVerification(enabled=False),
        advertised_groups=ee.supported_groups,
        random_bytes=Draws(decode_as(ServerHello, SERVER_HELLO).random),
        key_share_private=(
            hex_block("4", "{server}  create an ephemeral x25519 key pair | private"),
        ),
        tickets=tickets,
    )
    return ServerHandshake(config)


def test_server_reproduces_section4() -> None:
    server = server4(TraceTickets(count=0))
    actions = server.handle(CLIENT_HELLO, NOW4)
    assert describe(actions) == [
        send(0, SERVER_HELLO),
        key_step("write", 2, "SERVER_HANDSHAKE_TRAFFIC_SECRET", SERVER_HS),
        key_step("read", 1, "CLIENT_EARLY_TRAFFIC_SECRET", EARLY),
        ("log", "EARLY_EXPORTER_SECRET", _secret("tls13 e exp master", "client").hex()),
        ("EarlyDataDecision",),
        send(2, ENCRYPTED_EXTENSIONS),
        send(2, SERVER_FINISHED),
        key_step("write", 3, "SERVER_TRAFFIC_SECRET_0", SERVER_AP),
        ("log", "EXPORTER_SECRET", _secret("tls13 exp master", "server").hex()),
    ]
    assert server.state is ServerState.WAIT_END_OF_EARLY_DATA
    assert describe(server.handle(END_OF_EARLY_DATA, NOW4)) == [
        key_step("read", 2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", CLIENT_HS)
    ]
    assert describe(server.handle(CLIENT_FINISHED, NOW4)) == [
        key_step("read", 3, "CLIENT_TRAFFIC_SECRET_0", CLIENT_AP),
        ("finished",),
    ]
    assert server.resumption_master_secret == _secret("tls13 res master", "client")
    params = server.parameters
    assert params is not None
    assert (params.resumed, params.psk_mode, params.early_data) == (True, "psk_dhe_ke", "accepted")


def test_server_replayed_section4_hello_gets_no_early_data() -> None:
    # RFC 8446 §8.2: the same ClientHello (same binder) again: the PSK still resumes, 0-RTT
    # is declined (EncryptedExtensions without early_data).
    tickets = TraceTickets(count=0)
    server4(tickets).handle(CLIENT_HELLO, NOW4)
    replay = server4(tickets)
    sent = [a for a in replay.handle(CLIENT_HELLO, NOW4) if isinstance(a, SendMessage)]
    ee = decode_as(EncryptedExtensions, sent[1].data)
    assert not ee.extensions.early_data
    assert replay.state is ServerState.WAIT_CLIENT_FINISHED


def test_server_rejects_section4_binder_tampering() -> None:
    altered = CLIENT_HELLO[:-1] + bytes([CLIENT_HELLO[-1] ^ 1])
    with pytest.raises(HandshakeError) as info:
        server4(TraceTickets(count=0)).handle(altered, NOW4)
    assert info.value.alert is AlertDescription.decrypt_error


def test_server_ticket_too_old_for_early_data() -> None:
    # §8.3: 20 s late by the server's clock (window 10 s): resumed, but no 0-RTT.
    server = server4(TraceTickets(count=0))
    actions = server.handle(CLIENT_HELLO, NOW4 + 20)
    assert server.state is ServerState.WAIT_CLIENT_FINISHED
    decisions = [a for a in actions if isinstance(a, EarlyDataDecision)]
    assert [d.accepted for d in decisions] == [False]


# -- records through protocol/connection/tls ----------------------------------------------------

RECORDS: tuple[Record, ...] = _records("4")


def test_section4_records_read_completely() -> None:
    assert [(r.who[0], r.kind) for r in RECORDS] == [
        ("c", "handshake"),
        ("c", "application_data"),
        ("s", "handshake"),
        ("s", "handshake"),
        ("c", "handshake"),
        ("c", "handshake"),
        ("c", "application_data"),
        ("s", "application_data"),
        ("c", "alert"),
        ("s", "alert"),
    ]
    assert RECORDS[1].payload == EARLY_DATA


def test_client_connection_records_section4(monkeypatch: pytest.MonkeyPatch) -> None:
    TraceSigner(monkeypatch)
    session = section3_session()
    connection = TLSClientConnection(
        ClientConfig(server_name="server", dangerously_skip_certificate_verification=True)
    )
    connection._hs = connection._client_hs = client4(session)
    connection.send_early_data(EARLY_DATA, now=NOW4)
    connection.start(NOW4)
    wire = Wire(connection)
    events = []
    for record in RECORDS:
        if record.who == "server":
            events += connection.receive_data(record.wire, NOW4)
            continue
        if record.kind == "application_data" and record.payload != EARLY_DATA:
            connection.send_data(record.payload)
        elif record.kind == "alert":
            connection.close()
        # The ClientHello, the early data, EndOfEarlyData and Finished come out by themselves.
        wire.expect(record.wire)
    assert wire.pending + connection.data_to_send() == b""
    complete = [e for e in events if isinstance(e, HandshakeComplete)]
    assert [e.early_data for e in complete] == ["accepted"]
    assert [type(e) for e in events] == [HandshakeComplete, ApplicationData, ConnectionClosed]


def test_server_connection_records_section4() -> None:
    connection = TLSServerConnection(ServerConfig(credentials=(credential("3", "server"),)))
    connection._hs = server4(TraceTickets(count=0))
    wire = Wire(connection)
    events = []
    for record in RECORDS:
        if record.who == "client":
            events += connection.receive_data(record.wire, NOW4)
            continue
        if record.kind == "application_data":
            connection.send_data(record.payload)
        wire.expect(record.wire)
    assert wire.pending + connection.data_to_send() == b""
    assert [type(e) for e in events] == [
        EarlyDataReceived,
        HandshakeComplete,
        ApplicationData,
        ConnectionClosed,
    ]
    assert events[0] == EarlyDataReceived(EARLY_DATA)
