"""DTLS 1.3 over blocking UDP sockets: a client socket and a one-socket server loop.

Both drive the Sans-IO connections the same way: after every input (a datagram, a timer
that fired, an API call) whatever ``datagrams_to_send`` returns goes out at once, and every
wait on the socket is bounded by ``next_timer()`` so retransmissions (RFC 9147 §5.8) and
ACKs (§7) happen on time. The connections' clock is ``time.time()``: it also validates
certificates; user deadlines (``timeout``) are measured with ``time.monotonic()``.

Application data is a sequence of messages: each ``recv()`` returns one record's payload.
DTLS does not retransmit application data (RFC 9147 §5: only the handshake is reliable), so a
sender that outruns its peer loses messages; ``recv`` never returns duplicates.

    with connect("127.0.0.1", 4433, ClientConfig(cafile="ca.pem"), timeout=10) as dtls:
        dtls.send(b"ping")
        print(dtls.recv())
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from handshake.psk import Session
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSClientConnection, DTLSConnection, DTLSServerConnection
from protocol.connection.dtls_server import DTLSServer
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

# The largest UDP payload: a datagram is read whole or not at all.
RECV_SIZE = 65535
# Asked for (best effort, the kernel caps it) so bursts of records are not dropped locally.
SOCKET_BUFFER_SIZE = 1 << 20
# A blocked send (full socket buffer) waits at most this long before it is an error.
SEND_TIMEOUT = 5.0
# serve_dtls looks at its ``stop`` event (and at idle associations) at least this often.
POLL_INTERVAL = 0.25
# An association that receives nothing for this long is closed (close_notify) and dropped:
# UDP never tells a server that its client went away.
DEFAULT_IDLE_TIMEOUT = 120.0

# Connection states in which timers still matter.
_LIVE = ("handshaking", "connected")

Address = Any  # what the socket module uses: (host, port) or (host, port, flow, scope)


class DTLSTimeoutError(ProtocolError):
    """The peer stopped answering: a flight was not acknowledged within the retransmission
    budget (``max_retransmits``) or the caller's deadline. No alert was exchanged.

    Deliberately not a ``TimeoutError``: ``recv()`` raises that for an idle timeout, after
    which the association is still usable; this one is the end of the association.
    """

    def __init__(self, reason: str, *, retransmissions: int) -> None:
        super().__init__(None, reason)
        self.retransmissions = retransmissions


class PathMTUError(OSError):
    """The network refused a datagram as too large for the path (EMSGSIZE, e.g. after an
    ICMP "fragmentation needed"). RFC 9147 §4.4: the record layer MUST tell the upper layer.
    The association is intact and the datagram counts as lost; a smaller ``mtu`` (a new
    association) avoids it."""

    def __init__(self, size: int, mtu: int) -> None:
        super().__init__(
            errno.EMSGSIZE,
            f"a {size}-byte datagram exceeds the path MTU (configured mtu {mtu}): "
            "use a smaller mtu",
        )
        self.size = size


def handshake_timeout_error(connection: DTLSConnection) -> DTLSTimeoutError:
    count = connection.retransmissions
    plural = "" if count == 1 else "s"
    return DTLSTimeoutError(
        f"DTLS handshake timed out after {count} retransmission{plural}",
        retransmissions=count,
    )


def failure_error(connection: DTLSConnection, event: ConnectionFailed) -> ProtocolError:
    """The exception that reports a ``ConnectionFailed`` event to the application."""
    if event.alert is None and not event.by_peer:
        # RFC 9147 §5.8: the retransmission budget ran out.
        if not connection.handshake_complete:
            return handshake_timeout_error(connection)
        return DTLSTimeoutError(
            f"DTLS peer stopped answering: {event.reason}",
            retransmissions=connection.retransmissions,
        )
    return connection.error or ProtocolError(event.alert, event.reason, by_peer=event.by_peer)


def enlarge_buffers(sock: socket.socket) -> None:
    """Best effort: larger socket buffers absorb bursts of datagrams (a 16 KiB write is a
    dozen records at the default MTU)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER_SIZE:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_SIZE)


