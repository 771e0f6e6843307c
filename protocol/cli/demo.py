"""``python -m protocol demo``: a TLS 1.3 handshake you can read, then the same over DTLS 1.3.

A throwaway PKI goes into a temporary folder; an asyncio server and an asyncio client on
127.0.0.1 (real sockets, one event loop, so the trace reads in order) run a handshake,
exchange a message, do a KeyUpdate each way, and close with close_notify. Every record and
handshake message is printed as it is sent or received, then the negotiated parameters.

The DTLS 1.3 part (RFC 9147) tells the same story over UDP, with the stateless cookie
exchange, Connection IDs both ways, record numbers (epoch:sequence) and ACKs in the trace,
and the datagram counters at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import DTLSConnection
from protocol.events import HandshakeComplete
from protocol.pki import generate_pki
from protocol.trace import TextTrace, TraceEvent, TraceHook
from protocol.transports.tcp_asyncio import (
    TLSStreamReader,
    TLSStreamWriter,
    open_connection,
    start_server,
)
from protocol.transports.udp_asyncio import DTLSStream, open_dtls_connection, start_dtls_server
from records.errors import RecordError
from records.record_numbers import decode_ack

Write = Callable[[str], None]

MESSAGE = b"hello over TLS 1.3"
AFTER_KEY_UPDATE = b"still here after KeyUpdate"
ALPN = ("http/1.1",)


def _parameters(event: HandshakeComplete) -> list[tuple[str, str]]:
    return [
        ("version", event.version),
        ("cipher suite", event.cipher_suite),
        ("key exchange group", str(event.group)),
        ("signature scheme", str(event.signature_scheme)),
        ("ALPN", str(event.alpn)),
        ("server name (SNI)", str(event.server_name)),
        ("HelloRetryRequest", "yes" if event.hello_retry else "no"),
        ("resumed (PSK)", "yes" if event.resumed else "no"),
        ("early data", event.early_data),
        ("peer certificate", str(event.peer_certificate_subject)),
        ("client authenticated", "yes" if event.client_authenticated else "no"),
    ]


async def _run_tls_demo(directory: Path, write: Write) -> None:
    server_done: asyncio.Future[HandshakeComplete | None] = (
        asyncio.get_running_loop().create_future()
    )

    async def serve(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
        # Echo until the client's close_notify; our own close_notify answers it.
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            server_done.set_result(writer.handshake)

    server_config = ServerConfig(
        certfile=directory / "server.pem",
        keyfile=directory / "server.key",
        alpn=ALPN,
        trace=TextTrace(write, prefix="  server "),
    )
    client_config = ClientConfig(
        cafile=directory / "ca.pem",
        server_name="localhost",
        alpn=ALPN,
        trace=TextTrace(write, prefix="  client "),
    )
    server = await start_server(serve, "127.0.0.1", 0, server_config)
    async with server:
        port = server.sockets[0].getsockname()[1]
        write(f"\n== Handshake (client connects to 127.0.0.1:{port}) ==")
        reader, writer = await open_connection("127.0.0.1", port, client_config)
        client_view = writer.handshake
        assert client_view is not None

        write(f"\n== Application data: {MESSAGE.decode()!r}, echoed back ==")
        writer.write(MESSAGE)
        echo = await reader.readexactly(len(MESSAGE))

        write("\n== KeyUpdate (client asks the server to update too; RFC 8446 §4.6.3) ==")
        writer.key_update(request=True)
        writer.write(AFTER_KEY_UPDATE)
        echo2 = await reader.readexactly(len(AFTER_KEY_UPDATE))

        write("\n== close_notify both ways (RFC 8446 §6.1) ==")
        writer.close()
        await writer.wait_closed()
        server_view = await asyncio.wait_for(server_done, 10)

    write("\n== Negotiated parameters ==")
    write("  client's view:")
    for name, value in _parameters(client_view):
        write(f"    {name:22s} {value}")
    if server_view is not None:
        write("  server's view:")
        for name, value in _parameters(server_view):
            write(f"    {name:22s} {value}")
    write("\n== Result ==")
    write(f"  sent {MESSAGE!r}, echoed {echo!r}")
    write(f"  sent {AFTER_KEY_UPDATE!r} under updated keys, echoed {echo2!r}")
    write(
        f"  key updates: client sent {writer.key_updates_sent}, "
        f"received {writer.key_updates_received}"
    )


DTLS_MESSAGE = b"hello over DTLS 1.3"
DTLS_AFTER_KEY_UPDATE = b"still here after the DTLS KeyUpdate"
# Connection IDs (RFC 9146): each side chooses the CID the other puts on its records.
CLIENT_CID_LENGTH = 4
SERVER_CID_LENGTH = 6
DTLS_TIMEOUT = 30.0


def dtls_text_trace(write: Write, *, prefix: str) -> TraceHook:
    """``TextTrace`` with what DTLS adds: the content type next to each received record's
    number (epoch:sequence, RFC 9147 §4) and the record numbers a received ACK lists (§7)."""
    text = TextTrace(write, prefix=prefix)

    def hook(event: TraceEvent) -> None:
        if event.kind == "record" and event.direction == "received":
            detail = f"{event.content_type} {event.detail}".strip()
            if event.content_type == "ack":
                try:
                    numbers = decode_ack(event.data)
                except RecordError:
                    numbers = []
                detail += " ACK " + " ".join(f"{n.epoch}:{n.seq}" for n in numbers)
            event = dataclasses.replace(event, detail=detail)
        text(event)

    return hook


def _dtls_stats(conn: DTLSConnection) -> list[tuple[str, str]]:
    return [
        ("CID we send", conn.cid_sent.hex() if conn.cid_sent else "-"),
        ("CID we receive", conn.cid_received.hex() if conn.cid_received else "-"),
        ("handshake round trips", str(conn.handshake_round_trips)),
        ("retransmissions", str(conn.retransmissions)),
        ("datagrams sent", str(conn.datagrams_sent)),
        ("datagrams received", str(conn.datagrams_received)),
        ("application bytes sent", str(conn.bytes_sent)),
        ("application bytes received", str(conn.bytes_received)),
    ]


async def _run_dtls_demo(directory: Path, write: Write) -> None:
    loop = asyncio.get_running_loop()
    server_done: asyncio.Future[DTLSStream] = loop.create_future()

    async def serve(stream: DTLSStream) -> None:
        # Echo until the client's close_notify (the connection answers it with ours).
        try:
            while data := await stream.recv():
                await stream.send(data)
        finally:
            if not server_done.done():
                server_done.set_result(stream)

    server_config = ServerConfig(
        certfile=directory / "server.pem",
        keyfile=directory / "server.key",
        alpn=ALPN,
        cid_length=SERVER_CID_LENGTH,
        trace=dtls_text_trace(write, prefix="  server "),
    )
    client_config = ClientConfig(
        cafile=directory / "ca.pem",
        server_name="localhost",
        alpn=ALPN,
        cid_length=CLIENT_CID_LENGTH,
        trace=dtls_text_trace(write, prefix="  client "),
    )
    async with await start_dtls_server(serve, "127.0.0.1", 0, server_config) as server:
        port = server.address[1]
        write(
            f"\n== DTLS handshake (client -> 127.0.0.1:{port}/udp; the server first answers "
            "statelessly with a cookie, RFC 9147 §5.1) =="
        )
        client = await open_dtls_connection(
            "127.0.0.1", port, client_config, handshake_timeout=DTLS_TIMEOUT
        )
        client_view = client.handshake
        assert client_view is not None
        # The server ACKs the client's Finished (§5.7: nothing else answers it).
        await asyncio.wait_for(client.wait_acknowledged(), DTLS_TIMEOUT)

        write(f"\n== Application data: {DTLS_MESSAGE.decode()!r}, echoed back ==")
        await client.send(DTLS_MESSAGE)
        echo = await asyncio.wait_for(client.recv(), DTLS_TIMEOUT)

        write(
            "\n== KeyUpdate (client asks the server to update too; new keys once ACKed, "
            "RFC 9147 §8) =="
        )
        await client.key_update(request=True)
        await asyncio.wait_for(client.wait_acknowledged(), DTLS_TIMEOUT)
        await client.send(DTLS_AFTER_KEY_UPDATE)
        echo2 = await asyncio.wait_for(client.recv(), DTLS_TIMEOUT)

        write("\n== close_notify both ways (alerts are not retransmitted, RFC 9147 §5.10) ==")
        await client.close()
        server_stream = await asyncio.wait_for(server_done, DTLS_TIMEOUT)
        await asyncio.wait_for(server_stream.wait_closed(), DTLS_TIMEOUT)

    write("\n== DTLS negotiated parameters ==")
    views = [("client", client_view, client), ("server", server_stream.handshake, server_stream)]
    for side, view, stream in views:
        write(f"  {side}'s view:")
        if view is not None:
            for name, value in _parameters(view):
                write(f"    {name:26s} {value}")
        for name, value in _dtls_stats(stream.connection):
            write(f"    {name:26s} {value}")
        write(f"    {'key updates sent':26s} {stream.key_updates_sent}")
        write(f"    {'key updates received':26s} {stream.key_updates_received}")
    write("\n== DTLS result ==")
    write(f"  sent {DTLS_MESSAGE!r}, echoed {echo!r}")
    write(f"  sent {DTLS_AFTER_KEY_UPDATE!r} under updated keys, echoed {echo2!r}")


def run_dtls_demo(directory: Path, write: Write) -> None:
    """The DTLS 1.3 section: the same story over UDP, with the PKI in ``directory``."""
    write("")
    write("tls13 demo, part 2: DTLS 1.3 (RFC 9147) over UDP on 127.0.0.1")
    write(
        "trace: records show epoch:sequence numbers; epoch 0 plaintext, 2 handshake keys, "
        "3+ application"
    )
    asyncio.run(_run_dtls_demo(directory, write))


def run_demo(write: Write = print) -> int:
    """Run the whole demo, writing lines with ``write``; returns the exit status."""
    with tempfile.TemporaryDirectory(prefix="tls13-demo-") as tmp:
        directory = Path(tmp)
        generate_pki(directory)
        write("tls13 demo: TLS 1.3 (RFC 8446) between a client and a server on 127.0.0.1")
        write(f"throwaway PKI (ECDSA P-256 CA, server and client certificates) in {directory}")
        write("trace: -> sent, <- received; epoch 0 plaintext, 2 handshake keys, 3+ application")
        asyncio.run(_run_tls_demo(directory, write))
        run_dtls_demo(directory, write)
    return 0


__all__ = ["run_demo", "run_dtls_demo"]
