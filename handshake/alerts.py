"""Alert codes (RFC 8446 §6) and the one error type the handshake layer raises.

Every failure caused by the peer is a :class:`HandshakeError` carrying the alert the RFC
requires; the protocol layer turns it into the alert record and a ``ProtocolError`` event.
"""

from __future__ import annotations

from enum import IntEnum


class AlertLevel(IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(IntEnum):
    # RFC 8446 §6
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    too_many_cids_requested = 52  # RFC 9147 §9 (DTLS)
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    no_application_protocol = 120


class HandshakeError(Exception):
    """A handshake failure with the alert that must be sent for it (RFC 8446 §6.2)."""

    def __init__(self, alert: AlertDescription, reason: str) -> None:
        super().__init__(f"{alert.name}: {reason}")
        self.alert = alert
        self.reason = reason


def decode_error(reason: str) -> HandshakeError:
    return HandshakeError(AlertDescription.decode_error, reason)


def illegal_parameter(reason: str) -> HandshakeError:
    return HandshakeError(AlertDescription.illegal_parameter, reason)
