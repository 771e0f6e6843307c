"""TLS 1.3 extensions (RFC 8446 §4.2) as one typed container, with strict decoding.

Every handshake message that carries extensions (ClientHello, ServerHello, HelloRetryRequest,
EncryptedExtensions, CertificateRequest, Certificate entries, NewSessionTicket) uses the same
:class:`Extensions` dataclass; which fields are legal depends on the message (the table in
RFC 8446 §4.2, plus record_size_limit from RFC 8449 and connection_id from RFC 9146).

Decoding is strict: malformed bodies are ``decode_error``, duplicates and extensions in the
wrong message ``illegal_parameter``, unknown types in server responses ``unsupported_extension``.
Encoding is deterministic; the wire order seen when decoding is kept in ``Extensions.order`` so
that decode -> encode reproduces the original bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .alerts import AlertDescription, HandshakeError, decode_error, illegal_parameter
from .buffer import Reader, Writer


class HandshakeType(IntEnum):
    # RFC 8446 §4 and B.3; request/new_connection_id from RFC 9147 §5.2 (DTLS only)
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    request_connection_id = 9
    new_connection_id = 10
    certificate = 11
    certificate_request = 13
    certificate_verify = 15
    finished = 20
    key_update = 24
    message_hash = 254


class ExtensionType(IntEnum):
    # RFC 8446 §4.2; record_size_limit RFC 8449; connection_id RFC 9146
    server_name = 0
    max_fragment_length = 1
    status_request = 5
    supported_groups = 10
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    signed_certificate_timestamp = 18
    client_certificate_type = 19
    server_certificate_type = 20
    padding = 21
    record_size_limit = 28
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    connection_id = 54


@dataclass(frozen=True)
class KeyShareEntry:
    group: int
    key_exchange: bytes


@dataclass(frozen=True)
class PskIdentity:
    identity: bytes
    obfuscated_ticket_age: int


@dataclass(frozen=True)
class OfferedPsks:
    identities: tuple[PskIdentity, ...]
    binders: tuple[bytes, ...]


@dataclass(frozen=True)
class Extensions:
    """All extensions of one message; ``None`` (or ``False``) means absent."""

    server_name: str | None = None  # CH: host_name; EE: "" is the empty acknowledgement
    supported_groups: tuple[int, ...] | None = None
    signature_algorithms: tuple[int, ...] | None = None
    signature_algorithms_cert: tuple[int, ...] | None = None
    key_share_entries: tuple[KeyShareEntry, ...] | None = None  # CH
    key_share_entry: KeyShareEntry | None = None  # SH
    key_share_selected_group: int | None = None  # HRR
    supported_versions: tuple[int, ...] | None = None  # CH
    selected_version: int | None = None  # SH, HRR
    cookie: bytes | None = None
    psk_key_exchange_modes: tuple[int, ...] | None = None
    pre_shared_key: OfferedPsks | None = None  # CH (always last, §4.2.11)
    selected_identity: int | None = None  # SH
    early_data: bool = False  # CH, EE (empty extension)
    max_early_data_size: int | None = None  # NST
    alpn: tuple[bytes, ...] | None = None  # CH: list; EE: exactly one
    record_size_limit: int | None = None  # CH, EE (RFC 8449)
    padding: int | None = None  # CH: number of zero bytes (RFC 7685)
    status_request: bytes | None = None  # raw body
    post_handshake_auth: bool = False  # CH
    certificate_authorities: tuple[bytes, ...] | None = None  # DER DistinguishedNames
    connection_id: bytes | None = None  # RFC 9146 (DTLS)
    oid_filters: bytes | None = None  # raw (structure validated on decode)
    unknown: tuple[tuple[int, bytes], ...] = ()  # ignored extensions, in wire order
    order: tuple[int, ...] = ()  # wire order when decoded; empty -> canonical order on encode


# --- where each extension may appear -------------------------------------------------------

_CH = int(HandshakeType.client_hello)
_SH = int(HandshakeType.server_hello)
_HRR = 6  # hello_retry_request_RESERVED(6) in RFC 8446 B.3: a free code for the HRR context
_EE = int(HandshakeType.encrypted_extensions)
_CT = int(HandshakeType.certificate)
_CR = int(HandshakeType.certificate_request)
_NST = int(HandshakeType.new_session_ticket)

_CONTEXT_NAMES = {
    _CH: "ClientHello",
    _SH: "ServerHello",
    _HRR: "HelloRetryRequest",
    _EE: "EncryptedExtensions",
    _CT: "Certificate",
    _CR: "CertificateRequest",
    _NST: "NewSessionTicket",
}

_E = ExtensionType

# RFC 8446 §4.2 table ("TLS 1.3" column); RFC 8449 §5 and RFC 9146 §7 for the two additions.
_ALLOWED: dict[int, frozenset[int]] = {
    _E.server_name: frozenset({_CH, _EE}),
    _E.max_fragment_length: frozenset({_CH, _EE}),
    _E.status_request: frozenset({_CH, _CR, _CT}),
    _E.supported_groups: frozenset({_CH, _EE}),
    _E.signature_algorithms: frozenset({_CH, _CR}),
    _E.use_srtp: frozenset({_CH, _EE}),
    _E.heartbeat: frozenset({_CH, _EE}),
    _E.application_layer_protocol_negotiation: frozenset({_CH, _EE}),
    _E.signed_certificate_timestamp: frozenset({_CH, _CR, _CT}),
    _E.client_certificate_type: frozenset({_CH, _EE}),
    _E.server_certificate_type: frozenset({_CH, _EE}),
    _E.padding: frozenset({_CH}),
    _E.record_size_limit: frozenset({_CH, _EE}),
    _E.key_share: frozenset({_CH, _SH, _HRR}),
    _E.pre_shared_key: frozenset({_CH, _SH}),
    _E.psk_key_exchange_modes: frozenset({_CH}),
    _E.early_data: frozenset({_CH, _EE, _NST}),
    _E.cookie: frozenset({_CH, _HRR}),
    _E.supported_versions: frozenset({_CH, _SH, _HRR}),
    _E.certificate_authorities: frozenset({_CH, _CR}),
    _E.oid_filters: frozenset({_CR}),
    _E.post_handshake_auth: frozenset({_CH}),
    _E.signature_algorithms_cert: frozenset({_CH, _CR}),
    _E.connection_id: frozenset({_CH, _SH}),
}

# Which Extensions field holds each extension type, per message context. A type that is
# allowed in a context but has no field here (e.g. use_srtp) is kept raw in ``unknown``.
_CONTEXT_FIELDS: dict[int, dict[int, str]] = {
    _CH: {
        _E.server_name: "server_name",
        _E.status_request: "status_request",
        _E.supported_groups: "supported_groups",
        _E.signature_algorithms: "signature_algorithms",
        _E.application_layer_protocol_negotiation: "alpn",
        _E.padding: "padding",
        _E.record_size_limit: "record_size_limit",
        _E.pre_shared_key: "pre_shared_key",
        _E.early_data: "early_data",
        _E.supported_versions: "supported_versions",
        _E.cookie: "cookie",
        _E.psk_key_exchange_modes: "psk_key_exchange_modes",
        _E.certificate_authorities: "certificate_authorities",
        _E.post_handshake_auth: "post_handshake_auth",
        _E.signature_algorithms_cert: "signature_algorithms_cert",
        _E.key_share: "key_share_entries",
        _E.connection_id: "connection_id",
    },
    _SH: {
        _E.pre_shared_key: "selected_identity",
        _E.supported_versions: "selected_version",
        _E.key_share: "key_share_entry",
        _E.connection_id: "connection_id",
    },
    _HRR: {
        _E.supported_versions: "selected_version",
        _E.cookie: "cookie",
        _E.key_share: "key_share_selected_group",
    },
    _EE: {
        _E.server_name: "server_name",
        _E.supported_groups: "supported_groups",
        _E.application_layer_protocol_negotiation: "alpn",
        _E.record_size_limit: "record_size_limit",
        _E.early_data: "early_data",
    },
    _CR: {
        _E.status_request: "status_request",
        _E.signature_algorithms: "signature_algorithms",
        _E.certificate_authorities: "certificate_authorities",
        _E.oid_filters: "oid_filters",
        _E.signature_algorithms_cert: "signature_algorithms_cert",
    },
    _CT: {_E.status_request: "status_request"},
    _NST: {_E.early_data: "max_early_data_size"},
}

# §4.2: a response extension the client did not offer -> unsupported_extension. We never
# offer unknown types nor the field-less ones, so such types in these messages are unsolicited.
_RESPONSES = frozenset({_SH, _HRR, _EE})

# Minimum length of the extensions vector itself (RFC 8446 §4.1.2, §4.1.3, §4.3.2).
_MIN_BLOCK = {_CH: 8, _SH: 6, _HRR: 6, _CR: 2}

_BOOL_FIELDS = frozenset({"early_data", "post_handshake_auth"})
_ALL_FIELDS = tuple(sorted({f for m in _CONTEXT_FIELDS.values() for f in m.values()}))


def _context(msg_type: int, hrr: bool) -> int:
    if hrr:
        if msg_type != _SH:
            raise ValueError("hrr=True only applies to server_hello")
        return _HRR
    if msg_type not in _CONTEXT_FIELDS:
        raise ValueError(f"handshake type {msg_type} carries no extensions")
    return msg_type


def _present(ext: Extensions, field: str) -> bool:
    value = getattr(ext, field)
    if field in _BOOL_FIELDS:
        return bool(value)
    return value is not None


# --- per-extension body codecs ---------------------------------------------------------------
# Each decoder gets a Reader bounded to exactly the extension_data; pull_block() in the caller
# turns unread bytes into decode_error, so "empty" extensions need no explicit check.


def _d_server_name(r: Reader, ctx: int) -> str:
    if ctx == _EE:
        return ""  # RFC 6066 §3: the server's acknowledgement has empty extension_data
    name: str | None = None
    with r.pull_block(2, min_len=1) as names:  # ServerNameList server_name_list<1..2^16-1>
        while not names.eof():
            if names.pull_uint8() != 0:
                # NameType only defines host_name(0); another value is out of range and its
                # body cannot be parsed (RFC 8446 §6.2 decode_error).
                raise decode_error("server_name: unknown NameType")
            host = names.pull_opaque(2, min_len=1)  # HostName<1..2^16-1>
            if name is not None:
                raise illegal_parameter("server_name: more than one host_name (RFC 6066 §3)")
            try:
                name = host.decode("ascii")  # RFC 6066 §3: ASCII, no trailing dot
            except UnicodeDecodeError:
                raise decode_error("server_name: host_name is not ASCII") from None
    assert name is not None  # min_len=1 guarantees one entry (or a truncation error)
    return name


def _e_server_name(w: Writer, value: str, ctx: int) -> None:
    if ctx == _EE:
        if value:
            raise ValueError('EncryptedExtensions server_name must be "" (empty ack)')
        return
    with w.push_block(2):
        w.push_uint8(0)
        w.push_opaque(2, value.encode("ascii"))


def _d_u16_list(r: Reader, ctx: int) -> tuple[int, ...]:
    # NamedGroupList<2..2^16-1>, SignatureSchemeList<2..2^16-2> (RFC 8446 §4.2.7, §4.2.3)
    return tuple(r.pull_list(2, 2, min_len=2))


def _e_u16_list(w: Writer, value: tuple[int, ...], ctx: int) -> None:
    w.push_list(2, 2, value)


def _d_key_share_entries(r: Reader, ctx: int) -> tuple[KeyShareEntry, ...]:
    entries: list[KeyShareEntry] = []
    seen: set[int] = set()
    with r.pull_block(2) as shares:  # client_shares<0..2^16-1> (§4.2.8)
        while not shares.eof():
            entry = _pull_key_share_entry(shares)
            if entry.group in seen:
                # §4.2.8: "Clients MUST NOT offer multiple KeyShareEntry values for the same
                # group" -- servers MAY abort with illegal_parameter; we do.
                raise illegal_parameter("key_share: two shares for one group")
            seen.add(entry.group)
            entries.append(entry)
    return tuple(entries)


def _pull_key_share_entry(r: Reader) -> KeyShareEntry:
    group = r.pull_uint16()
    return KeyShareEntry(group, r.pull_opaque(2, min_len=1))  # key_exchange<1..2^16-1>


def _push_key_share_entry(w: Writer, entry: KeyShareEntry) -> None:
    w.push_uint16(entry.group)
    w.push_opaque(2, entry.key_exchange)


def _e_key_share_entries(w: Writer, value: tuple[KeyShareEntry, ...], ctx: int) -> None:
    with w.push_block(2):
        for entry in value:
            _push_key_share_entry(w, entry)


def _d_key_share_entry(r: Reader, ctx: int) -> KeyShareEntry:
    return _pull_key_share_entry(r)  # KeyShareServerHello: exactly one entry


def _e_key_share_entry(w: Writer, value: KeyShareEntry, ctx: int) -> None:
    _push_key_share_entry(w, value)


def _d_u16(r: Reader, ctx: int) -> int:
    return r.pull_uint16()


def _e_u16(w: Writer, value: int, ctx: int) -> None:
    w.push_uint16(value)


def _d_supported_versions(r: Reader, ctx: int) -> tuple[int, ...]:
    return tuple(r.pull_list(1, 2, min_len=2))  # versions<2..254> (§4.2.1)


def _e_supported_versions(w: Writer, value: tuple[int, ...], ctx: int) -> None:
    w.push_list(1, 2, value)


def _d_cookie(r: Reader, ctx: int) -> bytes:
    return r.pull_opaque(2, min_len=1)  # cookie<1..2^16-1> (§4.2.2)


def _e_opaque16(w: Writer, value: bytes, ctx: int) -> None:
    w.push_opaque(2, value)


def _d_psk_modes(r: Reader, ctx: int) -> tuple[int, ...]:
    return tuple(r.pull_list(1, 1, min_len=1))  # ke_modes<1..255> (§4.2.9)


def _e_psk_modes(w: Writer, value: tuple[int, ...], ctx: int) -> None:
    w.push_list(1, 1, value)


def _d_offered_psks(r: Reader, ctx: int) -> OfferedPsks:
    identities: list[PskIdentity] = []
    with r.pull_block(2, min_len=7) as ids:  # identities<7..2^16-1> (§4.2.11)
        while not ids.eof():
            identity = ids.pull_opaque(2, min_len=1)
            identities.append(PskIdentity(identity, ids.pull_uint32()))
    binders: list[bytes] = []
    with r.pull_block(2, min_len=33) as bs:  # binders<33..2^16-1>
        while not bs.eof():
            binders.append(bs.pull_opaque(1, min_len=32))  # PskBinderEntry<32..255>
    if len(binders) != len(identities):
        # §4.2.11: one binder "for each value in the identities list"
        raise illegal_parameter("pre_shared_key: binder count differs from identity count")
    return OfferedPsks(tuple(identities), tuple(binders))


def _e_offered_psks(w: Writer, value: OfferedPsks, ctx: int) -> None:
    with w.push_block(2):
        for ident in value.identities:
            w.push_opaque(2, ident.identity)
            w.push_uint32(ident.obfuscated_ticket_age)
    with w.push_block(2):
        for binder in value.binders:
            w.push_opaque(1, binder)


def _d_empty(r: Reader, ctx: int) -> bool:
    return True  # struct {} -- trailing bytes are rejected by the enclosing block


def _e_empty(w: Writer, value: bool, ctx: int) -> None:
    pass


def _d_u32(r: Reader, ctx: int) -> int:
    return r.pull_uint32()


def _e_u32(w: Writer, value: int, ctx: int) -> None:
    w.push_uint32(value)


def _d_alpn(r: Reader, ctx: int) -> tuple[bytes, ...]:
    names: list[bytes] = []
    with r.pull_block(2, min_len=2) as lst:  # protocol_name_list<2..2^16-1> (RFC 7301 §3.1)
        while not lst.eof():
            names.append(lst.pull_opaque(1, min_len=1))  # ProtocolName<1..2^8-1>
    if ctx == _EE and len(names) != 1:
        # RFC 7301 §3.1: the server's list "MUST contain exactly one ProtocolName"
        raise decode_error("ALPN response must name exactly one protocol")
    return tuple(names)


def _e_alpn(w: Writer, value: tuple[bytes, ...], ctx: int) -> None:
    with w.push_block(2):
        for name in value:
            w.push_opaque(1, name)


def _d_record_size_limit(r: Reader, ctx: int) -> int:
    limit = r.pull_uint16()
    if limit < 64:
        # RFC 8449 §4: a value below 64 MUST be treated as a fatal illegal_parameter
        raise illegal_parameter("record_size_limit below 64")
    return limit


def _d_padding(r: Reader, ctx: int) -> int:
    body = r.pull_bytes(r.remaining)
    if body.count(0) != len(body):  # RFC 7685 §3: extension_data is all zero bytes
        raise decode_error("padding extension contains non-zero bytes")
    return len(body)


def _e_padding(w: Writer, value: int, ctx: int) -> None:
    w.push_bytes(bytes(value))


def _d_raw(r: Reader, ctx: int) -> bytes:
    return r.pull_bytes(r.remaining)


def _e_raw(w: Writer, value: bytes, ctx: int) -> None:
    w.push_bytes(value)


def _d_certificate_authorities(r: Reader, ctx: int) -> tuple[bytes, ...]:
    names: list[bytes] = []
    with r.pull_block(2, min_len=3) as lst:  # authorities<3..2^16-1> (§4.2.4)
        while not lst.eof():
            names.append(lst.pull_opaque(2, min_len=1))  # DistinguishedName<1..2^16-1>
    return tuple(names)


def _e_certificate_authorities(w: Writer, value: tuple[bytes, ...], ctx: int) -> None:
    with w.push_block(2):
        for name in value:
            w.push_opaque(2, name)


def _d_connection_id(r: Reader, ctx: int) -> bytes:
    return r.pull_opaque(1)  # RFC 9146 §3: opaque cid<0..2^8-1>


def _e_connection_id(w: Writer, value: bytes, ctx: int) -> None:
    w.push_opaque(1, value)


def _d_oid_filters(r: Reader, ctx: int) -> bytes:
    raw = r.pull_bytes(r.remaining)
    check = Reader(raw)
    with check.pull_block(2) as filters:  # OIDFilter filters<0..2^16-1> (§4.2.5)
        while not filters.eof():
            filters.pull_opaque(1, min_len=1)  # certificate_extension_oid<1..2^8-1>
            filters.pull_opaque(2)  # certificate_extension_values<0..2^16-1>
    check.expect_end()
    return raw


_Decoder = Callable[[Reader, int], Any]
_Encoder = Callable[[Writer, Any, int], None]

_CODECS: dict[str, tuple[_Decoder, _Encoder]] = {
    "server_name": (_d_server_name, _e_server_name),
    "supported_groups": (_d_u16_list, _e_u16_list),
    "signature_algorithms": (_d_u16_list, _e_u16_list),
    "signature_algorithms_cert": (_d_u16_list, _e_u16_list),
    "key_share_entries": (_d_key_share_entries, _e_key_share_entries),
    "key_share_entry": (_d_key_share_entry, _e_key_share_entry),
    "key_share_selected_group": (_d_u16, _e_u16),
    "supported_versions": (_d_supported_versions, _e_supported_versions),
    "selected_version": (_d_u16, _e_u16),
    "cookie": (_d_cookie, _e_opaque16),
    "psk_key_exchange_modes": (_d_psk_modes, _e_psk_modes),
    "pre_shared_key": (_d_offered_psks, _e_offered_psks),
    "selected_identity": (_d_u16, _e_u16),
    "early_data": (_d_empty, _e_empty),
    "max_early_data_size": (_d_u32, _e_u32),
    "alpn": (_d_alpn, _e_alpn),
    "record_size_limit": (_d_record_size_limit, _e_u16),
    "padding": (_d_padding, _e_padding),
    "status_request": (_d_raw, _e_raw),
    "post_handshake_auth": (_d_empty, _e_empty),
    "certificate_authorities": (_d_certificate_authorities, _e_certificate_authorities),
    "connection_id": (_d_connection_id, _e_connection_id),
    "oid_filters": (_d_oid_filters, _e_raw),
}


# --- the extensions block ------------------------------------------------------------------


def decode_extensions(r: Reader, msg_type: int, *, hrr: bool = False) -> Extensions:
    """Read ``Extension extensions<..>`` (with its length prefix) for ``msg_type``."""
    ctx = _context(msg_type, hrr)
    fields = _CONTEXT_FIELDS[ctx]
    where = _CONTEXT_NAMES[ctx]
    values: dict[str, Any] = {}
    unknown: list[tuple[int, bytes]] = []
    order: list[int] = []
    seen: set[int] = set()
    with r.pull_block(2, _MIN_BLOCK.get(ctx, 0)) as block:
        while not block.eof():
            ext_type = block.pull_uint16()
            if ext_type in seen:
                # §4.2: "There MUST NOT be more than one extension of the same type"
                raise illegal_parameter(f"duplicate extension {ext_type} in {where}")
            if ctx == _CH and order and order[-1] == _E.pre_shared_key:
                raise illegal_parameter("pre_shared_key is not the last extension (§4.2.11)")
            seen.add(ext_type)
            order.append(ext_type)
            with block.pull_block(2) as body:
                allowed = _ALLOWED.get(ext_type)
                if allowed is not None and ctx not in allowed:
                    # §4.2: a recognised extension in a message not listed for it
                    raise illegal_parameter(f"extension {ext_type} is not allowed in {where}")
                field = fields.get(ext_type)
                if field is None:
                    if ctx in _RESPONSES:
                        raise HandshakeError(
                            AlertDescription.unsupported_extension,
                            f"unsolicited extension {ext_type} in {where}",
                        )
                    # Unrecognised (or recognised, allowed, but not modelled): ignored, kept
                    # verbatim (RFC 8446 §4.1.2 "Servers MUST ignore unrecognized extensions").
                    unknown.append((ext_type, body.pull_bytes(body.remaining)))
                    continue
                values[field] = _CODECS[field][0](body, ctx)
    return Extensions(**values, unknown=tuple(unknown), order=tuple(order))


def _wire_order(ext: Extensions, ctx: int, typed: list[int]) -> list[int]:
    present = set(typed)
    present.update(t for t, _ in ext.unknown)
    sequence: list[int] = []
    done: set[int] = set()
    for ext_type in ext.order:
        if ext_type in present and ext_type not in done:
            sequence.append(ext_type)
            done.add(ext_type)
    # Fields added after decoding (or no recorded order at all): canonical ascending code
    # points, then unknown entries in their given order.
    sequence.extend(sorted(t for t in typed if t not in done))
    done.update(typed)
    for ext_type, _ in ext.unknown:
        if ext_type not in done:
            sequence.append(ext_type)
            done.add(ext_type)
    if _E.pre_shared_key in typed and (ctx == _CH or not ext.order):
        # §4.2.11: MUST be the last extension in the ClientHello (canonical elsewhere too)
        sequence.remove(_E.pre_shared_key)
        sequence.append(_E.pre_shared_key)
    return sequence


def encode_extensions(w: Writer, ext: Extensions, msg_type: int, *, hrr: bool = False) -> None:
    """Write ``Extension extensions<..>`` (with its length prefix) for ``msg_type``.

    ``ext.unknown`` entries are written verbatim whatever their type (this is also how tests
    build deliberately malformed messages). A typed field that cannot appear in ``msg_type``
    is a programming error (ValueError).
    """
    ctx = _context(msg_type, hrr)
    fields = _CONTEXT_FIELDS[ctx]
    allowed_fields = set(fields.values())
    for field in _ALL_FIELDS:
        if field not in allowed_fields and _present(ext, field):
            raise ValueError(f"{field} cannot be sent in {_CONTEXT_NAMES[ctx]}")
    typed = [t for t, f in fields.items() if _present(ext, f)]
    raw: dict[int, list[bytes]] = {}
    for ext_type, body in ext.unknown:
        raw.setdefault(ext_type, []).append(body)
    with w.push_block(2):
        for ext_type in _wire_order(ext, ctx, typed):
            name = fields.get(ext_type)
            if name is not None and _present(ext, name):
                w.push_uint16(ext_type)
                with w.push_block(2):
                    _CODECS[name][1](w, getattr(ext, name), ctx)
            for body in raw.get(ext_type, ()):
                w.push_uint16(ext_type)
                w.push_opaque(2, body)
