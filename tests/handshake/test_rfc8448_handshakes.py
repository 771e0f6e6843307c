"""RFC 8448 §3, §5, §6 and §7 replayed through our state machines and TLS connections.

Every message, secret, key, IV and record our client and server produce is compared byte for
byte with the editor's copy of the traces (its values differ from the published RFC 8448, so
all of them are read from the file). Our endpoints get the trace's randoms and ephemeral keys
through ``HandshakeConfig.random_bytes`` / ``key_share_private``.

Where the traces' peers (NSS) do what ours never do, the tests bridge the gap in the open, and
strict-xfail tests show our unbridged output:

* Our server writes ServerHello / HelloRetryRequest / EncryptedExtensions extensions in
  ascending code point order and no ``supported_groups`` in EncryptedExtensions; NSS writes
  (key_share, [cookie,] supported_versions) and (supported_groups, record_size_limit,
  server_name). ``nss_server_layout`` lays our messages out as NSS did.
* NSS's ClientHello carries renegotiation_info, session_ticket, psk_key_exchange_modes and (in
  §5's second ClientHello) padding, in NSS's order. ``TraceClientHandshake`` adds exactly
  these to the extensions our client builds; a test asserts they are the only differences.
* CertificateVerify signatures are randomized (RSA-PSS) or made with keys the trace does not
  publish (§6). ``TraceSigner`` stands in for ``handshake.common.sign``: it verifies the
  trace's signature over the input our endpoint signs (which checks that input byte for byte)
  and returns it.
* §5's cookie is NSS's 116-byte sealed state; our stateful server draws its (opaque) cookie
  from the random source, which hands it the trace's cookie.
* Our server issues no NewSessionTicket: the §3 record test sends the trace's ticket through
  the server connection's record layer so that later record sequence numbers line up.
* Our client connection writes its initial ClientHello record with legacy_record_version
  0x0303 where NSS writes 0x0301 (RFC 8446 §5.1 allows both).

Certificate verification is off (``PeerVerification(enabled=False)``) in these vector tests:
the trace certificates are self-signed test certificates named "rsa", "ecdsa256" and "client"
(not "server"), chain to no CA we could configure, and expired on 2026-07-30. Their
CertificateVerify signatures are still checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from rfc8448_trace import find_blocks, hex_block, server_rsa_private_key

import handshake.common
import handshake.server
from handshake.actions import (
    Action,
    HandshakeFinished,
    InstallKeys,
    LogSecret,
    SendChangeCipherSpec,
    SendMessage,
)
from handshake.alerts import AlertDescription, HandshakeError
from handshake.cipher_suites import TLS_AES_128_GCM_SHA256
from handshake.client import ClientHandshake, ClientState
from handshake.config import Credential, HandshakeConfig, PeerVerification
from handshake.groups import NamedGroup
from handshake.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Extensions,
    ExtensionType,
    HandshakeMessage,
    HandshakeType,
    ServerHello,
    decode_message,
    encode_message,
)
from handshake.server import ServerHandshake, ServerState
from handshake.signatures import SignatureScheme, certificate_verify_input, sign, verify
from protocol.config import ClientConfig, ServerConfig
from protocol.connection.tls import TLSClientConnection, TLSConnection, TLSServerConnection
from protocol.events import (
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    SessionTicketReceived,
)

SECTIONS = ("3", "5", "6", "7")
NOW = 1_500_000_000.0  # 2017-07-14: inside the trace certificates' validity
M = TypeVar("M", bound=HandshakeMessage)

# -- reading the trace ----------------------------------------------------------------------------


def decode(raw: bytes) -> HandshakeMessage:
    assert int.from_bytes(raw[1:4], "big") == len(raw) - 4
    return decode_message(raw[0], raw[4:], hash_len=32)


def decode_as(cls: type[M], raw: bytes) -> M:
    message = decode(raw)
    assert isinstance(message, cls)
    return message


@dataclass(frozen=True)
class Keys:
    """One "derive ... traffic keys" step of the trace: the secret it expands, key and IV."""

    secret: bytes
    key: bytes
    iv: bytes


@dataclass(frozen=True)
class Record:
    """One "send ... record" step: who sends it, its content type, payload and wire bytes."""

    who: str  # "client" | "server"
    kind: str  # "handshake" | "change_cipher_spec" | "application_data" | "alert"
    payload: bytes
    wire: bytes


@dataclass(frozen=True)
class Trace:
    """What one section's handshake needs, read from the trace file."""

    section: str
    client_hellos: tuple[bytes, ...]  # ClientHello1 (, ClientHello2 after HelloRetryRequest)
    hello_retry: bytes | None
    server_flight: tuple[bytes, ...]  # ServerHello, EE, [CertificateRequest,] Cert, CV, Finished
    client_flight: tuple[bytes, ...]  # [Certificate, CertificateVerify,] Finished
    client_private_keys: tuple[bytes, ...]  # ephemeral keys in the order they are made
    server_private_keys: tuple[bytes, ...]
    server_hs: Keys  # server handshake write keys = client handshake read keys
    client_hs: Keys
    server_ap: Keys
    client_ap: Keys
    exporter_master: bytes
    resumption_master: bytes
    records: tuple[Record, ...]

    @property
    def client_hello(self) -> ClientHello:
        return decode_as(ClientHello, self.client_hellos[0])

    @property
    def server_hello(self) -> ServerHello:
        return decode_as(ServerHello, self.server_flight[0])

    @property
    def encrypted_extensions(self) -> Extensions:
        return decode_as(EncryptedExtensions, self.server_flight[1]).extensions

    @property
    def certificate_request(self) -> CertificateRequest | None:
        message = decode(self.server_flight[2])
        return message if isinstance(message, CertificateRequest) else None

    @property
    def compatibility_mode(self) -> bool:
        return bool(self.client_hello.legacy_session_id)

    def server_message(self, msg_type: int) -> bytes:
        return next(m for m in self.server_flight if m[0] == msg_type)

    def client_message(self, msg_type: int) -> bytes:
        return next(m for m in self.client_flight if m[0] == msg_type)


