"""DTLS 1.3 over real UDP sockets on 127.0.0.1: the blocking and asyncio transports against
each other (echo in lock-step chunks, KeyUpdate, close_notify, Connection IDs with a client
that changes its source port, timeouts, many clients on one server socket)."""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from protocol.config import ClientConfig, ServerConfig
from protocol.errors import ProtocolError
from protocol.transports.udp_asyncio import (
    DTLSClientStream,
    DTLSServerEndpoint,
    DTLSStream,
    open_dtls_connection,
    start_dtls_server,
)
from protocol.transports.udp_blocking import (
    DTLSHandler,
    DTLSSession,
    DTLSSocket,
    DTLSTimeoutError,
    EchoHandler,
    PathMTUError,
    ServeStats,
    bind_udp,
    connect,
    serve_dtls,
)

TIMEOUT = 20.0
TOTAL = 200 * 1024
CHUNK = 8 * 1024  # lock-step: a handful of datagrams in flight, never a socket buffer's worth
SERVER_KEY_UPDATE_AFTER = 64 * 1024
CLIENT_KEY_UPDATE_AT = 128 * 1024


@dataclass(frozen=True)
class Pki:
    directory: Path

    def server(self, **kwargs: Any) -> ServerConfig:
        return ServerConfig(
            certfile=self.directory / "server.pem", keyfile=self.directory / "server.key", **kwargs
        )

    def client(self, **kwargs: Any) -> ClientConfig:
        kwargs.setdefault("server_name", "localhost")
        return ClientConfig(cafile=self.directory / "ca.pem", **kwargs)


@pytest.fixture(scope="module")
def pki(pki_dir: Path) -> Pki:
    return Pki(pki_dir)


def closed_udp_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_epoch(conn: Any) -> int:
    epoch: int = conn._layer.write_epoch
    return epoch


# -- an asyncio DTLS server in a thread, for blocking clients ------------------------------------


StreamHandler = Callable[[DTLSStream, "queue.Queue[dict[str, Any]]"], Awaitable[None]]


class AsyncioServerThread:
    def __init__(self, config: ServerConfig, handler: StreamHandler, **kwargs: Any) -> None:
        self.config = config
        self.handler = handler
        self.kwargs = kwargs
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        self.handshake_errors: queue.Queue[BaseException] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.endpoint: DTLSServerEndpoint | None = None
        self.port = 0

    async def _start(self) -> int:
        async def cb(stream: DTLSStream) -> None:
            await self.handler(stream, self.results)

        self.endpoint = await start_dtls_server(
            cb,
            "127.0.0.1",
            0,
            self.config,
            on_handshake_error=lambda exc, address: self.handshake_errors.put(exc),
            **self.kwargs,
        )
        port: int = self.endpoint.address[1]
        return port

    async def _stop(self) -> None:
        assert self.endpoint is not None
        self.endpoint.close()
        await self.endpoint.wait_closed()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(TIMEOUT)

    def __enter__(self) -> AsyncioServerThread:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


async def async_echo(stream: DTLSStream, results: queue.Queue[dict[str, Any]]) -> None:
    """Echo until close_notify; after 64 KiB ask the client for a KeyUpdate once."""
    result: dict[str, Any] = {"handshake": stream.handshake, "address": stream.address}
    echoed = 0
    updated = False
    try:
        while data := await stream.recv():
            await stream.send(data)
            echoed += len(data)
            result["address"] = stream.address
            if not updated and echoed >= SERVER_KEY_UPDATE_AFTER:
                await stream.key_update(request=True)
                updated = True
        result["eof"] = "close_notify"
    except Exception as exc:
        result["eof"] = exc
    result.update(
        echoed=echoed,
        key_updates_sent=stream.key_updates_sent,
        key_updates_received=stream.key_updates_received,
        state=stream.connection.state,
        write_epoch=write_epoch(stream.connection),
        cid_received=stream.connection.cid_received,
    )
    results.put(result)


# -- the blocking server loop in a thread, for asyncio clients ------------------------------------


