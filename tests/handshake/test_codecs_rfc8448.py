"""Every handshake message of the RFC 8448 traces (§3-§7) decodes and re-encodes byte for byte."""

from __future__ import annotations

import pytest
from rfc8448_trace import find_blocks, hex_block

from handshake.buffer import Reader
from handshake.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    ExtensionType,
    Finished,
    HandshakeMessage,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
    client_hello_truncated_for_binders,
    decode_message,
    encode_message,
)

TLS_AES_128_GCM_SHA256 = 0x1301
X25519 = 0x001D
SECP256R1 = 0x0017

_MESSAGE_NAMES = (
    "ClientHello",
    "ServerHello",
    "EncryptedExtensions",
    "CertificateRequest",
    "CertificateVerify",
    "Certificate",
    "Finished",
    "NewSessionTicket",
    "EndOfEarlyData",
)


def _message_blocks() -> list[tuple[str, str, bytes]]:
    """(section, label, bytes) for every "construct a <Message>" block of §3-§7."""
    out: list[tuple[str, str, bytes]] = []
    for section in ("3", "4", "5", "6", "7"):
        for block in find_blocks(section, "construct a "):
            if not block.label.startswith(_MESSAGE_NAMES):
                continue
            if section == "4" and block.label.startswith("ClientHello"):
                # §4 shows the ClientHello without its binders; the whole message is the
                # record payload (tested separately below).
                continue
            out.append((section, block.label, block.data))
    return out


_BLOCKS = _message_blocks()


def _decode(data: bytes) -> HandshakeMessage:
    assert int.from_bytes(data[1:4], "big") == len(data) - 4
    return decode_message(data[0], data[4:], hash_len=32)


def test_every_section_has_its_messages() -> None:
    # Guards the parser: a regex slip must not silently shrink the parametrised test below.
    counts = {s: sum(1 for sec, _, _ in _BLOCKS if sec == s) for s in "34567"}
    assert counts == {"3": 8, "4": 5, "5": 9, "6": 10, "7": 7}


@pytest.mark.parametrize(
    ("section", "label", "data"),
    _BLOCKS,
    ids=[f"s{s}-{i}-{label.split(' ')[0]}" for i, (s, label, _) in enumerate(_BLOCKS)],
)
def test_decode_encode_identity(section: str, label: str, data: bytes) -> None:
    msg = _decode(data)
    assert type(msg).__name__ == label.split(" ")[0]
    assert encode_message(msg) == data


def test_s3_client_hello() -> None:
    ch = _decode(hex_block("3", "ClientHello ("))
    assert isinstance(ch, ClientHello)
    assert ch.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert ch.legacy_session_id == b""
    ext = ch.extensions
    assert ext.server_name == "server"
    assert ext.supported_versions == (0x0304,)
    assert ext.key_share_entries is not None
    assert [e.group for e in ext.key_share_entries] == [X25519]
    # The key share is the client's x25519 public key shown above the message.
    assert ext.key_share_entries[0].key_exchange == hex_block("3", "x25519 key pair | public key")
    assert ext.supported_groups is not None and ext.supported_groups[:4] == (29, 23, 24, 25)
    assert ext.psk_key_exchange_modes == (1,)
    assert ext.record_size_limit == 0x4001
    assert ext.signature_algorithms is not None and 0x0804 in ext.signature_algorithms
    # renegotiation_info (0xff01) and session_ticket (35) are ignored but kept
    assert [t for t, _ in ext.unknown] == [0xFF01, 35]
    assert ext.order[0] == ExtensionType.server_name


def test_s3_server_flight() -> None:
    sh = _decode(hex_block("3", "ServerHello ("))
    assert isinstance(sh, ServerHello) and not sh.is_hello_retry_request
    assert sh.cipher_suite == TLS_AES_128_GCM_SHA256
    assert sh.extensions.selected_version == 0x0304
    assert sh.extensions.key_share_entry is not None
    assert sh.extensions.key_share_entry.group == X25519
    assert sh.extensions.key_share_entry.key_exchange == hex_block(
        "3", "{server}  create an ephemeral x25519 key pair | public key"
    )
    ee = _decode(hex_block("3", "EncryptedExtensions ("))
    assert isinstance(ee, EncryptedExtensions)
    assert ee.extensions.server_name == ""  # the empty acknowledgement
    assert ee.extensions.record_size_limit == 0x4001
    cert = _decode(hex_block("3", "Certificate ("))
    assert isinstance(cert, Certificate)
    assert cert.certificate_request_context == b""
    assert len(cert.entries) == 1 and cert.entries[0].cert_data[:2] == b"\x30\x82"
    cv = _decode(hex_block("3", "CertificateVerify ("))
    assert isinstance(cv, CertificateVerify)
    assert cv.algorithm == 0x0804 and len(cv.signature) == 128
    fin = _decode(hex_block("3", "construct a Finished"))
    assert isinstance(fin, Finished)
    assert fin.verify_data == hex_block(
        "3", '{server}  calculate finished "tls13 finished" | finished'
    )


def test_s3_new_session_ticket() -> None:
    nst = _decode(hex_block("3", "NewSessionTicket ("))
    assert isinstance(nst, NewSessionTicket)
    assert nst.ticket_lifetime == 30
    assert nst.ticket_age_add == 0x933D0932
    assert nst.ticket_nonce == b"\x00\x00"
    assert len(nst.ticket) == 0xB2
    assert nst.extensions.max_early_data_size == 1024
    assert nst.extensions.early_data is False  # the NST form is max_early_data_size


