"""Pre-shared keys: resumption sessions, external PSKs and PSK binders (RFC 8446 §4.2.11).

A client offers PSKs in the ``pre_shared_key`` extension, each proven by a binder: an HMAC,
keyed from the PSK, over the transcript up to and including the ClientHello truncated before
the binders list (§4.2.11.2). A resumption PSK comes from a NewSessionTicket (§4.6.1) and is
kept by the client as a ``Session``; an external PSK is provisioned out of band.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from .alerts import AlertDescription, HandshakeError
from .cipher_suites import (
    CIPHER_SUITES,
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    CipherSuite,
)
from .key_schedule import KeySchedule

# RFC 8446 §4.2.9 PskKeyExchangeMode
PSK_KE = 0
PSK_DHE_KE = 1
PSK_MODE_NAMES = {PSK_KE: "psk_ke", PSK_DHE_KE: "psk_dhe_ke"}
PSK_MODES_BY_NAME = {name: code for code, name in PSK_MODE_NAMES.items()}

# RFC 8446 §4.6.1: "Servers MUST NOT use any value greater than 604800 seconds (7 days)";
# clients MUST NOT cache tickets for longer either.
MAX_TICKET_LIFETIME = 604800
_AGE_MODULUS = 1 << 32

# A suite per hash, only to run the key schedule where a PSK's hash but no suite is known.
_SUITE_FOR_HASH = {"sha256": TLS_AES_128_GCM_SHA256, "sha384": TLS_AES_256_GCM_SHA384}


def parse_psk_modes(names: tuple[str | int, ...]) -> tuple[int, ...]:
    """Mode names ("psk_dhe_ke", "psk_ke") or code points, in preference order."""
    out: list[int] = []
    for name in names:
        code = name if isinstance(name, int) else PSK_MODES_BY_NAME.get(name.strip().lower())
        if code not in PSK_MODE_NAMES:
            raise ValueError(f"unknown PSK key exchange mode {name!r}; known: psk_dhe_ke, psk_ke")
        if code not in out:
            out.append(code)
    return tuple(out)


@dataclass(frozen=True)
class ExternalPsk:
    """A PSK provisioned out of band (RFC 8446 §2.2): identity, key and its hash (§4.2.11:
    "the Hash algorithm ... MUST be set when the PSK is established", SHA-256 by default)."""

    identity: bytes
    key: bytes = field(repr=False)
    hash_name: str = "sha256"

    def __post_init__(self) -> None:
        if not 1 <= len(self.identity) <= 0xFFFF:
            raise ValueError("a PSK identity is 1..65535 bytes (RFC 8446 §4.2.11)")
        if self.hash_name not in _SUITE_FOR_HASH:
            raise ValueError("an external PSK's hash is sha256 or sha384")
        if not self.key:
            raise ValueError("an external PSK needs key bytes")


@dataclass(frozen=True)
class Session:
    """What a client keeps from a NewSessionTicket to resume later (RFC 8446 §4.6.1).

    ``received_at`` and ``lifetime`` are in seconds; ``age_add`` obfuscates the ticket age
    (§4.2.11.1). ``alpn`` and ``sni`` are those of the connection that got the ticket: 0-RTT
    must use the same ALPN (§4.2.10), and the ticket is only offered to the same name.
    """

    ticket: bytes = field(repr=False)
    psk: bytes = field(repr=False)
    suite: int
    lifetime: int
    age_add: int
    received_at: float
    max_early_data: int = 0
    alpn: bytes | None = None
    sni: str | None = None
    dtls: bool = False

    @property
    def cipher_suite(self) -> CipherSuite:
        return CIPHER_SUITES[self.suite]

    @property
    def hash_name(self) -> str:
        return self.cipher_suite.hash_name

    @property
    def expires_at(self) -> float:
        return self.received_at + min(self.lifetime, MAX_TICKET_LIFETIME)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def obfuscated_age(self, now: float) -> int:
        """§4.2.11.1: milliseconds since the ticket arrived, plus ticket_age_add mod 2^32."""
        age_ms = max(0, round((now - self.received_at) * 1000))
        return (age_ms + self.age_add) % _AGE_MODULUS


@dataclass(frozen=True)
class OfferedPsk:
    """One entry of a client's pre_shared_key extension, with its secret."""

    identity: bytes
    obfuscated_age: int
    key: bytes = field(repr=False)
    external: bool
    hash_name: str
    session: Session | None = None

    @property
    def max_early_data(self) -> int:
        return self.session.max_early_data if self.session is not None else 0


def schedule_for_hash(hash_name: str, dtls: bool) -> KeySchedule:
    return KeySchedule(CIPHER_SUITES[_SUITE_FOR_HASH[hash_name]], dtls=dtls)


def binder_transcript_hash(hash_name: str, prefix: bytes, truncated_hello: bytes) -> bytes:
    """§4.2.11.2: Transcript-Hash(Truncate(ClientHello1)), or after HelloRetryRequest
    Transcript-Hash(message_hash(ClientHello1), HelloRetryRequest, Truncate(ClientHello2))."""
    h = hashlib.new(hash_name, prefix)
    h.update(truncated_hello)
    return h.digest()


def compute_binder(
    hash_name: str, psk: bytes, *, external: bool, dtls: bool, transcript_hash: bytes
) -> bytes:
    """§4.2.11.2: the binder is a Finished computed with the binder_key as BaseKey."""
    schedule = schedule_for_hash(hash_name, dtls)
    schedule.set_psk(psk)
    return schedule.finished_verify_data(schedule.binder_key(external), transcript_hash)


def verify_binder(
    hash_name: str,
    psk: bytes,
    binder: bytes,
    *,
    external: bool,
    dtls: bool,
    transcript_hash: bytes,
) -> None:
    """A binder that does not validate aborts the handshake (§4.2.11; decrypt_error, §6.2)."""
    expected = compute_binder(
        hash_name, psk, external=external, dtls=dtls, transcript_hash=transcript_hash
    )
    if not hmac.compare_digest(expected, binder):
        raise HandshakeError(AlertDescription.decrypt_error, "PSK binder does not validate")


def placeholder_binders(offers: tuple[OfferedPsk, ...]) -> tuple[bytes, ...]:
    """Binders of the right lengths, to be overwritten once the ClientHello is encoded."""
    return tuple(bytes(hashlib.new(o.hash_name).digest_size) for o in offers)


def binders_length(binders: tuple[bytes, ...]) -> int:
    """Bytes the binders list takes at the end of an encoded ClientHello (§4.2.11)."""
    return 2 + sum(1 + len(b) for b in binders)


def fill_binders(encoded_hello: bytes, binders: tuple[bytes, ...]) -> bytes:
    """Overwrite the binders list that ends the ClientHello (pre_shared_key is last)."""
    tail = bytearray((binders_length(binders) - 2).to_bytes(2, "big"))
    for binder in binders:
        tail.append(len(binder))
        tail += binder
    return encoded_hello[: len(encoded_hello) - len(tail)] + bytes(tail)
