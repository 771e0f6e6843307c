"""The running transcript hash (RFC 8446 §4.4.1).

Messages are added in TLS form (type(1) || uint24 length || body), also for DTLS: RFC 9147 §5.2
hashes the TLS-style header, not the 12-byte DTLS one. The hash algorithm is only known once a
cipher suite is chosen, so earlier messages (the first ClientHello) are buffered until
``set_hash``.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

_MESSAGE_HASH = 254  # HandshakeType.message_hash (RFC 8446 §4)


def message_hash_message(client_hello1_hash: bytes) -> bytes:
    """The synthetic handshake message that replaces ClientHello1 after an HRR (§4.4.1).

    Exposed on its own so a stateless server can rebuild the transcript from the hash it
    stored in its cookie (§4.2.2).
    """
    return bytes((_MESSAGE_HASH, 0, 0, len(client_hello1_hash))) + client_hello1_hash


class _HashObject(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...
    def copy(self) -> _HashObject: ...


class Transcript:
    __slots__ = ("_buffer", "_count", "_hash", "_hash_name")

    def __init__(self) -> None:
        self._hash_name: str | None = None
        self._hash: _HashObject | None = None
        self._buffer: list[bytes] = []
        self._count = 0  # messages added so far, to guard the §4.4.1 HRR rewrite

    @property
    def hash_name(self) -> str | None:
        return self._hash_name

    def set_hash(self, hash_name: str) -> None:
        """Fix the hash (the suite's) and absorb the messages buffered so far."""
        if self._hash_name is not None:
            if hash_name != self._hash_name:
                raise RuntimeError(
                    f"transcript hash already {self._hash_name}, cannot switch to {hash_name}"
                )
            return
        h = hashlib.new(hash_name)
        for message in self._buffer:
            h.update(message)
        self._buffer.clear()
        self._hash = h
        self._hash_name = hash_name

    def add(self, message: bytes | bytearray | memoryview) -> None:
        """Append one whole handshake message, header included."""
        self._count += 1
        if self._hash is None:
            self._buffer.append(bytes(message))
        else:
            self._hash.update(message)

    def digest(self) -> bytes:
        """Transcript-Hash of everything added so far; the running state is left untouched."""
        if self._hash is None:
            raise RuntimeError("transcript hash requested before set_hash()")
        return self._hash.copy().digest()

    def copy(self) -> Transcript:
        """An independent transcript from here on: post-handshake authentication hashes the
        handshake's transcript followed by its own messages (RFC 8446 §4.4.1, §4.6.2)."""
        if self._hash is None:
            raise RuntimeError("transcript copied before set_hash()")
        other = Transcript()
        other._hash_name = self._hash_name
        other._hash = self._hash.copy()
        other._count = self._count
        return other

    def restart_with_message_hash(self) -> None:
        """§4.4.1: replace ClientHello1 by message_hash || 00 00 Hash.length || Hash(ClientHello1).

        Call after adding ClientHello1 and before adding the HelloRetryRequest.
        """
        if self._count != 1:
            raise RuntimeError("message_hash replaces exactly the first ClientHello")
        if self._hash is None or self._hash_name is None:
            raise RuntimeError("set_hash() must precede the HelloRetryRequest rewrite")
        h = hashlib.new(self._hash_name)
        h.update(message_hash_message(self._hash.digest()))
        self._hash = h
