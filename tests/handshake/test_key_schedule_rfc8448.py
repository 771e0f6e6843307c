"""Key schedule, transcript and x25519/P-256 exchange against the RFC 8448 example traces.

Every expected value is read from the editor's copy of the traces (its keys differ from the
published RFC 8448), so nothing here is a hand-copied constant.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from handshake.alerts import AlertDescription, HandshakeError
from handshake.buffer import Reader
from handshake.cipher_suites import CIPHER_SUITES, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384
from handshake.groups import NamedGroup, generate_key_share, respond_key_share
from handshake.key_schedule import (
    KeySchedule,
    derive_secret,
    hkdf_expand_label,
    hkdf_extract,
    traffic_keys,
)
from handshake.transcript import Transcript
from tests.shared_data import SHARED

_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "data" / "tls13-example-traces.txt",
    SHARED / "rfc" / "tls13-example-traces.txt",
)
TRACE_PATH = next((p for p in _CANDIDATES if p.exists()), None)
# The traces are part of the project's inputs: missing them is a failure, never a skip.
assert TRACE_PATH is not None, f"RFC 8448 trace file not found in {_CANDIDATES}"

SUITE = CIPHER_SUITES[TLS_AES_128_GCM_SHA256]
EMPTY_SHA256 = hashlib.sha256(b"").digest()

# -- trace file reader ------------------------------------------------------------------------

_SECTION = re.compile(r"^(\d+)\.  \S")
_LABELLED = re.compile(
    r"^\s+(?P<label>[A-Za-z][A-Za-z0-9 ]*?) \((?P<n>\d+) octets\):\s*(?P<rest>.*)$"
)
_HEX_LINE = re.compile(r"^\s+(?:[0-9a-f]{2} )*[0-9a-f]{2}\s*$")
# Page breaks split hex blocks: footer, blank lines and running header are skipped.
_PAGE_FURNITURE = re.compile(r"^(?:Thomson |Internet-Draft |\s*$)")


@functools.cache
def _sections() -> dict[int, list[str]]:
    assert TRACE_PATH is not None
    sections: dict[int, list[str]] = {}
    current: list[str] = []
    for line in TRACE_PATH.read_text().splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(int(m.group(1)), [])
        current.append(line)
    return sections


def trace(section: int, heading: str, label: str, nth: int = 0) -> bytes:
    """The hex block ``label (N octets):`` under the ``nth`` step starting with ``heading``."""
    lines = _sections()[section]
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(heading)]
    assert len(starts) > nth, f"§{section}: step {heading!r} #{nth} not found"
    i = starts[nth] + 1
    while i < len(lines) and not lines[i].strip().startswith("{"):
        m = _LABELLED.match(lines[i])
        if m and m["label"] == label:
            rest = m["rest"].strip()
            tokens = [] if rest == "(empty)" else rest.split()
            for line in lines[i + 1 :]:
                if _HEX_LINE.match(line):
                    tokens += line.split()
                elif not _PAGE_FURNITURE.match(line):
                    break
            value = bytes.fromhex("".join(tokens))
            assert len(value) == int(m["n"]), f"{heading} / {label}: length mismatch"
            return value
        i += 1
    raise AssertionError(f"§{section}: {label!r} not under {heading!r}")


Trace = Callable[..., bytes]


def section(n: int) -> Trace:
    return functools.partial(trace, n)


def test_trace_reader_joins_page_breaks() -> None:
    # The §3 Certificate spans a page break; its header gives the body length.
    cert = trace(3, "{server}  construct a Certificate handshake", "Certificate")
    assert cert[0] == 11 and int.from_bytes(cert[1:4], "big") == len(cert) - 4


# -- primitives ------------------------------------------------------------------------------


def test_hkdf_extract_matches_cryptography_hkdf() -> None:
    # RFC 5869 A.1, and the composition Extract+Expand equals cryptography's one-shot HKDF.
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = hkdf_extract("sha256", salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    for name, alg in (("sha256", hashes.SHA256()), ("sha384", hashes.SHA384())):
        prk = hkdf_extract(name, salt, ikm)
        expected = HKDF(alg, 42, salt, info).derive(ikm)
        assert HKDFExpand(alg, 42, info).derive(prk) == expected


def test_hkdf_expand_label_structure_and_dtls_prefix() -> None:
    secret = bytes(range(32))
    for dtls, prefix in ((False, b"tls13 "), (True, b"dtls13")):
        full = prefix + b"key"
        info = b"\x00\x10" + bytes((len(full),)) + full + b"\x01\xaa"
        expected = HKDFExpand(hashes.SHA256(), 16, info).derive(secret)
        assert hkdf_expand_label("sha256", secret, b"key", b"\xaa", 16, dtls=dtls) == expected
    assert hkdf_expand_label("sha256", secret, b"key", b"", 16) != hkdf_expand_label(
        "sha256", secret, b"key", b"", 16, dtls=True
    )
    with pytest.raises(ValueError):
        hkdf_expand_label("sha256", secret, b"x" * 250, b"", 16)
    with pytest.raises(ValueError):
        hkdf_expand_label("sha256", secret, b"key", b"c" * 256, 16)


def test_dtls_traffic_keys_include_sn_key() -> None:
    secret = bytes(range(32))
    tls = traffic_keys(SUITE, secret, dtls=False)
    assert tls.sn_key is None
    dtls = traffic_keys(SUITE, secret, dtls=True)
    assert dtls.sn_key == hkdf_expand_label("sha256", secret, b"sn", b"", 16, dtls=True)
    assert dtls.key == hkdf_expand_label("sha256", secret, b"key", b"", 16, dtls=True)
    assert dtls.iv == hkdf_expand_label("sha256", secret, b"iv", b"", 12, dtls=True)
    assert len(dtls.iv) == 12 and dtls.key != tls.key
    big = traffic_keys(CIPHER_SUITES[TLS_AES_256_GCM_SHA384], bytes(48), dtls=True)
    assert len(big.key) == 32 and big.sn_key is not None and len(big.sn_key) == 32


def test_schedule_stage_order_is_enforced() -> None:
    ks = KeySchedule(SUITE)
    with pytest.raises(RuntimeError):
        ks.client_handshake_traffic_secret(EMPTY_SHA256)
    ks.enter_handshake(None)
    with pytest.raises(RuntimeError):
        ks.client_application_traffic_secret(EMPTY_SHA256)


def test_next_traffic_secret_and_exporter_definitions() -> None:
    ks = KeySchedule(SUITE)
    secret = bytes(range(32))
    assert ks.next_traffic_secret(secret) == hkdf_expand_label(
        "sha256", secret, b"traffic upd", b"", 32
    )
    # §7.5 from its parts: Derive-Secret(Secret, label, "") then "exporter" over Hash(context).
    inner = derive_secret("sha256", secret, b"EXPERIMENTAL x", EMPTY_SHA256)
    expected = hkdf_expand_label("sha256", inner, b"exporter", hashlib.sha256(b"ctx").digest(), 20)
    assert ks.exporter(secret, b"EXPERIMENTAL x", b"ctx", 20) == expected
    assert ks.exporter(secret, b"EXPERIMENTAL x", b"", 20) != expected


def test_verify_finished_rejects_with_decrypt_error() -> None:
    ks = KeySchedule(SUITE)
    good = ks.finished_verify_data(bytes(32), EMPTY_SHA256)
    ks.verify_finished(bytes(32), EMPTY_SHA256, good)
    with pytest.raises(HandshakeError) as exc:
        ks.verify_finished(bytes(32), EMPTY_SHA256, good[:-1] + bytes((good[-1] ^ 1,)))
    assert exc.value.alert == AlertDescription.decrypt_error


# -- shared walk through the trace after ServerHello -------------------------------------------

SERVER_FINISHED = '{server}  calculate finished "tls13 finished":'
CLIENT_FINISHED = '{client}  calculate finished "tls13 finished":'


def _check_keys(v: Trace, heading: str, secret: bytes) -> None:
    keys = traffic_keys(SUITE, secret, dtls=False)
    assert v(heading, "PRK") == secret
    assert keys.key == v(heading, "key expanded")
    assert keys.iv == v(heading, "iv expanded")
    assert keys.sn_key is None


def _check_finished(v: Trace, ks: KeySchedule, heading: str, base_key: bytes, th: bytes) -> bytes:
    assert v(heading, "PRK") == base_key
    assert hkdf_expand_label("sha256", base_key, b"finished", b"", 32) == v(heading, "expanded")
    verify_data = ks.finished_verify_data(base_key, th)
    assert verify_data == v(heading, "finished")
    ks.verify_finished(base_key, th, verify_data)
    return verify_data


def _walk_from_handshake_secret(
    v: Trace,
    ks: KeySchedule,
    t: Transcript,
    shared_secret: bytes | None,
    *,
    server_flight: tuple[str, ...],
    client_flight: tuple[str, ...],
    client_hs_keys_heading: str,
) -> bytes:
    """Handshake Secret to resumption_master_secret; returns the resumption master secret."""
    derived = derive_secret("sha256", ks.early_secret, b"derived", EMPTY_SHA256)
    assert v('{server}  derive secret for handshake "tls13 derived"', "PRK") == ks.early_secret
    assert derived == v('{server}  derive secret for handshake "tls13 derived"', "expanded")
    ks.enter_handshake(shared_secret)
    assert v('{server}  extract secret "handshake"', "salt") == derived
    assert ks.handshake_secret == v('{server}  extract secret "handshake"', "secret")

    th = t.digest()  # ClientHello...ServerHello
    assert th == v('{server}  derive secret "tls13 c hs traffic"', "hash")
    c_hs = ks.client_handshake_traffic_secret(th)
    s_hs = ks.server_handshake_traffic_secret(th)
    assert c_hs == v('{server}  derive secret "tls13 c hs traffic"', "expanded")
    assert s_hs == v('{server}  derive secret "tls13 s hs traffic"', "expanded")
    _check_keys(v, "{server}  derive write traffic keys for handshake data", s_hs)
    _check_keys(v, client_hs_keys_heading, c_hs)

    assert ks.handshake_secret is not None
    derived = derive_secret("sha256", ks.handshake_secret, b"derived", EMPTY_SHA256)
    assert derived == v('{server}  derive secret for master "tls13 derived"', "expanded")
    ks.enter_master()
    assert v('{server}  extract secret "master"', "salt") == derived
    assert ks.master_secret == v('{server}  extract secret "master"', "secret")

    for name in server_flight:
        t.add(v(f"{{server}}  construct a {name} handshake message", name))
    s_fin = _check_finished(v, ks, SERVER_FINISHED, s_hs, t.digest())
    server_finished = v("{server}  construct a Finished handshake message", "Finished")
    assert server_finished == b"\x14\x00\x00\x20" + s_fin
    t.add(server_finished)

    th = t.digest()  # ClientHello...server Finished
    assert th == v('{server}  derive secret "tls13 c ap traffic"', "hash")
    c_ap = ks.client_application_traffic_secret(th)
    s_ap = ks.server_application_traffic_secret(th)
    assert c_ap == v('{server}  derive secret "tls13 c ap traffic"', "expanded")
    assert s_ap == v('{server}  derive secret "tls13 s ap traffic"', "expanded")
    exp_master = v('{server}  derive secret "tls13 exp master"', "expanded")
    assert ks.exporter_master_secret(th) == exp_master
    _check_keys(v, "{server}  derive write traffic keys for application data", s_ap)
    _check_keys(v, "{client}  derive write traffic keys for application data", c_ap)

    for name in client_flight:
        t.add(v(f"{{client}}  construct a {name} handshake message", name))
    c_fin = _check_finished(v, ks, CLIENT_FINISHED, c_hs, t.digest())
    client_finished = v("{client}  construct a Finished handshake message", "Finished")
    assert client_finished == b"\x14\x00\x00\x20" + c_fin
    t.add(client_finished)

    th = t.digest()  # ClientHello...client Finished
    assert th == v('{client}  derive secret "tls13 res master"', "hash")
    rms = ks.resumption_master_secret(th)
    assert rms == v('{client}  derive secret "tls13 res master"', "expanded")
    return rms


def _x25519_exchange(v: Trace) -> bytes:
    client_priv = v("{client}  create an ephemeral x25519 key pair", "private key")
    server_priv = v("{server}  create an ephemeral x25519 key pair", "private key")
    share = generate_key_share(NamedGroup.x25519, client_priv)
    assert share.public == v("{client}  create an ephemeral x25519 key pair", "public key")
    server_share, server_secret = respond_key_share(NamedGroup.x25519, share.public, server_priv)
    assert server_share == v("{server}  create an ephemeral x25519 key pair", "public key")
    client_secret = share.exchange(server_share)
    assert client_secret == server_secret
    return client_secret


# -- §3 Simple 1-RTT Handshake -----------------------------------------------------------------


def _simple_1rtt() -> bytes:
    v = section(3)
    shared_secret = _x25519_exchange(v)
    assert shared_secret == v('{server}  extract secret "handshake"', "IKM")

    ks = KeySchedule(SUITE)
    assert v('{server}  extract secret "early"', "IKM") == bytes(32)
    assert ks.early_secret == v('{server}  extract secret "early"', "secret")

    t = Transcript()
    t.add(v("{client}  construct a ClientHello handshake message", "ClientHello"))  # buffered
    t.set_hash("sha256")
    t.add(v("{server}  construct a ServerHello handshake message", "ServerHello"))
    return _walk_from_handshake_secret(
        v,
        ks,
        t,
        shared_secret,
        server_flight=("EncryptedExtensions", "Certificate", "CertificateVerify"),
        client_flight=(),
        client_hs_keys_heading="{server}  derive read traffic keys for handshake data",
    )


def _ticket_nonce(new_session_ticket: bytes) -> bytes:
    r = Reader(new_session_ticket)
    assert r.pull_uint8() == 4
    with r.pull_block(3) as body:
        body.pull_uint32()  # ticket_lifetime
        body.pull_uint32()  # ticket_age_add
        nonce = body.pull_opaque(1)
        body.pull_opaque(2)  # ticket
        body.pull_opaque(2)  # extensions
    return nonce


def _resumption_psk_from_section3() -> bytes:
    v = section(3)
    rms = _simple_1rtt()
    heading = '{server}  generate resumption secret "tls13 resumption"'
    assert v(heading, "PRK") == rms
    ticket = v("{server}  construct a NewSessionTicket handshake message", "NewSessionTicket")
    nonce = _ticket_nonce(ticket)
    assert nonce == v(heading, "hash")
    psk = KeySchedule(SUITE).resumption_psk(rms, nonce)
    assert psk == v(heading, "expanded")
    return psk


def test_simple_1rtt_handshake_every_secret() -> None:
    _resumption_psk_from_section3()


# -- §4 Resumed 0-RTT Handshake ------------------------------------------------------------------


def test_resumed_0rtt_psk_binder_and_secrets() -> None:
    psk = _resumption_psk_from_section3()
    v = section(4)
    ks = KeySchedule(SUITE)
    ks.set_psk(psk)
    assert v('{client}  extract secret "early"', "IKM") == psk
    assert ks.early_secret == v('{client}  extract secret "early"', "secret")

    # §4.2.11.2 binder over the ClientHello truncated before the binders list.
    heading = "{client}  calculate PSK binder"
    truncated = v(heading, "ClientHello prefix")
    binder_hash = hashlib.sha256(truncated).digest()
    assert binder_hash == v(heading, "binder hash")
    binder_key = ks.binder_key(external=False)
    assert binder_key == v(heading, "PRK")
    assert ks.binder_key(external=True) != binder_key
    binder = _check_finished(v, ks, heading, binder_key, binder_hash)
    client_hello = v("{client}  send handshake record", "payload")
    assert client_hello == truncated + b"\x00\x21\x20" + binder

    t = Transcript()
    t.set_hash("sha256")
    t.add(client_hello)
    th = t.digest()
    assert th == v('{client}  derive secret "tls13 c e traffic"', "hash")
    c_e = ks.client_early_traffic_secret(th)
    assert c_e == v('{client}  derive secret "tls13 c e traffic"', "expanded")
    early_exp = ks.early_exporter_master_secret(th)
    assert early_exp == v('{client}  derive secret "tls13 e exp master"', "expanded")
    _check_keys(v, "{client}  derive write traffic keys for early application data", c_e)

    shared_secret = _x25519_exchange(v)
    assert shared_secret == v('{server}  extract secret "handshake"', "IKM")
    t.add(v("{server}  construct a ServerHello handshake message", "ServerHello"))
    _walk_from_handshake_secret(
        v,
        ks,
        t,
        shared_secret,
        server_flight=("EncryptedExtensions",),
        client_flight=("EndOfEarlyData",),
        client_hs_keys_heading="{client}  derive write traffic keys for handshake data",
    )


# -- §5 HelloRetryRequest -------------------------------------------------------------------------


def test_hello_retry_request_message_hash_transcript() -> None:
    v = section(5)
    client_hello1 = v("{client}  construct a ClientHello handshake message", "ClientHello", 0)
    hrr = v("{server}  construct a ServerHello handshake message", "ServerHello", 0)
    client_hello2 = v("{client}  construct a ClientHello handshake message", "ClientHello", 1)
    server_hello = v("{server}  construct a ServerHello handshake message", "ServerHello", 1)

    # The retried exchange is on P-256 (uncompressed points, scalar injected big-endian).
    client_priv = v("{client}  create an ephemeral P-256 key pair", "private key")
    server_priv = v("{server}  create an ephemeral P-256 key pair", "private key")
    share = generate_key_share(NamedGroup.secp256r1, client_priv)
    assert share.public == v("{client}  create an ephemeral P-256 key pair", "public key")
    server_share, shared_secret = respond_key_share(NamedGroup.secp256r1, share.public, server_priv)
    assert server_share == v("{server}  create an ephemeral P-256 key pair", "public key")
    assert share.exchange(server_share) == shared_secret
    assert shared_secret == v('{server}  extract secret "handshake"', "IKM")

    t = Transcript()
    t.add(client_hello1)
    t.set_hash("sha256")
    t.restart_with_message_hash()
    synthetic = b"\xfe\x00\x00\x20" + hashlib.sha256(client_hello1).digest()
    assert t.digest() == hashlib.sha256(synthetic).digest()
    t.add(hrr)
    t.add(client_hello2)
    t.add(server_hello)

    ks = KeySchedule(SUITE)
    assert ks.early_secret == v('{server}  extract secret "early"', "secret")
    _walk_from_handshake_secret(
        v,
        ks,
        t,
        shared_secret,
        server_flight=("EncryptedExtensions", "Certificate", "CertificateVerify"),
        client_flight=(),
        client_hs_keys_heading="{server}  derive read traffic keys for handshake data",
    )


def test_hrr_without_message_hash_gives_a_different_secret() -> None:
    # Guard that the §5 test exercises the rule: the plain concatenation does not match.
    v = section(5)
    t = Transcript()
    t.set_hash("sha256")
    t.add(v("{client}  construct a ClientHello handshake message", "ClientHello", 0))
    t.add(v("{server}  construct a ServerHello handshake message", "ServerHello", 0))
    t.add(v("{client}  construct a ClientHello handshake message", "ClientHello", 1))
    t.add(v("{server}  construct a ServerHello handshake message", "ServerHello", 1))
    assert t.digest() != v('{server}  derive secret "tls13 c hs traffic"', "hash")


def test_psk_ke_mode_uses_zero_ikm() -> None:
    ks = KeySchedule(SUITE)
    ks.set_psk(b"\x01" * 32)
    ks.enter_handshake(None)
    salt = derive_secret("sha256", ks.early_secret, b"derived", EMPTY_SHA256)
    assert ks.handshake_secret == hkdf_extract("sha256", salt, bytes(32))


# -- §7.5 exporter against OpenSSL -----------------------------------------------------------------


def _openssl_session(suite_name: str) -> tuple[Any, dict[str, bytes]]:
    """An in-memory TLS 1.3 handshake between two OpenSSL endpoints, with the key log."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import SSL as ssl  # pyOpenSSL is a test dependency

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exporter.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    keylog: dict[str, bytes] = {}

    def log(_conn: Any, line: bytes) -> None:
        label, _client_random, secret = line.split()
        keylog[label.decode()] = bytes.fromhex(secret.decode())

    def endpoint(server: bool) -> Any:
        ctx = ssl.Context(ssl.TLS_METHOD)
        ctx.set_min_proto_version(ssl.TLS1_3_VERSION)
        ctx.set_tls13_ciphersuites(suite_name.encode())
        if server:
            ctx.use_certificate(cert)
            ctx.use_privatekey(key)
        ctx.set_keylog_callback(log)
        conn = ssl.Connection(ctx, None)
        if server:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        return conn

    server, client = endpoint(True), endpoint(False)
    for _ in range(6):
        for a, b in ((client, server), (server, client)):
            with contextlib.suppress(ssl.WantReadError):
                a.do_handshake()
            try:
                while True:
                    b.bio_write(a.bio_read(65536))
            except ssl.WantReadError:
                pass
    return client, keylog


@pytest.mark.parametrize("suite_code", [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384])
def test_exporter_matches_openssl(suite_code: int) -> None:
    suite = CIPHER_SUITES[suite_code]
    client, keylog = _openssl_session(suite.name)
    ks = KeySchedule(suite)
    ems = keylog["EXPORTER_SECRET"]
    assert len(ems) == suite.hash_len
    for label, context in ((b"EXPERIMENTAL tls13 test", b"some context"), (b"EXPERIMENTAL x", b"")):
        expected = client.export_keying_material(label, 42, context)
        assert ks.exporter(ems, label, context, 42) == expected
    # KeyUpdate derivation is not logged by OpenSSL; check §7.2 is a plain expand of the secret.
    c_ap = keylog["CLIENT_TRAFFIC_SECRET_0"]
    assert ks.next_traffic_secret(c_ap) == hkdf_expand_label(
        suite.hash_name, c_ap, b"traffic upd", b"", suite.hash_len
    )
