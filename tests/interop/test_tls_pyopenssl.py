"""Interop with OpenSSL 4.0 through pyOpenSSL (``cryptography``'s bundled OpenSSL), in memory.

OpenSSL 3.5+ offers the hybrid post-quantum group X25519MLKEM768 first by default (draft-ietf-
tls-ecdhe-mlkem: client share = ML-KEM-768 encapsulation key || X25519 public, 1216 bytes), so
this peer checks our hybrid key exchange against an independent implementation both ways,
including a HelloRetryRequest to it. pyOpenSSL also sets TLS 1.3 suites
(``set_tls13_ciphersuites``: all five, CCM included), reports the negotiated group
(``get_group_name``) and exports keying material (RFC 8446 §7.5) for comparison with ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from interop.peers import require
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from tests.interop.helpers import (
    MIB,
    SERVER_NAME,
    MemoryLink,
    PyOpenSSLPeer,
    binary_payload,
    client_config,
    server_config,
)

pytestmark = pytest.mark.interop

SUITES = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
]
HYBRID = "X25519MLKEM768"


def openssl_4() -> Any:
    """OpenSSL.SSL, running on the OpenSSL 4 that interop/setup_peers.sh recorded. Called in
    each test (not a fixture) so that a missing peer fails the test."""
    peer = require("pyopenssl")
    from OpenSSL import SSL as ssl_module

    running = ssl_module.OpenSSL_version(ssl_module.OPENSSL_VERSION).decode()
    assert running == peer.details["openssl_version"]
    assert running.startswith("OpenSSL 4."), running
    return ssl_module


def server_context(SSL: Any, pki: Path, suite: str | None = None) -> Any:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.use_certificate_chain_file(str(pki / "server.pem"))
    ctx.use_privatekey_file(str(pki / "server.key"))
    if suite is not None:
        _only_suite(ctx, suite)
    return ctx


def client_context(SSL: Any, pki: Path, suite: str | None = None) -> Any:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.load_verify_locations(str(pki / "ca.pem"))
    ctx.set_verify(SSL.VERIFY_PEER)  # chain check; a failure aborts the handshake
    if suite is not None:
        _only_suite(ctx, suite)
    return ctx


def _only_suite(ctx: Any, suite: str) -> None:
    ctx.set_tls13_ciphersuites(suite.encode())
    if suite == "TLS_AES_128_CCM_8_SHA256":
        # OpenSSL 4 counts CCM_8's 64-bit tag below security level 1: allow it explicitly.
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")


def our_client_link(ctx: Any, pki: Path, **ours: Any) -> tuple[MemoryLink, PyOpenSSLPeer]:
    peer = PyOpenSSLPeer(ctx, server_side=True)
    link = MemoryLink(TLSClientConnection(client_config(pki, **ours)), peer)
    link.pump()
    return link, peer


def our_server_link(ctx: Any, pki: Path, **ours: Any) -> tuple[MemoryLink, PyOpenSSLPeer]:
    peer = PyOpenSSLPeer(ctx, server_side=False, server_name=SERVER_NAME.encode())
    link = MemoryLink(TLSServerConnection(server_config(pki, **ours)), peer)
    link.pump()
    return link, peer


def round_trip(link: MemoryLink, peer: PyOpenSSLPeer, size: int = 64) -> None:
    up, down = binary_payload(size), binary_payload(size)
    link.ours.send_data(up)
    link.pump()
    assert bytes(peer.received) == up
    peer.received.clear()
    peer.write(down)
    link.pump()
    assert link.received() == down


def assert_same_exporter(link: MemoryLink, peer: PyOpenSSLPeer) -> None:
    for context in (b"", b"context"):
        ours = link.ours.export_keying_material(b"EXPORTER-tls13-interop", context, 48)
        theirs = peer.conn.export_keying_material(b"EXPORTER-tls13-interop", 48, context)
        assert ours == theirs


# -- X25519MLKEM768 -------------------------------------------------------------------------------


def test_our_client_hybrid_share_accepted(peer_pki: Path) -> None:
    SSL = openssl_4()
    link, peer = our_client_link(server_context(SSL, peer_pki), peer_pki, groups=(HYBRID, "x25519"))
    assert (link.handshake.group, link.handshake.hello_retry) == (HYBRID, False)
    assert peer.conn.get_group_name() == HYBRID
    round_trip(link, peer)
    assert_same_exporter(link, peer)


def test_our_client_hello_retry_to_hybrid(peer_pki: Path) -> None:
    """Our default ClientHello shares x25519 and lists X25519MLKEM768: OpenSSL 4 prefers the
    hybrid group and asks for it with a HelloRetryRequest (a 1216-byte second share)."""
    SSL = openssl_4()
    link, peer = our_client_link(server_context(SSL, peer_pki), peer_pki)
    assert (link.handshake.group, link.handshake.hello_retry) == (HYBRID, True)
    assert peer.conn.get_group_name() == HYBRID
    round_trip(link, peer)
    assert_same_exporter(link, peer)


def test_our_server_takes_hybrid_share(peer_pki: Path) -> None:
    """OpenSSL 4's default ClientHello shares X25519MLKEM768 and x25519; our server prefers the
    hybrid (SERVER_DEFAULT_GROUPS)."""
    SSL = openssl_4()
    link, peer = our_server_link(client_context(SSL, peer_pki), peer_pki)
    assert (link.handshake.group, link.handshake.hello_retry) == (HYBRID, False)
    assert peer.conn.get_group_name() == HYBRID
    round_trip(link, peer)
    assert_same_exporter(link, peer)


def test_our_server_x25519_only(peer_pki: Path) -> None:
    """Our server restricted to x25519 takes OpenSSL 4's second share, no HRR."""
    SSL = openssl_4()
    link, peer = our_server_link(client_context(SSL, peer_pki), peer_pki, groups=("x25519",))
    assert (link.handshake.group, link.handshake.hello_retry) == ("x25519", False)
    assert peer.conn.get_group_name() == "x25519"
    round_trip(link, peer)


