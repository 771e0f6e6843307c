"""``python -m bench --scale``: the server over real loopback sockets (not in the default run).

1. Handshake rate: ``openssl s_time -connect 127.0.0.1:PORT -new -time T`` against our
   ``python -m protocol server`` and against ``openssl s_server`` (same certificate, TLS 1.3,
   no tickets), one after the other; the ratio of connections per second, plus each server's
   CPU seconds from /proc (s_time itself shares the machine's cores).
2. Idle connections: our asyncio client opens N TLS connections (2,000 with --quick, else
   10,000) to a fresh ``python -m protocol server`` and keeps them open; the server's RSS
   (VmRSS in /proc/PID/status) before and after gives the bytes per connection.

Everything stays on 127.0.0.1; every loop is bounded in count and time. Results go to
bench/results/scale.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protocol.config import ClientConfig
from protocol.transports.tcp_asyncio import TLSStreamWriter, open_connection

from . import machine, report
from .fixtures import SERVER_NAME, Pki, make_pki

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_LISTENING = re.compile(r"listening on \[?([0-9.:a-f]+?)\]?:(\d+)")
_S_TIME = re.compile(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec")
_CONCURRENT_HANDSHAKES = 64


class Server:
    """A server subprocess whose output goes to a file (a pipe nobody reads would fill)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log.read_text(errors="replace"))
            if match:
                return int(match.group(2))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text(errors='replace')[-500:]}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log_file.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_accepting(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing accepts on {HOST}:{port}")


def our_server(pki: Pki, workdir: Path, name: str) -> Server:
    argv = [
        sys.executable,
        "-m",
        "protocol",
        "server",
        "--listen",
        f"{HOST}:0",
        "--cert",
        str(pki.server_cert),
        "--key",
        str(pki.server_key),
    ]
    return Server(argv, workdir / f"{name}.log")


def s_time(port: int, seconds: int) -> dict[str, Any]:
    argv = ["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-time", str(seconds)]
    started = time.perf_counter()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    match = _S_TIME.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"s_time failed: {result.stdout[-300:]} {result.stderr[-300:]}")
    connections = int(match.group(1))
    return {
        "connections": connections,
        "wall_s": round(wall, 3),
        "connections_per_s": connections / wall,
        "client_connections_per_user_s": float(match.group(3)),
    }


def handshake_rates(pki: Pki, workdir: Path, seconds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ours = our_server(pki, workdir, "ours-s_time")
    try:
        port = ours.wait_for_port()
        cpu = ours.cpu_seconds()
        results["ours"] = s_time(port, seconds)
        results["ours"]["server_cpu_s"] = round(ours.cpu_seconds() - cpu, 3)
    finally:
        ours.stop()
    port = _free_port()
    argv = [
        "openssl",
        "s_server",
        "-accept",
        f"{HOST}:{port}",
        "-cert",
        str(pki.server_cert),
        "-key",
        str(pki.server_key),
        "-tls1_3",
        "-num_tickets",
        "0",
        "-quiet",
    ]
    openssl = Server(argv, workdir / "s_server.log")
    try:
        _wait_accepting(port)
        cpu = openssl.cpu_seconds()
        results["openssl_s_server"] = s_time(port, seconds)
        results["openssl_s_server"]["server_cpu_s"] = round(openssl.cpu_seconds() - cpu, 3)
    finally:
        openssl.stop()
    for side in ("ours", "openssl_s_server"):
        r = results[side]
        r["connections_per_server_cpu_s"] = r["connections"] / max(r["server_cpu_s"], 1e-9)
    results["ratio_ours_to_openssl"] = (
        results["ours"]["connections_per_s"] / results["openssl_s_server"]["connections_per_s"]
    )
    return results


async def _open_idle(pki: Pki, port: int, count: int, budget_s: float) -> list[TLSStreamWriter]:
    config = ClientConfig(server_name=SERVER_NAME, cafile=pki.ca)
    gate = asyncio.Semaphore(_CONCURRENT_HANDSHAKES)
    writers: list[TLSStreamWriter] = []

    async def one() -> None:
        async with gate:
            _reader, writer = await open_connection(HOST, port, config, handshake_timeout=60)
            writers.append(writer)

    async with asyncio.timeout(budget_s):
        await asyncio.gather(*(one() for _ in range(count)))
    return writers


def idle_connections(pki: Pki, workdir: Path, count: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    server = our_server(pki, workdir, "ours-idle")

    async def scenario() -> dict[str, Any]:
        port = server.wait_for_port()
        await asyncio.sleep(0.5)
        before = server.rss_bytes()
        started = time.perf_counter()
        writers = await _open_idle(pki, port, count, budget_s=600)
        opened = time.perf_counter() - started
        await asyncio.sleep(2.0)  # let the server finish its per-connection set-up
        after = server.rss_bytes()
        for writer in writers:
            writer.transport.abort()
        return {
            "connections": len(writers),
            "server_rss_before": before,
            "server_rss_after": after,
            "rss_per_connection": (after - before) / max(len(writers), 1),
            "open_seconds": round(opened, 2),
            "client_handshakes_per_s": len(writers) / opened,
        }

    try:
        return asyncio.run(scenario())
    finally:
        server.stop()


def main(*, quick: bool) -> int:
    if shutil.which("openssl") is None:
        print("openssl (the command) is needed for --scale", file=sys.stderr)
        return 1
    seconds = 3 if quick else 10
    count = 2000 if quick else 10000
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tls13-scale-") as tmp:
        workdir = Path(tmp)
        pki = make_pki(workdir / "pki")
        rates = handshake_rates(pki, workdir, seconds)
        idle = idle_connections(pki, workdir, count)
    ours, openssl = rates["ours"], rates["openssl_s_server"]
    print(f"openssl s_time -new -time {seconds} (TLS 1.3, {HOST}):")
    for name, r in (("ours (python -m protocol server)", ours), ("openssl s_server", openssl)):
        print(
            f"  {name:34} {r['connections_per_s']:8.1f} conn/s  "
            f"({r['connections']} in {r['wall_s']} s; server CPU {r['server_cpu_s']} s = "
            f"{r['connections_per_server_cpu_s']:.1f} conn per server CPU-second)"
        )
    print(f"  ratio ours / openssl s_server: {rates['ratio_ours_to_openssl']:.3f}")
    print(
        f"{idle['connections']} idle TLS connections: server RSS "
        f"{idle['server_rss_before'] / 2**20:.1f} MiB -> {idle['server_rss_after'] / 2**20:.1f} MiB"
        f" = {idle['rss_per_connection']:,.0f} bytes per connection "
        f"(opened in {idle['open_seconds']} s)"
    )
    document = {
        "schema": 1,
        "generated": datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine.describe(),
        "s_time": rates,
        "idle_connections": idle,
    }
    path = report.write_json(document, report.RESULTS / "scale.json")
    print(f"-> {path}")
    return 0
