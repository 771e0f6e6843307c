"""Interop with Python's ``ssl`` (the system OpenSSL 3.0), in process, through memory BIOs.

Our Sans-IO client and server talk to ``ssl.SSLContext.wrap_bio`` objects: no sockets. What
the peer did is taken from the peer itself: ``SSLObject.cipher()``/``version()``/
``selected_alpn_protocol()``/``getpeercert()``, and its handshake messages as OpenSSL's message
callback reports them (``SSLContext._msg_callback``: the only window Python gives on the
ServerHello's key_share, HelloRetryRequest and KeyUpdate).

Limits of the peer API (covered elsewhere): Python ``ssl`` cannot choose TLS 1.3 cipher suites
(only OpenSSL's three defaults are on; CCM suites are checked to fail cleanly here and pass with
the openssl CLI and pyOpenSSL), cannot send KeyUpdate (OpenSSL answers ours; peer-initiated
updates are covered with the openssl CLI), and selects groups only through ``set_ecdh_curve``
(which in OpenSSL 3 restricts the group list to that one curve: enough for P-256/P-384 and HRR;
X25519 is covered with the CLI).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from tests.interop.helpers import (
    MIB,
    SERVER_NAME,
    MemoryLink,
    SSLObjectPeer,
    binary_payload,
    client_config,
    parse_server_hello,
    server_config,
)

pytestmark = pytest.mark.interop

# What OpenSSL 3.0 enables for TLS 1.3 and Python cannot change.
DEFAULT_SUITES = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
]
CCM_SUITES = ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
# OpenSSL curve name for set_ecdh_curve -> IANA name, code
CURVES = {"prime256v1": ("secp256r1", 23), "secp384r1": ("secp384r1", 24)}
HANDSHAKE = 22
CLIENT_HELLO, SERVER_HELLO, KEY_UPDATE = 1, 2, 24


@pytest.fixture(autouse=True)
def _python_ssl_is_openssl_3() -> None:
    """The peer is Python's own OpenSSL (the system's 3.0 on Debian 12): TLS 1.3 with the
    message callback this module reads."""
    assert ssl.OPENSSL_VERSION_INFO[:2] >= (3, 0), ssl.OPENSSL_VERSION
    assert ssl.HAS_TLSv1_3


@dataclass
class MessageLog:
    """Handshake messages the ``ssl`` peer read and wrote (OpenSSL's msg_callback)."""

    read: list[bytes] = field(default_factory=list)
    written: list[bytes] = field(default_factory=list)

    def __call__(
        self, conn: Any, direction: str, version: Any, content_type: Any, *rest: Any
    ) -> None:
        data: bytes = rest[-1]  # (msg_type, data)
        if int(content_type) == HANDSHAKE and data:
            (self.read if direction == "read" else self.written).append(bytes(data))

    def types(self, direction: str) -> list[int]:
        return [m[0] for m in (self.read if direction == "read" else self.written)]

    def server_hellos(self, direction: str) -> list[Any]:
        messages = self.read if direction == "read" else self.written
        return [parse_server_hello(m) for m in messages if m[0] == SERVER_HELLO]

    def key_updates(self, direction: str) -> list[int]:
        """request_update of each KeyUpdate (RFC 8446 §4.6.3)."""
        messages = self.read if direction == "read" else self.written
        return [m[4] for m in messages if m[0] == KEY_UPDATE]


def ssl_server_context(
    pki: Path,
    *,
    require_client_cert: bool = False,
    alpn: list[str] | None = None,
    curve: str | None = None,
) -> tuple[ssl.SSLContext, MessageLog]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.pem")
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if curve:
        ctx.set_ecdh_curve(curve)
    log = MessageLog()
    ctx._msg_callback = log  # type: ignore[attr-defined]
    return ctx, log


def ssl_client_context(
    pki: Path,
    *,
    client_cert: bool = False,
    alpn: list[str] | None = None,
    curve: str | None = None,
) -> tuple[ssl.SSLContext, MessageLog]:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))  # verifies chain and name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if client_cert:
        ctx.load_cert_chain(pki / "client.pem", pki / "client.key")
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if curve:
        ctx.set_ecdh_curve(curve)
    log = MessageLog()
    ctx._msg_callback = log  # type: ignore[attr-defined]
    return ctx, log


