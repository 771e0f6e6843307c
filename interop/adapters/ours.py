"""tls13's side of a cell: our Sans-IO connections driven over real sockets.

TLS: :class:`OurTLS` drives a ``TLSClientConnection``/``TLSServerConnection`` over a TCP socket
with select(), so sending never deadlocks against a peer that echoes (reads are taken while
the send buffer is full) and every event is kept (tickets, early data, KeyUpdates, the peer's
close_notify). :class:`OurTLSServer` serves a fixed number of connections in a thread.
DTLS: :class:`OurDTLS` wraps the blocking ``DTLSSocket``; :class:`OurDTLSServer` runs the
``DTLSServerLoop`` in a thread and records every association.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handshake.psk import ExternalPsk, Session
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSClientConnection
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
from protocol.errors import ConnectionStateError, ProtocolError
from protocol.events import (
    ApplicationData,
    ConnectionClosed,
    ConnectionFailed,
    EarlyDataReceived,
    Event,
    HandshakeComplete,
    KeyUpdated,
    SessionTicketReceived,
)
from protocol.sessions import InMemorySessionStore
from protocol.trace import JsonLinesTrace
from protocol.transports.udp_blocking import DTLSHandler, DTLSServerLoop, DTLSSession, DTLSSocket

from .base import HRR_GROUP, PSK_IDENTITY, PSK_KEY, SERVER_NAME, Cell, CellFailure, Spec
from .process import HOST

RECV_SIZE = 256 * 1024


def describe_failure(error: BaseException | None, fallback: str = "connection failed") -> str:
    """One line: who sent which alert and why."""
    if isinstance(error, ProtocolError):
        if error.alert is None:
            return f"ours: {error.reason}"
        who = "peer sent" if error.by_peer else "we sent"
        return f"{who} {error.alert.name}: {error.reason}"
    if error is None:
        return fallback
    return f"{type(error).__name__}: {error}"


def trace_hook(cell: Cell) -> JsonLinesTrace:
    hook = JsonLinesTrace(cell.trace_path)
    cell.cleanups.append(hook.close)
    return hook


def external_psk(identity: str = PSK_IDENTITY, hash_name: str = "sha256") -> ExternalPsk:
    return ExternalPsk(identity=identity.encode(), key=PSK_KEY, hash_name=hash_name)


def client_config(cell: Cell, spec: Spec, **options: Any) -> ClientConfig:
    """Our client for ``spec``: verifies the peer against the cell's CA; ``options`` (from the
    scenario and the adapter) override."""
    settings: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "cafile": cell.pki / "ca.pem",
        "trace": trace_hook(cell),
        "retransmit_initial": 0.25,  # short DTLS timers: a lost flight costs little time
        "max_retransmits": 8,
    }
    if spec.suite:
        settings["cipher_suites"] = (spec.suite,)
    if spec.group:
        settings["groups"] = (spec.group,)
    if spec.mtls:
        settings["certfile"] = cell.pki / "client.pem"
        settings["keyfile"] = cell.pki / "client.key"
    if spec.alpn:
        settings["alpn"] = spec.alpn
    if spec.record_size_limit:
        settings["record_size_limit"] = spec.record_size_limit
    if spec.psk:
        settings["external_psk"] = external_psk()
    if spec.resumption or spec.early_data:
        settings["session_store"] = InMemorySessionStore()
    if spec.cid:
        settings["cid_length"] = 8
    if spec.mtu:
        settings["mtu"] = spec.mtu
    settings.update(options)
    return ClientConfig(**settings)


def server_config(cell: Cell, spec: Spec, **options: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "certfile": cell.pki / "server.pem",
        "keyfile": cell.pki / "server.key",
        "trace": trace_hook(cell),
        "retransmit_initial": 0.25,
        "max_retransmits": 8,
        # All five suites: the CCM ones are opt-in by default (DESIGN.md).
        "cipher_suites": (spec.suite,)
        if spec.suite
        else (
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_CCM_SHA256",
            "TLS_AES_128_CCM_8_SHA256",
        ),
    }
    if spec.group:
        settings["groups"] = (spec.group,)
    elif spec.hrr:
        settings["groups"] = (HRR_GROUP,)  # peers' clients share x25519 first: HRR
    if spec.mtls:
        settings["cafile"] = cell.pki / "ca.pem"
        settings["verify_client"] = True
    if spec.alpn:
        settings["alpn"] = spec.alpn
    if spec.record_size_limit:
        settings["record_size_limit"] = spec.record_size_limit
    if spec.psk:
        psks = {PSK_IDENTITY: external_psk()}
        settings["external_psks"] = psks
    if spec.early_data:
        settings["max_early_data"] = 16384
    if spec.cid:
        settings["cid_length"] = 8
    if spec.mtu:
        settings["mtu"] = spec.mtu
        # small shares: our first preference, X25519MLKEM768, makes a 1.2 KB ClientHello
        # that some clients cannot fragment (wolfSSL at MTU 300 answers our HRR without it)
        settings.setdefault("groups", ("x25519", "secp256r1"))
    settings.update(options)
    return ServerConfig(**settings)


# -- TLS -------------------------------------------------------------------------------------------


class OurTLS:
    """One TLS connection of ours over a TCP socket (client or server side)."""

    dtls = False

    def __init__(self, sock: socket.socket, conn: TLSConnection, timeout: float) -> None:
        self.sock = sock
        self.conn = conn
        self.timeout = timeout
        sock.setblocking(False)
        self.events: list[Event] = []
        self._inbuf = bytearray()
        self._out = bytearray()
        self.early_data = bytearray()
        self.sessions: list[Session] = []
        self._handshake: HandshakeComplete | None = None
        self.peer_closed = False  # the peer's close_notify came
        self.eof = False  # TCP closed by the peer
        self.key_updates_sent = 0
        self.key_updates_received = 0
        self.records_received: list[tuple[str, int]] = []

    # -- properties ----------------------------------------------------------------------------

    @property
    def handshake(self) -> HandshakeComplete:
        if self._handshake is None:
            raise CellFailure("no handshake")
        return self._handshake

    @property
    def established(self) -> bool:
        return self._handshake is not None

    @property
    def can_send(self) -> bool:
        return self.conn.state == "connected"

    # -- driving -------------------------------------------------------------------------------

    def _queue(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self._out += out

    def _step(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the socket; read and/or write what is possible. Returns
        False when nothing happened in time."""
        self._queue()
        if self.eof and not self._out:
            return False
        want_write = [self.sock] if self._out else []
        readable, writable, _ = select.select([self.sock], want_write, [], max(timeout, 0.0))
        if not readable and not writable:
            return False
        if writable and self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # The peer is gone (EPIPE, reset): what is queued can never leave, and a
                # socket that stays writable must not keep a wait loop spinning.
                self._out.clear()
                self.eof = True
                return True
            del self._out[:sent]
        if readable:
            try:
                data = self.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return True
            self._handle(self.conn.receive_data(data))
            self._queue()
        return True

    def _handle(self, events: list[Event]) -> None:
        self.events += events
        for event in events:
            if isinstance(event, ApplicationData):
                self._inbuf += event.data
            elif isinstance(event, HandshakeComplete):
                self._handshake = event
            elif isinstance(event, EarlyDataReceived):
                self.early_data += event.data
            elif isinstance(event, SessionTicketReceived):
                self.sessions.append(event.session)
            elif isinstance(event, KeyUpdated):
                if event.direction == "receive":
                    self.key_updates_received += 1
                    if event.update_requested:
                        self.key_updates_sent += 1  # answered by the connection (§4.6.3)
            elif isinstance(event, ConnectionClosed):
                self.peer_closed = True
        for event in events:
            if isinstance(event, ConnectionFailed):
                with contextlib.suppress(OSError):
                    self.flush(1.0)
                raise CellFailure(describe_failure(self.conn.error, event.reason))

    def flush(self, timeout: float | None = None) -> None:
        """Everything queued reaches the socket (reading meanwhile, so an echoing peer never
        blocks us)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._queue()
        while self._out:
            self._step(deadline - time.monotonic())
            if self._out and time.monotonic() > deadline:
                raise CellFailure(f"could not send {len(self._out)} bytes: the peer reads nothing")

    def do_handshake(self) -> HandshakeComplete:
        deadline = time.monotonic() + self.timeout
        if isinstance(self.conn, TLSClientConnection):
            self.conn.start()
        while self._handshake is None:
            if self.eof:
                raise CellFailure("peer closed TCP during the handshake")
            self._step(deadline - time.monotonic())
            if self._handshake is None and time.monotonic() > deadline:
                raise CellFailure(f"handshake did not complete within {self.timeout:g} s")
        self.flush()
        return self._handshake

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), 64 * 1024):
            try:
                self.conn.send_data(bytes(view[start : start + 64 * 1024]))
            except ConnectionStateError as exc:
                raise CellFailure(f"cannot send: {exc}") from exc
            self.flush()

    def recv(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not self._inbuf:
            if self.peer_closed or self.eof:
                return b""
            self._step(deadline - time.monotonic())
            if not self._inbuf and time.monotonic() > deadline:
                raise CellFailure(f"no data from the peer within {timeout:g} s")
        data = bytes(self._inbuf)
        self._inbuf.clear()
        return data

    def pump(self, seconds: float) -> None:
        """Process whatever arrives for ``seconds`` (tickets, KeyUpdates, close_notify)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.eof:
            self._step(deadline - time.monotonic())

    def wait_ticket(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.sessions and not self.eof and not self.peer_closed:
            self._step(deadline - time.monotonic())
            if time.monotonic() > deadline:
                break
        return bool(self.sessions)

    def key_update(self, request: bool = True) -> None:
        try:
            self.conn.key_update(request)
        except ConnectionStateError as exc:
            raise CellFailure(f"cannot send KeyUpdate: {exc}") from exc
        self.key_updates_sent += 1
        self.flush()

    def close(self) -> None:
        """Our close_notify (RFC 8446 §6.1)."""
        if self.conn.state in ("connected", "handshaking"):
            self.conn.close()
        with contextlib.suppress(OSError, CellFailure):
            self.flush(2.0)

    def wait_peer_close(self, timeout: float) -> bool:
        """True once the peer's close_notify came (False: TCP closed without it, or nothing)."""
        deadline = time.monotonic() + timeout
        while not self.peer_closed and not self.eof:
            self._step(deadline - time.monotonic())
            if time.monotonic() > deadline:
                break
        return self.peer_closed

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def tls_client(
    cell: Cell,
    port: int,
    config: ClientConfig,
    *,
    session: Session | None = None,
    early_data: bytes | None = None,
    host: str = HOST,
    server_name: str = SERVER_NAME,
) -> OurTLS:
    """Our client connected to host:port, handshake done (early data sent with the first
    flight when given)."""
    try:
        sock = socket.create_connection((host, port), timeout=cell.timeout)
    except OSError as exc:
        raise CellFailure(f"cannot connect to {host}:{port}: {exc}") from exc
    cell.cleanups.append(sock.close)
    conn = TLSClientConnection(config, server_name=server_name, session=session, port=port)
    chan = OurTLS(sock, conn, cell.timeout)
    if early_data is not None:
        try:
            conn.send_early_data(early_data)
        except ConnectionStateError as exc:
            raise CellFailure(f"cannot send early data: {exc}") from exc
    chan.do_handshake()
    return chan


@dataclass
class Served:
    """One connection our server handled."""

    handshake: HandshakeComplete | None = None
    error: str | None = None
    early_data: bytes = b""
    received: int = 0
    key_updates_sent: int = 0
    key_updates_received: int = 0
    peer_closed: bool = False
    eof: bool = False
    records: list[int] = field(default_factory=list)
    key_updates_deferred: bool = False
    cids: tuple[bytes | None, bytes | None] = (None, None)  # DTLS: (peer's, ours)


Handler = Callable[[Any, Served], None]


def echo(
    chan: Any,
    served: Served,
    *,
    key_update: bool = False,
    timeout: float = 10.0,
    limit: int | None = None,
    echo_early_data: bool = False,
) -> None:
    """Echo until the peer closes (or, with ``limit``, until that many bytes were echoed: then
    we close, for peers that wait for the server to end a bulk transfer); with ``key_update``
    our KeyUpdate(update_requested) goes out before the first echo, so the peer must take new
    keys and answer (RFC 8446 §4.6.3)."""
    first = True
    if echo_early_data and chan.early_data and chan.can_send:
        # 0-RTT data as the first request (tstclnt sends its request file as early data)
        served.received += len(chan.early_data)
        chan.send(bytes(chan.early_data))
    while limit is None or served.received < limit:
        try:
            data = chan.recv(timeout)
        except CellFailure:
            return  # the peer went quiet: its own verdict tells whether that was wrong
        if not data:
            return
        served.received += len(data)
        if not chan.can_send:
            return  # the peer's close_notify came with its data (we answered it already)
        if first and key_update:
            chan.key_update(True)
        first = False
        chan.send(data)


class OurTLSServer:
    """Our TLS server in a thread: serves ``len(configs)`` connections, one after the other,
    the i-th with ``configs[i]``."""

    def __init__(
        self, cell: Cell, configs: list[ServerConfig], handler: Handler, port: int | None = None
    ) -> None:
        self.cell = cell
        self.configs = configs
        self.handler = handler
        self.port = port if port is not None else cell.ports.take()
        self.listener = socket.create_server((HOST, self.port))
        self.listener.settimeout(cell.timeout * 2)
        self.served: list[Served] = []
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        cell.cleanups.append(self.close)

    def _run(self) -> None:
        try:
            for config in self.configs:
                sock, _ = self.listener.accept()
                served = Served()
                self.served.append(served)
                self._serve(sock, config, served)
        except TimeoutError:
            self.failure = f"the peer never connected (connection {len(self.served) + 1})"
        except Exception as exc:
            self.failure = describe_failure(exc)

    def _serve(self, sock: socket.socket, config: ServerConfig, served: Served) -> None:
        chan = OurTLS(sock, TLSServerConnection(config), self.cell.timeout)
        try:
            served.handshake = chan.do_handshake()
            served.early_data = bytes(chan.early_data)
            self.handler(chan, served)
            served.early_data = bytes(chan.early_data)
            chan.close()
            chan.wait_peer_close(0.5)
        except CellFailure as exc:
            served.error = str(exc)
        except OSError as exc:
            served.error = f"socket: {exc}"
        finally:
            served.key_updates_sent = chan.key_updates_sent
            served.key_updates_received = chan.key_updates_received
            served.peer_closed = chan.peer_closed
            served.eof = chan.eof
            served.early_data = served.early_data or bytes(chan.early_data)
            chan.shutdown()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise CellFailure("our server did not finish: the peer kept the connection open")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()


# -- DTLS ------------------------------------------------------------------------------------------


class OurDTLS:
    """Our DTLS client association (the blocking DTLSSocket) as a Channel."""

    dtls = True

    def __init__(self, dsock: DTLSSocket) -> None:
        self.dsock = dsock

    @property
    def handshake(self) -> HandshakeComplete:
        hs = self.dsock.handshake
        if hs is None:
            raise CellFailure("no handshake")
        return hs

    @property
    def connection(self) -> DTLSClientConnection:
        return self.dsock.connection

    def send(self, data: bytes) -> None:
        try:
            self.dsock.send(data)
        except ProtocolError as exc:
            raise CellFailure(describe_failure(exc)) from exc

    def recv(self, timeout: float) -> bytes:
        self.dsock.settimeout(timeout)
        try:
            return self.dsock.recv()
        except TimeoutError as exc:
            raise CellFailure(f"no DTLS message from the peer within {timeout:g} s") from exc
        except ProtocolError as exc:
            raise CellFailure(describe_failure(exc)) from exc

    def key_update(self, request: bool = True) -> None:
        try:
            self.dsock.key_update(request)
        except (ProtocolError, ConnectionStateError) as exc:
            raise CellFailure(f"KeyUpdate: {describe_failure(exc)}") from exc

    @property
    def key_updates_received(self) -> int:
        return self.dsock.key_updates_received

    @property
    def peer_closed(self) -> bool:
        return self.dsock.peer_closed

    def pump(self, seconds: float) -> None:
        with contextlib.suppress(ProtocolError):
            self.dsock.process(seconds)

    def close(self) -> None:
        with contextlib.suppress(OSError, ProtocolError):
            self.dsock.close()


def dtls_client(
    cell: Cell,
    port: int,
    config: ClientConfig,
    *,
    session: Session | None = None,
    early_data: bytes | None = None,
    timeout: float | None = None,
    host: str = HOST,
    server_name: str = SERVER_NAME,
) -> OurDTLS:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    cell.cleanups.append(sock.close)
    sock.connect(address)
    conn = DTLSClientConnection(config, server_name=server_name, session=session, port=port)
    dsock = DTLSSocket(sock, conn)
    chan = OurDTLS(dsock)
    cell.cleanups.append(chan.close)
    if early_data is not None:
        try:
            conn.send_early_data(early_data, time.time())
        except ConnectionStateError as exc:
            raise CellFailure(f"cannot send early data: {exc}") from exc
    limit = cell.timeout if timeout is None else timeout
    dsock.settimeout(limit)
    try:
        dsock.do_handshake(limit)
    except ProtocolError as exc:
        raise CellFailure(describe_failure(exc)) from exc
    return chan


class _Recorder(DTLSHandler):
    def __init__(self, server: OurDTLSServer) -> None:
        self.server = server

    def handshake_complete(self, session: DTLSSession) -> None:
        conn = session.connection
        served = Served(handshake=session.handshake, cids=(conn.cid_sent, conn.cid_received))
        session.data["served"] = served
        self.server.served.append(served)

    def data_received(self, session: DTLSSession, data: bytes) -> None:
        served: Served = session.data["served"]
        first = served.received == 0
        served.received += len(data)
        if not session.open:
            return
        if first and self.server.key_update:
            try:
                session.key_update(True)
            except ConnectionStateError:
                # RFC 9147 §8: one KeyUpdate at a time; the peer's own update_requested is
                # being answered: that answer is the update the scenario wants.
                served.key_updates_deferred = True
        session.send(data)
        limit = self.server.limit
        if limit is not None and served.received >= limit:
            session.close()  # for clients that move on only once the server closes

    def session_ended(self, session: DTLSSession, error: BaseException | None) -> None:
        served = session.data.get("served")
        if served is None:
            served = Served()
            self.server.served.append(served)
        served.error = None if error is None else describe_failure(error)
        served.peer_closed = session.peer_closed
        served.key_updates_sent = session.key_updates_sent
        served.key_updates_received = session.key_updates_received
        self.server.ended += 1


class OurDTLSServer:
    """Our DTLS server (echo) in a thread until ``associations`` have ended or close()."""

    def __init__(
        self,
        cell: Cell,
        config: ServerConfig,
        *,
        associations: int = 1,
        key_update: bool = False,
        port: int | None = None,
        limit: int | None = None,
    ) -> None:
        self.cell = cell
        self.limit = limit
        self.port = port if port is not None else cell.ports.take()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, self.port))
        self.key_update = key_update
        self.associations = associations
        self.served: list[Served] = []
        self.ended = 0
        self.failure: str | None = None
        self.loop = DTLSServerLoop(self.sock, config, _Recorder(self), idle_timeout=30.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        cell.cleanups.append(self.close)

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.ended < self.associations:
                self.loop.step(0.05)
        except Exception as exc:
            self.failure = describe_failure(exc)

    def wait(self, timeout: float) -> bool:
        """True once every expected association has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for session in self.loop.sessions:
            conn = session.connection
            if conn.state == "handshaking" and self.failure is None:
                # Our account of an association that never completed (for the cell detail).
                self.failure = (
                    f"our association is still handshaking after {conn.retransmissions} "
                    f"retransmissions ({conn.datagrams_received} datagrams in"
                    + ("" if conn.address_validated else ", address not validated")
                    + ")"
                )
        with contextlib.suppress(OSError):
            self.loop.close_all()
        with contextlib.suppress(OSError):
            self.sock.close()
