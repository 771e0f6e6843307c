"""Turns what the handshake settled into the public ``HandshakeComplete`` event."""

from __future__ import annotations

from handshake.actions import NegotiatedParameters
from handshake.common import DTLS13
from handshake.groups import GROUP_NAMES
from handshake.signatures import SignatureScheme
from protocol.events import HandshakeComplete


def scheme_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return SignatureScheme(code).name
    except ValueError:
        return f"0x{code:04x}"


def group_name(code: int | None) -> str | None:
    if code is None:
        return None
    return GROUP_NAMES.get(code, f"0x{code:04x}")


def handshake_complete_event(p: NegotiatedParameters) -> HandshakeComplete:
    return HandshakeComplete(
        version="DTLS 1.3" if p.version == DTLS13 else "TLS 1.3",
        cipher_suite=p.cipher_suite.name,
        group=group_name(p.group),
        signature_scheme=scheme_name(p.signature_scheme),
        alpn=p.alpn.decode("ascii", "replace") if p.alpn is not None else None,
        server_name=p.server_name,
        hello_retry=p.hello_retry,
        resumed=p.resumed,
        psk_mode=p.psk_mode,
        early_data=p.early_data,
        peer_certificates=p.peer_certificates,
        client_authenticated=p.client_authenticated,
        peer_record_size_limit=p.peer_record_size_limit,
    )