def our_client_link(
    pki: Path, ctx: ssl.SSLContext, **ours: Any
) -> tuple[MemoryLink, SSLObjectPeer]:
    peer = SSLObjectPeer(ctx, server_side=True)
    link = MemoryLink(TLSClientConnection(client_config(pki, **ours)), peer)
    link.pump()
    return link, peer


def our_server_link(
    pki: Path, ctx: ssl.SSLContext, **ours: Any
) -> tuple[MemoryLink, SSLObjectPeer]:
    peer = SSLObjectPeer(ctx, server_side=False, server_hostname=SERVER_NAME)
    link = MemoryLink(TLSServerConnection(server_config(pki, **ours)), peer)
    link.pump()
    return link, peer


def round_trip(link: MemoryLink, peer: SSLObjectPeer, tag: bytes) -> None:
    """A message each way, checked byte for byte."""
    link.ours.send_data(b"ours:" + tag)
    link.pump()
    assert bytes(peer.received) == b"ours:" + tag
    peer.received.clear()
    peer.write(b"peer:" + tag)
    link.pump()
    assert link.received() == b"peer:" + tag


# -- cipher suites --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", DEFAULT_SUITES)
def test_our_client_suite(peer_pki: Path, suite: str) -> None:
    ctx, log = ssl_server_context(peer_pki)
    link, peer = our_client_link(peer_pki, ctx, cipher_suites=(suite,))
    assert link.handshake.cipher_suite == suite
    assert peer.obj.version() == "TLSv1.3"
    assert peer.obj.cipher()[0] == suite
    (hello,) = log.server_hellos("write")
    assert hello.cipher_suite == {"TLS_AES_128_GCM_SHA256": 0x1301,
                                  "TLS_AES_256_GCM_SHA384": 0x1302,
                                  "TLS_CHACHA20_POLY1305_SHA256": 0x1303}[suite]  # fmt: skip
    round_trip(link, peer, suite.encode())


@pytest.mark.parametrize("suite", DEFAULT_SUITES)
def test_our_server_suite(peer_pki: Path, suite: str) -> None:
    ctx, _ = ssl_client_context(peer_pki)
    link, peer = our_server_link(peer_pki, ctx, cipher_suites=(suite,))
    assert link.handshake.cipher_suite == suite
    assert peer.obj.version() == "TLSv1.3"
    assert peer.obj.cipher()[0] == suite
    round_trip(link, peer, suite.encode())


@pytest.mark.parametrize("suite", CCM_SUITES)
def test_ccm_only_client_is_refused_by_python_ssl(peer_pki: Path, suite: str) -> None:
    """Python ssl leaves OpenSSL's CCM suites off: a CCM-only ClientHello is refused with
    handshake_failure, and our client reports the peer's alert."""
    ctx, _ = ssl_server_context(peer_pki)
    peer = SSLObjectPeer(ctx, server_side=True)
    link = MemoryLink(TLSClientConnection(client_config(peer_pki, cipher_suites=(suite,))), peer)
    with pytest.raises(ssl.SSLError, match=r"NO_SHARED_CIPHER|no shared cipher"):
        link.pump()
    link.events += link.ours.receive_data(peer.outgoing())
    (failed,) = link.failures()
    assert failed.by_peer and failed.alert == AlertDescription.handshake_failure


@pytest.mark.parametrize("suite", CCM_SUITES)
def test_ccm_only_server_refuses_python_ssl(peer_pki: Path, suite: str) -> None:
    ctx, _ = ssl_client_context(peer_pki)
    peer = SSLObjectPeer(ctx, server_side=False, server_hostname=SERVER_NAME)
    link = MemoryLink(TLSServerConnection(server_config(peer_pki, cipher_suites=(suite,))), peer)
    with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|handshake failure"):
        link.pump()
    (failed,) = link.failures()
    assert not failed.by_peer and failed.alert == AlertDescription.handshake_failure


