"""TLS 1.3 over a blocking socket: a small ``ssl.SSLSocket``-like wrapper around the Sans-IO
connection.

Each method drives the connection: bytes read from the socket (64 KiB at a time) go into
``receive_data``; whatever the connection then has to send goes out with one ``sendall``. Events
are handled as they come: application data is buffered for ``recv``, a failure is raised as
``ProtocolError`` (after the alert we owe the peer has been sent).

    with connect("example.com", 443, ClientConfig()) as tls:
        tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while data := tls.recv():
            ...
"""

from __future__ import annotations

import select
import socket
import time
from types import TracebackType

from handshake.psk import Session
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import (
    DEFAULT_PORT,
    TLSClientConnection,
    TLSConnection,
    TLSServerConnection,
)
from protocol.errors import ConnectionStateError, ProtocolError
from protocol.events import (
    ApplicationData,
    CertificateRequested,
    ClientAuthenticated,
    ConnectionClosed,
    ConnectionFailed,
    EarlyDataReceived,
    Event,
    HandshakeComplete,
    KeyUpdated,
    SessionTicketReceived,
)

# One read from the socket: a full 16 KiB record and then some, without a huge buffer.
RECV_SIZE = 64 * 1024


class TLSEOFError(ConnectionError):
    """The peer closed the transport without close_notify (RFC 8446 §6.1: a truncation)."""


