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

import dataclasses
import operator
import struct
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


def _install_fast_init(cls: type) -> None:
    """Give a frozen dataclass whose fields all have plain defaults an equivalent __init__
    (same parameters, same defaults) that fills a copy of a default instance's dict.

    The generated frozen __init__ sets each field through object.__setattr__: for the 25
    fields of Extensions that is several µs per instance, paid for every message built or
    parsed. Copying the dict of an instance made the normal way keeps CPython's key-sharing
    (compact) layout, so instances stay small. Equality, hashing, repr, replace() and
    fields() are untouched.
    """
    params: list[str] = []
    stores: list[str] = []
    prototype = cls()
    namespace: dict[str, Any] = {
        "_set": object.__setattr__,
        "_copy": prototype.__dict__.copy,
    }
    for index, f in enumerate(dataclasses.fields(cls)):
        if f.default is dataclasses.MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} needs a plain default")
        namespace[f"_d{index}"] = f.default
        params.append(f"{f.name}=_d{index}")
        stores.append(f"    d[{f.name!r}] = {f.name}\n")
    source = (
        f"def __init__(self, {', '.join(params)}):\n"
        "    d = _copy()\n" + "".join(stores) + "    _set(self, '__dict__', d)\n"
    )
    exec(source, namespace)  # the same technique dataclasses itself uses
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010 - mypy forbids assigning __init__ directly


_install_fast_init(Extensions)


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

_EXT_HEAD = struct.Struct("!HH")  # extension_type, extension_data length
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PSK = int(_E.pre_shared_key)
_LENGTH_BYTE = tuple(bytes((n,)) for n in range(256))


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
# A decoder gets exactly one extension_data as bytes and must account for all of it: unread
# bytes are "trailing bytes inside a vector" (decode_error), as with Reader.pull_block. The
# messages mirror buffer.Reader's so both paths fail alike. An encoder returns the body.


def _truncated() -> HandshakeError:
    return decode_error("truncated structure")


def _trailing() -> HandshakeError:
    return decode_error("trailing bytes inside a vector")


def _too_short(min_len: int) -> HandshakeError:
    return decode_error(f"vector shorter than its minimum of {min_len}")


def _vector16(b: bytes, min_len: int) -> int:
    """Check that ``b`` is exactly ``opaque x<min_len..2^16-1>``; returns its length."""
    n = len(b)
    if n < 2:
        raise _truncated()
    length = (b[0] << 8) | b[1]
    if length < min_len:
        raise _too_short(min_len)
    if length + 2 > n:
        raise _truncated()
    if length + 2 != n:
        raise _trailing()
    return length


def _d_server_name(b: bytes, ctx: int) -> str:
    if ctx == _EE:
        if b:
            raise _trailing()
        return ""  # RFC 6066 §3: the server's acknowledgement has empty extension_data
    n = len(b)
    if n < 2:
        raise _truncated()
    end = 2 + ((b[0] << 8) | b[1])  # ServerNameList server_name_list<1..2^16-1>
    if end < 3:
        raise _too_short(1)
    if end > n:
        raise _truncated()
    name: str | None = None
    pos = 2
    while pos < end:
        if b[pos] != 0:
            # NameType only defines host_name(0); another value is out of range and its
            # body cannot be parsed (RFC 8446 §6.2 decode_error).
            raise decode_error("server_name: unknown NameType")
        if end - pos < 3:
            raise _truncated()
        length = (b[pos + 1] << 8) | b[pos + 2]  # HostName<1..2^16-1>
        if length < 1:
            raise _too_short(1)
        pos += 3
        if pos + length > end:
            raise _truncated()
        if name is not None:
            raise illegal_parameter("server_name: more than one host_name (RFC 6066 §3)")
        try:
            name = b[pos : pos + length].decode("ascii")  # RFC 6066 §3: ASCII, no trailing dot
        except UnicodeDecodeError:
            raise decode_error("server_name: host_name is not ASCII") from None
        pos += length
    if end != n:
        raise _trailing()
    assert name is not None  # the minimum length guarantees one entry (or an error)
    return name


