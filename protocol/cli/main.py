"""``python -m protocol`` (console script ``tls13``): a TLS 1.3 / DTLS 1.3 test server and client.

    python -m protocol server --listen 127.0.0.1:4433 --cert server.pem --key server.key
    python -m protocol client 127.0.0.1:4433 --cafile ca.pem --servername localhost --send hello
    python -m protocol server --dtls --listen 127.0.0.1:4433 --cert server.pem --key server.key
    python -m protocol client --dtls 127.0.0.1:4433 --cafile ca.pem --cid-length 4 --send hello
    python -m protocol demo
    python -m protocol make-certs DIR

Resumption and 0-RTT (RFC 8446 §2.2, §2.3): the server issues ``--tickets N`` tickets per
connection and takes up to ``--max-early-data N`` bytes of 0-RTT data; the client keeps them
with ``--sess-out FILE`` and resumes with ``--sess-in FILE`` (a session file keyed by server
name and port; each session is used once, so ``--sess-in F --sess-out F`` keeps going), and
``--early-data TEXT`` goes as 0-RTT data when the session allows it:

    python -m protocol server --listen :4433 --cert s.pem --key s.key --max-early-data 16384
    python -m protocol client 127.0.0.1:4433 --cafile ca.pem --sess-out s.json
    python -m protocol client 127.0.0.1:4433 --cafile ca.pem --sess-in s.json \
        --sess-out s.json --early-data hello --summary-json out.json

External PSKs (certificate-less; ``--psk-only`` refuses anything else and uses psk_ke):

    python -m protocol server --listen :4433 --psk-identity id --psk 00112233... --psk-only
    python -m protocol client 127.0.0.1:4433 --psk-identity id --psk 00112233... --psk-modes psk_ke

The server answers concurrently (asyncio) until killed, or one connection with ``--once``, and
prints one line per connection to stderr. The client sends ``--send`` after the handshake,
prints what comes back until the peer closes or ``--timeout`` seconds pass quietly, then sends
close_notify and exits 0. Any failure exits 1 with one line on stderr.

Layout: option parsing builds a config, then a *runner* per transport does the I/O
(``run_tls_client`` / ``serve_tls``). A DTLS transport adds its options in
``_add_dtls_options`` and its runners to ``CLIENT_RUNNERS`` / ``SERVER_RUNNERS``; everything
else (configs, summaries, error lines) is shared.

With ``--dtls`` both run DTLS 1.3 over UDP (RFC 9147): the client with the blocking
``transport_udp.DTLSSocket``, the server with ``transport_udp.serve_dtls`` (one socket, many
associations). Application data over DTLS is not retransmitted: each ``--send`` piece is a
record, and what the network drops stays dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from handshake.alerts import AlertDescription
from handshake.psk import ExternalPsk, Session, parse_psk_modes
from handshake.tickets import TicketKeyRing
from protocol.config import ClientConfig, ServerConfig, parse_cipher_suites, parse_groups
from protocol.errors import ConnectionStateError, ProtocolError
from protocol.events import HandshakeComplete
from protocol.sessions import FileSessionStore
from protocol.trace import JsonLinesTrace
from protocol.transports.tcp_asyncio import TLSStreamReader, TLSStreamWriter, start_server
from protocol.transports.tcp_blocking import TLSEOFError, TLSSocket, wrap_client
from protocol.transports.udp_blocking import (
    DTLSHandler,
    DTLSSession,
    DTLSSocket,
    DTLSTimeoutError,
    bind_udp,
    serve_dtls,
)
from protocol.transports.udp_blocking import connect as dtls_connect

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_IDLE_TIMEOUT = 2.0
# The handshake gets at least this long, whatever the idle timeout (RSA keys, slow peers).
MIN_HANDSHAKE_TIMEOUT = 10.0
SERVER_HANDSHAKE_TIMEOUT = 30.0
# A DTLS association that receives nothing for this long is closed: UDP has no FIN.
DTLS_SERVER_IDLE_TIMEOUT = 60.0
# DTLS sends are cut into pieces of this size, reading what arrived in between.
DTLS_SEND_CHUNK = 16 * 1024
MAX_HTTP_REQUEST = 64 * 1024
SEND_CHUNK = 64 * 1024

# Alerts we send because the peer's certificate did not verify (RFC 8446 §6.2).
_CERTIFICATE_ALERTS = frozenset(
    {
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.unknown_ca,
    }
)

# Alerts a peer sends because our side of the handshake did not satisfy it. A TLS 1.3 server
# can send them after the client's handshake is complete (the client finishes first), so
# they still mean "the handshake failed" to the user.
_HANDSHAKE_ALERTS = _CERTIFICATE_ALERTS | {
    AlertDescription.handshake_failure,
    AlertDescription.certificate_required,
    AlertDescription.decrypt_error,
    AlertDescription.access_denied,
    AlertDescription.insufficient_security,
    AlertDescription.missing_extension,
    AlertDescription.no_application_protocol,
    AlertDescription.protocol_version,
    AlertDescription.illegal_parameter,
    AlertDescription.unrecognized_name,
}


class CLIError(Exception):
    """A failure already phrased as the one line the user sees."""


# -- shared helpers -------------------------------------------------------------------------------


def parse_hostport(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or ``:port`` (with ``default_host``)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        if default_host is None:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
        host = default_host
    return host, int(port_text)


def _listen_address(text: str) -> tuple[str, int]:
    return parse_hostport(text, default_host="0.0.0.0")


def _connect_address(text: str) -> tuple[str, int]:
    return parse_hostport(text)


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: BaseException, *, phase: str) -> str:
    """The one line printed for a failure; ``phase`` is "connect", "handshake" or "data"."""
    failed = "handshake failed" if phase in ("connect", "handshake") else "connection failed"
    if isinstance(exc, CLIError):
        return _one_line(str(exc))
    if isinstance(exc, DTLSTimeoutError):
        return _one_line(exc.reason)  # already says what timed out
    if isinstance(exc, ProtocolError):
        if not exc.by_peer and exc.alert in _CERTIFICATE_ALERTS:
            return _one_line(f"certificate verify failed: {exc.reason}")
        if exc.by_peer:
            if exc.alert in _HANDSHAKE_ALERTS:
                failed = "handshake failed"
            return _one_line(f"{failed}: {exc.reason}")
        if exc.alert is None:
            return _one_line(f"{failed}: {exc.reason}")
        return _one_line(f"{failed}: {exc.reason} (sent alert {exc.alert.name})")
    if isinstance(exc, TLSEOFError):
        return _one_line(f"{failed}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return {"connect": "connect timed out", "handshake": "handshake timed out"}.get(
            phase, "timed out"
        )
    if isinstance(exc, socket.gaierror):
        return _one_line(f"cannot resolve host: {exc.strerror or exc}")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return _one_line(f"cannot read {exc.filename}: {exc.strerror}")
    if isinstance(exc, ConnectionError):
        return _one_line(f"{failed}: {exc.strerror or exc or type(exc).__name__}")
    if isinstance(exc, OSError):
        return _one_line(f"{failed}: {exc.strerror or exc}")
    if isinstance(exc, ValueError):
        return _one_line(f"invalid configuration: {exc}")
    return _one_line(f"{failed}: {type(exc).__name__}: {exc}")


def _validate_names(args: argparse.Namespace) -> None:
    """Fail early, with a clear line, on unknown group or cipher suite names."""
    try:
        parse_groups(_split(args.groups))
    except (ValueError, KeyError) as exc:
        raise CLIError(f"invalid --groups: {_strip_quotes(exc)}") from exc
    try:
        parse_cipher_suites(_split(args.ciphers))
    except (ValueError, KeyError) as exc:
        raise CLIError(f"invalid --ciphers: {_strip_quotes(exc)}") from exc
    try:
        parse_psk_modes(_split(args.psk_modes))
    except ValueError as exc:
        raise CLIError(f"invalid --psk-modes: {exc}") from exc


def external_psk(args: argparse.Namespace) -> ExternalPsk | None:
    """``--psk-identity ID --psk HEX`` (RFC 8446 §2.2; SHA-256, as OpenSSL, GnuTLS and
    wolfSSL use for a bare key), or None."""
    if args.psk is None and args.psk_identity is None:
        return None
    if args.psk is None or args.psk_identity is None:
        raise CLIError("invalid configuration: --psk-identity and --psk go together")
    try:
        key = bytes.fromhex(args.psk)
    except ValueError:
        raise CLIError("invalid --psk: expected the key in hex") from None
    try:
        return ExternalPsk(identity=args.psk_identity.encode(), key=key)
    except ValueError as exc:
        raise CLIError(f"invalid --psk: {exc}") from exc


def _psk_modes(args: argparse.Namespace, default: tuple[str, ...]) -> tuple[str, ...]:
    return _split(args.psk_modes) or default


def _strip_quotes(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument.
    return str(exc.args[0]) if exc.args else str(exc)


def _open_trace(path: Path | None) -> JsonLinesTrace | None:
    return JsonLinesTrace(path) if path is not None else None


def parameters_line(event: HandshakeComplete) -> str:
    """Negotiated parameters, for the server's per-connection line and ``client -v``."""
    parts = [
        event.version,
        event.cipher_suite,
        f"group={event.group or '-'}",
        f"sig={event.signature_scheme or '-'}",
        f"alpn={event.alpn or '-'}",
        f"sni={event.server_name or '-'}",
        f"hrr={'yes' if event.hello_retry else 'no'}",
        f"resumed={'yes' if event.resumed else 'no'}",
    ]
    # Only when a PSK or 0-RTT was involved, so full handshakes keep their familiar line.
    if event.psk_mode is not None:
        parts.append(f"psk={event.psk_mode}")
    if event.early_data != "not_sent":
        parts.append(f"early_data={event.early_data}")
    if event.peer_certificates:
        parts.append(f"peer={event.peer_certificate_subject}")
    return " ".join(parts)


