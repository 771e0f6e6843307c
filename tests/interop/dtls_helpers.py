"""Shared machinery for the DTLS 1.3 interop tests (wolfSSL, NSS, lossy paths).

Our side always runs as the real CLI (``python -m protocol client|server --dtls``) in its own
process, like the peers: the client writes ``--summary-json`` and ``--trace`` (JSON lines),
the server prints one line per association and writes ``--trace``. Peer processes go through
``helpers.Processes`` (own session, log file, killed in teardown). UDP ports come from
binding port 0, and a client starts only once its server's socket is bound (read from
/proc/net/udp, without sending it anything: a probe datagram would be a ClientHello to it).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.interop.helpers import PeerProcess, Processes

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
# Any one process step: a handshake plus a short exchange, retransmissions included.
STEP_TIMEOUT = 20.0
OURS: tuple[str, ...] = (sys.executable, "-m", "protocol")
# Our client's idle timeout: how long it keeps reading after the last datagram.
CLIENT_IDLE = "1.0"
# RFC 9147 §4.4 / SPEC_NOTES D1: our --mtu is the path MTU, datagrams stay within mtu - 48.
# wolfSSL's ``-u N`` is the size of the DTLS datagram itself (its ``dtlsMtuSz``), so our
# --mtu N+48 gives datagrams of the same size.
IP_UDP_OVERHEAD = 48


# -- ports ----------------------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (/proc/net/udp{,6}), without touching it."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        if any(line.split()[1].endswith(suffix) for line in lines if line.strip()):
            return True
    return False


def wait_udp_bound(port: int, process: PeerProcess, timeout: float = 10.0) -> None:
    """A DTLS client started before its server binds meets an ICMP refusal: wait."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if process.proc.poll() is not None:
            raise AssertionError(f"server ended before binding UDP {port}:\n{process.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server never bound UDP {port}:\n{process.describe()}")
        time.sleep(0.02)


# -- our CLI --------------------------------------------------------------------------------------


