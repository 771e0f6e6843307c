"""Property tests: every message and extension shape survives encode -> decode -> encode.

The strategies here generate only *valid* messages (respecting every minimum length and
per-message rule), so a decode failure is a codec bug. test_codecs_strict.py reuses them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.buffer import Reader, Writer
from handshake.extensions import (
    _ALLOWED,
    _CONTEXT_FIELDS,
    _HRR,
    decode_extensions,
    encode_extensions,
)
from handshake.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Extensions,
    ExtensionType,
    Finished,
    HandshakeMessage,
    HandshakeType,
    KeyShareEntry,
    KeyUpdate,
    NewConnectionId,
    NewSessionTicket,
    OfferedPsks,
    PskIdentity,
    RequestConnectionId,
    ServerHello,
    decode_message,
    encode_message,
)

CH = HandshakeType.client_hello
SH = HandshakeType.server_hello
EE = HandshakeType.encrypted_extensions
CR = HandshakeType.certificate_request
CT = HandshakeType.certificate
NST = HandshakeType.new_session_ticket
HRR = _HRR

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def opaque(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size)


_KNOWN_TYPES = frozenset(int(t) for t in ExtensionType)
unknown_type = u16.filter(lambda t: t not in _KNOWN_TYPES)
u16_list = st.lists(u16, min_size=1, max_size=12).map(tuple)
key_share_entry = st.builds(KeyShareEntry, u16, opaque(1, 70))
key_share_entries = st.lists(key_share_entry, max_size=4, unique_by=lambda e: e.group).map(tuple)
host_name = st.text(st.characters(max_codepoint=127), min_size=1, max_size=40)


@st.composite
def offered_psks(draw: st.DrawFn) -> OfferedPsks:
    n = draw(st.integers(1, 3))
    identities = draw(st.lists(st.builds(PskIdentity, opaque(1, 60), u32), min_size=n, max_size=n))
    binders = draw(st.lists(opaque(32, 64), min_size=n, max_size=n))
    return OfferedPsks(tuple(identities), tuple(binders))


@st.composite
def oid_filters(draw: st.DrawFn) -> bytes:
    w = Writer()
    with w.push_block(2):
        for oid, values in draw(st.lists(st.tuples(opaque(1, 12), opaque(0, 20)), max_size=3)):
            w.push_opaque(1, oid)
            w.push_opaque(2, values)
    return w.data()


def _field_strategy(field: str, ctx: int) -> st.SearchStrategy[Any]:
    if field == "server_name":
        return st.just("") if ctx == EE else host_name
    if field == "alpn":
        n_max = 1 if ctx == EE else 4
        return st.lists(opaque(1, 20), min_size=1, max_size=n_max).map(tuple)
    table: dict[str, st.SearchStrategy[Any]] = {
        "supported_groups": u16_list,
        "signature_algorithms": u16_list,
        "signature_algorithms_cert": u16_list,
        "key_share_entries": key_share_entries,
        "key_share_entry": key_share_entry,
        "key_share_selected_group": u16,
        "supported_versions": st.lists(u16, min_size=1, max_size=8).map(tuple),
        "selected_version": u16,
        "cookie": opaque(1, 60),
        "psk_key_exchange_modes": st.lists(u8, min_size=1, max_size=4).map(tuple),
        "pre_shared_key": offered_psks(),
        "selected_identity": u16,
        "early_data": st.just(True),
        "max_early_data_size": u32,
        "record_size_limit": st.integers(64, 0xFFFF),
        "padding": st.integers(0, 300),
        "status_request": opaque(0, 30),
        "post_handshake_auth": st.just(True),
        "certificate_authorities": st.lists(opaque(1, 30), min_size=1, max_size=3).map(tuple),
        "connection_id": opaque(0, 20),
        "oid_filters": oid_filters(),
    }
    return table[field]


# Fields every generated message carries: the minimum extension-block lengths of RFC 8446
# (CH <8..>, SH/HRR <6..>) and the mandatory signature_algorithms of CertificateRequest.
_REQUIRED = {
    CH: ("supported_versions", "key_share_entries"),
    SH: ("selected_version",),
    HRR: ("selected_version",),
    CR: ("signature_algorithms",),
}
_UNKNOWN_ALLOWED = (CH, CR, CT, NST)


@st.composite
def extensions(draw: st.DrawFn, ctx: int) -> Extensions:
    values: dict[str, Any] = {}
    types: list[int] = []
    for ext_type, field in _CONTEXT_FIELDS[ctx].items():
        if field in _REQUIRED.get(ctx, ()) or draw(st.booleans()):
            values[field] = draw(_field_strategy(field, ctx))
            types.append(ext_type)
    unknown: tuple[tuple[int, bytes], ...] = ()
    if ctx in _UNKNOWN_ALLOWED:
        unknown = tuple(
            draw(st.lists(st.tuples(unknown_type, opaque()), max_size=3, unique_by=lambda e: e[0]))
        )
        types.extend(t for t, _ in unknown)
    order: tuple[int, ...] = ()
    if draw(st.booleans()):  # an explicit wire order, as decoding records it
        perm = draw(st.permutations(types))
        if ctx == CH and ExtensionType.pre_shared_key in perm:
            perm.remove(ExtensionType.pre_shared_key)
            perm.append(ExtensionType.pre_shared_key)
        order = tuple(perm)
        # decoding lists unknown extensions in wire order
        unknown = tuple(sorted(unknown, key=lambda e: perm.index(e[0])))
    return Extensions(**values, unknown=unknown, order=order)


randoms = opaque(32, 32).filter(lambda r: r != HELLO_RETRY_REQUEST_RANDOM)
session_ids = opaque(0, 32)


def client_hellos(dtls: bool = False) -> st.SearchStrategy[ClientHello]:
    return st.builds(
        ClientHello,
        random=randoms,
        legacy_session_id=session_ids,
        cipher_suites=u16_list,
        extensions=extensions(CH),
        legacy_version=st.just(0xFEFD if dtls else 0x0303),
        legacy_cookie=st.just(b"" if dtls else None),
    )


def server_hellos(dtls: bool = False) -> st.SearchStrategy[ServerHello]:
    return st.builds(
        ServerHello,
        random=randoms,
        legacy_session_id_echo=session_ids,
        cipher_suite=u16,
        extensions=extensions(SH),
        legacy_version=st.just(0xFEFD if dtls else 0x0303),
    )


def hello_retry_requests(dtls: bool = False) -> st.SearchStrategy[ServerHello]:
    return st.builds(
        ServerHello,
        random=st.just(HELLO_RETRY_REQUEST_RANDOM),
        legacy_session_id_echo=session_ids,
        cipher_suite=u16,
        extensions=extensions(HRR),
        legacy_version=st.just(0xFEFD if dtls else 0x0303),
    )


encrypted_extensions = st.builds(EncryptedExtensions, extensions(EE))
certificate_requests = st.builds(CertificateRequest, opaque(0, 32), extensions(CR))
certificates = st.builds(
    Certificate,
    opaque(0, 32),
    st.lists(st.builds(CertificateEntry, opaque(1, 80), extensions(CT)), max_size=3).map(tuple),
)
certificate_verifies = st.builds(CertificateVerify, u16, opaque(0, 100))
finisheds = st.builds(Finished, st.sampled_from([32, 48]).flatmap(lambda n: opaque(n, n)))
new_session_tickets = st.builds(
    NewSessionTicket, u32, u32, opaque(0, 255), opaque(1, 80), extensions(NST)
)
key_updates = st.builds(KeyUpdate, st.sampled_from([0, 1]))
request_connection_ids = st.builds(RequestConnectionId, u8)
new_connection_ids = st.builds(
    NewConnectionId, st.lists(opaque(0, 20), max_size=4).map(tuple), st.sampled_from([0, 1])
)

tls_messages: st.SearchStrategy[HandshakeMessage] = st.one_of(
    client_hellos(),
    server_hellos(),
    hello_retry_requests(),
    encrypted_extensions,
    certificate_requests,
    certificates,
    certificate_verifies,
    finisheds,
    new_session_tickets,
    st.just(EndOfEarlyData()),
    key_updates,
)
dtls_messages: st.SearchStrategy[HandshakeMessage] = st.one_of(
    client_hellos(dtls=True),
    server_hellos(dtls=True),
    hello_retry_requests(dtls=True),
    encrypted_extensions,
    certificate_requests,
    certificates,
    certificate_verifies,
    finisheds,
    new_session_tickets,
    key_updates,
    request_connection_ids,
    new_connection_ids,
)


def hash_len_for(msg: HandshakeMessage) -> int:
    return len(msg.verify_data) if isinstance(msg, Finished) else 32


def strip_order(msg: HandshakeMessage) -> HandshakeMessage:
    """The message with every Extensions.order cleared (for messages built without one)."""
    if isinstance(msg, Certificate):
        entries = tuple(
            dataclasses.replace(e, extensions=dataclasses.replace(e.extensions, order=()))
            for e in msg.entries
        )
        return dataclasses.replace(msg, entries=entries)
    ext = getattr(msg, "extensions", None)
    if isinstance(ext, Extensions):
        return dataclasses.replace(msg, extensions=dataclasses.replace(ext, order=()))  # type: ignore[arg-type]
    return msg


def _all_orders_given(msg: HandshakeMessage) -> bool:
    if isinstance(msg, Certificate):
        return all(e.extensions.order or e.extensions == Extensions() for e in msg.entries)
    ext = getattr(msg, "extensions", None)
    return not isinstance(ext, Extensions) or bool(ext.order) or ext == Extensions()


def _roundtrip(msg: HandshakeMessage, dtls: bool) -> None:
    data = encode_message(msg, dtls=dtls)
    assert data[0] == msg.msg_type
    assert int.from_bytes(data[1:4], "big") == len(data) - 4
    decoded = decode_message(data[0], data[4:], dtls=dtls, hash_len=hash_len_for(msg))
    assert type(decoded) is type(msg)
    assert encode_message(decoded, dtls=dtls) == data
    assert encode_message(msg, dtls=dtls) == data  # deterministic
    if _all_orders_given(msg):
        assert decoded == msg
    else:
        assert strip_order(decoded) == strip_order(msg)


@settings(max_examples=400)
@given(tls_messages)
def test_tls_message_roundtrip(msg: HandshakeMessage) -> None:
    _roundtrip(msg, dtls=False)


@settings(max_examples=300)
@given(dtls_messages)
def test_dtls_message_roundtrip(msg: HandshakeMessage) -> None:
    _roundtrip(msg, dtls=True)


@pytest.mark.parametrize("ctx", [CH, SH, HRR, EE, CR, CT, NST])
@settings(max_examples=150)
@given(data=st.data())
def test_extensions_block_roundtrip(ctx: int, data: st.DataObject) -> None:
    ext = data.draw(extensions(ctx))
    msg_type, hrr = (SH, True) if ctx == HRR else (ctx, False)
    w = Writer()
    encode_extensions(w, ext, msg_type, hrr=hrr)
    r = Reader(w.data())
    decoded = decode_extensions(r, msg_type, hrr=hrr)
    r.expect_end()
    w2 = Writer()
    encode_extensions(w2, decoded, msg_type, hrr=hrr)
    assert w2.data() == w.data()
    # decoding always records the wire order; it equals the given one when there was one
    assert len(decoded.order) == len(set(decoded.order))
    if ext.order:
        assert decoded == ext
    else:
        assert dataclasses.replace(decoded, order=()) == ext


@settings(max_examples=150)
@given(extensions(CH))
def test_canonical_order_is_ascending_with_psk_last(ext: Extensions) -> None:
    ext = dataclasses.replace(ext, order=())
    w = Writer()
    encode_extensions(w, ext, CH)
    decoded = decode_extensions(Reader(w.data()), CH)
    known = [t for t in decoded.order if t in _KNOWN_TYPES]
    psk = ExtensionType.pre_shared_key
    assert [t for t in known if t != psk] == sorted(t for t in known if t != psk)
    if ext.pre_shared_key is not None:
        assert decoded.order[-1] == psk


@given(extensions(CH), u16_list)
def test_fields_added_after_decoding_keep_the_original_positions(
    ext: Extensions, groups: tuple[int, ...]
) -> None:
    w = Writer()
    encode_extensions(w, ext, CH)
    decoded = decode_extensions(Reader(w.data()), CH)
    # As the client does for ClientHello2: replace one extension, add a cookie.
    changed = dataclasses.replace(decoded, supported_groups=groups, cookie=b"\x01cookie")
    w2 = Writer()
    encode_extensions(w2, changed, CH)
    again = decode_extensions(Reader(w2.data()), CH)
    assert dataclasses.replace(again, order=()) == dataclasses.replace(changed, order=())
    kept = [t for t in again.order if t in decoded.order]
    assert kept == [t for t in decoded.order if t in again.order]
    assert ExtensionType.pre_shared_key not in again.order[:-1]


def test_field_table_matches_rfc8446_section_4_2() -> None:
    # The §4.2 table, typed out independently of the implementation's table.
    rfc = {
        "server_name": "CH EE",
        "max_fragment_length": "CH EE",
        "status_request": "CH CR CT",
        "supported_groups": "CH EE",
        "signature_algorithms": "CH CR",
        "use_srtp": "CH EE",
        "heartbeat": "CH EE",
        "application_layer_protocol_negotiation": "CH EE",
        "signed_certificate_timestamp": "CH CR CT",
        "client_certificate_type": "CH EE",
        "server_certificate_type": "CH EE",
        "padding": "CH",
        "key_share": "CH SH HRR",
        "pre_shared_key": "CH SH",
        "psk_key_exchange_modes": "CH",
        "early_data": "CH EE NST",
        "cookie": "CH HRR",
        "supported_versions": "CH SH HRR",
        "certificate_authorities": "CH CR",
        "oid_filters": "CR",
        "post_handshake_auth": "CH",
        "signature_algorithms_cert": "CH CR",
        "record_size_limit": "CH EE",  # RFC 8449 §5
        "connection_id": "CH SH",  # RFC 9146 §7
    }
    codes = {"CH": CH, "SH": SH, "HRR": HRR, "EE": EE, "CR": CR, "CT": CT, "NST": NST}
    for name, where in rfc.items():
        assert _ALLOWED[ExtensionType[name]] == {codes[c] for c in where.split()}, name
    assert set(_ALLOWED) == {int(t) for t in ExtensionType}
    # every typed field sits in a context the table allows
    for ctx, fields in _CONTEXT_FIELDS.items():
        for ext_type in fields:
            assert ctx in _ALLOWED[ext_type]


def test_dtls_encoding_fills_in_the_dtls_legacy_fields() -> None:
    ch = ClientHello(
        random=bytes(32),
        legacy_session_id=b"",
        cipher_suites=(0x1301,),
        extensions=Extensions(supported_versions=(0xFEFC,), key_share_entries=()),
    )
    data = encode_message(ch, dtls=True)
    # legacy_version 0xfefd, then random, empty session id, empty legacy_cookie (§5.3)
    assert data[4:6] == b"\xfe\xfd"
    assert data[38:40] == b"\x00\x00"
    decoded = decode_message(1, data[4:], dtls=True)
    assert isinstance(decoded, ClientHello)
    assert decoded.legacy_cookie == b"" and decoded.legacy_version == 0xFEFD
    tls = encode_message(ch)
    assert tls[4:6] == b"\x03\x03" and len(tls) == len(data) - 1
    sh = ServerHello(bytes(32), b"", 0x1301, Extensions(selected_version=0xFEFC))
    assert encode_message(sh, dtls=True)[4:6] == b"\xfe\xfd"
    assert encode_message(sh)[4:6] == b"\x03\x03"
