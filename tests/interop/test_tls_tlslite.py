"""Interop with tlslite-ng (pure-Python TLS 1.3), in process over loopback sockets.

tlslite runs in a thread as the server (``TLSConnection.handshakeServer``) or in the test as
the client (``handshakeClientCert``) against our blocking server thread; its
``HandshakeSettings`` pin TLS 1.3 (``minVersion = maxVersion = (3, 4)``), the cipher suite
(``cipherNames``), the groups (``eccCurves``) and which of them get a key share
(``keyShares``: an empty or mismatching list forces a HelloRetryRequest). tlslite reports what
it negotiated: ``session.cipherSuite``, ``ecdhCurve``, ``session.appProto``, the peer's
certificate chain.

tlslite's ciphers are pure Python (about 0.5 MB/s), so bulk transfers are 1 MiB each way.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from handshake.alerts import AlertDescription
from interop.peers import require
from protocol.errors import ProtocolError
from protocol.transports.tcp_blocking import TLSSocket
from tests.interop.helpers import (
    HOST,
    MIB,
    SERVER_NAME,
    STEP_TIMEOUT,
    OurServer,
    binary_payload,
    client_config,
    exchange,
    our_client,
    our_recording_client,
    our_server,
    raise_server_error,
    recv_exactly,
    server_config,
)

pytestmark = pytest.mark.interop

SUITES = {  # IANA name -> (tlslite cipherNames entry, code)
    "TLS_AES_128_GCM_SHA256": ("aes128gcm", 0x1301),
    "TLS_AES_256_GCM_SHA384": ("aes256gcm", 0x1302),
    "TLS_CHACHA20_POLY1305_SHA256": ("chacha20-poly1305", 0x1303),
    "TLS_AES_128_CCM_SHA256": ("aes128ccm", 0x1304),
    "TLS_AES_128_CCM_8_SHA256": ("aes128ccm_8", 0x1305),
}
GROUPS = {"x25519": 29, "secp256r1": 23, "secp384r1": 24}
UPDATE_REQUESTED = 1


def tlslite_api() -> Any:
    """tlslite.api, at the version interop/setup_peers.sh recorded. Called in each test (not a
    fixture) so that a missing peer fails the test instead of erroring its setup."""
    import importlib.metadata

    peer = require("tlslite-ng")
    assert importlib.metadata.version("tlslite-ng") == peer.version
    import tlslite.api

    return tlslite.api


def settings(
    tlslite: Any,
    *,
    suite: str | None = None,
    groups: list[str] | None = None,
    key_shares: list[str] | None = None,
    record_size_limit: int | None = None,
) -> Any:
    hs = tlslite.HandshakeSettings()
    hs.minVersion = hs.maxVersion = (3, 4)
    hs.versions = [(3, 4)]
    if suite is not None:
        hs.cipherNames = [SUITES[suite][0]]
    # TLS 1.3 only: tlslite refuses its brainpool TLS 1.2 curves in the default list.
    hs.eccCurves = ["x25519", "secp256r1", "secp384r1", "secp521r1", "x448"]
    if groups is not None:
        hs.eccCurves = list(groups)
        hs.keyShares = list(groups[:1] if key_shares is None else key_shares)
    if record_size_limit is not None:
        hs.record_size_limit = record_size_limit
    return hs


def der(pem_path: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(Encoding.DER)


def chain_der(tlslite_chain: Any) -> list[bytes]:
    return [bytes(cert.writeBytes()) for cert in tlslite_chain.x509List]


def read_exactly(conn: Any, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        data = conn.read(max=size - len(out))
        if not data:
            break
        out += data
    return bytes(out)


def key_update(conn: Any) -> None:
    for _ in conn.send_keyupdate_request(UPDATE_REQUESTED):
        pass


def tlslite_echo(conn: Any) -> None:
    while data := conn.read():
        conn.write(data)


@dataclass
class TlsliteServer:
    """tlslite's server in a thread, one connection; ``conn`` stays for the test to read."""

    api: Any
    pki: Path
    hs_settings: Any
    handler: Callable[[Any], None] = tlslite_echo
    req_cert: bool = False
    alpn: list[bytes] | None = None
    conn: Any = None
    version: tuple[int, int] | None = None
    error: BaseException | None = None
    _sock: socket.socket = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._sock = socket.create_server((HOST, 0))
        self._sock.settimeout(STEP_TIMEOUT)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def _run(self) -> None:
        try:
            raw, _ = self._sock.accept()
            raw.settimeout(STEP_TIMEOUT)
            chain = self.api.X509CertChain()
            chain.parsePemList((self.pki / "server.pem").read_text())
            key = self.api.parsePEMKey((self.pki / "server.key").read_text(), private=True)
            self.conn = self.api.TLSConnection(raw)
            self.conn.handshakeServer(certChain=chain, privateKey=key, settings=self.hs_settings,
                                      reqCert=self.req_cert, alpn=self.alpn)  # fmt: skip
            self.version = self.conn.version  # close() resets it
            self.handler(self.conn)
            self.conn.close()
        except BaseException as exc:
            self.error = exc
        finally:
            self._sock.close()

    def join(self) -> None:
        self._thread.join(STEP_TIMEOUT)
        assert not self._thread.is_alive(), "tlslite server thread hangs"
        if self.error is not None:
            raise AssertionError(f"tlslite server failed: {self.error!r}") from self.error