def _e_server_name(value: str, ctx: int) -> bytes:
    if ctx == _EE:
        if value:
            raise ValueError('EncryptedExtensions server_name must be "" (empty ack)')
        return b""
    host = value.encode("ascii")
    n = len(host)
    if n > 0xFFFF - 3:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(n + 3) + b"\x00" + _U16.pack(n) + host


def _d_u16_list(b: bytes, ctx: int) -> tuple[int, ...]:
    # NamedGroupList<2..2^16-1>, SignatureSchemeList<2..2^16-2> (RFC 8446 §4.2.7, §4.2.3)
    n = len(b)
    if n < 2:
        raise _truncated()
    length = (b[0] << 8) | b[1]
    if length < 2:
        raise _too_short(2)
    if length + 2 > n:
        raise _truncated()
    if length & 1:
        raise decode_error("vector length is not a multiple of its element size")
    if length + 2 != n:
        raise _trailing()
    return struct.unpack_from(f"!{length >> 1}H", b, 2)


def _pack_u16s(values: tuple[int, ...]) -> bytes:
    return struct.pack(f"!{len(values)}H", *values)


def _e_u16_list(value: tuple[int, ...], ctx: int) -> bytes:
    body = _pack_u16s(value)
    if len(body) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(len(body)) + body


def _d_key_share_entries(b: bytes, ctx: int) -> tuple[KeyShareEntry, ...]:
    n = len(b)
    if n < 2:
        raise _truncated()
    end = 2 + ((b[0] << 8) | b[1])  # client_shares<0..2^16-1> (§4.2.8)
    if end > n:
        raise _truncated()
    entries: list[KeyShareEntry] = []
    seen: set[int] = set()
    pos = 2
    while pos < end:
        if end - pos < 4:
            raise _truncated()
        group, length = _EXT_HEAD.unpack_from(b, pos)
        pos += 4
        if length < 1:  # key_exchange<1..2^16-1>
            raise _too_short(1)
        if pos + length > end:
            raise _truncated()
        if group in seen:
            # §4.2.8: "Clients MUST NOT offer multiple KeyShareEntry values for the same
            # group" -- servers MAY abort with illegal_parameter; we do.
            raise illegal_parameter("key_share: two shares for one group")
        seen.add(group)
        entries.append(KeyShareEntry(group, b[pos : pos + length]))
        pos += length
    if end != n:
        raise _trailing()
    return tuple(entries)


def _key_share_entry_bytes(entry: KeyShareEntry) -> bytes:
    share = entry.key_exchange
    if len(share) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _EXT_HEAD.pack(entry.group, len(share)) + share


def _e_key_share_entries(value: tuple[KeyShareEntry, ...], ctx: int) -> bytes:
    body = b"".join([_key_share_entry_bytes(e) for e in value])
    if len(body) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(len(body)) + body


def _d_key_share_entry(b: bytes, ctx: int) -> KeyShareEntry:
    # KeyShareServerHello: exactly one entry
    n = len(b)
    if n < 4:
        raise _truncated()
    group, length = _EXT_HEAD.unpack_from(b, 0)
    if length < 1:
        raise _too_short(1)
    if length + 4 > n:
        raise _truncated()
    if length + 4 != n:
        raise _trailing()
    return KeyShareEntry(group, b[4:])


def _e_key_share_entry(value: KeyShareEntry, ctx: int) -> bytes:
    return _key_share_entry_bytes(value)


def _d_u16(b: bytes, ctx: int) -> int:
    if len(b) != 2:
        raise _truncated() if len(b) < 2 else _trailing()
    return (b[0] << 8) | b[1]


def _e_u16(value: int, ctx: int) -> bytes:
    return _U16.pack(value)


def _d_supported_versions(b: bytes, ctx: int) -> tuple[int, ...]:
    # versions<2..254> (§4.2.1)
    n = len(b)
    if n < 1:
        raise _truncated()
    length = b[0]
    if length < 2:
        raise _too_short(2)
    if length + 1 > n:
        raise _truncated()
    if length & 1:
        raise decode_error("vector length is not a multiple of its element size")
    if length + 1 != n:
        raise _trailing()
    return struct.unpack_from(f"!{length >> 1}H", b, 1)


