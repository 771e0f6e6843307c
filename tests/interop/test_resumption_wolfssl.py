"""Resumption, external PSKs and 0-RTT with wolfSSL (5.9.2, and 5.5.4 as a second row), over
TLS 1.3 and DTLS 1.3, both roles.

wolfSSL's examples (run from their source folder) serve or make two connections with ``-r``
(the second resumes), ``-r -0`` adds 0-RTT data, ``-s`` uses the built-in PSK (identity
``Client_identity``, key 0x0123456789abcdef x4) and ``-K`` asks for psk_ke. Its client appends
the hash name to the identity (``Client_identitySHA256``), so that is what our server knows.
Their words: "SSL reused session", "Early Data was accepted", "Early Data Client message: ...".
Ours: the client's summary JSON, the server's connection lines.

DTLS specifics (PEERS.md §1, §3): a wolfSSL DTLS server answers every first ClientHello with
a cookie HelloRetryRequest, which rejects 0-RTT, so DTLS 0-RTT runs against ``-J n`` (and a
test checks the rejection with the cookie on); our server runs the matrix with
``--no-cookie`` and a separate test goes through its cookie exchange. wolfSSL 5.5.4 derives the
DTLS 1.3 resumption binder key with the TLS label: its DTLS resumption fails against any
correct stack (xfail, its bug).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.peers import require
from tests.interop.helpers import PeerProcess, Processes, free_tcp_port
from tests.interop.test_resumption_openssl import (
    PSK_HEX,
    PSK_IDENTITY,
    STEP_TIMEOUT,
    free_udp_port,
    resume_twice,
    run_our_client,
    start_our_server,
    wait_port,
)

pytestmark = pytest.mark.interop

PEERS = ("wolfssl", "wolfssl-5.5.4")  # peers.json names: 5.9.2 from sid, 5.5.4 from Debian 12
TRANSPORTS = ("tls", "dtls")
OUR_EARLY_TEXT = "early-from-tls13"
WOLF_EARLY_TEXT = "A drop of info"  # what wolfSSL's client sends as 0-RTT data
WOLF_REPLY = b"I hear you fa shizzle!"
WOLF_PSK_IDENTITY = PSK_IDENTITY + "SHA256"  # wolfSSL's client appends the hash name
# wolfSSL's DTLS client ignores an alert after its second ClientHello and retransmits until it
# gives up: bound the cookie test's client (a good run takes under 2 s).
COOKIE_TIMEOUT = 8.0

BINDER_BUG = (
    "wolfSSL 5.5.4 derives the DTLS 1.3 resumption binder key with the TLS label instead of "
    '"dtls13" (fixed in 5.6.2; PEERS.md §3): "binder does not verify" both ways'
)


def rows(*, resumption: bool) -> Iterator[object]:
    """(peer, transport) pairs; 5.5.4 over DTLS fails resumption by its binder bug."""
    for peer in PEERS:
        for transport in TRANSPORTS:
            marks = []
            if resumption and peer == "wolfssl-5.5.4" and transport == "dtls":
                marks.append(pytest.mark.xfail(strict=True, reason=BINDER_BUG))
            yield pytest.param(peer, transport, marks=marks, id=f"{peer}-{transport}")


def wolfssl(processes: Processes, peer: str, role: str, *args: str | Path) -> PeerProcess:
    """A wolfSSL example, run from its source folder as it requires."""
    info = require(peer)
    argv: list[str | Path] = [info.exe(role), *args]
    return processes.start(argv, name=f"{peer}-{role}", stdin="null", cwd=info.path)


def wolfssl_server(
    processes: Processes, peer: str, transport: str, pki: Path | None, *args: str
) -> tuple[PeerProcess, int]:
    dtls = transport == "dtls"
    port = free_udp_port() if dtls else free_tcp_port()
    argv: list[str | Path] = ["-v", "4", "-p", str(port), *(["-u"] if dtls else [])]
    if pki is not None:
        argv += ["-c", pki / "server.pem", "-k", pki / "server.key", "-d"]
    server = wolfssl(processes, peer, "server", *argv, *args)
    wait_port(port, server, dtls=dtls)
    return server, port


def wolfssl_client(
    processes: Processes,
    peer: str,
    transport: str,
    port: int,
    pki: Path | None,
    *args: str,
    timeout: float = STEP_TIMEOUT,
) -> PeerProcess:
    """Run wolfSSL's client to its end (killed after ``timeout``: returncode then not 0)."""
    argv: list[str | Path] = ["-v", "4", "-p", str(port), "-x"]
    if transport == "dtls":
        argv.append("-u")
    if pki is not None:
        argv += ["-A", pki / "ca.pem"]
    client = wolfssl(processes, peer, "client", *argv, *args)
    client.finish(timeout)
    return client