# -- groups and HelloRetryRequest -----------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("hrr", [False, True], ids=["share", "hrr"])
def test_our_client_group(peer_pki: Path, curve: str, hrr: bool) -> None:
    """``hrr``: our client shares x25519 only, the peer supports only ``curve`` -> HRR."""
    name, code = CURVES[curve]
    ctx, log = ssl_server_context(peer_pki, curve=curve)
    link, peer = our_client_link(peer_pki, ctx, **({} if hrr else {"groups": (name,)}))
    event = link.handshake
    assert (event.group, event.hello_retry) == (name, hrr)
    hellos = log.server_hellos("write")
    assert [h.hello_retry for h in hellos] == ([True, False] if hrr else [False])
    assert all(h.group == code for h in hellos)
    assert log.types("read").count(CLIENT_HELLO) == (2 if hrr else 1)
    round_trip(link, peer, curve.encode())


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("hrr", [False, True], ids=["share", "hrr"])
def test_our_server_group(peer_pki: Path, curve: str, hrr: bool) -> None:
    """``hrr``: the peer shares x25519 (its default) and our server takes only ``curve``."""
    name, code = CURVES[curve]
    ctx, log = ssl_client_context(peer_pki, curve=None if hrr else curve)
    link, peer = our_server_link(peer_pki, ctx, groups=(name,))
    assert (link.handshake.group, link.handshake.hello_retry) == (name, hrr)
    hellos = log.server_hellos("read")
    assert [h.hello_retry for h in hellos] == ([True, False] if hrr else [False])
    assert all(h.group == code for h in hellos)
    assert log.types("write").count(CLIENT_HELLO) == (2 if hrr else 1)
    round_trip(link, peer, curve.encode())


# -- client authentication ------------------------------------------------------------------------


def test_our_client_authenticates_to_python_ssl(peer_pki: Path) -> None:
    ctx, log = ssl_server_context(peer_pki, require_client_cert=True)
    link, peer = our_client_link(
        peer_pki, ctx, certfile=peer_pki / "client.pem", keyfile=peer_pki / "client.key"
    )
    assert link.handshake.peer_certificate_subject is not None
    round_trip(link, peer, b"mtls")  # the peer's handshake is done: it verified us
    cert = peer.obj.getpeercert()
    assert ("commonName", "tls13 client") in [rdn[0] for rdn in cert["subject"]]
    assert 13 in log.types("write")  # CertificateRequest


def test_python_ssl_client_authenticates_to_our_server(peer_pki: Path) -> None:
    ctx, _ = ssl_client_context(peer_pki, client_cert=True)
    link, peer = our_server_link(peer_pki, ctx, cafile=peer_pki / "ca.pem", verify_client=True)
    event = link.handshake
    assert event.client_authenticated
    assert event.peer_certificate_subject is not None
    assert "CN=tls13 client" in event.peer_certificate_subject
    round_trip(link, peer, b"mtls")


def test_python_ssl_server_authenticates_our_client_after_the_handshake(peer_pki: Path) -> None:
    """RFC 8446 §4.6.2: OpenSSL's server asks after the handshake (SSL_VERIFY_POST_HANDSHAKE,
    ``verify_client_post_handshake``); our client answers with Certificate, CertificateVerify
    and Finished under its application keys, and OpenSSL verifies all three."""
    from protocol.events import CertificateRequested

    ctx, log = ssl_server_context(peer_pki, require_client_cert=True)
    ctx.post_handshake_auth = True  # no CertificateRequest in the handshake itself
    link, peer = our_client_link(
        peer_pki,
        ctx,
        certfile=peer_pki / "client.pem",
        keyfile=peer_pki / "client.key",
        post_handshake_auth=True,
    )
    round_trip(link, peer, b"before")
    assert peer.obj.getpeercert() is None
    assert 13 not in log.types("write")
    peer.obj.verify_client_post_handshake()
    peer.write(b"the request goes out with this record")
    link.pump()
    assert link.received() == b"the request goes out with this record"
    assert link.of(CertificateRequested) == [CertificateRequested(True)]
    round_trip(link, peer, b"after")  # OpenSSL read and verified our answer
    cert = peer.obj.getpeercert()
    assert ("commonName", "tls13 client") in [rdn[0] for rdn in cert["subject"]]
    assert log.types("write").count(13) == 1 and log.types("read")[-3:] == [11, 15, 20]