def _e_supported_versions(value: tuple[int, ...], ctx: int) -> bytes:
    body = _pack_u16s(value)
    if len(body) > 0xFF:
        raise ValueError("vector too long for its length prefix")
    return bytes((len(body),)) + body


def _d_cookie(b: bytes, ctx: int) -> bytes:
    _vector16(b, 1)  # cookie<1..2^16-1> (§4.2.2)
    return b[2:]


def _e_opaque16(value: bytes, ctx: int) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(len(value)) + value


def _d_psk_modes(b: bytes, ctx: int) -> tuple[int, ...]:
    # ke_modes<1..255> (§4.2.9)
    n = len(b)
    if n < 1:
        raise _truncated()
    if b[0] < 1:
        raise _too_short(1)
    if b[0] + 1 > n:
        raise _truncated()
    if b[0] + 1 != n:
        raise _trailing()
    return tuple(b[1:])


def _e_psk_modes(value: tuple[int, ...], ctx: int) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("vector too long for its length prefix")
    return bytes((len(value), *value))


def _d_offered_psks(b: bytes, ctx: int) -> OfferedPsks:
    # OfferedPsks (§4.2.11), walked with slices; the checks and their order are those of
    # the Reader calls (pull_block / pull_opaque / pull_uint32) they replace.
    n = len(b)
    if n < 2:
        raise _truncated()
    ids_end = 2 + ((b[0] << 8) | b[1])  # identities<7..2^16-1>
    if ids_end < 9:
        raise _too_short(7)
    if ids_end > n:
        raise _truncated()
    identities: list[PskIdentity] = []
    pos = 2
    while pos < ids_end:
        if ids_end - pos < 2:
            raise _truncated()
        length = (b[pos] << 8) | b[pos + 1]  # PskIdentity.identity<1..2^16-1>
        if length < 1:
            raise _too_short(1)
        pos += 2
        stop = pos + length
        if stop + 4 > ids_end:  # the identity, then its uint32 obfuscated_ticket_age
            raise _truncated()
        identities.append(PskIdentity(b[pos:stop], _U32.unpack_from(b, stop)[0]))
        pos = stop + 4
    if n - ids_end < 2:
        raise _truncated()
    end = ids_end + 2 + ((b[ids_end] << 8) | b[ids_end + 1])  # binders<33..2^16-1>
    if end - ids_end - 2 < 33:
        raise _too_short(33)
    if end > n:
        raise _truncated()
    binders: list[bytes] = []
    pos = ids_end + 2
    while pos < end:
        length = b[pos]  # PskBinderEntry<32..255>
        if length < 32:
            raise _too_short(32)
        pos += 1
        if pos + length > end:
            raise _truncated()
        binders.append(b[pos : pos + length])
        pos += length
    if end != n:
        raise _trailing()
    if len(binders) != len(identities):
        # §4.2.11: one binder "for each value in the identities list"
        raise illegal_parameter("pre_shared_key: binder count differs from identity count")
    return OfferedPsks(tuple(identities), tuple(binders))


def _e_offered_psks(value: OfferedPsks, ctx: int) -> bytes:
    parts: list[bytes] = []
    for ident in value.identities:
        identity = ident.identity
        if len(identity) > 0xFFFF:
            raise ValueError("vector too long for its length prefix")
        parts.append(_U16.pack(len(identity)))
        parts.append(identity)
        parts.append(_U32.pack(ident.obfuscated_ticket_age))
    identities = b"".join(parts)
    parts = []
    for binder in value.binders:
        if len(binder) > 0xFF:
            raise ValueError("vector too long for its length prefix")
        parts.append(_LENGTH_BYTE[len(binder)])
        parts.append(binder)
    binders = b"".join(parts)
    if len(identities) > 0xFFFF or len(binders) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return b"".join((_U16.pack(len(identities)), identities, _U16.pack(len(binders)), binders))


def _d_empty(b: bytes, ctx: int) -> bool:
    if b:  # struct {}
        raise _trailing()
    return True