# -- our client, wolfSSL's server -----------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["resumption", "early_data"])
@pytest.mark.parametrize(("peer", "transport"), rows(resumption=True))
def test_our_client_resumes_at_wolfssl(
    processes: Processes,
    peer_pki: Path,
    tmp_path: Path,
    peer: str,
    transport: str,
    scenario: str,
) -> None:
    early = scenario == "early_data"
    dtls = transport == "dtls"
    # DTLS 0-RTT needs the server's cookie exchange off (-J n); resumption keeps it.
    extra = ["-r", *(["-0"] if early else []), *(["-J", "n"] if dtls and early else [])]
    server, port = wolfssl_server(processes, peer, transport, peer_pki, *extra)
    _, second = resume_twice(
        processes, tmp_path, port, peer_pki, dtls=dtls,
        early_data=OUR_EARLY_TEXT if early else None,
    )  # fmt: skip
    summary = second.ok()
    context = f"{second.context()}\n{server.describe()}"
    assert summary["resumed"] is True, context
    assert summary["psk_mode"] == "psk_dhe_ke", context
    assert summary["early_data"] == ("accepted" if early else "not_sent"), context
    assert WOLF_REPLY in second.received, context
    assert server.finish(STEP_TIMEOUT) == 0, server.describe()
    output = server.output()
    assert "SSL reused session" in output, output
    assert f"SSL version is {'DTLSv1.3' if dtls else 'TLSv1.3'}" in output, output
    if early:
        assert "Early Data was accepted" in output, output
        if peer == "wolfssl":  # 5.5.4's example does not print the message
            assert f"Early Data Client message: {OUR_EARLY_TEXT}" in output, output


def test_our_client_early_data_rejected_by_wolfssl_dtls_cookie(
    processes: Processes, peer_pki: Path, tmp_path: Path
) -> None:
    """A wolfSSL DTLS server keeps its cookie exchange: the HelloRetryRequest rejects 0-RTT
    (RFC 8446 §4.2.10). We still resume, and send the text again after the handshake."""
    server, port = wolfssl_server(processes, "wolfssl", "dtls", peer_pki, "-r", "-0")
    _, second = resume_twice(
        processes, tmp_path, port, peer_pki, dtls=True, early_data=OUR_EARLY_TEXT
    )
    summary = second.ok()
    context = f"{second.context()}\n{server.describe()}"
    assert (summary["resumed"], summary["early_data"]) == (True, "rejected"), context
    assert summary["hello_retry"] is True, context
    # Sent again as 1-RTT data (0-RTT bytes are not counted as sent).
    assert summary["bytes_sent"] == len(OUR_EARLY_TEXT + "second\n"), context
    assert WOLF_REPLY in second.received, context
    assert server.finish(STEP_TIMEOUT) == 0, server.describe()
    output = server.output()
    assert "SSL reused session" in output, output
    assert "Early Data was accepted" not in output, output


@pytest.mark.parametrize("mode", ["psk_dhe_ke", "psk_ke"])
@pytest.mark.parametrize(("peer", "transport"), rows(resumption=False))
def test_our_client_external_psk_at_wolfssl(
    processes: Processes, tmp_path: Path, peer: str, transport: str, mode: str
) -> None:
    server, port = wolfssl_server(
        processes, peer, transport, None, "-s", *(["-K"] if mode == "psk_ke" else [])
    )
    run = run_our_client(
        processes, tmp_path, port,
        "--psk-identity", PSK_IDENTITY, "--psk", PSK_HEX, "--psk-modes", mode,
        dtls=transport == "dtls", send="psk-hello",
    )  # fmt: skip
    summary = run.ok()
    context = f"{run.context()}\n{server.describe()}"
    assert (summary["psk_mode"], summary["resumed"]) == (mode, False), context
    assert (summary["group"] is None) == (mode == "psk_ke"), context
    assert summary["peer_certificate_subject"] is None, context
    assert WOLF_REPLY in run.received, context
    assert server.finish(STEP_TIMEOUT) == 0, server.describe()
    output = server.output()
    assert ("SSL curve name is" in output) == (mode == "psk_dhe_ke"), output  # no (EC)DHE
    if transport == "tls":  # its DTLS log often misses the message (PEERS.md §1)
        assert "Client message: psk-hello" in output, output


