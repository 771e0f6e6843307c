"""The in-process peers: Python's ``ssl`` (OpenSSL 3.0), pyOpenSSL (``cryptography``'s bundled
OpenSSL 4.0) and tlslite-ng, each in a thread over a loopback TCP socket.

Their server echoes until the peer closes, then closes with close_notify; their client runs
the scenario's connections (ping, second ping after our KeyUpdate, resumption with the
session of the first connection, 0-RTT where the library can, bulk echo) and reports the
first exception as the cell's failure.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..peers import PeerInfo
from .base import (
    EARLY_DATA,
    HRR_GROUP,
    PSK_IDENTITY,
    PSK_KEY,
    RSL_PAYLOAD,
    SERVER_NAME,
    Cell,
    CellFailure,
    EchoApp,
    Peer,
    PeerClient,
    PeerServer,
    Role,
    Spec,
    random_tag,
)
from .process import HOST

PY_CURVES = {"secp256r1": "prime256v1", "secp384r1": "secp384r1", "secp521r1": "secp521r1"}
OPENSSL_GROUPS = {
    "x25519": "X25519",
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
    "x448": "X448",
    "X25519MLKEM768": "X25519MLKEM768",
}
TLSLITE_SUITES = {
    "TLS_AES_128_GCM_SHA256": "aes128gcm",
    "TLS_AES_256_GCM_SHA384": "aes256gcm",
    "TLS_CHACHA20_POLY1305_SHA256": "chacha20-poly1305",
    "TLS_AES_128_CCM_SHA256": "aes128ccm",
    "TLS_AES_128_CCM_8_SHA256": "aes128ccm_8",
}
TLSLITE_GROUPS = ("x25519", "x448", "secp256r1", "secp384r1", "secp521r1")


class Session(ABC):
    """What an in-process connection offers the generic loops."""

    @abstractmethod
    def recv(self) -> bytes: ...

    @abstractmethod
    def send(self, data: bytes) -> None: ...

    def key_update(self) -> None:
        raise CellFailure("this library cannot send KeyUpdate")

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def resumed(self) -> bool: ...

    @abstractmethod
    def session(self) -> Any: ...


def recv_exactly(conn: Session, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = conn.recv()
        if not data:
            break
        got += data
    return bytes(got)


class InProcessServer(PeerServer):
    """A library's server in a thread: accepts ``spec.connections`` connections and echoes."""

    def __init__(self, cell: Cell, spec: Spec, accept: Callable[[socket.socket, int], Session]):
        super().__init__(cell.ports.take(), EchoApp())
        self.bulk_mode = "echo"
        self.cell = cell
        self.spec = spec
        self.accept = accept
        self.errors: list[str] = []
        self.key_update_wanted = threading.Event()
        self.listener = socket.create_server((HOST, self.port))
        self.listener.settimeout(cell.timeout * 2)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for index in range(self.spec.connections):
            try:
                sock, _ = self.listener.accept()
            except OSError as exc:
                self.errors.append(f"accept: {exc}")
                return
            sock.settimeout(self.cell.timeout * 3)
            try:
                conn = self.accept(sock, index)
                while data := conn.recv():
                    if self.key_update_wanted.is_set():
                        self.key_update_wanted.clear()
                        conn.key_update()
                    conn.send(data)
                with contextlib.suppress(Exception):
                    conn.close()
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(OSError):
                    sock.close()

    def finish(self, timeout: float) -> str:
        self.thread.join(timeout)
        if self.errors:
            raise CellFailure(f"{self.label()} server: {self.errors[0]}")
        return ""

    def label(self) -> str:
        return "peer"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()


