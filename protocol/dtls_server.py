"""Many DTLS 1.3 associations behind one UDP socket, Sans-IO.

Datagrams are routed by Connection ID when the association negotiated one (so a client whose
address changes, e.g. after NAT rebinding, carries on: RFC 9146, RFC 9147 §9), otherwise by
the peer's address. Unknown addresses get the stateless cookie exchange (RFC 9147 §5.1): an
association object exists only once a ClientHello returns a valid cookie.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from handshake.alerts import AlertDescription, HandshakeError
from handshake.server import ServerHandshake
from records.content_types import ContentType
from records.dtls_header import PlaintextRecord, parse_datagram
from records.dtls_layer import DTLSRecordLayer

from .config import ServerConfig
from .dtls_connection import (
    IP_UDP_OVERHEAD,
    DTLSServerConnection,
    client_hello_cookie,
    stateless_retry_records,
)
from .dtls_cookie import CookieSealer, HelloCollector, address_bytes
from .events import Event

Address = Hashable

# Addresses with a ClientHello in pieces that we remember at once (least recent dropped).
MAX_PENDING_HELLOS = 4096
_UNIFIED_CID_BIT = 0x10


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
        for conn in list(self._by_address.values()):
            address = self._address_of[id(conn)]
            out.extend((address, d) for d in conn.datagrams_to_send(now))
            if conn.state in ("closed", "failed"):
                self._forget(conn)
        return out

    def next_timer(self) -> float | None:
        deadlines = [t for c in self._by_address.values() if (t := c.next_timer()) is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[tuple[DTLSServerConnection, Event]]:
        events: list[tuple[DTLSServerConnection, Event]] = []
        for conn in list(self._by_address.values()):
            deadline = conn.next_timer()
            if deadline is not None and deadline <= now:
                events.extend((conn, e) for e in conn.handle_timer(now))
        return events

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
            conn = DTLSServerConnection(self.config, peer_address=address, cookie_exchange=False)
            self._add(conn, address)
            return [(conn, e) for e in conn.receive_datagram(data, now)]
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
        except HandshakeError:
            return None  # nothing is kept and nothing answered for a hello we would refuse
        params_opt = self._cookies.open(cookie, peer, now)
        if params_opt is None:
            # RFC 9147 §5.1: an invalid cookie ends the handshake with illegal_parameter, so
            # the client can start afresh; a 15-byte alert amplifies nothing.
            _, alert = self._retry_layer.encode_record(
                ContentType.alert, bytes((2, AlertDescription.illegal_parameter)), epoch=0
            )
            self._stateless_out.append((address, alert))
            return None
        self._hellos.pop(address, None)
        old = self._by_address.get(address)
        conn, events = DTLSServerConnection.from_cookie(
            self.config, params_opt, cookie, message_seq, message, now, peer_address=address
        )
        if old is not None:
            # RFC 9147 §5.11: the client proved reachability; the new association wins.
            self._forget(old)
        self._add(conn, address)
        return [(conn, e) for e in events]

    def _add(self, conn: DTLSServerConnection, address: Address) -> None:
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
        address = self._address_of.pop(id(conn), None)
        if address is not None and self._by_address.get(address) is conn:
            del self._by_address[address]
        if conn.cid_received:
            self._by_cid.pop(conn.cid_received, None)


def _is_new_client_hello(data: bytes, conn: DTLSServerConnection) -> bool:
    """An epoch-0 ClientHello with message_seq 0 to an established association: a client
    that restarted (RFC 9147 §5.11). It goes through the cookie exchange afresh."""
    return (
        conn.handshake_complete
        and len(data) >= 25
        and data[0] == ContentType.handshake
        and data[13] == 1
        and data[17:19] == b"\x00\x00"
    )
