"""TLS 1.3 for asyncio, shaped like ``asyncio.open_connection`` / ``asyncio.start_server``.

One ``asyncio.Protocol`` per connection drives the Sans-IO connection directly (no streams
layered over streams): ``data_received`` feeds ``receive_data`` and the decrypted bytes go
straight into the reader; ``writer.write`` protects the data and hands the records to the
transport. Flow control is asyncio's own: the reader pauses the transport when its buffer is
full, and ``drain()`` waits while the transport's write buffer is above its high-water mark.

    reader, writer = await open_connection("example.com", 443, ClientConfig())
    writer.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
    print(await reader.read())
    writer.close()
    await writer.wait_closed()
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from handshake.psk import Session
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
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
from protocol.transports.tcp_blocking import TLSEOFError, offer_early_data

# asyncio.streams' default buffer limit (64 KiB).
DEFAULT_LIMIT = 2**16
DEFAULT_HANDSHAKE_TIMEOUT = 60.0


class TLSStreamReader(asyncio.StreamReader):
    """An ``asyncio.StreamReader`` fed with decrypted application data. EOF is close_notify;
    a failure raises ``ProtocolError``, a transport closed without close_notify ``TLSEOFError``."""


class _TLSProtocol(asyncio.Protocol):
    """Drives one ``TLSConnection`` over one asyncio transport."""

    def __init__(
        self,
        connection: TLSConnection,
        *,
        limit: int = DEFAULT_LIMIT,
        early_data: bytes | None = None,
    ) -> None:
        self.connection = connection
        self.early_data = early_data  # a client's 0-RTT data, offered before the ClientHello
        self.reader = TLSStreamReader(limit=limit)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.loop = loop
        # Resolved with the HandshakeComplete event, or failed with the reason it never came.
        self.handshake: asyncio.Future[HandshakeComplete] = loop.create_future()
        self.handshake.add_done_callback(_consume_exception)
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error: Exception | None = None
        self.close_notify_received = False
        self.key_updates_sent = 0
        self.key_updates_received = 0
        self.early_data_received = 0  # server: accepted 0-RTT bytes (read like other data)
        self.sessions: list[Session] = []  # client: tickets received, as sessions
        self.certificate_requests_answered = 0  # client: post-handshake (RFC 8446 §4.6.2)
        # server: our post-handshake CertificateRequests awaiting the client's answer, by
        # certificate_request_context (answers may come in any order, RFC 8446 §4.6.2)
        self._auth_waiters: dict[bytes, asyncio.Future[ClientAuthenticated]] = {}
        self._paused = False
        self._drain_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.reader.set_transport(transport)
        if isinstance(self.connection, TLSClientConnection):
            offer_early_data(self.connection, self.early_data)
            self.connection.start()
            self.flush()
            if self.connection.error is not None:
                self._fail(self.connection.error)

    def data_received(self, data: bytes) -> None:
        events = self.connection.receive_data(data)
        self.flush()
        self._handle_events(events)

    def eof_received(self) -> bool:
        if not self.close_notify_received:
            during = "during the handshake" if not self.handshake.done() else "without close_notify"
            self._fail(TLSEOFError(f"peer closed the connection {during}"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._fail(exc)
        elif not self.handshake.done():
            self._fail(ConnectionResetError("connection lost during the handshake"))
        else:
            self.reader.feed_eof()
        waiter_exc = self.error or ConnectionResetError("connection lost")
        self._wake_drain_waiters(waiter_exc)
        for waiter in self._auth_waiters.values():
            if not waiter.done():
                waiter.set_exception(waiter_exc)
        self._auth_waiters.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain_waiters(None)

    # -- driving the connection -------------------------------------------------------------------

    def flush(self) -> None:
        out = self.connection.data_to_send()
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)

    def send(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.connection.send_data(data)
        self.flush()

    def key_update(self, request: bool) -> None:
        if self.error is not None:
            raise self.error
        self.connection.key_update(request)
        self.key_updates_sent += 1
        self.flush()

    def request_client_certificate(self, required: bool) -> asyncio.Future[ClientAuthenticated]:
        if self.error is not None:
            raise self.error
        connection = self.connection
        if not isinstance(connection, TLSServerConnection):
            raise ConnectionStateError("only a server requests a client certificate")
        context = connection.request_client_certificate(required=required)
        waiter: asyncio.Future[ClientAuthenticated] = self.loop.create_future()
        waiter.add_done_callback(_consume_exception)
        self._auth_waiters[context] = waiter
        self.flush()
        return waiter

    def close_notify(self) -> None:
        if self.connection.state == "handshaking":
            self.connection.cancel()  # user_canceled, then close_notify (RFC 8446 §6.1)
            self.flush()
        elif self.connection.state == "connected":
            self.connection.close()
            self.flush()

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ApplicationData):
                self.reader.feed_data(event.data)
            elif isinstance(event, EarlyDataReceived):
                # RFC 8446 §4.2.10: accepted 0-RTT data comes first in the stream (and may
                # be a replay, §8: the application must tolerate that).
                self.reader.feed_data(event.data)
                self.early_data_received += len(event.data)
            elif isinstance(event, SessionTicketReceived):
                self.sessions.append(event.session)
            elif isinstance(event, ClientAuthenticated):
                waiter = self._auth_waiters.pop(event.context, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
            elif isinstance(event, CertificateRequested):
                self.certificate_requests_answered += 1
            elif isinstance(event, HandshakeComplete):
                if not self.handshake.done():
                    self.handshake.set_result(event)
            elif isinstance(event, KeyUpdated):
                if event.direction == "receive":
                    self.key_updates_received += 1
                    if event.update_requested:
                        # The connection answered with its own KeyUpdate (RFC 8446 §4.6.3).
                        self.key_updates_sent += 1
            elif isinstance(event, ConnectionClosed):
                # The connection answered with close_notify; the TLS session is over.
                self.close_notify_received = True
                self.reader.feed_eof()
                if self.transport is not None:
                    self.transport.close()
            elif isinstance(event, ConnectionFailed):
                error = self.connection.error or ProtocolError(
                    event.alert, event.reason, by_peer=event.by_peer
                )
                self._fail(error)

    def _fail(self, exc: Exception) -> None:
        if self.error is not None:
            return
        self.error = exc
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        for waiter in self._auth_waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._auth_waiters.clear()
        if self.reader.exception() is None and not self.close_notify_received:
            self.reader.set_exception(exc)
        self._wake_drain_waiters(exc)
        if self.transport is not None:
            # Buffered output (our fatal alert) is still written before the socket closes.
            self.transport.close()

    # -- drain ---------------------------------------------------------------------------------

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error
        transport = self.transport
        if transport is not None and transport.is_closing():
            # Give connection_lost a chance to run, as asyncio's StreamWriter does.
            await asyncio.sleep(0)
            if self.closed.done():
                raise self.error or ConnectionResetError("connection lost")
        if not self._paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain_waiters(self, exc: Exception | None) -> None:
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # A failed handshake nobody awaits is reported through the reader; no "never retrieved".
    if not future.cancelled():
        future.exception()


class TLSStreamWriter:
    """Mirrors ``asyncio.StreamWriter``; writes are protected records, EOF is close_notify."""

    def __init__(self, protocol: _TLSProtocol, reader: TLSStreamReader) -> None:
        assert protocol.transport is not None
        self._protocol = protocol
        self._transport = protocol.transport
        self._reader = reader

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    @property
    def connection(self) -> TLSConnection:
        return self._protocol.connection

    @property
    def handshake(self) -> HandshakeComplete | None:
        future = self._protocol.handshake
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        return None

    @property
    def key_updates_sent(self) -> int:
        return self._protocol.key_updates_sent

    @property
    def key_updates_received(self) -> int:
        return self._protocol.key_updates_received

    @property
    def early_data_received(self) -> int:
        """Server: bytes of 0-RTT data accepted (they are read from the reader first)."""
        return self._protocol.early_data_received

    @property
    def sessions(self) -> list[Session]:
        """Client: the server's tickets so far, as sessions to resume with (``session=``)."""
        return self._protocol.sessions

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._protocol.send(bytes(data))

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._protocol.send(b"".join(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Send close_notify but keep reading (TLS 1.3 closes each direction on its own)."""
        self._protocol.close_notify()

    def key_update(self, request: bool = True) -> None:
        """Send KeyUpdate (RFC 8446 §4.6.3); ``request`` asks the peer to update its keys too."""
        self._protocol.key_update(request)

    async def request_client_certificate(self, *, required: bool = True) -> ClientAuthenticated:
        """Server: ask for the client's certificate now (RFC 8446 §4.6.2) and wait for its
        answer; data keeps arriving in the reader meanwhile. A refused or missing answer
        raises ``ProtocolError`` (the connection is then closed)."""
        return await self._protocol.request_client_certificate(required)

    def close(self) -> None:
        """Send close_notify and close the transport once buffered data is written."""
        self._protocol.close_notify()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._protocol.closed)

    async def drain(self) -> None:
        await self._protocol.drain()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"tls"``: the HandshakeComplete event; ``"tls_connection"``: the connection;
        anything else is asked of the transport (``"peername"``, ``"socket"``, ...)."""
        if name == "tls":
            return self.handshake if self.handshake is not None else default
        if name == "tls_connection":
            return self._protocol.connection
        return self._transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<TLSStreamWriter transport={self._transport!r}>"


async def open_connection(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    server_name: str | None = None,
    limit: int = DEFAULT_LIMIT,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    session: Session | None = None,
    early_data: bytes | None = None,
    **kwds: Any,
) -> tuple[TLSStreamReader, TLSStreamWriter]:
    """Connect and complete the handshake (``ProtocolError`` on failure). ``server_name``
    defaults to the config's, else to ``host``; ``kwds`` go to ``loop.create_connection``.

    ``session`` resumes (else one comes from ``config.session_store`` for the server name
    and ``port``); ``early_data`` goes as 0-RTT data when that session allows it, and
    ``writer.handshake.early_data`` tells whether the server took it (RFC 8446 §4.2.10: on
    anything but "accepted", sending it again is the application's choice)."""
    loop = asyncio.get_running_loop()
    if server_name is None and config.server_name is None:
        server_name = host

    def factory() -> _TLSProtocol:
        connection = TLSClientConnection(
            config, server_name=server_name, session=session, port=port
        )
        return _TLSProtocol(connection, limit=limit, early_data=early_data)

    transport, protocol = await loop.create_connection(factory, host, port, **kwds)
    try:
        async with asyncio.timeout(handshake_timeout):
            await asyncio.shield(protocol.handshake)
    except BaseException:
        transport.abort()
        raise
    return protocol.reader, TLSStreamWriter(protocol, protocol.reader)


ClientConnectedCallback = Callable[[TLSStreamReader, TLSStreamWriter], Awaitable[None] | None]
HandshakeErrorCallback = Callable[[BaseException, Any], None]


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | None,
    port: int | None,
    config: ServerConfig,
    *,
    limit: int = DEFAULT_LIMIT,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    on_handshake_error: HandshakeErrorCallback | None = None,
    **kwds: Any,
) -> asyncio.Server:
    """Serve TLS: ``client_connected_cb(reader, writer)`` runs once a client's handshake is
    complete (a coroutine function becomes a task). A failed handshake calls
    ``on_handshake_error(exception, peername)`` instead. ``kwds`` go to ``loop.create_server``."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def factory() -> _TLSProtocol:
        protocol = _TLSProtocol(TLSServerConnection(config), limit=limit)
        timer = (
            loop.call_later(handshake_timeout, _handshake_timed_out, protocol)
            if handshake_timeout is not None
            else None
        )
        protocol.handshake.add_done_callback(
            lambda future: _server_handshake_done(future, protocol, timer)
        )
        return protocol

    def _server_handshake_done(
        future: asyncio.Future[HandshakeComplete],
        protocol: _TLSProtocol,
        timer: asyncio.TimerHandle | None,
    ) -> None:
        if timer is not None:
            timer.cancel()
        transport = protocol.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        exc = future.exception()
        if exc is not None:
            if on_handshake_error is not None:
                on_handshake_error(exc, peername)
            return
        writer = TLSStreamWriter(protocol, protocol.reader)
        result = client_connected_cb(protocol.reader, writer)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            tasks.add(task)
            task.add_done_callback(lambda t: _callback_done(t, writer))

    def _callback_done(task: asyncio.Task[None], writer: TLSStreamWriter) -> None:
        tasks.discard(task)
        if task.cancelled():
            writer.transport.abort()
            return
        exc = task.exception()
        if exc is not None:
            writer.transport.abort()
            loop.call_exception_handler(
                {"message": "unhandled exception in client_connected_cb", "exception": exc}
            )

    return await loop.create_server(factory, host, port, **kwds)


def _handshake_timed_out(protocol: _TLSProtocol) -> None:
    if not protocol.handshake.done():
        protocol._fail(TimeoutError("handshake timed out"))


__all__ = [
    "TLSStreamReader",
    "TLSStreamWriter",
    "open_connection",
    "start_server",
]
