"""``python -m protocol client/server --dtls`` as users and scripts run them: real
subprocesses on 127.0.0.1 (UDP), always with timeouts."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 60.0
DTLS_FIELDS = {
    "version",
    "cid_sent",
    "cid_received",
    "retransmissions",
    "datagrams_sent",
    "datagrams_received",
    "handshake_round_trips",
    "handshake_complete",
}
# Every field the TLS summary has (test_cli.py) must be there for DTLS too.
TLS_FIELDS = {
    "cipher_suite",
    "group",
    "signature_scheme",
    "alpn",
    "server_name",
    "hello_retry",
    "resumed",
    "psk_mode",
    "early_data",
    "peer_certificate_subject",
    "client_authenticated",
    "peer_record_size_limit",
    "bytes_sent",
    "bytes_received",
    "key_updates_sent",
    "key_updates_received",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DTLSServer:
    """``python -m protocol server --dtls`` on an OS-chosen UDP port (from its first line)."""

    def __init__(self, pki: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "protocol",
                "server",
                "--dtls",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                str(pki / "server.pem"),
                "--key",
                str(pki / "server.key"),
                *args,
            ],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        first = self.lines.get(timeout=TIMEOUT)
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert match, f"unexpected first line {first!r}"
        self.port = int(match.group(1))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait(self) -> int:
        code = self.proc.wait(timeout=TIMEOUT)
        self._reader.join(TIMEOUT)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(TIMEOUT)


ServerFactory = Callable[..., DTLSServer]


@pytest.fixture
def dtls_server(pki_dir: Path) -> Iterator[ServerFactory]:
    started: list[DTLSServer] = []

    def start(*args: str) -> DTLSServer:
        server = DTLSServer(pki_dir, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run_protocol(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *args],
        cwd=ROOT,
        env=_env(),
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
    )


def client(
    pki: Path, port: int, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return run_protocol(
        "client",
        "--dtls",
        f"127.0.0.1:{port}",
        "--cafile",
        str(pki / "ca.pem"),
        "--servername",
        "localhost",
        *args,
        stdin=stdin,
    )


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the happy paths ------------------------------------------------------------------------------


def test_echo_with_summary_trace_keylog_and_key_update(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--alpn", "echo")
    summary_file = tmp_path / "summary.json"
    trace_file = tmp_path / "trace.jsonl"
    keylog_file = tmp_path / "keys.log"
    result = client(
        pki_dir,
        server.port,
        "--alpn",
        "echo",
        "--send",
        "hello dtls13",
        "--key-update",
        "--timeout",
        "0.5",
        "--summary-json",
        str(summary_file),
        "--trace",
        str(trace_file),
        "--keylog",
        str(keylog_file),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello dtls13"
    assert result.stderr == b""

    summary = read_json(summary_file)
    assert set(summary) >= TLS_FIELDS | DTLS_FIELDS
    assert "error" not in summary
    assert summary["version"] == "DTLS 1.3"
    assert summary["handshake_complete"] is True
    assert summary["cipher_suite"] == "TLS_AES_128_GCM_SHA256"
    assert summary["alpn"] == "echo"
    assert summary["hello_retry"] is True  # the stateless cookie exchange (RFC 9147 §5.1)
    assert summary["handshake_round_trips"] == 2
    assert summary["cid_sent"] is None and summary["cid_received"] is None
    assert summary["bytes_sent"] == summary["bytes_received"] == len(b"hello dtls13")
    assert summary["key_updates_sent"] == 1
    assert summary["key_updates_received"] == 1  # the server's answer
    assert summary["datagrams_sent"] >= 4 and summary["datagrams_received"] >= 4
    assert isinstance(summary["retransmissions"], int)

    events = [json.loads(line) for line in trace_file.read_text().splitlines()]
    messages = {(e["direction"], e["detail"]) for e in events if e["kind"] == "handshake"}
    assert ("sent", "client_hello") in messages and ("received", "finished") in messages
    assert ("sent", "key_update") in messages and ("received", "key_update") in messages
    assert any(e["kind"] == "ack" for e in events)
    received = [e for e in events if e["kind"] == "record" and e["direction"] == "received"]
    assert all(re.fullmatch(r"record \d+:\d+", e["detail"]) for e in received)

    labels = {line.split()[0] for line in keylog_file.read_text().splitlines()}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} <= labels

    assert server.wait() == 0
    assert len(server.stderr) == 2, server.stderr
    assert "DTLS 1.3 TLS_AES_128_GCM_SHA256" in server.stderr[1]
    assert "alpn=echo" in server.stderr[1] and "hrr=yes" in server.stderr[1]


def test_connection_ids_both_ways(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--cid-length", "8")
    summary_file = tmp_path / "summary.json"
    result = client(
        pki_dir,
        server.port,
        "--cid-length",
        "4",
        "--request-cids",
        "2",
        "--send",
        "with CIDs",
        "--timeout",
        "0.3",
        "--summary-json",
        str(summary_file),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"with CIDs"
    summary = read_json(summary_file)
    # cid_sent: what our records carry (the server's choice); cid_received: ours.
    assert re.fullmatch(r"[0-9a-f]{16}", summary["cid_sent"])
    assert re.fullmatch(r"[0-9a-f]{8}", summary["cid_received"])
    # RequestConnectionId (RFC 9147 §9): two spares of the server's length
    assert len(summary["cid_spare"]) == 2
    assert all(re.fullmatch(r"[0-9a-f]{16}", cid) for cid in summary["cid_spare"])
    assert server.wait() == 0
    line = server.stderr[1]
    assert f"cid_sent={summary['cid_received']}" in line
    assert f"cid_received={summary['cid_sent']}" in line


def test_zero_cid_length_uses_only_the_peers(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--cid-length", "3")
    summary_file = tmp_path / "summary.json"
    result = client(
        pki_dir,
        server.port,
        "--cid-length",
        "0",
        "--send",
        "x",
        "--timeout",
        "0.3",
        "--summary-json",
        str(summary_file),
    )
    assert result.returncode == 0, result.stderr
    summary = read_json(summary_file)
    assert len(summary["cid_sent"]) == 6 and summary["cid_received"] is None
    assert server.wait() == 0


def test_small_mtu_fragments_flights(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--mtu", "300")
    summary_file = tmp_path / "summary.json"
    trace_file = tmp_path / "trace.jsonl"
    text = "x" * 1000  # application data is cut to the MTU as well
    result = client(
        pki_dir,
        server.port,
        "--mtu",
        "300",
        "--send",
        text,
        "--timeout",
        "0.5",
        "--summary-json",
        str(summary_file),
        "--trace",
        str(trace_file),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == text.encode()
    events = [json.loads(line) for line in trace_file.read_text().splitlines()]
    certificate = [
        e
        for e in events
        if e["kind"] == "handshake"
        and e["detail"] == "certificate"
        and e["direction"] == "received"
    ]
    assert certificate and certificate[0]["length"] > 300  # reassembled from fragments
    records = [e for e in events if e["kind"] == "record" and e["direction"] == "received"]
    assert records and max(e["length"] for e in records) < 300 - 48
    sent_data = [
        e for e in events if e["kind"] == "record" and e["content_type"] == "application_data"
    ]
    assert sum(1 for e in sent_data if e["direction"] == "sent") >= 4
    summary = read_json(summary_file)
    assert summary["datagrams_received"] >= 8
    assert summary["handshake_complete"] is True
    assert server.wait() == 0


def test_no_cookie_saves_a_round_trip(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--no-cookie")
    summary_file = tmp_path / "summary.json"
    result = client(
        pki_dir, server.port, "--send", "x", "--timeout", "0.3", "--summary-json", str(summary_file)
    )
    assert result.returncode == 0, result.stderr
    summary = read_json(summary_file)
    assert summary["hello_retry"] is False
    assert summary["handshake_round_trips"] == 1
    assert server.wait() == 0
    assert "hrr=no" in server.stderr[1]


def test_send_from_stdin_and_server_key_update(
    pki_dir: Path, dtls_server: ServerFactory, tmp_path: Path
) -> None:
    server = dtls_server("--once", "--key-update")
    data = bytes(range(256)) * 64  # 16 KiB of binary data: one burst of records
    summary_file = tmp_path / "summary.json"
    result = client(
        pki_dir,
        server.port,
        "--send",
        "-",
        "--timeout",
        "0.5",
        "--summary-json",
        str(summary_file),
        stdin=data,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    summary = read_json(summary_file)
    assert summary["key_updates_received"] == 1 and summary["key_updates_sent"] == 1
    assert server.wait() == 0


def test_www_mode_answers_and_closes(pki_dir: Path, dtls_server: ServerFactory) -> None:
    server = dtls_server("--once", "--mode", "www")
    started = time.monotonic()
    result = client(pki_dir, server.port, "--timeout", "20", "--send", "GET / HTTP/1.0\r\n\r\n")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"DTLS 1.3 connection established" in result.stdout
    assert elapsed < 15  # the server's close_notify ended the read, not the idle timeout
    assert server.wait() == 0


# -- failures: exit status and exactly one line --------------------------------------------------


def test_handshake_timeout_against_a_closed_port(pki_dir: Path) -> None:
    started = time.monotonic()
    result = client(
        pki_dir,
        closed_udp_port(),
        "--max-retransmits",
        "2",
        "--retransmit-initial",
        "100",
        "--send",
        "anyone?",
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert result.stdout == b""
    assert stderr_lines(result) == ["DTLS handshake timed out after 2 retransmissions"]
    # 100 + 200 + 400 ms of retransmission timers, plus interpreter start-up.
    assert elapsed < 8


def test_timeout_summary_says_incomplete(pki_dir: Path, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    result = client(
        pki_dir,
        closed_udp_port(),
        "--max-retransmits",
        "1",
        "--retransmit-initial",
        "50",
        "--summary-json",
        str(summary_file),
    )
    assert result.returncode != 0
    summary = read_json(summary_file)
    assert summary["version"] == "DTLS 1.3"
    assert summary["handshake_complete"] is False
    assert summary["retransmissions"] == 1
    assert summary["datagrams_sent"] == 2 and summary["datagrams_received"] == 0
    assert summary["error"] == "DTLS handshake timed out after 1 retransmission"


def test_wrong_servername_is_one_line(pki_dir: Path, dtls_server: ServerFactory) -> None:
    server = dtls_server("--once")
    result = run_protocol(
        "client",
        "--dtls",
        f"127.0.0.1:{server.port}",
        "--cafile",
        str(pki_dir / "ca.pem"),
        "--servername",
        "wrong.example",
        "--send",
        "x",
    )
    assert result.returncode != 0
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("certificate verify failed: hostname mismatch")
    assert server.wait() == 1
    assert "peer sent alert bad_certificate" in server.stderr[1]


def test_dtls_options_need_dtls(pki_dir: Path) -> None:
    result = run_protocol("client", "127.0.0.1:1", "--cid-length", "4")
    assert result.returncode == 2
    assert "--cid-length needs --dtls" in result.stderr.decode()
    result = run_protocol("client", "--dtls", "127.0.0.1:1", "--mtu", "10")
    assert result.returncode == 2
    assert "--mtu" in result.stderr.decode()


# -- demo -----------------------------------------------------------------------------------------


def test_demo_prints_tls_then_dtls() -> None:
    result = run_protocol("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    tls_at = out.index("TLS 1.3 (RFC 8446)")
    dtls_at = out.index("DTLS 1.3 (RFC 9147)")
    assert tls_at < dtls_at
    tls_part, dtls_part = out[:dtls_at], out[dtls_at:]
    assert "client -> [handshake] epoch 0 client_hello" in tls_part
    for needle in (
        "client -> [handshake] epoch 0 client_hello",
        "server <- [handshake] epoch 0 client_hello",
        "server -> [handshake] epoch 2 certificate",
        "client <- [handshake] epoch 2 finished",
        "server -> [ack      ]",
        "ACK 2:",
        "key_update",
        "epoch 4 application_data",  # after the KeyUpdate
        "close_notify",
        "DTLS negotiated parameters",
        "DTLS 1.3",
        "CID we send",
        "datagrams sent",
        "retransmissions",
    ):
        assert needle in dtls_part, needle
    assert re.search(r"record 2:\d+", dtls_part)
    assert re.search(r"CID we receive\s+[0-9a-f]{8}\n", dtls_part)  # the client's 4 bytes