def load_trace(path: Path) -> list[dict[str, Any]]:
    """Our ``--trace`` JSON lines (empty if the file was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def handshake_messages(trace: list[dict[str, Any]], direction: str, name: str) -> int:
    """How many handshake messages called ``name`` (e.g. "key_update") went ``direction``."""
    return sum(
        1
        for e in trace
        if e["kind"] == "handshake" and e["direction"] == direction and e["detail"] == name
    )


@dataclass
class OurClientRun:
    process: PeerProcess
    exit_code: int | None
    summary: dict[str, Any]
    received: bytes
    trace: list[dict[str, Any]]

    def context(self) -> str:
        return (
            f"--- our client ---\n{self.process.describe()}\n"
            f"summary: {json.dumps(self.summary)}\nreceived: {self.received!r}"
        )


@dataclass
class OurClient:
    """Our CLI client, started; ``result()`` waits for it and collects what it wrote."""

    process: PeerProcess
    summary_path: Path
    trace_path: Path
    stdout_path: Path

    def result(self, timeout: float = STEP_TIMEOUT) -> OurClientRun:
        exit_code = self.process.finish(timeout)
        summary: dict[str, Any] = {}
        if self.summary_path.exists():
            summary = json.loads(self.summary_path.read_text())
        return OurClientRun(
            self.process,
            exit_code,
            summary,
            self.stdout_path.read_bytes(),
            load_trace(self.trace_path),
        )


def start_our_client(
    processes: Processes,
    directory: Path,
    port: int,
    pki: Path,
    extra: tuple[str, ...] | list[str] = (),
    *,
    send: str | None = "hello from tls13",
    name: str = "ours-client",
) -> OurClient:
    """``python -m protocol client --dtls`` to ``HOST:port`` (``extra`` may override
    ``--timeout``: the last one given wins)."""
    summary_path = directory / f"{name}-summary.json"
    trace_path = directory / f"{name}-trace.jsonl"
    stdout_path = directory / f"{name}-stdout.bin"
    argv: list[str | Path] = [*OURS, "client", "--dtls", f"{HOST}:{port}",
                              "--cafile", pki / "ca.pem", "--servername", SERVER_NAME,
                              "--summary-json", summary_path, "--trace", trace_path,
                              "--timeout", CLIENT_IDLE]  # fmt: skip
    if send is not None:
        argv += ["--send", send]
    argv += list(extra)
    client = processes.start(argv, name=name, stdin="null", stdout=stdout_path)
    return OurClient(client, summary_path, trace_path, stdout_path)


def run_our_client(
    processes: Processes,
    directory: Path,
    port: int,
    pki: Path,
    extra: tuple[str, ...] | list[str] = (),
    *,
    send: str | None = "hello from tls13",
    name: str = "ours-client",
    timeout: float = STEP_TIMEOUT,
) -> OurClientRun:
    """Our client to ``HOST:port``, run to the end (or killed after ``timeout``)."""
    client = start_our_client(processes, directory, port, pki, extra, send=send, name=name)
    return client.result(timeout)


@dataclass
class OurServer:
    process: PeerProcess
    port: int
    trace_path: Path

    def trace(self) -> list[dict[str, Any]]:
        return load_trace(self.trace_path)

    def association(self) -> dict[str, str]:
        """The fields of the line our server printed for the (first) handshake."""
        return association_line(self.process.output())

    def context(self) -> str:
        return f"--- our server ---\n{self.process.describe()}"


def start_our_server(
    processes: Processes,
    directory: Path,
    pki: Path,
    extra: tuple[str, ...] | list[str] = (),
    *,
    port: int | None = None,
    name: str = "ours-server",
) -> OurServer:
    """``python -m protocol server --dtls --once``, echoing, bound and ready."""
    port = free_udp_port() if port is None else port
    trace_path = directory / f"{name}-trace.jsonl"
    argv: list[str | Path] = [*OURS, "server", "--dtls", "--listen", f"{HOST}:{port}",
                              "--cert", pki / "server.pem", "--key", pki / "server.key",
                              "--once", "--trace", trace_path, *extra]  # fmt: skip
    server = processes.start(argv, name=name, stdin="null")
    if not server.wait_for("listening on", 15.0):
        raise AssertionError(f"our server did not start:\n{server.describe()}")
    return OurServer(server, port, trace_path)


_ASSOCIATION = re.compile(
    r"^\S+ (?P<version>DTLS 1\.3) (?P<cipher_suite>\S+) group=(?P<group>\S+) sig=(?P<sig>\S+) "
    r"alpn=(?P<alpn>\S+) sni=(?P<sni>\S+) hrr=(?P<hrr>yes|no) resumed=(?P<resumed>yes|no)"
    r"(?: psk=(?P<psk>\S+))?(?: early_data=(?P<early_data>\S+))?"
    r"(?: peer=(?P<peer>.*?))? cid_sent=(?P<cid_sent>\S+) cid_received=(?P<cid_received>\S+)$",
    re.MULTILINE,
)


def association_line(output: str) -> dict[str, str]:
    """Our server's per-association line (protocol/cli/main.py ``DTLSServerHandler``), or {}."""
    match = _ASSOCIATION.search(output)
    if match is None:
        return {}
    return {k: v for k, v in match.groupdict().items() if v is not None}


# -- relay log ------------------------------------------------------------------------------------


def relay_datagram_sizes(log: Path, direction: str) -> list[int]:
    """Sizes of the datagrams the relay forwarded in ``direction`` ("c2s" or "s2c")."""
    sizes = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if fields[1] == direction and fields[3] in ("pass", "late", "dup"):
            sizes.append(int(fields[4]))
    return sizes


def finish_pair(
    client: PeerProcess, server: PeerProcess, timeout: float = STEP_TIMEOUT, grace: float = 1.0
) -> tuple[int | None, int | None]:
    """Wait for a client and a one-shot server; once one of them has failed, the other gets
    ``grace`` seconds (a peer that lost its partner would otherwise retransmit until its own
    timeout). Returns both exit codes (None: killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = (client.proc.poll(), server.proc.poll())
        if codes[0] is not None and codes[1] is not None:
            return codes
        if any(code not in (None, 0) for code in codes):
            break
        if codes[0] == 0:  # the client is done: the server follows soon (close_notify)
            return 0, server.finish(max(0.1, deadline - time.monotonic()))
        time.sleep(0.02)
    return client.finish(grace), server.finish(grace)
