"""Server session tickets: self-encrypted, stateless (RFC 8446 §4.6.1, §8, RFC 5077 §4 style).

A ticket is ``key_id(4) || nonce(12) || AES-256-GCM(state)`` under a key of a rotating ring,
so the server keeps nothing per ticket. The sealed state carries what resumption needs: the
resumption PSK, suite, ALPN, SNI, creation time, ticket_age_add, max_early_data and whether
the original connection authenticated the client (with a hash of its chain).

Anti-replay (§8) is the ``TicketManager``'s: optional single-use tickets (used ticket ids are
remembered until they expire, bounded), and for 0-RTT a ClientHello recording keyed by the
binder within a freshness window (§8.2, §8.3), also bounded. Both live in a ``ReplayStore``:
in memory by default; servers that share ticket keys share one store (e.g. backed by a
database's atomic insert) so that each ticket or ClientHello is accepted once across them all
(§8: "at most once ... across the serving infrastructure").
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .psk import MAX_TICKET_LIFETIME

_KEY_ID_LEN = 4
_NONCE_LEN = 12
_TAG_LEN = 16
_AAD = b"tls13 session ticket v1"
_STATE_VERSION = 1
# version(1) flags(1) suite(2) created_ms(8) lifetime(4) age_add(4) max_early_data(4)
_FIXED = struct.Struct("!BBHQIII")
_FLAG_CLIENT_AUTH = 1
_FLAG_DTLS = 2
_AGE_MODULUS = 1 << 32

DEFAULT_TICKET_LIFETIME = 7200  # seconds; RFC 8446 §4.6.1 allows up to 7 days
DEFAULT_TICKET_COUNT = 2
# §8.3: how far the client's view of the ticket age may stray from ours for 0-RTT.
DEFAULT_FRESHNESS_WINDOW = 10.0
DEFAULT_REPLAY_CACHE = 100_000
DEFAULT_USED_TICKETS = 100_000


@dataclass(frozen=True)
class TicketState:
    """What a ticket seals (its plaintext)."""

    psk: bytes = field(repr=False)
    suite: int
    created: float  # server clock, seconds
    lifetime: int
    age_add: int
    max_early_data: int
    alpn: bytes | None
    sni: str | None
    client_auth: bool
    peer_chain_hash: bytes  # SHA-256 over the client's chain (DER, length-prefixed); b"" if none
    dtls: bool

    def encode(self) -> bytes:
        flags = (_FLAG_CLIENT_AUTH if self.client_auth else 0) | (_FLAG_DTLS if self.dtls else 0)
        out = bytearray(
            _FIXED.pack(
                _STATE_VERSION,
                flags,
                self.suite,
                int(self.created * 1000),
                self.lifetime,
                self.age_add,
                self.max_early_data,
            )
        )
        sni = (self.sni or "").encode("ascii")
        for value, width in (
            (self.psk, 1),
            (b"\x01" + self.alpn if self.alpn is not None else b"", 1),
            (sni, 2),
            (self.peer_chain_hash, 1),
        ):
            out += len(value).to_bytes(width, "big") + value
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> TicketState | None:
        """The state, or None for anything malformed (a ticket is never a reason to fail)."""
        if len(data) < _FIXED.size:
            return None
        version, flags, suite, created_ms, lifetime, age_add, max_early = _FIXED.unpack_from(data)
        if version != _STATE_VERSION:
            return None
        pos = _FIXED.size
        parts: list[bytes] = []
        for width in (1, 1, 2, 1):
            if pos + width > len(data):
                return None
            n = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if pos + n > len(data):
                return None
            parts.append(data[pos : pos + n])
            pos += n
        if pos != len(data):
            return None
        psk, alpn, sni, chain_hash = parts
        return cls(
            psk=psk,
            suite=suite,
            created=created_ms / 1000,
            lifetime=lifetime,
            age_add=age_add,
            max_early_data=max_early,
            alpn=alpn[1:] if alpn else None,
            sni=sni.decode("ascii", "replace") or None,
            client_auth=bool(flags & _FLAG_CLIENT_AUTH),
            peer_chain_hash=chain_hash,
            dtls=bool(flags & _FLAG_DTLS),
        )

    def expired(self, now: float) -> bool:
        return not 0 <= now - self.created < self.lifetime

    def client_age_error(self, obfuscated_age: int, now: float) -> float:
        """§8.3: |expected arrival - actual arrival| in seconds, from the client's ticket age."""
        client_age = ((obfuscated_age - self.age_add) % _AGE_MODULUS) / 1000
        return abs((self.created + client_age) - now)


