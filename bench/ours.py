"""Our TLS 1.3 and DTLS 1.3 connections driven against each other through memory."""

from __future__ import annotations

import time
from dataclasses import replace

from handshake.psk import Session
from handshake.tickets import TicketKeyRing
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.dtls import IP_UDP_OVERHEAD, DTLSClientConnection, DTLSServerConnection
from protocol.connection.dtls_server import DTLSServer
from protocol.connection.tls import TLSClientConnection, TLSServerConnection
from protocol.events import ApplicationData, Event, SessionTicketReceived

from .fixtures import SERVER_NAME, Pki, Scenario, server_hello_choice
from .runners import Runner
from .stats import clock

Address = tuple[str, int]

# A DTLS handshake that has not finished after this many exchanges is a bug, not slowness.
_MAX_ROUNDS = 64


def configs(
    pki: Pki, scenario: Scenario, *, server_extra: dict[str, object] | None = None, **common: object
) -> tuple[ClientConfig, ServerConfig]:
    """Verification on: the client checks chain and host name against the bench CA; with
    ``mutual`` the server requires and verifies the client's chain against the same CA.
    The server sends no session tickets."""
    groups = (scenario.group,)
    suites = (scenario.suite,)
    client_kw: dict[str, object] = {}
    server_kw: dict[str, object] = dict(server_extra or {})
    if "tickets" in ServerConfig.__dataclass_fields__:
        # Full handshakes only: no NewSessionTickets, as OpenSSL (num_tickets = 0) and
        # tlslite-ng (ticketCount = 0) are configured.
        server_kw.setdefault("tickets", 0)
    if scenario.mutual:
        client_kw = {"certfile": pki.client_cert, "keyfile": pki.client_key}
        server_kw.update(cafile=pki.ca, verify_client=True)
    client = ClientConfig(
        server_name=SERVER_NAME,
        cafile=pki.ca,
        groups=groups,
        cipher_suites=suites,
        **client_kw,  # type: ignore[arg-type]
        **common,  # type: ignore[arg-type]
    )
    server = ServerConfig(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        groups=groups,
        cipher_suites=suites,
        **server_kw,  # type: ignore[arg-type]
        **common,  # type: ignore[arg-type]
    )
    return client, server


# -- TLS -----------------------------------------------------------------------------------------


def tls_handshake(
    client_config: ClientConfig,
    server_config: ServerConfig,
    now: float,
    *,
    session: Session | None = None,
    client_events: list[Event] | None = None,
) -> tuple[TLSClientConnection, TLSServerConnection, bytes]:
    """One handshake (resumed when ``session`` is given); returns both ends and the server's
    first flight. The client's events go to ``client_events`` when given."""
    client = TLSClientConnection(client_config, session=session)
    server = TLSServerConnection(server_config)
    first = b""
    while True:
        to_server = client.data_to_send()
        if to_server:
            server.receive_data(to_server, now)
        to_client = server.data_to_send()
        if to_client:
            if not first:
                first = to_client
            events = client.receive_data(to_client, now)
            if client_events is not None:
                client_events += events
        if not to_server and not to_client:
            break
    if client.state != "connected" or server.state != "connected":
        raise RuntimeError(f"handshake failed: {client.error or server.error}")
    return client, server, first


def handshake_runner(pki: Pki, scenario: Scenario) -> Runner:
    client_config, server_config = configs(pki, scenario)

    def run(n: int) -> float:
        now = time.time()
        start = clock()
        for _ in range(n):
            tls_handshake(client_config, server_config, now)
        return clock() - start

    _, _, first = tls_handshake(client_config, server_config, time.time())
    return Runner(run, negotiated=server_hello_choice(first))


def resumption_configs(
    pki: Pki, **common: object
) -> tuple[ClientConfig, ServerConfig, ServerConfig]:
    """The client, a server that issues one ticket per handshake, and a server with the same
    ticket keys that issues none: resumed handshakes are timed against the latter, as
    OpenSSL's are with ``num_tickets = 0``."""
    ring = TicketKeyRing()
    client, issuing = configs(pki, Scenario(), server_extra={"ticket_keys": ring}, **common)
    issuing = replace(issuing, tickets=1)
    return client, issuing, replace(issuing, tickets=0)


def first_session(sessions: list[Event]) -> Session:
    for event in sessions:
        if isinstance(event, SessionTicketReceived):
            return event.session
    raise RuntimeError("the server issued no ticket")