# -- every suite, both roles ----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_our_client_suite(peer_pki: Path, suite: str) -> None:
    SSL = openssl_4()
    link, peer = our_client_link(
        server_context(SSL, peer_pki, suite), peer_pki, cipher_suites=(suite,), groups=(HYBRID,)
    )
    assert link.handshake.cipher_suite == suite
    assert peer.conn.get_cipher_name() == suite
    assert peer.conn.get_protocol_version_name() == "TLSv1.3"
    round_trip(link, peer, 40_000)  # several records
    assert_same_exporter(link, peer)


@pytest.mark.parametrize("suite", SUITES)
def test_our_server_suite(peer_pki: Path, suite: str) -> None:
    SSL = openssl_4()
    link, peer = our_server_link(
        client_context(SSL, peer_pki, suite), peer_pki, cipher_suites=tuple(SUITES)
    )
    assert link.handshake.cipher_suite == suite
    assert peer.conn.get_cipher_name() == suite
    round_trip(link, peer, 40_000)
    assert_same_exporter(link, peer)


# -- KeyUpdate and bulk data ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["our_client", "our_server"])
def test_our_key_update_answered_by_openssl_4(peer_pki: Path, role: str) -> None:
    SSL = openssl_4()
    if role == "our_client":
        link, peer = our_client_link(server_context(SSL, peer_pki), peer_pki)
    else:
        link, peer = our_server_link(client_context(SSL, peer_pki), peer_pki)
    for n in (1, 2):
        link.ours.key_update(request_peer_update=True)
        round_trip(link, peer)
        assert len(link.key_updates("send")) == n
        assert [e.update_requested for e in link.key_updates("receive")] == [False] * n


@pytest.mark.parametrize("role", ["our_client", "our_server"])
def test_1mib_each_way_over_hybrid(peer_pki: Path, role: str) -> None:
    SSL = openssl_4()
    if role == "our_client":
        link, peer = our_client_link(server_context(SSL, peer_pki), peer_pki, groups=(HYBRID,))
    else:
        link, peer = our_server_link(client_context(SSL, peer_pki), peer_pki)
    assert link.handshake.group == HYBRID
    round_trip(link, peer, MIB)