def test_our_server_authenticates_python_ssl_after_the_handshake(peer_pki: Path) -> None:
    """OpenSSL's client offers post_handshake_auth (``SSLContext.post_handshake_auth``) and
    answers our later CertificateRequest on its own; we verify chain, signature and Finished."""
    from protocol.events import ClientAuthenticated

    ctx, log = ssl_client_context(peer_pki, client_cert=True)
    ctx.post_handshake_auth = True
    link, peer = our_server_link(peer_pki, ctx, cafile=peer_pki / "ca.pem")
    assert not link.handshake.client_authenticated
    assert link.ours.post_handshake_auth_offered
    link.ours.request_client_certificate()
    link.pump()
    (event,) = link.of(ClientAuthenticated)
    assert event.subject is not None and "CN=tls13 client" in event.subject
    assert log.types("read").count(13) == 1
    round_trip(link, peer, b"after")


def test_python_ssl_requires_a_certificate_our_client_lacks(peer_pki: Path) -> None:
    ctx, _ = ssl_server_context(peer_pki, require_client_cert=True)
    peer = SSLObjectPeer(ctx, server_side=True)
    link = MemoryLink(TLSClientConnection(client_config(peer_pki)), peer)
    with pytest.raises(ssl.SSLError, match=r"PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate"):
        link.pump()
    link.events += link.ours.receive_data(peer.outgoing())
    (failed,) = link.failures()
    assert failed.by_peer and failed.alert == AlertDescription.certificate_required


def test_our_server_requires_a_certificate_python_ssl_lacks(peer_pki: Path) -> None:
    ctx, _ = ssl_client_context(peer_pki)
    peer = SSLObjectPeer(ctx, server_side=False, server_hostname=SERVER_NAME)
    link = MemoryLink(
        TLSServerConnection(
            server_config(peer_pki, cafile=peer_pki / "ca.pem", verify_client=True)
        ),
        peer,
    )
    # The TLS 1.3 client finishes first; it learns of the refusal on its next read.
    with pytest.raises(ssl.SSLError, match=r"CERTIFICATE_REQUIRED|certificate required"):
        link.pump()
        peer.step()
    (failed,) = link.failures()
    assert not failed.by_peer and failed.alert == AlertDescription.certificate_required


# -- ALPN -----------------------------------------------------------------------------------------


def test_alpn_our_client(peer_pki: Path) -> None:
    ctx, _ = ssl_server_context(peer_pki, alpn=["http/1.1", "h2"])
    link, peer = our_client_link(peer_pki, ctx, alpn=("h2", "http/1.1"))
    # OpenSSL's server takes the first of its own list the client offered.
    assert link.handshake.alpn == "http/1.1"
    assert peer.obj.selected_alpn_protocol() == "http/1.1"


def test_alpn_our_server(peer_pki: Path) -> None:
    ctx, _ = ssl_client_context(peer_pki, alpn=["http/1.1", "h2"])
    link, peer = our_server_link(peer_pki, ctx, alpn=("h2", "http/1.1"))
    assert link.handshake.alpn == "h2"  # our server's preference
    assert peer.obj.selected_alpn_protocol() == "h2"


def test_alpn_mismatch_our_server_sends_no_application_protocol(peer_pki: Path) -> None:
    ctx, _ = ssl_client_context(peer_pki, alpn=["http/1.1"])
    peer = SSLObjectPeer(ctx, server_side=False, server_hostname=SERVER_NAME)
    link = MemoryLink(TLSServerConnection(server_config(peer_pki, alpn=("h2",))), peer)
    with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application protocol"):
        link.pump()
    (failed,) = link.failures()
    assert failed.alert == AlertDescription.no_application_protocol