def resumed_handshake_runner(pki: Pki) -> Runner:
    """TLS 1.3 resumed handshakes (ticket, psk_dhe_ke, x25519); every one offers the ticket of
    one full handshake (reusable: single-use tickets are off, as in OpenSSL by default)."""
    client_config, issuing, resuming = resumption_configs(pki)
    now = time.time()
    events: list[Event] = []
    tls_handshake(client_config, issuing, now, client_events=events)
    session = first_session(events)

    def run(n: int) -> float:
        start = clock()
        for _ in range(n):
            tls_handshake(client_config, resuming, now, session=session)
        return clock() - start

    client, _, first = tls_handshake(client_config, resuming, now, session=session)
    parameters = client.parameters
    if parameters is None or not parameters.resumed or parameters.psk_mode != "psk_dhe_ke":
        raise RuntimeError("the handshake did not resume with psk_dhe_ke")
    return Runner(run, negotiated=server_hello_choice(first))


def tls_pair(pki: Pki, suite: str) -> tuple[TLSClientConnection, TLSServerConnection, bytes]:
    client_config, server_config = configs(pki, Scenario(suite=suite))
    return tls_handshake(client_config, server_config, time.time())


def bulk_runner(pki: Pki, suite: str, record_size: int) -> Runner:
    """Client -> server, one record of ``record_size`` application bytes per send (the sender
    protects, the receiver deprotects: both costs are in the figure)."""
    client, server, first = tls_pair(pki, suite)
    payload = bytes(record_size)
    now = time.time()

    def run(n: int) -> float:
        received = 0
        start = clock()
        for _ in range(n):
            client.send_data(payload)
            for event in server.receive_data(client.data_to_send(), now):
                if isinstance(event, ApplicationData):
                    received += len(event.data)
        elapsed = clock() - start
        if received != n * record_size:
            raise RuntimeError(f"received {received} of {n * record_size} bytes")
        return elapsed

    return Runner(run, negotiated=server_hello_choice(first))


# -- DTLS ----------------------------------------------------------------------------------------


class SingleAssociation:
    """A DTLSServerConnection with DTLSServer's datagram interface, for one peer: lets the
    memory figure hold 1,000 associations without DTLSServer's per-poll walk over all of
    them (see the findings in bench/README.md)."""

    def __init__(self, config: ServerConfig, address: Address) -> None:
        self.conn = DTLSServerConnection(config, peer_address=address)
        self.address = address

    def receive_datagram(self, address: Address, data: bytes, now: float) -> list[object]:
        return list(self.conn.receive_datagram(data, now))

    def datagrams_to_send(self, now: float) -> list[tuple[Address, bytes]]:
        return [(self.address, d) for d in self.conn.datagrams_to_send(now)]

    def next_timer(self) -> float | None:
        return self.conn.next_timer()

    def handle_timer(self, now: float) -> list[object]:
        return list(self.conn.handle_timer(now))

    def connection_for(self, address: Address) -> DTLSServerConnection | None:
        return self.conn if address == self.address else None


class DTLSHandshake:
    """Our DTLS client against a DTLSServer through memory, with a virtual clock: when no
    datagram is in flight, time jumps to the next timer (a retransmission or a delayed ACK)
    instead of sleeping. ``retransmissions`` counts what that cost."""

    def __init__(
        self,
        client_config: ClientConfig,
        server_config: ServerConfig,
        session: Session | None = None,
    ) -> None:
        self.client_config = client_config
        self.server_config = server_config
        self.session = session  # offered by every client (resumption)
        self.client_events: list[Event] | None = None  # collects the client's events if set
        self.retransmissions = 0
        self.timer_jumps = 0.0  # virtual seconds skipped waiting for timers

    def run_one(
        self, server: DTLSServer | SingleAssociation, address: Address, now: float
    ) -> DTLSClientConnection:
        client = DTLSClientConnection(self.client_config, session=self.session)
        client.start(now)
        events = self.client_events
        start_now = now
        for _ in range(_MAX_ROUNDS):
            moved = False
            for datagram in client.datagrams_to_send(now):
                moved = True
                server.receive_datagram(address, datagram, now)
            for _to, datagram in server.datagrams_to_send(now):
                moved = True
                received = client.receive_datagram(datagram, now)
                if events is not None:
                    events += received
            if moved:
                continue
            conn = server.connection_for(address)
            done = (
                client.handshake_complete
                and conn is not None
                and conn.handshake_complete
                and client.next_timer() is None  # our last flight was acknowledged
            )
            if done:
                break
            timers = [t for t in (client.next_timer(), server.next_timer()) if t is not None]
            if not timers:
                raise RuntimeError(f"DTLS handshake stalled: {client.error}")
            now = max(now, min(timers))
            client.handle_timer(now)
            server.handle_timer(now)
        else:
            raise RuntimeError("DTLS handshake did not finish")
        conn = server.connection_for(address)
        assert conn is not None
        self.retransmissions += client.retransmissions + conn.retransmissions
        self.timer_jumps += now - start_now
        return client


