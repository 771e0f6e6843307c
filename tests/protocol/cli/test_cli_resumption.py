"""``python -m protocol`` resumption, 0-RTT and PSK options against our own server: real
subprocesses on 127.0.0.1 (TCP and UDP), always with timeouts, killed in teardown.

The negative paths the interop tests cannot provoke: a session file whose tickets were
tampered with (the server cannot open them: a full handshake, RFC 8446 §4.2.11 lets it ignore
any PSK), a session file that is not one, and a server that resumes but takes no early data
(``--max-early-data 0``: RFC 8446 §4.2.10 "rejected"). Rejected early data is sent again after
the handshake, so the echo still carries it. Also the PSK options, option errors, and the
asyncio transports' ``session=`` / ``early_data=`` (the CLI itself runs the blocking ones).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocol.config import ClientConfig, ServerConfig
from protocol.pki import generate_pki
from protocol.transports.tcp_asyncio import (
    TLSStreamReader,
    TLSStreamWriter,
    open_connection,
    start_server,
)
from protocol.transports.udp_asyncio import DTLSStream, open_dtls_connection, start_dtls_server

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 30.0
IDLE = "0.5"  # our client's --timeout: how long it reads after the last data
TICKET_KEY = "5e" * 32
PSK = ("--psk-identity", "cli-test", "--psk", "00112233445566778899aabbccddeeff" * 2)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-resumption-pki")
    generate_pki(directory)
    return directory


class Server:
    """``python -m protocol server`` (echo) with its stderr lines collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "protocol", "server", *args],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.next_line()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert match, f"unexpected first line {first!r}"
        self.port = int(match.group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no line from our server: {self.stderr}") from None

    def connection(self) -> dict[str, str]:
        """The next per-connection line as key=value fields (plus "error" on failure)."""
        line = self.next_line()
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        if "failed" in line:
            fields["error"] = line
        return fields

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(TIMEOUT)


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(pki: Path) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def start(*args: str, dtls: bool = False, cert: bool = True, port: int = 0) -> Server:
        argv = ["--listen", f"127.0.0.1:{port}", *(["--dtls"] if dtls else [])]
        if cert:
            argv += ["--cert", str(pki / "server.pem"), "--key", str(pki / "server.key")]
        server = Server([*argv, *args])
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class ClientRun:
    code: int
    stdout: bytes
    stderr: str
    summary: dict[str, Any]

    def ok(self) -> dict[str, Any]:
        assert self.code == 0, f"exit {self.code}: {self.stderr}"
        return self.summary


def run_client(
    tmp_path: Path, pki: Path, port: int, *args: str | Path, dtls: bool = False, name: str = "c"
) -> ClientRun:
    summary = tmp_path / f"{name}.json"
    argv: list[str | Path] = [sys.executable, "-m", "protocol", "client", f"127.0.0.1:{port}",
                              "--cafile", pki / "ca.pem", "--servername", "localhost",
                              "--timeout", IDLE, "--summary-json", summary,
                              *(["--dtls"] if dtls else []), *args]  # fmt: skip
    result = subprocess.run(
        argv, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, capture_output=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return ClientRun(result.returncode, result.stdout, result.stderr.decode(), data)


def run_protocol(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *args], cwd=ROOT, env=_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def tamper_tickets(path: Path) -> int:
    """Flip one byte in the middle of every ticket of a session file; returns how many."""
    document = json.loads(path.read_text())
    for session in document["sessions"]:
        ticket = bytearray.fromhex(session["ticket"])
        ticket[len(ticket) // 2] ^= 0x01
        session["ticket"] = ticket.hex()
    path.write_text(json.dumps(document))
    return len(document["sessions"])


TRANSPORTS = [pytest.param(False, id="tls"), pytest.param(True, id="dtls")]


# -- the session file ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtls", TRANSPORTS)
def test_tampered_sess_in_falls_back_to_a_full_handshake(
    pki: Path, tmp_path: Path, server_factory: ServerFactory, dtls: bool
) -> None:
    cookie = ["--no-cookie"] if dtls else []  # a cookie HelloRetryRequest rejects 0-RTT itself
    server = server_factory("--max-early-data", "1024", *cookie, dtls=dtls)
    sessions = tmp_path / "sessions.json"
    first = run_client(tmp_path, pki, server.port, "--sess-out", sessions, "--send", "one",
                       dtls=dtls, name="first").ok()  # fmt: skip
    assert first["tickets_received"] == 2 and first["resumed"] is False
    assert server.connection()["resumed"] == "no"
    assert oct(sessions.stat().st_mode & 0o777) == "0o600"  # it holds resumption PSKs
    assert tamper_tickets(sessions) == 2

    # The ticket still says early data is allowed, so the client sends it; the server cannot
    # open the ticket: no PSK, a full handshake, the 0-RTT data skipped and sent again.
    run = run_client(tmp_path, pki, server.port, "--sess-in", sessions, "--early-data", "E",
                     "--send", "two", dtls=dtls, name="second")  # fmt: skip
    summary = run.ok()
    assert summary["session_offered"] is True, run.stderr
    assert (summary["resumed"], summary["psk_mode"]) == (False, None)
    assert summary["early_data"] == "rejected"
    assert summary["signature_scheme"] is not None  # the certificate was checked again
    assert run.stdout == b"Etwo"
    line = server.connection()
    assert (line["resumed"], line.get("early_data")) == ("no", "rejected"), line
    assert "psk" not in line, line


def test_unreadable_sess_in_warns_and_does_a_full_handshake(
    pki: Path, tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory()
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not a session file")
    run = run_client(tmp_path, pki, server.port, "--sess-in", garbage, "--send", "x")
    summary = run.ok()
    assert "warning: --sess-in" in run.stderr and "full handshake" in run.stderr, run.stderr
    assert (summary["session_offered"], summary["resumed"]) == (False, False)
    assert garbage.read_text() == "this is not a session file"  # left alone

    missing = tmp_path / "missing.json"
    run = run_client(tmp_path, pki, server.port, "--sess-in", missing, "--send", "x")
    assert run.ok()["resumed"] is False
    assert f"no session for localhost:{server.port}" in run.stderr, run.stderr


def test_sessions_are_keyed_by_server_name_and_port(
    pki: Path, tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A session kept from one port is not offered to another (nor under another name)."""
    first, second = server_factory(), server_factory()
    sessions = tmp_path / "sessions.json"
    run_client(tmp_path, pki, first.port, "--sess-out", sessions).ok()
    keys = {(s["server_name"], s["port"]) for s in json.loads(sessions.read_text())["sessions"]}
    assert keys == {("localhost", first.port)}
    other = run_client(tmp_path, pki, second.port, "--sess-in", sessions).ok()
    assert (other["session_offered"], other["resumed"]) == (False, False)
    same = run_client(tmp_path, pki, first.port, "--sess-in", sessions, "--sess-out", sessions)
    assert same.ok()["resumed"] is True
    # One ticket used (and dropped: RFC 8446 §C.4), one left, two new ones added.
    assert len(json.loads(sessions.read_text())["sessions"]) == 3


# -- early data -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtls", TRANSPORTS)
def test_max_early_data_zero_rejects_early_data(
    pki: Path, tmp_path: Path, server_factory: ServerFactory, dtls: bool
) -> None:
    """The same ticket key before and after a restart: the session resumes both times, the
    server with --max-early-data 0 rejects the 0-RTT data."""
    common = ["--ticket-key", TICKET_KEY, *(["--no-cookie"] if dtls else [])]
    server = server_factory("--max-early-data", "1024", *common, dtls=dtls)
    port = server.port
    sessions = tmp_path / "sessions.json"
    run_client(tmp_path, pki, port, "--sess-out", sessions, dtls=dtls, name="full").ok()
    assert server.connection()["resumed"] == "no"

    accepted = run_client(tmp_path, pki, port, "--sess-in", sessions, "--early-data", "early-1",
                          "--send", "+late", dtls=dtls, name="accepted")  # fmt: skip
    summary = accepted.ok()
    assert (summary["resumed"], summary["early_data"]) == (True, "accepted")
    assert accepted.stdout == b"early-1+late"  # echoed: 0-RTT data first
    line = server.connection()
    assert (line["resumed"], line["psk"], line["early_data"]) == ("yes", "psk_dhe_ke", "accepted")

    server.stop()
    restarted = server_factory("--max-early-data", "0", *common, dtls=dtls, port=port)
    rejected = run_client(tmp_path, pki, port, "--sess-in", sessions, "--early-data", "early-2",
                          "--send", "+late", dtls=dtls, name="rejected")  # fmt: skip
    summary = rejected.ok()
    assert (summary["resumed"], summary["psk_mode"]) == (True, "psk_dhe_ke")
    assert summary["early_data"] == "rejected"
    assert rejected.stdout == b"early-2+late"  # sent again after the handshake, echoed
    line = restarted.connection()
    assert (line["resumed"], line["early_data"]) == ("yes", "rejected"), line


def test_early_data_without_a_session_is_not_sent(
    pki: Path, tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("--max-early-data", "1024")
    run = run_client(tmp_path, pki, server.port, "--early-data", "hello", "--send", "!")
    summary = run.ok()
    assert (summary["resumed"], summary["early_data"]) == (False, "not_sent")
    assert run.stdout == b"hello!"  # sent as ordinary data instead
    assert "early_data" not in server.connection()


# -- external PSKs ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtls", TRANSPORTS)
def test_psk_only_server_without_certificate(
    pki: Path, tmp_path: Path, server_factory: ServerFactory, dtls: bool
) -> None:
    # (DTLS: without the cookie exchange, whose stateless step drops a hello it would refuse
    # without an answer; the association itself answers with handshake_failure.)
    cookie = ["--no-cookie"] if dtls else []
    server = server_factory(*PSK, "--psk-only", *cookie, dtls=dtls, cert=False)
    run = run_client(tmp_path, pki, server.port, *PSK, "--psk-modes", "psk_ke", "--send", "k",
                     dtls=dtls, name="psk_ke")  # fmt: skip
    summary = run.ok()
    assert (summary["psk_mode"], summary["group"], summary["resumed"]) == ("psk_ke", None, False)
    assert summary["peer_certificate_subject"] is None
    assert run.stdout == b"k"
    line = server.connection()
    assert (line["psk"], line["group"], line["sig"]) == ("psk_ke", "-", "-"), line

    # A client that insists on (EC)DHE finds no acceptable mode: --psk-only refuses it.
    refused = run_client(tmp_path, pki, server.port, *PSK, dtls=dtls, name="refused")
    assert refused.code == 1 and "handshake_failure" in refused.summary["error"], refused.stderr
    assert "no acceptable pre-shared key" in server.connection()["error"]


def test_psk_with_certificate_prefers_the_psk(
    pki: Path, tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory(*PSK)
    summary = run_client(tmp_path, pki, server.port, *PSK).ok()
    assert (summary["psk_mode"], summary["group"]) == ("psk_dhe_ke", "x25519")
    assert summary["signature_scheme"] is None  # no certificate in a PSK handshake
    without = run_client(tmp_path, pki, server.port, name="cert").ok()
    assert (without["psk_mode"], without["signature_scheme"]) == (None, "ecdsa_secp256r1_sha256")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--listen", "127.0.0.1:0"], "needs --cert and --key, or a --psk"),
        (["server", "--listen", "127.0.0.1:0", "--psk", "00"], "--psk-identity and --psk go"),
        (["server", "--listen", "127.0.0.1:0", "--psk-identity", "i", "--psk", "xyz"], "hex"),
        (["server", "--listen", ":0", "--cert", "c", "--key", "k", "--psk-only"], "--psk-only"),
        (["server", "--listen", "127.0.0.1:0", *PSK, "--ticket-key", "00"], "--ticket-key"),
        (["server", "--listen", "127.0.0.1:0", *PSK, "--psk-modes", "psk_x"], "--psk-modes"),
        (["client", "127.0.0.1:1", "--psk-identity", "i"], "--psk-identity and --psk go"),
    ],
)
def test_invalid_options_are_one_line(args: list[str], message: str) -> None:
    result = run_protocol(*args)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


# -- the asyncio transports (the CLI runs the blocking ones) -----------------------------------


def test_asyncio_tls_passes_session_and_early_data(pki: Path) -> None:

    seen: list[tuple[bytes, int, str | None]] = []

    async def handle(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
        data = await reader.read(1024)  # accepted 0-RTT data comes first in the stream
        event = writer.handshake
        seen.append((data, writer.early_data_received, event.early_data if event else None))
        writer.write(data)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server_config = ServerConfig(
            certfile=pki / "server.pem", keyfile=pki / "server.key", max_early_data=1024
        )
        client_config = ClientConfig(server_name="localhost", cafile=pki / "ca.pem")
        server = await start_server(handle, "127.0.0.1", 0, server_config)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await open_connection("127.0.0.1", port, client_config)
            writer.write(b"full")
            assert await reader.read() == b"full"  # until close_notify: tickets came first
            sessions = writer.sessions
            assert len(sessions) == 2 and sessions[0].max_early_data == 1024
            writer.close()

            reader, writer = await open_connection(
                "127.0.0.1", port, client_config, session=sessions[0], early_data=b"zero-rtt"
            )
            handshake = writer.handshake
            assert handshake is not None
            assert (handshake.resumed, handshake.early_data) == (True, "accepted")
            assert await reader.read() == b"zero-rtt"
            writer.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert seen == [(b"full", 0, "not_sent"), (b"zero-rtt", 8, "accepted")]


def test_asyncio_dtls_passes_session_and_early_data(pki: Path) -> None:

    seen: list[tuple[bytes, int]] = []

    async def handle(stream: DTLSStream) -> None:
        message = await stream.recv()  # accepted 0-RTT messages come first
        seen.append((message, stream.early_data_received))
        await stream.send(message)
        await stream.wait_acknowledged()

    async def main() -> None:
        server_config = ServerConfig(
            certfile=pki / "server.pem", keyfile=pki / "server.key", max_early_data=1024,
            dtls_cookie=False,  # a cookie HelloRetryRequest would reject the 0-RTT data
        )  # fmt: skip
        client_config = ClientConfig(server_name="localhost", cafile=pki / "ca.pem")
        async with await start_dtls_server(handle, "127.0.0.1", 0, server_config) as server:
            port = server.address[1]
            stream = await open_dtls_connection("127.0.0.1", port, client_config)
            await stream.send(b"full")
            assert await stream.recv() == b"full"
            assert stream.sessions, "the tickets precede the echo"
            await stream.close()

            stream = await open_dtls_connection(
                "127.0.0.1", port, client_config, session=stream.sessions[0], early_data=b"0rtt"
            )
            handshake = stream.handshake
            assert handshake is not None
            assert (handshake.resumed, handshake.early_data) == (True, "accepted")
            assert await stream.recv() == b"0rtt"
            await stream.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert seen == [(b"full", 0), (b"0rtt", 4)]