# -- KeyUpdate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["our_client", "our_server"])
def test_our_key_update_is_answered_by_python_ssl(peer_pki: Path, role: str) -> None:
    """We send KeyUpdate(update_requested); OpenSSL takes our new keys and answers with its own
    KeyUpdate(update_not_requested) before its next application data (RFC 8446 §4.6.3)."""
    if role == "our_client":
        ctx, log = ssl_server_context(peer_pki)
        link, peer = our_client_link(peer_pki, ctx)
    else:
        ctx, log = ssl_client_context(peer_pki)
        link, peer = our_server_link(peer_pki, ctx)
    round_trip(link, peer, b"before")
    for n in (1, 2):
        link.ours.key_update(request_peer_update=True)
        link.ours.send_data(b"after update %d" % n)
        link.pump()
        assert bytes(peer.received) == b"after update %d" % n
        peer.received.clear()
        peer.write(b"answer %d" % n)
        link.pump()
        assert link.received() == b"answer %d" % n
        assert len(link.key_updates("send")) == n
        assert [e.update_requested for e in link.key_updates("receive")] == [False] * n
    assert log.key_updates("read") == [1, 1]
    assert log.key_updates("write") == [0, 0]


# -- bulk data ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["our_client", "our_server"])
def test_8mib_each_way(peer_pki: Path, role: str) -> None:
    if role == "our_client":
        link, peer = our_client_link(peer_pki, ssl_server_context(peer_pki)[0])
    else:
        link, peer = our_server_link(peer_pki, ssl_client_context(peer_pki)[0])
    up, down = binary_payload(8 * MIB), binary_payload(8 * MIB)
    link.ours.send_data(up)
    link.pump()
    assert len(peer.received) == len(up)
    assert bytes(peer.received) == up
    assert link.ours.bytes_sent == len(up)
    peer.write(down)
    link.pump()
    received = link.received()
    assert len(received) == len(down)
    assert received == down
    assert link.ours.bytes_received == len(down)


# -- closing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["our_client", "our_server"])
@pytest.mark.parametrize("first", ["ours", "peer"])
def test_close_notify(peer_pki: Path, role: str, first: str) -> None:
    if role == "our_client":
        link, peer = our_client_link(peer_pki, ssl_server_context(peer_pki)[0])
    else:
        link, peer = our_server_link(peer_pki, ssl_client_context(peer_pki)[0])
    round_trip(link, peer, b"x")
    if first == "ours":
        link.ours.close()
        link.pump()
        assert peer.peer_closed  # SSL_read saw close_notify
        peer.obj.unwrap()  # completes at once (ours is in) and sends the peer's close_notify
        link.pump()
    else:
        peer.shutdown()  # sends close_notify, waits for ours
        link.pump()
        peer.obj.unwrap()  # completes: our close_notify came back
    assert link.closed()
    assert link.ours.state == "closed"
    assert not link.failures()


# -- server key types -----------------------------------------------------------------------------

KEY_TYPE_SCHEMES = {
    "ecdsa-p384": "ecdsa_secp384r1_sha384",
    "rsa2048": "rsa_pss_rsae_sha256",
    # rsaEncryption key, RSASSA-PSS-signed certificates (protocol.pki): TLS signs with rsae
    "rsa-pss": "rsa_pss_rsae_sha256",
    "ed25519": "ed25519",
    "ed448": "ed448",
}


@pytest.mark.parametrize("key_type", KEY_TYPE_SCHEMES)
def test_our_client_verifies_python_ssl_key_type(pki_of_type: Any, key_type: str) -> None:
    pki = pki_of_type(key_type)
    link, peer = our_client_link(pki, ssl_server_context(pki)[0])
    assert link.handshake.signature_scheme == KEY_TYPE_SCHEMES[key_type]
    round_trip(link, peer, key_type.encode())


@pytest.mark.parametrize("key_type", KEY_TYPE_SCHEMES)
def test_python_ssl_verifies_our_server_key_type(pki_of_type: Any, key_type: str) -> None:
    pki = pki_of_type(key_type)
    ctx, log = ssl_client_context(pki)
    link, peer = our_server_link(pki, ctx)
    (verify,) = [m for m in log.read if m[0] == 15]  # CertificateVerify
    assert (
        verify[4:6].hex()
        == {
            "ecdsa_secp384r1_sha384": "0503",
            "rsa_pss_rsae_sha256": "0804",
            "ed25519": "0807",
            "ed448": "0808",
        }[KEY_TYPE_SCHEMES[key_type]]
    )
    round_trip(link, peer, key_type.encode())
