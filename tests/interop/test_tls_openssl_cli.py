"""Interop with the OpenSSL 3.0 command line: ``openssl s_server`` and ``openssl s_client``.

Our blocking client (and ``python -m protocol client``) against ``s_server``; ``s_client``
against our server in a thread (and ``python -m protocol server``). The peer's own account is
read from its ``-trace`` output: every handshake message it sent and received, decoded (cipher
suite and key_share group of the ServerHello, HelloRetryRequests, KeyUpdates and their
request_update, alerts), plus its summary lines.

Peer-initiated KeyUpdate uses the interactive commands: ``K`` (update_requested) and ``k``
(update_not_requested) on a line of their own on stdin. OpenSSL 3.0 has no record_size_limit
(RFC 8449): against it our limit must stay unenforced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
    PeerProcess,
    Processes,
    binary_payload,
    client_config,
    echo_handler,
    exchange,
    free_tcp_port,
    key_update_requests,
    line_payload,
    our_client,
    our_server,
    raise_server_error,
    recv_exactly,
    reverse_lines,
    server_config,
    traced,
    wait_bound,
)

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_AES_128_CCM_SHA256": 0x1304,
    "TLS_AES_128_CCM_8_SHA256": 0x1305,
}
# OpenSSL -groups name -> (our IANA name, code, s_client's "Server Temp Key" text)
GROUPS = {
    "X25519": ("x25519", 29, "X25519, 253 bits"),
    "P-256": ("secp256r1", 23, "ECDH, prime256v1, 256 bits"),
    "P-384": ("secp384r1", 24, "ECDH, secp384r1, 384 bits"),
}
KEY_TYPES = {
    "ecdsa-p384": ("ecdsa_secp384r1_sha384", "ECDSA"),
    "rsa2048": ("rsa_pss_rsae_sha256", "RSA-PSS"),
    "rsa-pss": ("rsa_pss_rsae_sha256", "RSA-PSS"),  # rsaEncryption key, PSS-signed certs
    "ed25519": ("ed25519", "ed25519"),
    "ed448": ("ed448", "ed448"),
}


def openssl() -> list[str]:
    """The openssl command, its stdout unbuffered: s_server/s_client print through stdio,
    which buffers when stdout is a file, so their answers (and "SSL_do_handshake -> 1" after
    a k/K command) would show up late or only at exit."""
    stdbuf = shutil.which("stdbuf")
    assert stdbuf, "stdbuf (coreutils) is needed to read openssl's output as it happens"
    return [stdbuf, "-o0", str(require("openssl").exe("openssl"))]


def s_server(processes: Processes, pki: Path, *extra: str) -> tuple[PeerProcess, int]:
    """``s_server`` for one connection (``-naccept 1``), decoding its messages (``-trace``)."""
    port = free_tcp_port()
    argv = [*openssl(), "s_server", "-accept", f"{HOST}:{port}", "-naccept", "1",
            "-cert", str(pki / "server.pem"), "-key", str(pki / "server.key"),
            "-tls1_3", "-trace", *extra]  # fmt: skip
    server = processes.start(argv, name="s_server")
    wait_bound(port, server)  # no probe connection: it would use up -naccept 1
    return server, port


def s_client(
    processes: Processes, pki: Path, port: int, *extra: str, trace: bool = True
) -> PeerProcess:
    """``s_client`` verifying our certificate chain and name."""
    argv = [*openssl(), "s_client", "-connect", f"{HOST}:{port}", "-tls1_3",
            "-CAfile", str(pki / "ca.pem"), "-servername", SERVER_NAME,
            "-verify_hostname", SERVER_NAME, "-verify_return_error",
            *(["-trace"] if trace else []), *extra]  # fmt: skip
    return processes.start(argv, name="s_client")


def client_cert(pki: Path) -> list[str]:
    return ["-cert", str(pki / "client.pem"), "-key", str(pki / "client.key")]


def command(peer: PeerProcess, line: bytes, expect: str) -> None:
    """Send one stdin line and wait for ``expect`` to appear in the output after it (OpenSSL
    reads stdin in chunks: two lines sent together would be read as one command)."""
    start = len(peer.output())
    peer.send(line)
    assert peer.wait_for(expect, start=start), f"{expect!r} never came:\n{peer.describe()}"


def ping(tls: TLSSocket, server: PeerProcess, tag: str) -> None:
    """Our data reaches s_server (printed) and its line reaches us, byte for byte."""
    tls.sendall(f"ours-{tag}\n".encode())
    assert server.wait_for(f"ours-{tag}"), server.describe()
    expected = f"peer-{tag}\n".encode()
    server.send(expected)
    assert recv_exactly(tls, len(expected)) == expected


def echo_via_s_client(client: PeerProcess, tag: str) -> None:
    """s_client sends a line; our echo server's answer appears in its output."""
    assert client.wait_for("Verify return code: 0 (ok)"), client.describe()
    command(client, f"echo-{tag}\n".encode(), f"echo-{tag}\n")


