"""Shared machinery for the TLS 1.3 interop tests with real peers.

- :class:`PeerProcess`: an external peer (openssl, gnutls-serv, ...) in its own process group,
  its output in a log file, killed in teardown whatever happens (``Processes`` fixture).
- :func:`free_tcp_port` / :func:`wait_bound`: ports come from binding port 0; clients start only
  once the server listens (its LISTEN socket in /proc/net/tcp: a probe connect() would use up
  ``s_server -naccept 1`` or our CLI server's ``--once``).
- :class:`OurServer`: our blocking server in a thread, serving one connection with a handler.
- :func:`our_client`: our blocking client over TCP.
- :class:`MemoryPeer` and :class:`MemoryLink`: an in-process OpenSSL (Python ``ssl`` or pyOpenSSL)
  wired to our Sans-IO connection through memory, no sockets.
- payload generators whose bytes are checked one for one after the round trip; parsers for
  what peers report (ServerHello fields, `openssl -trace`), :class:`RecordingSocket` for
  record sizes on the wire.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.config import ClientConfig, ServerConfig
from protocol.events import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    KeyUpdated,
)
from protocol.transports.tcp_blocking import TLSServerSocket, TLSSocket, connect

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
STEP_TIMEOUT = 30.0  # any one peer process, handshake or transfer
MIB = 1024 * 1024


# -- payloads -------------------------------------------------------------------------------------


def binary_payload(size: int) -> bytes:
    """Random bytes: every value 0..255 occurs, so any corruption or truncation shows."""
    return secrets.token_bytes(size)


def line_payload(size: int, line_length: int = 4096) -> bytes:
    """Random lowercase-hex lines ending in ``\\n``, exactly ``size`` bytes. For line-based peers
    (``gnutls-serv --echo`` works on C strings, ``openssl s_server -rev`` per line)."""
    assert size % line_length == 0, "size must be a multiple of line_length"
    lines = size // line_length
    body = secrets.token_hex(lines * (line_length - 1) // 2 + 1).encode()
    row = line_length - 1
    return b"".join(body[i * row : (i + 1) * row] + b"\n" for i in range(lines))


def reverse_lines(data: bytes) -> bytes:
    """What ``openssl s_server -rev`` answers: each line reversed, its newline kept."""
    return b"".join(line[::-1] + b"\n" for line in data.split(b"\n")[:-1])


# -- ports ----------------------------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (/proc/net/tcp, state 0A), without connecting:
    for peers that would treat a probe connection as their one client."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":
                    return True
    return False


def wait_bound(port: int, process: PeerProcess, timeout: float = STEP_TIMEOUT) -> None:
    """Wait for a LISTEN socket on ``port`` without connecting to it."""
    deadline = time.monotonic() + timeout
    while not port_listening(port):
        if process.proc.poll() is not None:
            raise AssertionError(f"peer exited before listening:\n{process.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"peer never listened on {port}:\n{process.describe()}")
        time.sleep(0.05)


# -- peer processes -------------------------------------------------------------------------------


class PeerProcess:
    """An external peer: own session (killed as a group), stdout+stderr to ``log``,
    stdin a pipe (for interactive commands) or /dev/null or a file."""

    def __init__(
        self,
        argv: Sequence[str | Path],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        stdin: str = "pipe",  # "pipe" | "null" | a file path
        stdout: Path | None = None,  # separate stdout file (binary data), else the log
        cwd: Path | None = None,  # wolfSSL's examples must run from their source folder
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log = log
        self.stdout_path = stdout
        self._files: list[Any] = []
        if stdin == "pipe":
            stdin_arg: Any = subprocess.PIPE
        elif stdin == "null":
            stdin_arg = subprocess.DEVNULL
        else:
            stdin_arg = open(stdin, "rb")  # noqa: SIM115 - closed in kill()
            self._files.append(stdin_arg)
        log_file = open(log, "wb")  # noqa: SIM115 - closed in kill()
        self._files.append(log_file)
        out_file: Any = log_file
        if stdout is not None:
            out_file = open(stdout, "wb")  # noqa: SIM115 - closed in kill()
            self._files.append(out_file)
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=stdin_arg,
            stdout=out_file,
            stderr=log_file,
            start_new_session=True,
            cwd=cwd,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None, "started without a stdin pipe"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait_for(self, text: str, timeout: float = STEP_TIMEOUT, start: int = 0) -> bool:
        """True once ``text`` is in the log (after character ``start``); False if the process
        ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output()[start:]:
                return True
            if self.proc.poll() is not None:
                return text in self.output()[start:]
            time.sleep(0.02)
        return False

    def wait_stdout_size(self, size: int, timeout: float = STEP_TIMEOUT) -> int:
        """Wait until the separate stdout file holds ``size`` bytes; returns what it holds."""
        assert self.stdout_path is not None
        deadline = time.monotonic() + timeout
        while True:
            have = self.stdout_path.stat().st_size
            if have >= size or time.monotonic() > deadline or self.proc.poll() is not None:
                return self.stdout_path.stat().st_size
            time.sleep(0.02)

    def finish(self, timeout: float = STEP_TIMEOUT) -> int | None:
        """The exit code, or None if the process had to be killed after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        self.close_stdin()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        self._files.clear()

    def describe(self) -> str:
        return f"$ {' '.join(self.argv)}  (exit {self.proc.poll()})\n{self.output()[-6000:]}"


class Processes:
    """Every peer a test starts; all are killed in teardown (the ``processes`` fixture)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._running: list[PeerProcess] = []
        self._count = 0

    def start(
        self,
        argv: Sequence[str | Path],
        *,
        name: str = "peer",
        env: dict[str, str] | None = None,
        stdin: str = "pipe",
        stdout: Path | None = None,
        cwd: Path | None = None,
    ) -> PeerProcess:
        self._count += 1
        log = self.directory / f"{self._count:02d}-{name}.log"
        process = PeerProcess(argv, log, env=env, stdin=stdin, stdout=stdout, cwd=cwd)
        self._running.append(process)
        return process

    def kill_all(self) -> None:
        for process in self._running:
            process.kill()
        self._running.clear()


