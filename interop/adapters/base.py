"""What a cell is, what a peer adapter offers, and how failures are told.

A *cell* is one scenario run against one peer with tls13 in one role ("client": our client
against the peer's server; "server": the peer's client against our server). A scenario is a
:class:`Spec` (which features the cell exercises); an adapter turns it into the peer's own
command line or API calls and says, up front, which cells its peer cannot run
(:meth:`Peer.supports` returns the reason, e.g. "GnuTLS 3.7.9 has no DTLS 1.3").
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from protocol.events import HandshakeComplete

    from .process import PeerProcess, PortPool

Role = Literal["client", "server"]  # the role tls13 plays; the peer plays the other
ROLES: tuple[Role, Role] = ("client", "server")

SERVER_NAME = "localhost"
# The external PSK every peer is given (RFC 8446 §2.2): wolfSSL's examples hard-code it.
PSK_IDENTITY = "Client_identity"
PSK_KEY = bytes.fromhex("0123456789abcdef" * 4)
EARLY_DATA = b"early data from tls13 (0-RTT)\n"
# HelloRetryRequest scenarios: the server takes only this group; clients share x25519 first.
HRR_GROUP = "secp384r1"
# record_size_limit scenarios: messages this large must be split under a 512-byte limit
RSL_PAYLOAD = 4000


class CellFailure(Exception):
    """The cell failed; the message is its first error line, ``log`` the evidence file."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Spec:
    """The features one scenario exercises (see interop/scenarios.py)."""

    dtls: bool = False
    suite: str | None = None  # IANA name both sides must settle on
    group: str | None = None  # IANA name both sides must settle on
    hrr: bool = False  # a HelloRetryRequest must happen (group mismatch)
    cookie: bool = False  # DTLS: the HRR carries a cookie (stateless exchange, RFC 9147 §5.1)
    mtls: bool = False
    alpn: tuple[str, ...] = ()
    key_update: bool = False
    close_notify: bool = False
    record_size_limit: int | None = None
    resumption: bool = False
    psk: bool = False
    early_data: Literal["accept", "reject"] | None = None
    cid: bool = False
    mtu: int | None = None
    lossy: bool = False
    bulk: int = 0  # bytes each way, checked byte for byte

    @property
    def connections(self) -> int:
        return 2 if self.resumption or self.early_data else 1


class Channel(Protocol):
    """Our side of one connection, as a peer adapter's application exchange sees it."""

    dtls: bool

    @property
    def handshake(self) -> HandshakeComplete: ...

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes:
        """Some bytes (TLS) or one message (DTLS); b"" once the peer closed; CellFailure when
        nothing comes within ``timeout``."""
        ...

    def key_update(self, request: bool = True) -> None: ...

    def pump(self, seconds: float) -> None:
        """Process what arrives for ``seconds`` (DTLS: timers, retransmissions, ACKs)."""
        ...


@dataclass
class Cell:
    """Everything one running cell has: its folder, certificates, ports and processes."""

    scenario: str
    peer: str
    role: Role
    workdir: Path
    pki: Path
    shared: Path  # prepared once per run (NSS database, PKCS#12 files)
    ports: PortPool
    timeout: float = 10.0  # any one step
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    processes: list[PeerProcess] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def trace_path(self) -> Path:
        return self.workdir / "trace.jsonl"

    def start(self, argv: Sequence[str | Path], name: str, **options: object) -> PeerProcess:
        from .process import PeerProcess

        log = self.workdir / f"{len(self.processes) + 1:02d}-{name}.log"
        process = PeerProcess(argv, log, **options)  # type: ignore[arg-type]
        self.processes.append(process)
        # The runner kills these (each in a session of its own) if the cell overruns.
        with (self.workdir / "pids").open("a") as pids:
            pids.write(f"{process.proc.pid}\n")
        return process

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # cleanup must not hide the cell's own result
                self.note(f"cleanup: {exc!r}")
        for process in self.processes:
            process.kill()