class InProcessClient(PeerClient):
    """A library's client in a thread; ``connect(index, session)`` makes one connection."""

    def __init__(
        self,
        cell: Cell,
        spec: Spec,
        port: int,
        connect: Callable[[socket.socket, int, Any], Session],
        *,
        can_key_update: bool,
        bulk_limit: int = 1 << 30,
    ) -> None:
        super().__init__(None)
        self.cell = cell
        self.spec = spec
        self.port = port
        self.connect = connect
        self.can_key_update = can_key_update
        self.bulk_limit = bulk_limit
        self.error: BaseException | None = None
        self.notes: list[str] = []
        self.thread = threading.Thread(target=self._guarded, daemon=True)
        self.thread.start()

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _ping(self, conn: Session, size: int = 0) -> None:
        request = f"ping-{random_tag(size)}\n".encode()
        conn.send(request)
        got = recv_exactly(conn, len(request))
        if got != request:
            raise CellFailure(f"echo mismatch: sent {request[:40]!r}, got {got[:40]!r}")

    def _run(self) -> None:
        spec = self.spec
        saved: Any = None
        for index in range(spec.connections):
            sock = socket.create_connection((HOST, self.port), timeout=self.cell.timeout * 3)
            try:
                conn = self.connect(sock, index, saved)
                if spec.bulk:
                    payload = secrets.token_bytes(min(spec.bulk, self.bulk_limit))
                    sender = threading.Thread(target=conn.send, args=(payload,), daemon=True)
                    sender.start()
                    got = recv_exactly(conn, len(payload))
                    sender.join(self.cell.timeout)
                    if got != payload:
                        raise CellFailure(f"bulk echo: {len(got)} of {len(payload)} bytes back")
                    self.notes.append(f"{len(payload) >> 10} KiB each way")
                else:
                    self._ping(conn, RSL_PAYLOAD if spec.record_size_limit else 0)
                if spec.key_update:
                    self._ping(conn)  # after our server's KeyUpdate(update_requested)
                    if self.can_key_update:
                        conn.key_update()
                        self._ping(conn)
                        self.notes.append("peer's KeyUpdate sent")
                if index == 0 and spec.connections == 2:
                    saved = conn.session()
                if index == 1 and spec.resumption and not conn.resumed():
                    raise CellFailure("the library did not resume")
                conn.close()
            finally:
                with contextlib.suppress(OSError):
                    sock.close()

    def finish(self, timeout: float) -> str:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise CellFailure("the in-process client did not finish")
        if isinstance(self.error, CellFailure):
            raise self.error
        if self.error is not None:
            raise CellFailure(f"{type(self.error).__name__}: {self.error}")
        return "; ".join(self.notes)


# -- Python ssl ------------------------------------------------------------------------------------


class _SSLSession(Session):
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock

    def recv(self) -> bytes:
        try:
            return self.sock.recv(256 * 1024)
        except ssl.SSLZeroReturnError:
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            self.sock.unwrap()

    def resumed(self) -> bool:
        return bool(self.sock.session_reused)

    def session(self) -> Any:
        return self.sock.session


class PythonSSL(Peer):
    name = "python-ssl"
    tls = True
    dtls = False

    def __init__(self) -> None:
        version = (
            ssl.OPENSSL_VERSION.split()[1] if ssl.OPENSSL_VERSION.startswith("OpenSSL") else "?"
        )
        super().__init__(f"{version} (Python ssl)")
        self.label = f"Python ssl ({ssl.OPENSSL_VERSION.split(' ')[0]} {version})"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.suite and "CCM" in spec.suite:
            return "Python's ssl cannot enable TLS 1.3 CCM suites (no set_ciphersuites)"
        if spec.group == "X25519MLKEM768":
            return "OpenSSL 3.0 has no X25519MLKEM768"
        if spec.psk:
            return "Python 3.11's ssl has no PSK API (3.13+)"
        if spec.early_data:
            return "Python's ssl has no 0-RTT API"
        return None

    def _context(self, cell: Cell, spec: Spec, server: bool) -> ssl.SSLContext:
        pki = cell.pki
        if server:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
            if spec.mtls:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(pki / "ca.pem")
        else:
            ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            if spec.mtls:
                ctx.load_cert_chain(pki / "client.pem", pki / "client.key")
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        curve = PY_CURVES.get(spec.group or "") or (HRR_GROUP if spec.hrr and server else None)
        if curve:
            ctx.set_ecdh_curve(curve)  # OpenSSL 3: that curve only
        if spec.alpn:
            ctx.set_alpn_protocols(list(reversed(spec.alpn)) if server else ["http/1.1"])
        return ctx

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        ctx = self._context(cell, spec, server=True)

        def accept(sock: socket.socket, index: int) -> Session:
            return _SSLSession(ctx.wrap_socket(sock, server_side=True))

        return InProcessServer(cell, spec, accept)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        ctx = self._context(cell, spec, server=False)

        def connect(sock: socket.socket, index: int, saved: Any) -> Session:
            return _SSLSession(ctx.wrap_socket(sock, server_hostname=SERVER_NAME, session=saved))

        return InProcessClient(cell, spec, port, connect, can_key_update=False)


# -- pyOpenSSL -------------------------------------------------------------------------------------


class _PyOpenSSLSession(Session):
    def __init__(self, conn: Any, SSL: Any) -> None:
        self.conn = conn
        self.SSL = SSL
        self.early = b""

    def recv(self) -> bytes:
        try:
            data: bytes = self.conn.recv(256 * 1024)
            return data
        except self.SSL.ZeroReturnError:
            return b""
        except self.SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:  # unexpected EOF
                return b""
            raise

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.shutdown()
            with contextlib.suppress(Exception):
                self.conn.recv(1)

    def resumed(self) -> bool:
        from OpenSSL._util import lib

        return bool(lib.SSL_session_reused(self.conn._ssl))

    def session(self) -> Any:
        return self.conn.get_session()