# -- our side over TCP ----------------------------------------------------------------------------


def client_config(pki: Path, **overrides: Any) -> ClientConfig:
    return ClientConfig(**{"server_name": SERVER_NAME, "cafile": pki / "ca.pem", **overrides})


def server_config(pki: Path, **overrides: Any) -> ServerConfig:
    return ServerConfig(
        **{"certfile": pki / "server.pem", "keyfile": pki / "server.key", **overrides}
    )


def our_client(port: int, config: ClientConfig, timeout: float = STEP_TIMEOUT) -> TLSSocket:
    """Our client, handshake done, against a peer server on ``HOST:port``."""
    return connect(HOST, port, config, timeout=timeout)


def recv_exactly(tls: TLSSocket, size: int) -> bytes:
    """Read ``size`` application bytes (fewer only if the peer closes first)."""
    out = bytearray()
    while len(out) < size:
        data = tls.recv()
        if not data:
            break
        out += data
    return bytes(out)


def exchange(tls: TLSSocket, payload: bytes, expected_size: int, chunk: int = 256 * 1024) -> bytes:
    """Send ``payload`` in chunks while reading the echo, so neither side's buffers fill up and
    deadlock; returns the ``expected_size`` bytes read back."""
    received = bytearray()
    view = memoryview(payload)
    for offset in range(0, len(view), chunk):
        tls.sendall(view[offset : offset + chunk])
        while tls.pending() or _readable(tls):
            data = tls.recv()
            if not data:
                return bytes(received)
            received += data
    while len(received) < expected_size:
        data = tls.recv()
        if not data:
            break
        received += data
    return bytes(received)


def _readable(tls: TLSSocket) -> bool:
    import select

    return bool(select.select([tls.socket], [], [], 0)[0])


Handler = Callable[[TLSSocket], None]


def echo_handler(tls: TLSSocket) -> None:
    """Echo until close_notify, then answer it."""
    while data := tls.recv():
        tls.sendall(data)


@dataclass
class OurServer:
    """Our blocking server in a thread: accepts ONE connection, runs ``handler`` on it.
    ``handshake``/``error``/key-update counters are read by the test after :meth:`join`."""

    config: ServerConfig
    handler: Handler = echo_handler
    timeout: float = STEP_TIMEOUT
    handshake: HandshakeComplete | None = None
    error: BaseException | None = None
    key_updates_sent: int = 0
    key_updates_received: int = 0
    bytes_received: int = 0
    _listener: TLSServerSocket = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        sock = socket.create_server((HOST, 0))
        sock.settimeout(self.timeout)  # accept() gives up if the peer never connects
        self._listener = TLSServerSocket(sock, self.config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._listener.address[1]

    def _run(self) -> None:
        tls: TLSSocket | None = None
        try:
            tls, _ = self._listener.accept(timeout=self.timeout)
            self.handshake = tls.handshake
            self.handler(tls)
        except BaseException as exc:
            self.error = exc
        finally:
            if tls is not None:
                self.key_updates_sent = tls.key_updates_sent
                self.key_updates_received = tls.key_updates_received
                self.bytes_received = tls.connection.bytes_received
                tls.close()
            self._listener.close()

    def join(self, timeout: float = STEP_TIMEOUT) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "our server thread did not finish"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5)


@contextlib.contextmanager
def our_server(config: ServerConfig, handler: Handler = echo_handler) -> Iterator[OurServer]:
    server = OurServer(config, handler)
    try:
        yield server
    finally:
        server.close()


