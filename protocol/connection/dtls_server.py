"""Many DTLS 1.3 associations behind one UDP socket, Sans-IO.

Datagrams are routed by Connection ID when the association negotiated one (so a client whose
address changes, e.g. after NAT rebinding, carries on: RFC 9146, RFC 9147 §9), otherwise by
the peer's address. Unknown addresses get the stateless cookie exchange (RFC 9147 §5.1): an
association object exists only once a ClientHello returns a valid cookie.

The work per datagram does not grow with the number of associations: routing is a dict
lookup, ``datagrams_to_send`` visits only the associations that were touched since the last
call (by a datagram, a timer, or the application sending or closing), and timers sit in a
heap with lazy deletion, so ``next_timer`` is O(1) amortized and ``handle_timer`` O(log n)
per due association.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable

from handshake.alerts import AlertDescription, HandshakeError
from handshake.server import ServerHandshake
from protocol.config import ServerConfig
from protocol.connection.dtls import (
    IP_UDP_OVERHEAD,
    DTLSServerConnection,
    client_hello_cookie,
    stateless_retry_records,
)
from protocol.dtls.cookie import CookieSealer, HelloCollector, address_bytes
from protocol.events import Event
from records.content_types import ContentType
from records.dtls_header import PlaintextRecord, parse_datagram
from records.dtls_layer import DTLSRecordLayer

Address = Hashable

# Addresses with a ClientHello in pieces that we remember at once (least recent dropped).
MAX_PENDING_HELLOS = 4096
_UNIFIED_CID_BIT = 0x10
_HANDSHAKE_BYTE = bytes((ContentType.handshake,))


class _Association(DTLSServerConnection):
    """A DTLSServerConnection that tells its DTLSServer when the application queues output
    or starts a timer outside a datagram or timer call (send_data, key_update, close), so
    the server never has to poll every association for that."""

    _notify: Callable[[DTLSServerConnection], None] | None = None

    def send_data(self, data: bytes) -> None:
        super().send_data(data)
        self._touched()

    def key_update(self, request_peer_update: bool = True) -> None:
        super().key_update(request_peer_update)
        self._touched()

    def close(self) -> None:
        super().close()
        self._touched()

    def issue_connection_ids(self, count: int, *, immediate: bool = False) -> tuple[bytes, ...]:
        fresh = super().issue_connection_ids(count, immediate=immediate)
        self._touched()
        return fresh

    def request_connection_ids(self, count: int = 1) -> None:
        super().request_connection_ids(count)
        self._touched()

    def _touched(self) -> None:
        notify = self._notify
        if notify is not None:
            notify(self)


class DTLSServer:
    """Demultiplexes datagrams to associations; the driver owns the socket."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._cookies = CookieSealer(config.cookie_secret)
        self._hellos: OrderedDict[Address, HelloCollector] = OrderedDict()
        self._by_address: dict[Address, DTLSServerConnection] = {}
        self._by_cid: dict[bytes, DTLSServerConnection] = {}
        self._address_of: dict[int, Address] = {}
        self._stateless_out: list[tuple[Address, bytes]] = []
        self._cid_length = config.cid_length or 0
        self._retry_layer = DTLSRecordLayer()  # epoch-0 framing of stateless retries
        self._chooser = ServerHandshake(config.handshake_config(dtls=True))
        self._payload_limit = max(config.mtu - IP_UDP_OVERHEAD, 64)
        # Associations that may have output or a new state since datagrams_to_send last ran
        # (a dict: insertion-ordered, so datagrams leave in the order they were caused).
        self._touched: dict[DTLSServerConnection, None] = {}
        # Timers: a heap of (deadline, tie-breaker, association); an entry is current only
        # while it matches _deadlines[association], older ones are skipped when they surface.
        self._timers: list[tuple[float, int, DTLSServerConnection]] = []
        self._deadlines: dict[DTLSServerConnection, float] = {}
        self._tie = itertools.count()
        # Associations that ran since their timer was last filed; filed lazily by next_timer
        # and handle_timer, so a burst of datagrams asks each association only once.
        self._retime: dict[DTLSServerConnection, None] = {}

    @property
    def connections(self) -> list[DTLSServerConnection]:
        return list(self._by_address.values())

    def connection_for(self, address: Address) -> DTLSServerConnection | None:
        return self._by_address.get(address)

    def receive_datagram(
        self, address: Address, data: bytes, now: float
    ) -> list[tuple[DTLSServerConnection, Event]]:
        conn = self._route(address, data)
        if conn is not None and not _is_new_client_hello(data, conn):
            before = conn.record_stats.records  # type: ignore[attr-defined]
            events = conn.receive_datagram(data, now)
            self._touch(conn)
            if conn.cid_received and conn.cid_received not in self._by_cid:
                self._by_cid[conn.cid_received] = conn
            if self._address_of.get(id(conn)) != address and (
                conn.record_stats.records > before  # type: ignore[attr-defined]
            ):
                # The CID found it and a record authenticated: the client moved (§9).
                self._move(conn, address)
            return [(conn, e) for e in events]
        return self._unknown_peer(address, data, now)

    def datagrams_to_send(self, now: float) -> list[tuple[Address, bytes]]:
        out, self._stateless_out = self._stateless_out, []
        touched, self._touched = self._touched, {}
        for conn in touched:
            address = self._address_of.get(id(conn))
            if address is None:
                continue  # forgotten since it was touched
            out.extend((address, d) for d in conn.datagrams_to_send(now))
            if conn.state in ("closed", "failed"):
                self._forget(conn)
        return out

    def next_timer(self) -> float | None:
        if self._retime:
            self._file_timers()
        timers = self._timers
        deadlines = self._deadlines
        while timers:
            deadline, _, conn = timers[0]
            if deadlines.get(conn) == deadline:
                return deadline
            heapq.heappop(timers)  # superseded or forgotten
        return None

    def handle_timer(self, now: float) -> list[tuple[DTLSServerConnection, Event]]:
        events: list[tuple[DTLSServerConnection, Event]] = []
        if self._retime:
            self._file_timers()
        timers = self._timers
        deadlines = self._deadlines
        due: list[DTLSServerConnection] = []
        while timers and timers[0][0] <= now:
            deadline, _, conn = heapq.heappop(timers)
            if deadlines.get(conn) == deadline:
                del deadlines[conn]
                due.append(conn)
        for conn in due:
            events.extend((conn, e) for e in conn.handle_timer(now))
            self._touch(conn)
        return events

    def _touch(self, conn: DTLSServerConnection) -> None:
        """``conn`` ran: its output is collected by the next datagrams_to_send and its timer
        (which only moves when it runs) is filed again before timers are next looked at."""
        self._touched[conn] = None
        self._retime[conn] = None
        for cid in conn.take_new_connection_ids():
            self._by_cid[cid] = conn  # issued by NewConnectionId (RFC 9147 §9)

    def _file_timers(self) -> None:
        retime, self._retime = self._retime, {}
        deadlines = self._deadlines
        for conn in retime:
            if id(conn) not in self._address_of:
                continue  # forgotten meanwhile
            deadline = conn.next_timer()
            if deadline is None:
                deadlines.pop(conn, None)
            elif deadlines.get(conn) != deadline:
                deadlines[conn] = deadline
                heapq.heappush(self._timers, (deadline, next(self._tie), conn))

    # -- routing -------------------------------------------------------------------------------

    def _route(self, address: Address, data: bytes) -> DTLSServerConnection | None:
        if self._cid_length and data and data[0] & 0xE0 == 0x20 and data[0] & _UNIFIED_CID_BIT:
            conn = self._by_cid.get(bytes(data[1 : 1 + self._cid_length]))
            if conn is not None:
                return conn
        return self._by_address.get(address)

    def _unknown_peer(
        self, address: Address, data: bytes, now: float
    ) -> list[tuple[DTLSServerConnection, Event]]:
        if not self.config.dtls_cookie:
            conn = _Association(
                self.config,
                peer_address=address,
                cookie_exchange=False,
                cid_taken=self._by_cid.__contains__,
            )
            self._add(conn, address)
            events = conn.receive_datagram(data, now)
            self._touch(conn)
            return [(conn, e) for e in events]
        collector = self._hellos.pop(address, None) or HelloCollector()
        self._hellos[address] = collector
        while len(self._hellos) > MAX_PENDING_HELLOS:
            self._hellos.popitem(last=False)
        out: list[tuple[DTLSServerConnection, Event]] = []
        for record in parse_datagram(data).records:
            if not isinstance(record, PlaintextRecord) or record.content_type != 22:
                continue
            for message_seq, message in collector.add(record.fragment):
                created = self._hello(address, message_seq, message, now)
                if created is not None:
                    out.extend(created)
                    return out
        return out

    def _hello(
        self, address: Address, message_seq: int, message: bytes, now: float
    ) -> list[tuple[DTLSServerConnection, Event]] | None:
        peer = address_bytes(address)
        try:
            cookie = client_hello_cookie(message)
            if cookie is None:
                params, build = self._chooser.stateless_retry(message)
                hrr = build(self._cookies.seal(params, peer, now))
                for record in stateless_retry_records(hrr, self._retry_layer, self._payload_limit):
                    self._stateless_out.append((address, record))
                return None
        except HandshakeError as exc:
            # A hello we would refuse anyway: its alert (15 bytes, no amplification) and
            # nothing kept, so the client learns why instead of timing out.
            self._send_stateless_alert(address, exc.alert)
            return None
        params_opt = self._cookies.open(cookie, peer, now)
        if params_opt is None:
            # RFC 9147 §5.1: an invalid cookie ends the handshake with illegal_parameter, so
            # the client can start afresh; a 15-byte alert amplifies nothing.
            self._send_stateless_alert(address, AlertDescription.illegal_parameter)
            return None
        self._hellos.pop(address, None)
        old = self._by_address.get(address)
        conn, events = _Association.from_cookie(
            self.config,
            params_opt,
            cookie,
            message_seq,
            message,
            now,
            peer_address=address,
            first_record_seq=self._retry_layer.next_write_seq(0),
            cid_taken=self._by_cid.__contains__,
        )
        if old is not None:
            # RFC 9147 §5.11: the client proved reachability; the new association wins.
            self._forget(old)
        self._add(conn, address)
        self._touch(conn)
        return [(conn, e) for e in events]

    def _send_stateless_alert(self, address: Address, alert: AlertDescription) -> None:
        _, record = self._retry_layer.encode_record(ContentType.alert, bytes((2, alert)), epoch=0)
        self._stateless_out.append((address, record))

    def _add(self, conn: DTLSServerConnection, address: Address) -> None:
        if isinstance(conn, _Association):
            conn._notify = self._touch
        self._by_address[address] = conn
        self._address_of[id(conn)] = address
        if conn.cid_received:  # known once the ServerHello went out
            self._by_cid[conn.cid_received] = conn

    def _move(self, conn: DTLSServerConnection, address: Address) -> None:
        old = self._address_of.get(id(conn))
        if old is not None and self._by_address.get(old) is conn:
            del self._by_address[old]
        self._by_address[address] = conn
        self._address_of[id(conn)] = address

    def _forget(self, conn: DTLSServerConnection) -> None:
        if isinstance(conn, _Association):
            conn._notify = None
        self._deadlines.pop(conn, None)  # its heap entry is skipped when it surfaces
        self._touched.pop(conn, None)
        self._retime.pop(conn, None)
        address = self._address_of.pop(id(conn), None)
        if address is not None and self._by_address.get(address) is conn:
            del self._by_address[address]
        for cid in conn.connection_ids_issued:
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]


def _is_new_client_hello(data: bytes, conn: DTLSServerConnection) -> bool:
    """An epoch-0 ClientHello with message_seq 0 to an established association: a client
    that restarted (RFC 9147 §5.11). It goes through the cookie exchange afresh."""
    # The first byte rules out nearly every datagram of an association (protected records
    # start with 001xxxxx), so it is tested first.
    return (
        data[:1] == _HANDSHAKE_BYTE
        and len(data) >= 25
        and data[13] == 1
        and data[17:19] == b"\x00\x00"
        and conn.handshake_complete
    )