def _e_empty(value: bool, ctx: int) -> bytes:
    return b""


def _d_u32(b: bytes, ctx: int) -> int:
    if len(b) != 4:
        raise _truncated() if len(b) < 4 else _trailing()
    return int(_U32.unpack(b)[0])


def _e_u32(value: int, ctx: int) -> bytes:
    return _U32.pack(value)


def _d_alpn(b: bytes, ctx: int) -> tuple[bytes, ...]:
    r = Reader(b)
    names: list[bytes] = []
    with r.pull_block(2, min_len=2) as lst:  # protocol_name_list<2..2^16-1> (RFC 7301 §3.1)
        while not lst.eof():
            names.append(lst.pull_opaque(1, min_len=1))  # ProtocolName<1..2^8-1>
    if not r.eof():
        raise _trailing()
    if ctx == _EE and len(names) != 1:
        # RFC 7301 §3.1: the server's list "MUST contain exactly one ProtocolName"
        raise decode_error("ALPN response must name exactly one protocol")
    return tuple(names)


def _e_alpn(value: tuple[bytes, ...], ctx: int) -> bytes:
    w = Writer()
    with w.push_block(2):
        for name in value:
            w.push_opaque(1, name)
    return w.data()


def _d_record_size_limit(b: bytes, ctx: int) -> int:
    if len(b) < 2:
        raise _truncated()
    limit = (b[0] << 8) | b[1]
    if limit < 64:
        # RFC 8449 §4: a value below 64 MUST be treated as a fatal illegal_parameter
        raise illegal_parameter("record_size_limit below 64")
    if len(b) != 2:
        raise _trailing()
    return limit


def _d_padding(b: bytes, ctx: int) -> int:
    if b.count(0) != len(b):  # RFC 7685 §3: extension_data is all zero bytes
        raise decode_error("padding extension contains non-zero bytes")
    return len(b)


def _e_padding(value: int, ctx: int) -> bytes:
    return bytes(value)


def _d_raw(b: bytes, ctx: int) -> bytes:
    return b


def _e_raw(value: bytes, ctx: int) -> bytes:
    return bytes(value)


def _d_certificate_authorities(b: bytes, ctx: int) -> tuple[bytes, ...]:
    r = Reader(b)
    names: list[bytes] = []
    with r.pull_block(2, min_len=3) as lst:  # authorities<3..2^16-1> (§4.2.4)
        while not lst.eof():
            names.append(lst.pull_opaque(2, min_len=1))  # DistinguishedName<1..2^16-1>
    if not r.eof():
        raise _trailing()
    return tuple(names)


def _e_certificate_authorities(value: tuple[bytes, ...], ctx: int) -> bytes:
    w = Writer()
    with w.push_block(2):
        for name in value:
            w.push_opaque(2, name)
    return w.data()


def _d_connection_id(b: bytes, ctx: int) -> bytes:
    # RFC 9146 §3: opaque cid<0..2^8-1>
    if not b:
        raise _truncated()
    if b[0] + 1 > len(b):
        raise _truncated()
    if b[0] + 1 != len(b):
        raise _trailing()
    return b[1:]


def _e_connection_id(value: bytes, ctx: int) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("vector too long for its length prefix")
    return bytes((len(value),)) + value


def _d_oid_filters(b: bytes, ctx: int) -> bytes:
    check = Reader(b)
    with check.pull_block(2) as filters:  # OIDFilter filters<0..2^16-1> (§4.2.5)
        while not filters.eof():
            filters.pull_opaque(1, min_len=1)  # certificate_extension_oid<1..2^8-1>
            filters.pull_opaque(2)  # certificate_extension_values<0..2^16-1>
    check.expect_end()
    return b


_Decoder = Callable[[bytes, int], Any]
_Encoder = Callable[[Any, int], bytes]

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


# --- per-context tables, computed once ---------------------------------------------------------


