"""TLS 1.3 / DTLS 1.3 handshake message codecs (RFC 8446 §4, RFC 9147 §5.3 and §9).

Messages are frozen dataclasses; :func:`encode_message` produces the TLS-form message
(``msg_type || uint24 length || body``, which is also what DTLS 1.3 hashes, RFC 9147 §5.2) and
:func:`decode_message` parses a body strictly: truncation or trailing bytes are
``decode_error``, bad values the alert RFC 8446 names for them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

from .alerts import AlertDescription, HandshakeError, decode_error, illegal_parameter
from .buffer import Reader, Writer
from .extensions import (
    Extensions,
    ExtensionType,
    HandshakeType,
    KeyShareEntry,
    OfferedPsks,
    PskIdentity,
    decode_extensions,
    encode_extensions,
    extensions_block,
)

__all__ = [
    "DOWNGRADE_TLS11",
    "DOWNGRADE_TLS12",
    "HELLO_RETRY_REQUEST_RANDOM",
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateVerify",
    "ClientHello",
    "EncryptedExtensions",
    "EndOfEarlyData",
    "ExtensionType",
    "Extensions",
    "Finished",
    "HandshakeMessage",
    "HandshakeType",
    "KeyShareEntry",
    "KeyUpdate",
    "NewConnectionId",
    "NewSessionTicket",
    "OfferedPsks",
    "PskIdentity",
    "RequestConnectionId",
    "ServerHello",
    "client_hello_truncated_for_binders",
    "decode_message",
    "encode_message",
]

# RFC 8446 §4.1.3: SHA-256("HelloRetryRequest")
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)
# RFC 8446 §4.1.3: last 8 bytes of ServerHello.random when a TLS 1.3 server negotiates lower
DOWNGRADE_TLS12 = b"DOWNGRD\x01"
DOWNGRADE_TLS11 = b"DOWNGRD\x00"

_TLS12 = 0x0303  # legacy_version of TLS 1.3 hellos (RFC 8446 §4.1.2)
_DTLS12 = 0xFEFD  # legacy_version of DTLS 1.3 hellos (RFC 9147 §5.3, §5.4)
_TLS13 = 0x0304
_DTLS13 = 0xFEFC

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT_HEAD = struct.Struct("!HH")
_SUITE_AND_COMPRESSION = struct.Struct("!HB")
_SUPPORTED_VERSIONS = int(ExtensionType.supported_versions)
_CH = int(HandshakeType.client_hello)
_SH = int(HandshakeType.server_hello)
_EE = int(HandshakeType.encrypted_extensions)
_CR = int(HandshakeType.certificate_request)
_CT = int(HandshakeType.certificate)


@dataclass(frozen=True)
class ClientHello:
    msg_type: ClassVar[HandshakeType] = HandshakeType.client_hello
    random: bytes
    legacy_session_id: bytes
    cipher_suites: tuple[int, ...]
    extensions: Extensions
    legacy_compression_methods: bytes = b"\x00"
    legacy_version: int = _TLS12  # encoded as 0xfefd with dtls=True (RFC 9147 §5.3)
    legacy_cookie: bytes | None = None  # not None exactly for DTLS (RFC 9147 §5.3)


@dataclass(frozen=True)
class ServerHello:
    """ServerHello, or HelloRetryRequest when ``random`` is the §4.1.3 magic value."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.server_hello
    random: bytes
    legacy_session_id_echo: bytes
    cipher_suite: int
    extensions: Extensions
    legacy_version: int = _TLS12  # encoded as 0xfefd with dtls=True (RFC 9147 §5.4)
    legacy_compression_method: int = 0

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM


@dataclass(frozen=True)
class EncryptedExtensions:
    msg_type: ClassVar[HandshakeType] = HandshakeType.encrypted_extensions
    extensions: Extensions


@dataclass(frozen=True)
class CertificateRequest:
    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate_request
    certificate_request_context: bytes
    extensions: Extensions


@dataclass(frozen=True)
class CertificateEntry:
    cert_data: bytes
    extensions: Extensions = field(default_factory=Extensions)


@dataclass(frozen=True)
class Certificate:
    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate
    certificate_request_context: bytes
    entries: tuple[CertificateEntry, ...]


@dataclass(frozen=True)
class CertificateVerify:
    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate_verify
    algorithm: int
    signature: bytes