def tlslite_client(api: Any, port: int, hs_settings: Any, pki: Path, **kwargs: Any) -> Any:
    """tlslite's client, handshake done; it does not check chains itself: the test compares
    the certificate it received with ours."""
    raw = socket.create_connection((HOST, port), timeout=STEP_TIMEOUT)
    conn = api.TLSConnection(raw)
    conn.handshakeClientCert(settings=hs_settings, serverName=SERVER_NAME, **kwargs)
    assert chain_der(conn.session.serverCertChain)[0] == der(pki / "server.pem")
    return conn


def client_credentials(api: Any, pki: Path) -> dict[str, Any]:
    chain = api.X509CertChain()
    chain.parsePemList((pki / "client.pem").read_text())
    key = api.parsePEMKey((pki / "client.key").read_text(), private=True)
    return {"certChain": chain, "privateKey": key}


def ping_tlslite_server(tls: TLSSocket, tag: bytes) -> None:
    tls.sendall(tag)
    assert recv_exactly(tls, len(tag)) == tag


def ping_our_server(conn: Any, tag: bytes) -> None:
    conn.write(tag)
    assert read_exactly(conn, len(tag)) == tag


def finish_our_server(conn: Any, server: OurServer) -> None:
    conn.close()  # close_notify; our echo server answers it and ends
    server.join()
    raise_server_error(server)


# -- our client, tlslite server -------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_our_client_suite(peer_pki: Path, suite: str) -> None:
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite, suite=suite))
    with our_client(server.port, client_config(peer_pki, cipher_suites=(suite,))) as tls:
        assert tls.handshake is not None and tls.handshake.cipher_suite == suite
        ping_tlslite_server(tls, suite.encode())
    server.join()
    assert server.version == (3, 4)
    assert server.conn.session.cipherSuite == SUITES[suite][1]


@pytest.mark.parametrize("group", GROUPS)
def test_our_client_group(peer_pki: Path, group: str) -> None:
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite, groups=[group]))
    with our_client(server.port, client_config(peer_pki, groups=(group,))) as tls:
        assert tls.handshake is not None
        assert (tls.handshake.group, tls.handshake.hello_retry) == (group, False)
        ping_tlslite_server(tls, group.encode())
    server.join()
    assert server.conn.ecdhCurve == GROUPS[group]


def test_our_client_hello_retry(peer_pki: Path) -> None:
    """tlslite's server takes only P-384; our first ClientHello shares x25519 only."""
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite, groups=["secp384r1"]))
    with our_client(server.port, client_config(peer_pki)) as tls:
        assert tls.handshake is not None
        assert (tls.handshake.group, tls.handshake.hello_retry) == ("secp384r1", True)
        ping_tlslite_server(tls, b"hrr")
    server.join()
    assert server.conn.ecdhCurve == 24


def test_our_client_certificate(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite), req_cert=True)
    config = client_config(
        peer_pki, certfile=peer_pki / "client.pem", keyfile=peer_pki / "client.key"
    )
    with our_client(server.port, config) as tls:
        ping_tlslite_server(tls, b"mtls")
    server.join()
    assert chain_der(server.conn.session.clientCertChain) == [der(peer_pki / "client.pem")]


def test_our_client_alpn(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite), alpn=[b"http/1.1", b"h2"])
    with our_client(server.port, client_config(peer_pki, alpn=("h2", "http/1.1"))) as tls:
        assert tls.handshake is not None
        chosen = tls.handshake.alpn
        ping_tlslite_server(tls, b"alpn")
    server.join()
    assert chosen in ("h2", "http/1.1")
    assert server.conn.session.appProto == chosen.encode()


