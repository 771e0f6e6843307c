"""DTLS 1.3 interop with NSS's tstclnt (``-P client`` / ``-P server``), in both roles.

NSS 3.132 as Debian sid ships it (shared/PEERS.md §2). Its defaults are what Firefox does:
one key share, X25519MLKEM768 (1,216 bytes), supported_versions 0xfefc/0xfefd/0xfeff and
33 suites, so its first ClientHello (1,444 bytes) spans two datagrams (1,408 + 86 bytes,
record version 0xfeff). ``-V tls1.3:tls1.3`` shrinks it to 0xfefc only, 3 suites and one
1,391-byte datagram (what older captures show); ``-I x25519`` gives a 263-byte
ClientHello. NSS has no Connection ID, so no CID runs here.

tstclnt sends what it reads on stdin and prints what it receives; at stdin EOF it ends. So
both roles are driven through its stdin: the NSS client gets its line once it is started,
the NSS server its reply once our client's message shows in its output. In DTLS mode
tstclnt does not end (nor send close_notify) at stdin EOF: it is killed once it has shown
what it received.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interop.peers import PeerInfo, require
from tests.interop.dtls_helpers import (
    HOST,
    free_udp_port,
    start_our_client,
    start_our_server,
    wait_udp_bound,
)
from tests.interop.helpers import Processes

pytestmark = pytest.mark.interop

NSS_MESSAGE = "hello from NSS"
NSS_REPLY = "reply from NSS"
OUR_MESSAGE = "hello from tls13"
PEER_TIMEOUT = 10.0


def nss() -> PeerInfo:
    return require("nss")


@pytest.fixture(scope="module")
def nss_db(tmp_path_factory: pytest.TempPathFactory, peer_pki: Path) -> str:
    """An NSS database trusting our CA and holding the server identity (PEERS.md §2)."""
    peer = nss()
    directory = tmp_path_factory.mktemp("nssdb")
    db = f"sql:{directory}"
    commands = [
        [peer.exe("certutil"), "-N", "-d", db, "--empty-password"],
        [peer.exe("certutil"), "-A", "-d", db, "-n", "ca", "-t", "CT,C,C",
         "-i", str(peer_pki / "ca.pem")],
        [peer.exe("pk12util"), "-i", str(peer_pki / "server.p12"), "-d", db, "-W", ""],
    ]  # fmt: skip
    for argv in commands:
        done = subprocess.run(
            [str(a) for a in argv],
            env=peer.environ(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"{argv}:\n{done.stdout}{done.stderr}"
    return db


# -- NSS's client -> our server -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRun:
    nss: tuple[str, ...] = ()
    ours: tuple[str, ...] = ()
    association: dict[str, str] = field(default_factory=dict)
    xfail: str | None = None


SERVER_RUNS: dict[str, ServerRun] = {
    # Its defaults: an X25519MLKEM768 ClientHello in two datagrams, through our cookie exchange.
    "default-cookie": ServerRun(association={"group": "X25519MLKEM768", "hrr": "yes"}),
    "x25519-cookie": ServerRun(
        nss=("-I", "x25519"),
        association={"group": "x25519", "hrr": "yes"},
    ),
    # Without the cookie exchange our ServerHello is the first epoch-0 record we send.
    "default-no-cookie": ServerRun(
        ours=("--no-cookie",), association={"group": "X25519MLKEM768", "hrr": "no"}
    ),
    "x25519-no-cookie": ServerRun(
        nss=("-I", "x25519"), ours=("--no-cookie",), association={"group": "x25519"}
    ),
    # Only DTLS 1.3 offered: one 1,391-byte ClientHello datagram, 3 suites.
    "tls13-only-no-cookie": ServerRun(
        nss=("-V", "tls1.3:tls1.3"), ours=("--no-cookie",), association={"hrr": "no"}
    ),
}


@pytest.mark.parametrize("scenario_name", SERVER_RUNS)
def test_nss_client_our_server(
    scenario_name: str,
    nss_db: str,
    peer_pki: Path,
    processes: Processes,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    scenario = SERVER_RUNS[scenario_name]
    if scenario.xfail is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=scenario.xfail))
    peer = nss()
    server = start_our_server(processes, tmp_path, peer_pki, scenario.ours)
    argv: list[str | Path] = [peer.exe("tstclnt"), "-P", "client", "-4", "-h", HOST,
                              "-p", str(server.port), "-d", nss_db, *scenario.nss]  # fmt: skip
    client = processes.start(argv, name="tstclnt", env=peer.environ())
    client.send(f"{NSS_MESSAGE}\n".encode())
    # Our server echoes it; a working handshake takes well under a second, the xfail runs
    # (NSS resending ClientHello2 forever) are cut short.
    echoed = client.wait_for(NSS_MESSAGE, 4.0 if scenario.xfail else PEER_TIMEOUT)
    # In DTLS mode tstclnt neither ends nor sends close_notify at stdin EOF, so our --once
    # server would wait for its idle timeout: both are stopped here, the echo being the proof.
    client.kill()
    server.process.kill()
    context = f"--- tstclnt ---\n{client.describe()}\n{server.context()}"
    assert echoed, context
    line = server.association()
    assert line.get("version") == "DTLS 1.3", context
    assert line.get("cid_sent") == "-" and line.get("cid_received") == "-", context
    for key, value in scenario.association.items():
        assert line.get(key) == value, f"{key}: {line.get(key)!r} != {value!r}\n{context}"
    assert "failed" not in server.process.output(), context


# -- our client -> NSS's server -------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRun:
    nss: tuple[str, ...] = ()
    ours: tuple[str, ...] = ()
    summary: dict[str, object] = field(default_factory=dict)


CLIENT_RUNS: dict[str, ClientRun] = {
    # NSS's server takes our x25519 share in place of its preferred X25519MLKEM768.
    "default": ClientRun(summary={"group": "x25519", "hello_retry": False}),
    # Ours with the hybrid share: our ClientHello spans two datagrams too.
    "mlkem": ClientRun(
        ours=("--groups", "X25519MLKEM768"),
        summary={"group": "X25519MLKEM768", "hello_retry": False},
    ),
    "x25519": ClientRun(nss=("-I", "x25519"), summary={"group": "x25519"}),
    # A group we offer without a share: NSS's HelloRetryRequest.
    "hrr-p256": ClientRun(
        nss=("-I", "P256"),
        summary={"group": "secp256r1", "hello_retry": True, "handshake_round_trips": 2},
    ),
}


@pytest.mark.parametrize("scenario_name", CLIENT_RUNS)
def test_our_client_nss_server(
    scenario_name: str,
    nss_db: str,
    peer_pki: Path,
    processes: Processes,
    tmp_path: Path,
) -> None:
    scenario = CLIENT_RUNS[scenario_name]
    peer = nss()
    port = free_udp_port()
    argv: list[str | Path] = [peer.exe("tstclnt"), "-P", "server", "-4", "-h", HOST,
                              "-p", str(port), "-d", nss_db, "-n", "server",
                              *scenario.nss]  # fmt: skip
    server = processes.start(argv, name="tstclnt-server", env=peer.environ())
    wait_udp_bound(port, server)
    # Idle timeout long enough for the reply, which goes out once our message is seen.
    client = start_our_client(
        processes, tmp_path, port, peer_pki, [*scenario.ours, "--timeout", "1.5"]
    )
    got_message = server.wait_for(OUR_MESSAGE, PEER_TIMEOUT)
    if got_message:
        server.send(f"{NSS_REPLY}\n".encode())
    run = client.result(PEER_TIMEOUT)
    server.kill()
    context = f"{run.context()}\n--- tstclnt -P server ---\n{server.describe()}"
    assert got_message, context
    assert run.exit_code == 0, context
    assert run.received == f"{NSS_REPLY}\n".encode(), context
    summary = run.summary
    assert summary.get("version") == "DTLS 1.3", context
    assert summary.get("cid_sent") is None and summary.get("cid_received") is None, context
    for key, value in scenario.summary.items():
        assert summary.get(key) == value, f"{key}: {summary.get(key)!r} != {value!r}\n{context}"