class TLSSocket:
    """A connected socket carrying one TLS 1.3 connection (client or server side)."""

    def __init__(self, sock: socket.socket, connection: TLSConnection) -> None:
        self._sock = sock
        self._conn = connection
        self._inbuf = bytearray()
        self._handshake: HandshakeComplete | None = None
        self._eof = False  # close_notify received: recv() returns b""
        self._closed = False
        self.key_updates_sent = 0
        self.key_updates_received = 0
        # Server: 0-RTT bytes the client sent and we accepted (they are read like other data).
        self.early_data_received = 0
        # Client: every ticket the server sent, as sessions to resume with (``session=``).
        self.sessions: list[Session] = []
        # Post-handshake authentication (RFC 8446 §4.6.2): the answers a server received;
        # how many requests a client answered.
        self.client_authentications: list[ClientAuthenticated] = []
        self.certificate_requests_answered = 0

    # -- properties -------------------------------------------------------------------------------

    @property
    def connection(self) -> TLSConnection:
        """The Sans-IO connection (parameters, bytes_sent/received, export_keying_material)."""
        return self._conn

    @property
    def handshake(self) -> HandshakeComplete | None:
        """The ``HandshakeComplete`` event once the handshake is done, else None."""
        return self._handshake

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def getpeername(self) -> tuple[str, int]:
        peer: tuple[str, int] = self._sock.getpeername()
        return peer

    # -- handshake --------------------------------------------------------------------------------

    def do_handshake(self) -> HandshakeComplete:
        """Run the handshake to completion; raises ``ProtocolError`` or ``TLSEOFError``."""
        if isinstance(self._conn, TLSClientConnection):
            self._conn.start()
        self._flush()
        self._raise_if_failed()
        while self._handshake is None:
            if self._eof:
                raise TLSEOFError("peer closed the connection during the handshake")
            self._pump()
        return self._handshake

    # -- data -------------------------------------------------------------------------------------

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Protect ``data`` and write all of it (one ``sendall`` for all its records)."""
        self._ensure_handshake()
        self._conn.send_data(bytes(data))
        self._flush()

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Like ``sendall`` (records are written whole); returns ``len(data)``."""
        self.sendall(data)
        return len(data)

    def recv(self, bufsize: int = RECV_SIZE) -> bytes:
        """Up to ``bufsize`` bytes of application data; b"" once the peer sent close_notify."""
        self._ensure_handshake()
        while not self._inbuf and not self._eof:
            self._pump()
        out = bytes(self._inbuf[:bufsize])
        del self._inbuf[:bufsize]
        return out

    def pending(self) -> int:
        """Application bytes already decrypted and waiting for ``recv``."""
        return len(self._inbuf)

    @property
    def peer_closed(self) -> bool:
        """True once the peer's close_notify arrived (``recv`` then returns b"")."""
        return self._eof

    def recv_ready(self, bufsize: int = RECV_SIZE) -> bytes:
        """Up to ``bufsize`` bytes of application data without waiting for any: only what
        is decrypted already or readable on the socket now. b"" when there is none yet (a
        readable socket may hold only a NewSessionTicket, or part of a record) or once the
        peer closed (``peer_closed``)."""
        self._ensure_handshake()
        while not self._inbuf and not self._eof:
            self._raise_if_failed()
            if not select.select([self._sock], [], [], 0)[0]:
                break
            self._pump()  # one read of what is there: it does not block
        out = bytes(self._inbuf[:bufsize])
        del self._inbuf[:bufsize]
        return out

    def key_update(self, request: bool = True) -> None:
        """Send KeyUpdate (RFC 8446 §4.6.3); ``request`` asks the peer to update its keys too."""
        self._ensure_handshake()
        self._conn.key_update(request)
        self.key_updates_sent += 1
        self._flush()

    def request_client_certificate(self, *, required: bool = True) -> ClientAuthenticated:
        """Server: ask for the client's certificate now (RFC 8446 §4.6.2) and wait for its
        answer, reading (and buffering for ``recv``) whatever comes first. The client must have
        offered it (``connection.post_handshake_auth_offered``). A refused or missing answer
        raises ``ProtocolError``; a client that never answers meets the socket timeout."""
        self._ensure_handshake()
        conn = self._conn
        if not isinstance(conn, TLSServerConnection):
            raise ConnectionStateError("only a server requests a client certificate")
        context = conn.request_client_certificate(required=required)
        self._flush()
        while True:
            for answer in self.client_authentications:
                if answer.context == context:  # answers may come in any order (§4.6.2)
                    return answer
            if self._eof:
                raise TLSEOFError("peer closed the connection before answering")
            self._pump()

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Send close_notify (when the connection is still up) and close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn.state == "handshaking":
                self._conn.cancel()  # user_canceled, then close_notify (RFC 8446 §6.1)
                self._flush()
            elif self._conn.state == "connected":
                self._conn.close()
                self._flush()
            # FIN after close_notify: the peer's reads end cleanly.
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already; nothing left to tell it
        finally:
            self._sock.close()

    def __enter__(self) -> TLSSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- driving the connection -------------------------------------------------------------------

    def _ensure_handshake(self) -> None:
        if self._handshake is None:
            self.do_handshake()

    def _raise_if_failed(self) -> None:
        if self._conn.state == "failed" and self._conn.error is not None:
            raise self._conn.error

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out:
            self._sock.sendall(out)

    def _pump(self) -> None:
        """One socket read, fed to the connection; answers (alerts, KeyUpdate) go out at once."""
        self._raise_if_failed()
        data = self._sock.recv(RECV_SIZE)
        if not data:
            self._eof = True
            if self._conn.state == "closed":
                return
            raise TLSEOFError("peer closed the connection without close_notify")
        events = self._conn.receive_data(data)
        try:
            self._flush()
        except OSError:
            # The peer may be gone already; its events (e.g. a fatal alert) still explain why.
            if not any(isinstance(e, ConnectionFailed | ConnectionClosed) for e in events):
                raise
        self._handle_events(events)

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ApplicationData):
                self._inbuf += event.data
            elif isinstance(event, EarlyDataReceived):
                # RFC 8446 §4.2.10: accepted 0-RTT data comes first in the stream; it may be
                # a replay (§8), which the application must tolerate.
                self._inbuf += event.data
                self.early_data_received += len(event.data)
            elif isinstance(event, SessionTicketReceived):
                self.sessions.append(event.session)
            elif isinstance(event, HandshakeComplete):
                self._handshake = event
            elif isinstance(event, KeyUpdated):
                if event.direction == "receive":
                    self.key_updates_received += 1
                    if event.update_requested:
                        # The connection answered with its own KeyUpdate (RFC 8446 §4.6.3).
                        self.key_updates_sent += 1
            elif isinstance(event, ClientAuthenticated):
                self.client_authentications.append(event)
            elif isinstance(event, CertificateRequested):
                self.certificate_requests_answered += 1
            elif isinstance(event, ConnectionClosed):
                self._eof = True
            elif isinstance(event, ConnectionFailed):
                raise self._conn.error or ProtocolError(
                    event.alert, event.reason, by_peer=event.by_peer
                )