def test_s4_resumption_client_hello_and_binder_truncation() -> None:
    full = hex_block("4", "send handshake record | payload (512")
    ch = _decode(full)
    assert isinstance(ch, ClientHello)
    assert encode_message(ch) == full
    ext = ch.extensions
    assert ext.early_data is True
    assert ext.padding == 87
    assert ext.order[-1] == ExtensionType.pre_shared_key
    assert ext.pre_shared_key is not None
    (identity,) = ext.pre_shared_key.identities
    # The identity is the §3 ticket; the binder is the "finished" value computed in §4.
    nst = _decode(hex_block("3", "NewSessionTicket ("))
    assert isinstance(nst, NewSessionTicket)
    assert identity.identity == nst.ticket
    assert ext.pre_shared_key.binders == (hex_block("4", "calculate PSK binder | finished"),)
    # §4.2.11.2 Truncate(ClientHello) equals the trace's "ClientHello prefix"
    prefix = hex_block("4", "ClientHello prefix")
    assert client_hello_truncated_for_binders(full) == prefix
    assert hex_block("4", "construct a ClientHello") == prefix


def test_s4_server_accepts_psk_and_early_data() -> None:
    sh = _decode(hex_block("4", "ServerHello ("))
    assert isinstance(sh, ServerHello)
    assert sh.extensions.selected_identity == 0
    ee = _decode(hex_block("4", "EncryptedExtensions ("))
    assert isinstance(ee, EncryptedExtensions) and ee.extensions.early_data is True
    eoed = hex_block("4", "EndOfEarlyData (")
    assert eoed == b"\x05\x00\x00\x00"
    assert isinstance(_decode(eoed), EndOfEarlyData)


def test_s5_hello_retry_request() -> None:
    hrr = _decode(hex_block("5", "ServerHello (", 0))
    assert isinstance(hrr, ServerHello) and hrr.is_hello_retry_request
    assert hrr.random == HELLO_RETRY_REQUEST_RANDOM
    assert hrr.extensions.key_share_selected_group == SECP256R1
    assert hrr.extensions.selected_version == 0x0304
    assert hrr.extensions.cookie is not None and len(hrr.extensions.cookie) == 0x72
    ch2 = _decode(hex_block("5", "ClientHello (", 1))
    assert isinstance(ch2, ClientHello)
    assert ch2.extensions.cookie == hrr.extensions.cookie
    assert ch2.extensions.key_share_entries is not None
    assert [e.group for e in ch2.extensions.key_share_entries] == [SECP256R1]
    assert ch2.extensions.key_share_entries[0].key_exchange == hex_block(
        "5", "{client}  create an ephemeral P-256 key pair | public key"
    )
    sh = _decode(hex_block("5", "ServerHello (", 1))
    assert isinstance(sh, ServerHello) and not sh.is_hello_retry_request
    assert sh.extensions.key_share_entry is not None
    assert sh.extensions.key_share_entry.group == SECP256R1


def test_s6_client_authentication() -> None:
    cr = _decode(hex_block("6", "CertificateRequest ("))
    assert isinstance(cr, CertificateRequest)
    assert cr.certificate_request_context == b""
    assert cr.extensions.signature_algorithms is not None
    assert cr.extensions.signature_algorithms[0] == 0x0403
    client_cert = _decode(hex_block("6", "{client}  construct a Certificate handshake"))
    assert isinstance(client_cert, Certificate) and len(client_cert.entries) == 1
    client_cv = _decode(hex_block("6", "{client}  construct a CertificateVerify"))
    assert isinstance(client_cv, CertificateVerify) and client_cv.algorithm == 0x0804
    server_cv = _decode(hex_block("6", "{server}  construct a CertificateVerify"))
    assert isinstance(server_cv, CertificateVerify) and server_cv.algorithm == 0x0403


def test_s7_compatibility_mode_session_id_echo() -> None:
    ch = _decode(hex_block("7", "ClientHello ("))
    sh = _decode(hex_block("7", "ServerHello ("))
    assert isinstance(ch, ClientHello) and isinstance(sh, ServerHello)
    assert len(ch.legacy_session_id) == 32
    assert sh.legacy_session_id_echo == ch.legacy_session_id


@pytest.mark.parametrize("section", ["3", "5", "6", "7"])
def test_server_flight_payload_splits_into_the_shown_messages(section: str) -> None:
    # The encrypted server flight is one record payload of back-to-back messages.
    payload = next(
        b.data
        for b in find_blocks(section, "{server}  send handshake record | payload")
        if b.data[0] == HandshakeType.encrypted_extensions
    )
    r = Reader(payload)
    parts: list[bytes] = []
    while not r.eof():
        start = r.position
        msg_type = r.pull_uint8()
        body = r.pull_bytes(r.pull_uint24())
        msg = decode_message(msg_type, body)
        assert encode_message(msg) == payload[start : r.position]
        parts.append(payload[start : r.position])
    assert parts[0] == hex_block(section, "EncryptedExtensions (")
    assert parts[-1] == hex_block(section, "{server}  construct a Finished")
