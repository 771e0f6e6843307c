"""``python -m protocol demo``: a TLS 1.3 handshake you can read.

A throwaway PKI goes into a temporary folder; an asyncio server and an asyncio client on
127.0.0.1 (real sockets, one event loop, so the trace reads in order) run a handshake,
exchange a message, do a KeyUpdate each way, and close with close_notify. Every record and
handshake message is printed as it is sent or received, then the negotiated parameters.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from .config import ClientConfig, ServerConfig
from .events import HandshakeComplete
from .pki import generate_pki
from .trace import TextTrace
from .transport_asyncio import TLSStreamReader, TLSStreamWriter, open_connection, start_server

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


def run_dtls_demo(directory: Path, write: Write) -> None:
    """DTLS 1.3 demo section: HOOK, to be filled in by the lead once DTLS lands.

    It will run the same story over UDP (DTLS 1.3, RFC 9147) with the same PKI. Until then it
    deliberately prints nothing.
    """


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
