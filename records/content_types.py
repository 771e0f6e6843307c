"""Record content types: RFC 8446 §5.1 and §B.1; heartbeat RFC 6520; tls12_cid RFC 9146;
ack RFC 9147 §7."""

from __future__ import annotations

from enum import IntEnum


class ContentType(IntEnum):
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23
    heartbeat = 24
    tls12_cid = 25
    ack = 26
