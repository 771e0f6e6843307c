"""The one error type the record layer raises (RFC 8446 §5, §6).

Every failure caused by the peer's bytes is a :class:`RecordError` carrying the alert
description the RFC requires. ``records`` must not import ``handshake``, so the codes are
plain ints here; they are the RFC 8446 §6 values and equal ``AlertDescription`` members.
"""

from __future__ import annotations

# RFC 8446 §6: the alert descriptions the record layer can produce.
UNEXPECTED_MESSAGE = 10
BAD_RECORD_MAC = 20
RECORD_OVERFLOW = 22
ILLEGAL_PARAMETER = 47
DECODE_ERROR = 50
PROTOCOL_VERSION = 70
INTERNAL_ERROR = 80

# The same codes spelled as DESIGN.md and RFC 8446 §6 name them.
unexpected_message = UNEXPECTED_MESSAGE
bad_record_mac = BAD_RECORD_MAC
record_overflow = RECORD_OVERFLOW
illegal_parameter = ILLEGAL_PARAMETER
decode_error = DECODE_ERROR
protocol_version = PROTOCOL_VERSION
internal_error = INTERNAL_ERROR

_NAMES = {
    UNEXPECTED_MESSAGE: "unexpected_message",
    BAD_RECORD_MAC: "bad_record_mac",
    RECORD_OVERFLOW: "record_overflow",
    ILLEGAL_PARAMETER: "illegal_parameter",
    DECODE_ERROR: "decode_error",
    PROTOCOL_VERSION: "protocol_version",
    INTERNAL_ERROR: "internal_error",
}


class RecordError(Exception):
    """A fatal record-layer failure and the alert that must be sent for it (RFC 8446 §6.2)."""

    def __init__(self, alert: int, reason: str) -> None:
        super().__init__(f"{_NAMES.get(alert, str(alert))}: {reason}")
        self.alert = alert
        self.reason = reason