def _constructed(section: str, who: str) -> list[bytes]:
    """The handshake messages ``who`` constructs in ``section``, in trace order."""
    return [b.data for b in find_blocks(section, f"{{{who}}}  construct a ")]


def _private_keys(section: str, who: str) -> tuple[bytes, ...]:
    blocks = find_blocks(section, f"{{{who}}}  create an ephemeral")
    return tuple(b.data for b in blocks if b.label.startswith("private key"))


def _secret(section: str, label: str, who: str = "server") -> bytes:
    return hex_block(section, f'{{{who}}}  derive secret "{label}" | expanded')


def _traffic_keys(section: str, who: str, direction: str, phase: str) -> Keys:
    heading = f"{{{who}}}  derive {direction} traffic keys for {phase} data | "
    return Keys(
        hex_block(section, heading + "PRK"),
        hex_block(section, heading + "key expanded"),
        hex_block(section, heading + "iv expanded"),
    )


def _records(section: str) -> tuple[Record, ...]:
    blocks = [b for b in find_blocks(section, " record | ") if b.action.split()[1] == "send"]
    records = []
    for payload, wire in zip(blocks[::2], blocks[1::2], strict=True):
        assert payload.label.startswith("payload") and wire.label.startswith("complete record")
        assert payload.action == wire.action
        who, kind = payload.action[1:7], payload.action.split()[2]
        records.append(Record(who, kind, payload.data, wire.data))
    return tuple(records)


@cache
def load(section: str) -> Trace:
    server_messages = _constructed(section, "server")
    hellos = [m for m in server_messages if m[0] == HandshakeType.server_hello]
    hello_retry = hellos[0] if len(hellos) == 2 else None
    client_messages = _constructed(section, "client")
    trace = Trace(
        section=section,
        client_hellos=tuple(m for m in client_messages if m[0] == HandshakeType.client_hello),
        hello_retry=hello_retry,
        server_flight=tuple(
            m
            for m in server_messages
            if m is not hello_retry and m[0] != HandshakeType.new_session_ticket
        ),
        client_flight=tuple(m for m in client_messages if m[0] != HandshakeType.client_hello),
        client_private_keys=_private_keys(section, "client"),
        server_private_keys=_private_keys(section, "server"),
        server_hs=_traffic_keys(section, "server", "write", "handshake"),
        client_hs=_traffic_keys(section, "server", "read", "handshake"),
        server_ap=_traffic_keys(section, "server", "write", "application"),
        # The server's application read keys are "same as client application data write".
        client_ap=_traffic_keys(section, "client", "write", "application"),
        exporter_master=_secret(section, "tls13 exp master"),
        resumption_master=_secret(section, "tls13 res master", who="client"),
        records=_records(section),
    )
    # The keys are expanded from the secrets the trace derives under those names.
    assert trace.server_hs.secret == _secret(section, "tls13 s hs traffic")
    assert trace.client_hs.secret == _secret(section, "tls13 c hs traffic")
    assert trace.server_ap.secret == _secret(section, "tls13 s ap traffic")
    assert trace.client_ap.secret == _secret(section, "tls13 c ap traffic")
    return trace


