"""Resumption, 0-RTT and external PSKs with the OpenSSL 3.0 command line, both roles.

Our side runs as the real CLI (``python -m protocol``): the client resumes with
``--sess-out``/``--sess-in`` and sends ``--early-data``, and its ``--summary-json`` says what
happened (resumed, psk_mode, early_data); the server prints one line per connection
(``resumed=yes psk=psk_dhe_ke early_data=accepted``). The peer's own words are checked too:
s_server's "Reused session-id" and "Early data received:", s_client's "Reused, TLSv1.3" and
"Early data was accepted".

This module also holds the helpers the GnuTLS and wolfSSL resumption tests share: our CLI
server and client as processes (through ``helpers.Processes``: own process group, log file,
killed in teardown), and free UDP ports.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from interop.peers import require
from tests.interop.helpers import (
    HOST,
    SERVER_NAME,
    PeerProcess,
    Processes,
    free_tcp_port,
    wait_bound,
)

pytestmark = pytest.mark.interop

OURS: tuple[str, ...] = (sys.executable, "-m", "protocol")
# Any one process: a handshake or two and a short exchange.
STEP_TIMEOUT = 20.0
# How long our client keeps reading after the last data (tickets come right after the
# handshake; the peers answer at once).
CLIENT_IDLE = "0.7"
# DTLS: give up on a silent peer quickly (the xfail rows against wolfSSL 5.5.4 end that way).
DTLS_CLIENT_TIMERS: tuple[str, ...] = ("--retransmit-initial", "250", "--max-retransmits", "2")
# The external PSK the wolfSSL examples build in (PEERS.md §3); OpenSSL takes it as hex.
PSK_IDENTITY = "Client_identity"
PSK_HEX = "0123456789abcdef" * 4
EARLY_TEXT = "A drop of info\n"  # what wolfSSL's client sends as 0-RTT data, too


# -- ports ----------------------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether a socket is bound to UDP ``port`` (/proc/net/udp), without sending to it: a
    probe datagram would be a ClientHello to a DTLS server."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        if any(line.split()[1].endswith(suffix) for line in lines if line.strip()):
            return True
    return False


def wait_port(port: int, process: PeerProcess, *, dtls: bool) -> None:
    """Until the peer server listens (TCP) or is bound (UDP) on ``port``."""
    if not dtls:
        wait_bound(port, process)
        return
    deadline = time.monotonic() + STEP_TIMEOUT
    while not udp_bound(port):
        if process.proc.poll() is not None:
            raise AssertionError(f"peer ended before binding UDP {port}:\n{process.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"peer never bound UDP {port}:\n{process.describe()}")
        time.sleep(0.02)


# -- our CLI server -------------------------------------------------------------------------------

_CONNECTION = re.compile(r"^(?P<peer>\S+) (?P<version>D?TLS 1\.3) (?P<suite>TLS_\S+) (?P<rest>.*)$")
_FAILURE = re.compile(r"^(?P<peer>\S+:\d+) (?P<error>(handshake|connection) failed.*)$")


@dataclass
class OurServer:
    """``python -m protocol server`` on a port the OS chose, serving until killed."""

    process: PeerProcess
    port: int

    def connections(self) -> list[dict[str, str]]:
        """One dict per connection line: version, suite and the key=value fields (group,
        resumed, psk, early_data, ...), or {"error": ...} for a failed handshake."""
        out: list[dict[str, str]] = []
        for line in self.process.output().splitlines():
            match = _CONNECTION.match(line)
            if match:
                fields = dict(re.findall(r"(\w+)=(\S+)", match.group("rest").split(" peer=")[0]))
                fields.update(version=match.group("version"), suite=match.group("suite"))
                out.append(fields)
            elif failure := _FAILURE.match(line):
                out.append({"error": failure.group("error")})
        return out

    def wait_connections(self, count: int, timeout: float = STEP_TIMEOUT) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.connections()) < count and time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                break
            time.sleep(0.02)
        found = self.connections()
        assert len(found) >= count, f"{count} connection line(s) expected:\n{self.context()}"
        return found

    def context(self) -> str:
        return f"--- our server ---\n{self.process.describe()}"


def start_our_server(
    processes: Processes,
    pki: Path | None,
    *args: str,
    dtls: bool = False,
    name: str = "ours-server",
) -> OurServer:
    """Our echo server (``pki`` None: no certificate, a PSK must be among ``args``)."""
    argv: list[str | Path] = [*OURS, "server", "--listen", f"{HOST}:0"]
    if dtls:
        argv.append("--dtls")
    if pki is not None:
        argv += ["--cert", pki / "server.pem", "--key", pki / "server.key"]
    argv += list(args)
    process = processes.start(argv, name=name, stdin="null")
    if not process.wait_for("listening on", STEP_TIMEOUT):
        raise AssertionError(f"our server did not start:\n{process.describe()}")
    match = re.search(r"listening on \S+:(\d+)", process.output())
    assert match, process.describe()
    return OurServer(process, int(match.group(1)))


# -- our CLI client -------------------------------------------------------------------------------


@dataclass
class OurClientRun:
    process: PeerProcess
    exit_code: int | None
    summary: dict[str, Any]
    received: bytes

    def context(self) -> str:
        return (
            f"--- our client ---\n{self.process.describe()}\n"
            f"summary: {json.dumps(self.summary)}\nreceived: {self.received!r}"
        )

    def ok(self) -> dict[str, Any]:
        """The summary of a run that must have succeeded."""
        assert self.exit_code == 0, self.context()
        assert "error" not in self.summary, self.context()
        return self.summary


def run_our_client(
    processes: Processes,
    directory: Path,
    port: int,
    *args: str | Path,
    pki: Path | None = None,
    dtls: bool = False,
    send: str | None = "hello from tls13\n",
    name: str = "ours-client",
) -> OurClientRun:
    """``python -m protocol client`` to ``HOST:port``, to its end (killed after
    STEP_TIMEOUT). With ``pki`` it verifies the server as ``localhost`` against its CA."""
    summary_path = directory / f"{name}-summary.json"
    stdout_path = directory / f"{name}-stdout.bin"
    argv: list[str | Path] = [*OURS, "client", f"{HOST}:{port}", "--summary-json", summary_path,
                              "--timeout", CLIENT_IDLE]  # fmt: skip
    if dtls:
        argv += ["--dtls", *DTLS_CLIENT_TIMERS]
    if pki is not None:
        argv += ["--cafile", pki / "ca.pem", "--servername", SERVER_NAME]
    if send is not None:
        argv += ["--send", send]
    argv += list(args)
    client = processes.start(argv, name=name, stdin="null", stdout=stdout_path)
    exit_code = client.finish(STEP_TIMEOUT)
    summary: dict[str, Any] = {}
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    return OurClientRun(client, exit_code, summary, stdout_path.read_bytes())


def resume_twice(
    processes: Processes,
    directory: Path,
    port: int,
    pki: Path,
    *,
    dtls: bool = False,
    early_data: str | None = None,
    sends: tuple[str, str] = ("first\n", "second\n"),
) -> tuple[OurClientRun, OurClientRun]:
    """A full handshake that keeps its tickets (--sess-out), then one that resumes with them
    (--sess-in), offering ``early_data`` as 0-RTT data."""
    sessions = directory / "sessions.json"
    first = run_our_client(
        processes, directory, port, "--sess-out", sessions,
        pki=pki, dtls=dtls, send=sends[0], name="ours-full",
    )  # fmt: skip
    summary = first.ok()
    assert (summary["resumed"], summary["psk_mode"]) == (False, None), first.context()
    assert summary["tickets_received"] >= 1, first.context()
    assert sessions.exists(), first.context()
    extra: list[str | Path] = ["--sess-in", sessions]
    if early_data is not None:
        extra += ["--early-data", early_data]
    second = run_our_client(
        processes, directory, port, *extra, pki=pki, dtls=dtls, send=sends[1], name="ours-resume"
    )
    assert second.summary.get("session_offered") is True, second.context()
    return first, second


# -- OpenSSL --------------------------------------------------------------------------------------


def openssl() -> list[str]:
    """openssl with unbuffered stdout (its lines must show up as they happen)."""
    stdbuf = shutil.which("stdbuf")
    assert stdbuf, "stdbuf (coreutils) is needed to read openssl's output as it happens"
    return [stdbuf, "-o0", str(require("openssl").exe("openssl"))]


def s_server(processes: Processes, *args: str, naccept: int) -> tuple[PeerProcess, int]:
    """``openssl s_server`` for ``naccept`` connections. Its stdin stays an open pipe: at
    stdin EOF it drops the connection without close_notify."""
    port = free_tcp_port()
    argv = [*openssl(), "s_server", "-accept", f"{HOST}:{port}", "-naccept", str(naccept),
            "-tls1_3", *args]  # fmt: skip
    server = processes.start(argv, name="s_server")
    wait_bound(port, server)  # no probe connection: it would use up -naccept
    return server, port


def s_client(processes: Processes, port: int, *args: str, name: str = "s_client") -> PeerProcess:
    argv = [*openssl(), "s_client", "-connect", f"{HOST}:{port}", "-tls1_3", *args]
    return processes.start(argv, name=name)


def s_client_verifying(pki: Path) -> tuple[str, ...]:
    return ("-CAfile", str(pki / "ca.pem"), "-servername", SERVER_NAME,
            "-verify_hostname", SERVER_NAME, "-verify_return_error")  # fmt: skip


def echo_line(client: PeerProcess, text: str) -> None:
    """s_client sends one line; our echo server's answer appears in its output."""
    start = len(client.output())
    client.send(text.encode())
    assert client.wait_for(text, start=start), f"no echo of {text!r}:\n{client.describe()}"