class PyOpenSSL(Peer):
    name = "pyopenssl"
    tls = True
    dtls = False

    def __init__(self, info: PeerInfo | None) -> None:
        openssl = info.details.get("openssl_version", "") if info else ""
        version = info.version if info else "?"
        short = openssl.split()[1] if len(openssl.split()) > 1 else "?"
        super().__init__(f"{version} (OpenSSL {short})")
        self.label = f"pyOpenSSL {version} (OpenSSL {short})"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.psk:
            return "pyOpenSSL exposes no TLS 1.3 PSK callbacks"
        if spec.early_data and role == "server" and spec.early_data == "reject":
            return None
        return None

    def our_client_options(self, spec: Spec) -> dict[str, object]:
        if spec.early_data and not spec.group:
            # OpenSSL 4.0 prefers X25519MLKEM768 and answers an x25519 share with HRR, which
            # drops 0-RTT (RFC 8446 §4.2.10) and, with early data offered, the ticket too
            return {"groups": ("X25519MLKEM768", "x25519")}
        return {}

    def _context(self, cell: Cell, spec: Spec, server: bool) -> Any:
        from OpenSSL import SSL
        from OpenSSL._util import lib

        pki = cell.pki
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
        if server:
            ctx.use_certificate_chain_file(str(pki / "server.pem"))
            ctx.use_privatekey_file(str(pki / "server.key"))
            if spec.mtls:
                ctx.load_verify_locations(str(pki / "ca.pem"))
                ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
            if spec.early_data:
                # tickets allow 0-RTT; only the "accept" server reads it (SSL_read_early_data)
                lib.SSL_CTX_set_max_early_data(ctx._context, 16384)
        else:
            ctx.load_verify_locations(str(pki / "ca.pem"))
            ctx.set_verify(SSL.VERIFY_PEER)
            if spec.mtls:
                ctx.use_certificate_chain_file(str(pki / "client.pem"))
                ctx.use_privatekey_file(str(pki / "client.key"))
        suites = (
            spec.suite
            or "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"
        )
        ctx.set_tls13_ciphersuites(suites.encode())
        if "CCM_8" in suites:
            # OpenSSL 4.0's default security level excludes CCM_8 (64-bit tags)
            ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        groups = None
        if spec.group:
            groups = OPENSSL_GROUPS[spec.group]
        elif spec.hrr:
            groups = "P-384" if server else "X25519:P-384"
        if groups and lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode()) != 1:
            raise CellFailure(f"pyOpenSSL refused groups {groups}")
        if spec.alpn:
            if server:
                offered = [p.encode() for p in reversed(spec.alpn)]

                def choose(conn: Any, protos: list[bytes]) -> bytes:
                    return next((p for p in offered if p in protos), b"")

                ctx.set_alpn_select_callback(choose)
            else:
                ctx.set_alpn_protos([b"http/1.1"])
        return ctx

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        from OpenSSL import SSL

        ctx = self._context(cell, spec, server=True)
        server: InProcessServer

        def accept(sock: socket.socket, index: int) -> Session:
            sock.settimeout(None)  # pyOpenSSL takes a socket timeout for non-blocking I/O
            conn = SSL.Connection(ctx, sock)
            conn.set_accept_state()
            session = _PyOpenSSLSession(conn, SSL)
            if spec.early_data == "accept" and index == 1:
                session.early = _read_early_data(conn)
                if session.early != EARLY_DATA:
                    server.errors.append(f"early data {session.early!r}")
            conn.do_handshake()
            return session

        server = InProcessServer(cell, spec, accept)
        return server

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        from OpenSSL import SSL

        ctx = self._context(cell, spec, server=False)

        def connect(sock: socket.socket, index: int, saved: Any) -> Session:
            sock.settimeout(None)  # pyOpenSSL takes a socket timeout for non-blocking I/O
            conn = SSL.Connection(ctx, sock)
            conn.set_tlsext_host_name(SERVER_NAME.encode())
            conn.set_connect_state()
            if saved is not None:
                conn.set_session(saved)
                if spec.early_data:
                    _write_early_data(conn, EARLY_DATA)
            conn.do_handshake()
            return _PyOpenSSLSession(conn, SSL)

        return InProcessClient(cell, spec, port, connect, can_key_update=False)


def _read_early_data(conn: Any) -> bytes:
    """SSL_read_early_data until SSL_READ_EARLY_DATA_FINISH (2); 1 = data, 0 = error."""
    from OpenSSL._util import ffi, lib

    buf = ffi.new("unsigned char[]", 16384)
    size = ffi.new("size_t *")
    out = bytearray()
    while True:
        result = lib.SSL_read_early_data(conn._ssl, buf, 16384, size)
        if result == 1:
            out += ffi.buffer(buf, size[0])[:]
        elif result == 2:
            return bytes(out)
        else:
            raise CellFailure("SSL_read_early_data failed")