def test_key_updates_both_ways_with_tlslite_server(peer_pki: Path) -> None:
    tlslite = tlslite_api()

    def handler(conn: Any) -> None:
        conn.write(read_exactly(conn, 6))  # "before"
        key_update(conn)  # tlslite's own, update_requested
        tlslite_echo(conn)

    server = TlsliteServer(tlslite, peer_pki, settings(tlslite), handler=handler)
    with our_client(server.port, client_config(peer_pki)) as tls:
        ping_tlslite_server(tls, b"before")
        ping_tlslite_server(tls, b"after-theirs")  # we took its new keys and answered
        assert (tls.key_updates_received, tls.key_updates_sent) == (1, 1)
        tls.key_update(request=True)
        ping_tlslite_server(tls, b"after-ours")  # it took ours and answered before echoing
        assert (tls.key_updates_received, tls.key_updates_sent) == (2, 2)
    server.join()


def test_our_client_record_size_limit(peer_pki: Path) -> None:
    """Both sides announce a limit (RFC 8449); on the wire (AES-128-GCM, 16-byte tag) each
    side's protected records respect the other's."""
    tlslite = tlslite_api()
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite, record_size_limit=1000))
    payload = binary_payload(32 * 1024)
    tls, wire = our_recording_client(server.port, client_config(peer_pki, record_size_limit=600))
    with tls:
        assert tls.handshake is not None and tls.handshake.peer_record_size_limit == 1000
        assert exchange(tls, payload, len(payload)) == payload
    server.join()
    assert max(wire.protected("sent")) == 1000 + 16
    assert max(wire.protected("received")) == 600 + 16