def test_trace_sections_read_completely() -> None:
    # A reader slip must not silently shrink what the tests below compare.
    shape = {
        s: (
            len(t.client_hellos),
            t.hello_retry is not None,
            [HandshakeType(m[0]).name for m in t.server_flight],
            [HandshakeType(m[0]).name for m in t.client_flight],
            len(t.client_private_keys),
            len(t.server_private_keys),
            [(r.who[0], r.kind) for r in t.records],
        )
        for s, t in ((s, load(s)) for s in SECTIONS)
    }
    flight = ["server_hello", "encrypted_extensions", "certificate", "certificate_verify"]
    hs, ccs, app, alert = "handshake", "change_cipher_spec", "application_data", "alert"
    close = [("c", alert), ("s", alert)]
    app_and_close = [("c", app), ("s", app), *close]
    assert shape == {
        "3": (
            1,
            False,
            [*flight, "finished"],
            ["finished"],
            1,
            1,
            [("c", hs), ("s", hs), ("s", hs), ("c", hs), ("s", hs), *app_and_close],
        ),
        "5": (
            2,
            True,
            [*flight, "finished"],
            ["finished"],
            2,
            1,
            [("c", hs), ("s", hs), ("c", hs), ("s", hs), ("s", hs), ("c", hs), *close],
        ),
        "6": (
            1,
            False,
            [*flight[:2], "certificate_request", *flight[2:], "finished"],
            ["certificate", "certificate_verify", "finished"],
            1,
            1,
            [("c", hs), ("s", hs), ("s", hs), ("c", hs), *close],
        ),
        "7": (
            1,
            False,
            [*flight, "finished"],
            ["finished"],
            1,
            1,
            [("c", hs), ("s", hs), ("s", ccs), ("s", hs), ("c", ccs), ("c", hs), *close],
        ),
    }


# -- credentials and signatures -------------------------------------------------------------------


def _leaf(certificate_message: bytes) -> x509.Certificate:
    entries = decode_as(Certificate, certificate_message).entries
    assert len(entries) == 1
    return x509.load_der_x509_certificate(entries[0].cert_data)


@cache
def _stand_in_key(kind: str, bits: int) -> CertificateIssuerPrivateKeyTypes:
    # §6: "private keys for the certificates used in this example are not shown". A key of the
    # certificate's type and size selects the same signature scheme; the signature itself
    # comes from the trace (TraceSigner).
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def credential(section: str, who: str) -> Credential:
    t = load(section)
    message = t.server_message if who == "server" else t.client_message
    leaf = _leaf(message(HandshakeType.certificate))
    public = leaf.public_key()
    key: CertificateIssuerPrivateKeyTypes
    if isinstance(public, ec.EllipticCurvePublicKey):
        key = _stand_in_key("ec", public.key_size)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        published = server_rsa_private_key()
        if public.public_numbers() == published.public_key().public_numbers():
            key = published
        else:
            key = _stand_in_key("rsa", public.key_size)
    # Every key but §2's is a stand-in, and only in §6.
    assert (key is server_rsa_private_key()) == (section != "6")
    return Credential(chain=(leaf.public_bytes(Encoding.DER),), private_key=key)