def _write_early_data(conn: Any, data: bytes) -> None:
    from OpenSSL._util import ffi, lib

    written = ffi.new("size_t *")
    if lib.SSL_write_early_data(conn._ssl, data, len(data), written) != 1:
        raise CellFailure("SSL_write_early_data failed (does the ticket allow 0-RTT?)")


# -- tlslite-ng ------------------------------------------------------------------------------------


class _TLSLiteSession(Session):
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def recv(self) -> bytes:
        data = self.conn.read()
        return bytes(data)

    def send(self, data: bytes) -> None:
        self.conn.write(data)

    def key_update(self) -> None:
        from tlslite.constants import KeyUpdateMessageType

        for _ in self.conn.send_keyupdate_request(KeyUpdateMessageType.update_requested):
            pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def resumed(self) -> bool:
        return bool(self.conn.resumed)

    def session(self) -> Any:
        return self.conn.session


class TLSLite(Peer):
    name = "tlslite-ng"
    tls = True
    dtls = False

    # Pure-Python AES-GCM and ChaCha20 (no pycryptodome/M2Crypto here): about 50 KiB/s.
    bulk_limit = 512 * 1024

    def __init__(self, info: PeerInfo | None) -> None:
        super().__init__(info.version if info else "?")
        self.label = f"tlslite-ng {self.version}"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.group and spec.group not in TLSLITE_GROUPS:
            return f"{self.label} has {spec.group} only with kyber-py, which is not installed"
        if spec.early_data and role == "server":
            return f"{self.label}'s client cannot send 0-RTT data"
        if spec.early_data:
            return f"{self.label}'s tickets never allow 0-RTT (no early_data in NewSessionTicket)"
        return None

    def _settings(self, spec: Spec, server: bool) -> Any:
        from tlslite import HandshakeSettings

        settings = HandshakeSettings()
        settings.minVersion = (3, 4)
        settings.maxVersion = (3, 4)
        if spec.suite:
            settings.cipherNames = [TLSLITE_SUITES[spec.suite]]
        else:
            settings.cipherNames = list(TLSLITE_SUITES.values())
        if spec.group:
            settings.eccCurves = [spec.group]
            settings.keyShares = [spec.group]
        elif spec.hrr:
            settings.eccCurves = [HRR_GROUP] if server else ["x25519", HRR_GROUP]
            settings.keyShares = [HRR_GROUP] if server else ["x25519"]
        else:
            settings.keyShares = ["x25519"]
        if spec.record_size_limit:
            settings.record_size_limit = spec.record_size_limit
        if spec.psk:
            settings.pskConfigs = [(PSK_IDENTITY.encode(), PSK_KEY, "sha256")]
        if server:
            settings.ticketKeys = [secrets.token_bytes(32)]
            settings.ticket_count = 2
        return settings

    def _credentials(self, pki: Path, name: str) -> tuple[Any, Any]:
        from tlslite import X509CertChain, parsePEMKey

        chain = X509CertChain()
        chain.parsePemList((pki / f"{name}.pem").read_text())
        key = parsePEMKey((pki / f"{name}.key").read_text(), private=True)
        return chain, key

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        from tlslite import TLSConnection

        chain, key = self._credentials(cell.pki, "server")
        settings = self._settings(spec, server=True)
        alpn = [p.encode() for p in reversed(spec.alpn)] if spec.alpn else None
        server: InProcessServer

        def accept(sock: socket.socket, index: int) -> Session:
            conn = TLSConnection(sock)
            conn.handshakeServer(
                certChain=chain, privateKey=key, settings=settings, reqCert=spec.mtls, alpn=alpn
            )
            return _TLSLiteSession(conn)

        server = InProcessServer(cell, spec, accept)

        def key_update() -> bool:
            server.key_update_wanted.set()
            return True

        server.peer_key_update = key_update  # type: ignore[method-assign]
        return server

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        from tlslite import TLSConnection

        settings = self._settings(spec, server=False)
        chain, key = self._credentials(cell.pki, "client") if spec.mtls else (None, None)
        alpn = [b"http/1.1"] if spec.alpn else None

        def connect(sock: socket.socket, index: int, saved: Any) -> Session:
            conn = TLSConnection(sock)
            conn.handshakeClientCert(
                certChain=chain,
                privateKey=key,
                session=saved,
                settings=settings,
                serverName=SERVER_NAME,
                alpn=alpn,
            )
            time.sleep(0)  # tickets arrive with the first read
            return _TLSLiteSession(conn)

        return InProcessClient(
            cell, spec, port, connect, can_key_update=True, bulk_limit=self.bulk_limit or 0
        )