def chain_hash(chain_der: list[bytes]) -> bytes:
    h = hashlib.sha256()
    for der in chain_der:
        h.update(len(der).to_bytes(3, "big"))
        h.update(der)
    return h.digest()


class TicketKeyRing:
    """AES-256-GCM ticket keys; the newest seals, every kept key opens.

    ``rotate()`` starts a new key and keeps at most ``max_keys`` (tickets sealed under a
    dropped key no longer open: those clients fall back to a full handshake). With
    ``rotation_interval`` set, sealing rotates once the current key is that old.
    """

    def __init__(
        self,
        keys: list[bytes] | None = None,
        *,
        max_keys: int = 3,
        rotation_interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.rotation_interval = rotation_interval
        self._clock = clock
        self._keys: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._started = clock()
        for key in keys or [os.urandom(32)]:
            self._add(key)

    def _add(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("ticket keys are 32 bytes (AES-256-GCM)")
        key_id = hashlib.sha256(b"ticket key id" + key).digest()[:_KEY_ID_LEN]
        self._keys[key_id] = AESGCM(key)
        self._keys.move_to_end(key_id, last=False)  # newest first
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=True)

    def rotate(self, key: bytes | None = None) -> None:
        self._add(key or os.urandom(32))
        self._started = self._clock()

    def seal(self, plaintext: bytes) -> bytes:
        if self.rotation_interval is not None and (
            self._clock() - self._started >= self.rotation_interval
        ):
            self.rotate()
        key_id, aead = next(iter(self._keys.items()))
        nonce = os.urandom(_NONCE_LEN)
        return key_id + nonce + aead.encrypt(nonce, plaintext, _AAD + key_id)

    def open(self, ticket: bytes) -> bytes | None:
        if len(ticket) < _KEY_ID_LEN + _NONCE_LEN + _TAG_LEN:
            return None
        aead = self._keys.get(ticket[:_KEY_ID_LEN])
        if aead is None:
            return None
        nonce = ticket[_KEY_ID_LEN : _KEY_ID_LEN + _NONCE_LEN]
        try:
            return aead.decrypt(nonce, ticket[_KEY_ID_LEN + _NONCE_LEN :], _AAD + ticket[:4])
        except InvalidTag:
            return None


class ReplayStore(Protocol):
    """Remembers keys until they expire. ``seen`` and ``add_if_new`` must see every server's
    entries when stores are shared; ``add_if_new`` must be atomic (check and insert as one
    step), as two servers may get the same replayed ClientHello at once."""

    def seen(self, key: bytes, now: float) -> bool: ...

    def add_if_new(self, key: bytes, expiry: float, now: float) -> bool:
        """Record ``key`` until ``expiry``; False if it was already there (and live)."""
        ...

    def __len__(self) -> int: ...


class MemoryReplayStore:
    """Keys remembered until their expiry, at most ``limit`` of them (oldest dropped): one
    process's memory. The bound trades safety for memory: under a flood of distinct keys the
    oldest are forgotten early (size it for the expected rate x the retention time)."""

    def __init__(self, limit: int = DEFAULT_REPLAY_CACHE) -> None:
        self._limit = limit
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def seen(self, key: bytes, now: float) -> bool:
        expiry = self._entries.get(key)
        return expiry is not None and expiry > now

    def add_if_new(self, key: bytes, expiry: float, now: float) -> bool:
        if self.seen(key, now):
            return False
        self.add(key, expiry, now)
        return True

    def add(self, key: bytes, expiry: float, now: float) -> None:
        entries = self._entries
        entries[key] = expiry
        entries.move_to_end(key)
        # Expired entries at the front go first; then the bound.
        while entries and (next(iter(entries.values())) <= now or len(entries) > self._limit):
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TicketManager:
    """Issues and checks a server's tickets; one instance is shared by every connection of a
    server configuration (it holds the key ring and the anti-replay memory)."""

    def __init__(
        self,
        keys: TicketKeyRing | None = None,
        *,
        count: int = DEFAULT_TICKET_COUNT,
        lifetime: int = DEFAULT_TICKET_LIFETIME,
        max_early_data: int = 0,
        single_use: bool = False,
        freshness_window: float = DEFAULT_FRESHNESS_WINDOW,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE,
        used_tickets_size: int = DEFAULT_USED_TICKETS,
        replay_store: ReplayStore | None = None,
    ) -> None:
        if not 0 <= lifetime <= MAX_TICKET_LIFETIME:
            raise ValueError("ticket lifetime is 0..604800 seconds (RFC 8446 §4.6.1)")
        if count < 0 or max_early_data < 0 or max_early_data >= 1 << 32:
            raise ValueError("ticket count and max_early_data must be >= 0 (uint32)")
        self.keys = keys or TicketKeyRing()
        self.count = count
        self.lifetime = lifetime
        self.max_early_data = max_early_data
        self.single_use = single_use
        self.freshness_window = freshness_window
        # One store may serve both uses: used-ticket ids and binder hashes never collide
        # (they are prefixed).
        # (``is None``: an empty store is falsy, having __len__.)
        self._used: ReplayStore = (
            MemoryReplayStore(used_tickets_size) if replay_store is None else replay_store
        )
        self._recorded: ReplayStore = (
            MemoryReplayStore(replay_cache_size) if replay_store is None else replay_store
        )

    # -- sealing (overridable, e.g. to stand in for another server's tickets in tests) ------

    def seal(self, state: TicketState) -> bytes:
        return self.keys.seal(state.encode())

    def unseal(self, ticket: bytes) -> TicketState | None:
        plaintext = self.keys.open(ticket)
        return None if plaintext is None else TicketState.decode(plaintext)

    # -- resumption -------------------------------------------------------------------------

    def open(self, ticket: bytes, now: float) -> TicketState | None:
        """The state of a ticket we can resume now, or None (full handshake, never an error:
        RFC 8446 §4.2.11 lets the server ignore any PSK)."""
        state = self.unseal(ticket)
        if state is None or state.expired(now):
            return None
        if self.single_use and self._used.seen(_USED + _ticket_id(ticket), now):
            return None
        return state

    def consume(self, ticket: bytes, state: TicketState, now: float) -> bool:
        """Single-use mode (§8.1): the ticket resumes once within its lifetime; False when
        it was used already (by another connection, or another server sharing the store)."""
        if not self.single_use:
            return True
        expiry = state.created + state.lifetime
        return self._used.add_if_new(_USED + _ticket_id(ticket), expiry, now)

    def early_data_acceptable(
        self, state: TicketState, obfuscated_age: int, binder: bytes, now: float
    ) -> bool:
        """§8.2/§8.3: 0-RTT only for a fresh ClientHello never seen before (recorded by
        its binder, unique per ClientHello) within the freshness window."""
        if state.client_age_error(obfuscated_age, now) > self.freshness_window:
            return False
        key = _RECORDED + hashlib.sha256(binder).digest()
        return self._recorded.add_if_new(key, now + 2 * self.freshness_window, now)

    @property
    def replay_entries(self) -> int:
        return len(self._recorded)


_USED, _RECORDED = b"u", b"c"  # key prefixes: a shared store holds both kinds


def _ticket_id(ticket: bytes) -> bytes:
    return hashlib.sha256(ticket).digest()[:16]
