"""Strict decoding: each malformed input fails with the alert RFC 8446 (and friends) require."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rfc8448_trace import find_blocks, hex_block
from test_codecs_roundtrip import dtls_messages, hash_len_for, tls_messages

from handshake.alerts import AlertDescription, HandshakeError
from handshake.buffer import Reader
from handshake.extensions import decode_extensions
from handshake.messages import (
    DOWNGRADE_TLS11,
    DOWNGRADE_TLS12,
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    ClientHello,
    EncryptedExtensions,
    Extensions,
    ExtensionType,
    Finished,
    HandshakeMessage,
    HandshakeType,
    KeyShareEntry,
    OfferedPsks,
    PskIdentity,
    ServerHello,
    client_hello_truncated_for_binders,
    decode_message,
    encode_message,
)

A = AlertDescription
E = ExtensionType
H = HandshakeType


# --- helpers building raw bodies -------------------------------------------------------------


def u16(v: int) -> bytes:
    return struct.pack("!H", v)


def vec1(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def vec2(b: bytes) -> bytes:
    return u16(len(b)) + b


def ext(t: int, body: bytes = b"") -> bytes:
    return u16(t) + vec2(body)


SV_TLS13 = ext(E.supported_versions, vec1(u16(0x0304)))  # 7 bytes
KS_EMPTY = ext(E.key_share, vec2(b""))  # 6 bytes
X25519_SHARE = ext(E.key_share, vec2(u16(29) + vec2(b"\x11" * 32)))
SH_SV = ext(E.supported_versions, u16(0x0304))
SH_KS = ext(E.key_share, u16(29) + vec2(b"\x22" * 32))


def ch_body(
    *exts: bytes,
    suites: bytes = vec2(u16(0x1301)),
    compression: bytes = b"\x01\x00",
    session_id: bytes = b"",
    cookie: bytes | None = None,
    version: int = 0x0303,
) -> bytes:
    head = u16(version) + b"\xaa" * 32 + vec1(session_id)
    if cookie is not None:
        head += vec1(cookie)
    return head + suites + compression + vec2(b"".join(exts))


def ch13(*exts: bytes) -> bytes:
    """A TLS 1.3 ClientHello body with supported_versions and an empty key_share first."""
    return ch_body(SV_TLS13, KS_EMPTY, *exts)


def sh_body(
    *exts: bytes, random: bytes = b"\xbb" * 32, compression: int = 0, session_id: bytes = b""
) -> bytes:
    head = u16(0x0303) + random + vec1(session_id) + u16(0x1301) + bytes([compression])
    return head + vec2(b"".join(exts))


def hrr_body(*exts: bytes) -> bytes:
    return sh_body(*exts, random=HELLO_RETRY_REQUEST_RANDOM)


def ee_body(*exts: bytes) -> bytes:
    return vec2(b"".join(exts))


SIG_ALGS = ext(E.signature_algorithms, vec2(u16(0x0804)))


def cr_body(*exts: bytes) -> bytes:
    return vec1(b"") + vec2(b"".join(exts))


def cert_body(*exts: bytes) -> bytes:
    entry = b"\x00\x00\x03abc" + vec2(b"".join(exts))
    return vec1(b"") + len(entry).to_bytes(3, "big") + entry


def nst_body(*exts: bytes, ticket: bytes = b"T") -> bytes:
    return struct.pack("!II", 7200, 1) + vec1(b"\x00") + vec2(ticket) + vec2(b"".join(exts))


def alert_of(msg_type: int, body: bytes, **kw: object) -> AlertDescription:
    with pytest.raises(HandshakeError) as info:
        decode_message(msg_type, body, **kw)  # type: ignore[arg-type]
    return info.value.alert


def psk_ext(identities: list[bytes], binders: list[bytes]) -> bytes:
    ids = b"".join(vec2(i) + b"\x00\x00\x00\x00" for i in identities)
    bs = b"".join(vec1(b) for b in binders)
    return ext(E.pre_shared_key, vec2(ids) + vec2(bs))


PSK_OK = psk_ext([b"ticket"], [b"\x00" * 32])


# --- sanity: the helpers build valid messages ------------------------------------------------


def test_helper_bodies_are_valid() -> None:
    ch = decode_message(H.client_hello, ch13(PSK_OK))
    assert isinstance(ch, ClientHello) and ch.extensions.pre_shared_key is not None
    assert isinstance(decode_message(H.server_hello, sh_body(SH_SV, SH_KS)), ServerHello)
    assert isinstance(
        decode_message(H.server_hello, hrr_body(SH_SV, ext(E.key_share, u16(23)))), ServerHello
    )
    decode_message(H.encrypted_extensions, ee_body())
    decode_message(H.certificate_request, cr_body(SIG_ALGS))
    decode_message(H.certificate, cert_body())
    decode_message(H.new_session_ticket, nst_body())


# --- truncation and trailing bytes -------------------------------------------------------------

_MESSAGE_LABELS = (
    "ClientHello (",
    "ServerHello (",
    "EncryptedExtensions (",
    "CertificateRequest (",
    "Certificate (",
    "CertificateVerify (",
    "Finished (",
    "NewSessionTicket (",
    "EndOfEarlyData (",
)
_TRACE_MESSAGES = [
    b.data
    for s in "34567"
    for b in find_blocks(s, "construct a ")
    if b.label.startswith(_MESSAGE_LABELS)
    and not (s == "4" and b.data[0] == H.client_hello)  # §4 shows a truncated ClientHello
] + [hex_block("4", "send handshake record | payload (512")]


@pytest.mark.parametrize("data", _TRACE_MESSAGES, ids=lambda d: f"type{d[0]}-{len(d)}")
def test_every_truncation_is_decode_error(data: bytes) -> None:
    msg_type, body = data[0], data[4:]
    decode_message(msg_type, body)  # the whole message is fine
    for cut in range(len(body)):
        with pytest.raises(HandshakeError) as info:
            decode_message(msg_type, body[:cut])
        if info.value.alert != A.decode_error:
            # The one exception: cut exactly after the hello's fixed fields, which reads as
            # a hello without extensions, i.e. (D)TLS 1.2 or older.
            assert info.value.alert == A.protocol_version
            assert msg_type in (H.client_hello, H.server_hello)
            assert cut == _fixed_part_length(msg_type, body)


def _fixed_part_length(msg_type: int, body: bytes) -> int:
    r = Reader(body)
    r.pull_uint16()
    r.pull_bytes(32)
    r.pull_opaque(1)
    if msg_type == H.client_hello:
        r.pull_opaque(2)
        r.pull_opaque(1)
    else:
        r.pull_uint16()
        r.pull_uint8()
    return r.position


@pytest.mark.parametrize("data", _TRACE_MESSAGES, ids=lambda d: f"type{d[0]}-{len(d)}")
def test_trailing_byte_is_decode_error(data: bytes) -> None:
    assert alert_of(data[0], data[4:] + b"\x00") == A.decode_error


# --- extension placement -----------------------------------------------------------------------


def test_duplicate_extension_is_illegal_parameter() -> None:
    groups = ext(E.supported_groups, vec2(u16(29)))
    assert alert_of(H.client_hello, ch13(groups, groups)) == A.illegal_parameter
    unknown = ext(0x7777, b"x")
    assert alert_of(H.client_hello, ch13(unknown, unknown)) == A.illegal_parameter
    assert alert_of(H.server_hello, sh_body(SH_SV, SH_KS, SH_KS)) == A.illegal_parameter
    assert alert_of(H.encrypted_extensions, ee_body(ext(0), ext(0))) == A.illegal_parameter
    body = nst_body(ext(E.early_data, b"\0\0\0\1"), ext(E.early_data, b"\0\0\0\1"))
    assert alert_of(H.new_session_ticket, body) == A.illegal_parameter


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (H.server_hello, sh_body(SH_SV, ext(E.early_data))),
        (H.server_hello, sh_body(SH_SV, ext(E.server_name))),
        (H.server_hello, sh_body(SH_SV, ext(E.cookie, vec2(b"c")))),  # cookie: HRR only
        (H.server_hello, hrr_body(SH_SV, ext(E.pre_shared_key, u16(0)))),
        (H.server_hello, hrr_body(SH_SV, ext(E.connection_id, vec1(b"")))),
        (H.encrypted_extensions, ee_body(SH_KS)),
        (H.encrypted_extensions, ee_body(ext(E.padding, b"\0"))),
        (H.encrypted_extensions, ee_body(SIG_ALGS)),
        (H.encrypted_extensions, ee_body(ext(E.connection_id, vec1(b"")))),
        (H.encrypted_extensions, ee_body(ext(E.post_handshake_auth))),
        (H.client_hello, ch13(ext(E.oid_filters, vec2(b"")))),
        (H.certificate_request, cr_body(SIG_ALGS, ext(E.psk_key_exchange_modes, vec1(b"\1")))),
        (H.certificate_request, cr_body(SIG_ALGS, ext(E.early_data))),
        (H.certificate, cert_body(SIG_ALGS)),
        (H.certificate, cert_body(ext(E.early_data))),
        (H.new_session_ticket, nst_body(ext(E.status_request))),
        (H.new_session_ticket, nst_body(ext(E.server_name))),
    ],
)
def test_known_extension_in_wrong_message_is_illegal_parameter(msg_type: int, body: bytes) -> None:
    assert alert_of(msg_type, body) == A.illegal_parameter


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (H.server_hello, sh_body(SH_SV, SH_KS, ext(0x7777))),
        (H.server_hello, hrr_body(SH_SV, ext(0xFF01, b"\0"))),
        (H.encrypted_extensions, ee_body(ext(0x7777, b"abc"))),
        # recognised and allowed in EE by §4.2, but never offered by us: unsolicited
        (H.encrypted_extensions, ee_body(ext(E.use_srtp, b"\0\2\0\1\0"))),
        (H.encrypted_extensions, ee_body(ext(E.max_fragment_length, b"\1"))),
    ],
)
def test_unknown_extension_in_response_is_unsupported_extension(msg_type: int, body: bytes) -> None:
    assert alert_of(msg_type, body) == A.unsupported_extension


def test_unknown_extensions_are_ignored_where_the_rfc_says_so() -> None:
    grease = ext(0x0A0A, b"")
    ch = decode_message(H.client_hello, ch13(grease, ext(E.use_srtp, b"\0\2\0\1\0")))
    assert isinstance(ch, ClientHello)
    assert ch.extensions.unknown == ((0x0A0A, b""), (E.use_srtp, b"\0\2\0\1\0"))
    cr = decode_message(H.certificate_request, cr_body(grease, SIG_ALGS))
    assert cr.extensions.unknown == ((0x0A0A, b""),)  # type: ignore[union-attr]
    sct = ext(E.signed_certificate_timestamp, b"sct")
    cert = decode_message(H.certificate, cert_body(sct, grease))
    assert isinstance(cert, Certificate)
    assert cert.entries[0].extensions.unknown == ((18, b"sct"), (0x0A0A, b""))
    nst = decode_message(H.new_session_ticket, nst_body(grease))
    assert nst.extensions.unknown == ((0x0A0A, b""),)  # type: ignore[union-attr]


def test_pre_shared_key_must_be_last_in_client_hello() -> None:
    groups = ext(E.supported_groups, vec2(u16(29)))
    assert alert_of(H.client_hello, ch13(PSK_OK, groups)) == A.illegal_parameter
    assert alert_of(H.client_hello, ch13(PSK_OK, ext(0x7777))) == A.illegal_parameter
    # ... but it may sit anywhere in the ServerHello (§4.2)
    sh = decode_message(H.server_hello, sh_body(ext(E.pre_shared_key, u16(0)), SH_SV, SH_KS))
    assert sh.extensions.selected_identity == 0  # type: ignore[union-attr]


# --- minimum lengths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (H.client_hello, ch_body(SV_TLS13, KS_EMPTY, suites=vec2(b""))),
        (H.client_hello, ch_body(SV_TLS13, KS_EMPTY, compression=b"\x00")),  # empty methods
        (H.client_hello, ch13(ext(E.supported_groups, vec2(b"")))),
        (H.client_hello, ch13(ext(E.signature_algorithms, vec2(b"")))),
        (H.client_hello, ch13(ext(E.signature_algorithms_cert, vec2(b"")))),
        (H.client_hello, ch_body(ext(E.supported_versions, vec1(b"")), KS_EMPTY)),
        (H.client_hello, ch_body(ext(E.supported_versions, vec1(b"\3\4\3")), KS_EMPTY)),
        (H.client_hello, ch13(ext(E.psk_key_exchange_modes, vec1(b"")))),
        (H.client_hello, ch13(ext(E.cookie, vec2(b"")))),
        (H.client_hello, ch13(ext(E.application_layer_protocol_negotiation, vec2(b"")))),
        (H.client_hello, ch13(ext(E.application_layer_protocol_negotiation, vec2(b"\0")))),
        (H.client_hello, ch13(ext(E.server_name, b""))),
        (H.client_hello, ch13(ext(E.server_name, vec2(b"\0" + vec2(b""))))),
        (H.client_hello, ch13(ext(E.certificate_authorities, vec2(b"")))),
        (H.client_hello, ch13(ext(E.certificate_authorities, vec2(vec2(b""))))),
        (H.client_hello, ch_body(SV_TLS13, ext(E.key_share, vec2(u16(29) + vec2(b""))))),
        (H.client_hello, ch13(psk_ext([], [b"\0" * 32]))),
        (H.client_hello, ch13(psk_ext([b""], [b"\0" * 32]))),
        (H.client_hello, ch13(psk_ext([b"id"], []))),
        (H.client_hello, ch13(psk_ext([b"id"], [b"\0" * 31]))),
        (H.client_hello, ch_body(SV_TLS13)),  # extensions<8..>: 7 bytes
        (H.server_hello, sh_body(SH_SV, ext(E.key_share, u16(29) + vec2(b"")))),
        (H.server_hello, sh_body(SH_SV, ext(E.key_share, b""))),
        (H.server_hello, sh_body(ext(E.supported_versions, b"\3"))),
        (H.encrypted_extensions, ee_body(ext(E.application_layer_protocol_negotiation, vec2(b"")))),
        (H.encrypted_extensions, ee_body(ext(E.supported_groups, vec2(b"")))),
        (H.certificate_request, cr_body()),  # extensions<2..>
        (H.certificate, vec1(b"") + b"\x00\x00\x05" + b"\x00\x00\x00" + vec2(b"")),
        (H.new_session_ticket, nst_body(ticket=b"")),
    ],
)
def test_empty_or_short_vectors_are_decode_error(msg_type: int, body: bytes) -> None:
    assert alert_of(msg_type, body) == A.decode_error


def test_session_id_longer_than_32_is_decode_error() -> None:
    assert alert_of(H.client_hello, ch_body(SV_TLS13, KS_EMPTY, session_id=b"s" * 33)) == (
        A.decode_error
    )
    assert alert_of(H.server_hello, sh_body(SH_SV, session_id=b"s" * 33)) == A.decode_error


# --- per-extension value rules -----------------------------------------------------------------


def test_server_name_rules() -> None:
    def sni(*entries: bytes) -> bytes:
        return ext(E.server_name, vec2(b"".join(entries)))

    host = b"\x00" + vec2(b"example.com")
    ch = decode_message(H.client_hello, ch13(sni(host)))
    assert ch.extensions.server_name == "example.com"  # type: ignore[union-attr]
    assert alert_of(H.client_hello, ch13(sni(host, host))) == A.illegal_parameter
    assert alert_of(H.client_hello, ch13(sni(b"\x01" + vec2(b"x")))) == A.decode_error
    assert alert_of(H.client_hello, ch13(sni(b"\x00" + vec2(b"\xc3\xa9.com")))) == A.decode_error
    ee = decode_message(H.encrypted_extensions, ee_body(ext(E.server_name)))
    assert ee.extensions.server_name == ""  # type: ignore[union-attr]
    assert alert_of(H.encrypted_extensions, ee_body(sni(host))) == A.decode_error


def test_record_size_limit_bounds() -> None:
    rsl = E.record_size_limit
    assert alert_of(H.client_hello, ch13(ext(rsl, u16(63)))) == A.illegal_parameter
    assert alert_of(H.encrypted_extensions, ee_body(ext(rsl, u16(0)))) == A.illegal_parameter
    ch = decode_message(H.client_hello, ch13(ext(rsl, u16(64))))
    assert ch.extensions.record_size_limit == 64  # type: ignore[union-attr]
    assert alert_of(H.client_hello, ch13(ext(rsl, b"\x40\x00\x00"))) == A.decode_error
    assert alert_of(H.client_hello, ch13(ext(rsl, b"\x40"))) == A.decode_error


def test_padding_must_be_zero_bytes() -> None:
    ch = decode_message(H.client_hello, ch13(ext(E.padding, bytes(10))))
    assert ch.extensions.padding == 10  # type: ignore[union-attr]
    assert alert_of(H.client_hello, ch13(ext(E.padding, bytes(9) + b"\1"))) == A.decode_error


def test_alpn_response_names_exactly_one_protocol() -> None:
    alpn = E.application_layer_protocol_negotiation
    two = ext(alpn, vec2(vec1(b"h2") + vec1(b"http/1.1")))
    ch = decode_message(H.client_hello, ch13(two))
    assert ch.extensions.alpn == (b"h2", b"http/1.1")  # type: ignore[union-attr]
    assert alert_of(H.encrypted_extensions, ee_body(two)) == A.decode_error
    one = decode_message(H.encrypted_extensions, ee_body(ext(alpn, vec2(vec1(b"h2")))))
    assert one.extensions.alpn == (b"h2",)  # type: ignore[union-attr]


def test_empty_extensions_must_be_empty() -> None:
    assert alert_of(H.client_hello, ch13(ext(E.early_data, b"\0"))) == A.decode_error
    assert alert_of(H.client_hello, ch13(ext(E.post_handshake_auth, b"\0"))) == A.decode_error
    assert alert_of(H.encrypted_extensions, ee_body(ext(E.early_data, b"\0"))) == A.decode_error
    # in NewSessionTicket early_data is a uint32
    assert alert_of(H.new_session_ticket, nst_body(ext(E.early_data, b"\0\0\1"))) == (
        A.decode_error
    )


def test_pre_shared_key_binder_count_must_match() -> None:
    body = ch13(psk_ext([b"a", b"b"], [b"\0" * 32]))
    assert alert_of(H.client_hello, body) == A.illegal_parameter


def test_duplicate_key_share_group_is_illegal_parameter() -> None:
    entry = u16(29) + vec2(b"\x11" * 32)
    body = ch_body(SV_TLS13, ext(E.key_share, vec2(entry + entry)))
    assert alert_of(H.client_hello, body) == A.illegal_parameter


def test_malformed_oid_filters_is_decode_error() -> None:
    good = ext(E.oid_filters, vec2(vec1(b"\x55\x1d\x25") + vec2(b"v")))
    cr = decode_message(H.certificate_request, cr_body(SIG_ALGS, good))
    assert cr.extensions.oid_filters == vec2(vec1(b"\x55\x1d\x25") + vec2(b"v"))  # type: ignore[union-attr]
    empty_oid = ext(E.oid_filters, vec2(vec1(b"") + vec2(b"")))
    assert alert_of(H.certificate_request, cr_body(SIG_ALGS, empty_oid)) == A.decode_error
    assert alert_of(H.certificate_request, cr_body(SIG_ALGS, ext(E.oid_filters, b"\0"))) == (
        A.decode_error
    )


def test_certificate_request_needs_signature_algorithms() -> None:
    body = cr_body(ext(E.signature_algorithms_cert, vec2(u16(0x0804))))
    assert alert_of(H.certificate_request, body) == A.missing_extension


# --- hello rules ---------------------------------------------------------------------------------


def test_client_hello_compression_must_be_null_for_tls13() -> None:
    for methods in (b"\x01\x01", b"\x02\x00\x01", b"\x02\x01\x00"):
        body = ch_body(SV_TLS13, KS_EMPTY, compression=methods)
        assert alert_of(H.client_hello, body) == A.illegal_parameter
    # A ClientHello that does not offer TLS 1.3 is left to version negotiation.
    sv12 = ext(E.supported_versions, vec1(u16(0x0303)))
    ch = decode_message(H.client_hello, ch_body(sv12, KS_EMPTY, compression=b"\x02\x01\x00"))
    assert ch.legacy_compression_methods == b"\x01\x00"  # type: ignore[union-attr]


def test_client_hello_without_extensions_is_protocol_version() -> None:
    body = ch_body()[:-2]  # drop the (empty) extensions vector entirely
    assert alert_of(H.client_hello, body) == A.protocol_version


def test_server_hello_compression_must_be_zero() -> None:
    assert alert_of(H.server_hello, sh_body(SH_SV, SH_KS, compression=1)) == A.illegal_parameter


def test_server_hello_without_supported_versions() -> None:
    # §4.2.1: checked before the rest; TLS 1.2 ServerHellos carry extensions TLS 1.3 forbids
    tls12 = sh_body(ext(0xFF01, b"\0"), ext(11, b"\1\0"))
    assert alert_of(H.server_hello, tls12) == A.protocol_version
    assert alert_of(H.server_hello, sh_body()[:-2]) == A.protocol_version
    for sentinel in (DOWNGRADE_TLS12, DOWNGRADE_TLS11):
        body = sh_body(ext(0xFF01, b"\0"), random=b"\xcc" * 24 + sentinel)
        assert alert_of(H.server_hello, body) == A.illegal_parameter
        assert alert_of(H.server_hello, sh_body(random=b"\xcc" * 24 + sentinel)[:-2]) == (
            A.illegal_parameter
        )


def test_hello_retry_request_is_detected_by_its_random() -> None:
    cookie = ext(E.cookie, vec2(b"state"))
    hrr = decode_message(H.server_hello, hrr_body(SH_SV, ext(E.key_share, u16(23)), cookie))
    assert isinstance(hrr, ServerHello) and hrr.is_hello_retry_request
    assert hrr.extensions.key_share_selected_group == 23
    assert hrr.extensions.cookie == b"state"
    assert hrr.extensions.key_share_entry is None
    # a full KeyShareEntry is not the HRR form (selected_group only) ...
    assert alert_of(H.server_hello, hrr_body(SH_SV, SH_KS)) == A.decode_error
    # ... and a bare group is not the ServerHello form
    assert alert_of(H.server_hello, sh_body(SH_SV, ext(E.key_share, u16(23)))) == A.decode_error


def test_supported_versions_shape_depends_on_the_message() -> None:
    assert alert_of(H.server_hello, sh_body(ext(E.supported_versions, vec1(u16(0x0304))))) == (
        A.decode_error
    )
    body = ch_body(ext(E.supported_versions, u16(0x0304)), KS_EMPTY)
    assert alert_of(H.client_hello, body) == A.decode_error


# --- other messages ------------------------------------------------------------------------------


def test_key_update_values() -> None:
    assert decode_message(H.key_update, b"\x00").request_update == 0  # type: ignore[union-attr]
    assert decode_message(H.key_update, b"\x01").request_update == 1  # type: ignore[union-attr]
    assert alert_of(H.key_update, b"\x02") == A.illegal_parameter
    assert alert_of(H.key_update, b"\xff") == A.illegal_parameter
    assert alert_of(H.key_update, b"") == A.decode_error
    assert alert_of(H.key_update, b"\x00\x00") == A.decode_error


def test_finished_length_must_equal_hash_length() -> None:
    assert decode_message(H.finished, bytes(48), hash_len=48) == Finished(bytes(48))
    for n in (0, 31, 33, 48):
        assert alert_of(H.finished, bytes(n), hash_len=32) == A.decode_error
    assert alert_of(H.finished, bytes(32), hash_len=48) == A.decode_error


def test_end_of_early_data_is_empty() -> None:
    assert alert_of(H.end_of_early_data, b"\x00") == A.decode_error


def test_new_connection_id_usage() -> None:
    cids = vec2(vec1(b"ab") + vec1(b""))
    msg = decode_message(H.new_connection_id, cids + b"\x01", dtls=True)
    assert msg.cids == (b"ab", b"") and msg.usage == 1  # type: ignore[union-attr]
    assert alert_of(H.new_connection_id, cids + b"\x02", dtls=True) == A.illegal_parameter
    assert alert_of(H.new_connection_id, vec2(b"\x05ab") + b"\x00", dtls=True) == A.decode_error
    assert decode_message(H.request_connection_id, b"\x03", dtls=True).num_cids == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("msg_type", "dtls"),
    [
        (0, False),  # hello_request_RESERVED
        (3, True),  # hello_verify_request_RESERVED
        (6, False),  # hello_retry_request_RESERVED: HRR travels as server_hello
        (H.message_hash, False),  # only ever synthesised for the transcript
        (99, False),
        (H.request_connection_id, False),  # DTLS only (RFC 9147 §9)
        (H.new_connection_id, False),
        (H.end_of_early_data, True),  # not in DTLS 1.3 (RFC 9147 §5.6)
    ],
)
def test_unexpected_message_types(msg_type: int, dtls: bool) -> None:
    assert alert_of(msg_type, b"\x00", dtls=dtls) == A.unexpected_message


# --- DTLS ----------------------------------------------------------------------------------------


def test_dtls_client_hello_legacy_cookie() -> None:
    sv = ext(E.supported_versions, vec1(u16(0xFEFC)))
    body = ch_body(sv, KS_EMPTY, cookie=b"", version=0xFEFD)
    ch = decode_message(H.client_hello, body, dtls=True)
    assert isinstance(ch, ClientHello)
    assert ch.legacy_cookie == b"" and ch.legacy_version == 0xFEFD
    assert encode_message(ch, dtls=True)[4:] == body
    # RFC 9147 §5.3: a DTLS 1.3 ClientHello with a non-empty legacy_cookie -> illegal_parameter
    body = ch_body(sv, KS_EMPTY, cookie=b"c00kie", version=0xFEFD)
    assert alert_of(H.client_hello, body, dtls=True) == A.illegal_parameter
    # without the cookie field the DTLS parse fails
    with pytest.raises(HandshakeError):
        decode_message(H.client_hello, ch_body(sv, KS_EMPTY, version=0xFEFD), dtls=True)


# --- encoding misuse -----------------------------------------------------------------------------


def test_encoding_rejects_fields_the_message_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_message(EncryptedExtensions(Extensions(key_share_entry=KeyShareEntry(29, b"k"))))
    with pytest.raises(ValueError):
        encode_message(EncryptedExtensions(Extensions(server_name="example.com")))
    with pytest.raises(ValueError):
        encode_message(ServerHello(bytes(32), b"", 0x1301, Extensions(key_share_entries=())))
    with pytest.raises(ValueError):
        encode_message(ClientHello(bytes(31), b"", (0x1301,), Extensions()))
    with pytest.raises(ValueError):
        encode_message(ClientHello(bytes(32), b"", (0x1301,), Extensions(), legacy_cookie=b""))
    with pytest.raises(ValueError):
        encode_message(Certificate(b"", (CertificateEntry(b"c", Extensions(early_data=True)),)))


def test_unknown_entries_are_an_escape_hatch_for_malformed_messages() -> None:
    # e.g. a state-machine test sending a forbidden extension in EncryptedExtensions
    ee = EncryptedExtensions(Extensions(unknown=((E.key_share, b"\0\x1d\0\1k"),)))
    data = encode_message(ee)
    assert alert_of(data[0], data[4:]) == A.illegal_parameter


# --- binder truncation ---------------------------------------------------------------------------


def _psk_client_hello(binders: tuple[bytes, ...], dtls: bool = False) -> ClientHello:
    ids = tuple(PskIdentity(b"id%d" % i, i) for i in range(len(binders)))
    return ClientHello(
        random=bytes(range(32)),
        legacy_session_id=b"",
        cipher_suites=(0x1301, 0x1302),
        extensions=Extensions(
            supported_versions=(0xFEFC if dtls else 0x0304,),
            key_share_entries=(KeyShareEntry(29, b"\x09" * 32),),
            psk_key_exchange_modes=(1,),
            early_data=True,
            pre_shared_key=OfferedPsks(ids, binders),
        ),
    )


@pytest.mark.parametrize("dtls", [False, True])
def test_truncation_cuts_exactly_the_binders_list(dtls: bool) -> None:
    binders = (b"\xaa" * 32, b"\xbb" * 48, b"\xcc" * 255)
    full = encode_message(_psk_client_hello(binders, dtls), dtls=dtls)
    truncated = client_hello_truncated_for_binders(full)  # DTLS inferred from 0xfefd
    binder_list = b"".join(vec1(b) for b in binders)
    assert full == truncated + vec2(binder_list)
    assert client_hello_truncated_for_binders(full, dtls=dtls) == truncated
    # The truncated form only depends on the binder lengths, not their values.
    other = encode_message(
        _psk_client_hello((b"\x01" * 32, b"\x02" * 48, b"\x03" * 255), dtls), dtls=dtls
    )
    assert client_hello_truncated_for_binders(other) == truncated


def test_truncation_needs_a_pre_shared_key() -> None:
    full = hex_block("3", "ClientHello (")
    with pytest.raises(ValueError):
        client_hello_truncated_for_binders(full)
    with pytest.raises(HandshakeError):
        client_hello_truncated_for_binders(full[:-1])


# --- robustness ----------------------------------------------------------------------------------

_ALL_TYPES = [int(t) for t in H] + [0, 3, 6, 7, 255]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_ALL_TYPES), st.binary(max_size=300), st.booleans(), st.sampled_from([32, 48])
)
def test_random_bytes_raise_only_handshake_error(
    msg_type: int, body: bytes, dtls: bool, hash_len: int
) -> None:
    # Anything but HandshakeError (IndexError, UnicodeDecodeError, ...) escapes and fails.
    with contextlib.suppress(HandshakeError):
        decode_message(msg_type, body, dtls=dtls, hash_len=hash_len)


@st.composite
def _mutated(draw: st.DrawFn, dtls: bool) -> tuple[HandshakeMessage, bytes]:
    msg = draw(dtls_messages if dtls else tls_messages)
    body = bytearray(encode_message(msg, dtls=dtls)[4:])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, len(body)))
        if kind == "flip" and pos < len(body):
            body[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del body[pos:]
        elif kind == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del body[pos : pos + draw(st.integers(1, 4))]
    return msg, bytes(body)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.data())
def test_mutated_messages_fail_cleanly_or_reencode_identically(
    dtls: bool, data: st.DataObject
) -> None:
    msg, body = data.draw(_mutated(dtls))
    try:
        decoded = decode_message(msg.msg_type, body, dtls=dtls, hash_len=hash_len_for(msg))
    except HandshakeError:
        return
    # Whatever is accepted is canonical: it re-encodes to exactly the bytes received
    # (a DTLS hello with the TLS legacy_version is the one normalised field).
    reencoded = encode_message(decoded, dtls=dtls)[4:]
    if dtls and isinstance(decoded, ClientHello | ServerHello) and decoded.legacy_version == 0x0303:
        assert reencoded[2:] == body[2:]
    else:
        assert reencoded == body


def test_decode_extensions_rejects_message_types_without_extensions() -> None:
    with pytest.raises(ValueError):
        decode_extensions(Reader(b"\x00\x00"), H.finished)
    with pytest.raises(ValueError):
        decode_extensions(Reader(b"\x00\x00"), H.client_hello, hrr=True)