def quit_s_client(client: PeerProcess, server: OurServer) -> None:
    client.send(b"Q\n")  # close_notify and exit
    assert client.finish() == 0, client.describe()
    server.join()
    raise_server_error(server, client.describe())


def server_hello(output: str, direction: str) -> tuple[int, int, bool]:
    """(cipher suite, key_share group, was there an HRR) from a peer's trace."""
    hellos = traced(output, direction, "ServerHello")
    assert hellos, "no ServerHello in the trace"
    last = hellos[-1].text()
    suite = re.search(r"cipher_suite \{0x13, 0x0(\d)\}", last)
    group = re.search(r"NamedGroup: .*\((\d+)\)", last)
    assert suite and group, last
    return 0x1300 + int(suite.group(1)), int(group.group(1)), len(hellos) == 2


# -- our client against s_server ------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_our_client_suite(processes: Processes, peer_pki: Path, suite: str) -> None:
    server, port = s_server(processes, peer_pki, "-ciphersuites", suite)
    with our_client(port, client_config(peer_pki, cipher_suites=(suite,))) as tls:
        assert tls.handshake is not None and tls.handshake.cipher_suite == suite
        ping(tls, server, suite)
    assert server.finish() == 0, server.describe()
    assert f"CIPHER is {suite}" in server.output()
    assert server_hello(server.output(), "sent")[0] == SUITES[suite]


@pytest.mark.parametrize("group", GROUPS)
def test_our_client_group(processes: Processes, peer_pki: Path, group: str) -> None:
    name, code, _ = GROUPS[group]
    server, port = s_server(processes, peer_pki, "-groups", group)
    with our_client(port, client_config(peer_pki, groups=(name,))) as tls:
        assert tls.handshake is not None
        assert (tls.handshake.group, tls.handshake.hello_retry) == (name, False)
        ping(tls, server, group)
    assert server.finish() == 0, server.describe()
    assert server_hello(server.output(), "sent")[1:] == (code, False)


def test_our_client_hello_retry(processes: Processes, peer_pki: Path) -> None:
    """s_server takes only P-384; our client's first ClientHello shares x25519 only."""
    server, port = s_server(processes, peer_pki, "-groups", "P-384")
    with our_client(port, client_config(peer_pki)) as tls:
        assert tls.handshake is not None
        assert (tls.handshake.group, tls.handshake.hello_retry) == ("secp384r1", True)
        ping(tls, server, "hrr")
    assert server.finish() == 0, server.describe()
    hellos = traced(server.output(), "received", "ClientHello")
    assert len(hellos) == 2
    assert "ecdh_x25519 (29)" in hellos[0].text().split("key_share")[1]
    assert server_hello(server.output(), "sent")[1:] == (24, True)


def test_our_client_certificate(processes: Processes, peer_pki: Path) -> None:
    ca = str(peer_pki / "ca.pem")
    server, port = s_server(
        processes, peer_pki, "-Verify", "1", "-CAfile", ca, "-verify_return_error"
    )
    config = client_config(
        peer_pki, certfile=peer_pki / "client.pem", keyfile=peer_pki / "client.key"
    )
    with our_client(port, config) as tls:
        ping(tls, server, "mtls")  # the server answers only after verifying us
    assert server.finish() == 0, server.describe()
    output = server.output()
    assert re.search(r"subject=.*CN ?= ?tls13 client", output), output
    assert traced(output, "received", "CertificateVerify")


def test_our_client_without_certificate_is_refused(processes: Processes, peer_pki: Path) -> None:
    server, port = s_server(
        processes, peer_pki, "-Verify", "1", "-CAfile", str(peer_pki / "ca.pem")
    )
    tls = our_client(port, client_config(peer_pki))  # a TLS 1.3 client finishes first
    try:
        with pytest.raises(ProtocolError) as failure:
            tls.recv()
    finally:
        tls.close()
    assert failure.value.by_peer
    assert failure.value.alert == AlertDescription.certificate_required
    server.finish()
    assert any("(116)" in m.text() for m in traced(server.output(), "sent", "Alert"))