class _Spec:
    """Everything the block codecs need for one message context, precomputed."""

    __slots__ = (
        "canonical",
        "decoders",
        "disallowed",
        "disallowed_absent",
        "fields",
        "min_block",
        "not_allowed",
        "response",
        "values",
        "where",
    )

    def __init__(self, ctx: int) -> None:
        fields = _CONTEXT_FIELDS[ctx]
        self.where = _CONTEXT_NAMES[ctx]
        self.fields = fields
        self.min_block = _MIN_BLOCK.get(ctx, 0)
        self.response = ctx in _RESPONSES
        # ext type -> (field, decoder)
        self.decoders = {t: (f, _CODECS[f][0]) for t, f in fields.items()}
        # Recognised types the §4.2 table forbids in this message.
        self.not_allowed = frozenset(t for t, where in _ALLOWED.items() if ctx not in where)
        allowed_fields = set(fields.values())
        disallowed = [f for f in _ALL_FIELDS if f not in allowed_fields]
        # One getter call and one tuple comparison check every field this message cannot
        # carry against its default (None, or False for the two empty-bodied flags).
        self.disallowed = _tuple_getter(disallowed)
        self.disallowed_absent = tuple(False if f in _BOOL_FIELDS else None for f in disallowed)
        # The message's own fields, in canonical wire order: ascending code points, with
        # pre_shared_key last (§4.2.11 for the ClientHello; canonical elsewhere too).
        ordered = sorted(fields.items(), key=lambda item: (item[0] == _PSK, item[0]))
        self.values = _tuple_getter([f for _, f in ordered])
        self.canonical = tuple((t, f in _BOOL_FIELDS, _CODECS[f][1]) for t, f in ordered)


def _tuple_getter(names: list[str]) -> Callable[[Extensions], tuple[Any, ...]]:
    """``attrgetter`` that returns a tuple whatever the number of names."""
    if len(names) == 1:
        getter = operator.attrgetter(names[0])
        return lambda ext: (getter(ext),)
    if not names:
        return lambda ext: ()
    return operator.attrgetter(*names)


_SPECS: dict[int, _Spec] = {ctx: _Spec(ctx) for ctx in _CONTEXT_FIELDS}

# Decoded Extensions are built from a copy of a default instance's dict (compact, see
# _install_fast_init) updated with the fields found, without any __init__ call.
_EXT_DEFAULTS_COPY = Extensions().__dict__.copy
_new_object = object.__new__
_set_attribute = object.__setattr__


def _make_extensions(values: dict[str, Any]) -> Extensions:
    ext = _new_object(Extensions)
    state = _EXT_DEFAULTS_COPY()
    state.update(values)
    _set_attribute(ext, "__dict__", state)
    return ext


# --- the extensions block ------------------------------------------------------------------


def decode_extensions(r: Reader, msg_type: int, *, hrr: bool = False) -> Extensions:
    """Read ``Extension extensions<..>`` (with its length prefix) for ``msg_type``."""
    ctx = _context(msg_type, hrr)
    spec = _SPECS[ctx]
    data, pos, end = r.take_block(2, spec.min_block)
    if type(data) is not bytes:
        data = bytes(data[pos:end])
        pos, end = 0, len(data)
    where = spec.where
    decoders = spec.decoders
    not_allowed = spec.not_allowed
    values: dict[str, Any] = {}
    unknown: list[tuple[int, bytes]] = []
    order: list[int] = []
    unpack = _EXT_HEAD.unpack_from
    while pos < end:
        if end - pos < 2:
            raise _truncated()
        ext_type = (data[pos] << 8) | data[pos + 1]
        if ext_type in order:
            # §4.2: "There MUST NOT be more than one extension of the same type"
            raise illegal_parameter(f"duplicate extension {ext_type} in {where}")
        if ctx == _CH and order and order[-1] == _PSK:
            raise illegal_parameter("pre_shared_key is not the last extension (§4.2.11)")
        order.append(ext_type)
        if end - pos < 4:
            raise _truncated()
        length = unpack(data, pos)[1]
        pos += 4
        stop = pos + length
        if stop > end:
            raise _truncated()
        if ext_type in not_allowed:
            # §4.2: a recognised extension in a message not listed for it
            raise illegal_parameter(f"extension {ext_type} is not allowed in {where}")
        body = data[pos:stop]
        pos = stop
        codec = decoders.get(ext_type)
        if codec is None:
            if spec.response:
                raise HandshakeError(
                    AlertDescription.unsupported_extension,
                    f"unsolicited extension {ext_type} in {where}",
                )
            # Unrecognised (or recognised, allowed, but not modelled): ignored, kept
            # verbatim (RFC 8446 §4.1.2 "Servers MUST ignore unrecognized extensions").
            unknown.append((ext_type, body))
            continue
        values[codec[0]] = codec[1](body, ctx)
    values["unknown"] = tuple(unknown)
    values["order"] = tuple(order)
    return _make_extensions(values)