def summary(
    event: HandshakeComplete | None,
    *,
    bytes_sent: int,
    bytes_received: int,
    key_updates_sent: int,
    key_updates_received: int,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``--summary-json`` object; ``extra`` adds transport fields (DTLS counters)."""
    out: dict[str, Any] = {}
    if event is not None:
        out.update(
            version=event.version,
            cipher_suite=event.cipher_suite,
            group=event.group,
            signature_scheme=event.signature_scheme,
            alpn=event.alpn,
            server_name=event.server_name,
            hello_retry=event.hello_retry,
            resumed=event.resumed,
            psk_mode=event.psk_mode,
            early_data=event.early_data,
            peer_certificate_subject=event.peer_certificate_subject,
            client_authenticated=event.client_authenticated,
            peer_record_size_limit=event.peer_record_size_limit,
        )
    out.update(
        bytes_sent=bytes_sent,
        bytes_received=bytes_received,
        key_updates_sent=key_updates_sent,
        key_updates_received=key_updates_received,
    )
    if extra:
        out.update(extra)
    if error is not None:
        out["error"] = error
    return out


# -- client ---------------------------------------------------------------------------------------


def client_config(args: argparse.Namespace) -> ClientConfig:
    _validate_names(args)
    if args.insecure:
        print("warning: --insecure: the server's certificate is NOT verified", file=sys.stderr)
    if (args.cert is None) != (args.key is None):
        raise CLIError("invalid configuration: --cert and --key go together")
    if args.post_handshake_auth and args.transport == "dtls":
        raise CLIError("invalid configuration: --post-handshake-auth is TLS only")
    store = None
    if args.sess_in is not None or args.sess_out is not None:
        store = CLISessionStore(args.sess_in, args.sess_out)
    return ClientConfig(
        session_store=store,
        external_psk=external_psk(args),
        psk_modes=_psk_modes(args, ("psk_dhe_ke",)),
        server_name=args.servername,
        cafile=args.cafile,
        certfile=args.cert,
        keyfile=args.key,
        pins_sha256=tuple(args.pin_sha256 or ()),
        alpn=_split(args.alpn),
        groups=_split(args.groups),
        cipher_suites=_split(args.ciphers),
        record_size_limit=args.record_size_limit,
        keylog=args.keylog,
        trace=args.trace_hook,
        dangerously_skip_certificate_verification=args.insecure,
        post_handshake_auth=args.post_handshake_auth,
        **_dtls_settings(args, server=False),
    )


@dataclass
class ClientOutcome:
    """What a client run did, whatever the transport (for the summary and the exit code)."""

    handshake: HandshakeComplete | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    key_updates_sent: int = 0
    key_updates_received: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # transport fields for the summary
    early_data: bytes = b""  # --early-data, sent as 0-RTT data if the session allows


class CLISessionStore:
    """``--sess-in`` / ``--sess-out``: sessions are taken from one session file and new
    tickets added to the other (they may be the same file). Both are ``FileSessionStore``s,
    keyed by server name and port; a session is removed from the file when used (RFC 8446
    §C.4: a ticket is not reused). A session file that cannot be read, or that holds no
    session for the server, means a full handshake, with a warning."""

    def __init__(self, sess_in: Path | None, sess_out: Path | None) -> None:
        self.sess_in = sess_in
        self.sess_out = sess_out
        self.offered: Session | None = None  # what --sess-in gave this connection
        self.received = 0  # tickets received (and written to --sess-out)

    def take(self, server_name: str, port: int, now: float | None = None) -> Session | None:
        if self.sess_in is None:
            return None
        try:
            session = FileSessionStore(self.sess_in).take(server_name, port, now)
        except FileNotFoundError:
            session = None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _warn(f"--sess-in {self.sess_in}: unusable ({_one_line(str(exc))}); full handshake")
            return None
        if session is None:
            _warn(f"--sess-in {self.sess_in}: no session for {server_name}:{port}; full handshake")
        self.offered = session
        return session

    def add(self, server_name: str, port: int, session: Session) -> None:
        self.received += 1
        if self.sess_out is None:
            return
        try:
            FileSessionStore(self.sess_out).add(server_name, port, session)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # The connection goes on; only the ticket is lost.
            _warn(f"--sess-out {self.sess_out}: cannot keep the ticket ({_one_line(str(exc))})")


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _early_data(args: argparse.Namespace) -> bytes:
    text: str | None = args.early_data
    return text.encode() if text else b""


def _resend_early_data(outcome: ClientOutcome, payload: bytes) -> bytes:
    """What to send after the handshake: the ``--early-data`` text again unless the server
    accepted it as 0-RTT data (RFC 8446 §4.2.10 leaves resending to the application), then
    ``--send``'s payload."""
    handshake = outcome.handshake
    if outcome.early_data and (handshake is None or handshake.early_data != "accepted"):
        return outcome.early_data + payload
    return payload


def _session_fields(config: ClientConfig) -> dict[str, Any]:
    store = config.session_store
    if not isinstance(store, CLISessionStore):
        return {}
    return {"session_offered": store.offered is not None, "tickets_received": store.received}


def _client_payload(args: argparse.Namespace) -> bytes:
    if args.send is None:
        return b""
    if args.send == "-":
        # Read it all before connecting, so a slow stdin cannot idle out the connection.
        return sys.stdin.buffer.read()
    text: str = args.send
    return text.encode()


def run_tls_client(
    args: argparse.Namespace, config: ClientConfig, payload: bytes, outcome: ClientOutcome
) -> None:
    """The TLS drive loop: connect, handshake, send, KeyUpdate, read until closed or idle,
    close_notify. Raises on failure; ``outcome`` holds what happened up to then."""
    host, port = args.address
    handshake_timeout = max(args.timeout, MIN_HANDSHAKE_TIMEOUT)
    phase = "connect"
    tls: TLSSocket | None = None
    try:
        sock = socket.create_connection((host, port), timeout=handshake_timeout)
        phase = "handshake"
        server_name = args.servername if args.servername is not None else host
        tls = wrap_client(
            sock,
            config,
            server_name=server_name,
            early_data=outcome.early_data or None,
            port=port,
            do_handshake=False,
        )
        outcome.handshake = tls.do_handshake()
        phase = "data"
        if args.verbose:
            print(f"connected: {parameters_line(outcome.handshake)}", file=sys.stderr)
        _exchange(tls, args, _resend_early_data(outcome, payload), _send_interleaved)
    except BaseException as exc:
        if tls is not None:
            tls.close()
        raise _PhaseError(exc, phase) from exc
    finally:
        if tls is not None:
            _count(outcome, tls)


def _exchange(
    sock: TLSSocket | DTLSSocket,
    args: argparse.Namespace,
    payload: bytes,
    send_interleaved: Callable[[Any, bytes, BinaryIO], bool],
) -> None:
    """The data phase shared by TLS and DTLS: send (printing what comes back meanwhile),
    KeyUpdate if asked, print until close_notify or idle, then close_notify."""
    out = sys.stdout.buffer
    sock.settimeout(args.timeout)
    peer_closed = send_interleaved(sock, payload, out)
    if args.key_update and not peer_closed:
        sock.key_update(request=True)
    while not peer_closed:
        try:
            data = sock.recv()
        except TimeoutError:
            break  # idle (DTLSTimeoutError, a dead association, is not a TimeoutError)
        if not data:
            break  # close_notify
        out.write(data)
        out.flush()
    sock.close()


def _count(outcome: ClientOutcome, sock: TLSSocket | DTLSSocket) -> None:
    conn = sock.connection
    outcome.bytes_sent = conn.bytes_sent
    outcome.bytes_received = conn.bytes_received
    outcome.key_updates_sent = sock.key_updates_sent
    outcome.key_updates_received = sock.key_updates_received


def _send_interleaved(tls: TLSSocket, payload: bytes, out: BinaryIO) -> bool:
    """Send ``payload`` in 64 KiB pieces, printing whatever has arrived in between, so an
    echoing peer never blocks on us while we block on it. Returns True if the peer closed."""
    view = memoryview(payload)
    for offset in range(0, len(view), SEND_CHUNK):
        tls.sendall(view[offset : offset + SEND_CHUNK])
        if _print_ready(tls, out):
            return True
    return False


def _print_ready(tls: TLSSocket, out: BinaryIO) -> bool:
    """Print the application data that has arrived, without waiting for more (what is
    readable may be only a NewSessionTicket). True if the peer closed."""
    while data := tls.recv_ready():
        out.write(data)
    out.flush()
    return tls.peer_closed


class _PhaseError(Exception):
    """Carries the phase a failure happened in up to the one place that prints it."""

    def __init__(self, exc: BaseException, phase: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.phase = phase


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


def dtls_fields(dtls: DTLSSocket) -> dict[str, Any]:
    """The DTLS part of the client summary (CIDs as hex; null when none is used)."""
    conn = dtls.connection
    return {
        "version": "DTLS 1.3",
        "handshake_complete": conn.handshake_complete,
        "cid_sent": _hex(conn.cid_sent),
        "cid_received": _hex(conn.cid_received),
        "cid_spare": [cid.hex() for cid in conn.spare_connection_ids],
        "retransmissions": conn.retransmissions,
        "datagrams_sent": conn.datagrams_sent,
        "datagrams_received": conn.datagrams_received,
        "handshake_round_trips": conn.handshake_round_trips,
    }


def dtls_line(fields: dict[str, Any]) -> str:
    return (
        f"cid_sent={fields['cid_sent'] or '-'} cid_received={fields['cid_received'] or '-'} "
        f"round_trips={fields['handshake_round_trips']} "
        f"retransmissions={fields['retransmissions']}"
    )


def run_dtls_client(
    args: argparse.Namespace, config: ClientConfig, payload: bytes, outcome: ClientOutcome
) -> None:
    """The DTLS drive loop, the same story as ``run_tls_client`` over UDP."""
    host, port = args.address
    handshake_timeout = max(args.timeout, MIN_HANDSHAKE_TIMEOUT)
    phase = "connect"
    dtls: DTLSSocket | None = None
    try:
        server_name = args.servername if args.servername is not None else host
        dtls = dtls_connect(
            host,
            port,
            config,
            server_name=server_name,
            early_data=outcome.early_data or None,
            do_handshake=False,
        )
        phase = "handshake"
        outcome.handshake = dtls.do_handshake(handshake_timeout)
        phase = "data"
        if args.request_cids:
            dtls.connection.request_connection_ids(args.request_cids)
        if args.verbose:
            line = f"{parameters_line(outcome.handshake)} {dtls_line(dtls_fields(dtls))}"
            print(f"connected: {line}", file=sys.stderr)
        _exchange(dtls, args, _resend_early_data(outcome, payload), _send_dtls_interleaved)
    except BaseException as exc:
        if dtls is not None:
            dtls.close()
        raise _PhaseError(exc, phase) from exc
    finally:
        if dtls is not None:
            _count(outcome, dtls)
            outcome.extra.update(dtls_fields(dtls))


def _send_dtls_interleaved(dtls: DTLSSocket, payload: bytes, out: BinaryIO) -> bool:
    """Send ``payload`` in pieces, printing what arrived in between (an echo comes back
    while we send). Returns True if the peer closed."""
    view = memoryview(payload)
    for offset in range(0, len(view), DTLS_SEND_CHUNK):
        dtls.send(view[offset : offset + DTLS_SEND_CHUNK])
        dtls.process(0.0)
        while dtls.pending():
            out.write(dtls.recv())
        out.flush()
        if dtls.peer_closed:
            return True
    return False


ClientRunner = Callable[[argparse.Namespace, ClientConfig, bytes, ClientOutcome], None]
CLIENT_RUNNERS: dict[str, ClientRunner] = {"tls": run_tls_client, "dtls": run_dtls_client}


def cmd_client(args: argparse.Namespace) -> int:
    outcome = ClientOutcome(early_data=_early_data(args))
    trace = None
    config: ClientConfig | None = None
    try:
        trace = _open_trace(args.trace)
        args.trace_hook = trace
        config = client_config(args)
        payload = _client_payload(args)
        CLIENT_RUNNERS[args.transport](args, config, payload, outcome)
    except _PhaseError as failure:
        if isinstance(failure.exc, KeyboardInterrupt):
            raise failure.exc from None
        outcome.error = describe_error(failure.exc, phase=failure.phase)
    except (CLIError, OSError, ValueError) as exc:
        outcome.error = describe_error(exc, phase="connect")
    finally:
        if trace is not None:
            trace.close()
    if config is not None:
        outcome.extra.update(_session_fields(config))
    if args.summary_json is not None:
        data = summary(
            outcome.handshake,
            bytes_sent=outcome.bytes_sent,
            bytes_received=outcome.bytes_received,
            key_updates_sent=outcome.key_updates_sent,
            key_updates_received=outcome.key_updates_received,
            error=outcome.error,
            extra=outcome.extra,
        )
        Path(args.summary_json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if outcome.error is not None:
        print(outcome.error, file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# -- server ---------------------------------------------------------------------------------------


def server_config(args: argparse.Namespace) -> ServerConfig:
    _validate_names(args)
    if args.verify_client and args.cafile is None:
        raise CLIError("invalid configuration: --verify-client needs --cafile")
    if args.post_handshake_auth and (args.transport == "dtls" or args.cafile is None):
        raise CLIError(
            "invalid configuration: --post-handshake-auth is TLS only and needs --cafile"
        )
    if (args.cert is None) != (args.key is None):
        raise CLIError("invalid configuration: --cert and --key go together")
    psk = external_psk(args)
    if args.cert is None and psk is None:
        raise CLIError("invalid configuration: the server needs --cert and --key, or a --psk")
    if args.psk_only and psk is None:
        raise CLIError("invalid configuration: --psk-only needs --psk-identity and --psk")
    settings: dict[str, Any] = {}
    if args.tickets is not None:
        settings["tickets"] = args.tickets
    if args.ticket_key is not None:
        try:
            key = bytes.fromhex(args.ticket_key)
            settings["ticket_keys"] = TicketKeyRing([key])
        except ValueError:
            raise CLIError("invalid --ticket-key: expected 32 bytes in hex") from None
    return ServerConfig(
        max_early_data=args.max_early_data,
        external_psks={psk.identity: psk} if psk is not None else {},
        psk_only=args.psk_only,
        # RFC 8446 §4.2.9: psk_ke (no (EC)DHE, no forward secrecy) only when asked for.
        psk_modes=_psk_modes(args, ("psk_ke",) if args.psk_only else ("psk_dhe_ke",)),
        **settings,
        certfile=args.cert,
        keyfile=args.key,
        cafile=args.cafile,
        # With --post-handshake-auth the certificate is asked for after the handshake.
        verify_client=args.verify_client and not args.post_handshake_auth,
        request_client_certificate=args.request_cert,
        always_hello_retry=args.hrr,
        tls_cookie=args.hrr,
        alpn=_split(args.alpn),
        groups=_split(args.groups),
        cipher_suites=_split(args.ciphers),
        record_size_limit=args.record_size_limit,
        keylog=args.keylog,
        trace=args.trace_hook,
        **_dtls_settings(args, server=True),
    )


def _dtls_settings(args: argparse.Namespace, *, server: bool) -> dict[str, Any]:
    """Config fields from the DTLS options (only those given: the rest keep the defaults)."""
    if args.transport != "dtls":
        return {}
    settings: dict[str, Any] = {}
    if args.mtu is not None:
        settings["mtu"] = args.mtu
    if args.retransmit_initial is not None:
        settings["retransmit_initial"] = args.retransmit_initial / 1000.0  # ms -> s
    if args.max_retransmits is not None:
        settings["max_retransmits"] = args.max_retransmits
    if args.cid_length is not None:
        settings["cid_length"] = args.cid_length
    if server and args.no_cookie:
        settings["dtls_cookie"] = False
    return settings


def _peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = peername[0]
        return f"[{host}]:{peername[1]}" if ":" in str(host) else f"{host}:{peername[1]}"
    return str(peername or "?")


def _www_page(event: HandshakeComplete | None) -> bytes:
    rows = ""
    version = event.version if event is not None else "TLS 1.3"
    if event is not None:
        fields = summary(
            event, bytes_sent=0, bytes_received=0, key_updates_sent=0, key_updates_received=0
        )
        for key in (
            "version",
            "cipher_suite",
            "group",
            "signature_scheme",
            "alpn",
            "server_name",
            "hello_retry",
            "resumed",
            "psk_mode",
            "early_data",
            "peer_certificate_subject",
        ):
            rows += f"<tr><td>{key}</td><td>{html.escape(str(fields.get(key)))}</td></tr>\n"
    body = (
        "<!DOCTYPE html>\n<html><head><title>tls13</title></head><body>\n"
        f"<h1>tls13: {html.escape(version)} connection established</h1>\n"
        f"<table>\n{rows}</table>\n</body></html>\n"
    ).encode()
    head = (
        "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


_BAD_REQUEST = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    b"Connection: close\r\n\r\nbad request\n"
)


async def _serve_echo(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _serve_www(reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
    request = bytearray()
    while b"\r\n\r\n" not in request and b"\n\n" not in request:
        data = await reader.read(65536)
        if not data:
            break
        request += data
        if len(request) > MAX_HTTP_REQUEST:
            break
    ok = request.startswith(b"GET ")
    writer.write(_www_page(writer.handshake) if ok else _BAD_REQUEST)
    await writer.drain()


class TLSServerRun:
    """One ``server`` invocation over TLS: per-connection handling, lines, ``--once``."""

    def __init__(self, args: argparse.Namespace, config: ServerConfig) -> None:
        self.args = args
        self.config = config
        self.finished: asyncio.Event | None = None
        self.failures = 0
        self.served = 0

    def _log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def _connection_done(self, ok: bool) -> None:
        self.served += 1
        if not ok:
            self.failures += 1
        if self.args.once and self.finished is not None:
            self.finished.set()

    def on_handshake_error(self, exc: BaseException, peername: Any) -> None:
        self._log(f"{_peer(peername)} {describe_error(exc, phase='handshake')}")
        self._connection_done(False)

    async def handle(self, reader: TLSStreamReader, writer: TLSStreamWriter) -> None:
        peer = _peer(writer.get_extra_info("peername"))
        event = writer.handshake
        if event is not None:
            self._log(f"{peer} {parameters_line(event)}")
        ok = True
        try:
            if self.args.key_update:
                writer.key_update(request=True)
            if self.args.post_handshake_auth:
                await self._authenticate_client(peer, writer)
            if self.args.mode == "www":
                await _serve_www(reader, writer)
            else:
                await _serve_echo(reader, writer)
        except ConnectionStateError:
            pass  # the peer's close_notify came with its data: nothing more can be sent
        except (ProtocolError, TLSEOFError, ConnectionError, TimeoutError) as exc:
            ok = False
            self._log(f"{peer} {describe_error(exc, phase='data')}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ProtocolError):
                await writer.wait_closed()
            self._connection_done(ok)

    async def _authenticate_client(self, peer: str, writer: TLSStreamWriter) -> None:
        """--post-handshake-auth: a CertificateRequest right after the handshake (RFC 8446
        §4.6.2); with --verify-client an answer without a certificate ends the connection."""
        if not writer.connection.post_handshake_auth_offered:  # type: ignore[attr-defined]
            if self.args.verify_client:
                # The handshake asked for nothing: without the extension there is no way to
                # get the required certificate, so the client is not served.
                raise ConnectionError(
                    "post-handshake authentication required but not offered by the client"
                )
            self._log(f"{peer} post-handshake authentication: not offered by the client")
            return
        answer = await writer.request_client_certificate(required=self.args.verify_client)
        self._log(f"{peer} post-handshake authentication: {answer.subject or 'no certificate'}")

    async def serve(self) -> int:
        self.finished = asyncio.Event()
        host, port = self.args.listen
        server = await start_server(
            self.handle,
            host,
            port,
            self.config,
            handshake_timeout=SERVER_HANDSHAKE_TIMEOUT,
            on_handshake_error=self.on_handshake_error,
        )
        bound = [_peer(s.getsockname()) for s in server.sockets]
        self._log(f"listening on {', '.join(bound)}")
        async with server:
            if self.args.once:
                await self.finished.wait()
                return EXIT_FAILURE if self.failures else EXIT_OK
            await server.serve_forever()
        return EXIT_OK


def serve_tls(args: argparse.Namespace, config: ServerConfig) -> int:
    return asyncio.run(TLSServerRun(args, config).serve())


class DTLSServerHandler(DTLSHandler):
    """One ``server --dtls`` invocation's per-association behaviour: echo or www, the
    optional KeyUpdate, one stderr line per association (more for failures)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def _log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def handshake_complete(self, session: DTLSSession) -> None:
        assert session.handshake is not None
        conn = session.connection
        details = (
            f"cid_sent={_hex(conn.cid_sent) or '-'} cid_received={_hex(conn.cid_received) or '-'}"
        )
        self._log(f"{_peer(session.address)} {parameters_line(session.handshake)} {details}")
        if self.args.key_update:
            session.key_update(request=True)

    def data_received(self, session: DTLSSession, data: bytes) -> None:
        if not session.open:
            return  # the peer's close_notify came with its data: nothing more can be sent
        if self.args.mode != "www":
            session.send(data)
            return
        request: bytearray = session.data.setdefault("request", bytearray())
        request += data
        if b"\r\n\r\n" in request or b"\n\n" in request or len(request) > MAX_HTTP_REQUEST:
            ok = request.startswith(b"GET ")
            session.send(_www_page(session.handshake) if ok else _BAD_REQUEST)
            session.close()

    def session_ended(self, session: DTLSSession, error: BaseException | None) -> None:
        if error is not None:
            phase = "handshake" if session.handshake is None else "data"
            self._log(f"{_peer(session.address)} {describe_error(error, phase=phase)}")


def serve_dtls_cli(args: argparse.Namespace, config: ServerConfig) -> int:
    """``server --dtls``: one UDP socket, every association on it, until killed (or the
    first association ends, with ``--once``)."""
    host, port = args.listen
    sock = bind_udp(host, port)
    with sock:
        print(f"listening on {_peer(sock.getsockname())}", file=sys.stderr, flush=True)
        stats = serve_dtls(
            sock,
            config,
            DTLSServerHandler(args),
            once=args.once,
            idle_timeout=DTLS_SERVER_IDLE_TIMEOUT,
        )
    return EXIT_FAILURE if args.once and stats.failed else EXIT_OK


ServerRunner = Callable[[argparse.Namespace, ServerConfig], int]
SERVER_RUNNERS: dict[str, ServerRunner] = {"tls": serve_tls, "dtls": serve_dtls_cli}


def cmd_server(args: argparse.Namespace) -> int:
    trace = None
    try:
        trace = _open_trace(args.trace)
        args.trace_hook = trace
        config = server_config(args)
        return SERVER_RUNNERS[args.transport](args, config)
    except KeyboardInterrupt:
        return 130
    except (CLIError, OSError, ValueError) as exc:
        line = describe_error(exc, phase="config")
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
            line = _one_line(
                f"cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror or exc}"
            )
        print(line, file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if trace is not None:
            trace.close()


# -- demo and make-certs --------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from protocol.cli.demo import run_demo

    return run_demo()


def cmd_make_certs(argv: Sequence[str]) -> int:
    from protocol.pki import main_make_certs

    return main_make_certs(list(argv))


# -- parser ---------------------------------------------------------------------------------------


def _add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpn", metavar="P1,P2", help="ALPN protocols, in preference order")
    p.add_argument(
        "--groups",
        metavar="G1,G2",
        help="key exchange groups (IANA names: x25519, secp256r1, X25519MLKEM768, ...)",
    )
    p.add_argument(
        "--ciphers", metavar="S1,S2", help="cipher suites (IANA names: TLS_AES_128_GCM_SHA256, ...)"
    )
    p.add_argument(
        "--record-size-limit",
        type=int,
        metavar="N",
        help="record_size_limit to announce (RFC 8449, 64..16385)",
    )
    p.add_argument(
        "--keylog",
        type=Path,
        metavar="FILE",
        help="append secrets in NSS key log format (for Wireshark)",
    )
    p.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="append every record and handshake message as JSON lines",
    )
    # TLS unless --dtls (from _add_dtls_options) sets transport="dtls".
    p.set_defaults(transport="tls", trace_hook=None)


def _add_psk_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--psk-identity", metavar="ID", help="external PSK identity (with --psk)")
    group.add_argument("--psk", metavar="HEX", help="external PSK, in hex (SHA-256)")
    group.add_argument(
        "--psk-modes",
        metavar="M1,M2",
        help="PSK key exchange modes, preferred first: psk_dhe_ke (default), psk_ke",
    )


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, got {value}")
        return value

    return parse


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not 0 < value <= 3_600_000:
        raise argparse.ArgumentTypeError(f"must be within 0..3600000 ms, got {text}")
    return value


# The options that only mean something with --dtls (dest names), and the option spelled out.
_DTLS_ONLY = {
    "cid_length": "--cid-length",
    "mtu": "--mtu",
    "retransmit_initial": "--retransmit-initial",
    "max_retransmits": "--max-retransmits",
    "no_cookie": "--no-cookie",
    "request_cids": "--request-cids",
}


def _add_dtls_options(p: argparse.ArgumentParser, *, server: bool = False) -> None:
    """--dtls (``transport="dtls"``) and the options only the DTLS runners read."""
    group = p.add_argument_group("DTLS 1.3 (RFC 9147) over UDP")
    group.add_argument(
        "--dtls",
        dest="transport",
        action="store_const",
        const="dtls",
        default="tls",
        help="DTLS 1.3 over UDP instead of TLS 1.3 over TCP",
    )
    group.add_argument(
        "--cid-length",
        type=_int_in(0, 255),
        metavar="N",
        help="ask the peer for a Connection ID of N bytes (RFC 9146); 0: none for us, "
        "but use the peer's",
    )
    group.add_argument(
        "--mtu",
        type=_int_in(256, 65535),
        metavar="N",
        help="path MTU: datagrams stay within N minus 48 bytes (default 1280)",
    )
    group.add_argument(
        "--retransmit-initial",
        type=_milliseconds,
        metavar="MS",
        help="initial retransmission timeout in milliseconds, doubled per retry (default 1000)",
    )
    group.add_argument(
        "--max-retransmits",
        type=_int_in(0, 1000),
        metavar="N",
        help="retransmissions of one flight before giving up (default 6)",
    )
    if not server:
        group.add_argument(
            "--request-cids",
            type=_int_in(1, 255),
            metavar="N",
            help="after the handshake ask the server for N spare Connection IDs "
            "(RequestConnectionId, RFC 9147 §9); they show as cid_spare in the summary",
        )
    if server:
        group.add_argument(
            "--no-cookie",
            action="store_true",
            default=None,
            help="skip the stateless cookie exchange (RFC 9147 §5.1; saves a round trip)",
        )


def _check_dtls_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "transport", "tls") == "dtls":
        return
    for dest, option in _DTLS_ONLY.items():
        if getattr(args, dest, None) is not None:
            parser.error(f"{option} needs --dtls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m protocol",
        description="tls13: a pure-Python TLS 1.3 / DTLS 1.3 server, client and demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = sub.add_parser("server", help="run a TLS 1.3 or DTLS 1.3 server (echo or www)")
    server.add_argument("--listen", type=_listen_address, required=True, metavar="HOST:PORT")
    server.add_argument(
        "--cert",
        type=Path,
        metavar="PEM",
        help="certificate chain, leaf first (optional with --psk)",
    )
    server.add_argument("--key", type=Path, metavar="PEM", help="private key")
    server.add_argument("--cafile", type=Path, metavar="PEM", help="roots for client certificates")
    server.add_argument(
        "--verify-client",
        action="store_true",
        help="require a client certificate that verifies against --cafile",
    )
    server.add_argument(
        "--request-cert", action="store_true", help="ask for a client certificate but accept none"
    )
    server.add_argument(
        "--post-handshake-auth",
        action="store_true",
        help="TLS: ask for the client's certificate after the handshake (RFC 8446 §4.6.2), "
        "when the client offers it; --verify-client makes the answer mandatory",
    )
    server.add_argument(
        "--mode",
        choices=("echo", "www"),
        default="echo",
        help="echo data back (default), or answer an HTTP GET with a page",
    )
    server.add_argument(
        "--once", action="store_true", help="serve one connection (DTLS: association), then exit"
    )
    server.add_argument(
        "--hrr",
        action="store_true",
        help="always answer with a HelloRetryRequest carrying a cookie",
    )
    server.add_argument(
        "--key-update",
        action="store_true",
        help="send a KeyUpdate (update_requested) after the handshake",
    )
    resumption = server.add_argument_group("resumption, PSKs and 0-RTT (RFC 8446 §2.2, §2.3)")
    resumption.add_argument(
        "--tickets",
        type=_int_in(0, 255),
        metavar="N",
        help="NewSessionTickets sent after each handshake (default 2; 0: none)",
    )
    resumption.add_argument(
        "--max-early-data",
        type=_int_in(0, 2**32 - 1),
        default=0,
        metavar="N",
        help="accept up to N bytes of 0-RTT data per connection (default 0: refuse it); "
        "0-RTT data can be replayed (RFC 8446 §8)",
    )
    resumption.add_argument(
        "--ticket-key",
        metavar="HEX",
        help="32-byte ticket key in hex (default: random per run): servers sharing it "
        "resume each other's tickets",
    )
    resumption.add_argument(
        "--psk-only",
        action="store_true",
        help="refuse handshakes without an external PSK; psk_ke unless --psk-modes says",
    )
    _add_psk_options(resumption)
    _add_common_options(server)
    _add_dtls_options(server, server=True)
    server.set_defaults(func=cmd_server)

    client = sub.add_parser("client", help="connect to a TLS 1.3 or DTLS 1.3 server")
    client.add_argument("address", type=_connect_address, metavar="HOST:PORT")
    client.add_argument(
        "--cafile", type=Path, metavar="PEM", help="trusted roots (default: the system store)"
    )
    client.add_argument(
        "--servername", metavar="NAME", help="name to send (SNI) and verify (default: HOST)"
    )
    client.add_argument("--cert", type=Path, metavar="PEM", help="client certificate chain")
    client.add_argument("--key", type=Path, metavar="PEM", help="client private key")
    client.add_argument(
        "--post-handshake-auth",
        action="store_true",
        help="TLS: offer post-handshake authentication and answer a later request with "
        "--cert/--key (RFC 8446 §4.6.2)",
    )
    client.add_argument(
        "--pin-sha256",
        action="append",
        metavar="B64",
        help="base64 SHA-256 of a SubjectPublicKeyInfo in the chain (repeatable)",
    )
    client.add_argument(
        "--send", metavar="TEXT", help="data to send after the handshake; - = stdin"
    )
    client.add_argument(
        "--key-update",
        action="store_true",
        help="send a KeyUpdate (update_requested) after the data",
    )
    client.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"stop reading after this long without data (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    client.add_argument(
        "--insecure",
        action="store_true",
        help="do NOT verify the server's certificate (tests only)",
    )
    client.add_argument(
        "--summary-json",
        type=Path,
        metavar="FILE",
        help="write the negotiated parameters and counters as JSON",
    )
    client.add_argument(
        "-v", "--verbose", action="store_true", help="print the negotiated parameters to stderr"
    )
    resumption = client.add_argument_group("resumption, PSKs and 0-RTT (RFC 8446 §2.2, §2.3)")
    resumption.add_argument(
        "--sess-out",
        type=Path,
        metavar="FILE",
        help="keep the server's tickets in FILE (a session file, mode 0600: it holds keys)",
    )
    resumption.add_argument(
        "--sess-in",
        type=Path,
        metavar="FILE",
        help="resume with a session from FILE for this server name and port (used once)",
    )
    resumption.add_argument(
        "--early-data",
        metavar="TEXT",
        help="send TEXT as 0-RTT data when the session allows it (else, or when the server "
        "rejects it, after the handshake); it can be replayed (RFC 8446 §8)",
    )
    _add_psk_options(resumption)
    _add_common_options(client)
    _add_dtls_options(client)
    client.set_defaults(func=cmd_client)

    demo = sub.add_parser("demo", help="loopback handshake with a readable trace")
    demo.set_defaults(func=cmd_demo)

    # Parsed by protocol.pki itself (main() hands it the rest of the command line).
    sub.add_parser(
        "make-certs", help="write a throwaway CA, server and client certificates", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "make-certs":
        return cmd_make_certs(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    _check_dtls_options(parser, args)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())