def raise_server_error(server: OurServer, context: str = "") -> None:
    if server.error is not None:
        raise AssertionError(f"our server failed: {server.error!r}\n{context}") from server.error


# -- in-memory OpenSSL peers ----------------------------------------------------------------------


class MemoryPeer:
    """An OpenSSL endpoint driven through memory buffers (Python ``ssl`` or pyOpenSSL)."""

    def incoming(self, data: bytes) -> None:  # bytes from our side
        raise NotImplementedError

    def outgoing(self) -> bytes:  # bytes for our side
        raise NotImplementedError

    def step(self) -> None:
        """Handshake if not done, else read whatever application data is decryptable."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    received: bytearray
    handshake_done: bool


class SSLObjectPeer(MemoryPeer):
    """Python's ``ssl`` (the system OpenSSL 3.0) through ``SSLContext.wrap_bio``."""

    def __init__(self, context: Any, *, server_side: bool, server_hostname: str | None = None):
        import ssl

        self._ssl = ssl
        self.inbio = ssl.MemoryBIO()
        self.outbio = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.inbio, self.outbio, server_side=server_side, server_hostname=server_hostname
        )
        self.received = bytearray()
        self.handshake_done = False
        self.peer_closed = False

    def incoming(self, data: bytes) -> None:
        self.inbio.write(data)

    def outgoing(self) -> bytes:
        out: bytes = self.outbio.read()
        return out

    def step(self) -> None:
        ssl = self._ssl
        if not self.handshake_done:
            try:
                self.obj.do_handshake()
                self.handshake_done = True
            except ssl.SSLWantReadError:
                return
        while not self.peer_closed:
            try:
                data = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                return
            if not data:
                self.peer_closed = True
                return
            self.received += data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.obj.write(view)
            view = view[written:]

    def shutdown(self) -> None:
        with contextlib.suppress(self._ssl.SSLWantReadError):
            self.obj.unwrap()


class PyOpenSSLPeer(MemoryPeer):
    """pyOpenSSL over ``cryptography``'s bundled OpenSSL, with memory BIOs."""

    def __init__(self, context: Any, *, server_side: bool, server_name: bytes | None = None):
        from OpenSSL import SSL

        self._SSL = SSL
        self.conn = SSL.Connection(context, None)
        if server_side:
            self.conn.set_accept_state()
        else:
            if server_name is not None:
                self.conn.set_tlsext_host_name(server_name)
            self.conn.set_connect_state()
        self.received = bytearray()
        self.handshake_done = False
        self.peer_closed = False

    def incoming(self, data: bytes) -> None:
        self.conn.bio_write(data)

    def outgoing(self) -> bytes:
        out = bytearray()
        while True:
            try:
                out += self.conn.bio_read(1 << 20)
            except self._SSL.WantReadError:
                return bytes(out)

    def step(self) -> None:
        SSL = self._SSL
        if not self.handshake_done:
            try:
                self.conn.do_handshake()
                self.handshake_done = True
            except SSL.WantReadError:
                return
        while not self.peer_closed:
            try:
                self.received += self.conn.recv(1 << 20)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.peer_closed = True
                return

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.conn.send(bytes(view[: 1 << 20]))
            view = view[written:]

    def shutdown(self) -> None:
        self.conn.shutdown()


@dataclass
class MemoryLink:
    """Our Sans-IO connection and an in-memory OpenSSL peer, pumped until both are quiet."""

    ours: Any  # TLSClientConnection | TLSServerConnection
    peer: MemoryPeer
    events: list[Event] = field(default_factory=list)

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            to_peer = self.ours.data_to_send()
            if to_peer:
                self.peer.incoming(to_peer)
            self.peer.step()
            to_us = self.peer.outgoing()
            if to_us:
                self.events += self.ours.receive_data(to_us)
            if not to_peer and not to_us:
                return
        raise AssertionError("the in-memory link did not settle")

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def handshake(self) -> HandshakeComplete:
        done = self.of(HandshakeComplete)
        failed = self.of(ConnectionFailed)
        assert len(done) == 1, f"no handshake on our side: {failed or self.events}"
        event: HandshakeComplete = done[0]
        return event

    def received(self) -> bytes:
        """Application data our side received, in order; the events are consumed."""
        data = b"".join(e.data for e in self.of(ApplicationData))
        self.events = [e for e in self.events if not isinstance(e, ApplicationData)]
        return data

    def failures(self) -> list[ConnectionFailed]:
        return self.of(ConnectionFailed)

    def closed(self) -> bool:
        return bool(self.of(ConnectionClosed))

    def key_updates(self, direction: str) -> list[KeyUpdated]:
        return [e for e in self.of(KeyUpdated) if e.direction == direction]