def test_our_client_1mib_echo(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    suite = "TLS_CHACHA20_POLY1305_SHA256"  # tlslite's fastest cipher
    server = TlsliteServer(tlslite, peer_pki, settings(tlslite, suite=suite))
    payload = binary_payload(MIB)
    with our_client(server.port, client_config(peer_pki)) as tls:
        received = exchange(tls, payload, len(payload))
    server.join()
    assert len(received) == len(payload)
    assert received == payload


# -- tlslite client, our server -------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_our_server_suite(peer_pki: Path, suite: str) -> None:
    tlslite = tlslite_api()
    with our_server(server_config(peer_pki, cipher_suites=tuple(SUITES))) as server:
        conn = tlslite_client(tlslite, server.port, settings(tlslite, suite=suite), peer_pki)
        ping_our_server(conn, suite.encode())
        finish_our_server(conn, server)
    assert server.handshake is not None and server.handshake.cipher_suite == suite
    assert conn.session.cipherSuite == SUITES[suite][1]


@pytest.mark.parametrize("group", GROUPS)
def test_our_server_group(peer_pki: Path, group: str) -> None:
    tlslite = tlslite_api()
    with our_server(server_config(peer_pki)) as server:
        conn = tlslite_client(tlslite, server.port, settings(tlslite, groups=[group]), peer_pki)
        ping_our_server(conn, group.encode())
        finish_our_server(conn, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == (group, False)
    assert conn.ecdhCurve == GROUPS[group]


def test_our_server_hello_retry(peer_pki: Path) -> None:
    """tlslite shares x25519 only; our server takes only P-384."""
    tlslite = tlslite_api()
    hs = settings(tlslite, groups=["x25519", "secp384r1"], key_shares=["x25519"])
    with our_server(server_config(peer_pki, groups=("secp384r1",))) as server:
        conn = tlslite_client(tlslite, server.port, hs, peer_pki)
        ping_our_server(conn, b"hrr")
        finish_our_server(conn, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == ("secp384r1", True)
    assert conn.ecdhCurve == 24


def test_our_server_hello_retry_for_empty_key_share(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    hs = settings(tlslite, groups=["secp256r1"], key_shares=[])
    with our_server(server_config(peer_pki)) as server:
        conn = tlslite_client(tlslite, server.port, hs, peer_pki)
        ping_our_server(conn, b"empty")
        finish_our_server(conn, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == ("secp256r1", True)


def test_our_server_verifies_tlslite_certificate(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    hs = settings(tlslite)
    hs.certificate_compression_send = []  # see the next test
    config = server_config(peer_pki, cafile=peer_pki / "ca.pem", verify_client=True)
    with our_server(config) as server:
        conn = tlslite_client(tlslite, server.port, hs, peer_pki,
                              **client_credentials(tlslite, peer_pki))  # fmt: skip
        ping_our_server(conn, b"mtls")
        finish_our_server(conn, server)
    assert server.handshake is not None and server.handshake.client_authenticated
    assert "CN=tls13 client" in (server.handshake.peer_certificate_subject or "")


def test_tlslite_client_sends_unsolicited_compressed_certificate(peer_pki: Path) -> None:
    """PEER BUG (tlslite-ng 0.8.2, tlsconnection.py:1537): the client decides on RFC 8879
    compression from its OWN ClientHello's compress_certificate extension instead of the
    CertificateRequest's, so it answers our CertificateRequest (which offers no compression)
    with a CompressedCertificate (type 25). Our server must refuse it: unexpected_message."""
    tlslite = tlslite_api()
    config = server_config(peer_pki, cafile=peer_pki / "ca.pem", verify_client=True)
    with our_server(config) as server:
        with pytest.raises((OSError, tlslite.TLSRemoteAlert, tlslite.TLSAbruptCloseError)):
            # A TLS 1.3 client is done once its Finished is out, so our alert may arrive
            # only on the next read: write and read until it shows.
            conn = tlslite_client(tlslite, server.port, settings(tlslite), peer_pki,
                                  **client_credentials(tlslite, peer_pki))  # fmt: skip
            conn.write(b"x")
            conn.read()
        server.join()
    assert isinstance(server.error, ProtocolError), server.error
    assert server.error.alert == AlertDescription.unexpected_message
    assert "25" in server.error.reason  # compressed_certificate
    assert server.handshake is None


def test_our_server_alpn(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    with our_server(server_config(peer_pki, alpn=("h2", "http/1.1"))) as server:
        conn = tlslite_client(tlslite, server.port, settings(tlslite), peer_pki,
                              alpn=[b"http/1.1", b"h2"])  # fmt: skip
        ping_our_server(conn, b"alpn")
        finish_our_server(conn, server)
    assert server.handshake is not None and server.handshake.alpn == "h2"
    assert conn.session.appProto == b"h2"


def test_key_updates_both_ways_with_tlslite_client(peer_pki: Path) -> None:
    tlslite = tlslite_api()

    def handler(tls: TLSSocket) -> None:
        data = tls.recv()
        tls.key_update(request=True)
        tls.sendall(data)
        while data := tls.recv():
            tls.sendall(data)

    with our_server(server_config(peer_pki), handler) as server:
        conn = tlslite_client(tlslite, server.port, settings(tlslite), peer_pki)
        ping_our_server(conn, b"before")  # echoed under our new keys
        ping_our_server(conn, b"after-ours")  # tlslite answered before sending it
        key_update(conn)
        ping_our_server(conn, b"after-theirs")
        finish_our_server(conn, server)
    assert (server.key_updates_sent, server.key_updates_received) == (2, 2)


def test_our_server_record_size_limit(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    received: list[int] = []

    def trace(event: Any) -> None:
        if event.direction == "received" and event.content_type == "application_data":
            received.append(event.length)

    hs = settings(tlslite, record_size_limit=2000)
    with our_server(server_config(peer_pki, record_size_limit=600, trace=trace)) as server:
        conn = tlslite_client(tlslite, server.port, hs, peer_pki)
        payload = binary_payload(8 * 1024)
        ping_our_server(conn, payload)
        finish_our_server(conn, server)
    assert server.handshake is not None and server.handshake.peer_record_size_limit == 2000
    assert sum(received) == len(payload)
    assert max(received) == 599  # 600 with the content type byte


def test_our_server_1mib_echo(peer_pki: Path) -> None:
    tlslite = tlslite_api()
    hs = settings(tlslite, suite="TLS_CHACHA20_POLY1305_SHA256")
    payload = binary_payload(MIB)
    with our_server(server_config(peer_pki)) as server:
        conn = tlslite_client(tlslite, server.port, hs, peer_pki)
        received = bytearray()
        for offset in range(0, len(payload), 64 * 1024):
            conn.write(payload[offset : offset + 64 * 1024])
            received += read_exactly(conn, len(payload[offset : offset + 64 * 1024]))
        finish_our_server(conn, server)
    assert server.bytes_received == len(payload)
    assert len(received) == len(payload)
    assert bytes(received) == payload