def test_our_client_alpn(processes: Processes, peer_pki: Path) -> None:
    server, port = s_server(processes, peer_pki, "-alpn", "http/1.1,h2")
    with our_client(port, client_config(peer_pki, alpn=("h2", "http/1.1"))) as tls:
        assert tls.handshake is not None and tls.handshake.alpn == "http/1.1"
        ping(tls, server, "alpn")
    assert server.finish() == 0, server.describe()
    (ee,) = traced(server.output(), "sent", "EncryptedExtensions")
    assert "http/1.1" in ee.text()


def test_our_client_key_updates_both_ways(processes: Processes, peer_pki: Path) -> None:
    server, port = s_server(processes, peer_pki)
    with our_client(port, client_config(peer_pki)) as tls:
        ping(tls, server, "before")
        command(server, b"K\n", "SSL_do_handshake -> 1")  # update_requested
        ping(tls, server, "after-K")
        assert (tls.key_updates_received, tls.key_updates_sent) == (1, 1)  # we answered
        command(server, b"k\n", "SSL_do_handshake -> 1")  # update_not_requested
        ping(tls, server, "after-k")
        assert (tls.key_updates_received, tls.key_updates_sent) == (2, 1)
        tls.key_update(request=True)
        ping(tls, server, "after-ours")  # s_server answers before its next data
        assert (tls.key_updates_received, tls.key_updates_sent) == (3, 2)
    assert server.finish() == 0, server.describe()
    assert key_update_requests(server.output(), "sent") == [1, 0, 0]
    assert key_update_requests(server.output(), "received") == [0, 1]


def test_our_client_8mib_through_s_server_rev(processes: Processes, peer_pki: Path) -> None:
    """s_server -rev answers each line reversed: 8 MiB up, 8 MiB back, checked byte for byte."""
    payload = line_payload(8 * MIB, line_length=8192)
    port = free_tcp_port()
    server = processes.start(
        [*openssl(), "s_server", "-accept", f"{HOST}:{port}", "-naccept", "1", "-rev", "-tls1_3",
         "-cert", str(peer_pki / "server.pem"), "-key", str(peer_pki / "server.key")],
        name="s_server-rev",
    )  # fmt: skip
    wait_bound(port, server)
    with our_client(port, client_config(peer_pki)) as tls:
        received = exchange(tls, payload, len(payload))
        assert tls.connection.bytes_sent == len(payload)
    assert len(received) == len(payload)
    assert received == reverse_lines(payload)
    assert server.finish() == 0, server.describe()