# -- wolfSSL's client, our server -----------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["resumption", "early_data"])
@pytest.mark.parametrize(("peer", "transport"), rows(resumption=True))
def test_wolfssl_resumes_at_our_server(
    processes: Processes, peer_pki: Path, peer: str, transport: str, scenario: str
) -> None:
    early = scenario == "early_data"
    dtls = transport == "dtls"
    ours = start_our_server(
        processes, peer_pki, "--max-early-data", "16384" if early else "0",
        *(["--no-cookie"] if dtls else []), dtls=dtls,
    )  # fmt: skip
    client = wolfssl_client(
        processes, peer, transport, ours.port, peer_pki, "-r", *(["-0"] if early else [])
    )
    context = f"{client.describe()}\n{ours.context()}"
    assert client.proc.returncode == 0, context
    assert "SSL reused session" in client.output(), context
    full, resumed = ours.wait_connections(2)
    assert "error" not in full and full["resumed"] == "no", context
    assert resumed.get("resumed") == "yes", context
    assert resumed["psk"] == "psk_dhe_ke", context
    assert resumed.get("early_data") == ("accepted" if early else None), context
    assert resumed["version"] == ("DTLS 1.3" if dtls else "TLS 1.3"), context


@pytest.mark.parametrize("mode", ["psk_dhe_ke", "psk_ke"])
@pytest.mark.parametrize(("peer", "transport"), rows(resumption=False))
def test_wolfssl_external_psk_at_our_server(
    processes: Processes, peer: str, transport: str, mode: str
) -> None:
    """Our server without a certificate; ``--psk-only`` is psk_ke, wolfSSL's ``-K``."""
    dtls = transport == "dtls"
    ours = start_our_server(
        processes, None, "--psk-identity", WOLF_PSK_IDENTITY, "--psk", PSK_HEX,
        *(["--psk-only"] if mode == "psk_ke" else []), *(["--no-cookie"] if dtls else []),
        dtls=dtls,
    )  # fmt: skip
    client = wolfssl_client(
        processes, peer, transport, ours.port, None, "-s", *(["-K"] if mode == "psk_ke" else [])
    )
    context = f"{client.describe()}\n{ours.context()}"
    assert client.proc.returncode == 0, context
    assert "hello wolfssl!" in client.output(), context  # our echo of its message
    (line,) = ours.wait_connections(1)
    assert line.get("psk") == mode and line["resumed"] == "no", context
    assert (line["group"] == "-") == (mode == "psk_ke"), context


@pytest.mark.parametrize("scenario", ["resumption", "psk_dhe_ke", "psk_ke"])
def test_wolfssl_dtls_through_our_cookie_exchange(
    processes: Processes, peer_pki: Path, scenario: str
) -> None:
    """wolfSSL 5.9.2's DTLS client against our server with its default cookie exchange. Its
    ClientHellos carry P-256 and ffdhe2048 shares; after our cookie-only HelloRetryRequest
    (no key_share) it repeats both (RFC 8446 §4.1.2), and the second ClientHello adds the PSK
    binders over message_hash(ClientHello1) + HelloRetryRequest (§4.2.11.2)."""
    if scenario == "resumption":
        ours = start_our_server(processes, peer_pki, dtls=True)
        client = wolfssl_client(
            processes, "wolfssl", "dtls", ours.port, peer_pki, "-r", timeout=COOKIE_TIMEOUT
        )
        expected = [("no", None), ("yes", "psk_dhe_ke")]
    else:
        only = ["--psk-only"] if scenario == "psk_ke" else []
        ours = start_our_server(
            processes, None, "--psk-identity", WOLF_PSK_IDENTITY, "--psk", PSK_HEX, *only,
            dtls=True,
        )  # fmt: skip
        client = wolfssl_client(
            processes, "wolfssl", "dtls", ours.port, None, "-s", *(["-K"] if only else []),
            timeout=COOKIE_TIMEOUT,
        )  # fmt: skip
        expected = [("no", scenario)]
    context = f"{client.describe()}\n{ours.context()}"
    assert client.proc.returncode == 0, context
    lines = ours.wait_connections(len(expected), timeout=2.0)
    assert [(line.get("resumed"), line.get("psk")) for line in lines] == expected, context
    assert all(line["hrr"] == "yes" for line in lines), context  # the cookie exchange ran
