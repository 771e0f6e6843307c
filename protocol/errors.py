"""The one error type of the public API."""

from __future__ import annotations

from handshake.alerts import AlertDescription


class ProtocolError(Exception):
    """A connection failed: ``alert`` is what was sent (or received, when ``by_peer``);
    None when no alert was exchanged (a DTLS peer that never answered)."""

    def __init__(
        self, alert: AlertDescription | None, reason: str, *, by_peer: bool = False
    ) -> None:
        who = "peer sent" if by_peer else "sent"
        super().__init__(reason if alert is None else f"{reason} ({who} alert {alert.name})")
        self.alert = alert
        self.reason = reason
        self.by_peer = by_peer


class ConnectionStateError(Exception):
    """The application called a method the connection's state does not allow."""