def dtls_handshake_runner(pki: Pki, *, cookie: bool, scenario: Scenario | None = None) -> Runner:
    """Full DTLS 1.3 handshakes, each against a fresh DTLSServer (one association: its
    polling methods walk every association, which would otherwise grow with the count)."""
    client_config, server_config = configs(
        pki, scenario or Scenario(), server_extra={"dtls_cookie": cookie}
    )
    driver = DTLSHandshake(client_config, server_config)
    address = ("127.0.0.1", 40000)
    info: dict[str, object] = {}
    count = 0

    def run(n: int) -> float:
        nonlocal count
        now = time.time()
        start = clock()
        for _ in range(n):
            driver.run_one(DTLSServer(server_config), address, now)
        elapsed = clock() - start
        count += n
        info["retransmissions_per_handshake"] = round(driver.retransmissions / count, 3)
        info["virtual_timer_wait_per_handshake_s"] = round(driver.timer_jumps / count, 3)
        return elapsed

    return Runner(run, info=info)


def dtls_bulk_runner(pki: Pki, datagram_size: int, chunk: int = 16384) -> Runner:
    """Client -> server application data in datagrams of at most ``datagram_size`` bytes."""
    mtu = datagram_size + IP_UDP_OVERHEAD
    client_config, server_config = configs(pki, Scenario(), mtu=mtu)
    driver = DTLSHandshake(client_config, server_config)
    server = DTLSServer(server_config)
    address = ("127.0.0.1", 40001)
    now = time.time()
    client = driver.run_one(server, address, now)
    payload = bytes(chunk)
    info: dict[str, object] = {"largest_datagram": 0, "datagrams_per_chunk": 0}

    def run(n: int) -> float:
        largest = datagrams = received = 0
        start = clock()
        for _ in range(n):
            client.send_data(payload)
            for datagram in client.datagrams_to_send(now):
                largest = max(largest, len(datagram))
                datagrams += 1
                for _conn, event in server.receive_datagram(address, datagram, now):
                    if isinstance(event, ApplicationData):
                        received += len(event.data)
        elapsed = clock() - start
        if received != n * chunk:
            raise RuntimeError(f"received {received} of {n * chunk} bytes")
        info["largest_datagram"] = largest
        info["datagrams_per_chunk"] = datagrams / n
        return elapsed

    return Runner(run, info=info)


def dtls_resumed_handshake_runner(pki: Pki) -> Runner:
    """DTLS 1.3 resumed handshakes (ticket, psk_dhe_ke, x25519, cookie exchange on, as in
    the full cookie row), each against a fresh DTLSServer sharing the ticket keys."""
    client_config, issuing, resuming = resumption_configs(pki)
    address = ("127.0.0.1", 40002)
    first = DTLSHandshake(client_config, issuing)
    first.client_events = []
    first.run_one(DTLSServer(issuing), address, time.time())
    session = first_session(first.client_events)
    if not session.dtls:
        raise RuntimeError("a TLS ticket came back from a DTLS handshake")
    driver = DTLSHandshake(client_config, resuming, session)
    info: dict[str, object] = {}
    count = 0

    def run(n: int) -> float:
        nonlocal count
        now = time.time()
        start = clock()
        for _ in range(n):
            driver.run_one(DTLSServer(resuming), address, now)
        elapsed = clock() - start
        count += n
        info["retransmissions_per_handshake"] = round(driver.retransmissions / count, 3)
        return elapsed

    client = driver.run_one(DTLSServer(resuming), address, time.time())
    parameters = client.parameters
    if parameters is None or not parameters.resumed or parameters.psk_mode != "psk_dhe_ke":
        raise RuntimeError("the DTLS handshake did not resume with psk_dhe_ke")
    return Runner(run, info=info)
