"""Server tickets: sealed state, key ring rotation, lifetime, single use and 0-RTT anti-replay."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from handshake.cipher_suites import TLS_AES_256_GCM_SHA384
from handshake.tickets import TicketKeyRing, TicketManager, TicketState, chain_hash

NOW = 1_700_000_000.0


def state(**overrides: object) -> TicketState:
    values: dict[str, object] = {
        "psk": os.urandom(48),
        "suite": TLS_AES_256_GCM_SHA384,
        "created": NOW,
        "lifetime": 3600,
        "age_add": 0xDEADBEEF,
        "max_early_data": 4096,
        "alpn": b"h2",
        "sni": "example.com",
        "client_auth": True,
        "peer_chain_hash": chain_hash([b"leaf", b"ca"]),
        "dtls": False,
    }
    values.update(overrides)
    return TicketState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"alpn": None, "sni": None, "client_auth": False, "peer_chain_hash": b""}, {"dtls": True}],
)
def test_state_round_trip(overrides: dict[str, object]) -> None:
    original = state(**overrides)
    assert TicketState.decode(original.encode()) == original


def test_state_empty_alpn_differs_from_none() -> None:
    empty = state(alpn=b"")
    assert TicketState.decode(empty.encode()) == empty


@pytest.mark.parametrize("cut", [0, 1, 10, 30, -1])
def test_truncated_state_is_none(cut: int) -> None:
    data = state().encode()
    assert TicketState.decode(data[:cut]) is None
    assert TicketState.decode(data + b"\x00") is None


def test_key_ring_seals_and_opens() -> None:
    ring = TicketKeyRing()
    ticket = ring.seal(b"state")
    assert ring.open(ticket) == b"state"
    assert ring.seal(b"state") != ticket  # fresh nonce each time


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ticket_does_not_open(position: int) -> None:
    ring = TicketKeyRing()
    ticket = bytearray(ring.seal(b"state"))
    ticket[position] ^= 1
    assert ring.open(bytes(ticket)) is None
    assert ring.open(b"short") is None


def test_rotation_keeps_recent_keys_only() -> None:
    ring = TicketKeyRing(max_keys=2)
    first = ring.seal(b"1")
    ring.rotate()
    second = ring.seal(b"2")
    assert ring.open(first) == b"1" and ring.open(second) == b"2"
    ring.rotate()
    assert ring.open(first) is None  # its key was dropped: a full handshake follows
    assert ring.open(second) == b"2"


def test_automatic_rotation_by_interval() -> None:
    clock = [0.0]
    ring = TicketKeyRing(rotation_interval=100, clock=lambda: clock[0])
    first = ring.seal(b"x")
    clock[0] = 150
    second = ring.seal(b"y")
    assert first[:4] != second[:4]  # a new key id
    assert ring.open(first) == b"x"


def test_shared_keys_open_across_rings() -> None:
    key = os.urandom(32)
    assert TicketKeyRing([key]).open(TicketKeyRing([key]).seal(b"s")) == b"s"
    assert TicketKeyRing().open(TicketKeyRing([key]).seal(b"s")) is None


def test_manager_lifetime() -> None:
    manager = TicketManager(lifetime=3600)
    sealed = state()
    ticket = manager.seal(sealed)
    assert manager.open(ticket, NOW + 10) == sealed
    assert manager.open(ticket, NOW + 3600) is None  # RFC 8446 §4.6.1: past its lifetime
    assert manager.open(ticket, NOW - 5) is None  # from the future: not ours to trust
    assert manager.open(b"\x00" * 60, NOW) is None


def test_manager_limits() -> None:
    with pytest.raises(ValueError):
        TicketManager(lifetime=604801)  # RFC 8446 §4.6.1: at most 7 days
    with pytest.raises(ValueError):
        TicketManager(count=-1)


def test_single_use() -> None:
    manager = TicketManager(single_use=True)
    s = state()
    ticket = manager.seal(s)
    opened = manager.open(ticket, NOW + 1)
    assert opened is not None
    manager.consume(ticket, opened, NOW + 1)
    assert manager.open(ticket, NOW + 2) is None
    other = manager.seal(s)
    assert manager.open(other, NOW + 2) is not None
    # Without single use, consume() remembers nothing.
    reusable = TicketManager()
    ticket = reusable.seal(s)
    reusable.consume(ticket, s, NOW)
    assert reusable.open(ticket, NOW + 1) is not None


def test_used_tickets_are_bounded() -> None:
    manager = TicketManager(single_use=True, used_tickets_size=3)
    s = state()
    tickets = [manager.seal(s) for _ in range(5)]
    for ticket in tickets:
        manager.consume(ticket, s, NOW)
    assert manager.open(tickets[0], NOW) is not None  # forgotten: the memory is bounded
    assert manager.open(tickets[-1], NOW) is None


def test_early_data_freshness_and_replay() -> None:
    manager = TicketManager(max_early_data=100, freshness_window=10)
    s = state(created=NOW, age_add=7)
    age_ms = 30_000
    obfuscated = (age_ms + 7) % 2**32
    # The client's age says the ClientHello left 30 s after the ticket; it arrives then.
    assert manager.early_data_acceptable(s, obfuscated, b"binder-1", NOW + 30)
    # §8.2: the same ClientHello (binder) again is a replay.
    assert not manager.early_data_acceptable(s, obfuscated, b"binder-1", NOW + 31)
    # §8.3: arriving 25 s later than the client's age implies: outside the window.
    assert not manager.early_data_acceptable(s, obfuscated, b"binder-2", NOW + 55)
    assert manager.early_data_acceptable(s, obfuscated, b"binder-3", NOW + 39)
    # Age wraps modulo 2^32 with a large ticket_age_add.
    big = replace(s, age_add=0xFFFFFFF0)
    assert manager.early_data_acceptable(big, (1000 + 0xFFFFFFF0) % 2**32, b"b4", NOW + 1)


def test_replay_cache_is_bounded_and_expires() -> None:
    manager = TicketManager(max_early_data=100, freshness_window=10, replay_cache_size=2)
    s = state(created=NOW, age_add=0)
    for i in range(5):
        assert manager.early_data_acceptable(s, 0, b"b%d" % i, NOW)
    assert manager.replay_entries == 2
    # Entries older than the window could not pass the freshness check anyway: dropped.
    assert manager.early_data_acceptable(s, 100_000, b"late", NOW + 100)
    assert manager.replay_entries == 1