def answers_key_update(connection: DTLSConnection | None) -> bool:
    """Whether a peer's KeyUpdate with update_requested, arriving now, is answered with a
    KeyUpdate of ours (RFC 8446 §4.6.3): not while our own awaits its ACK (RFC 9147 §8)."""
    return connection is None or not connection.key_update_pending


class _Counters:
    """KeyUpdate bookkeeping shared by the client socket and server sessions."""

    key_updates_sent: int
    key_updates_received: int

    def _count_key_update(self, event: KeyUpdated, answering: bool) -> None:
        # "send" events come from our own key_update() calls, which count themselves.
        if event.direction == "receive":
            self.key_updates_received += 1
            if event.update_requested and answering:
                self.key_updates_sent += 1


# -- client ---------------------------------------------------------------------------------------


class DTLSSocket(_Counters):
    """A connected UDP socket carrying one DTLS 1.3 client connection."""

    def __init__(self, sock: socket.socket, connection: DTLSClientConnection) -> None:
        self._sock = sock
        self._conn = connection
        self._peer: Address = sock.getpeername()
        self._messages: collections.deque[bytes] = collections.deque()
        self._handshake: HandshakeComplete | None = None
        self._error: ProtocolError | None = None
        self._eof = False  # close_notify received
        self._closed = False
        self._timeout: float | None = None
        self.key_updates_sent = 0
        self.key_updates_received = 0
        self.sessions: list[Session] = []  # the server's tickets, as sessions to resume with
        # ICMP port unreachable reports (ECONNREFUSED): a hint only, as RFC 9147 §4.5.2
        # treats the network as unreliable; the retransmission budget decides.
        self.icmp_errors = 0
        self._path_mtu_error: PathMTUError | None = None  # RFC 9147 §4.4, reported once
        enlarge_buffers(sock)

    # -- properties ---------------------------------------------------------------------------

    @property
    def connection(self) -> DTLSClientConnection:
        """The Sans-IO connection (parameters, retransmissions, datagram counters, CIDs)."""
        return self._conn

    @property
    def handshake(self) -> HandshakeComplete | None:
        return self._handshake

    @property
    def socket(self) -> socket.socket:
        """The current UDP socket (a new one after ``rebind``)."""
        return self._sock

    @property
    def peer_address(self) -> Address:
        return self._peer

    @property
    def peer_closed(self) -> bool:
        """True once the peer's close_notify arrived."""
        return self._eof

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        """How long ``recv`` waits for a message before raising ``TimeoutError``."""
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def pending(self) -> int:
        """Messages received and waiting for ``recv``."""
        return len(self._messages)

    # -- handshake ----------------------------------------------------------------------------

    def do_handshake(self, timeout: float | None = None) -> HandshakeComplete:
        """Run the handshake; ``ProtocolError`` on failure, ``DTLSTimeoutError`` when the
        retransmission budget or ``timeout`` (seconds) runs out first."""
        self._conn.start(time.time())
        self._flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._handshake is None:
            self._raise_if_failed()
            if self._eof or self._conn.state == "closed":
                raise ProtocolError(None, "peer closed the association during the handshake")
            if not self._step(deadline):
                self._raise_if_failed()
                raise handshake_timeout_error(self._conn)
        return self._handshake

    # -- data ---------------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Protect ``data`` (one record per datagram-sized piece) and send it at once."""
        self._ensure_handshake()
        self._raise_if_failed()
        self._conn.send_data(bytes(data))
        self._flush()
        self._raise_path_mtu_error()
        return len(data)

    sendall = send

    def recv(self) -> bytes:
        """The next application message; b"" once the peer sent close_notify. Raises
        ``TimeoutError`` after ``settimeout`` seconds without one (the association lives on)."""
        self._ensure_handshake()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while not self._messages and not self._eof:
            self._raise_if_failed()
            if not self._step(deadline):
                raise TimeoutError("no DTLS message within the timeout")
        if self._messages:
            return self._messages.popleft()
        return b""

    def process(self, timeout: float = 0.0) -> int:
        """Handle what arrives (datagrams, due timers) for up to ``timeout`` seconds without
        blocking longer; returns ``pending()``. Lets a sender read between bursts."""
        deadline = time.monotonic() + timeout
        while self._step(deadline):
            self._raise_if_failed()
        self._raise_if_failed()
        return len(self._messages)

    def key_update(self, request: bool = True) -> None:
        """Send KeyUpdate; ``request`` asks the peer to update too. RFC 9147 §8 allows one
        unacknowledged KeyUpdate at a time: a previous one is waited for first."""
        self._ensure_handshake()
        while True:
            self._raise_if_failed()
            try:
                self._conn.key_update(request)
                break
            except ConnectionStateError:
                if self._conn.state != "connected" or self._eof:
                    raise
                self._step(None)  # the flight's own timer bounds this wait
        self.key_updates_sent += 1
        self._flush()

    def wait_acknowledged(self, timeout: float | None = None) -> bool:
        """Drive the connection until nothing we sent awaits an ACK (no timer runs); False
        if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._conn.next_timer() is not None and self._conn.state in _LIVE:
            self._raise_if_failed()
            if not self._step(deadline):
                return False
        return True

    def rebind(self) -> Address:
        """Continue the association from a new local port (a fresh socket to the same peer),
        as a NAT rebinding would. The server follows if it gave us a Connection ID (RFC 9146,
        RFC 9147 §9); otherwise it sees an unknown address. Returns the new local address."""
        new = socket.socket(self._sock.family, socket.SOCK_DGRAM)
        try:
            new.connect(self._peer)
        except BaseException:
            new.close()
            raise
        enlarge_buffers(new)
        old, self._sock = self._sock, new
        old.close()
        address: Address = new.getsockname()
        return address

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Send close_notify (not retransmitted, RFC 9147 §5.10) and close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn.state in _LIVE:
                self._conn.close()
                self._flush()
        except OSError:
            pass  # the peer is unreachable; there is nobody to tell
        finally:
            self._sock.close()

    def __enter__(self) -> DTLSSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- driving the connection ---------------------------------------------------------------

    def _ensure_handshake(self) -> None:
        if self._handshake is None:
            self.do_handshake()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._conn.state == "failed" and self._conn.error is not None:
            raise self._conn.error

    def _flush(self) -> None:
        datagrams = self._conn.datagrams_to_send(time.time())
        if not datagrams:
            return
        self._sock.settimeout(SEND_TIMEOUT)
        too_large = 0
        for datagram in datagrams:
            try:
                self._sock.send(datagram)
            except ConnectionRefusedError:
                # An earlier datagram drew an ICMP error; this one is lost like any other
                # (flights are retransmitted, §5.8).
                self.icmp_errors += 1
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                too_large = max(too_large, len(datagram))
        if too_large:
            # Raised once the events of the current step are handled (none is lost).
            self._path_mtu_error = PathMTUError(too_large, self._conn.mtu)

    def _step(self, deadline: float | None) -> bool:
        """Fire due timers, then wait for one datagram, at most until ``deadline``
        (monotonic; None: no limit) or the next timer. False once the deadline has passed."""
        timer = self._conn.next_timer() if self._conn.state in _LIVE else None
        if timer is not None and timer <= time.time():
            self._handle(self._conn.handle_timer(time.time()), answering=False)
            timer = self._conn.next_timer() if self._conn.state in _LIVE else None
        self._flush()
        self._raise_path_mtu_error()
        if self._error is not None or self._conn.state == "failed":
            return True  # the caller raises
        wait: float | None = None
        if timer is not None:
            wait = max(timer - time.time(), 0.0)
        if deadline is not None:
            left = max(deadline - time.monotonic(), 0.0)
            wait = left if wait is None else min(wait, left)
        self._sock.settimeout(wait)
        try:
            data = self._sock.recv(RECV_SIZE)
        except (TimeoutError, BlockingIOError):
            return deadline is None or time.monotonic() < deadline
        except ConnectionRefusedError:
            self.icmp_errors += 1
            return True
        answering = answers_key_update(self._conn)
        events = self._conn.receive_datagram(data, time.time())
        self._flush()  # answers (ACKs, flights, alerts) go out before anything is raised
        self._handle(events, answering)
        self._raise_path_mtu_error()
        return True

    def _raise_path_mtu_error(self) -> None:
        error, self._path_mtu_error = self._path_mtu_error, None
        if error is not None:
            raise error

    def _handle(self, events: list[Event], answering: bool) -> None:
        for event in events:
            if isinstance(event, ApplicationData):
                self._messages.append(event.data)
            elif isinstance(event, HandshakeComplete):
                self._handshake = event
            elif isinstance(event, SessionTicketReceived):
                self.sessions.append(event.session)
            elif isinstance(event, KeyUpdated):
                self._count_key_update(event, answering)
            elif isinstance(event, ConnectionClosed):
                self._eof = True
            elif isinstance(event, ConnectionFailed) and self._error is None:
                self._error = failure_error(self._conn, event)


def connect(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    server_name: str | None = None,
    timeout: float | None = None,
    local_address: Address | None = None,
    do_handshake: bool = True,
    session: Session | None = None,
    early_data: bytes | None = None,
) -> DTLSSocket:
    """Open a UDP socket to ``host:port`` and run the DTLS handshake (bounded by ``timeout``
    seconds and by the config's retransmission budget); ``timeout`` also becomes the
    ``recv`` timeout. ``server_name`` defaults to the config's, else to ``host``.

    ``session`` resumes (else one comes from ``config.session_store`` for the server name
    and ``port``). ``early_data`` goes as 0-RTT data (epoch 1, RFC 9147 §5.6) when that
    session allows it; ``handshake.early_data`` says whether the server took it. A server
    that answers with a cookie HelloRetryRequest rejects it (RFC 8446 §4.2.10), and 0-RTT
    datagrams are never retransmitted: on anything but "accepted" sending it again is the
    caller's choice."""
    if server_name is None and config.server_name is None:
        server_name = host
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if local_address is not None:
            sock.bind(local_address)
        sock.connect(address)
        connection = DTLSClientConnection(
            config, server_name=server_name, session=session, port=port
        )
        offer_early_data(connection, early_data)
        dtls = DTLSSocket(sock, connection)
        dtls.settimeout(timeout)
        if do_handshake:
            dtls.do_handshake(timeout)
        return dtls
    except BaseException:
        sock.close()
        raise


def offer_early_data(connection: DTLSClientConnection, data: bytes | None) -> bool:
    """Queue ``data`` as 0-RTT data if the connection's session allows that much (RFC 8446
    §4.2.10); False when it does not (nothing queued)."""
    if not data:
        return False
    try:
        connection.send_early_data(data, time.time())
    except ConnectionStateError:
        return False
    return True


# -- server ---------------------------------------------------------------------------------------


class DTLSSession(_Counters):
    """One association served by ``serve_dtls``: what a handler sees and acts on. Whatever
    it queues is sent when the handler returns to the loop (same thread only)."""

    def __init__(self, connection: DTLSServerConnection, address: Address, now: float) -> None:
        self.connection = connection
        self.address = address  # where the association's datagrams go (follows a CID move)
        self.handshake: HandshakeComplete | None = None
        self.error: BaseException | None = None
        self.peer_closed = False
        self.last_activity = now
        self.key_updates_sent = 0
        self.key_updates_received = 0
        self.early_data_received = 0  # bytes of 0-RTT data accepted
        self.data: dict[str, Any] = {}  # for the handler's own state
        # 0-RTT messages that arrived before the handshake completed, handed to the handler
        # right after handshake_complete (nothing can be sent back before that).
        self.early_messages: list[bytes] = []

    @property
    def open(self) -> bool:
        """True while application data can still be sent."""
        return self.connection.state == "connected"

    def send(self, data: bytes | bytearray | memoryview) -> None:
        self.connection.send_data(bytes(data))

    def key_update(self, request: bool = True) -> None:
        """Raises ``ConnectionStateError`` while a previous KeyUpdate awaits its ACK (§8)."""
        self.connection.key_update(request)
        self.key_updates_sent += 1

    def close(self) -> None:
        """Send close_notify; the session ends once it is on the wire."""
        self.connection.close()


class DTLSHandler:
    """What ``serve_dtls`` calls; override what you need. Exceptions raised here end that
    session (close_notify) and are reported to ``session_ended``."""

    def handshake_complete(self, session: DTLSSession) -> None:
        """The handshake finished; ``session.handshake`` has the parameters."""

    def data_received(self, session: DTLSSession, data: bytes) -> None:
        """One application message arrived."""

    def early_data_received(self, session: DTLSSession, data: bytes) -> None:
        """One 0-RTT message the server accepted (RFC 8446 §4.2.10), delivered after
        ``handshake_complete`` in arrival order. Early data can be replayed (§8): act only on
        what is safe to repeat. By default it is handled like any other message."""
        self.data_received(session, data)

    def session_ended(self, session: DTLSSession, error: BaseException | None) -> None:
        """The association is over: ``error`` None after close_notify (either side)."""


class EchoHandler(DTLSHandler):
    """Sends every message straight back."""

    def data_received(self, session: DTLSSession, data: bytes) -> None:
        if session.open:
            session.send(data)


@dataclass
class ServeStats:
    """What ``serve_dtls`` did: associations ended (``served``), of which ``failed``."""

    served: int = 0
    failed: int = 0


class DTLSServerLoop:
    """The loop behind ``serve_dtls``: one UDP socket, one ``DTLSServer``, many sessions."""

    def __init__(
        self,
        sock: socket.socket,
        config: ServerConfig,
        handler: DTLSHandler,
        *,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.sock = sock
        self.server = DTLSServer(config)
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.stats = ServeStats()
        self._sessions: dict[int, DTLSSession] = {}
        enlarge_buffers(sock)

    @property
    def sessions(self) -> list[DTLSSession]:
        return list(self._sessions.values())

    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> ServeStats:
        while stop is None or not stop.is_set():
            self.step(POLL_INTERVAL)
            if once and self.stats.served:
                break
        return self.stats

    def close_all(self) -> None:
        """close_notify to every association (a server shutting down)."""
        for session in list(self._sessions.values()):
            if session.connection.state in _LIVE:
                session.close()
        self._flush()

    def step(self, max_wait: float) -> None:
        """Fire due timers, then wait (at most ``max_wait`` or until the next timer) for one
        datagram and dispatch it."""
        now = time.time()
        timer = self.server.next_timer()
        if timer is not None and timer <= now:
            self._dispatch(self.server.handle_timer(now), answering=False)
            timer = self.server.next_timer()
        self._expire_idle(now)
        self._flush()
        wait = max_wait if timer is None else min(max_wait, max(timer - time.time(), 0.0))
        self.sock.settimeout(wait)
        try:
            data, address = self.sock.recvfrom(RECV_SIZE)
        except (TimeoutError, BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            return  # an ICMP report some platforms deliver on unconnected sockets
        now = time.time()
        answering = answers_key_update(self.server.connection_for(address))
        pairs = self.server.receive_datagram(address, data, now)
        conn = self.server.connection_for(address)
        if conn is not None:
            session = self._session(conn, address, now)
            session.address = address  # also where a CID-routed client moved to (§9)
            session.last_activity = now
        self._dispatch(pairs, answering, address)
        self._flush()

    def _session(
        self, conn: DTLSServerConnection, address: Address | None, now: float
    ) -> DTLSSession:
        session = self._sessions.get(id(conn))
        if session is None or session.connection is not conn:
            session = DTLSSession(conn, address, now)
            self._sessions[id(conn)] = session
        return session

    def _dispatch(
        self,
        pairs: list[tuple[DTLSServerConnection, Event]],
        answering: bool,
        address: Address | None = None,
    ) -> None:
        handler = self.handler
        for conn, event in pairs:
            session = self._session(conn, address, time.time())
            try:
                if isinstance(event, HandshakeComplete):
                    session.handshake = event
                    handler.handshake_complete(session)
                    early, session.early_messages = session.early_messages, []
                    for data in early:
                        handler.early_data_received(session, data)
                elif isinstance(event, EarlyDataReceived):
                    session.early_data_received += len(event.data)
                    session.early_messages.append(event.data)
                elif isinstance(event, ApplicationData):
                    handler.data_received(session, event.data)
                elif isinstance(event, KeyUpdated):
                    session._count_key_update(event, answering)
                elif isinstance(event, ConnectionClosed):
                    session.peer_closed = True
                elif isinstance(event, ConnectionFailed) and session.error is None:
                    session.error = failure_error(conn, event)
            except Exception as exc:
                if session.error is None:
                    session.error = exc
                with contextlib.suppress(ConnectionStateError):
                    session.close()

    def _expire_idle(self, now: float) -> None:
        if self.idle_timeout is None:
            return
        for session in list(self._sessions.values()):
            # Handshakes end by their own retransmission budget (§5.8); only established
            # associations can go quiet for good.
            idle = now - session.last_activity > self.idle_timeout
            if idle and session.connection.state == "connected":
                if session.error is None:
                    session.error = DTLSTimeoutError(
                        f"no datagram from the peer for {self.idle_timeout:g} s",
                        retransmissions=session.connection.retransmissions,
                    )
                session.close()

    def _flush(self) -> None:
        out = self.server.datagrams_to_send(time.time())
        if out:
            self.sock.settimeout(SEND_TIMEOUT)
            for address, datagram in out:
                # One unreachable client must not stop the others; its flights are
                # retransmitted or time out like any lost datagram.
                with contextlib.suppress(OSError):
                    self.sock.sendto(datagram, cast(Address, address))
        self._settle()

    def _settle(self) -> None:
        """End the sessions whose association is over (the DTLSServer dropped it)."""
        live = {id(c) for c in self.server.connections}
        for key, session in list(self._sessions.items()):
            conn = session.connection
            if key in live and conn.state not in ("closed", "failed"):
                continue
            del self._sessions[key]
            error = session.error
            if error is None and conn.state == "failed":
                error = conn.error or ProtocolError(None, "association failed")
            if error is None and key not in live and conn.state != "closed":
                error = ProtocolError(None, "the client started a new association")
            self.stats.served += 1
            if error is not None:
                self.stats.failed += 1
            self.handler.session_ended(session, error)


def serve_dtls(
    sock: socket.socket,
    config: ServerConfig,
    handler: DTLSHandler,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
) -> ServeStats:
    """Serve DTLS 1.3 on bound UDP ``sock`` until ``stop`` is set (or, with ``once``, until
    the first association ends): cookie exchange, many clients, CID routing, timers.
    On return every remaining association got close_notify."""
    loop = DTLSServerLoop(sock, config, handler, idle_timeout=idle_timeout)
    try:
        return loop.run(once=once, stop=stop)
    finally:
        with contextlib.suppress(OSError):
            loop.close_all()


def bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` (port 0: any free port)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DTLSHandler",
    "DTLSServerLoop",
    "DTLSSession",
    "DTLSSocket",
    "DTLSTimeoutError",
    "EchoHandler",
    "ServeStats",
    "answers_key_update",
    "bind_udp",
    "connect",
    "failure_error",
    "offer_early_data",
    "serve_dtls",
]