def quit_s_client(client: PeerProcess) -> None:
    client.send(b"Q\n")  # close_notify, then exit
    assert client.finish(STEP_TIMEOUT) == 0, client.describe()


# -- our client against s_server ------------------------------------------------------------------


def test_our_client_resumes_with_early_data_at_s_server(
    processes: Processes, peer_pki: Path, tmp_path: Path
) -> None:
    server, port = s_server(
        processes,
        "-cert", str(peer_pki / "server.pem"), "-key", str(peer_pki / "server.key"),
        "-early_data",
        naccept=2,
    )  # fmt: skip
    _, second = resume_twice(processes, tmp_path, port, peer_pki, early_data=EARLY_TEXT)
    summary = second.ok()
    context = f"{second.context()}\n{server.describe()}"
    assert summary["resumed"] is True, context
    assert summary["psk_mode"] == "psk_dhe_ke", context
    assert summary["early_data"] == "accepted", context
    assert summary["signature_scheme"] is None, context  # no certificate on resumption
    assert server.wait_for("second"), server.describe()
    output = server.output()
    # The first connection had nothing early; the second's 0-RTT data came as early data.
    assert "No early data received" in output, output
    assert re.search(f"Early data received:\n{EARLY_TEXT}\n*End of early data", output), output
    assert output.count("Reused session-id") == 1, output
    assert output.index("Reused session-id") > output.index("first"), output