# Wire orders computed by _wire_order for (context, recorded order, present types): servers
# send the same few shapes over and over.
_ORDER_CACHE: dict[tuple[int, tuple[int, ...], tuple[int, ...]], tuple[int, ...]] = {}
_ORDER_CACHE_MAX = 256


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
    if _PSK in typed and (ctx == _CH or not ext.order):
        # §4.2.11: MUST be the last extension in the ClientHello (canonical elsewhere too)
        sequence.remove(_PSK)
        sequence.append(_PSK)
    return sequence


def encode_extensions(w: Writer, ext: Extensions, msg_type: int, *, hrr: bool = False) -> None:
    """Write ``Extension extensions<..>`` (with its length prefix) for ``msg_type``.

    ``ext.unknown`` entries are written verbatim whatever their type (this is also how tests
    build deliberately malformed messages). A typed field that cannot appear in ``msg_type``
    is a programming error (ValueError).
    """
    w.push_bytes(extensions_block(ext, msg_type, hrr=hrr))


def extensions_block(ext: Extensions, msg_type: int, *, hrr: bool = False) -> bytes:
    """The encoded extensions vector (length prefix included), see encode_extensions."""
    ctx = _context(msg_type, hrr)
    spec = _SPECS[ctx]
    if spec.disallowed(ext) != spec.disallowed_absent:
        allowed = set(spec.fields.values())
        for field in _ALL_FIELDS:
            if field not in allowed and _present(ext, field):
                raise ValueError(f"{field} cannot be sent in {spec.where}")
    values = spec.values(ext)
    parts: list[bytes] = []
    head = _EXT_HEAD.pack
    if not ext.order and not ext.unknown:
        # Canonical order, the common case for messages we build ourselves.
        for (ext_type, is_bool, encode), value in zip(spec.canonical, values, strict=True):
            if value is None or (is_bool and not value):
                continue
            body = encode(value, ctx)
            if len(body) > 0xFFFF:
                raise ValueError("vector too long for its length prefix")
            parts.append(head(ext_type, len(body)))
            parts.append(body)
    else:
        present = {
            ext_type: (value, encode)
            for (ext_type, is_bool, encode), value in zip(spec.canonical, values, strict=True)
            if not (value is None or (is_bool and not value))
        }
        typed = list(present)
        key = (ctx, ext.order, tuple(typed))
        sequence = _ORDER_CACHE.get(key) if not ext.unknown else None
        if sequence is None:
            sequence = tuple(_wire_order(ext, ctx, typed))
            if not ext.unknown:
                if len(_ORDER_CACHE) >= _ORDER_CACHE_MAX:
                    _ORDER_CACHE.clear()
                _ORDER_CACHE[key] = sequence
        raw: dict[int, list[bytes]] = {}
        for ext_type, raw_body in ext.unknown:
            raw.setdefault(ext_type, []).append(raw_body)
        for ext_type in sequence:
            item = present.get(ext_type)
            if item is not None:
                body = item[1](item[0], ctx)
                if len(body) > 0xFFFF:
                    raise ValueError("vector too long for its length prefix")
                parts.append(head(ext_type, len(body)))
                parts.append(body)
            for raw_body in raw.get(ext_type, ()):
                if len(raw_body) > 0xFFFF:
                    raise ValueError("vector too long for its length prefix")
                parts.append(head(ext_type, len(raw_body)))
                parts.append(bytes(raw_body))
    block = b"".join(parts)
    if len(block) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(len(block)) + block
