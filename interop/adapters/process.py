"""External peer processes, ports and waits: the plumbing every adapter shares.

A peer process runs in its own session (so it and anything it starts die together), its
stdout and stderr go to a log file in the cell's folder, and it is always killed at the end
of the cell. Ports come from a per-worker block outside Linux's ephemeral range, so cells
running in parallel never pick the same port and no client's source port collides with them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .base import App, Cell, CellFailure, PeerServer

HOST = "127.0.0.1"
# Below net.ipv4.ip_local_port_range (32768-60999): no outgoing connection takes these.
PORT_BASE = 20000
PORTS_PER_SLOT = 1500


class PeerProcess:
    """One external peer: own session, output in ``log``, stdin a pipe, /dev/null or a file."""

    def __init__(
        self,
        argv: Sequence[str | Path],
        log: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | Path = "pipe",
        stdout: Path | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log = log
        self.stdout_path = stdout
        self._files: list[IO[bytes]] = []
        stdin_arg: Any
        if stdin == "pipe":
            stdin_arg = subprocess.PIPE
        elif stdin == "null":
            stdin_arg = subprocess.DEVNULL
        else:
            stdin_arg = open(stdin, "rb")  # noqa: SIM115 - closed in kill()
            self._files.append(stdin_arg)
        log_file = open(log, "wb")  # noqa: SIM115 - closed in kill()
        self._files.append(log_file)
        out_file: IO[bytes] = log_file
        if stdout is not None:
            out_file = open(stdout, "wb")  # noqa: SIM115 - closed in kill()
            self._files.append(out_file)
        with log.with_suffix(".cmd").open("w") as cmd:
            cmd.write(f"cd {cwd or os.getcwd()}\n{' '.join(self.argv)}\n")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=stdin_arg,
            stdout=out_file,
            stderr=log_file,
            start_new_session=True,
        )

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, data: bytes) -> None:
        if self.proc.stdin is None:
            raise CellFailure(f"{self.name} was started without a stdin pipe")
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise CellFailure(
                f"{self.name} is gone (stdin closed): {self.last_line()}", self.log
            ) from exc

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, text: str, timeout: float, start: int = 0) -> bool:
        """True once ``text`` is in the log after character ``start``; False when the process
        ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.output()[start:]:
                return True
            if self.proc.poll() is not None:
                return text in self.output()[start:]
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def finish(self, timeout: float) -> int | None:
        """The exit code, or None if the process had to be killed after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        self.close_stdin()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        self._files.clear()

    def last_line(self) -> str:
        lines = [line.strip() for line in self.output().splitlines() if line.strip()]
        return lines[-1][:200] if lines else "(no output)"

    def error_line(self, markers: Sequence[str] = ()) -> str:
        """The first line of the peer's output that looks like an error, else its last line."""
        keys = (*markers, "error", "Error", "ERROR", "fail", "alert", "Alert", "refused")
        for line in self.output().splitlines():
            if any(k in line for k in keys):
                return line.strip()[:200]
        return self.last_line()


def port_free(port: int) -> bool:
    """Nothing has ``port`` bound, over TCP or UDP (a cell may use it for either)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                return False
    return True


class PortPool:
    """Ports for one cell, from its worker's block; each one checked free before use."""

    def __init__(self, slot: int, start: int = 0) -> None:
        self.base = PORT_BASE + slot * PORTS_PER_SLOT
        self.next = start % PORTS_PER_SLOT

    def take(self) -> int:
        for _ in range(PORTS_PER_SLOT):
            port = self.base + self.next
            self.next = (self.next + 1) % PORTS_PER_SLOT
            if port_free(port):
                return port
        raise CellFailure(f"no free port in {self.base}..{self.base + PORTS_PER_SLOT}")


def _bound(port: int, tables: Sequence[str], state: str | None) -> bool:
    suffix = f":{port:04X}"
    for table in tables:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                matches = len(fields) > 3 and fields[1].endswith(suffix)
                if matches and (state is None or fields[3] == state):
                    return True
    return False


def tcp_listening(port: int) -> bool:
    """A TCP socket listens on ``port`` (/proc/net/tcp state 0A), seen without connecting:
    some peers would take a probe connection for their one client."""
    return _bound(port, ("/proc/net/tcp", "/proc/net/tcp6"), "0A")


def udp_bound(port: int) -> bool:
    return _bound(port, ("/proc/net/udp", "/proc/net/udp6"), None)


def wait_bound(process: PeerProcess, port: int, *, udp: bool, timeout: float) -> None:
    """Wait until ``process`` has bound ``port`` (a client started earlier meets a refusal)."""
    deadline = time.monotonic() + timeout
    check = udp_bound if udp else tcp_listening
    while not check(port):
        if not process.alive():
            raise CellFailure(
                f"{process.name} exited before listening: {process.error_line()}", process.log
            )
        if time.monotonic() > deadline:
            raise CellFailure(f"{process.name} never listened on port {port}", process.log)
        time.sleep(0.02)


class ProcessServer(PeerServer):
    """A peer server that is one external process listening on ``port``: started (and
    restarted, which gives it new ticket keys) from ``argv``; its ``finish`` checks it is
    still alive before the adapter reads its verdict."""

    cell: Cell
    argv: Sequence[str | Path]
    label = "server"  # log name
    udp = False
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    def __init__(self, port: int, app: App) -> None:
        super().__init__(port, app, self._start(port))

    def _start(self, port: int) -> PeerProcess:
        process = self.cell.start(self.argv, self.label, env=self.env, cwd=self.cwd, stdin="null")
        wait_bound(process, port, udp=self.udp, timeout=self.cell.timeout)
        return process

    def restart(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process = self._start(self.port)

    def alive_output(self) -> str:
        """The process's output so far; CellFailure if it died."""
        assert self.process is not None
        if not self.process.alive():
            raise CellFailure(f"{self.label} died: {self.process.error_line()}", self.process.log)
        return self.process.output()
