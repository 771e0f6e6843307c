"""PSK offers, binders and the PSK rules of both handshake roles (RFC 8446 §4.2.9, §4.2.11)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handshake.actions import Action, NewSession, SendMessage
from handshake.alerts import AlertDescription, HandshakeError
from handshake.cipher_suites import TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384
from handshake.client import ClientHandshake
from handshake.config import HandshakeConfig, PeerVerification
from handshake.messages import (
    ClientHello,
    Extensions,
    NewSessionTicket,
    ServerHello,
    decode_message,
    encode_message,
)
from handshake.psk import (
    PSK_DHE_KE,
    PSK_KE,
    ExternalPsk,
    Session,
    fill_binders,
    parse_psk_modes,
)
from handshake.server import ServerHandshake, ServerState

NOW = 1_700_000_000.0
PSK = ExternalPsk(b"client-1", bytes(range(32)))


def session(**overrides: object) -> Session:
    values: dict[str, object] = {
        "ticket": b"t" * 40,
        "psk": b"k" * 32,
        "suite": TLS_AES_128_GCM_SHA256,
        "lifetime": 100,
        "age_add": 0xFFFFFFFF,
        "received_at": NOW,
        "max_early_data": 10,
        "sni": "example.com",
    }
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


def test_obfuscated_age_wraps() -> None:
    # RFC 8446 §4.2.11.1: (age in ms + ticket_age_add) mod 2^32
    assert session().obfuscated_age(NOW + 2) == 1999
    assert session(age_add=5).obfuscated_age(NOW - 1) == 5  # a clock going back: age 0


def test_session_expiry_capped_at_seven_days() -> None:
    assert session().expired(NOW + 100) and not session().expired(NOW + 99)
    assert session(lifetime=10**7).expires_at == NOW + 604800  # §4.6.1


def test_psk_modes_and_external_psk_validation() -> None:
    assert parse_psk_modes(("psk_ke", "psk_dhe_ke", 0)) == (PSK_KE, PSK_DHE_KE)
    with pytest.raises(ValueError):
        parse_psk_modes(("psk_rsa",))
    with pytest.raises(ValueError):
        ExternalPsk(b"", b"k")
    with pytest.raises(ValueError):
        ExternalPsk(b"id", b"k", "md5")


def test_fill_binders_rewrites_only_the_tail() -> None:
    head = b"\x01\x02\x03"
    encoded = head + b"\x00\x21\x20" + bytes(32)
    filled = fill_binders(encoded, (b"\xaa" * 32,))
    assert filled == head + b"\x00\x21\x20" + b"\xaa" * 32


# -- handshake-level rules -----------------------------------------------------------------------


def client(**overrides: object) -> ClientHandshake:
    settings: dict[str, object] = {
        "server_name": "example.com",
        "verification": PeerVerification(enabled=False),
        "external_psk": PSK,
        **overrides,
    }
    config = HandshakeConfig(**settings)  # type: ignore[arg-type]
    return ClientHandshake(config)


def server(**overrides: object) -> ServerHandshake:
    settings: dict[str, object] = {"external_psks": (PSK,), **overrides}
    config = HandshakeConfig(**settings)  # type: ignore[arg-type]
    return ServerHandshake(config)


def hello_of(actions: list[Action]) -> bytes:
    return next(a.data for a in actions if isinstance(a, SendMessage))


def test_external_psk_round_trip_psk_ke() -> None:
    c = client(psk_modes=(PSK_KE,))
    s = server(psk_modes=(PSK_KE,))
    flight = [a.data for a in s.handle(hello_of(c.start(NOW)), NOW) if isinstance(a, SendMessage)]
    sh = decode_message(flight[0][0], flight[0][4:])
    assert isinstance(sh, ServerHello)
    assert sh.extensions.selected_identity == 0 and sh.extensions.key_share_entry is None
    out: list[Action] = []
    for message in flight:
        out += c.handle(message, NOW)
    for message in [a.data for a in out if isinstance(a, SendMessage)]:
        s.handle(message, NOW)
    assert c.parameters is not None and s.parameters is not None
    for params in (c.parameters, s.parameters):
        assert (params.psk_mode, params.resumed, params.group) == ("psk_ke", False, None)
    assert c.exporter_master_secret == s.exporter_master_secret


def test_server_requires_psk_key_exchange_modes() -> None:
    raw = hello_of(client().start(NOW))
    hello = decode_message(raw[0], raw[4:])
    assert isinstance(hello, ClientHello)
    stripped = replace(hello, extensions=replace(hello.extensions, psk_key_exchange_modes=None))
    with pytest.raises(HandshakeError) as info:
        server().handle(encode_message(stripped), NOW)
    assert info.value.alert is AlertDescription.missing_extension  # §4.2.9


def test_wrong_binder_is_decrypt_error() -> None:
    raw = hello_of(client(external_psk=ExternalPsk(PSK.identity, b"wrong key")).start(NOW))
    with pytest.raises(HandshakeError) as info:
        server().handle(raw, NOW)
    assert info.value.alert is AlertDescription.decrypt_error  # §4.2.11


def test_no_common_mode_ignores_psk() -> None:
    # The client offers only psk_ke, the server only psk_dhe_ke: no PSK, and a PSK-only
    # server (no certificate) has nothing else to offer.
    raw = hello_of(client(psk_modes=(PSK_KE,)).start(NOW))
    with pytest.raises(HandshakeError) as info:
        server().handle(raw, NOW)
    assert info.value.alert is AlertDescription.handshake_failure


def test_server_picks_suite_matching_psk_hash() -> None:
    psk384 = ExternalPsk(b"id384", b"k" * 48, "sha384")
    c = client(external_psk=psk384, cipher_suites=(TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384))
    s = server(external_psks=(psk384,))
    sh = hello_of(s.handle(hello_of(c.start(NOW)), NOW))
    message = decode_message(sh[0], sh[4:])
    assert isinstance(message, ServerHello)
    assert message.cipher_suite == TLS_AES_256_GCM_SHA384


def _answer(c: ClientHandshake, selected: int | None = None, suite: int | None = None) -> bytes:
    s = server()
    sh_raw = hello_of(s.handle(hello_of(c.start(NOW)), NOW))
    sh = decode_message(sh_raw[0], sh_raw[4:])
    assert isinstance(sh, ServerHello)
    ext = sh.extensions
    if selected is not None:
        ext = replace(ext, selected_identity=selected)
    return encode_message(replace(sh, extensions=ext, cipher_suite=suite or sh.cipher_suite))


def test_client_rejects_selected_identity_out_of_range() -> None:
    c = client()
    with pytest.raises(HandshakeError) as info:
        c.handle(_answer(c, selected=1), NOW)
    assert info.value.alert is AlertDescription.illegal_parameter  # §4.2.11


def test_client_rejects_suite_hash_not_matching_psk() -> None:
    c = client(cipher_suites=(TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384))
    with pytest.raises(HandshakeError) as info:
        c.handle(_answer(c, suite=TLS_AES_256_GCM_SHA384), NOW)
    assert info.value.alert is AlertDescription.illegal_parameter  # §4.2.11


def test_client_refuses_psk_ke_it_did_not_offer() -> None:
    c = client()  # psk_dhe_ke only
    sh_raw = _answer(c)
    sh = decode_message(sh_raw[0], sh_raw[4:])
    assert isinstance(sh, ServerHello)
    no_share = replace(sh, extensions=replace(sh.extensions, key_share_entry=None))
    with pytest.raises(HandshakeError) as info:
        c.handle(encode_message(no_share), NOW)
    assert info.value.alert is AlertDescription.illegal_parameter


def test_psk_only_server_without_psk_fails() -> None:
    c = ClientHandshake(HandshakeConfig(server_name="example.com"))
    with pytest.raises(HandshakeError) as info:
        server().handle(hello_of(c.start(NOW)), NOW)
    assert info.value.alert is AlertDescription.handshake_failure


def test_expired_session_is_not_offered() -> None:
    c = client(external_psk=None, session=session())
    assert c.early_data_limit(NOW) == 10
    assert c.early_data_limit(NOW + 100) == 0
    raw = hello_of(c.start(NOW + 100, early_data=True))
    hello = decode_message(raw[0], raw[4:])
    assert isinstance(hello, ClientHello)
    assert hello.extensions.pre_shared_key is None and not hello.extensions.early_data
    assert not c.early_data_offered


def test_session_for_another_name_is_not_offered() -> None:
    c = client(external_psk=None, session=session(sni="other.example"))
    raw = hello_of(c.start(NOW))
    hello = decode_message(raw[0], raw[4:])
    assert isinstance(hello, ClientHello) and hello.extensions.pre_shared_key is None


def test_zero_lifetime_ticket_is_discarded() -> None:
    c = client(psk_modes=(PSK_DHE_KE,))
    s = server(tickets=None)
    flight = [a.data for a in s.handle(hello_of(c.start(NOW)), NOW) if isinstance(a, SendMessage)]
    for message in flight:
        c.handle(message, NOW)
    zero = encode_message(NewSessionTicket(0, 1, b"", b"t", Extensions()))
    assert c.handle(zero, NOW) == []  # §4.6.1: "discarded immediately"
    one = encode_message(NewSessionTicket(60, 1, b"\x00", b"t", Extensions()))
    (action,) = c.handle(one, NOW)
    assert isinstance(action, NewSession) and action.session.lifetime == 60
    assert s.state is ServerState.WAIT_CLIENT_FINISHED