class TraceSigner:
    """Replaces ``handshake.common.sign``: CertificateVerify carries the trace's signature.

    Before handing it out, the trace's signature is verified (by our ``verify``, with the
    certificate's key) over the data our endpoint asked to sign: that checks our
    CertificateVerify input, hence our transcript up to the Certificate, byte for byte.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._expected: dict[int, tuple[Credential, CertificateVerify]] = {}
        self.signed: list[int] = []
        monkeypatch.setattr(handshake.common, "sign", self)

    def expect(self, credential: Credential, certificate_verify: bytes) -> None:
        cv = decode_as(CertificateVerify, certificate_verify)
        self._expected[id(credential.private_key)] = (credential, cv)

    def __call__(
        self, private_key: PrivateKeyTypes, scheme: int, data: bytes, *, rsassa_pss_key: bool
    ) -> bytes:
        credential, cv = self._expected[id(private_key)]
        assert scheme == cv.algorithm
        assert not rsassa_pss_key and not credential.rsassa_pss  # rsaEncryption keys only
        public_key = x509.load_der_x509_certificate(credential.chain[0]).public_key()
        verify(public_key, scheme, data, cv.signature)  # type: ignore[arg-type]
        self.signed.append(scheme)
        return cv.signature


def test_section2_rsa_key_is_the_rsa_certificate_key() -> None:
    key = server_rsa_private_key()
    numbers = key.private_numbers()
    # The trace's CRT values are those computed from its primes and private exponent.
    assert numbers.dmp1 == rsa.rsa_crt_dmp1(numbers.d, numbers.p)
    assert numbers.dmq1 == rsa.rsa_crt_dmq1(numbers.d, numbers.q)
    assert numbers.iqmp == rsa.rsa_crt_iqmp(numbers.p, numbers.q)
    for section in ("3", "5", "7"):
        public = _leaf(load(section).server_message(HandshakeType.certificate)).public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.public_numbers() == key.public_key().public_numbers()
    # It really signs what our verify() accepts (RSA-PSS is randomized: the trace's bytes
    # cannot be reproduced, hence TraceSigner).
    data = certificate_verify_input(True, bytes(32))
    scheme = SignatureScheme.rsa_pss_rsae_sha256
    verify(key.public_key(), scheme, data, sign(key, scheme, data))


# -- injected randomness --------------------------------------------------------------------------


class Draws:
    """``HandshakeConfig.random_bytes`` handing out the trace's values in order."""

    def __init__(self, *values: bytes) -> None:
        self._values = list(values)

    def __call__(self, n: int) -> bytes:
        # Our endpoints only draw 32-byte values (randoms, session id, HRR cookie). §5's cookie
        # is NSS's 116-byte sealed state; our stateful server only ever compares it.
        assert n == 32, n
        assert self._values, "more random draws than the trace has values"
        return self._values.pop(0)

    def drained(self) -> bool:
        return not self._values


# -- our endpoints, configured as the trace's -----------------------------------------------------


def server_config(t: Trace, draws: Draws, **overrides: Any) -> HandshakeConfig:
    settings: dict[str, Any] = {
        "cipher_suites": (TLS_AES_128_GCM_SHA256,),
        # §5's NSS server prefers P-256 enough to ask for it although the client sent an
        # x25519 share; ours takes any acceptable share it has, so §5 leaves x25519 out.
        "groups": (NamedGroup.secp256r1, NamedGroup.secp384r1)
        if t.hello_retry is not None
        else (NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1),
        "credentials": (credential(t.section, "server"),),
        "verification": PeerVerification(enabled=False),
        "tls_cookie": t.hello_retry is not None,
        "random_bytes": draws,
        "key_share_private": t.server_private_keys,
    }
    cr = t.certificate_request
    if cr is not None:
        # Our CertificateRequest lists our signature_schemes: §6's lists NSS's.
        settings["request_client_certificate"] = True
        settings["signature_schemes"] = cr.extensions.signature_algorithms
    settings.update(overrides)
    return HandshakeConfig(**settings)


def server_draws(t: Trace) -> Draws:
    values = [t.server_hello.random]
    if t.hello_retry is not None:
        cookie = decode_as(ServerHello, t.hello_retry).extensions.cookie
        assert cookie is not None
        values.insert(0, cookie)
    return Draws(*values)


def nss_server_layout(monkeypatch: pytest.MonkeyPatch, t: Trace) -> None:
    """Lay out our server's ServerHello, HelloRetryRequest and EncryptedExtensions as NSS did.

    Only the extension order changes, and EncryptedExtensions gets NSS's supported_groups
    list; everything else in these messages is what our server built (and is compared).
    """
    orders = {False: t.server_hello.extensions.order}
    if t.hello_retry is not None:
        orders[True] = decode_as(ServerHello, t.hello_retry).extensions.order
    nss_ee = t.encrypted_extensions
    real_encode = handshake.server.encode_message

    def encode(message: HandshakeMessage, *, dtls: bool = False) -> bytes:
        if isinstance(message, ServerHello):
            order = orders[message.is_hello_retry_request]
            message = replace(message, extensions=replace(message.extensions, order=order))
        elif isinstance(message, EncryptedExtensions):
            ext = message.extensions
            if ext.supported_groups is None:
                ext = replace(ext, supported_groups=nss_ee.supported_groups)
            message = replace(message, extensions=replace(ext, order=nss_ee.order))
        return real_encode(message, dtls=dtls)

    monkeypatch.setattr(handshake.server, "encode_message", encode)


