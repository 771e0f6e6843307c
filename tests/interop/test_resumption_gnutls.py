"""Resumption and 0-RTT with GnuTLS 3.7.9 (gnutls-cli, gnutls-serv), both roles.

``gnutls-cli -r --waitresumption`` connects twice to our CLI server, the second time with the
ticket of the first (and ``--earlydata FILE`` as 0-RTT data); our CLI client keeps the tickets
of ``gnutls-serv`` with ``--sess-out`` and resumes with ``--sess-in``. GnuTLS says "This is a
resumed session" for each resumption; our summary / connection lines say resumed, psk_mode
and early_data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.peers import require
from tests.interop.helpers import HOST, SERVER_NAME, PeerProcess, Processes, free_tcp_port
from tests.interop.test_resumption_openssl import (
    STEP_TIMEOUT,
    resume_twice,
    start_our_server,
    wait_port,
)

pytestmark = pytest.mark.interop

TLS13_ONLY = "NORMAL:-VERS-ALL:+VERS-TLS1.3"
RESUMED = "This is a resumed session"
EARLY_TEXT = "early-from-gnutls\n"


def gnutls(role: str) -> str:
    return str(require("gnutls").exe(role))


def gnutls_serv(processes: Processes, pki: Path, *extra: str) -> tuple[PeerProcess, int]:
    """An echo server (``--echo``) for TLS 1.3 only, until killed."""
    port = free_tcp_port()
    argv = [gnutls("gnutls-serv"), "-p", str(port), "--priority", TLS13_ONLY, "--echo",
            "--x509certfile", str(pki / "server.pem"), "--x509keyfile", str(pki / "server.key"),
            *extra]  # fmt: skip
    server = processes.start(argv, name="gnutls-serv")
    wait_port(port, server, dtls=False)
    return server, port


@pytest.mark.parametrize("early", [False, True], ids=["resumption", "early_data"])
def test_gnutls_cli_resumes_at_our_server(
    processes: Processes, peer_pki: Path, tmp_path: Path, early: bool
) -> None:
    ours = start_our_server(processes, peer_pki, "--max-early-data", "16384")
    extra: list[str] = []
    if early:
        early_file = tmp_path / "early.txt"
        early_file.write_text(EARLY_TEXT)
        extra = ["--earlydata", str(early_file)]
    client = processes.start(
        [gnutls("gnutls-cli"), "-p", str(ours.port), HOST, "--priority", TLS13_ONLY,
         "--x509cafile", str(peer_pki / "ca.pem"), "--sni-hostname", SERVER_NAME,
         "--verify-hostname", SERVER_NAME, "-r", "--waitresumption", *extra],
        name="gnutls-cli",
    )  # fmt: skip
    assert client.wait_for(RESUMED), f"{client.describe()}\n{ours.context()}"
    if early:
        assert client.wait_for(EARLY_TEXT), client.describe()  # our echo of its 0-RTT data
    start = len(client.output())
    client.send(b"after-resumption\n")
    assert client.wait_for("after-resumption", start=start), client.describe()
    client.close_stdin()  # gnutls-cli sends close_notify and exits
    assert client.finish(STEP_TIMEOUT) == 0, client.describe()

    full, resumed = ours.wait_connections(2)
    assert full["resumed"] == "no" and full["sig"] != "-", ours.context()
    assert resumed["resumed"] == "yes", ours.context()
    assert resumed["psk"] == "psk_dhe_ke", ours.context()
    assert resumed.get("early_data") == ("accepted" if early else None), ours.context()


@pytest.mark.parametrize("early", [False, True], ids=["resumption", "early_data"])
def test_our_client_resumes_at_gnutls_serv(
    processes: Processes, peer_pki: Path, tmp_path: Path, early: bool
) -> None:
    extra = ("--earlydata", "--maxearlydata", "16384") if early else ()
    server, port = gnutls_serv(processes, peer_pki, *extra)
    early_text = "early-from-tls13\n" if early else None
    _, second = resume_twice(processes, tmp_path, port, peer_pki, early_data=early_text)
    summary = second.ok()
    context = f"{second.context()}\n{server.describe()}"
    assert summary["resumed"] is True, context
    assert summary["psk_mode"] == "psk_dhe_ke", context
    assert summary["early_data"] == ("accepted" if early else "not_sent"), context
    # gnutls-serv echoes 1-RTT data (it reads 0-RTT data but does not echo it).
    assert second.received == b"second\n", context
    assert server.output().count(RESUMED) == 1, server.describe()