def random_tag(size: int = 0) -> str:
    """A random marker, padded with letters to ``size`` characters when larger."""
    tag = secrets.token_hex(6)
    return tag + "-" + "r" * (size - len(tag) - 1) if size > len(tag) + 1 else tag


class App(ABC):
    """What a peer's server does with our application data; ``exchange`` sends one request
    over our channel and checks the answer byte for byte (or its fixed prefix)."""

    rounds: int | None = None  # request/answer rounds per connection; None: any number

    @abstractmethod
    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        """One request and its answer; ``size`` > 0 asks for a request of about that many
        bytes (record_size_limit scenarios), where the peer's application allows it."""
        ...


def read_until(channel: Channel, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read from ``channel`` until ``done(received)``; CellFailure on close or timeout."""
    got = bytearray()
    while not done(bytes(got)):
        data = channel.recv(timeout)
        if not data:
            raise CellFailure(f"peer closed after {len(got)} bytes: {bytes(got[:60])!r}")
        got += data
    return bytes(got)


class EchoApp(App):
    """The peer sends back what it receives."""

    def __init__(self, *, line: bool = False, rounds: int | None = None) -> None:
        self.line = line
        self.rounds = rounds

    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        request = f"tls13-{random_tag(size)}\n".encode()
        channel.send(request)
        got = read_until(channel, lambda b: len(b) >= len(request), timeout)
        if got != request:
            raise CellFailure(f"echo mismatch: sent {request!r}, got {got[:80]!r}")


class ReverseApp(App):
    """``openssl s_server -rev``: each line comes back reversed."""

    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        request = f"tls13-{random_tag(size)}\n".encode()
        channel.send(request)
        expected = request[:-1][::-1] + b"\n"
        got = read_until(channel, lambda b: len(b) >= len(expected), timeout)
        if got != expected:
            raise CellFailure(f"-rev mismatch: expected {expected!r}, got {got[:80]!r}")


class FixedApp(App):
    """The peer answers any request with a known text (wolfSSL's example server, an HTTP
    page); the answer must start with ``prefix`` and, if ``terminator``, end with it."""

    def __init__(
        self,
        request: bytes,
        prefix: bytes,
        *,
        terminator: bytes | None = None,
        until_close: bool = False,
        rounds: int | None = 1,
    ) -> None:
        self.request = request
        self.prefix = prefix
        self.terminator = terminator
        self.until_close = until_close
        self.rounds = rounds

    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        channel.send(self.request)
        if self.until_close:
            got = bytearray()
            while data := channel.recv(timeout):
                got += data
        else:
            term = self.terminator

            def done(b: bytes) -> bool:
                if term is not None:
                    return b.startswith(self.prefix) and b.endswith(term)
                return len(b) >= len(self.prefix)

            got = bytearray(read_until(channel, done, timeout))
        if not got.startswith(self.prefix):
            raise CellFailure(f"unexpected answer {bytes(got[:80])!r}, wanted {self.prefix!r}")


class StdioApp(App):
    """The peer prints what it receives and sends what it reads on stdin (``s_server``
    without -www/-rev, ``tstclnt -P server``): both directions are checked."""

    def __init__(self, process: PeerProcess) -> None:
        self.process = process

    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        tag = random_tag(size)
        start = len(self.process.output())
        channel.send(f"ours-{tag}\n".encode())
        if not wait_printed(self.process, channel, f"ours-{tag}", timeout, start):
            raise CellFailure(
                f"{self.process.name} never printed our data: {self.process.error_line()}",
                self.process.log,
            )
        answer = f"peer-{tag}\n".encode()
        self.process.send(answer)
        got = read_until(channel, lambda b: len(b) >= len(answer), timeout)
        if got != answer:
            raise CellFailure(f"stdin relay mismatch: expected {answer!r}, got {got[:80]!r}")


def wait_printed(
    process: PeerProcess, channel: Channel, text: str, timeout: float, start: int = 0
) -> bool:
    """Wait for the peer to print ``text`` while our side keeps running (a DTLS connection
    must go on retransmitting and acknowledging while we watch the peer's output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.wait_for(text, 0.0, start=start):
            return True
        if not process.alive():
            return False
        channel.pump(0.05)
    return process.wait_for(text, 0.0, start=start)


class PeerServer:
    """A peer acting as server for one cell (started by :meth:`Peer.server`)."""

    def __init__(self, port: int, app: App, process: PeerProcess | None = None) -> None:
        self.port = port
        self.app = app
        self.process = process
        # Bulk transfers: "echo" (binary echo), "lines" (echo of text lines), "reverse"
        # (s_server -rev), or None when the peer's server cannot do one.
        self.bulk_mode: str | None = None
        # 0-RTT reject: True if the adapter rejects by restarting its server (new ticket
        # keys: a full handshake), False if its server resumes and declines early data.
        self.reject_by_restart = False
        # Seconds to wait after the server started before sending 0-RTT (NSS's anti-replay
        # rejects all early data during its first window).
        self.early_data_delay = 0.0
        self.started = time.monotonic()

    def peer_key_update(self) -> bool:
        """Make the peer send its own KeyUpdate(update_requested); False if it cannot."""
        return False

    def restart(self) -> None:
        """A fresh server process (new ticket keys): 0-RTT reject by a server that cannot
        read the ticket. Adapters whose servers can do it override this."""
        raise CellFailure("this peer's server cannot be restarted for a second connection")

    def finish(self, timeout: float) -> str:
        """After our side is done: the peer's verdict; CellFailure if it reported failure."""
        return ""

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()


class PeerClient:
    """A peer acting as client for one cell (started by :meth:`Peer.client`)."""

    def __init__(self, process: PeerProcess | None = None) -> None:
        self.process = process

    def finish(self, timeout: float) -> str:
        """Wait for the peer's side of the scenario; CellFailure if it failed."""
        return ""

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()


class Peer(ABC):
    """One peer implementation; subclasses in interop/adapters/."""

    name = "peer"
    label = "peer"
    tls = True
    dtls = False
    # Largest bulk transfer the peer finishes in reasonable time (None: the scenario's size).
    bulk_limit: int | None = None
    # Our echo server answers 0-RTT data too (for clients whose request is the early data).
    echo_early_data = False

    def __init__(self, version: str, missing: str | None = None) -> None:
        self.version = version
        self.missing = missing  # why the peer cannot run at all (not installed), or None

    def prepare(self, shared: Path, pki: Path) -> None:  # noqa: B027 (optional hook)
        """Once per run, before any cell: databases, converted keys (most peers need none)."""

    def supports(self, spec: Spec, role: Role) -> str | None:
        """None if the cell can run, else why not (shown as the n/a reason)."""
        if spec.dtls and not self.dtls:
            return f"{self.label} has no DTLS 1.3"
        if not spec.dtls and not self.tls:
            return f"{self.label} has no TLS 1.3"
        return None

    @abstractmethod
    def server(self, cell: Cell, spec: Spec) -> PeerServer: ...

    @abstractmethod
    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient: ...

    def client_connections(self, spec: Spec) -> int:
        """Connections the peer's client makes for ``spec`` (our server expects them)."""
        return spec.connections

    def echo_limit(self, spec: Spec) -> int | None:
        """Bytes after which our echo server closes (for clients that wait for the server
        to close); None: echo until the peer closes."""
        return None

    # Adapters adjust our side where the peer needs it (e.g. a PSK identity).
    def our_client_options(self, spec: Spec) -> dict[str, object]:
        return {}

    def our_server_options(self, spec: Spec) -> dict[str, object]:
        return {}


PeerFactory = Callable[[], Peer]
