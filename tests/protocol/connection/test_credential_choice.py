"""Which certificate chain a server with several presents (RFC 8446 §4.4.2.2, §4.2.4)."""

from __future__ import annotations

import pytest

from handshake.config import Credential
from handshake.server import ServerHandshake
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.events import HandshakeComplete
from protocol.pki import PKI, generate_pki
from tests.conftest import NOW
from tests.protocol.memory_pump import Pump


def credential(pki: PKI) -> Credential:
    return Credential(tuple(pki.server.chain_der), pki.server.private_key)


@pytest.fixture(scope="module")
def pkis() -> tuple[PKI, PKI]:
    return (
        generate_pki(hosts=("a.example",), key_set="choice-a"),
        generate_pki(hosts=("*.b.example",), key_set="choice-b"),
    )


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [("a.example", 0), ("www.b.example", 1), ("WWW.B.EXAMPLE", 1), ("c.example", 0)],
    ids=["first", "wildcard", "case", "default"],
)
def test_server_name_picks_the_chain(
    pkis: tuple[PKI, PKI], server_name: str, expected: int
) -> None:
    server = ServerConfig(credentials=(credential(pkis[0]), credential(pkis[1])))
    trusted = pkis[expected].roots
    client = ClientConfig(
        server_name=server_name,
        ca_certificates=tuple(trusted),
        dangerously_skip_certificate_verification=server_name == "c.example",
    )
    pump = Pump(TLSClientConnection(client), TLSServerConnection(server), NOW)
    pump.run()
    (done,) = pump.of("client", HandshakeComplete)
    assert done.peer_certificates[0] == pkis[expected].server.certificate


def test_certificate_authorities_pick_the_chain(pkis: tuple[PKI, PKI]) -> None:
    creds = (credential(pkis[0]), credential(pkis[1]))
    server = ServerHandshake(ServerConfig(credentials=creds).handshake_config(dtls=False))
    schemes = creds[0].signature_schemes
    b_root = pkis[1].ca.certificate.subject.public_bytes()
    assert server._choose_credential(schemes, None, (b_root,))[0] is creds[1]
    assert server._choose_credential(schemes, None, None)[0] is creds[0]
    # server_name outranks certificate_authorities
    assert server._choose_credential(schemes, "a.example", (b_root,))[0] is creds[0]


def test_client_answers_with_a_chain_from_a_named_ca(pkis: tuple[PKI, PKI]) -> None:
    # The server trusts only CA "b" and names it in certificate_authorities (§4.2.4): the
    # client with chains from both CAs answers with b's, though a's comes first.
    a, b = pkis
    client_creds = tuple(Credential(tuple(p.client.chain_der), p.client.private_key) for p in pkis)
    server = ServerConfig(
        credentials=(credential(a),),
        ca_certificates=tuple(b.roots),
        verify_client=True,
    )
    client = ClientConfig(
        server_name="a.example", ca_certificates=tuple(a.roots), credentials=client_creds
    )
    pump = Pump(TLSClientConnection(client), TLSServerConnection(server), NOW)
    pump.run()
    (done,) = pump.of("server", HandshakeComplete)
    assert done.client_authenticated
    assert done.peer_certificates[0] == b.client.certificate