class RecordingEcho(EchoHandler):
    """Echo; after 64 KiB from one client ask it for a KeyUpdate; report every session."""

    def __init__(self) -> None:
        self.ended: queue.Queue[tuple[DTLSSession, BaseException | None]] = queue.Queue()
        self.addresses: list[Any] = []

    def data_received(self, session: DTLSSession, data: bytes) -> None:
        super().data_received(session, data)
        echoed = session.data.get("echoed", 0) + len(data)
        session.data["echoed"] = echoed
        self.addresses.append(session.address)
        if echoed >= SERVER_KEY_UPDATE_AFTER and not session.data.get("updated"):
            session.key_update(request=True)
            session.data["updated"] = True

    def session_ended(self, session: DTLSSession, error: BaseException | None) -> None:
        self.ended.put((session, error))


class BlockingServerThread:
    def __init__(self, config: ServerConfig, handler: DTLSHandler, **kwargs: Any) -> None:
        self.sock = bind_udp("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.handler = handler
        self.stop = threading.Event()
        self.stats: ServeStats | None = None

        def run() -> None:
            self.stats = serve_dtls(self.sock, config, handler, stop=self.stop, **kwargs)

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> BlockingServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


# -- blocking client, asyncio server ---------------------------------------------------------


def echo_lock_step(dtls: DTLSSocket, payload: bytes) -> bytes:
    received = bytearray()
    for offset in range(0, len(payload), CHUNK):
        if offset == CLIENT_KEY_UPDATE_AT:
            dtls.key_update(request=True)
        dtls.send(payload[offset : offset + CHUNK])
        while len(received) < min(offset + CHUNK, len(payload)):
            data = dtls.recv()
            assert data, "the server closed early"
            received += data
    return bytes(received)


def test_blocking_client_asyncio_server_echo_key_update_close(pki: Pki) -> None:
    payload = os.urandom(TOTAL)
    with AsyncioServerThread(pki.server(alpn=("echo",)), async_echo) as server:
        dtls = connect("127.0.0.1", server.port, pki.client(alpn=("echo",)), timeout=TIMEOUT)
        hs = dtls.handshake
        assert hs is not None
        assert hs.version == "DTLS 1.3" and hs.alpn == "echo" and hs.hello_retry
        assert dtls.connection.handshake_round_trips == 2  # the cookie exchange
        assert echo_lock_step(dtls, payload) == payload
        assert dtls.wait_acknowledged(TIMEOUT)
        # The server's request was answered, ours too: each side moved its keys twice.
        assert dtls.key_updates_sent == 2 and dtls.key_updates_received == 2
        assert write_epoch(dtls.connection) == 5
        assert dtls.connection.bytes_sent == dtls.connection.bytes_received == TOTAL
        assert dtls.connection.datagrams_sent > TOTAL // 1280
        dtls.close()  # close_notify client -> server
        result = server.results.get(timeout=TIMEOUT)
    assert result["eof"] == "close_notify"
    assert result["echoed"] == TOTAL
    assert result["key_updates_sent"] == 2 and result["key_updates_received"] == 2
    assert result["write_epoch"] == 5
    assert result["state"] == "closed"
    assert result["handshake"].cipher_suite == hs.cipher_suite


def test_clean_loopback_handshake_needs_no_retransmission(pki: Pki) -> None:
    handler = RecordingEcho()
    with BlockingServerThread(pki.server(), handler) as server:
        started = time.monotonic()
        with connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls:
            elapsed = time.monotonic() - started
            dtls.send(b"ping")
            assert dtls.recv() == b"ping"
        session, _ = handler.ended.get(timeout=TIMEOUT)
    assert dtls.connection.retransmissions == 0
    assert session.connection.retransmissions == 0
    assert elapsed < 0.9  # less than one retransmission timeout (1 s)


def test_blocking_client_sees_server_close_notify(pki: Pki) -> None:
    async def greet_and_close(stream: DTLSStream, results: queue.Queue[dict[str, Any]]) -> None:
        await stream.send(b"bye")
        results.put({})  # returning closes the association with close_notify

    with AsyncioServerThread(pki.server(), greet_and_close) as server:
        with connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls:
            assert dtls.recv() == b"bye"
            assert dtls.recv() == b""
            assert dtls.recv() == b""  # stays at EOF
            assert dtls.peer_closed and dtls.connection.state == "closed"
        server.results.get(timeout=TIMEOUT)


def test_blocking_client_hostname_mismatch(pki: Pki) -> None:
    with AsyncioServerThread(pki.server(), async_echo) as server:
        with pytest.raises(ProtocolError) as info:
            connect(
                "127.0.0.1", server.port, pki.client(server_name="wrong.example"), timeout=TIMEOUT
            )
        server_error = server.handshake_errors.get(timeout=TIMEOUT)
    assert info.value.alert == AlertDescription.bad_certificate
    assert "hostname mismatch" in info.value.reason and not info.value.by_peer
    assert isinstance(server_error, ProtocolError)
    assert server_error.by_peer and server_error.alert == AlertDescription.bad_certificate


def test_blocking_recv_timeout_is_not_fatal(pki: Pki) -> None:
    with (
        AsyncioServerThread(pki.server(), async_echo) as server,
        connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls,
    ):
        dtls.settimeout(0.2)
        with pytest.raises(TimeoutError):
            dtls.recv()
        dtls.send(b"still there?")
        assert dtls.recv() == b"still there?"


def test_cid_follows_blocking_client_to_a_new_port(pki: Pki) -> None:
    with AsyncioServerThread(pki.server(cid_length=8), async_echo) as server:
        with connect("127.0.0.1", server.port, pki.client(cid_length=4), timeout=TIMEOUT) as dtls:
            conn = dtls.connection
            assert conn.cid_sent is not None and len(conn.cid_sent) == 8
            assert conn.cid_received is not None and len(conn.cid_received) == 4
            dtls.send(b"from the first port")
            assert dtls.recv() == b"from the first port"
            first_port = dtls.socket.getsockname()[1]
            new_address = dtls.rebind()  # same DTLSClientConnection, new socket and port
            assert new_address[1] != first_port
            for i in range(3):
                dtls.send(b"moved %d" % i)
                assert dtls.recv() == b"moved %d" % i
            sessions = server.call(lambda: server.endpoint.sessions)  # type: ignore[union-attr]
            assert [s.address for s in sessions] == [new_address]
        result = server.results.get(timeout=TIMEOUT)
    assert result["eof"] == "close_notify"
    assert result["address"] == new_address
    assert result["cid_received"] == conn.cid_sent


def test_without_cid_the_server_cannot_follow_a_new_port(pki: Pki) -> None:
    """The control: no CID from the server, so records from the new port go nowhere."""
    with (
        AsyncioServerThread(pki.server(), async_echo) as server,
        connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls,
    ):
        assert dtls.connection.cid_sent is None
        dtls.send(b"before")
        assert dtls.recv() == b"before"
        dtls.rebind()
        dtls.settimeout(1.0)
        dtls.send(b"after")
        with pytest.raises(TimeoutError):
            dtls.recv()


def test_blocking_handshake_timeout_against_a_closed_port(pki: Pki) -> None:
    config = pki.client(max_retransmits=2, retransmit_initial=0.05)
    started = time.monotonic()
    with pytest.raises(DTLSTimeoutError) as info:
        connect("127.0.0.1", closed_udp_port(), config, timeout=TIMEOUT)
    assert time.monotonic() - started < 5
    assert str(info.value) == "DTLS handshake timed out after 2 retransmissions"
    assert info.value.alert is None and not info.value.by_peer
    assert info.value.retransmissions == 2


def test_blocking_handshake_deadline(pki: Pki) -> None:
    """The caller's timeout ends the handshake before a generous retransmission budget."""
    started = time.monotonic()
    with pytest.raises(DTLSTimeoutError, match="DTLS handshake timed out after"):
        connect("127.0.0.1", closed_udp_port(), pki.client(retransmit_initial=0.1), timeout=0.5)
    assert time.monotonic() - started < 3


def test_asyncio_server_closes_idle_associations(pki: Pki) -> None:
    with AsyncioServerThread(pki.server(), async_echo, idle_timeout=0.5) as server:
        with connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls:
            started = time.monotonic()
            assert dtls.recv() == b""  # the server's close_notify after 0.5 s of silence
            assert time.monotonic() - started < 5
        result = server.results.get(timeout=TIMEOUT)
    assert isinstance(result["eof"], DTLSTimeoutError)
    assert "no datagram from the peer" in str(result["eof"])


def test_blocking_server_closes_idle_associations(pki: Pki) -> None:
    handler = RecordingEcho()
    with BlockingServerThread(pki.server(), handler, idle_timeout=0.5) as server:
        with connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls:
            started = time.monotonic()
            assert dtls.recv() == b""
            assert time.monotonic() - started < 5
        session, error = handler.ended.get(timeout=TIMEOUT)
    assert isinstance(error, DTLSTimeoutError)
    assert session.connection.state == "closed"


# -- asyncio client, blocking server ---------------------------------------------------------


async def async_lock_step(stream: DTLSClientStream, payload: bytes) -> bytes:
    received = bytearray()
    for offset in range(0, len(payload), CHUNK):
        if offset == CLIENT_KEY_UPDATE_AT:
            await stream.key_update(request=True)
        await stream.send(payload[offset : offset + CHUNK])
        while len(received) < min(offset + CHUNK, len(payload)):
            data = await stream.recv()
            assert data, "the server closed early"
            received += data
    return bytes(received)


def test_asyncio_client_blocking_server_echo_key_update_close(pki: Pki) -> None:
    payload = os.urandom(TOTAL)
    handler = RecordingEcho()

    async def client(port: int) -> tuple[bytes, DTLSClientStream]:
        stream = await open_dtls_connection("127.0.0.1", port, pki.client())
        assert stream.handshake is not None and stream.handshake.version == "DTLS 1.3"
        received = await async_lock_step(stream, payload)
        await stream.wait_acknowledged()
        await stream.close()
        return received, stream

    with BlockingServerThread(pki.server(), handler) as server:
        received, stream = asyncio.run(asyncio.wait_for(client(server.port), TIMEOUT))
        session, error = handler.ended.get(timeout=TIMEOUT)
    assert received == payload
    assert stream.key_updates_sent == 2 and stream.key_updates_received == 2
    assert write_epoch(stream.connection) == 5
    assert error is None
    assert session.peer_closed and session.connection.state == "closed"
    assert session.data["echoed"] == TOTAL
    assert session.key_updates_sent == 2 and session.key_updates_received == 2
    assert write_epoch(session.connection) == 5


def test_cid_follows_asyncio_client_to_a_new_port(pki: Pki) -> None:
    handler = RecordingEcho()

    async def client(port: int) -> tuple[Any, Any, list[bytes]]:
        stream = await open_dtls_connection("127.0.0.1", port, pki.client(cid_length=2))
        await stream.send(b"one")
        answers = [await stream.recv()]
        first = stream.local_address
        second = await stream.rebind()
        for message in (b"two", b"three"):
            await stream.send(message)
            answers.append(await stream.recv())
        await stream.close()
        return first, second, answers

    with BlockingServerThread(pki.server(cid_length=5), handler) as server:
        first, second, answers = asyncio.run(asyncio.wait_for(client(server.port), TIMEOUT))
        session, error = handler.ended.get(timeout=TIMEOUT)
    assert answers == [b"one", b"two", b"three"]
    assert first != second
    assert handler.addresses == [first, second, second]
    assert session.address == second and error is None
    assert session.connection.cid_received is not None
    assert len(session.connection.cid_received) == 5


def test_asyncio_handshake_timeout_against_a_closed_port(pki: Pki) -> None:
    config = pki.client(max_retransmits=2, retransmit_initial=0.05)

    async def client() -> None:
        await open_dtls_connection("127.0.0.1", closed_udp_port(), config)

    started = time.monotonic()
    with pytest.raises(DTLSTimeoutError) as info:
        asyncio.run(asyncio.wait_for(client(), TIMEOUT))
    assert time.monotonic() - started < 5
    assert str(info.value) == "DTLS handshake timed out after 2 retransmissions"


def test_many_asyncio_clients_on_one_blocking_server_socket(pki: Pki) -> None:
    handler = RecordingEcho()
    count = 6

    async def one(port: int, index: int) -> bytes:
        stream = await open_dtls_connection("127.0.0.1", port, pki.client(cid_length=index % 3))
        message = b"client %d says hello" % index
        await stream.send(message)
        answer = await stream.recv()
        await stream.close()
        return answer

    async def all_clients(port: int) -> list[bytes]:
        return await asyncio.gather(*(one(port, i) for i in range(count)))

    with BlockingServerThread(pki.server(cid_length=3), handler) as server:
        answers = asyncio.run(asyncio.wait_for(all_clients(server.port), TIMEOUT))
        ended = [handler.ended.get(timeout=TIMEOUT) for _ in range(count)]
    assert answers == [b"client %d says hello" % i for i in range(count)]
    assert all(error is None for _, error in ended)
    assert len({session.address for session, _ in ended}) == count
    assert server.stats is not None and server.stats.served == count


def test_asyncio_server_handshake_error_and_client_failure(pki: Pki) -> None:
    """Both sides asyncio: a client certificate is required and we have none."""

    async def run() -> tuple[BaseException, BaseException]:
        errors: asyncio.Queue[BaseException] = asyncio.Queue()
        server = await start_dtls_server(
            lambda stream: None,
            "127.0.0.1",
            0,
            pki.server(cafile=pki.directory / "ca.pem", verify_client=True),
            on_handshake_error=lambda exc, address: errors.put_nowait(exc),
        )
        async with server:
            port = server.address[1]
            stream = await open_dtls_connection("127.0.0.1", port, pki.client())
            # The client finishes first; the server's refusal arrives afterwards.
            with pytest.raises(ProtocolError) as info:
                await stream.recv()
            server_error = await errors.get()
            await stream.close()
        return info.value, server_error

    client_error, server_error = asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert isinstance(client_error, ProtocolError) and client_error.by_peer
    assert client_error.alert == AlertDescription.certificate_required
    assert isinstance(server_error, ProtocolError) and not server_error.by_peer
    assert server_error.alert == AlertDescription.certificate_required


class _RefusingSocket:
    """A UDP socket whose path refuses datagrams above ``limit`` bytes (EMSGSIZE)."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self.limit = limit

    def send(self, data: bytes) -> int:
        if len(data) > self.limit:
            raise OSError(errno.EMSGSIZE, "Message too long")
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_blocking_client_reports_path_mtu_exceeded(pki: Pki) -> None:
    # RFC 9147 §4.4: a datagram the network refuses as too large is reported, not hidden.
    with (
        AsyncioServerThread(pki.server(), async_echo) as server,
        connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as dtls,
    ):
        dtls._sock = _RefusingSocket(dtls._sock, 600)  # type: ignore[assignment]
        with pytest.raises(PathMTUError) as info:
            dtls.send(os.urandom(1000))
        assert info.value.errno == errno.EMSGSIZE and info.value.size > 600
        assert "mtu" in str(info.value)
        dtls.send(b"small enough")  # the association is intact
        assert dtls.recv() == b"small enough"


def test_asyncio_client_reports_path_mtu_exceeded(pki: Pki) -> None:
    async def client(port: int) -> None:
        stream = await open_dtls_connection("127.0.0.1", port, pki.client())
        driver = stream._driver
        transport = driver.transport
        assert transport is not None and driver.protocol is not None
        protocol, sendto = driver.protocol, transport.sendto

        def refusing(data: bytes, addr: Any = None) -> None:
            if len(data) > 600:  # what asyncio does with a refused sendto
                protocol.error_received(OSError(errno.EMSGSIZE, "Message too long"))
                return
            sendto(data)

        transport.sendto = refusing  # type: ignore[method-assign]
        await stream.send(os.urandom(1000))
        with pytest.raises(PathMTUError):
            await stream.recv()
        await stream.send(b"small enough")
        assert await stream.recv() == b"small enough"
        await stream.close()

    with AsyncioServerThread(pki.server(), async_echo) as server:
        asyncio.run(asyncio.wait_for(client(server.port), TIMEOUT))
