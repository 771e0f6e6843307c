"""The client handshake state machine (RFC 8446 §2, §4; the same machine drives DTLS 1.3).

States follow RFC 8446 Appendix A.1. Each state accepts exactly the messages listed in
``_EXPECTED``; anything else is an unexpected_message. Input is one whole handshake message at
a time; output is a list of actions (messages to send, keys to install, completion).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import time
from enum import Enum
from typing import Literal

from cryptography import x509

from .actions import (
    Action,
    ConnectionIdNegotiated,
    EarlyDataDecision,
    Epoch,
    HandshakeFinished,
    InstallKeys,
    LogSecret,
    NegotiatedParameters,
    NewSession,
    SendChangeCipherSpec,
    SendMessage,
)
from .alerts import AlertDescription, HandshakeError
from .certificates import parse_certificate_chain, verify_server_certificate
from .cipher_suites import CIPHER_SUITES, CipherSuite
from .common import (
    InjectedKeys,
    certificate_message,
    certificate_verify_message,
    check_certificate_verify,
    check_finished,
    finished_message,
    install,
    legacy_version_for,
    parse_message,
    random_source,
    unexpected,
    version_for,
)
from .config import HandshakeConfig
from .entry_extensions import refuse_unsolicited_entry_extensions
from .groups import KeyShare, generate_key_share
from .key_schedule import KeySchedule
from .key_update import ApplicationKeys
from .messages import (
    DOWNGRADE_TLS11,
    DOWNGRADE_TLS12,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Extensions,
    Finished,
    HandshakeMessage,
    KeyShareEntry,
    KeyUpdate,
    NewSessionTicket,
    OfferedPsks,
    PskIdentity,
    ServerHello,
    encode_message,
)
from .post_handshake_auth import answer_request, pick_client_credential
from .psk import (
    MAX_TICKET_LIFETIME,
    PSK_DHE_KE,
    PSK_KE,
    PSK_MODE_NAMES,
    OfferedPsk,
    Session,
    binder_transcript_hash,
    binders_length,
    compute_binder,
    fill_binders,
    placeholder_binders,
)
from .transcript import Transcript, message_hash_message

EarlyDataStatus = Literal["accepted", "rejected", "not_sent"]


class ClientState(Enum):
    START = "START"
    WAIT_SERVER_HELLO = "WAIT_SH"
    WAIT_ENCRYPTED_EXTENSIONS = "WAIT_EE"
    WAIT_CERTIFICATE_OR_REQUEST = "WAIT_CERT_CR"
    WAIT_CERTIFICATE = "WAIT_CERT"
    WAIT_CERTIFICATE_VERIFY = "WAIT_CV"
    WAIT_FINISHED = "WAIT_FINISHED"
    CONNECTED = "CONNECTED"
    FAILED = "FAILED"


class ClientHandshake:
    """One client handshake and, after it, the post-handshake messages of the connection."""

    def __init__(self, config: HandshakeConfig) -> None:
        self.config = config
        self.dtls = config.dtls
        self.state = ClientState.START
        self._random = random_source(config)
        self._injected = InjectedKeys(config.key_share_private)
        self._transcript = Transcript()
        self._suite: CipherSuite | None = None
        self._schedule: KeySchedule | None = None
        self._shares: dict[int, KeyShare] = {}
        self._client_hello: ClientHello | None = None
        self._hello_retry = False
        self._group: int | None = None
        self._server_hs_secret = b""
        self._client_hs_secret = b""
        self._client_app_secret = b""
        self._server_app_secret = b""
        self._sent_ccs = False
        self._encrypted_extensions: Extensions | None = None
        self._certificate_request: CertificateRequest | None = None
        self._peer_chain: list[x509.Certificate] = []
        self._signature_scheme: int | None = None
        self._now = 0.0
        self.parameters: NegotiatedParameters | None = None
        self.exporter_master_secret = b""
        self.resumption_master_secret = b""
        self.application_keys: ApplicationKeys | None = None
        self._client_certificate_sent = False
        # RFC 8446 §4.2.11: the PSKs of the current ClientHello, in identity order.
        self._offers: tuple[OfferedPsk, ...] = ()
        self._psk: OfferedPsk | None = None  # the one the server selected
        self._selected_identity: int | None = None
        self._psk_mode: int | None = None
        # §4.2.11.2: what precedes Truncate(ClientHello2) in its binders' transcript
        self._binder_prefix = b""
        self._first_hello_raw = b""
        self._early_in_hello = False  # early_data in the ClientHello now outstanding
        self.early_data_offered = False  # ...in the first one (0-RTT keys are in use)
        self.early_data_status: EarlyDataStatus = "not_sent"
        self._deferred_write: InstallKeys | None = None  # handshake keys after EndOfEarlyData

    @property
    def client_random(self) -> bytes:
        return self._client_hello.random if self._client_hello else b""

    # -- public entry points --------------------------------------------------------------

    def early_data_limit(self, now: float) -> int:
        """How many bytes of 0-RTT data ``start(early_data=True)`` could carry (RFC 8446
        §4.2.10): the configured session's max_early_data when it is still usable, else 0."""
        session = self.config.session
        if session is None or not self._session_usable(session, now):
            return 0
        if session.suite not in self.config.cipher_suites:
            return 0  # §4.2.10: 0-RTT uses the ticket's suite
        if session.alpn is not None and session.alpn not in self.config.alpn:
            return 0  # §4.2.10: ... and its ALPN protocol
        return session.max_early_data

    def start(self, now: float | None = None, *, early_data: bool = False) -> list[Action]:
        """The first ClientHello; ``early_data`` offers 0-RTT if the session allows it, and
        then installs the early traffic keys right after it (RFC 8446 §4.2.10, §7.1)."""
        if self.state is not ClientState.START:
            raise RuntimeError("handshake already started")
        self._now = time.time() if now is None else now
        cfg = self.config
        self._offers = self._psk_offers(self._now)
        self._early_in_hello = early_data and self.early_data_limit(self._now) > 0
        self.early_data_offered = self._early_in_hello
        for group in cfg.groups[: max(1, cfg.key_share_groups)]:
            self._shares[group] = generate_key_share(group, self._injected.next())
        # RFC 8446 §D.4: a non-empty session id asks middleboxes to treat this as resumption;
        # RFC 9147 §5: DTLS has no compatibility mode and sends it empty.
        compat = cfg.compatibility_mode and not self.dtls
        session_id = self._random(32) if compat else b""
        hello = ClientHello(
            random=self._random(32),
            legacy_session_id=session_id,
            cipher_suites=tuple(cfg.cipher_suites),
            extensions=self._hello_extensions(cookie=None),
            legacy_version=legacy_version_for(self.dtls),
            legacy_cookie=b"" if self.dtls else None,
        )
        self._client_hello = hello
        self.state = ClientState.WAIT_SERVER_HELLO
        raw = self._encode_hello(hello)
        self._first_hello_raw = raw
        actions: list[Action] = [self._send(Epoch.INITIAL, raw)]
        if self.early_data_offered:
            actions.extend(self._early_keys(raw))
        return actions

    def _session_usable(self, session: Session, now: float) -> bool:
        cfg = self.config
        return (
            not session.expired(now)
            and session.dtls == self.dtls
            # RFC 8446 §4.6.1: resume only with the name of the original connection.
            and session.sni == cfg.server_name
            and session.suite in CIPHER_SUITES
            # §4.2.11: a suite with the ticket's hash must be on offer.
            and any(
                CIPHER_SUITES[c].hash_name == session.hash_name
                for c in cfg.cipher_suites
                if c in CIPHER_SUITES
            )
        )

    def _psk_offers(self, now: float) -> tuple[OfferedPsk, ...]:
        cfg = self.config
        offers: list[OfferedPsk] = []
        session = cfg.session
        if session is not None and self._session_usable(session, now):
            offers.append(
                OfferedPsk(
                    identity=session.ticket,
                    obfuscated_age=session.obfuscated_age(now),
                    key=session.psk,
                    external=False,
                    hash_name=session.hash_name,
                    session=session,
                )
            )
        external = cfg.external_psk
        if external is not None:
            # §4.2.11: an external identity's obfuscated_ticket_age SHOULD be 0.
            offers.append(OfferedPsk(external.identity, 0, external.key, True, external.hash_name))
        return tuple(offers)

    def _encode_hello(self, hello: ClientHello) -> bytes:
        """Encode a ClientHello and fill in its PSK binders (RFC 8446 §4.2.11.2)."""
        raw = encode_message(hello, dtls=self.dtls)
        offered = hello.extensions.pre_shared_key
        if offered is None:
            return raw
        truncated = raw[: len(raw) - binders_length(offered.binders)]
        binders = tuple(
            compute_binder(
                o.hash_name,
                o.key,
                external=o.external,
                dtls=self.dtls,
                transcript_hash=binder_transcript_hash(o.hash_name, self._binder_prefix, truncated),
            )
            for o in self._offers
        )
        return fill_binders(raw, binders)

    def _early_keys(self, hello_raw: bytes) -> list[Action]:
        """0-RTT keys from the first PSK (§4.2.10) over Transcript-Hash(ClientHello)."""
        session = self._offers[0].session
        assert session is not None
        suite = session.cipher_suite
        schedule = KeySchedule(suite, dtls=self.dtls)
        schedule.set_psk(session.psk)
        th = hashlib.new(suite.hash_name, hello_raw).digest()
        # RFC 8446 §D.4: with early data the compatibility CCS follows the first ClientHello.
        actions: list[Action] = list(self._compat_ccs())
        actions.append(
            install(
                "write",
                int(Epoch.EARLY_DATA),
                suite,
                schedule.client_early_traffic_secret(th),
                "CLIENT_EARLY_TRAFFIC_SECRET",
                self.dtls,
            )
        )
        actions.append(
            LogSecret("EARLY_EXPORTER_SECRET", schedule.early_exporter_master_secret(th))
        )
        return actions

    def handle(self, raw: bytes, now: float) -> list[Action]:
        """Process one whole handshake message (TLS form: type, uint24 length, body)."""
        self._now = now
        if self.state in (ClientState.FAILED, ClientState.START):
            raise HandshakeError(AlertDescription.unexpected_message, "handshake not running")
        hash_len = self._suite.hash_len if self._suite else 32
        try:
            message = parse_message(raw, dtls=self.dtls, hash_len=hash_len)
            return self._dispatch(message, raw)
        except HandshakeError:
            self.state = ClientState.FAILED
            raise

    def request_key_update(self, update_requested: bool) -> list[Action]:
        """Send KeyUpdate and move our sending keys forward (RFC 8446 §4.6.3)."""
        if self.state is not ClientState.CONNECTED:
            raise RuntimeError("KeyUpdate needs an established connection")
        assert self.application_keys is not None
        return self.application_keys.send_update(update_requested)

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        """RFC 8446 §7.5 exporter."""
        if self._schedule is None or not self.exporter_master_secret:
            raise RuntimeError("exporter needs a completed handshake")
        return self._schedule.exporter(self.exporter_master_secret, label, context, length)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, message: HandshakeMessage, raw: bytes) -> list[Action]:
        state = self.state
        if state is ClientState.WAIT_SERVER_HELLO and isinstance(message, ServerHello):
            return self._on_server_hello(message, raw)
        if state is ClientState.WAIT_ENCRYPTED_EXTENSIONS and isinstance(
            message, EncryptedExtensions
        ):
            return self._on_encrypted_extensions(message, raw)
        if state is ClientState.WAIT_CERTIFICATE_OR_REQUEST and isinstance(
            message, CertificateRequest
        ):
            return self._on_certificate_request(message, raw)
        if state in (
            ClientState.WAIT_CERTIFICATE_OR_REQUEST,
            ClientState.WAIT_CERTIFICATE,
        ) and isinstance(message, Certificate):
            return self._on_certificate(message, raw)
        if state is ClientState.WAIT_CERTIFICATE_VERIFY and isinstance(message, CertificateVerify):
            return self._on_certificate_verify(message, raw)
        if state is ClientState.WAIT_FINISHED and isinstance(message, Finished):
            return self._on_finished(message, raw)
        if state is ClientState.CONNECTED:
            if isinstance(message, NewSessionTicket):
                return self._on_new_session_ticket(message)
            if isinstance(message, KeyUpdate):
                return self._on_key_update(message)
            if isinstance(message, CertificateRequest):
                return self._on_post_handshake_request(message, raw)
        raise unexpected(message, state.value)

    # -- ClientHello ------------------------------------------------------------------------

    def _hello_extensions(self, cookie: bytes | None) -> Extensions:
        cfg = self.config
        name = cfg.server_name
        offers = self._offers
        psks = None
        if offers:
            # Binders are placeholders of the right size until the message is encoded.
            psks = OfferedPsks(
                identities=tuple(PskIdentity(o.identity, o.obfuscated_age) for o in offers),
                binders=placeholder_binders(offers),
            )
        return Extensions(
            server_name=name if name and not _is_ip_literal(name) else None,
            supported_groups=tuple(cfg.groups),
            signature_algorithms=tuple(cfg.signature_schemes),
            key_share_entries=tuple(
                KeyShareEntry(group=g, key_exchange=s.public) for g, s in self._shares.items()
            ),
            supported_versions=(version_for(self.dtls),),
            cookie=cookie,
            alpn=tuple(cfg.alpn) or None,
            record_size_limit=cfg.record_size_limit,
            connection_id=cfg.connection_id if self.dtls else None,
            # RFC 8446 §4.2.9: required with PSKs, and without it a server may not issue
            # tickets at all (mbedTLS does not), so it is always sent.
            psk_key_exchange_modes=tuple(cfg.psk_modes),
            early_data=self._early_in_hello,
            # RFC 8446 §4.2.6; DTLS would need a state machine per request (RFC 9147 §5.8.4).
            post_handshake_auth=cfg.post_handshake_auth and not self.dtls,
            pre_shared_key=psks,
        )

    # -- ServerHello / HelloRetryRequest ------------------------------------------------------

    def _check_server_hello_common(self, sh: ServerHello) -> CipherSuite:
        hello = self._client_hello
        assert hello is not None
        version = sh.extensions.selected_version
        if version is None or sh.legacy_version != legacy_version_for(self.dtls):
            # RFC 8446 §4.1.3: a TLS 1.2-or-older answer that carries the downgrade sentinel
            # is an attack (illegal_parameter); otherwise we refuse the old version.
            if sh.random[-8:] in (DOWNGRADE_TLS12, DOWNGRADE_TLS11):
                raise HandshakeError(
                    AlertDescription.illegal_parameter, "downgrade sentinel in ServerHello"
                )
            raise HandshakeError(
                AlertDescription.protocol_version, "server does not speak (D)TLS 1.3"
            )
        if version != version_for(self.dtls):
            # RFC 8446 §4.2.1: a version we did not offer.
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"server selected version 0x{version:04x} that was not offered",
            )
        if sh.legacy_session_id_echo != hello.legacy_session_id:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "legacy_session_id_echo mismatch"
            )
        if sh.cipher_suite not in hello.cipher_suites or sh.cipher_suite not in CIPHER_SUITES:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "server chose a cipher suite not offered"
            )
        if self._suite is not None and self._suite.code != sh.cipher_suite:
            # RFC 8446 §4.1.4: ServerHello must repeat the HelloRetryRequest's suite.
            raise HandshakeError(
                AlertDescription.illegal_parameter, "cipher suite changed after HelloRetryRequest"
            )
        return CIPHER_SUITES[sh.cipher_suite]

    def _on_server_hello(self, sh: ServerHello, raw: bytes) -> list[Action]:
        suite = self._check_server_hello_common(sh)
        if sh.is_hello_retry_request:
            return self._on_hello_retry_request(sh, suite, raw)
        ext = sh.extensions
        psk = self._server_psk(sh, suite)
        entry = ext.key_share_entry
        shared_secret: bytes | None = None
        if entry is None:
            if psk is None:
                # RFC 8446 §9.2: without PSK the key_share extension is mandatory.
                raise HandshakeError(
                    AlertDescription.missing_extension, "ServerHello lacks key_share"
                )
            if PSK_KE not in self.config.psk_modes:
                # §4.2.11: a key_share the offered modes require is missing.
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "server chose psk_ke, which we did not offer",
                )
            self._psk_mode = PSK_KE
        else:
            share = self._shares.get(entry.group)
            if share is None:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    f"server key share for group 0x{entry.group:04x} we did not send",
                )
            if psk is not None and PSK_DHE_KE not in self.config.psk_modes:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "server chose psk_dhe_ke, which we did not offer",
                )
            shared_secret = share.exchange(entry.key_exchange)
            self._group = entry.group
            if psk is not None:
                self._psk_mode = PSK_DHE_KE
        peer_cid = ext.connection_id
        if peer_cid is not None and (not self.dtls or self.config.connection_id is None):
            raise _unsolicited("connection_id")
        self._psk = psk
        self._set_suite(suite)
        self._transcript.add(raw)
        schedule = self._schedule
        assert schedule is not None
        if psk is not None:
            schedule.set_psk(psk.key)
        schedule.enter_handshake(shared_secret)
        th = self._transcript.digest()
        self._client_hs_secret = schedule.client_handshake_traffic_secret(th)
        self._server_hs_secret = schedule.server_handshake_traffic_secret(th)
        self.state = ClientState.WAIT_ENCRYPTED_EXTENSIONS
        actions: list[Action] = []
        if peer_cid is not None:
            actions.append(ConnectionIdNegotiated(peer_cid))
        actions.append(
            self._install(
                "read", Epoch.HANDSHAKE, self._server_hs_secret, "SERVER_HANDSHAKE_TRAFFIC_SECRET"
            )
        )
        # RFC 8446 §D.4: the client's CCS goes before its second flight (or its second
        # ClientHello); the server's arrives whenever, the record layer tolerates it.
        actions.extend(self._compat_ccs())
        write = self._install(
            "write", Epoch.HANDSHAKE, self._client_hs_secret, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
        )
        if self.early_data_status == "not_sent" and self.early_data_offered and not self.dtls:
            # §4.2.10: 0-RTT records and EndOfEarlyData keep the early keys until we know
            # the server's answer. (DTLS has no EndOfEarlyData and sends early data with
            # explicit epoch 1, RFC 9147 §5.6, so its handshake keys start now.)
            self._deferred_write = write
        else:
            actions.append(write)
        return actions

    def _server_psk(self, sh: ServerHello, suite: CipherSuite) -> OfferedPsk | None:
        """The PSK the ServerHello selected, checked as RFC 8446 §4.2.11 requires."""
        selected = sh.extensions.selected_identity
        if selected is None:
            return None
        offers = self._offers
        if not offers:
            raise HandshakeError(
                AlertDescription.unsupported_extension, "server selected a PSK we did not offer"
            )
        if selected >= len(offers):
            raise HandshakeError(
                AlertDescription.illegal_parameter, "selected_identity is out of range"
            )
        psk = offers[selected]
        if psk.hash_name != suite.hash_name:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "cipher suite hash does not match the PSK"
            )
        self._selected_identity = selected
        return psk

    def _on_hello_retry_request(
        self, hrr: ServerHello, suite: CipherSuite, raw: bytes
    ) -> list[Action]:
        hello = self._client_hello
        assert hello is not None
        if self._hello_retry:
            # RFC 8446 §4.1.4: a second HelloRetryRequest is an unexpected_message.
            raise HandshakeError(AlertDescription.unexpected_message, "second HelloRetryRequest")
        ext = hrr.extensions
        group = ext.key_share_selected_group
        cookie = ext.cookie
        if group is not None:
            if group not in self.config.groups:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "HelloRetryRequest selected a group not offered",
                )
            if group in self._shares:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "HelloRetryRequest asked for a key share we already sent",
                )
        elif cookie is None:
            # RFC 8446 §4.1.4: an HRR that would not change the ClientHello.
            raise HandshakeError(
                AlertDescription.illegal_parameter, "HelloRetryRequest requests no change"
            )
        self._hello_retry = True
        self._set_suite(suite)
        # RFC 8446 §4.4.1: ClientHello1 is replaced by message_hash in the transcript.
        self._transcript.restart_with_message_hash()
        self._transcript.add(raw)
        if group is not None:
            self._shares = {group: generate_key_share(group, self._injected.next())}
        # §4.1.2: recompute ages and binders, drop PSKs whose hash the suite excludes (and
        # §4.2.10: early data is not allowed after HelloRetryRequest).
        self._binder_prefix = (
            message_hash_message(hashlib.new(suite.hash_name, self._first_hello_raw).digest()) + raw
        )
        self._offers = tuple(
            o for o in self._psk_offers(self._now) if o.hash_name == suite.hash_name
        )
        self._early_in_hello = False
        actions: list[Action] = []
        if self.early_data_offered:
            self.early_data_status = "rejected"
            actions.append(EarlyDataDecision(accepted=False, max_size=0))
        new_hello = ClientHello(
            random=hello.random,
            legacy_session_id=hello.legacy_session_id,
            cipher_suites=hello.cipher_suites,
            extensions=self._hello_extensions(cookie=cookie),
            legacy_version=hello.legacy_version,
            legacy_cookie=hello.legacy_cookie,
        )
        self._client_hello = new_hello
        actions.extend(self._compat_ccs())
        actions.append(self._send(Epoch.INITIAL, self._encode_hello(new_hello)))
        return actions

    def _set_suite(self, suite: CipherSuite) -> None:
        if self._suite is None:
            self._suite = suite
            self._transcript.set_hash(suite.hash_name)
            self._schedule = KeySchedule(suite, dtls=self.dtls)

    # -- encrypted flight ---------------------------------------------------------------------

    def _on_encrypted_extensions(self, ee: EncryptedExtensions, raw: bytes) -> list[Action]:
        hello = self._client_hello
        assert hello is not None
        offered = hello.extensions
        ext = ee.extensions
        # RFC 8446 §4.2: the server may only answer extensions the client offered.
        if ext.server_name is not None and offered.server_name is None:
            raise _unsolicited("server_name")
        if ext.alpn is not None:
            if offered.alpn is None:
                raise _unsolicited("application_layer_protocol_negotiation")
            # RFC 7301 §3.1: exactly one protocol, one the client offered.
            if len(ext.alpn) != 1 or ext.alpn[0] not in offered.alpn:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "server selected an ALPN protocol not offered",
                )
        if ext.record_size_limit is not None and offered.record_size_limit is None:
            raise _unsolicited("record_size_limit")
        actions = self._early_data_answer(ext.early_data)
        self._encrypted_extensions = ext
        self._transcript.add(raw)
        # RFC 8446 §2.2: a PSK handshake has no certificates; Finished comes next.
        if self._psk is not None:
            self.state = ClientState.WAIT_FINISHED
        else:
            self.state = ClientState.WAIT_CERTIFICATE_OR_REQUEST
        return actions

    def _early_data_answer(self, accepted: bool) -> list[Action]:
        """RFC 8446 §4.2.10: early_data in EncryptedExtensions accepts our 0-RTT data."""
        if accepted:
            if not self._early_in_hello:
                raise _unsolicited("early_data")
            session = self._offers[0].session
            assert session is not None and self._suite is not None
            if self._selected_identity != 0 or self._suite.code != session.suite:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "early data accepted without the first PSK and its cipher suite",
                )
            self.early_data_status = "accepted"
            return [EarlyDataDecision(accepted=True, max_size=session.max_early_data)]
        if not self._early_in_hello:
            return []
        self.early_data_status = "rejected"
        actions: list[Action] = [EarlyDataDecision(accepted=False, max_size=0)]
        if self._deferred_write is not None:
            actions.append(self._deferred_write)
            self._deferred_write = None
        return actions

    def _on_certificate_request(self, cr: CertificateRequest, raw: bytes) -> list[Action]:
        # RFC 8446 §4.3.2: empty context during the handshake; signature_algorithms required.
        if cr.certificate_request_context:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "handshake CertificateRequest has a context"
            )
        if cr.extensions.signature_algorithms is None:
            raise HandshakeError(
                AlertDescription.missing_extension, "CertificateRequest lacks signature_algorithms"
            )
        self._certificate_request = cr
        self._transcript.add(raw)
        self.state = ClientState.WAIT_CERTIFICATE
        return []

    def _on_certificate(self, cert: Certificate, raw: bytes) -> list[Action]:
        if cert.certificate_request_context:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "server Certificate has a request context"
            )
        if not cert.entries:
            # RFC 8446 §4.4.2.4: an empty server Certificate is a decode_error.
            raise HandshakeError(AlertDescription.decode_error, "server sent no certificate")
        refuse_unsolicited_entry_extensions(cert)
        chain_der = [entry.cert_data for entry in cert.entries]
        verification = self.config.verification
        if verification.enabled:
            self._peer_chain = verify_server_certificate(
                chain_der,
                server_name=self.config.server_name,
                now=self._now,
                roots=verification.anchors,
                pins=verification.pins,
                relaxed_extensions=verification.relaxed_extensions,
            )
        else:
            self._peer_chain = parse_certificate_chain(chain_der)
        self._transcript.add(raw)
        self.state = ClientState.WAIT_CERTIFICATE_VERIFY
        return []

    def _on_certificate_verify(self, cv: CertificateVerify, raw: bytes) -> list[Action]:
        check_certificate_verify(
            cv,
            self._peer_chain,
            self.config.signature_schemes,
            from_server=True,
            transcript_hash=self._transcript.digest(),
        )
        self._signature_scheme = cv.algorithm
        self._transcript.add(raw)
        self.state = ClientState.WAIT_FINISHED
        return []

    def _on_finished(self, fin: Finished, raw: bytes) -> list[Action]:
        schedule = self._schedule
        suite = self._suite
        assert schedule is not None and suite is not None
        check_finished(schedule, self._server_hs_secret, self._transcript.digest(), fin)
        self._transcript.add(raw)
        schedule.enter_master()
        th = self._transcript.digest()
        self._client_app_secret = schedule.client_application_traffic_secret(th)
        self._server_app_secret = schedule.server_application_traffic_secret(th)
        self.exporter_master_secret = schedule.exporter_master_secret(th)
        actions: list[Action] = [
            self._install(
                "read", Epoch.APPLICATION, self._server_app_secret, "SERVER_TRAFFIC_SECRET_0"
            ),
            LogSecret("EXPORTER_SECRET", self.exporter_master_secret),
        ]
        if self._deferred_write is not None:
            # RFC 8446 §4.5: EndOfEarlyData under the early keys, then the handshake keys.
            actions.append(self._send(Epoch.EARLY_DATA, encode_message(EndOfEarlyData())))
            actions.append(self._deferred_write)
            self._deferred_write = None
        actions.extend(self._client_authentication())
        actions.append(
            self._send(
                Epoch.HANDSHAKE,
                finished_message(schedule, self._client_hs_secret, self._transcript),
            )
        )
        self.resumption_master_secret = schedule.resumption_master_secret(self._transcript.digest())
        actions.append(
            self._install(
                "write", Epoch.APPLICATION, self._client_app_secret, "CLIENT_TRAFFIC_SECRET_0"
            )
        )
        self.application_keys = ApplicationKeys(
            schedule, suite, self.dtls, self._client_app_secret, self._server_app_secret
        )
        self.state = ClientState.CONNECTED
        self.parameters = self._negotiated(suite)
        actions.append(HandshakeFinished(self.parameters))
        return actions

    def _client_authentication(self) -> list[Action]:
        """RFC 8446 §4.4.2: answer a CertificateRequest, with an empty chain if we must."""
        request = self._certificate_request
        if request is None:
            return []
        credential, scheme = pick_client_credential(self.config.credentials, request)
        actions: list[Action] = [self._send(Epoch.HANDSHAKE, certificate_message(b"", credential))]
        if credential is not None and scheme is not None:
            cv = certificate_verify_message(credential, scheme, False, self._transcript)
            actions.append(self._send(Epoch.HANDSHAKE, cv))
        self._client_certificate_sent = credential is not None
        return actions

    # -- post-handshake -------------------------------------------------------------------------

    def _on_new_session_ticket(self, ticket: NewSessionTicket) -> list[Action]:
        """RFC 8446 §4.6.1: a ticket becomes a Session the application may keep."""
        if ticket.ticket_lifetime == 0:
            return []  # "the ticket should be discarded immediately"
        schedule, suite = self._schedule, self._suite
        assert schedule is not None and suite is not None
        ee = self._encrypted_extensions or Extensions()
        session = Session(
            ticket=ticket.ticket,
            psk=schedule.resumption_psk(self.resumption_master_secret, ticket.ticket_nonce),
            suite=suite.code,
            lifetime=min(ticket.ticket_lifetime, MAX_TICKET_LIFETIME),
            age_add=ticket.ticket_age_add,
            received_at=self._now,
            max_early_data=ticket.extensions.max_early_data_size or 0,
            alpn=ee.alpn[0] if ee.alpn else None,
            sni=self.config.server_name,
            dtls=self.dtls,
        )
        return [NewSession(session)]

    def _on_post_handshake_request(self, request: CertificateRequest, raw: bytes) -> list[Action]:
        if not self.config.post_handshake_auth or self.dtls:
            # RFC 8446 §4.6.2: only a client that sent post_handshake_auth may get one.
            raise HandshakeError(
                AlertDescription.unexpected_message,
                "post-handshake CertificateRequest without post_handshake_auth",
            )
        assert self._schedule is not None and self.application_keys is not None
        return answer_request(
            request,
            raw,
            config=self.config,
            base=self._transcript,  # ends with our Finished: nothing is added after it
            schedule=self._schedule,
            keys=self.application_keys,
        )

    def _on_key_update(self, message: KeyUpdate) -> list[Action]:
        assert self.application_keys is not None
        return self.application_keys.receive_update(message)

    # -- helpers ---------------------------------------------------------------------------------

    def _compat_ccs(self) -> list[Action]:
        if self.dtls or self._sent_ccs or not self.config.compatibility_mode:
            return []
        self._sent_ccs = True
        return [SendChangeCipherSpec()]

    def _send(self, epoch: int, data: bytes) -> SendMessage:
        """A handshake message we send; every one of them is part of the transcript."""
        self._transcript.add(data)
        return SendMessage(epoch=int(epoch), data=data)

    def _install(self, direction: str, epoch: int, secret: bytes, label: str) -> InstallKeys:
        assert self._suite is not None
        return install(direction, int(epoch), self._suite, secret, label, self.dtls)

    def _negotiated(self, suite: CipherSuite) -> NegotiatedParameters:
        ee = self._encrypted_extensions or Extensions()
        return NegotiatedParameters(
            version=version_for(self.dtls),
            cipher_suite=suite,
            group=self._group,
            signature_scheme=self._signature_scheme,
            alpn=ee.alpn[0] if ee.alpn else None,
            server_name=self.config.server_name,
            hello_retry=self._hello_retry,
            resumed=self._psk is not None and not self._psk.external,
            psk_mode=PSK_MODE_NAMES[self._psk_mode] if self._psk_mode is not None else None,
            early_data=self.early_data_status,
            peer_certificates=tuple(self._peer_chain),
            client_authenticated=self._client_certificate_sent,
            peer_record_size_limit=ee.record_size_limit,
        )


def _unsolicited(name: str) -> HandshakeError:
    return HandshakeError(
        AlertDescription.unsupported_extension, f"server sent {name} the client did not offer"
    )


@functools.lru_cache(maxsize=256)
def _is_ip_literal(name: str) -> bool:
    # RFC 6066 §3: literal IPv4 and IPv6 addresses are not permitted in server_name.
    # Cached: a client names few servers, and ip_address() answers "no" by an exception.
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
