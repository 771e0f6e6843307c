"""``python -m interop probe`` against real servers: openssl s_server, gnutls-serv and
wolfSSL's example server (TLS, and DTLS with a Connection ID).

Each server is started the way a user would run it, the probe runs as a command (JSON
findings), and the findings every such server must produce are asserted: what the server
supports (suites, groups, HRR, tickets, CID, cookie) and the RFC 8446 alerts for malformed
input where the server is known to get them right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.adapters.process import PeerProcess, PortPool, wait_bound
from interop.peers import require
from protocol.pki import generate_pki

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("probe-pki")
    generate_pki(directory)
    return directory


@pytest.fixture
def ports() -> PortPool:
    return PortPool(slot=7, start=os.getpid() % 500)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[PeerProcess]]:
    started: list[PeerProcess] = []
    yield started
    for process in started:
        process.kill()


def start(
    servers: list[PeerProcess],
    argv: list[str | Path],
    log: Path,
    port: int,
    *,
    udp: bool = False,
    cwd: Path | None = None,
) -> PeerProcess:
    process = PeerProcess(argv, log, cwd=cwd)  # stdin stays open: s_server quits at EOF
    servers.append(process)
    wait_bound(process, port, udp=udp, timeout=10)
    return process


def probe(target: str, pki: Path, tmp_path: Path, *extra: str) -> dict[str, dict[str, Any]]:
    """Run the probe command; its findings by feature."""
    out = tmp_path / "findings.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "interop",
            "probe",
            target,
            "--cafile",
            str(pki / "ca.pem"),
            "--servername",
            "localhost",
            "--json",
            str(out),
            "--traces",
            str(tmp_path / "traces"),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    findings = json.loads(out.read_text())["findings"]
    by_feature = {f["feature"]: f for f in findings}
    by_feature["_text"] = {"detail": done.stdout}
    return by_feature


def status(findings: dict[str, dict[str, Any]], feature: str) -> str:
    assert feature in findings, f"no {feature!r} finding:\n{findings['_text']['detail']}"
    value: str = findings[feature]["status"]
    return value


def detail(findings: dict[str, dict[str, Any]], feature: str) -> str:
    value: str = findings[feature]["detail"]
    return value


def test_probe_openssl_s_server(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    port = ports.take()
    openssl = require("openssl").exe("openssl")
    start(
        servers,
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-www",
            "-tls1_3",
            "-cert",
            pki / "server.pem",
            "-key",
            pki / "server.key",
        ],
        tmp_path / "s_server.log",
        port,
    )
    found = probe(f"127.0.0.1:{port}", pki, tmp_path)
    text = found["_text"]["detail"]
    assert status(found, "certificate") == "yes", text
    assert status(found, "handshake") == "yes", text
    groups = detail(found, "groups").split(", ")
    assert {"x25519", "secp256r1", "secp384r1"} <= set(groups), text
    assert "X25519MLKEM768" not in groups, text  # OpenSSL 3.0
    suites = detail(found, "cipher suites")
    assert "TLS_AES_128_GCM_SHA256" in suites and "TLS_CHACHA20_POLY1305_SHA256" in suites
    # our X25519MLKEM768 share is refused: s_server asks for x25519 with HRR
    assert status(found, "HRR") == "yes" and "HRR to x25519" in detail(found, "HRR"), text
    assert status(found, "KeyUpdate") == "yes", text
    assert status(found, "tickets") == "yes" and status(found, "resumption") == "yes", text
    assert status(found, "record_size_limit") == "no", text  # OpenSSL has no RFC 8449
    assert detail(found, "corrupted record") == "answered bad_record_mac", text
    assert detail(found, "ClientHello, bad extension length") == "answered decode_error", text
    assert status(found, "ClientHello, all-zero X25519 share") == "yes", text


def test_probe_gnutls_serv(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    port = ports.take()
    gnutls = require("gnutls")
    start(
        servers,
        [
            gnutls.exe("gnutls-serv"),
            "-p",
            str(port),
            "--http",
            "-a",
            "--x509certfile",
            pki / "server.pem",
            "--x509keyfile",
            pki / "server.key",
        ],
        tmp_path / "gnutls-serv.log",
        port,
    )
    found = probe(f"127.0.0.1:{port}", pki, tmp_path)
    text = found["_text"]["detail"]
    assert status(found, "handshake") == "yes", text
    # GnuTLS answers with HelloRetryRequest and completes the retried handshake
    assert status(found, "HRR") == "yes", text
    assert "handshake completed" in detail(found, "HRR"), text
    assert "x448" in detail(found, "groups") and "secp521r1" in detail(found, "groups"), text
    assert "TLS_AES_128_CCM_SHA256" in detail(found, "cipher suites"), text
    # GnuTLS implements RFC 8449: its records respect our 512-byte limit
    assert status(found, "record_size_limit") == "yes", text
    assert status(found, "tickets") == "yes" and status(found, "resumption") == "yes", text
    assert detail(found, "corrupted record") == "answered bad_record_mac", text
    assert detail(found, "ClientHello, bad extension length") == "answered decode_error", text


def wolfssl_server(
    servers: list[PeerProcess], pki: Path, tmp_path: Path, port: int, *extra: str
) -> None:
    wolfssl = require("wolfssl")
    argv: list[str | Path] = [
        wolfssl.exe("server"),
        "-v",
        "4",
        "-p",
        str(port),
        "-d",
        "-i",
        "-x",
        "-c",
        pki / "server.pem",
        "-k",
        pki / "server.key",
        *extra,
    ]
    start(servers, argv, tmp_path / "wolfssl-server.log", port, udp="-u" in extra, cwd=wolfssl.path)


def test_probe_wolfssl_tls(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    port = ports.take()
    wolfssl_server(servers, pki, tmp_path, port)
    found = probe(f"127.0.0.1:{port}", pki, tmp_path)
    text = found["_text"]["detail"]
    assert status(found, "handshake") == "yes", text
    groups = detail(found, "groups").split(", ")
    assert "X25519MLKEM768" in groups and "x25519" in groups, text
    assert status(found, "HRR") == "yes", text  # our x448 share: it asks for another group
    assert status(found, "tickets") == "yes" and status(found, "resumption") == "yes", text
    assert detail(found, "corrupted record") == "answered bad_record_mac", text
    # Findings about wolfSSL 5.9.2's example server, kept here so a change shows:
    # a ClientHello whose supported_groups list runs past its extension gets missing_extension
    # (not decode_error), and an all-zero X25519 share is accepted (RFC 8446 §7.4.2: abort).
    assert status(found, "ClientHello, bad extension length") == "deviation", text
    assert status(found, "ClientHello, all-zero X25519 share") == "deviation", text


def test_probe_wolfssl_dtls_with_cid(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    port = ports.take()
    wolfssl_server(servers, pki, tmp_path, port, "-u", "--cid", "wolfcid1")
    found = probe(f"127.0.0.1:{port}", pki, tmp_path, "--dtls")
    text = found["_text"]["detail"]
    assert status(found, "handshake") == "yes" and "DTLS 1.3" in detail(found, "handshake")
    # wolfSSL's DTLS 1.3 server always starts with a stateless HelloRetryRequest + cookie
    assert status(found, "cookie exchange") == "yes", text
    assert status(found, "Connection ID") == "yes", text
    assert "server's CID 8 B" in detail(found, "Connection ID"), text  # "wolfcid1"
    assert status(found, "KeyUpdate") == "yes", text
    assert status(found, "resumption") == "yes", text


def test_probe_wolfssl_cid_updates(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    # wolfSSL implements no RFC 9147 §9 message: RequestConnectionId -> unexpected_message
    # (and its example server then stops: hence a server of its own, and --only).
    port = ports.take()
    wolfssl_server(servers, pki, tmp_path, port, "-u", "--cid", "wolfcid1")
    found = probe(f"127.0.0.1:{port}", pki, tmp_path, "--dtls", "--only", "CID updates")
    text = found["_text"]["detail"]
    assert status(found, "handshake") == "yes", text
    assert status(found, "CID updates") == "no", text
    assert "unexpected_message" in detail(found, "CID updates"), text
    assert "KeyUpdate" not in found, text  # --only ran just the one probe


def test_probe_our_dtls_server_answers_cid_requests(
    pki: Path, tmp_path: Path, ports: PortPool, servers: list[PeerProcess]
) -> None:
    port = ports.take()
    argv: list[str | Path] = [
        sys.executable, "-m", "protocol", "server", "--dtls", "--cid-length", "6",
        "--listen", f"127.0.0.1:{port}", "--cert", pki / "server.pem", "--key", pki / "server.key",
    ]  # fmt: skip
    start(servers, argv, tmp_path / "ours.log", port, udp=True, cwd=ROOT)
    found = probe(f"127.0.0.1:{port}", pki, tmp_path, "--dtls", "--only", "CID updates")
    text = found["_text"]["detail"]
    assert status(found, "CID updates") == "yes", text
    assert "1 spare CID" in detail(found, "CID updates"), text
