"""The interop scenarios and how tls13's side runs each of them against any peer.

Each scenario is a :class:`~interop.adapters.base.Spec`; the peer adapter turns it into the
peer's command line, and the two generic flows here drive our side and check the result:

- :func:`we_client`: the peer serves (``Peer.server``), our client connects (twice for
  resumption and 0-RTT), checks what the handshake settled, exchanges data through the
  peer's application (echo, ``-rev``, a fixed answer, its stdin/stdout), and closes.
- :func:`we_server`: our server runs (TLS thread or DTLS loop), the peer's client runs its
  side (``Peer.client``), then both verdicts are checked: the peer's (exit code, output) and
  ours (handshake parameters, resumption, early data, KeyUpdates, close_notify).

Every check raises ``CellFailure`` with one line saying what differed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from handshake.tickets import TicketKeyRing

from .adapters.base import (
    EARLY_DATA,
    HRR_GROUP,
    RSL_PAYLOAD,
    Cell,
    CellFailure,
    Peer,
    PeerServer,
    Spec,
    StdioApp,
    wait_printed,
)
from .adapters.ours import (
    OurDTLS,
    OurDTLSServer,
    OurTLS,
    OurTLSServer,
    Served,
    client_config,
    dtls_client,
    echo,
    server_config,
    tls_client,
)
from .relay import MATRIX_IMPAIRMENT, LossyRelay

SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
GROUPS = ("x25519", "secp256r1", "secp384r1", "secp521r1", "x448", "X25519MLKEM768")
TLS_BULK = 8 * 1024 * 1024
DTLS_BULK = 1024 * 1024
RECORD_SIZE_LIMIT = 512
SMALL_MTU = 400  # ours: 352-byte datagrams (RFC 9147 §4.4: mtu minus IP/UDP headers)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    spec: Spec
    section: str  # where the matrix lists it
    weight: float = 1.0  # expected cost, to start slow cells first


def _scenarios() -> list[Scenario]:
    out = [
        Scenario(
            f"tls-full/{suite}/{group}",
            f"full handshake {suite} + {group}",
            Spec(suite=suite, group=group),
            "TLS 1.3 full handshake (suite x group)",
        )
        for suite in SUITES
        for group in GROUPS
    ]
    features = [
        ("tls-hrr", "HelloRetryRequest (group mismatch)", Spec(hrr=True), 1.0),
        ("tls-mtls", "client certificate (mTLS)", Spec(mtls=True), 1.0),
        ("tls-alpn", "ALPN", Spec(alpn=("h2", "http/1.1")), 1.0),
        ("tls-key-update", "KeyUpdate both ways", Spec(key_update=True), 1.0),
        ("tls-close-notify", "close_notify both ways", Spec(close_notify=True), 1.0),
        (
            "tls-record-size-limit",
            f"record_size_limit {RECORD_SIZE_LIMIT} (RFC 8449)",
            Spec(record_size_limit=RECORD_SIZE_LIMIT),
            1.0,
        ),
        ("tls-resumption", "resumption with a ticket", Spec(resumption=True), 2.0),
        ("tls-psk", "external PSK (psk_dhe_ke)", Spec(psk=True), 1.0),
        ("tls-0rtt-accept", "0-RTT accepted", Spec(early_data="accept"), 2.0),
        ("tls-0rtt-reject", "0-RTT rejected, 1-RTT continues", Spec(early_data="reject"), 2.0),
        ("tls-large-transfer", "8 MiB each way, byte for byte", Spec(bulk=TLS_BULK), 4.0),
    ]
    out += [Scenario(n, t, s, "TLS 1.3 features", w) for n, t, s, w in features]
    dtls = [
        ("dtls-full", "full handshake", Spec(dtls=True), 1.5),
        ("dtls-hrr-cookie", "HelloRetryRequest with cookie", Spec(dtls=True, cookie=True), 1.5),
        ("dtls-cid", "Connection ID (RFC 9146)", Spec(dtls=True, cid=True), 1.5),
        ("dtls-key-update", "KeyUpdate both ways", Spec(dtls=True, key_update=True), 1.5),
        ("dtls-resumption", "resumption with a ticket", Spec(dtls=True, resumption=True), 2.0),
        (
            "dtls-small-mtu",
            f"MTU {SMALL_MTU}: fragmented flights",
            Spec(dtls=True, mtu=SMALL_MTU),
            1.5,
        ),
        (
            "dtls-lossy",
            "seeded lossy relay: 10% drop, 10% duplicate, 10% reorder",
            Spec(dtls=True, lossy=True),
            6.0,
        ),
        (
            "dtls-large-transfer",
            "1 MiB each way, byte for byte",
            Spec(dtls=True, bulk=DTLS_BULK),
            4.0,
        ),
    ]
    out += [Scenario(n, t, s, "DTLS 1.3", w) for n, t, s, w in dtls]
    return out


SCENARIOS: tuple[Scenario, ...] = tuple(_scenarios())
BY_NAME = {s.name: s for s in SCENARIOS}


# -- checks ----------------------------------------------------------------------------------------


def check_handshake(
    spec: Spec, hs: Any, *, second: bool = False, server_side: bool = False
) -> list[str]:
    """What the handshake settled must match the spec; returns notes for the detail."""
    notes: list[str] = []
    if spec.suite and hs.cipher_suite != spec.suite:
        raise CellFailure(f"cipher suite {hs.cipher_suite}, expected {spec.suite}")
    if spec.group and hs.group != spec.group:
        raise CellFailure(f"group {hs.group}, expected {spec.group}")
    if spec.hrr and (not hs.hello_retry or hs.group != HRR_GROUP):
        raise CellFailure("no HelloRetryRequest although the groups did not match")
    if spec.cookie and not hs.hello_retry:
        raise CellFailure("no HelloRetryRequest (cookie exchange) happened")
    if spec.mtls and server_side and not hs.client_authenticated:
        raise CellFailure("the client did not authenticate")
    if spec.alpn:
        if hs.alpn is None:
            raise CellFailure("no ALPN protocol was selected")
        if hs.alpn not in spec.alpn:
            raise CellFailure(f"ALPN {hs.alpn!r} was never offered")
        notes.append(f"alpn={hs.alpn}")
    if spec.psk:
        if hs.psk_mode is None:
            raise CellFailure("the external PSK was not used")
        notes.append(f"psk_mode={hs.psk_mode}")
    if second:
        if spec.early_data == "reject" and not hs.resumed:
            notes.append("second connection not resumed (new ticket keys)")
        elif not hs.resumed:
            raise CellFailure("the second connection did not resume")
        if spec.early_data == "accept" and hs.early_data != "accepted":
            raise CellFailure(f"early data {hs.early_data}, expected accepted")
        if spec.early_data == "reject" and hs.early_data != "rejected":
            raise CellFailure(f"early data {hs.early_data}, expected rejected")
    if hs.hello_retry and not spec.hrr and not spec.cookie:
        notes.append("HRR (cookie)" if hs.version == "DTLS 1.3" else "via HRR")
    return notes


HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def hello_retry_cookies(cell: Cell, direction: str) -> list[bool]:
    """For each HelloRetryRequest in our trace (``direction`` "received": the peer's): did it
    carry a cookie (RFC 8446 §4.2.2, RFC 9147 §5.1)?"""
    from handshake.common import parse_message
    from handshake.messages import ServerHello

    found: list[bool] = []
    if not cell.trace_path.exists():
        return found
    for line in cell.trace_path.read_text().splitlines():
        event = json.loads(line)
        if event.get("detail") != "server_hello" or event.get("direction") != direction:
            continue
        raw = bytes.fromhex(event.get("data", ""))
        if len(raw) < 38 or raw[6:38] != HRR_RANDOM:
            continue
        message = parse_message(raw, dtls=True, hash_len=32)
        if isinstance(message, ServerHello):
            found.append(message.extensions.cookie is not None)
    return found


def received_record_sizes(cell: Cell) -> list[int]:
    """Plaintext sizes of the application-data records we received (from our trace)."""
    sizes: list[int] = []
    if not cell.trace_path.exists():
        return sizes
    for line in cell.trace_path.read_text().splitlines():
        event = json.loads(line)
        if (
            event.get("kind") == "record"
            and event.get("direction") == "received"
            and event.get("content_type") == "application_data"
        ):
            sizes.append(int(event["length"]))
    return sizes


def check_record_size_limit(cell: Cell, spec: Spec, hs: Any) -> str:
    limit = spec.record_size_limit or 0
    if hs.peer_record_size_limit is None:
        return "peer has no RFC 8449: limit not negotiated, full-size records accepted"
    sizes = received_record_sizes(cell)
    largest = max(sizes, default=0)
    # RFC 8449 §4: in TLS 1.3 the limit counts the inner content type byte.
    if largest > limit - 1:
        raise CellFailure(f"peer sent a {largest}-byte record, over our limit {limit}")
    return f"negotiated: peer limit {hs.peer_record_size_limit}, its records ≤ {largest} B"


# -- bulk transfers --------------------------------------------------------------------------------


def line_payload(size: int, line_length: int = 4096) -> bytes:
    """Random hex lines ending in newline, exactly ``size`` bytes (line-based peers)."""
    lines = size // line_length
    row = line_length - 1
    body = secrets.token_hex(lines * row // 2 + 1).encode()
    return b"".join(body[i * row : (i + 1) * row] + b"\n" for i in range(lines))


def reverse_lines(data: bytes) -> bytes:
    return b"".join(line[::-1] + b"\n" for line in data.split(b"\n")[:-1])


def tls_bulk(cell: Cell, server: PeerServer, chan: OurTLS, size: int) -> str:
    mode = server.bulk_mode
    if mode is None:
        raise CellFailure("the peer's server has no echo mode for a bulk transfer")
    payload = secrets.token_bytes(size) if mode == "echo" else line_payload(size)
    expected = reverse_lines(payload) if mode == "reverse" else payload
    started = time.monotonic()
    chan.send(payload)  # reads the echo meanwhile (select), so neither side blocks
    got = bytearray()
    while len(got) < len(expected):
        data = chan.recv(cell.timeout * 3)
        if not data:
            break
        got += data
    if bytes(got) != expected:
        raise CellFailure(_mismatch(expected, bytes(got)))
    seconds = time.monotonic() - started
    return f"{size >> 10} KiB each way ({mode}) in {seconds:.1f} s"


def _mismatch(expected: bytes, got: bytes) -> str:
    if len(got) != len(expected):
        return f"received {len(got)} of {len(expected)} bytes"
    first = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
    return f"bytes differ from offset {first}"


def dtls_bulk(cell: Cell, chan: OurDTLS, size: int, message: int = 1000, window: int = 16) -> str:
    """``size`` bytes as ``message``-byte datagrams, at most ``window`` unanswered: DTLS does
    not retransmit application data (RFC 9147 §5), so the sender must not outrun the echo."""
    payload = secrets.token_bytes(size)
    pieces = [payload[i : i + message] for i in range(0, size, message)]
    got = bytearray()
    sent = 0
    started = time.monotonic()
    while len(got) < size:
        while sent < len(pieces) and sent - len(got) // message < window:
            chan.send(pieces[sent])
            sent += 1
        data = chan.recv(cell.timeout)
        if not data:
            break
        got += data
    if bytes(got) != payload:
        raise CellFailure(_mismatch(payload, bytes(got)))
    return f"{size >> 10} KiB each way in {time.monotonic() - started:.1f} s"


def _save_relay_log(cell: Cell, relay: LossyRelay) -> None:
    """Every decision of the relay, next to the trace (for a failing cell's study)."""
    lines = [f"seed {relay.seed}", *relay.stats.log]
    (cell.workdir / "relay.log").write_text("\n".join(lines) + "\n")


def lossy_ping(cell: Cell, server: PeerServer, chan: OurDTLS, attempts: int = 10) -> str:
    """Ping the peer until one answer comes back: application data is not retransmitted
    (RFC 9147 §5), and data that overtakes our reordered Finished is dropped by a peer still
    waiting for it."""
    app = server.app
    if isinstance(app, StdioApp):
        process = app.process
        for attempt in range(1, attempts + 1):
            tag = f"lossy-{attempt}-{secrets.token_hex(4)}"
            start = len(process.output())
            chan.send(tag.encode() + b"\n")
            if wait_printed(process, chan, tag, 1.0, start):
                process.send(b"reply-" + tag.encode() + b"\n")
                got = chan.recv(cell.timeout)
                if got != b"reply-" + tag.encode() + b"\n":
                    raise CellFailure(f"unexpected reply {got[:60]!r}")
                return f"data through after {attempt} attempt(s)"
        raise CellFailure(f"the peer printed none of {attempts} messages")
    for attempt in range(1, attempts + 1):
        request = f"lossy-{attempt}-{secrets.token_hex(4)}\n".encode()
        chan.send(request)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                answer = chan.recv(max(deadline - time.monotonic(), 0.05))
            except CellFailure:
                break
            if answer == request:
                return f"echo after {attempt} attempt(s)"
    raise CellFailure(f"no echo through the lossy relay after {attempts} attempts")


# -- we are the client -----------------------------------------------------------------------------


def _connect(cell: Cell, spec: Spec, port: int, config: Any, **kwargs: Any) -> OurTLS | OurDTLS:
    if spec.dtls:
        return dtls_client(cell, port, config, timeout=cell.timeout * 2, **kwargs)
    return tls_client(cell, port, config, **kwargs)


def _await_session(chan: OurTLS | OurDTLS, config: Any, port: int, timeout: float) -> Any:
    if isinstance(chan, OurTLS):
        chan.wait_ticket(timeout)
    else:
        chan.pump(0.3)
    store = config.session_store
    session = store.take("localhost", port) if store is not None else None
    if session is None:
        raise CellFailure("the peer issued no session ticket")
    return session


def _exchange(
    cell: Cell, spec: Spec, peer: Peer, server: PeerServer, chan: OurTLS | OurDTLS
) -> list[str]:
    """The application part of a connection: ping, KeyUpdate, record size, bulk."""
    notes: list[str] = []
    app = server.app
    if spec.lossy and isinstance(chan, OurDTLS):
        notes.append(lossy_ping(cell, server, chan))
    elif spec.key_update:
        chan.key_update(True)
        app.exchange(chan, cell.timeout)
        received = chan.key_updates_received
        if received < 1:
            chan.pump(0.5)
            received = chan.key_updates_received
        if received < 1:
            raise CellFailure("the peer never answered our KeyUpdate(update_requested)")
        notes.append("peer answered our KeyUpdate")
        if app.rounds is None and server.peer_key_update():
            app.exchange(chan, cell.timeout)
            if chan.key_updates_received <= received:
                raise CellFailure("the peer's own KeyUpdate never reached us")
            notes.append("peer's KeyUpdate taken")
    elif spec.bulk and isinstance(chan, OurTLS):
        notes.append(tls_bulk(cell, server, chan, min(spec.bulk, peer.bulk_limit or spec.bulk)))
    elif spec.bulk and isinstance(chan, OurDTLS):
        if server.bulk_mode != "echo":
            raise CellFailure("the peer's DTLS server has no echo mode")
        notes.append(dtls_bulk(cell, chan, spec.bulk))
    elif spec.record_size_limit:
        # larger than either limit: both sides must split their records (checked from the
        # trace), or, not negotiated, take full-size ones
        app.exchange(chan, cell.timeout, size=RSL_PAYLOAD)
    else:
        app.exchange(chan, cell.timeout)
    return notes


def we_client(cell: Cell, peer: Peer, spec: Spec) -> str:
    notes: list[str] = []
    server = peer.server(cell, spec)
    cell.cleanups.append(server.close)
    target = server.port
    relay: LossyRelay | None = None
    if spec.lossy:
        relay = LossyRelay(
            cell.ports.take(),
            ("127.0.0.1", server.port),
            seed=cell.seed,
            impairment=MATRIX_IMPAIRMENT,
        )
        cell.cleanups.append(relay.close)
        cell.cleanups.append(lambda: _save_relay_log(cell, relay))
        target = relay.port
    config = client_config(cell, spec, **peer.our_client_options(spec))
    chan = _connect(cell, spec, target, config)
    hs = chan.handshake
    notes += check_handshake(spec, hs)
    notes += _exchange(cell, spec, peer, server, chan)
    if spec.record_size_limit:
        notes.append(check_record_size_limit(cell, spec, hs))
    if spec.cookie:
        cookies = hello_retry_cookies(cell, "received")
        if not any(cookies):
            raise CellFailure(f"the peer's HelloRetryRequest had no cookie ({len(cookies)} HRR)")
        notes.append("HRR with cookie")
    if spec.cid and isinstance(chan, OurDTLS):
        conn = chan.connection
        if not conn.cid_sent or not conn.cid_received:
            raise CellFailure(
                f"no Connection ID in use (peer's {conn.cid_sent!r}, ours {conn.cid_received!r})"
            )
        notes.append(f"CIDs: peer's {len(conn.cid_sent)} B, ours {len(conn.cid_received)} B")
    if spec.connections == 2:
        session = _await_session(chan, config, target, cell.timeout)
        chan.close()
        if spec.early_data == "reject" and server.reject_by_restart:
            server.restart()
        elif spec.early_data == "accept" and server.early_data_delay:
            wait = server.started + server.early_data_delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                notes.append(f"waited {wait:.1f} s for the peer's anti-replay window")
        early = EARLY_DATA if spec.early_data else None
        chan = _connect(cell, spec, target, config, session=session, early_data=early)
        notes += check_handshake(spec, chan.handshake, second=True)
        notes.append(f"resumed={chan.handshake.resumed}, early data {chan.handshake.early_data}")
        server.app.exchange(chan, cell.timeout)
    if isinstance(chan, OurTLS):
        if spec.close_notify:
            chan.close()
            if not chan.wait_peer_close(cell.timeout):
                raise CellFailure(
                    "the peer closed TCP without close_notify"
                    if chan.eof
                    else "no close_notify from the peer after ours"
                )
            notes.append("close_notify both ways")
        else:
            chan.close()
    else:
        chan.close()
    verdict = server.finish(cell.timeout)
    if verdict:
        notes.append(verdict)
    if relay is not None:
        notes.append(f"relay seed {relay.seed}: {relay.stats.summary()}")
    if hs.hello_retry and spec.hrr:
        notes.insert(0, f"HRR to {hs.group}")
    return "; ".join(dict.fromkeys(notes))


# -- we are the server -----------------------------------------------------------------------------


def _server_configs(cell: Cell, spec: Spec, peer: Peer) -> list[Any]:
    options = peer.our_server_options(spec)
    if spec.dtls and "dtls_cookie" not in options:
        # dtls-full runs our defaults (RFC 9147 §5.1: the cookie exchange is on) and
        # dtls-hrr-cookie checks it; the feature scenarios skip it to test their feature.
        options["dtls_cookie"] = spec.cookie or spec == Spec(dtls=True)
    if spec.connections == 1:
        return [server_config(cell, spec, **options)]
    ring = TicketKeyRing()
    first = server_config(cell, spec, ticket_keys=ring, **options)
    later = first
    if spec.early_data == "reject":
        later = server_config(cell, replace(spec, early_data=None), ticket_keys=ring, **options)
    return [first] + [later] * (peer.client_connections(spec) - 1)


def _check_served(cell: Cell, spec: Spec, served: list[Served], expected: int) -> list[str]:
    notes: list[str] = []
    if len(served) < expected:
        raise CellFailure(f"the peer made {len(served)} of {expected} connections")
    for i, one in enumerate(served[:expected]):
        if one.handshake is None:
            raise CellFailure(f"connection {i + 1}: {one.error or 'no handshake'}")
        notes += check_handshake(spec, one.handshake, second=i >= 1, server_side=True)
        if one.error:
            raise CellFailure(f"connection {i + 1}: {one.error}")
    first = served[0]
    if spec.key_update:
        if first.key_updates_received < 1:
            raise CellFailure("the peer never answered our KeyUpdate(update_requested)")
        notes.append(f"KeyUpdates: {first.key_updates_received} received")
    if spec.record_size_limit and served[0].handshake is not None:
        notes.append(check_record_size_limit(cell, spec, served[0].handshake))
    if spec.early_data == "accept":
        carried = [one.early_data for one in served[1:expected] if one.early_data]
        if not carried:
            raise CellFailure("no early data arrived")
        notes.append(f"{len(carried[0])} B of early data")
    if spec.close_notify:
        if not first.peer_closed:
            raise CellFailure(
                "the peer closed TCP without close_notify"
                if first.eof
                else "no close_notify from the peer"
            )
        notes.append("close_notify both ways")
    return notes


def we_server(cell: Cell, peer: Peer, spec: Spec) -> str:
    configs = _server_configs(cell, spec, peer)
    server: OurTLSServer | OurDTLSServer
    if spec.dtls:
        server = OurDTLSServer(
            cell,
            configs[0],
            associations=len(configs),
            key_update=spec.key_update,
            limit=peer.echo_limit(spec),
        )
    else:
        timeout = cell.timeout
        limit = min(spec.bulk, peer.bulk_limit or spec.bulk) if spec.bulk else None
        limit = peer.echo_limit(spec) or limit

        def handler(chan: Any, served: Served) -> None:
            echo(
                chan,
                served,
                key_update=spec.key_update,
                timeout=timeout,
                limit=limit,
                echo_early_data=peer.echo_early_data,
            )

        server = OurTLSServer(cell, configs, handler)
    port = server.port
    relay: LossyRelay | None = None
    if spec.lossy:
        relay = LossyRelay(
            cell.ports.take(),
            ("127.0.0.1", server.port),
            seed=cell.seed,
            impairment=MATRIX_IMPAIRMENT,
        )
        cell.cleanups.append(relay.close)
        cell.cleanups.append(lambda: _save_relay_log(cell, relay))
        port = relay.port
    client = peer.client(cell, spec, port)
    cell.cleanups.append(client.close)
    peer_failure: CellFailure | None = None
    verdict = ""
    try:
        verdict = client.finish(cell.timeout * (4 if spec.bulk or spec.lossy else 2))
    except CellFailure as exc:
        peer_failure = exc
    finally:
        if isinstance(server, OurDTLSServer):
            server.wait(1.0)
            server.close()
        else:
            server.close()
            with contextlib.suppress(CellFailure):
                server.join(cell.timeout)
    if peer_failure is not None:
        # Our side's own account first: it usually says why the peer gave up.
        ours = next((s.error for s in server.served if s.error), None) or server.failure
        if ours:
            raise CellFailure(f"ours: {ours} (peer: {peer_failure})", peer_failure.log)
        raise peer_failure
    if server.failure and not server.served:
        raise CellFailure(f"our server: {server.failure}")
    notes = _check_served(cell, spec, server.served, len(configs))
    if spec.cid and spec.dtls:
        peer_cid, own_cid = server.served[0].cids
        if not peer_cid or not own_cid:
            raise CellFailure(f"no Connection ID in use (peer's {peer_cid!r}, ours {own_cid!r})")
        notes.append(f"CIDs: peer's {len(peer_cid)} B, ours {len(own_cid)} B")
    if verdict:
        notes.append(verdict)
    if relay is not None:
        notes.append(f"relay seed {relay.seed}: {relay.stats.summary()}")
    return "; ".join(dict.fromkeys(notes))


def run(cell: Cell, peer: Peer, scenario: Scenario) -> str:
    if cell.role == "client":
        return we_client(cell, peer, scenario.spec)
    return we_server(cell, peer, scenario.spec)