def offer_early_data(connection: TLSClientConnection, data: bytes | None) -> bool:
    """Queue ``data`` as 0-RTT data if the connection's session allows that much (RFC 8446
    §4.2.10); False when it does not (nothing queued). Whether the server took it is
    ``HandshakeComplete.early_data``; on anything but "accepted" the caller decides whether
    to send it again as ordinary data (§4.2.10 leaves that to the application)."""
    if not data:
        return False
    try:
        connection.send_early_data(data, time.time())
    except ConnectionStateError:
        return False
    return True


def _peer_port(sock: socket.socket) -> int:
    try:
        port: int = sock.getpeername()[1]
    except (OSError, IndexError, TypeError):
        return DEFAULT_PORT
    return port


def wrap_client(
    sock: socket.socket,
    config: ClientConfig,
    *,
    server_name: str | None = None,
    session: Session | None = None,
    early_data: bytes | None = None,
    port: int | None = None,
    do_handshake: bool = True,
) -> TLSSocket:
    """Start a TLS client on an already connected socket.

    ``session`` resumes (else one is taken from ``config.session_store`` for the server
    name and ``port``, by default the socket's peer port); ``early_data`` goes as 0-RTT
    data when that session allows it (see ``offer_early_data``)."""
    connection = TLSClientConnection(
        config,
        server_name=server_name,
        session=session,
        port=_peer_port(sock) if port is None else port,
    )
    offer_early_data(connection, early_data)
    tls = TLSSocket(sock, connection)
    if do_handshake:
        tls.do_handshake()
    return tls


def wrap_server(
    sock: socket.socket, config: ServerConfig, *, do_handshake: bool = True
) -> TLSSocket:
    """Serve TLS on an accepted socket."""
    tls = TLSSocket(sock, TLSServerConnection(config))
    if do_handshake:
        tls.do_handshake()
    return tls


def connect(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    server_name: str | None = None,
    timeout: float | None = None,
    session: Session | None = None,
    early_data: bytes | None = None,
) -> TLSSocket:
    """Connect over TCP and complete the handshake. ``server_name`` defaults to the config's,
    else to ``host`` (checked against the certificate and sent as SNI). ``session`` and
    ``early_data``: see ``wrap_client``."""
    if server_name is None and config.server_name is None:
        server_name = host
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        return wrap_client(
            sock,
            config,
            server_name=server_name,
            session=session,
            early_data=early_data,
            port=port,
        )
    except BaseException:
        sock.close()
        raise


class TLSServerSocket:
    """A listening socket whose ``accept()`` returns TLS sockets with the handshake done."""

    def __init__(self, sock: socket.socket, config: ServerConfig) -> None:
        self._sock = sock
        self.config = config

    @classmethod
    def listen(
        cls, host: str, port: int, config: ServerConfig, *, backlog: int = 16
    ) -> TLSServerSocket:
        return cls(socket.create_server((host, port), backlog=backlog), config)

    @property
    def address(self) -> tuple[str, int]:
        address: tuple[str, int] = self._sock.getsockname()[:2]
        return address

    def accept(
        self, *, timeout: float | None = None, do_handshake: bool = True
    ) -> tuple[TLSSocket, tuple[str, int]]:
        """Accept one client; the handshake (bounded by ``timeout``) runs before returning."""
        sock, address = self._sock.accept()
        sock.settimeout(timeout)
        try:
            return wrap_server(sock, self.config, do_handshake=do_handshake), address
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TLSServerSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_one(
    sock: socket.socket, config: ServerConfig, *, timeout: float | None = None
) -> TLSSocket:
    """Accept one connection on listening ``sock`` and complete its handshake."""
    tls, _ = TLSServerSocket(sock, config).accept(timeout=timeout)
    return tls


__all__ = [
    "RECV_SIZE",
    "TLSEOFError",
    "TLSServerSocket",
    "TLSSocket",
    "connect",
    "offer_early_data",
    "serve_one",
    "wrap_client",
    "wrap_server",
]
