"""DTLS 1.3 for asyncio: ``asyncio.DatagramProtocol`` endpoints around the Sans-IO connections.

A client is one datagram endpoint with one ``DTLSClientConnection``; a server is one endpoint
with a ``DTLSServer`` inside, which demultiplexes many associations (cookie exchange, CID
routing). Each endpoint keeps one timer, rescheduled from ``next_timer()`` after every input
(``loop.call_at``), and sends whatever the connections queued after every input.

Both sides hand the application a ``DTLSStream``: ``await recv()`` returns one application
message (b"" after close_notify), ``await send()``, ``await key_update()``, ``await close()``.

    stream = await open_dtls_connection("127.0.0.1", 4433, ClientConfig(cafile="ca.pem"))
    await stream.send(b"ping")
    print(await stream.recv())
    await stream.close()

The connections' clock is ``time.time()`` (certificates are validated against it); the
event loop's monotonic clock only schedules the wake-ups.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
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
from protocol.transports.udp_blocking import (
    DEFAULT_IDLE_TIMEOUT,
    DTLSTimeoutError,
    PathMTUError,
    answers_key_update,
    enlarge_buffers,
    failure_error,
    handshake_timeout_error,
    offer_early_data,
)

Address = Any
_LIVE = ("handshaking", "connected")
# How often the server looks for idle associations (when ``idle_timeout`` is set).
HOUSEKEEPING_INTERVAL = 1.0


class _Driver(ABC):
    """What a stream needs from its endpoint: send what is queued, and wake-ups."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._progress: list[asyncio.Future[None]] = []
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None

    # -- subclasses ---------------------------------------------------------------------------

    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    def next_timer(self) -> float | None: ...

    @abstractmethod
    def on_timer(self, now: float) -> None: ...

    # -- timer --------------------------------------------------------------------------------

    def reschedule(self) -> None:
        """One ``call_at`` for the earliest deadline, replaced only when it changes."""
        deadline = self.next_timer()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            when = self.loop.time() + max(deadline - time.time(), 0.0)
            self._timer = self.loop.call_at(when, self._fire, deadline)

    def _fire(self, deadline: float) -> None:
        self._timer = None
        self._timer_deadline = None
        # The loop's clock and time.time() may disagree by a hair: never call early.
        self.on_timer(max(time.time(), deadline))
        self.flush()
        self.wake()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None

    # -- waiting ------------------------------------------------------------------------------

    def progress(self) -> asyncio.Future[None]:
        """Resolved after the next datagram or timer has been handled."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._progress.append(future)
        return future

    def wake(self) -> None:
        waiters, self._progress = self._progress, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def writable(self) -> None:
        """Back-pressure: wait while the transport asked us to pause writing."""
        while self._paused:
            if self._resumed is None or self._resumed.done():
                self._resumed = self.loop.create_future()
            await self._resumed

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)


class DTLSStream:
    """One DTLS association for asyncio code: the client's, or one session of a server."""

    def __init__(self, connection: DTLSConnection, driver: _Driver, address: Address) -> None:
        self._conn = connection
        self._driver = driver
        self.address = address  # the peer (for a server session: follows a CID move)
        self._messages: collections.deque[bytes] = collections.deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._eof = False
        self._error: BaseException | None = None
        self._path_mtu_error: PathMTUError | None = None  # reported once, not fatal
        self._handshake: asyncio.Future[HandshakeComplete] = driver.loop.create_future()
        self._handshake.add_done_callback(_consume_exception)
        self._finished: asyncio.Future[None] = driver.loop.create_future()
        self.key_updates_sent = 0
        self.key_updates_received = 0
        self.early_data_received = 0  # server: bytes of accepted 0-RTT data (recv'd first)
        self.sessions: list[Session] = []  # client: the server's tickets, as sessions
        self.last_activity = time.time()

    # -- properties ---------------------------------------------------------------------------

    @property
    def connection(self) -> DTLSConnection:
        """The Sans-IO connection (parameters, retransmissions, datagram counters, CIDs)."""
        return self._conn

    @property
    def handshake(self) -> HandshakeComplete | None:
        future = self._handshake
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        return None

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def peer_closed(self) -> bool:
        return self._eof

    @property
    def open(self) -> bool:
        """True while application data can still be sent."""
        return self._conn.state == "connected"

    def pending(self) -> int:
        return len(self._messages)

    # -- API ----------------------------------------------------------------------------------

    async def wait_handshake(self) -> HandshakeComplete:
        return await asyncio.shield(self._handshake)

    async def recv(self) -> bytes:
        """The next application message; b"" after close_notify; raises on failure."""
        while not self._messages:
            self._raise_if_failed()
            if self._eof:
                return b""
            waiter = self._driver.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return self._messages.popleft()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Protect and send ``data`` (one record per datagram-sized piece). Waits only
        while the transport asks writers to pause."""
        self._raise_if_failed()
        self._conn.send_data(bytes(data))
        self._driver.flush()
        await self._driver.writable()

    async def key_update(self, request: bool = True) -> None:
        """Send KeyUpdate (``request``: ask the peer to update too). RFC 9147 §8 allows one
        unacknowledged KeyUpdate at a time: a previous one is waited for first."""
        while True:
            self._raise_if_failed()
            try:
                self._conn.key_update(request)
                break
            except ConnectionStateError:
                if self._conn.state != "connected" or self._eof:
                    raise
                await self._driver.progress()  # bounded by the flight's retransmissions
        self.key_updates_sent += 1
        self._driver.flush()

    async def wait_acknowledged(self) -> None:
        """Until nothing we sent awaits an ACK (e.g. a KeyUpdate: our new keys are in use)."""
        while self._conn.state in _LIVE and self._conn.next_timer() is not None:
            self._raise_if_failed()
            await self._driver.progress()
        self._raise_if_failed()

    async def close(self) -> None:
        """Send close_notify (not retransmitted, RFC 9147 §5.10) and end the association."""
        if self._conn.state in _LIVE:
            self._conn.close()
        self._driver.flush()
        self._close_hook()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._finished)

    # -- driven by the endpoint ---------------------------------------------------------------

    def _close_hook(self) -> None:
        """After close(): the client closes its transport; a server session is dropped by
        the DTLSServer once its close_notify is out."""

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        notice, self._path_mtu_error = self._path_mtu_error, None
        if notice is not None:
            raise notice

    def _datagram_too_large(self, size: int) -> None:
        """RFC 9147 §4.4: the next call learns that the path refused a datagram."""
        self._path_mtu_error = PathMTUError(size, self._conn.mtu)
        self._wake()

    def _feed(self, events: list[Event], answering: bool = False) -> None:
        """``answering``: a KeyUpdate asking for ours gets one (see answers_key_update)."""
        for event in events:
            if isinstance(event, ApplicationData):
                self._messages.append(event.data)
            elif isinstance(event, EarlyDataReceived):
                # RFC 8446 §4.2.10: accepted 0-RTT messages come first (replayable, §8).
                self._messages.append(event.data)
                self.early_data_received += len(event.data)
            elif isinstance(event, SessionTicketReceived):
                self.sessions.append(event.session)
            elif isinstance(event, HandshakeComplete):
                if not self._handshake.done():
                    self._handshake.set_result(event)
            elif isinstance(event, KeyUpdated):
                if event.direction == "receive":
                    self.key_updates_received += 1
                    if event.update_requested and answering:
                        self.key_updates_sent += 1  # the connection's answer (§8)
            elif isinstance(event, ConnectionClosed):
                self._eof = True
            elif isinstance(event, ConnectionFailed) and self._error is None:
                self._set_error(failure_error(self._conn, event))
        self._wake()

    def _set_error(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        self._wake()

    def _finish(self, exc: BaseException | None = None) -> None:
        """The association is over (closed, failed, or its endpoint went away)."""
        if exc is not None and not self._eof:
            self._set_error(exc)
        if not self._handshake.done():
            self._handshake.set_exception(
                exc or self._error or ProtocolError(None, "association closed during handshake")
            )
        self._eof = self._eof or self._error is None
        if not self._finished.done():
            self._finished.set_result(None)
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# -- client ---------------------------------------------------------------------------------------


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, driver: _ClientDriver) -> None:
        self.driver = driver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (CPython's selector transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.driver.protocol is self:
            self.driver.datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
            # asyncio reports a refused sendto here, while flush() is sending it.
            self.driver.stream._datagram_too_large(self.driver.sending)
            return
        # ICMP reports (port unreachable, ...): a hint only; the retransmission budget
        # decides whether the peer is gone (RFC 9147 §5.8).
        self.driver.icmp_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.driver.protocol is self:
            self.driver.connection_lost(exc)

    def pause_writing(self) -> None:
        self.driver.pause()

    def resume_writing(self) -> None:
        self.driver.resume()


class _ClientDriver(_Driver):
    def __init__(self, connection: DTLSClientConnection, remote: Address) -> None:
        super().__init__()
        self.connection = connection
        self.remote = remote
        self.protocol: _ClientProtocol | None = None
        self.stream = DTLSClientStream(connection, self, remote)
        self.icmp_errors = 0
        self.sending = 0  # the size of the datagram being handed to sendto
        self.closed = self.loop.create_future()

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        return self.protocol.transport if self.protocol is not None else None

    async def open(self, local_addr: Address | None = None, **kwds: Any) -> None:
        transport, protocol = await self.loop.create_datagram_endpoint(
            lambda: _ClientProtocol(self), remote_addr=self.remote, local_addr=local_addr, **kwds
        )
        old = self.protocol
        self.protocol = protocol
        sock = transport.get_extra_info("socket")
        if sock is not None:
            enlarge_buffers(sock)
        if old is not None and old.transport is not None:
            old.transport.close()

    def start(self) -> None:
        self.connection.start(time.time())
        self.flush()
        self.stream._feed([])
        if self.connection.state == "failed" and self.connection.error is not None:
            self.stream._finish(self.connection.error)

    def datagram_received(self, data: bytes) -> None:
        self.stream.last_activity = time.time()
        answering = answers_key_update(self.connection)
        events = self.connection.receive_datagram(data, time.time())
        self.flush()
        self.stream._feed(events, answering)
        self.wake()
        self._finish_if_over()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        self.stream._finish(exc)
        self.wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def flush(self) -> None:
        transport = self.transport
        datagrams = self.connection.datagrams_to_send(time.time())
        if transport is not None and not transport.is_closing():
            for datagram in datagrams:
                self.sending = len(datagram)
                transport.sendto(datagram)
        self.reschedule()

    def next_timer(self) -> float | None:
        if self.connection.state not in _LIVE:
            return None
        return self.connection.next_timer()

    def on_timer(self, now: float) -> None:
        self.stream._feed(self.connection.handle_timer(now))
        self.loop.call_soon(self._finish_if_over)

    def _finish_if_over(self) -> None:
        if self.connection.state == "failed":
            # Our alert (if any) is on its way; nothing more will come.
            self.close_transport()

    def close_transport(self) -> None:
        self.stop_timer()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        elif transport is None:
            self.connection_lost(None)


class DTLSClientStream(DTLSStream):
    """The client side: also ``rebind()`` and ``icmp_errors``."""

    _driver: _ClientDriver

    def _close_hook(self) -> None:
        self._driver.close_transport()

    @property
    def icmp_errors(self) -> int:
        return self._driver.icmp_errors

    @property
    def local_address(self) -> Address:
        transport = self._driver.transport
        return transport.get_extra_info("sockname") if transport is not None else None

    async def rebind(self) -> Address:
        """Continue from a new local port (a new endpoint, same association), as a NAT
        rebinding would; the server follows when it gave us a CID (RFC 9146, §9)."""
        await self._driver.open()
        return self.local_address


async def open_dtls_connection(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    server_name: str | None = None,
    handshake_timeout: float | None = None,
    local_addr: Address | None = None,
    session: Session | None = None,
    early_data: bytes | None = None,
    **kwds: Any,
) -> DTLSClientStream:
    """Open a datagram endpoint to ``host:port`` and complete the DTLS handshake.
    ``ProtocolError`` on failure; ``DTLSTimeoutError`` when the retransmission budget or
    ``handshake_timeout`` runs out. ``server_name`` defaults to the config's, else ``host``;
    ``kwds`` go to ``loop.create_datagram_endpoint``.

    ``session`` resumes (else one comes from ``config.session_store`` for the server name
    and ``port``); ``early_data`` goes as 0-RTT data when that session allows it (see
    ``transport_udp.connect``; ``stream.handshake.early_data`` tells the outcome)."""
    if server_name is None and config.server_name is None:
        server_name = host
    connection = DTLSClientConnection(config, server_name=server_name, session=session, port=port)
    offer_early_data(connection, early_data)
    driver = _ClientDriver(connection, (host, port))
    await driver.open(local_addr, **kwds)
    driver.start()
    stream = driver.stream
    try:
        async with asyncio.timeout(handshake_timeout):
            await stream.wait_handshake()
    except TimeoutError:
        driver.close_transport()
        raise handshake_timeout_error(connection) from None
    except BaseException:
        driver.close_transport()
        raise
    return stream


# -- server ---------------------------------------------------------------------------------------


StreamHandler = Callable[[DTLSStream], Awaitable[None] | None]
HandshakeErrorCallback = Callable[[BaseException, Address], None]


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: DTLSServerEndpoint) -> None:
        self.endpoint = endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.endpoint._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.endpoint._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP reports about one client; its flights time out on their own

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._connection_lost(exc)

    def pause_writing(self) -> None:
        self.endpoint.pause()

    def resume_writing(self) -> None:
        self.endpoint.resume()


class DTLSServerEndpoint(_Driver):
    """A running DTLS server: one UDP endpoint, many associations (``sessions``).

    ``handler(stream)`` runs for each association once its handshake is complete; when it
    returns (or raises) the association is closed with close_notify."""

    def __init__(
        self,
        handler: StreamHandler,
        config: ServerConfig,
        *,
        idle_timeout: float | None,
        on_handshake_error: HandshakeErrorCallback | None,
    ) -> None:
        super().__init__()
        self.server = DTLSServer(config)
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._on_handshake_error = on_handshake_error
        self._transport: asyncio.DatagramTransport | None = None
        self._streams: dict[int, DTLSStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = self.loop.create_future()
        self._housekeeping: asyncio.TimerHandle | None = None
        self.served = 0
        self.failed = 0

    # -- public -------------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")

    @property
    def sessions(self) -> list[DTLSStream]:
        return list(self._streams.values())

    def close(self) -> None:
        """close_notify to every association, then close the endpoint."""
        for stream in list(self._streams.values()):
            if stream.connection.state in _LIVE:
                stream.connection.close()
        self.flush()
        for stream in list(self._streams.values()):
            stream._finish(None)
        self._streams.clear()
        self.stop_timer()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> DTLSServerEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # -- endpoint -----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._idle_timeout is not None:
            self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._expire_idle)

    def _datagram_received(self, data: bytes, addr: Address) -> None:
        now = time.time()
        answering = answers_key_update(self.server.connection_for(addr))
        pairs = self.server.receive_datagram(addr, data, now)
        conn = self.server.connection_for(addr)
        if conn is not None:
            stream = self._stream(conn, addr)
            stream.address = addr  # where a CID-routed client moved to (RFC 9147 §9)
            stream.last_activity = now
        self._dispatch(pairs, addr, answering)
        self.flush()
        self.wake()

    def _connection_lost(self, exc: Exception | None) -> None:
        for stream in list(self._streams.values()):
            stream._finish(exc or ConnectionResetError("server endpoint closed"))
        self._streams.clear()
        self.stop_timer()
        if not self._closed.done():
            self._closed.set_result(None)

    def flush(self) -> None:
        transport = self._transport
        out = self.server.datagrams_to_send(time.time())
        if transport is not None and not transport.is_closing():
            for address, datagram in out:
                transport.sendto(datagram, cast(Address, address))
        self._settle()
        self.reschedule()

    def next_timer(self) -> float | None:
        return self.server.next_timer()

    def on_timer(self, now: float) -> None:
        self._dispatch(self.server.handle_timer(now), None, False)

    # -- sessions -----------------------------------------------------------------------------

    def _stream(self, conn: DTLSServerConnection, address: Address) -> DTLSStream:
        stream = self._streams.get(id(conn))
        if stream is None or stream.connection is not conn:
            stream = DTLSStream(conn, self, address)
            self._streams[id(conn)] = stream
        return stream

    def _dispatch(
        self,
        pairs: list[tuple[DTLSServerConnection, Event]],
        address: Address | None,
        answering: bool,
    ) -> None:
        for conn, event in pairs:
            stream = self._stream(conn, address)
            stream._feed([event], answering)
            if isinstance(event, HandshakeComplete):
                self._run_handler(stream)

    def _run_handler(self, stream: DTLSStream) -> None:
        async def run() -> None:
            try:
                result = self._handler(stream)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.loop.call_exception_handler(
                    {"message": "unhandled exception in DTLS handler", "exception": exc}
                )
            finally:
                with contextlib.suppress(ProtocolError, ConnectionStateError, OSError):
                    await stream.close()

        task = self.loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle(self) -> None:
        """Finish the streams whose association the DTLSServer dropped."""
        live = {id(c) for c in self.server.connections}
        for key, stream in list(self._streams.items()):
            conn = stream.connection
            if key in live and conn.state not in ("closed", "failed"):
                continue
            del self._streams[key]
            error = stream.error
            if error is None and conn.state == "failed":
                error = conn.error or ProtocolError(None, "association failed")
            if error is None and key not in live and conn.state != "closed":
                error = ProtocolError(None, "the client started a new association")
            stream._finish(error)
            self.served += 1
            if error is not None:
                self.failed += 1
                if stream.handshake is None and self._on_handshake_error is not None:
                    self._on_handshake_error(error, stream.address)

    def _expire_idle(self) -> None:
        assert self._idle_timeout is not None
        now = time.time()
        for stream in list(self._streams.values()):
            conn = stream.connection
            # Handshakes end by their own retransmission budget (RFC 9147 §5.8).
            if now - stream.last_activity > self._idle_timeout and conn.state == "connected":
                stream._set_error(
                    DTLSTimeoutError(
                        f"no datagram from the peer for {self._idle_timeout:g} s",
                        retransmissions=conn.retransmissions,
                    )
                )
                conn.close()
        self.flush()
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._expire_idle)


async def start_dtls_server(
    handler: StreamHandler,
    host: str | None,
    port: int,
    config: ServerConfig,
    *,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    on_handshake_error: HandshakeErrorCallback | None = None,
    **kwds: Any,
) -> DTLSServerEndpoint:
    """Serve DTLS 1.3 on ``host:port`` (port 0: any free port; see ``.address``).
    ``handler(stream)`` (a coroutine function or a plain function) runs once per completed
    handshake; a handshake that fails calls ``on_handshake_error(exception, address)``.
    Associations silent for ``idle_timeout`` seconds are closed. ``kwds`` go to
    ``loop.create_datagram_endpoint``."""
    endpoint = DTLSServerEndpoint(
        handler, config, idle_timeout=idle_timeout, on_handshake_error=on_handshake_error
    )
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ServerProtocol(endpoint), local_addr=(host or "0.0.0.0", port), **kwds
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        enlarge_buffers(sock)
    endpoint._start()
    return endpoint


__all__ = [
    "DTLSClientStream",
    "DTLSServerEndpoint",
    "DTLSStream",
    "DTLSTimeoutError",
    "open_dtls_connection",
    "start_dtls_server",
]
