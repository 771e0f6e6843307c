"""OpenSSL through pyOpenSSL, i.e. the OpenSSL that ``cryptography``'s wheel bundles (4.x
here): the one with X25519MLKEM768. Memory BIOs (``Connection(ctx, None)``), verification
on: VERIFY_PEER against the bench CA and the host name set with X509_VERIFY_PARAM_set1_host.

Groups are set with ``SSL_CTX_set1_curves_list`` from the bindings pyOpenSSL uses. pyOpenSSL
cannot set ``num_tickets``: with OP_NO_TICKET and the session cache off, the server still
sends two small stateful tickets (~79 bytes each: two extra AEAD records) after the handshake.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .fixtures import OPENSSL_GROUPS, SERVER_NAME, Pki, Scenario, server_hello_choice
from .runners import Runner, Unavailable
from .stats import clock

try:
    from OpenSSL import SSL
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - pyOpenSSL is in the test extras
    SSL = None  # type: ignore[assignment]
    _lib = None

_READ = 1 << 17


def version() -> str:
    if SSL is None:
        return "absent"
    raw: bytes = SSL.OpenSSL_version(SSL.OPENSSL_VERSION)
    return raw.decode()


def _context(pki: Pki, scenario: Scenario, server: bool, *, tickets: bool = False) -> Any:
    if SSL is None or _lib is None:
        raise Unavailable("pyOpenSSL not installed")
    group = OPENSSL_GROUPS.get(scenario.group)
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_tls13_ciphersuites(scenario.suite.encode())
    if group is None or _lib.SSL_CTX_set1_curves_list(ctx._context, group.encode()) != 1:
        raise Unavailable(f"{version()} has no group {scenario.group}")
    if server:
        ctx.use_certificate_chain_file(str(pki.server_cert))
        ctx.use_privatekey_file(str(pki.server_key))
        if not tickets:
            ctx.set_options(SSL.OP_NO_TICKET)
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if scenario.mutual:
            ctx.load_verify_locations(str(pki.ca))
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
    else:
        ctx.load_verify_locations(str(pki.ca))
        ctx.set_verify(SSL.VERIFY_PEER, None)
        if scenario.mutual:
            ctx.use_certificate_chain_file(str(pki.client_cert))
            ctx.use_privatekey_file(str(pki.client_key))
    return ctx


def _pair(client_ctx: Any, server_ctx: Any) -> tuple[Any, Any]:
    assert SSL is not None and _lib is not None
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(SERVER_NAME.encode())
    param = _lib.SSL_get0_param(client._ssl)
    if _lib.X509_VERIFY_PARAM_set1_host(param, SERVER_NAME.encode(), len(SERVER_NAME)) != 1:
        raise RuntimeError("X509_VERIFY_PARAM_set1_host failed")
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    return client, server


def _move(src: Any, dst: Any) -> bytes:
    assert SSL is not None
    try:
        data: bytes = src.bio_read(_READ)
    except SSL.WantReadError:
        return b""
    dst.bio_write(data)
    return data


def _handshake(client: Any, server: Any) -> bytes:
    assert SSL is not None
    client_done = server_done = False
    first = b""
    for _ in range(16):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except SSL.WantReadError:
                pass
        _move(client, server)
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except SSL.WantReadError:
                pass
        data = _move(server, client)
        first = first or data
        if client_done and server_done:
            return first
    raise RuntimeError("pyOpenSSL handshake did not finish")


def handshake_runner(pki: Pki, scenario: Scenario) -> Runner:
    client_ctx = _context(pki, scenario, server=False)
    server_ctx = _context(pki, scenario, server=True)

    def run(n: int) -> float:
        start = clock()
        for _ in range(n):
            _handshake(*_pair(client_ctx, server_ctx))
        return clock() - start

    client, server = _pair(client_ctx, server_ctx)
    negotiated = server_hello_choice(_handshake(client, server))
    notes = ["server sends 2 stateful tickets (num_tickets not settable via pyOpenSSL)"]
    if client.get_cipher_name() != scenario.suite:
        notes.append(f"negotiated {client.get_cipher_name()}")
    return Runner(run, negotiated=negotiated, notes=notes)


def resumed_handshake_runner(pki: Pki) -> Runner:
    """Resumed handshakes (stateless ticket, psk_dhe_ke, x25519): the session of one full
    handshake is offered by every client (``set_session``); ``SSL_session_reused`` is
    checked. The server sends OpenSSL's default two tickets on each (not settable here)."""
    scenario = Scenario()
    client_ctx = _context(pki, scenario, server=False)
    server_ctx = _context(pki, scenario, server=True, tickets=True)
    client, server = _pair(client_ctx, server_ctx)
    _handshake(client, server)
    assert SSL is not None and _lib is not None
    # the client takes the NewSessionTickets in with its first read
    with contextlib.suppress(SSL.WantReadError):
        client.recv(1)
    session = client.get_session()
    if session is None:
        raise RuntimeError("pyOpenSSL: no session")

    def resumed() -> tuple[Any, Any, bytes]:
        client, server = _pair(client_ctx, server_ctx)
        client.set_session(session)
        return client, server, _handshake(client, server)

    def run(n: int) -> float:
        start = clock()
        for _ in range(n):
            resumed()
        return clock() - start

    client, server, first = resumed()
    if not (_lib.SSL_session_reused(client._ssl) and _lib.SSL_session_reused(server._ssl)):
        raise RuntimeError("pyOpenSSL did not resume the session")
    notes = ["server sends 2 stateless tickets per handshake (num_tickets not settable)"]
    return Runner(run, negotiated=server_hello_choice(first), notes=notes)


def bulk_runner(pki: Pki, suite: str, record_size: int) -> Runner:
    scenario = Scenario(suite=suite)
    client, server = _pair(
        _context(pki, scenario, server=False), _context(pki, scenario, server=True)
    )
    negotiated = server_hello_choice(_handshake(client, server))
    _move(server, client)  # the tickets
    payload = bytes(record_size)

    def run(n: int) -> float:
        received = 0
        start = clock()
        for _ in range(n):
            client.send(payload)
            server.bio_write(client.bio_read(_READ))
            got = 0
            while got < record_size:
                got += len(server.recv(record_size))
            received += got
        elapsed = clock() - start
        if received != n * record_size:
            raise RuntimeError("short read")
        return elapsed

    return Runner(run, negotiated=negotiated)