@dataclass(frozen=True)
class Finished:
    msg_type: ClassVar[HandshakeType] = HandshakeType.finished
    verify_data: bytes


@dataclass(frozen=True)
class NewSessionTicket:
    msg_type: ClassVar[HandshakeType] = HandshakeType.new_session_ticket
    ticket_lifetime: int
    ticket_age_add: int
    ticket_nonce: bytes
    ticket: bytes
    extensions: Extensions


@dataclass(frozen=True)
class EndOfEarlyData:
    msg_type: ClassVar[HandshakeType] = HandshakeType.end_of_early_data


@dataclass(frozen=True)
class KeyUpdate:
    msg_type: ClassVar[HandshakeType] = HandshakeType.key_update
    request_update: int  # 0 update_not_requested, 1 update_requested (§4.6.3)


@dataclass(frozen=True)
class RequestConnectionId:
    msg_type: ClassVar[HandshakeType] = HandshakeType.request_connection_id
    num_cids: int


@dataclass(frozen=True)
class NewConnectionId:
    msg_type: ClassVar[HandshakeType] = HandshakeType.new_connection_id
    cids: tuple[bytes, ...]
    usage: int  # 0 cid_immediate, 1 cid_spare (RFC 9147 §9)


HandshakeMessage: TypeAlias = (
    ClientHello
    | ServerHello
    | EncryptedExtensions
    | CertificateRequest
    | Certificate
    | CertificateVerify
    | Finished
    | NewSessionTicket
    | EndOfEarlyData
    | KeyUpdate
    | RequestConnectionId
    | NewConnectionId
)


_M = TypeVar("_M")
_new_object = object.__new__
_set_attribute = object.__setattr__
# Per message class, a dict made by its dataclass __init__ (CPython's compact, key-sharing
# layout), copied for each decoded message.
_LAYOUTS: dict[type, dict[str, Any]] = {}