class TraceClientHandshake(ClientHandshake):
    """Our client, adding to its ClientHello extensions what NSS's also carried.

    Only fields our client never sets are taken from the trace, plus the wire order
    (test_client_hello_differs_only_by_nss_extras pins the difference down).
    """

    def __init__(self, config: HandshakeConfig, trace_hellos: Sequence[bytes]) -> None:
        super().__init__(config)
        self._nss = [decode_as(ClientHello, raw).extensions for raw in trace_hellos]

    def _hello_extensions(self, cookie: bytes | None) -> Extensions:
        ours = super()._hello_extensions(cookie)
        nss = self._nss.pop(0)
        return replace(
            ours,
            psk_key_exchange_modes=nss.psk_key_exchange_modes,
            padding=nss.padding,
            unknown=nss.unknown,
            order=nss.order,
        )


def client_config(t: Trace, draws: Draws) -> HandshakeConfig:
    hello = t.client_hello
    ext = hello.extensions
    assert ext.supported_groups is not None and ext.signature_algorithms is not None
    return HandshakeConfig(
        cipher_suites=hello.cipher_suites,
        groups=ext.supported_groups,  # NSS also lists ffdhe groups; we send shares for x25519
        signature_schemes=ext.signature_algorithms,
        server_name=ext.server_name,
        record_size_limit=ext.record_size_limit,
        compatibility_mode=t.compatibility_mode,
        credentials=(credential(t.section, "client"),) if t.section == "6" else (),
        verification=PeerVerification(enabled=False),
        random_bytes=draws,
        key_share_private=t.client_private_keys,
    )


def client_draws(t: Trace) -> Draws:
    hello = t.client_hello
    # ClientHandshake.start draws the legacy_session_id (compatibility mode) before the random.
    return Draws(*([hello.legacy_session_id] if t.compatibility_mode else []), hello.random)


# -- comparing actions ----------------------------------------------------------------------------


def describe(actions: Sequence[Action]) -> list[tuple[Any, ...]]:
    """Actions as comparable tuples (bytes as hex, so a mismatch shows readably)."""
    out: list[tuple[Any, ...]] = []
    for a in actions:
        if isinstance(a, SendMessage):
            out.append(("send", a.epoch, HandshakeType(a.data[0]).name, a.data.hex()))
        elif isinstance(a, SendChangeCipherSpec):
            out.append(("ccs",))
        elif isinstance(a, InstallKeys):
            keys = (a.secret.hex(), a.keys.key.hex(), a.keys.iv.hex(), a.keys.sn_key)
            out.append(("keys", a.direction, a.epoch, a.suite.code, a.log_label, *keys))
        elif isinstance(a, LogSecret):
            out.append(("log", a.label, a.secret.hex()))
        elif isinstance(a, HandshakeFinished):
            out.append(("finished",))
        else:
            out.append((type(a).__name__,))
    return out


def send(epoch: int, message: bytes) -> tuple[Any, ...]:
    return ("send", epoch, HandshakeType(message[0]).name, message.hex())


def install(direction: str, epoch: int, label: str, keys: Keys) -> tuple[Any, ...]:
    return (
        "keys",
        direction,
        epoch,
        TLS_AES_128_GCM_SHA256,
        label,
        keys.secret.hex(),
        keys.key.hex(),
        keys.iv.hex(),
        None,
    )


# -- server side ----------------------------------------------------------------------------------