def test_our_client_gets_s_server_www_page(processes: Processes, peer_pki: Path) -> None:
    server, port = s_server(processes, peer_pki, "-www", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
    with our_client(port, client_config(peer_pki)) as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        page = bytearray()
        while data := tls.recv():  # s_server closes with close_notify after the page
            page += data
    assert page.startswith(b"HTTP/1.0 200 ok\r\n"), bytes(page[:200])
    assert b"New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" in page
    assert server.finish() == 0, server.describe()


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_our_client_verifies_key_type(
    processes: Processes, pki_of_type: Callable[[str], Path], key_type: str
) -> None:
    pki = pki_of_type(key_type)
    server, port = s_server(processes, pki)
    with our_client(port, client_config(pki)) as tls:
        assert tls.handshake is not None
        assert tls.handshake.signature_scheme == KEY_TYPES[key_type][0]
        ping(tls, server, key_type)
    assert server.finish() == 0, server.describe()


def test_our_client_record_size_limit_not_negotiated(processes: Processes, peer_pki: Path) -> None:
    """OpenSSL 3.0 ignores record_size_limit: its full-size records must still be accepted."""
    server, port = s_server(processes, peer_pki)
    with our_client(port, client_config(peer_pki, record_size_limit=512)) as tls:
        assert tls.handshake is not None and tls.handshake.peer_record_size_limit is None
        (ee,) = traced(server.output(), "sent", "EncryptedExtensions")
        assert "record_size_limit" not in ee.text()
        line = b"r" * 2000 + b"\n"
        server.send(line)
        assert recv_exactly(tls, len(line)) == line


# -- s_client against our server ------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_our_server_suite(processes: Processes, peer_pki: Path, suite: str) -> None:
    # CCM suites are opt-in on our side (DEFAULT_CIPHER_SUITES): offer all five
    with our_server(server_config(peer_pki, cipher_suites=tuple(SUITES))) as server:
        client = s_client(processes, peer_pki, server.port, "-ciphersuites", suite)
        echo_via_s_client(client, suite)
        quit_s_client(client, server)
    assert server.handshake is not None and server.handshake.cipher_suite == suite
    assert f"New, TLSv1.3, Cipher is {suite}" in client.output()
    assert server_hello(client.output(), "received")[0] == SUITES[suite]


@pytest.mark.parametrize("group", GROUPS)
def test_our_server_group(processes: Processes, peer_pki: Path, group: str) -> None:
    name, code, temp_key = GROUPS[group]
    with our_server(server_config(peer_pki)) as server:
        client = s_client(processes, peer_pki, server.port, "-groups", group)
        echo_via_s_client(client, group)
        quit_s_client(client, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == (name, False)
    assert f"Server Temp Key: {temp_key}" in client.output()
    assert server_hello(client.output(), "received")[1:] == (code, False)


def test_our_server_hello_retry_for_group(processes: Processes, peer_pki: Path) -> None:
    """s_client shares x25519 (its first group); our server takes only P-384."""
    with our_server(server_config(peer_pki, groups=("secp384r1",))) as server:
        client = s_client(processes, peer_pki, server.port, "-groups", "X25519:P-384")
        echo_via_s_client(client, "hrr")
        quit_s_client(client, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == ("secp384r1", True)
    assert len(traced(client.output(), "sent", "ClientHello")) == 2
    assert server_hello(client.output(), "received")[1:] == (24, True)


def test_our_server_hello_retry_with_cookie(processes: Processes, peer_pki: Path) -> None:
    config = server_config(peer_pki, always_hello_retry=True, tls_cookie=True)
    with our_server(config) as server:
        client = s_client(processes, peer_pki, server.port)
        echo_via_s_client(client, "cookie")
        quit_s_client(client, server)
    assert server.handshake is not None
    assert (server.handshake.group, server.handshake.hello_retry) == ("x25519", True)
    hrr, _ = traced(client.output(), "received", "ServerHello")
    assert "cookie" in hrr.text()
    second = traced(client.output(), "sent", "ClientHello")[1]
    assert "cookie" in second.text()  # s_client echoed it (RFC 8446 §4.2.2)


def test_our_server_verifies_s_client_certificate(processes: Processes, peer_pki: Path) -> None:
    config = server_config(peer_pki, cafile=peer_pki / "ca.pem", verify_client=True)
    with our_server(config) as server:
        client = s_client(processes, peer_pki, server.port, *client_cert(peer_pki))
        echo_via_s_client(client, "mtls")
        quit_s_client(client, server)
    assert server.handshake is not None and server.handshake.client_authenticated
    assert "CN=tls13 client" in (server.handshake.peer_certificate_subject or "")
    assert traced(client.output(), "received", "CertificateRequest")
    assert traced(client.output(), "sent", "CertificateVerify")


def test_our_server_authenticates_s_client_after_the_handshake(
    processes: Processes, peer_pki: Path
) -> None:
    """RFC 8446 §4.6.2: ``s_client -enable_pha`` offers post-handshake authentication; our
    server asks once the connection carries data and verifies what OpenSSL answers."""
    subjects: list[str | None] = []

    def handler(tls: TLSSocket) -> None:
        first = tls.recv()
        subjects.append(tls.request_client_certificate().subject)
        tls.sendall(first)
        echo_handler(tls)

    with our_server(server_config(peer_pki, cafile=peer_pki / "ca.pem"), handler) as server:
        client = s_client(processes, peer_pki, server.port, "-enable_pha", *client_cert(peer_pki))
        echo_via_s_client(client, "pha")
        quit_s_client(client, server)
    assert server.handshake is not None and not server.handshake.client_authenticated
    assert subjects and "CN=tls13 client" in (subjects[0] or "")
    requests = traced(client.output(), "received", "CertificateRequest")
    assert len(requests) == 1 and "certificate_authorities" in requests[0].text()
    assert traced(client.output(), "sent", "CertificateVerify")


def test_s_server_authenticates_our_client_after_the_handshake(
    processes: Processes, peer_pki: Path
) -> None:
    """s_server's ``c`` command sends a post-handshake CertificateRequest (it needs the
    client's post_handshake_auth); our client answers on its next read."""
    ca = str(peer_pki / "ca.pem")
    server, port = s_server(processes, peer_pki, "-CAfile", ca)  # no request in the handshake
    config = client_config(
        peer_pki,
        certfile=peer_pki / "client.pem",
        keyfile=peer_pki / "client.key",
        post_handshake_auth=True,
    )
    with our_client(port, config) as tls:
        ping(tls, server, "before")
        assert not traced(server.output(), "received", "CertificateVerify")
        command(server, b"c\n", "CertificateRequest")
        ping(tls, server, "after")  # our answer goes out when we read the request
        assert tls.certificate_requests_answered == 1
    assert server.finish() == 0, server.describe()
    output = server.output()
    assert traced(output, "received", "CertificateVerify"), output
    assert re.search(r"Subject: .*CN ?= ?tls13 client", output), output  # what it received
    assert "fatal" not in output, output  # and accepted: no alert but close_notify


def test_our_server_refuses_s_client_without_certificate(
    processes: Processes, peer_pki: Path
) -> None:
    config = server_config(peer_pki, cafile=peer_pki / "ca.pem", verify_client=True)
    with our_server(config) as server:
        client = s_client(processes, peer_pki, server.port)
        client.finish()  # our alert ends it
        server.join()
    assert isinstance(server.error, ProtocolError), server.error
    assert server.error.alert == AlertDescription.certificate_required
    assert not server.error.by_peer
    alerts = traced(client.output(), "received", "Alert")
    assert any("(116)" in a.text() for a in alerts), client.describe()  # certificate_required


def test_our_server_alpn(processes: Processes, peer_pki: Path) -> None:
    with our_server(server_config(peer_pki, alpn=("h2", "http/1.1"))) as server:
        client = s_client(processes, peer_pki, server.port, "-alpn", "http/1.1,h2")
        echo_via_s_client(client, "alpn")
        quit_s_client(client, server)
    assert server.handshake is not None and server.handshake.alpn == "h2"
    assert "ALPN protocol: h2" in client.output()


def test_our_server_alpn_mismatch(processes: Processes, peer_pki: Path) -> None:
    with our_server(server_config(peer_pki, alpn=("h2",))) as server:
        client = s_client(processes, peer_pki, server.port, "-alpn", "http/1.1")
        client.finish()
        server.join()
    assert isinstance(server.error, ProtocolError), server.error
    assert server.error.alert == AlertDescription.no_application_protocol
    alerts = traced(client.output(), "received", "Alert")
    assert any("(120)" in a.text() for a in alerts), client.describe()  # no_application_protocol


def test_our_server_key_updates_both_ways(processes: Processes, peer_pki: Path) -> None:
    def handler(tls: TLSSocket) -> None:
        first = tls.recv()
        tls.key_update(request=True)  # the echo of the first line comes under new keys
        tls.sendall(first)
        echo_handler(tls)

    with our_server(server_config(peer_pki), handler) as server:
        client = s_client(processes, peer_pki, server.port)
        echo_via_s_client(client, "before")
        # s_client answers our update_requested before its next data (RFC 8446 §4.6.3)
        command(client, b"after-ours\n", "after-ours\n")
        command(client, b"K\n", "KEYUPDATE")
        command(client, b"after-K\n", "after-K\n")
        command(client, b"k\n", "KEYUPDATE")
        command(client, b"after-k\n", "after-k\n")
        quit_s_client(client, server)
    # ours + our answer to K; s_client's answer to ours + K + k
    assert (server.key_updates_sent, server.key_updates_received) == (2, 3)
    assert key_update_requests(client.output(), "sent") == [0, 1, 0]
    assert key_update_requests(client.output(), "received") == [1, 0]


def test_our_server_8mib_to_s_client(processes: Processes, peer_pki: Path, tmp_path: Path) -> None:
    """s_client sends 8 MiB of random bytes from a file; our server echoes them and closes;
    s_client's stdout must be the same 8 MiB."""
    size = 8 * MIB
    payload = binary_payload(size)
    (tmp_path / "in.bin").write_bytes(payload)

    def handler(tls: TLSSocket) -> None:
        echoed = 0
        while echoed < size and (data := tls.recv()):
            tls.sendall(data)
            echoed += len(data)
        # then close_notify (TLSSocket.close in OurServer): s_client -quiet exits on it

    with our_server(server_config(peer_pki), handler) as server:
        argv = [*openssl(), "s_client", "-connect", f"{HOST}:{server.port}", "-tls1_3", "-quiet",
                "-CAfile", str(peer_pki / "ca.pem"), "-servername", SERVER_NAME,
                "-verify_return_error"]  # fmt: skip
        client = processes.start(argv, name="s_client-8mib", stdin=str(tmp_path / "in.bin"),
                                 stdout=tmp_path / "out.bin")  # fmt: skip
        assert client.finish() == 0, client.describe()
        server.join()
        raise_server_error(server, client.describe())
    assert server.bytes_received == size
    received = (tmp_path / "out.bin").read_bytes()
    assert len(received) == size
    assert received == payload


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_s_client_verifies_our_key_type(
    processes: Processes, pki_of_type: Callable[[str], Path], key_type: str
) -> None:
    pki = pki_of_type(key_type)
    with our_server(server_config(pki)) as server:
        client = s_client(processes, pki, server.port, trace=False)
        echo_via_s_client(client, key_type)
        quit_s_client(client, server)
    assert f"Peer signature type: {KEY_TYPES[key_type][1]}" in client.output()


def test_our_server_record_size_limit_not_negotiated(processes: Processes, peer_pki: Path) -> None:
    """s_client (OpenSSL 3.0) never offers record_size_limit: its full-size records must pass."""
    line = "r" * 2000 + "\n"
    with our_server(server_config(peer_pki, record_size_limit=512)) as server:
        client = s_client(processes, peer_pki, server.port)
        assert client.wait_for("Verify return code: 0 (ok)"), client.describe()
        start = len(client.output())
        client.send(line.encode())
        echoed = client.wait_for(line, timeout=5, start=start)
        with contextlib.suppress(BrokenPipeError):  # s_client is gone if we failed
            client.send(b"Q\n")
        client.finish()
        server.join()
    assert server.error is None, f"our server failed: {server.error!r}"
    assert echoed, client.describe()


# -- python -m protocol (the CLI) against the openssl CLI -----------------------------------------


def protocol_cli(*args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_cli_client_against_s_server_rev(
    processes: Processes, peer_pki: Path, tmp_path: Path
) -> None:
    server, port = s_server(processes, peer_pki, "-rev", "-alpn", "h2")
    summary = tmp_path / "summary.json"
    done = protocol_cli(
        "client", f"{HOST}:{port}", "--cafile", str(peer_pki / "ca.pem"),
        "--servername", SERVER_NAME, "--send", "hello, openssl\n", "--key-update",
        "--ciphers", "TLS_CHACHA20_POLY1305_SHA256", "--groups", "secp384r1", "--alpn", "h2",
        "--timeout", "1", "--summary-json", str(summary),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"lssnepo ,olleh\n"
    result: dict[str, Any] = json.loads(summary.read_text())
    assert result["cipher_suite"] == "TLS_CHACHA20_POLY1305_SHA256"
    assert (result["group"], result["alpn"]) == ("secp384r1", "h2")
    assert (result["bytes_sent"], result["bytes_received"]) == (15, 15)
    assert result["key_updates_sent"] == 1
    assert server.finish() == 0, server.describe()
    assert key_update_requests(server.output(), "received") == [1]


def test_cli_server_against_s_client(processes: Processes, peer_pki: Path) -> None:
    port = free_tcp_port()
    server = processes.start(
        [sys.executable, "-m", "protocol", "server", "--listen", f"{HOST}:{port}", "--once",
         "--cert", str(peer_pki / "server.pem"), "--key", str(peer_pki / "server.key"),
         "--cafile", str(peer_pki / "ca.pem"), "--verify-client", "--alpn", "h2",
         "--key-update"],
        name="protocol-server", stdin="null",
    )  # fmt: skip
    assert server.wait_for("listening on"), server.describe()
    client = s_client(processes, peer_pki, port, "-alpn", "h2", *client_cert(peer_pki))
    assert client.wait_for("Verify return code: 0 (ok)"), client.describe()
    command(client, b"from s_client\n", "from s_client\n")
    # Our KeyUpdate came before that echo; s_client answers it before its next data (RFC
    # 8446 §4.6.3), so a second line makes the answer certain to go out before the close.
    command(client, b"second line\n", "second line\n")
    client.send(b"Q\n")
    assert client.finish() == 0, client.describe()
    assert server.finish() == 0, server.describe()
    line = next(x for x in server.output().splitlines() if "TLS 1.3" in x)
    assert "alpn=h2" in line and "hrr=no" in line and "CN=tls13 client" in line, line
    assert key_update_requests(client.output(), "received") == [1]
    assert key_update_requests(client.output(), "sent") == [0]