@pytest.mark.parametrize("mode", ["psk_dhe_ke", "psk_ke"])
def test_our_client_external_psk_at_s_server(
    processes: Processes, tmp_path: Path, mode: str
) -> None:
    """A certificate-less s_server (``-nocert -psk``); psk_ke needs ``-allow_no_dhe_kex``
    there and ``--psk-modes psk_ke`` here."""
    server, port = s_server(
        processes,
        "-nocert", "-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY,
        "-ciphersuites", "TLS_AES_128_GCM_SHA256",
        *(["-allow_no_dhe_kex"] if mode == "psk_ke" else []),
        naccept=1,
    )  # fmt: skip
    run = run_our_client(
        processes, tmp_path, port,
        "--psk-identity", PSK_IDENTITY, "--psk", PSK_HEX, "--psk-modes", mode,
        send="psk-hello\n",
    )  # fmt: skip
    summary = run.ok()
    context = f"{run.context()}\n{server.describe()}"
    assert summary["psk_mode"] == mode, context
    assert summary["resumed"] is False, context  # an external PSK, not a ticket
    assert summary["cipher_suite"] == "TLS_AES_128_GCM_SHA256", context
    assert (summary["group"] is None) == (mode == "psk_ke"), context
    assert summary["peer_certificate_subject"] is None, context
    assert server.wait_for("psk-hello"), server.describe()
    assert "Reused session-id" in server.output(), server.describe()  # OpenSSL: a PSK session