def _new_message(cls: type[_M], **fields: Any) -> _M:
    """A decoded message without the dataclass __init__: a frozen dataclass stores each
    field through object.__setattr__, which costs more than the parsing on hot paths. Every
    field must be given."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        msg = cls(**fields)
        _LAYOUTS[cls] = msg.__dict__.copy()
        return msg
    state = layout.copy()
    state.update(fields)
    msg = _new_object(cls)
    _set_attribute(msg, "__dict__", state)
    return msg


# --- encoding --------------------------------------------------------------------------------


def _check_random(random: bytes) -> bytes:
    if len(random) != 32:
        raise ValueError("random must be 32 bytes")
    return random


def _opaque8(data: bytes) -> bytes:
    if len(data) > 0xFF:
        raise ValueError("vector too long for its length prefix")
    return bytes((len(data),)) + data


def _u16_list(values: tuple[int, ...]) -> bytes:
    if len(values) > 0x7FFF:
        raise ValueError("vector too long for its length prefix")
    return _U16.pack(2 * len(values)) + struct.pack(f"!{len(values)}H", *values)


# Each encoder returns the message body; encode_message adds the 4-byte header.


def _e_client_hello(m: ClientHello, dtls: bool) -> bytes:
    version = m.legacy_version
    cookie = m.legacy_cookie
    if dtls:
        if version == _TLS12:
            version = _DTLS12
        if cookie is None:
            cookie = b""
    elif cookie is not None:
        raise ValueError("legacy_cookie exists only in the DTLS ClientHello (RFC 9147 §5.3)")
    return b"".join(
        (
            _U16.pack(version),
            _check_random(m.random),
            _opaque8(m.legacy_session_id),
            b"" if cookie is None else _opaque8(cookie),
            _u16_list(m.cipher_suites),
            _opaque8(m.legacy_compression_methods),
            extensions_block(m.extensions, _CH),
        )
    )


def _e_server_hello(m: ServerHello, dtls: bool) -> bytes:
    version = m.legacy_version
    if dtls and version == _TLS12:
        version = _DTLS12
    return b"".join(
        (
            _U16.pack(version),
            _check_random(m.random),
            _opaque8(m.legacy_session_id_echo),
            _SUITE_AND_COMPRESSION.pack(m.cipher_suite, m.legacy_compression_method),
            extensions_block(m.extensions, _SH, hrr=m.is_hello_retry_request),
        )
    )


def _e_encrypted_extensions(m: EncryptedExtensions, dtls: bool) -> bytes:
    return extensions_block(m.extensions, _EE)


def _e_certificate_request(m: CertificateRequest, dtls: bool) -> bytes:
    return _opaque8(m.certificate_request_context) + extensions_block(m.extensions, _CR)


def _e_certificate(m: Certificate, dtls: bool) -> bytes:
    parts: list[bytes] = []
    for entry in m.entries:
        cert = entry.cert_data
        if len(cert) >= 1 << 24:
            raise ValueError("vector too long for its length prefix")
        parts.append(len(cert).to_bytes(3, "big"))
        parts.append(cert)
        parts.append(extensions_block(entry.extensions, _CT))
    entries = b"".join(parts)
    if len(entries) >= 1 << 24:
        raise ValueError("vector too long for its length prefix")
    return b"".join(
        (_opaque8(m.certificate_request_context), len(entries).to_bytes(3, "big"), entries)
    )


def _e_certificate_verify(m: CertificateVerify, dtls: bool) -> bytes:
    signature = m.signature
    if len(signature) > 0xFFFF:
        raise ValueError("vector too long for its length prefix")
    return _EXT_HEAD.pack(m.algorithm, len(signature)) + signature


def _e_finished(m: Finished, dtls: bool) -> bytes:
    return bytes(m.verify_data)


def _e_new_session_ticket(m: NewSessionTicket, dtls: bool) -> bytes:
    w = Writer()
    w.push_uint32(m.ticket_lifetime)
    w.push_uint32(m.ticket_age_add)
    w.push_opaque(1, m.ticket_nonce)
    w.push_opaque(2, m.ticket)
    encode_extensions(w, m.extensions, HandshakeType.new_session_ticket)
    return w.data()


def _e_end_of_early_data(m: EndOfEarlyData, dtls: bool) -> bytes:
    return b""


def _e_key_update(m: KeyUpdate, dtls: bool) -> bytes:
    return bytes((m.request_update,))


def _e_request_connection_id(m: RequestConnectionId, dtls: bool) -> bytes:
    return bytes((m.num_cids,))


def _e_new_connection_id(m: NewConnectionId, dtls: bool) -> bytes:
    w = Writer()
    with w.push_block(2):
        for cid in m.cids:
            w.push_opaque(1, cid)
    w.push_uint8(m.usage)
    return w.data()


_ENCODERS: dict[type, Callable[[Any, bool], bytes]] = {
    ClientHello: _e_client_hello,
    ServerHello: _e_server_hello,
    EncryptedExtensions: _e_encrypted_extensions,
    CertificateRequest: _e_certificate_request,
    Certificate: _e_certificate,
    CertificateVerify: _e_certificate_verify,
    Finished: _e_finished,
    NewSessionTicket: _e_new_session_ticket,
    EndOfEarlyData: _e_end_of_early_data,
    KeyUpdate: _e_key_update,
    RequestConnectionId: _e_request_connection_id,
    NewConnectionId: _e_new_connection_id,
}


def encode_message(msg: HandshakeMessage, *, dtls: bool = False) -> bytes:
    """TLS-form handshake message: ``msg_type(1) || uint24 length || body``.

    ``dtls`` only changes the hellos: legacy_version 0x0303 is written as 0xfefd and the
    ClientHello gets its ``legacy_cookie`` field (empty when ``None``), RFC 9147 §5.3/§5.4.
    The 12-byte DTLS handshake header is the record layer's business.
    """
    body = _ENCODERS[type(msg)](msg, dtls)
    n = len(body)
    if n >= 1 << 24:
        raise ValueError("vector too long for its length prefix")
    return _U32.pack((msg.msg_type << 24) | n) + body


# --- decoding --------------------------------------------------------------------------------


def _pull_session_id(r: Reader) -> bytes:
    sid = r.pull_opaque(1)
    if len(sid) > 32:  # legacy_session_id<0..32> (§4.1.2, §4.1.3)
        raise decode_error("legacy_session_id longer than 32 bytes")
    return sid


def _truncated() -> HandshakeError:
    return decode_error("truncated structure")


def _d_client_hello(r: Reader, dtls: bool, hash_len: int) -> ClientHello:
    # The fixed part is parsed with slices (decode_message hands over bytes); the checks and
    # their order are those of the Reader calls they replace.
    data, pos, end = r.span()
    if end - pos < 35:  # legacy_version, random, legacy_session_id length
        raise _truncated()
    legacy_version = (data[pos] << 8) | data[pos + 1]
    random = bytes(data[pos + 2 : pos + 34])
    n = data[pos + 34]
    pos += 35
    if pos + n > end:
        raise _truncated()
    if n > 32:  # legacy_session_id<0..32> (§4.1.2)
        raise decode_error("legacy_session_id longer than 32 bytes")
    session_id = bytes(data[pos : pos + n])
    pos += n
    cookie: bytes | None = None
    if dtls:  # RFC 9147 §5.3 legacy_cookie<0..2^8-1>
        if pos >= end:
            raise _truncated()
        n = data[pos]
        pos += 1
        if pos + n > end:
            raise _truncated()
        cookie = bytes(data[pos : pos + n])
        pos += n
    if end - pos < 2:  # cipher_suites<2..2^16-2>
        raise _truncated()
    n = (data[pos] << 8) | data[pos + 1]
    pos += 2
    if n < 2:
        raise decode_error("vector shorter than its minimum of 2")
    if pos + n > end:
        raise _truncated()
    if n & 1:
        raise decode_error("vector length is not a multiple of its element size")
    suites: tuple[int, ...] = struct.unpack_from(f"!{n >> 1}H", data, pos)
    pos += n
    if pos >= end:  # legacy_compression_methods<1..2^8-1>
        raise _truncated()
    n = data[pos]
    pos += 1
    if n < 1:
        raise decode_error("vector shorter than its minimum of 1")
    if pos + n > end:
        raise _truncated()
    compression = bytes(data[pos : pos + n])
    r.seek(pos + n)
    if r.eof():
        # §4.1.2: a ClientHello without extensions is TLS 1.2 or older; it cannot carry
        # supported_versions, so TLS 1.3 cannot be negotiated (Appendix D).
        raise HandshakeError(
            AlertDescription.protocol_version, "ClientHello without extensions (pre-TLS 1.3)"
        )
    ext = decode_extensions(r, HandshakeType.client_hello)
    if ext.supported_versions is not None and (_DTLS13 if dtls else _TLS13) in (
        ext.supported_versions
    ):
        # The legacy fields are only fixed for a ClientHello that offers (D)TLS 1.3; a
        # ClientHello for older versions must instead end in protocol_version (§4.2.1).
        if compression != b"\x00":
            raise illegal_parameter("legacy_compression_methods must be [0] (§4.1.2)")
        if cookie:
            raise illegal_parameter("DTLS 1.3 legacy_cookie must be empty (RFC 9147 §5.3)")
    # The normal constructor: a server keeps the ClientHello for the whole handshake, and
    # instances built by __init__ are the most compact (no separate __dict__ object).
    return ClientHello(
        random=random,
        legacy_session_id=session_id,
        cipher_suites=suites,
        extensions=ext,
        legacy_compression_methods=compression,
        legacy_version=legacy_version,
        legacy_cookie=cookie,
    )


def _has_supported_versions(body: bytes | memoryview, start: int) -> bool:
    """Whether the extensions block at ``start`` holds supported_versions (no full decode)."""
    r = Reader(body, start)
    if r.eof():
        return False
    found = False
    # The block must be walked to its end: a malformed block is a decode_error here too.
    data, pos, end = r.take_block(2)
    while pos < end:
        if end - pos < 4:
            raise decode_error("truncated structure")
        ext_type, length = _EXT_HEAD.unpack_from(data, pos)
        pos += 4 + length
        if pos > end:
            raise decode_error("truncated structure")
        found = found or ext_type == _SUPPORTED_VERSIONS
    return found


def _d_server_hello(r: Reader, dtls: bool, hash_len: int, body: bytes | memoryview) -> ServerHello:
    legacy_version = r.pull_uint16()
    random = r.pull_bytes(32)
    session_id = _pull_session_id(r)
    suite = r.pull_uint16()
    compression = r.pull_uint8()
    hrr = random == HELLO_RETRY_REQUEST_RANDOM  # §4.1.3: examine the random first
    if not hrr and not _has_supported_versions(body, r.position):
        # §4.2.1: clients check supported_versions before processing the rest; without it
        # the server negotiated TLS 1.2 or older. §4.1.3: a downgrade sentinel in that case
        # is illegal_parameter, otherwise the version is simply unsupported.
        if random[24:] in (DOWNGRADE_TLS12, DOWNGRADE_TLS11):
            raise illegal_parameter("ServerHello.random carries a downgrade sentinel")
        raise HandshakeError(
            AlertDescription.protocol_version, "ServerHello negotiates a version below 1.3"
        )
    if compression != 0:
        raise illegal_parameter("legacy_compression_method must be 0 (§4.1.3)")
    ext = decode_extensions(r, HandshakeType.server_hello, hrr=hrr)
    return _new_message(
        ServerHello,
        random=random,
        legacy_session_id_echo=session_id,
        cipher_suite=suite,
        extensions=ext,
        legacy_version=legacy_version,
        legacy_compression_method=compression,
    )


def _d_encrypted_extensions(r: Reader, dtls: bool, hash_len: int) -> EncryptedExtensions:
    return _new_message(
        EncryptedExtensions, extensions=decode_extensions(r, HandshakeType.encrypted_extensions)
    )


def _d_certificate_request(r: Reader, dtls: bool, hash_len: int) -> CertificateRequest:
    context = r.pull_opaque(1)
    ext = decode_extensions(r, HandshakeType.certificate_request)
    if ext.signature_algorithms is None:
        # §4.3.2: "The signature_algorithms extension MUST be specified"
        raise HandshakeError(
            AlertDescription.missing_extension, "CertificateRequest without signature_algorithms"
        )
    return CertificateRequest(context, ext)


def _d_certificate(r: Reader, dtls: bool, hash_len: int) -> Certificate:
    context = r.pull_opaque(1)
    entries: list[CertificateEntry] = []
    with r.pull_block(3) as lst:  # certificate_list<0..2^24-1> (§4.4.2)
        while not lst.eof():
            cert_data = lst.pull_opaque(3, min_len=1)  # cert_data<1..2^24-1>
            entries.append(
                CertificateEntry(cert_data, decode_extensions(lst, HandshakeType.certificate))
            )
    return Certificate(context, tuple(entries))


def _d_certificate_verify(r: Reader, dtls: bool, hash_len: int) -> CertificateVerify:
    algorithm = r.pull_uint16()
    return _new_message(CertificateVerify, algorithm=algorithm, signature=r.pull_opaque(2))


def _d_finished(r: Reader, dtls: bool, hash_len: int) -> Finished:
    if r.remaining != hash_len:  # verify_data[Hash.length] (§4.4.4)
        raise decode_error(f"Finished is {r.remaining} bytes, expected {hash_len}")
    return _new_message(Finished, verify_data=r.pull_bytes(hash_len))


def _d_new_session_ticket(r: Reader, dtls: bool, hash_len: int) -> NewSessionTicket:
    lifetime = r.pull_uint32()
    age_add = r.pull_uint32()
    nonce = r.pull_opaque(1)  # ticket_nonce<0..255>
    ticket = r.pull_opaque(2, min_len=1)  # ticket<1..2^16-1>
    ext = decode_extensions(r, HandshakeType.new_session_ticket)
    return NewSessionTicket(lifetime, age_add, nonce, ticket, ext)


def _d_end_of_early_data(r: Reader, dtls: bool, hash_len: int) -> EndOfEarlyData:
    return EndOfEarlyData()


def _d_key_update(r: Reader, dtls: bool, hash_len: int) -> KeyUpdate:
    request = r.pull_uint8()
    if request not in (0, 1):  # §4.6.3: any other value -> illegal_parameter
        raise illegal_parameter("KeyUpdate.request_update must be 0 or 1")
    return KeyUpdate(request)


def _d_request_connection_id(r: Reader, dtls: bool, hash_len: int) -> RequestConnectionId:
    return RequestConnectionId(r.pull_uint8())


def _d_new_connection_id(r: Reader, dtls: bool, hash_len: int) -> NewConnectionId:
    cids: list[bytes] = []
    with r.pull_block(2) as lst:  # ConnectionId cids<0..2^16-1> (RFC 9147 §9)
        while not lst.eof():
            cids.append(lst.pull_opaque(1))
    usage = r.pull_uint8()
    if usage not in (0, 1):  # ConnectionIdUsage: cid_immediate(0), cid_spare(1)
        raise illegal_parameter("NewConnectionId.usage must be 0 or 1")
    return NewConnectionId(tuple(cids), usage)


_Decoder = Callable[[Reader, bool, int], HandshakeMessage]

_DECODERS: dict[int, _Decoder] = {
    HandshakeType.client_hello: _d_client_hello,
    HandshakeType.encrypted_extensions: _d_encrypted_extensions,
    HandshakeType.certificate_request: _d_certificate_request,
    HandshakeType.certificate: _d_certificate,
    HandshakeType.certificate_verify: _d_certificate_verify,
    HandshakeType.finished: _d_finished,
    HandshakeType.new_session_ticket: _d_new_session_ticket,
    HandshakeType.end_of_early_data: _d_end_of_early_data,
    HandshakeType.key_update: _d_key_update,
    HandshakeType.request_connection_id: _d_request_connection_id,
    HandshakeType.new_connection_id: _d_new_connection_id,
}

_DTLS_ONLY = frozenset({HandshakeType.request_connection_id, HandshakeType.new_connection_id})


def _server_hello_placeholder(r: Reader, dtls: bool, hash_len: int) -> HandshakeMessage:
    raise AssertionError("decode_message parses ServerHello itself")  # pragma: no cover


# What each protocol accepts (int keys: lookups with plain ints, no enum hashing): DTLS has
# no EndOfEarlyData (RFC 9147 §5.6); request/new_connection_id are DTLS-only (§9).
_TLS_DECODERS: dict[int, _Decoder] = {
    int(t): d for t, d in _DECODERS.items() if t not in _DTLS_ONLY
} | {_SH: _server_hello_placeholder}
_DTLS_DECODERS: dict[int, _Decoder] = {
    int(t): d for t, d in _DECODERS.items() if t != HandshakeType.end_of_early_data
} | {_SH: _server_hello_placeholder}


def decode_message(
    msg_type: int, body: bytes | memoryview, *, dtls: bool = False, hash_len: int = 32
) -> HandshakeMessage:
    """Parse one handshake message body (without its header) of type ``msg_type``.

    ``hash_len`` is the negotiated hash length (only Finished needs it). Unknown or
    out-of-context types are ``unexpected_message``: message_hash never travels on the wire,
    request/new_connection_id exist only in DTLS (RFC 9147 §9), and DTLS 1.3 has no
    EndOfEarlyData (RFC 9147 §5.6).
    """
    decoder = (_DTLS_DECODERS if dtls else _TLS_DECODERS).get(msg_type)
    if decoder is None:
        raise HandshakeError(
            AlertDescription.unexpected_message, f"unexpected handshake type {msg_type}"
        )
    if type(body) is not bytes:
        body = bytes(body)  # one copy; every field below is then a cheap bytes slice
    r = Reader(body)
    msg: HandshakeMessage
    if msg_type == _SH:
        msg = _d_server_hello(r, dtls, hash_len, body)
    else:
        msg = decoder(r, dtls, hash_len)
    r.expect_end()
    return msg


def client_hello_truncated_for_binders(
    encoded_ch: bytes | memoryview, *, dtls: bool | None = None
) -> bytes:
    """Truncate(ClientHello) of RFC 8446 §4.2.11.2: the message up to, not including, the
    binders list (its 2-byte length and every PskBinderEntry).

    ``encoded_ch`` is the full TLS-form message (4-byte header). The ClientHello is parsed to
    find the pre_shared_key extension, which is necessarily last. ``dtls=None`` infers the
    DTLS layout (legacy_cookie) from the DTLS legacy_version 0xfefd.
    """
    data = bytes(encoded_ch)
    if len(data) < 6 or data[0] != HandshakeType.client_hello:
        raise ValueError("not an encoded ClientHello")
    if int.from_bytes(data[1:4], "big") != len(data) - 4:
        raise decode_error("ClientHello length field does not match the message")
    if dtls is None:
        dtls = int.from_bytes(data[4:6], "big") in (_DTLS12, 0xFEFF)
    ch = decode_message(HandshakeType.client_hello, memoryview(data)[4:], dtls=dtls)
    assert isinstance(ch, ClientHello)
    psks = ch.extensions.pre_shared_key
    if psks is None:
        raise ValueError("ClientHello has no pre_shared_key extension")
    binders_len = 2 + sum(1 + len(b) for b in psks.binders)
    return data[: len(data) - binders_len]
