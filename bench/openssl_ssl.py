"""OpenSSL through Python's ``ssl`` module: SSLObject over MemoryBIO pairs, both ends in this
process, verification on (CERT_REQUIRED, check_hostname) against the bench CA.

Python 3.11's ``ssl`` cannot choose TLS 1.3 cipher suites; :func:`pin_tls13_suite` calls
``SSL_CTX_set_ciphersuites`` of the very libssl ``_ssl`` is linked with, through ctypes, on
the context's ``SSL_CTX`` pointer (the first field after ``PyObject_HEAD`` in CPython's
``PySSLContext``). Every row checks the suite actually negotiated (``SSLObject.cipher()``)
and the group on the wire (ServerHello), so a failed pin cannot go unnoticed.
The server sends no session tickets (``num_tickets = 0``), as ours sends none.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ssl
import sys

from .fixtures import SERVER_NAME, SSL_MODULE_CURVES, SUITES, Pki, Scenario, server_hello_choice
from .runners import Runner, Unavailable
from .stats import clock

_PYOBJECT_HEAD = 2 * ctypes.sizeof(ctypes.c_void_p)  # ob_refcnt, ob_type (non-debug CPython)


def _libssl() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("ssl")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.OpenSSL_version.argtypes = [ctypes.c_int]
        lib.OpenSSL_version.restype = ctypes.c_char_p
    except (OSError, AttributeError):
        return None
    # Only the libssl that _ssl itself uses may be touched.
    version = lib.OpenSSL_version(0)
    if version is None or version.decode() != ssl.OPENSSL_VERSION:
        return None
    return lib


_LIB = _libssl() if sys.implementation.name == "cpython" else None


def pin_tls13_suite(ctx: ssl.SSLContext, suite: str) -> bool:
    if _LIB is None:
        return False
    pointer = ctypes.c_void_p.from_address(id(ctx) + _PYOBJECT_HEAD).value
    if not pointer:
        return False
    return bool(_LIB.SSL_CTX_set_ciphersuites(pointer, suite.encode()) == 1)


def contexts(pki: Pki, scenario: Scenario) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    curve = SSL_MODULE_CURVES.get(scenario.group)
    if curve is None:
        raise Unavailable(f"{ssl.OPENSSL_VERSION} via ssl: no {scenario.group}")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    for ctx in (server, client):
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_ecdh_curve(curve)
        pin_tls13_suite(ctx, scenario.suite)
    server.load_cert_chain(pki.server_cert, pki.server_key)
    server.num_tickets = 0
    client.load_verify_locations(pki.ca)
    if scenario.mutual:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(pki.ca)
        client.load_cert_chain(pki.client_cert, pki.client_key)
    return client, server


class _Pair:
    __slots__ = ("c_in", "c_out", "client", "s_in", "s_out", "server")

    def __init__(
        self,
        client_ctx: ssl.SSLContext,
        server_ctx: ssl.SSLContext,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(
            self.c_in, self.c_out, server_hostname=SERVER_NAME, session=session
        )
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)

    def handshake(self) -> bytes:
        client_done = server_done = False
        first = b""
        for _ in range(16):
            if not client_done:
                try:
                    self.client.do_handshake()
                    client_done = True
                except ssl.SSLWantReadError:
                    pass
            if self.c_out.pending:
                self.s_in.write(self.c_out.read())
            if not server_done:
                try:
                    self.server.do_handshake()
                    server_done = True
                except ssl.SSLWantReadError:
                    pass
            if self.s_out.pending:
                data = self.s_out.read()
                first = first or data
                self.c_in.write(data)
            if client_done and server_done:
                return first
        raise RuntimeError("ssl handshake did not finish")


def handshake_runner(pki: Pki, scenario: Scenario) -> Runner:
    client_ctx, server_ctx = contexts(pki, scenario)

    def run(n: int) -> float:
        start = clock()
        for _ in range(n):
            _Pair(client_ctx, server_ctx).handshake()
        return clock() - start

    pair = _Pair(client_ctx, server_ctx)
    negotiated = server_hello_choice(pair.handshake())
    notes = []
    cipher = pair.client.cipher()
    if cipher is None or cipher[0] != scenario.suite:
        notes.append(f"suite not pinned: negotiated {cipher[0] if cipher else '?'}")
    return Runner(run, negotiated=negotiated, notes=notes)


def resumed_handshake_runner(pki: Pki) -> Runner:
    """Resumed handshakes (ticket, psk_dhe_ke, x25519): one full handshake with
    ``num_tickets = 1`` yields the session, then the server context issues none
    (``num_tickets = 0``) and every client offers that session (``session=``). OpenSSL's
    tickets are reusable by default. ``session_reused`` is checked."""
    client_ctx, server_ctx = contexts(pki, Scenario())
    server_ctx.num_tickets = 1
    pair = _Pair(client_ctx, server_ctx)
    pair.handshake()
    # the client takes the NewSessionTicket in with its first read
    with contextlib.suppress(ssl.SSLWantReadError):
        pair.client.read(1)
    session = pair.client.session
    if session is None or not session.has_ticket:
        raise RuntimeError("OpenSSL issued no ticket")
    server_ctx.num_tickets = 0

    def run(n: int) -> float:
        start = clock()
        for _ in range(n):
            _Pair(client_ctx, server_ctx, session).handshake()
        return clock() - start

    pair = _Pair(client_ctx, server_ctx, session)
    negotiated = server_hello_choice(pair.handshake())
    if not (pair.client.session_reused and pair.server.session_reused):
        raise RuntimeError("OpenSSL did not resume the session")
    return Runner(run, negotiated=negotiated)


def bulk_runner(pki: Pki, suite: str, record_size: int) -> Runner:
    client_ctx, server_ctx = contexts(pki, Scenario(suite=suite))
    pair = _Pair(client_ctx, server_ctx)
    negotiated = server_hello_choice(pair.handshake())
    payload = bytes(record_size)
    client, server, c_out, s_in = pair.client, pair.server, pair.c_out, pair.s_in

    def run(n: int) -> float:
        received = 0
        start = clock()
        for _ in range(n):
            client.write(payload)
            s_in.write(c_out.read())
            got = 0
            while got < record_size:
                got += len(server.read(record_size))
            received += got
        elapsed = clock() - start
        if received != n * record_size:
            raise RuntimeError("short read")
        return elapsed

    cipher = client.cipher()
    notes = [] if cipher and cipher[0] == suite else [f"suite not pinned: {cipher}"]
    if suite not in SUITES:
        raise Unavailable(suite)
    return Runner(run, negotiated=negotiated, notes=notes)