# -- reading a peer's own ServerHello ------------------------------------------------------------

HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


@dataclass(frozen=True)
class ServerHelloFields:
    """What a peer put in a ServerHello or HelloRetryRequest (RFC 8446 §4.1.3, §4.2.8),
    parsed here independently of our own codecs."""

    hello_retry: bool
    cipher_suite: int
    group: int | None  # key_share: SH entry's group, HRR selected_group


def parse_server_hello(message: bytes) -> ServerHelloFields:
    """``message`` is the full handshake message (type 2, uint24 length, body)."""
    assert message[0] == 2, f"not a ServerHello: type {message[0]}"
    body = memoryview(message)[4:]
    random = bytes(body[2:34])
    sid_len = body[34]
    pos = 35 + sid_len
    suite = int.from_bytes(body[pos : pos + 2], "big")
    pos += 3  # cipher_suite, legacy_compression_method
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    group = None
    while pos < end:
        ext_type = int.from_bytes(body[pos : pos + 2], "big")
        ext_len = int.from_bytes(body[pos + 2 : pos + 4], "big")
        if ext_type == 51:  # key_share: the group comes first in both forms
            group = int.from_bytes(body[pos + 4 : pos + 6], "big")
        pos += 4 + ext_len
    return ServerHelloFields(random == HRR_RANDOM, suite, group)


# -- OpenSSL's -trace output ----------------------------------------------------------------------


@dataclass(frozen=True)
class TracedMessage:
    """One handshake message or alert in ``openssl s_server/s_client -trace`` output."""

    direction: str  # "sent" | "received"
    name: str  # "ClientHello", "ServerHello", "KeyUpdate", "Alert", ...
    body: tuple[str, ...]  # the decoded lines under it

    def text(self) -> str:
        return "\n".join(self.body)


def openssl_trace(output: str) -> list[TracedMessage]:
    """Handshake messages and alerts as ``-trace`` decodes them, in order, with direction."""
    import re

    messages: list[TracedMessage] = []
    direction = ""
    name: str | None = None
    body: list[str] = []

    def flush() -> None:
        nonlocal name, body
        if name is not None:
            messages.append(TracedMessage(direction, name, tuple(body)))
        name, body = None, []

    for line in output.splitlines():
        if line in ("Sent Record", "Received Record"):
            flush()
            direction = "sent" if line == "Sent Record" else "received"
            continue
        if not direction:
            continue
        message = re.fullmatch(r"    (\w+), Length=\d+", line)
        if message:
            flush()
            name = message.group(1)
            continue
        if line.startswith("    Level="):
            flush()
            messages.append(TracedMessage(direction, "Alert", (line.strip(),)))
            continue
        if name is not None:
            if line.startswith("      ") or line.startswith("        "):
                body.append(line.strip())
            elif line.strip():
                flush()
    flush()
    return messages


def traced(output: str, direction: str, name: str) -> list[TracedMessage]:
    return [m for m in openssl_trace(output) if m.direction == direction and m.name == name]


def key_update_requests(output: str, direction: str) -> list[int]:
    """request_update of every KeyUpdate the OpenSSL peer sent or received."""
    return [
        1 if "update_requested (1)" in m.text() else 0
        for m in traced(output, direction, "KeyUpdate")
    ]


# -- record sizes on the wire ---------------------------------------------------------------------


class RecordingSocket:
    """Wraps a connected socket and notes (content type, length) of every TLS record written
    and read (RFC 8446 §5.1 headers), so record_size_limit is checked on the wire itself."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._out = bytearray()
        self._in = bytearray()
        self.sent: list[tuple[int, int]] = []
        self.received: list[tuple[int, int]] = []

    def sendall(self, data: bytes) -> None:
        self._parse(self._out, data, self.sent)
        self._sock.sendall(data)

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self._parse(self._in, data, self.received)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    @staticmethod
    def _parse(buf: bytearray, data: bytes, lengths: list[tuple[int, int]]) -> None:
        buf += data
        while len(buf) >= 5:
            length = int.from_bytes(buf[3:5], "big")
            if len(buf) < 5 + length:
                return
            lengths.append((buf[0], length))
            del buf[: 5 + length]

    def protected(self, direction: str) -> list[int]:
        """Lengths of the protected records (outer type application_data) one way."""
        records = self.sent if direction == "sent" else self.received
        return [length for content_type, length in records if content_type == 23]


def our_recording_client(
    port: int, config: ClientConfig, timeout: float = STEP_TIMEOUT
) -> tuple[TLSSocket, RecordingSocket]:
    from protocol.transports.tcp_blocking import wrap_client

    raw = socket.create_connection((HOST, port), timeout=timeout)
    recording = RecordingSocket(raw)
    tls = wrap_client(recording, config)  # type: ignore[arg-type]
    return tls, recording