def test_our_client_wrong_psk_is_refused_by_s_server(processes: Processes, tmp_path: Path) -> None:
    server, port = s_server(
        processes, "-nocert", "-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY, naccept=1
    )
    run = run_our_client(
        processes, tmp_path, port, "--psk-identity", PSK_IDENTITY, "--psk", "ff" * 32
    )
    assert run.exit_code == 1, run.context()
    assert "resumed" not in run.summary, run.context()  # no handshake completed
    # (OpenSSL 3.0 answers a bad binder with illegal_parameter, not decrypt_error.)
    assert "handshake failed: peer sent alert" in run.summary.get("error", ""), run.context()
    assert server.wait_for("binder does not verify"), server.describe()


# -- s_client against our server ------------------------------------------------------------------


def test_s_client_resumes_with_early_data_at_our_server(
    processes: Processes, peer_pki: Path, tmp_path: Path
) -> None:
    ours = start_our_server(processes, peer_pki, "--max-early-data", "16384")
    sessions = tmp_path / "s_client-session.pem"
    early = tmp_path / "early.txt"
    early.write_text(EARLY_TEXT)
    verify = s_client_verifying(peer_pki)

    first = s_client(processes, ours.port, *verify, "-sess_out", str(sessions), name="first")
    assert first.wait_for("New, TLSv1.3"), first.describe()
    echo_line(first, "first-line\n")
    # Our tickets follow the handshake; s_client writes -sess_out when one arrives.
    assert first.wait_for("Max Early Data: 16384"), first.describe()
    quit_s_client(first)
    assert sessions.exists(), first.describe()

    second = s_client(
        processes, ours.port, *verify, "-sess_in", str(sessions), "-early_data", str(early),
        name="second",
    )  # fmt: skip
    assert second.wait_for("Reused, TLSv1.3"), second.describe()
    assert second.wait_for("Early data was accepted"), second.describe()
    assert second.wait_for(EARLY_TEXT), second.describe()  # our echo of the 0-RTT data
    echo_line(second, "second-line\n")
    quit_s_client(second)

    full, resumed = ours.wait_connections(2)
    assert (full["resumed"], full.get("psk"), full.get("early_data")) == ("no", None, None)
    assert resumed["resumed"] == "yes", ours.context()
    assert resumed["psk"] == "psk_dhe_ke", ours.context()
    assert resumed["early_data"] == "accepted", ours.context()
    assert resumed["sig"] == "-", ours.context()  # no certificate on resumption


@pytest.mark.parametrize("mode", ["psk_dhe_ke", "psk_ke"])
def test_s_client_external_psk_at_our_server(
    processes: Processes, tmp_path: Path, mode: str
) -> None:
    """Our server without any certificate; ``--psk-only`` means psk_ke, which s_client
    offers with ``-allow_no_dhe_kex``."""
    only = ("--psk-only",) if mode == "psk_ke" else ()
    ours = start_our_server(
        processes, None, "--psk-identity", PSK_IDENTITY, "--psk", PSK_HEX, *only
    )
    client = s_client(
        processes, ours.port,
        "-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY,
        "-ciphersuites", "TLS_AES_128_GCM_SHA256",
        *(["-allow_no_dhe_kex"] if mode == "psk_ke" else []),
    )  # fmt: skip
    assert client.wait_for("Reused, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"), client.describe()
    echo_line(client, "psk-line\n")
    quit_s_client(client)
    (line,) = ours.wait_connections(1)
    assert line.get("psk") == mode, ours.context()
    assert line["resumed"] == "no", ours.context()
    assert (line["group"] == "-") == (mode == "psk_ke"), ours.context()
    assert line["sig"] == "-", ours.context()


def test_psk_only_server_refuses_s_client_without_psk_ke(
    processes: Processes, tmp_path: Path
) -> None:
    """``--psk-only`` takes psk_ke only: a client offering just psk_dhe_ke is refused."""
    ours = start_our_server(
        processes, None, "--psk-identity", PSK_IDENTITY, "--psk", PSK_HEX, "--psk-only"
    )
    client = s_client(processes, ours.port, "-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY)
    assert client.finish(STEP_TIMEOUT) != 0, client.describe()
    assert "alert handshake failure" in client.output(), client.describe()
    (line,) = ours.wait_connections(1)
    assert "no acceptable pre-shared key" in line.get("error", ""), ours.context()
