"""Stateless return-routability check for DTLS 1.3 servers (RFC 9147 §5.1).

The server answers a ClientHello without a valid cookie with a HelloRetryRequest whose cookie
seals everything it needs to continue later: the chosen suite and group, the hash of the first
ClientHello (the transcript keeps only that, RFC 8446 §4.4.1), the time, and a MAC binding all
of it to the client's address. Nothing is stored per client until a valid cookie returns.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from handshake.server import RetryParameters
from protocol.dtls.fragments import HandshakeReassembler

# version(1) issued_ms(8) suite(2) group(2) flags(1) hash_len(1) hash(n) ... mac(16)
_FIXED = struct.Struct("!BQHHBB")
_VERSION = 1
_MAC_LEN = 16
# RFC 9147 §5.1: reject cookies generated outside a certain interval of time.
COOKIE_LIFETIME = 60.0


class CookieSealer:
    """Makes and checks cookies under a secret; the previous secret stays valid after a
    rotation so clients mid-handshake are not cut off (RFC 9147 §5.1 key rotation)."""

    def __init__(self, secret: bytes | None = None, lifetime: float = COOKIE_LIFETIME) -> None:
        self._secrets = [secret or os.urandom(32)]
        self.lifetime = lifetime

    def rotate(self, secret: bytes | None = None) -> None:
        self._secrets = [secret or os.urandom(32), self._secrets[0]]

    def seal(self, params: RetryParameters, address: bytes, now: float) -> bytes:
        body = (
            _FIXED.pack(
                _VERSION,
                int(now * 1000),
                params.suite,
                params.group,
                1 if params.group_requested else 0,
                len(params.client_hello_hash),
            )
            + params.client_hello_hash
        )
        return body + self._mac(self._secrets[0], address, body)

    def open(self, cookie: bytes, address: bytes, now: float) -> RetryParameters | None:
        """The sealed parameters, or None for a forged, foreign or stale cookie."""
        if len(cookie) < _FIXED.size + _MAC_LEN:
            return None
        body, mac = cookie[:-_MAC_LEN], cookie[-_MAC_LEN:]
        if not any(hmac.compare_digest(mac, self._mac(s, address, body)) for s in self._secrets):
            return None
        version, issued_ms, suite, group, flags, hash_len = _FIXED.unpack_from(body)
        if version != _VERSION or len(body) != _FIXED.size + hash_len:
            return None
        age = now - issued_ms / 1000
        if not -1.0 <= age <= self.lifetime:
            return None
        return RetryParameters(
            suite=suite,
            group=group,
            group_requested=bool(flags & 1),
            client_hello_hash=body[_FIXED.size :],
        )

    @staticmethod
    def _mac(secret: bytes, address: bytes, body: bytes) -> bytes:
        return hmac.new(secret, address + body, hashlib.sha256).digest()[:_MAC_LEN]


def address_bytes(address: object) -> bytes:
    """A stable byte form of a transport address (host, port[, ...]) for cookie binding."""
    return repr(address).encode()


class HelloCollector:
    """Reassembles ClientHellos from epoch-0 records before any association exists.

    A ClientHello may span datagrams (NSS's default one does), so even a stateless server
    must hold fragments briefly; this holds at most two messages of bounded size.
    """

    MAX_PARTIAL = 2

    def __init__(self) -> None:
        self._partial: dict[int, HandshakeReassembler] = {}

    def add(self, payload: bytes) -> list[tuple[int, bytes]]:
        """Complete ClientHellos as ``(message_seq, message)``; anything else is ignored."""
        if len(payload) < 12 or payload[0] != 1:
            return []
        seq = int.from_bytes(payload[4:6], "big")
        reassembler = self._partial.get(seq)
        if reassembler is None:
            if len(self._partial) >= self.MAX_PARTIAL:
                self._partial.pop(next(iter(self._partial)))
            reassembler = self._partial[seq] = HandshakeReassembler(next_seq=seq)
        reassembler.add_record(payload)
        done: list[tuple[int, bytes]] = []
        while (item := reassembler.next_message()) is not None:
            done.append(item)
        if done:
            # Forget it: a retransmitted ClientHello is collected and answered afresh.
            del self._partial[seq]
        return done
