"""``python -m protocol`` as users and scripts run it: real subprocesses, always with timeouts."""

from __future__ import annotations

import base64
import hashlib
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

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.pki import generate_pki

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 60.0
KEYLOG_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-pki")
    generate_pki(directory)
    return directory


class Server:
    """``python -m protocol server`` on an OS-chosen port (read back from its first line)."""

    def __init__(self, pki: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "protocol",
                "server",
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
            stdout=subprocess.PIPE,
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
        if self.proc.stdout is not None:
            self.proc.stdout.close()


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(pki: Path) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(pki, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run_protocol(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *args],
        cwd=ROOT,
        env=_env(),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=TIMEOUT,
    )


def client(
    pki: Path, port: int, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_protocol(
        "client", f"127.0.0.1:{port}", "--cafile", str(pki / "ca.pem"), *args, stdin=stdin
    )


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


# -- the happy path, with every output file ---------------------------------------------------


def test_echo_with_summary_trace_and_keylog(
    pki: Path, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--once", "--alpn", "echo,h2")
    summary_file = tmp_path / "summary.json"
    trace_file = tmp_path / "trace.jsonl"
    keylog_file = tmp_path / "keys.log"
    result = client(
        pki,
        server.port,
        "--servername",
        "localhost",
        "--alpn",
        "h2",
        "--send",
        "hello tls13",
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
    assert result.stdout == b"hello tls13"
    assert result.stderr == b""

    summary = json.loads(summary_file.read_text())
    assert summary["version"] == "TLS 1.3"
    assert summary["cipher_suite"] == "TLS_AES_128_GCM_SHA256"
    assert summary["group"] == "x25519"
    assert summary["signature_scheme"] == "ecdsa_secp256r1_sha256"
    assert summary["alpn"] == "h2"
    assert summary["hello_retry"] is False
    assert summary["resumed"] is False
    assert summary["early_data"] == "not_sent"
    assert "CN=localhost" in summary["peer_certificate_subject"]
    assert summary["bytes_sent"] == len(b"hello tls13")
    assert summary["bytes_received"] == len(b"hello tls13")
    assert "psk_mode" in summary
    assert summary["key_updates_sent"] == 1
    assert summary["key_updates_received"] == 1  # the server's answer (RFC 8446 §4.6.3)

    events = [json.loads(line) for line in trace_file.read_text().splitlines()]
    records = {(e["direction"], e["content_type"]) for e in events if e["kind"] == "record"}
    assert ("sent", "handshake") in records and ("received", "handshake") in records
    assert ("sent", "application_data") in records
    assert ("received", "application_data") in records
    messages = {(e["direction"], e["detail"]) for e in events if e["kind"] == "handshake"}
    assert ("sent", "client_hello") in messages
    assert ("received", "server_hello") in messages
    assert ("sent", "key_update") in messages and ("received", "key_update") in messages

    lines = [line.split() for line in keylog_file.read_text().splitlines()]
    assert {fields[0] for fields in lines} == KEYLOG_LABELS
    assert len({fields[1] for fields in lines}) == 1  # one client_random
    assert all(len(fields[2]) == 64 for fields in lines)  # SHA-256 secrets

    assert server.wait() == 0
    assert len(server.stderr) == 2, server.stderr
    line = server.stderr[1]
    assert "TLS 1.3 TLS_AES_128_GCM_SHA256" in line and "alpn=h2" in line


def test_groups_ciphers_and_hello_retry(
    pki: Path, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--once", "--hrr")
    summary_file = tmp_path / "summary.json"
    result = client(
        pki,
        server.port,
        "--servername",
        "localhost",
        "--groups",
        "secp256r1,x25519",
        "--ciphers",
        "TLS_AES_256_GCM_SHA384",
        "--send",
        "x",
        "--timeout",
        "0.3",
        "--summary-json",
        str(summary_file),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["cipher_suite"] == "TLS_AES_256_GCM_SHA384"
    assert summary["group"] == "secp256r1"
    assert summary["hello_retry"] is True
    assert server.wait() == 0
    assert "hrr=yes" in server.stderr[1]


def test_send_from_stdin(pki: Path, server_factory: ServerFactory) -> None:
    server = server_factory("--once")
    data = bytes(range(256)) * 512  # 128 KiB of binary data
    result = client(pki, server.port, "--send", "-", "--timeout", "0.5", stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert server.wait() == 0


def test_www_mode_answers_and_closes(pki: Path, server_factory: ServerFactory) -> None:
    server = server_factory("--once", "--mode", "www")
    started = time.monotonic()
    result = client(
        pki,
        server.port,
        "--servername",
        "localhost",
        "--timeout",
        "20",
        "--send",
        "GET / HTTP/1.0\r\n\r\n",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"TLS_AES_128_GCM_SHA256" in result.stdout
    # The server's close_notify ends the client's read; it did not wait for its idle timeout.
    assert elapsed < 15
    assert server.wait() == 0


def test_client_certificate(pki: Path, server_factory: ServerFactory) -> None:
    server = server_factory("--once", "--verify-client", "--cafile", str(pki / "ca.pem"))
    result = client(
        pki,
        server.port,
        "--cert",
        str(pki / "client.pem"),
        "--key",
        str(pki / "client.key"),
        "--send",
        "with cert",
        "--timeout",
        "0.3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"with cert"
    assert server.wait() == 0
    assert "peer=CN=tls13 client" in server.stderr[1]


def test_post_handshake_authentication(pki: Path, server_factory: ServerFactory) -> None:
    # RFC 8446 §4.6.2 from the command line: the server asks after the handshake.
    server = server_factory(
        "--once", "--post-handshake-auth", "--verify-client", "--cafile", str(pki / "ca.pem")
    )
    result = client(
        pki,
        server.port,
        "--cert",
        str(pki / "client.pem"),
        "--key",
        str(pki / "client.key"),
        "--post-handshake-auth",
        "--send",
        "after the handshake",
        "--timeout",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"after the handshake"
    assert server.wait() == 0
    assert "peer=" not in server.stderr[1]  # no certificate in the handshake itself
    assert "post-handshake authentication: CN=tls13 client" in server.stderr[2]


def test_required_post_handshake_authentication_not_offered(
    pki: Path, server_factory: ServerFactory
) -> None:
    # --verify-client with --post-handshake-auth: a client that cannot be asked is not served.
    server = server_factory(
        "--once", "--post-handshake-auth", "--verify-client", "--cafile", str(pki / "ca.pem")
    )
    result = client(pki, server.port, "--send", "let me in", "--timeout", "0.5")
    assert result.stdout == b""
    assert server.wait() != 0
    assert "required but not offered" in "\n".join(server.stderr)


# -- failures: exit status and exactly one line -------------------------------------------------


def test_wrong_servername_is_one_line_hostname_mismatch(
    pki: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("--once")
    result = client(pki, server.port, "--servername", "wrong.example", "--send", "x")
    assert result.returncode != 0
    assert result.stdout == b""
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("certificate verify failed: hostname mismatch")
    assert server.wait() == 1
    assert "peer sent alert bad_certificate" in server.stderr[1]


def test_missing_client_certificate(pki: Path, server_factory: ServerFactory) -> None:
    server = server_factory("--once", "--verify-client", "--cafile", str(pki / "ca.pem"))
    result = client(pki, server.port, "--send", "x")
    assert result.returncode != 0
    assert stderr_lines(result) == ["handshake failed: peer sent alert certificate_required"]
    assert server.wait() == 1


def test_pins(pki: Path, server_factory: ServerFactory) -> None:
    leaf = x509.load_pem_x509_certificate((pki / "server.pem").read_bytes())
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    good = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"not a key").digest()).decode()

    server = server_factory()
    ok = client(pki, server.port, "--pin-sha256", bad, "--pin-sha256", good, "--timeout", "0.2")
    assert ok.returncode == 0, ok.stderr
    wrong = client(pki, server.port, "--pin-sha256", bad)
    assert wrong.returncode != 0
    lines = stderr_lines(wrong)
    assert len(lines) == 1 and lines[0].startswith("certificate verify failed: pin mismatch")


def test_insecure_skips_verification_with_a_warning(
    pki: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("--once")
    result = run_protocol(
        "client",
        f"127.0.0.1:{server.port}",
        "--servername",
        "wrong.example",
        "--insecure",
        "--send",
        "anyway",
        "--timeout",
        "0.3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"anyway"
    assert "warning" in result.stderr.decode() and "NOT verified" in result.stderr.decode()
    assert server.wait() == 0


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there now.
    result = run_protocol("client", f"127.0.0.1:{port}", "--insecure")
    assert result.returncode != 0
    assert stderr_lines(result)[-1] == "connection refused"


def test_unknown_group_is_reported(pki: Path) -> None:
    result = run_protocol("client", "127.0.0.1:1", "--groups", "x25519,nonsense")
    assert result.returncode != 0
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("invalid --groups")


# -- demo and make-certs ----------------------------------------------------------------------


def test_demo_prints_a_trace_both_ways() -> None:
    result = run_protocol("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for needle in (
        "client -> [handshake] epoch 0 client_hello",
        "server <- [handshake] epoch 0 client_hello",
        "server -> [handshake] epoch 0 server_hello",
        "client <- [handshake] epoch 2 finished",
        "server <- [handshake] epoch 2 finished",
        "key_update",
        "close_notify",
        "application_data",
        "Negotiated parameters",
        "TLS_AES_128_GCM_SHA256",
    ):
        assert needle in out, needle


def test_make_certs(tmp_path: Path) -> None:
    result = run_protocol("make-certs", str(tmp_path / "certs"), "--key-type", "ecdsa-p256")
    assert result.returncode == 0, result.stderr
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (tmp_path / "certs" / name).is_file(), name