@pytest.mark.parametrize("section", SECTIONS)
def test_server_reproduces_trace(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = load(section)
    signer = TraceSigner(monkeypatch)
    signer.expect(credential(section, "server"), t.server_message(HandshakeType.certificate_verify))
    nss_server_layout(monkeypatch, t)
    draws = server_draws(t)
    server = ServerHandshake(server_config(t, draws))

    if t.hello_retry is not None:
        actions = server.handle(t.client_hellos[0], NOW)
        assert describe(actions) == [send(0, t.hello_retry)]
        assert server.state is ServerState.WAIT_SECOND_CLIENT_HELLO

    actions = server.handle(t.client_hellos[-1], NOW)
    sh, *encrypted = t.server_flight
    assert describe(actions) == [
        send(0, sh),
        *([("ccs",)] if t.compatibility_mode else []),  # RFC 8446 §D.4
        install("write", 2, "SERVER_HANDSHAKE_TRAFFIC_SECRET", t.server_hs),
        install("read", 2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", t.client_hs),
        *(send(2, m) for m in encrypted),
        install("write", 3, "SERVER_TRAFFIC_SECRET_0", t.server_ap),
        ("log", "EXPORTER_SECRET", t.exporter_master.hex()),
    ]
    assert signer.signed == [decode_as(CertificateVerify, encrypted[-2]).algorithm]

    *client_auth, client_finished = t.client_flight
    for message in client_auth:  # §6: the client's Certificate and CertificateVerify
        assert server.handle(message, NOW) == []
    actions = server.handle(client_finished, NOW)
    assert describe(actions) == [
        install("read", 3, "CLIENT_TRAFFIC_SECRET_0", t.client_ap),
        ("finished",),
    ]
    assert server.state is ServerState.CONNECTED
    assert server.exporter_master_secret == t.exporter_master
    assert server.resumption_master_secret == t.resumption_master
    assert draws.drained()

    params = server.parameters
    assert params is not None
    assert params.group == t.server_hello.extensions.key_share_entry.group  # type: ignore[union-attr]
    assert params.hello_retry is (t.hello_retry is not None)
    assert params.server_name == "server"
    assert params.client_authenticated is (section == "6")
    if section == "6":
        assert [c.public_bytes(Encoding.DER) for c in params.peer_certificates] == list(
            credential(section, "client").chain
        )


@pytest.mark.parametrize("section", SECTIONS)
def test_server_rejects_altered_client_finished(
    section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Finished check above must be able to fail: one flipped bit is a decrypt_error.
    t = load(section)
    TraceSigner(monkeypatch).expect(
        credential(section, "server"), t.server_message(HandshakeType.certificate_verify)
    )
    nss_server_layout(monkeypatch, t)
    server = ServerHandshake(server_config(t, server_draws(t)))
    for hello in t.client_hellos:
        server.handle(hello, NOW)
    *client_auth, client_finished = t.client_flight
    for message in client_auth:
        server.handle(message, NOW)
    altered = client_finished[:-1] + bytes([client_finished[-1] ^ 1])
    with pytest.raises(HandshakeError) as info:
        server.handle(altered, NOW)
    assert info.value.alert is AlertDescription.decrypt_error


def _unbridged_server(section: str) -> list[bytes]:
    """Our server's first-flight messages with no NSS layout applied (its CertificateVerify is
    really signed: randomized, and not compared here)."""
    t = load(section)
    # The proposed HandshakeConfig.advertised_groups (see the report), once it exists.
    fields = {f.name for f in dataclasses.fields(HandshakeConfig)}
    extra = (
        {"advertised_groups": t.encrypted_extensions.supported_groups}
        if "advertised_groups" in fields
        else {}
    )
    server = ServerHandshake(server_config(t, server_draws(t), **extra))
    sent = []
    for hello in t.client_hellos:
        sent += [a.data for a in server.handle(hello, NOW) if isinstance(a, SendMessage)]
    return sent


@pytest.mark.parametrize("section", SECTIONS)
def test_server_hello_extension_order_unbridged(section: str) -> None:
    t = load(section)
    sent = _unbridged_server(section)
    hellos = [m for m in sent if m[0] == HandshakeType.server_hello]
    expected = [t.hello_retry] if t.hello_retry is not None else []
    assert [m.hex() for m in hellos] == [m.hex() for m in [*expected, t.server_flight[0]]]


@pytest.mark.parametrize("section", SECTIONS)
def test_encrypted_extensions_unbridged(section: str) -> None:
    t = load(section)
    sent = _unbridged_server(section)
    ee = next(m for m in sent if m[0] == HandshakeType.encrypted_extensions)
    assert ee.hex() == t.server_flight[1].hex()


@pytest.mark.parametrize("section", SECTIONS)
def test_encrypted_extensions_differ_only_by_supported_groups_and_order(section: str) -> None:
    # Pins down what nss_server_layout bridges: without it, our EncryptedExtensions carry the
    # same server_name acknowledgement and record_size_limit (RFC 8449: 2^14 + 1) as NSS's.
    t = load(section)
    sent = _unbridged_server(section)
    ours = decode_as(
        EncryptedExtensions, next(m for m in sent if m[0] == HandshakeType.encrypted_extensions)
    ).extensions
    nss = t.encrypted_extensions
    assert replace(ours, supported_groups=None, order=()) == replace(
        nss, supported_groups=None, order=()
    )
    assert nss.order == (
        ExtensionType.supported_groups,
        ExtensionType.record_size_limit,
        ExtensionType.server_name,
    )


# -- client side ----------------------------------------------------------------------------------


@pytest.mark.parametrize("section", SECTIONS)
def test_client_reproduces_trace(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = load(section)
    signer = TraceSigner(monkeypatch)
    if section == "6":
        signer.expect(
            credential(section, "client"), t.client_message(HandshakeType.certificate_verify)
        )
    draws = client_draws(t)
    client = TraceClientHandshake(client_config(t, draws), t.client_hellos)

    assert describe(client.start(NOW)) == [send(0, t.client_hellos[0])]
    if t.hello_retry is not None:
        assert describe(client.handle(t.hello_retry, NOW)) == [send(0, t.client_hellos[1])]

    sh, *encrypted = t.server_flight
    assert describe(client.handle(sh, NOW)) == [
        install("read", 2, "SERVER_HANDSHAKE_TRAFFIC_SECRET", t.server_hs),
        *([("ccs",)] if t.compatibility_mode else []),  # RFC 8446 §D.4
        install("write", 2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", t.client_hs),
    ]
    *before_finished, server_finished = encrypted
    for message in before_finished:
        # The server's CertificateVerify is verified for real against the trace certificate.
        assert client.handle(message, NOW) == []
    actions = client.handle(server_finished, NOW)
    assert describe(actions) == [
        install("read", 3, "SERVER_TRAFFIC_SECRET_0", t.server_ap),
        ("log", "EXPORTER_SECRET", t.exporter_master.hex()),
        *(send(2, m) for m in t.client_flight),
        install("write", 3, "CLIENT_TRAFFIC_SECRET_0", t.client_ap),
        ("finished",),
    ]
    assert signer.signed == ([SignatureScheme.rsa_pss_rsae_sha256] if section == "6" else [])
    assert client.state is ClientState.CONNECTED
    assert client.exporter_master_secret == t.exporter_master
    assert client.resumption_master_secret == t.resumption_master
    assert draws.drained()

    params = client.parameters
    assert params is not None
    cv = decode_as(CertificateVerify, t.server_message(HandshakeType.certificate_verify))
    assert params.signature_scheme == cv.algorithm
    assert params.hello_retry is (t.hello_retry is not None)
    assert params.client_authenticated is (section == "6")
    assert params.peer_record_size_limit == 2**14 + 1


@pytest.mark.parametrize("section", SECTIONS)
def test_client_rejects_altered_server_signature(section: str) -> None:
    # The real CertificateVerify check above must be able to fail.
    t = load(section)
    client = TraceClientHandshake(client_config(t, client_draws(t)), t.client_hellos)
    client.start(NOW)
    if t.hello_retry is not None:
        client.handle(t.hello_retry, NOW)
    *before_cv, cv, _ = t.server_flight
    for message in before_cv:
        client.handle(message, NOW)
    original = decode_as(CertificateVerify, cv)
    sig = original.signature
    altered = encode_message(replace(original, signature=sig[:-1] + bytes([sig[-1] ^ 1])))
    with pytest.raises(HandshakeError) as info:
        client.handle(altered, NOW)
    assert info.value.alert is AlertDescription.decrypt_error


@pytest.mark.parametrize("section", SECTIONS)
def test_client_hello_differs_only_by_nss_extras(section: str) -> None:
    # What TraceClientHandshake adds: with NSS's extras removed and the order ignored, the
    # trace's ClientHellos are exactly the ones our own client builds.
    t = load(section)
    client = ClientHandshake(client_config(t, client_draws(t)))
    ours = [a.data for a in client.start(NOW) if isinstance(a, SendMessage)]
    if t.hello_retry is not None:
        ours += [a.data for a in client.handle(t.hello_retry, NOW) if isinstance(a, SendMessage)]
    assert len(ours) == len(t.client_hellos)
    for index, (raw, nss_raw) in enumerate(zip(ours, t.client_hellos, strict=True)):
        mine, nss = decode_as(ClientHello, raw), decode_as(ClientHello, nss_raw)
        extras = nss.extensions
        # psk_dhe_ke though no PSK is offered: NSS and we both always send it.
        assert extras.psk_key_exchange_modes == (1,)
        assert [code for code, _ in extras.unknown] == (
            [0xFF01, 35] if section == "3" else [0xFF01]  # renegotiation_info, session_ticket
        )
        # NSS pads its second ClientHello (§5) to 512 bytes.
        assert (extras.padding is not None) == (index == 1)
        assert index == 0 or len(nss_raw) == 512
        stripped = replace(extras, padding=None, unknown=(), order=())
        assert replace(mine.extensions, order=()) == stripped
        assert replace(mine, extensions=stripped) == replace(nss, extensions=stripped)


# -- records through protocol/connection/tls ------------------------------------------------------


class Wire:
    """Bytes a connection produced, consumed record by record against the trace."""

    def __init__(self, connection: TLSConnection) -> None:
        self.connection = connection
        self.pending = b""

    def expect(self, record: bytes, *, any_legacy_version: bool = False) -> None:
        self.pending += self.connection.data_to_send()
        got, self.pending = self.pending[: len(record)], self.pending[len(record) :]
        if any_legacy_version:
            # The initial ClientHello: our connection writes legacy_record_version 0x0303,
            # NSS 0x0301 (both allowed, RFC 8446 §5.1; see the strict xfail test).
            assert got[1:3] in (b"\x03\x01", b"\x03\x03")
            got, record = got[:1] + got[3:], record[:1] + record[3:]
        assert got.hex() == record.hex()


def server_connection(t: Trace) -> TLSServerConnection:
    connection = TLSServerConnection(ServerConfig(credentials=(credential(t.section, "server"),)))
    # The test-only path to the trace's randoms and keys: swap in the configured handshake.
    connection._hs = ServerHandshake(server_config(t, server_draws(t)))
    return connection


def client_connection(t: Trace) -> TLSClientConnection:
    connection = TLSClientConnection(
        ClientConfig(server_name="server", dangerously_skip_certificate_verification=True)
    )
    hs = TraceClientHandshake(client_config(t, client_draws(t)), t.client_hellos)
    connection._hs = connection._client_hs = hs
    return connection


def _prepare(monkeypatch: pytest.MonkeyPatch, t: Trace) -> None:
    signer = TraceSigner(monkeypatch)
    cv = HandshakeType.certificate_verify
    signer.expect(credential(t.section, "server"), t.server_message(cv))
    if t.section == "6":
        signer.expect(credential(t.section, "client"), t.client_message(cv))
    nss_server_layout(monkeypatch, t)


@pytest.mark.parametrize("section", SECTIONS)
def test_server_connection_records(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = load(section)
    _prepare(monkeypatch, t)
    connection = server_connection(t)
    wire = Wire(connection)
    events: list[Event] = []
    for record in t.records:
        if record.who == "client":
            events += connection.receive_data(record.wire, NOW)
            continue
        if record.kind == "application_data":
            connection.send_data(record.payload)
        elif record.kind == "handshake" and connection.handshake_complete:
            # §3's NewSessionTicket: our server issues none. Its bytes go through our record
            # layer (application keys, sequence number 0) like any post-handshake message.
            assert record.payload[0] == HandshakeType.new_session_ticket
            connection._queue_handshake(record.payload)
        # The close_notify answer, the CCS and the flights come out by themselves.
        wire.expect(record.wire)
    assert wire.pending + connection.data_to_send() == b""
    client_data = [
        r.payload for r in t.records if r.who == "client" and r.kind == "application_data"
    ]
    assert [type(e) for e in events] == [
        HandshakeComplete,
        *(ApplicationData for _ in client_data),
        ConnectionClosed,
    ]
    assert [e.data for e in events if isinstance(e, ApplicationData)] == client_data
    assert connection.state == "closed"


@pytest.mark.parametrize("section", SECTIONS)
def test_client_connection_records(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = load(section)
    _prepare(monkeypatch, t)
    connection = client_connection(t)
    wire = Wire(connection)
    events: list[Event] = []
    for index, record in enumerate(t.records):
        if record.who == "server":
            events += connection.receive_data(record.wire, NOW)
            continue
        if record.kind == "application_data":
            connection.send_data(record.payload)
        elif record.kind == "alert":
            assert record.payload == b"\x01\x00"  # warning close_notify
            connection.close()
        wire.expect(record.wire, any_legacy_version=index == 0)
    assert wire.pending + connection.data_to_send() == b""
    server_data = [
        r.payload for r in t.records if r.who == "server" and r.kind == "application_data"
    ]
    nst = HandshakeType.new_session_ticket
    tickets = [r for r in t.records if r.kind == "handshake" and r.payload[0] == nst]
    assert [type(e) for e in events] == [
        HandshakeComplete,
        # §3's NewSessionTicket becomes a session the application can keep.
        *(SessionTicketReceived for _ in tickets),
        *(ApplicationData for _ in server_data),
        ConnectionClosed,
    ]
    assert [e.data for e in events if isinstance(e, ApplicationData)] == server_data
    assert connection.state == "closed"


@pytest.mark.parametrize("section", SECTIONS)
def test_initial_client_hello_record_unbridged(section: str) -> None:
    t = load(section)
    first = t.records[0]
    assert first.who == "client" and first.payload == t.client_hellos[0]
    assert client_connection(t).data_to_send().hex() == first.wire.hex()
