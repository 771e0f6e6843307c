"""The blocking and asyncio transports against each other over real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription
from protocol.config import ClientConfig, ServerConfig
from protocol.errors import ProtocolError
from protocol.pki import generate_pki
from protocol.transports.tcp_asyncio import (
    TLSStreamReader,
    TLSStreamWriter,
    open_connection,
    start_server,
)
from protocol.transports.tcp_blocking import TLSEOFError, TLSServerSocket, TLSSocket, connect

TIMEOUT = 20.0
MIB = 1024 * 1024
CHUNK = 64 * 1024


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
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("transport-pki")
    generate_pki(directory)
    return Pki(directory)


# -- an asyncio server in a thread, for the blocking client ---------------------------------------


Handler = Callable[[TLSStreamReader, TLSStreamWriter, "ServerLog"], Awaitable[None]]


@dataclass
class ServerLog:
    """What the server side saw, handed to the test thread."""

    results: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    handshake_errors: queue.Queue[BaseException] = field(default_factory=queue.Queue)


class AsyncioServerThread:
    def __init__(self, config: ServerConfig, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self.log = ServerLog()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _start(self) -> int:
        async def cb(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
            await self.handler(reader, writer, self.log)

        self._server = await start_server(
            cb,
            "127.0.0.1",
            0,
            self.config,
            on_handshake_error=lambda exc, peer: self.log.handshake_errors.put(exc),
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def __enter__(self) -> AsyncioServerThread:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


async def echo_handler(reader: TLSStreamReader, writer: TLSStreamWriter, log: ServerLog) -> None:
    """Echo everything; after the first 256 KiB ask the client for a KeyUpdate once."""
    result: dict[str, Any] = {"handshake": writer.get_extra_info("tls")}
    echoed = 0
    updated = False
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            echoed += len(data)
            if not updated and echoed >= 256 * 1024:
                writer.key_update(request=True)
                updated = True
            await writer.drain()
        result["eof"] = "close_notify"
    except Exception as exc:
        result["eof"] = exc
    result["echoed"] = echoed
    result["key_updates_sent"] = writer.key_updates_sent
    result["key_updates_received"] = writer.key_updates_received
    result["state"] = writer.connection.state
    writer.close()
    await writer.wait_closed()
    log.results.put(result)


def _payload(size: int) -> bytes:
    return os.urandom(size)


# -- blocking client, asyncio server --------------------------------------------------------------


def test_blocking_client_asyncio_server_echo_key_update_close(pki: Pki) -> None:
    payload = _payload(MIB)
    with AsyncioServerThread(pki.server(alpn=("echo",)), echo_handler) as server:
        tls = connect("127.0.0.1", server.port, pki.client(alpn=("echo",)), timeout=TIMEOUT)
        hs = tls.handshake
        assert hs is not None
        assert hs.version == "TLS 1.3"
        assert hs.alpn == "echo"
        assert hs.peer_certificate_subject is not None
        received = bytearray()
        # Lock-step 64 KiB at a time: each chunk is echoed before the next goes out, so
        # neither side's socket buffer can fill up while the other is not reading.
        for offset in range(0, MIB, CHUNK):
            if offset == MIB // 2:
                tls.key_update(request=True)  # mid-stream, client side
            tls.sendall(payload[offset : offset + CHUNK])
            while len(received) < offset + CHUNK:
                data = tls.recv()
                assert data, "server closed early"
                received += data
        assert bytes(received) == payload
        # Ours (requested) + our answer to the server's request; theirs + their answer.
        assert tls.key_updates_sent == 2
        assert tls.key_updates_received == 2
        assert tls.connection.bytes_sent == MIB
        assert tls.connection.bytes_received == MIB
        tls.close()  # close_notify client -> server
        result = server.log.results.get(timeout=TIMEOUT)
    assert result["eof"] == "close_notify"
    assert result["echoed"] == MIB
    assert result["key_updates_sent"] == 2
    assert result["key_updates_received"] == 2
    assert result["state"] == "closed"
    assert result["handshake"].cipher_suite == hs.cipher_suite


def test_blocking_client_sees_server_close_notify(pki: Pki) -> None:
    async def greet_and_close(
        reader: TLSStreamReader, writer: TLSStreamWriter, log: ServerLog
    ) -> None:
        writer.write(b"bye")
        writer.close()  # close_notify server -> client
        await writer.wait_closed()
        log.results.put({})

    with AsyncioServerThread(pki.server(), greet_and_close) as server:
        with connect("127.0.0.1", server.port, pki.client(), timeout=TIMEOUT) as tls:
            data = b""
            while chunk := tls.recv():
                data += chunk
            assert data == b"bye"
            assert tls.recv() == b""  # stays at EOF
            # We answered with our own close_notify (RFC 8446 §6.1).
            assert tls.connection.state == "closed"
        server.log.results.get(timeout=TIMEOUT)


def test_blocking_client_hostname_mismatch(pki: Pki) -> None:
    with AsyncioServerThread(pki.server(), echo_handler) as server:
        with pytest.raises(ProtocolError) as info:
            connect(
                "127.0.0.1",
                server.port,
                pki.client(server_name="wrong.example"),
                timeout=TIMEOUT,
            )
        server_error = server.log.handshake_errors.get(timeout=TIMEOUT)
    assert info.value.alert == AlertDescription.bad_certificate
    assert not info.value.by_peer
    assert "hostname mismatch" in info.value.reason
    # The server learns why from our alert.
    assert isinstance(server_error, ProtocolError)
    assert server_error.by_peer
    assert server_error.alert == AlertDescription.bad_certificate


def test_blocking_client_eof_during_handshake_is_not_silent() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()

    thread = threading.Thread(target=accept_and_hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(TLSEOFError):
            connect(
                "127.0.0.1",
                port,
                ClientConfig(
                    server_name="localhost", dangerously_skip_certificate_verification=True
                ),
                timeout=TIMEOUT,
            )
    finally:
        thread.join(TIMEOUT)
        listener.close()


# -- asyncio client, blocking server --------------------------------------------------------------


class BlockingServerThread:
    """Accepts one connection with TLSServerSocket and runs ``serve(tls)`` on it."""

    def __init__(self, config: ServerConfig, serve: Callable[[TLSSocket], dict[str, Any]]) -> None:
        self.listener = TLSServerSocket.listen("127.0.0.1", 0, config)
        self.port = self.listener.address[1]
        self.serve = serve
        self.result: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            tls, _ = self.listener.accept(timeout=TIMEOUT)
            with tls:
                self.result.put(self.serve(tls))
        except BaseException as exc:
            self.result.put(exc)

    def __enter__(self) -> BlockingServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)

    def outcome(self) -> dict[str, Any] | BaseException:
        return self.result.get(timeout=TIMEOUT)


def blocking_echo(tls: TLSSocket) -> dict[str, Any]:
    """Echo until close_notify; ask for a KeyUpdate after 512 KiB."""
    echoed = 0
    updated = False
    while data := tls.recv():
        tls.sendall(data)
        echoed += len(data)
        if not updated and echoed >= MIB // 2:
            tls.key_update(request=True)
            updated = True
    return {
        "echoed": echoed,
        "state": tls.connection.state,
        "key_updates_sent": tls.key_updates_sent,
        "key_updates_received": tls.key_updates_received,
    }


def test_asyncio_client_blocking_server_echo_key_update_close(pki: Pki) -> None:
    payload = _payload(MIB)

    async def client(port: int) -> tuple[bytes, int, int]:
        reader, writer = await open_connection("127.0.0.1", port, pki.client())
        hs = writer.get_extra_info("tls")
        assert hs is not None and hs.version == "TLS 1.3"

        async def send() -> None:
            # Pipelined: writing and reading run at once, drain() provides back-pressure.
            for offset in range(0, MIB, CHUNK):
                if offset == MIB // 4:
                    writer.key_update(request=True)  # mid-stream, client side
                writer.write(payload[offset : offset + CHUNK])
                await writer.drain()

        sender = asyncio.create_task(send())
        received = await reader.readexactly(MIB)
        await sender
        writer.close()  # close_notify client -> server
        await writer.wait_closed()
        return received, writer.key_updates_sent, writer.key_updates_received

    with BlockingServerThread(pki.server(), blocking_echo) as server:
        received, sent_updates, received_updates = asyncio.run(
            asyncio.wait_for(client(server.port), TIMEOUT)
        )
        outcome = server.outcome()
    assert received == payload
    assert sent_updates == 2 and received_updates == 2
    assert isinstance(outcome, dict), outcome
    assert outcome["echoed"] == MIB
    assert outcome["state"] == "closed"  # the server's recv() ended at close_notify
    assert outcome["key_updates_sent"] == 2
    assert outcome["key_updates_received"] == 2


def test_asyncio_client_sees_server_close_notify(pki: Pki) -> None:
    def greet_and_close(tls: TLSSocket) -> dict[str, Any]:
        tls.sendall(b"bye")
        return {}  # leaving the with-block sends close_notify

    async def client(port: int) -> tuple[bytes, bytes, str]:
        reader, writer = await open_connection("127.0.0.1", port, pki.client())
        data = await reader.read()  # up to EOF = close_notify
        again = await reader.read()
        state = writer.connection.state
        writer.close()
        await writer.wait_closed()
        return data, again, state

    with BlockingServerThread(pki.server(), greet_and_close) as server:
        data, again, state = asyncio.run(asyncio.wait_for(client(server.port), TIMEOUT))
        assert server.outcome() == {}
    assert data == b"bye"
    assert again == b""
    assert state == "closed"


def test_asyncio_client_hostname_mismatch(pki: Pki) -> None:
    def never(tls: TLSSocket) -> dict[str, Any]:
        raise AssertionError("the handshake must not complete")

    async def client(port: int) -> None:
        await open_connection("127.0.0.1", port, pki.client(server_name="wrong.example"))

    with BlockingServerThread(pki.server(), never) as server:
        with pytest.raises(ProtocolError) as info:
            asyncio.run(asyncio.wait_for(client(server.port), TIMEOUT))
        server_error = server.outcome()
    assert info.value.alert == AlertDescription.bad_certificate
    assert "hostname mismatch" in info.value.reason
    assert isinstance(server_error, ProtocolError)
    assert server_error.by_peer and server_error.alert == AlertDescription.bad_certificate


def test_asyncio_both_sides_missing_client_certificate(pki: Pki) -> None:
    """A fatal alert from the peer surfaces as ProtocolError(by_peer=True)."""

    async def run() -> tuple[BaseException, BaseException]:
        errors: asyncio.Queue[BaseException] = asyncio.Queue()

        async def cb(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
            writer.close()

        server = await start_server(
            cb,
            "127.0.0.1",
            0,
            pki.server(cafile=pki.directory / "ca.pem", verify_client=True),
            on_handshake_error=lambda exc, peer: errors.put_nowait(exc),
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await open_connection("127.0.0.1", port, pki.client())
            # TLS 1.3 clients finish first; the server's refusal arrives afterwards.
            with pytest.raises(ProtocolError) as info:
                await reader.read()
            writer.close()
            server_error = await errors.get()
        return info.value, server_error

    client_error, server_error = asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert isinstance(client_error, ProtocolError)
    assert client_error.by_peer
    assert client_error.alert == AlertDescription.certificate_required
    assert isinstance(server_error, ProtocolError)
    assert not server_error.by_peer
    assert server_error.alert == AlertDescription.certificate_required


def test_asyncio_server_authenticates_blocking_client_after_the_handshake(pki: Pki) -> None:
    # RFC 8446 §4.6.2 through both transports: the asyncio server asks once data flows.
    async def handler(reader: TLSStreamReader, writer: TLSStreamWriter, log: ServerLog) -> None:
        first = await reader.readexactly(5)
        answer = await writer.request_client_certificate()
        writer.write(first + b" " + (answer.subject or "-").encode())
        await writer.drain()
        with_cert = await writer.request_client_certificate(required=False)
        log.results.put({"second": with_cert.subject})
        writer.close()
        await writer.wait_closed()

    client_config = pki.client(
        certfile=pki.directory / "client.pem",
        keyfile=pki.directory / "client.key",
        post_handshake_auth=True,
    )
    with AsyncioServerThread(pki.server(cafile=pki.directory / "ca.pem"), handler) as server:
        with connect("127.0.0.1", server.port, client_config, timeout=TIMEOUT) as tls:
            tls.sendall(b"hello")
            reply = b""
            while data := tls.recv():
                reply += data
            assert tls.certificate_requests_answered == 2
        result = server.log.results.get(timeout=TIMEOUT)
    assert reply.startswith(b"hello ") and b"CN=tls13 client" in reply
    assert "CN=tls13 client" in result["second"]
