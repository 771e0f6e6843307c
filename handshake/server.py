"""The server handshake state machine (RFC 8446 §2, §4; RFC 8446 Appendix A.2 states).

Shared by TLS and DTLS. The DTLS stateless cookie exchange (RFC 9147 §5.1) happens before a
``ServerHandshake`` exists; it enters through ``resume_after_cookie``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    SendChangeCipherSpec,
    SendMessage,
)
from .alerts import AlertDescription, HandshakeError
from .cipher_suites import CIPHER_SUITES, CipherSuite
from .common import (
    InjectedKeys,
    certificate_message,
    certificate_verify_message,
    check_certificate_verify,
    check_finished,
    choose_scheme,
    finished_message,
    install,
    legacy_version_for,
    parse_message,
    random_source,
    unexpected,
    version_for,
)
from .config import Credential, HandshakeConfig
from .entry_extensions import refuse_unsolicited_entry_extensions
from .groups import respond_key_share
from .key_schedule import KeySchedule
from .key_update import ApplicationKeys
from .messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Extensions,
    ExtensionType,
    Finished,
    HandshakeMessage,
    KeyShareEntry,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    encode_message,
)
from .post_handshake_auth import ServerAuthRequests, certificate_request, client_chain
from .psk import (
    PSK_DHE_KE,
    PSK_MODE_NAMES,
    ExternalPsk,
    binder_transcript_hash,
    binders_length,
    verify_binder,
)
from .tickets import TicketState, chain_hash
from .transcript import Transcript, message_hash_message

# RFC 8449 §4: the largest value a TLS 1.3 endpoint can announce (2^14 + 1 content type byte).
MAX_RECORD_SIZE_LIMIT = 2**14 + 1
# 0-RTT bytes skipped when declining early data of a ticket we cannot read (RFC 8446 §4.2.10
# bounds the skipping by max_early_data_size, which such a ticket does not tell us).
DEFAULT_EARLY_DATA_SKIP = 2**14

# RFC 8446 §4.2 leaves the extension order free; ours is NSS's, so the RFC 8448 traces are
# reproduced byte for byte. Extensions not listed follow in ascending code point order.
_SERVER_HELLO_ORDER = (
    ExtensionType.pre_shared_key,
    ExtensionType.key_share,
    ExtensionType.supported_versions,
)
_HELLO_RETRY_ORDER = (
    ExtensionType.key_share,
    ExtensionType.cookie,
    ExtensionType.supported_versions,
)
_ENCRYPTED_EXTENSIONS_ORDER = (
    ExtensionType.supported_groups,
    ExtensionType.record_size_limit,
    ExtensionType.server_name,
    ExtensionType.early_data,
)


class ServerState(Enum):
    WAIT_CLIENT_HELLO = "WAIT_CH"
    WAIT_SECOND_CLIENT_HELLO = "WAIT_CH2"
    WAIT_END_OF_EARLY_DATA = "WAIT_EOED"
    WAIT_CLIENT_CERTIFICATE = "WAIT_CERT"
    WAIT_CLIENT_CERTIFICATE_VERIFY = "WAIT_CV"
    WAIT_CLIENT_FINISHED = "WAIT_FINISHED"
    CONNECTED = "CONNECTED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class RetryParameters:
    """What a stateless server seals into its cookie to resume after HelloRetryRequest."""

    suite: int
    group: int
    group_requested: bool
    client_hello_hash: bytes


@dataclass(frozen=True, slots=True)
class ChosenPsk:
    """The PSK the server accepted from the client's list (RFC 8446 §4.2.11)."""

    index: int  # selected_identity
    identity: bytes
    key: bytes
    external: bool
    mode: int  # PSK_KE or PSK_DHE_KE (§4.2.9)
    hash_name: str
    binder: bytes
    obfuscated_age: int
    ticket: TicketState | None  # None for an external PSK


@dataclass(frozen=True, slots=True)
class Selection:
    """What the server chose from a ClientHello (RFC 8446 §4.1.1)."""

    suite: CipherSuite
    group: int | None  # None: psk_ke, no (EC)DHE
    share: bytes | None  # the client's key share for ``group``; None -> HelloRetryRequest
    credential: Credential | None  # None: PSK authentication, no certificate
    scheme: int | None
    alpn: bytes | None
    psk: ChosenPsk | None = None

    @property
    def needs_retry(self) -> bool:
        """A group is chosen but the client sent no share for it (§4.1.4)."""
        return self.group is not None and self.share is None


class ServerHandshake:
    def __init__(self, config: HandshakeConfig) -> None:
        if not config.credentials and not config.external_psks:
            raise ValueError("a server needs a certificate and key, or external PSKs")
        self.config = config
        self.dtls = config.dtls
        self.state = ServerState.WAIT_CLIENT_HELLO
        self._random = random_source(config)
        self._injected = InjectedKeys(config.key_share_private)
        self._transcript = Transcript()
        self._schedule: KeySchedule | None = None
        self._selection: Selection | None = None
        self._hello_retry = False
        self._hrr_cookie: bytes | None = None
        self._first_hello: ClientHello | None = None
        self._client_hello: ClientHello | None = None
        self._client_hs_secret = b""
        self._server_hs_secret = b""
        self._client_app_secret = b""
        self._server_app_secret = b""
        self._peer_chain: list[x509.Certificate] = []
        self._peer_chain_der: list[bytes] = []
        self._requested_certificate = False
        self._stateless_suite: CipherSuite | None = None
        self._stateless_group = 0
        self._group_requested = False  # whether our HelloRetryRequest named a group
        self._peer_cid: bytes | None = None
        self._sent_ccs = False
        self._now = 0.0
        self.parameters: NegotiatedParameters | None = None
        self.application_keys: ApplicationKeys | None = None
        self.exporter_master_secret = b""
        self.resumption_master_secret = b""
        # RFC 8446 §4.2.10: a client that offered early data we will not accept may already
        # have sent 0-RTT records; the record layer must skip those that fail to decrypt.
        self.early_data_offered = False
        self.early_data_accepted = False
        self._external_psks: dict[bytes, ExternalPsk] = {
            psk.identity: psk for psk in config.external_psks
        }
        self._retry_suite: CipherSuite | None = None  # fixed by our HelloRetryRequest
        self._auth_requests: ServerAuthRequests | None = None  # post-handshake (§4.6.2)
        # §4.2.11.2: message_hash(ClientHello1) || HelloRetryRequest, before Truncate(CH2)
        self._binder_prefix = b""

    @property
    def client_random(self) -> bytes:
        return self._first_hello.random if self._first_hello else b""

    # -- public entry points --------------------------------------------------------------------

    def handle(self, raw: bytes, now: float | None = None) -> list[Action]:
        self._now = time.time() if now is None else now
        if self.state is ServerState.FAILED:
            raise HandshakeError(AlertDescription.unexpected_message, "handshake has failed")
        suite = self._selection.suite if self._selection else None
        try:
            message = parse_message(raw, dtls=self.dtls, hash_len=suite.hash_len if suite else 32)
            return self._dispatch(message, raw)
        except HandshakeError:
            self.state = ServerState.FAILED
            raise

    def request_key_update(self, update_requested: bool) -> list[Action]:
        if self.state is not ServerState.CONNECTED or self.application_keys is None:
            raise RuntimeError("KeyUpdate needs an established connection")
        return self.application_keys.send_update(update_requested)

    @property
    def post_handshake_auth_offered(self) -> bool:
        """The client sent post_handshake_auth (RFC 8446 §4.2.6; never in DTLS)."""
        hello = self._client_hello
        return hello is not None and hello.extensions.post_handshake_auth and not self.dtls

    def request_client_certificate(self, *, required: bool = True) -> tuple[bytes, list[Action]]:
        """A post-handshake CertificateRequest (RFC 8446 §4.6.2): its context and actions.
        The client's answer ends in a ClientAuthenticated action with that context (or
        certificate_required, if ``required``)."""
        if self.state is not ServerState.CONNECTED or self.application_keys is None:
            raise RuntimeError("post-handshake authentication needs an established connection")
        if not self.post_handshake_auth_offered:
            # §4.6.2: "Servers MUST NOT send a post-handshake CertificateRequest to clients
            # which do not offer this extension."
            raise RuntimeError("the client did not offer post_handshake_auth")
        assert self._schedule is not None
        if self._auth_requests is None:
            self._auth_requests = ServerAuthRequests(self.config, self._schedule, self._transcript)
        context = self._random(8)  # §4.3.2: unique within the connection
        while context in self._auth_requests.used:
            context = self._random(8)
        return context, self._auth_requests.request(
            context, self.application_keys, required=required
        )

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        if self._schedule is None or not self.exporter_master_secret:
            raise RuntimeError("exporter needs a completed handshake")
        return self._schedule.exporter(self.exporter_master_secret, label, context, length)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, message: HandshakeMessage, raw: bytes) -> list[Action]:
        state = self.state
        if state is ServerState.WAIT_CLIENT_HELLO and isinstance(message, ClientHello):
            return self._on_client_hello(message, raw)
        if state is ServerState.WAIT_SECOND_CLIENT_HELLO and isinstance(message, ClientHello):
            return self._on_second_client_hello(message, raw)
        if state is ServerState.WAIT_END_OF_EARLY_DATA and isinstance(message, EndOfEarlyData):
            return self._on_end_of_early_data(raw)
        if state is ServerState.WAIT_CLIENT_CERTIFICATE and isinstance(message, Certificate):
            return self._on_certificate(message, raw)
        if state is ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY and isinstance(
            message, CertificateVerify
        ):
            return self._on_certificate_verify(message, raw)
        if state is ServerState.WAIT_CLIENT_FINISHED and isinstance(message, Finished):
            return self._on_finished(message, raw)
        if state is ServerState.CONNECTED:
            keys = self.application_keys
            assert keys is not None
            auth = self._auth_requests
            if auth is not None and isinstance(message, (Certificate, CertificateVerify, Finished)):
                return auth.handle(message, raw, keys, self._now)
            if isinstance(message, KeyUpdate) and not (auth and auth.answer_in_progress):
                # (§4.6.2: the answer's Finished is keyed by the secret it started under.)
                return keys.receive_update(message)
        raise unexpected(message, state.value)

    # -- ClientHello ------------------------------------------------------------------------

    def _on_client_hello(self, hello: ClientHello, raw: bytes) -> list[Action]:
        selection = self._select(hello, raw)
        self._first_hello = hello
        self.early_data_offered = hello.extensions.early_data
        always_retry = self.config.always_hello_retry and not self._hello_retry
        if not (selection.needs_retry or always_retry):
            selection = self._claim_ticket(hello, raw, selection)
        if selection.needs_retry or always_retry:
            actions = self._hello_retry_request(hello, selection, raw)
            if self.early_data_offered:
                # RFC 8446 §4.2.10: HelloRetryRequest rejects 0-RTT; skip what was sent.
                actions.append(EarlyDataDecision(False, self._early_skip_limit(selection)))
            return actions
        return self._server_flight(hello, selection, raw)

    def _on_second_client_hello(self, hello: ClientHello, raw: bytes) -> list[Action]:
        first, previous = self._first_hello, self._selection
        if previous is None:
            # Resumed from a cookie: the suite and group are what the cookie says.
            assert self._stateless_suite is not None
            chosen = self._select(hello, raw)
            previous = Selection(
                self._stateless_suite,
                self._stateless_group,
                None,
                chosen.credential,
                chosen.scheme,
                chosen.alpn,
                chosen.psk,
            )
        # RFC 8446 §4.1.2: the second ClientHello repeats the first except for the changes
        # the HelloRetryRequest asked for. (A stateless server no longer has the first.)
        if first is not None and (
            hello.legacy_session_id != first.legacy_session_id or hello.random != first.random
        ):
            raise HandshakeError(
                AlertDescription.illegal_parameter, "second ClientHello changed random/session id"
            )
        if self._hrr_cookie is not None:
            if hello.extensions.cookie is None:
                raise HandshakeError(
                    AlertDescription.missing_extension, "second ClientHello lacks the cookie"
                )
            if not hmac.compare_digest(hello.extensions.cookie, self._hrr_cookie):
                raise HandshakeError(AlertDescription.illegal_parameter, "cookie mismatch")
        if hello.extensions.early_data:
            # RFC 8446 §4.2.10: early data is not permitted after HelloRetryRequest.
            raise HandshakeError(
                AlertDescription.illegal_parameter, "early_data offered after HelloRetryRequest"
            )
        selection = self._claim_ticket(hello, raw, self._select(hello, raw))
        shares = hello.extensions.key_share_entries or ()
        if selection.suite != previous.suite:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "second ClientHello does not answer the HelloRetryRequest",
            )
        share: bytes | None = None
        if selection.group is not None:
            matching = [entry for entry in shares if entry.group == previous.group]
            # RFC 8446 §4.2.8: after an HRR that named a group, exactly one share, for it.
            # After a cookie-only HRR nothing asked the client to change its shares (§4.1.2),
            # so they may repeat the first ClientHello's; the one we chose must be there.
            if not matching or (self._group_requested and len(shares) != 1):
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "second ClientHello does not answer the HelloRetryRequest",
                )
            share = matching[0].key_exchange
        selection = Selection(
            previous.suite,
            previous.group if selection.group is not None else None,
            share,
            selection.credential,
            selection.scheme,
            selection.alpn,
            selection.psk,
        )
        return self._server_flight(hello, selection, raw)

    def _select(
        self, hello: ClientHello, raw: bytes, skip: frozenset[bytes] = frozenset()
    ) -> Selection:
        ext = hello.extensions
        cfg = self.config
        if hello.legacy_cookie:
            # RFC 9147 §5.3: a DTLS 1.3 ClientHello's legacy_cookie must be empty.
            raise HandshakeError(AlertDescription.illegal_parameter, "non-empty legacy_cookie")
        versions = ext.supported_versions
        if versions is None or version_for(self.dtls) not in versions:
            # RFC 8446 §4.2.1: we negotiate only (D)TLS 1.3.
            raise HandshakeError(
                AlertDescription.protocol_version, "client does not offer (D)TLS 1.3"
            )
        suite = next(
            (CIPHER_SUITES[c] for c in cfg.cipher_suites if c in hello.cipher_suites), None
        )
        if suite is None:
            raise HandshakeError(AlertDescription.handshake_failure, "no cipher suite in common")
        alpn = self._choose_alpn(ext.alpn)
        psk = self._choose_psk(hello, raw, alpn, skip)
        if psk is not None:
            return self._psk_selection(hello, psk, alpn)
        if cfg.psk_only or not cfg.credentials:
            raise HandshakeError(
                AlertDescription.handshake_failure, "no acceptable pre-shared key offered"
            )
        group, share = self._checked_group(hello)
        if ext.signature_algorithms is None:
            raise HandshakeError(
                AlertDescription.missing_extension, "ClientHello lacks signature_algorithms"
            )
        credential, scheme = self._choose_credential(
            ext.signature_algorithms, ext.server_name, ext.certificate_authorities
        )
        return Selection(suite, group, share, credential, scheme, alpn)

    def _checked_group(self, hello: ClientHello) -> tuple[int, bytes | None]:
        ext = hello.extensions
        groups, shares = ext.supported_groups, ext.key_share_entries
        # RFC 8446 §9.2: supported_groups and key_share come together; certificate-based
        # authentication requires signature_algorithms.
        if groups is None or shares is None:
            raise HandshakeError(
                AlertDescription.missing_extension, "ClientHello lacks supported_groups/key_share"
            )
        share_groups = [entry.group for entry in shares]
        if len(set(share_groups)) != len(share_groups) or not set(share_groups) <= set(groups):
            # RFC 8446 §4.2.8: one share per group, only for groups in supported_groups.
            raise HandshakeError(
                AlertDescription.illegal_parameter, "invalid key_share list in ClientHello"
            )
        return self._choose_group(groups, shares)

    # -- pre-shared keys (RFC 8446 §4.2.9, §4.2.11) ----------------------------------------

    def _choose_psk(
        self, hello: ClientHello, raw: bytes, alpn: bytes | None, skip: frozenset[bytes]
    ) -> ChosenPsk | None:
        ext = hello.extensions
        offered = ext.pre_shared_key
        if offered is None:
            return None
        modes = ext.psk_key_exchange_modes
        if modes is None:
            # §4.2.9: "If clients offer pre_shared_key without a psk_key_exchange_modes
            # extension, servers MUST abort the handshake."
            raise HandshakeError(
                AlertDescription.missing_extension, "pre_shared_key without psk_key_exchange_modes"
            )
        mode = next((m for m in self.config.psk_modes if m in modes), None)
        if mode is None:
            return None  # §4.2.9: no mode in common, the PSKs are unusable
        for index, identity in enumerate(offered.identities):
            if identity.identity in skip:
                continue
            found = self._lookup_psk(identity.identity, hello, alpn)
            if found is None:
                continue
            key, hash_name, ticket = found
            if self._psk_suite(hello, hash_name, ticket) is None:
                continue
            # §4.2.11: select one PSK and validate only its binder.
            truncated = raw[: len(raw) - binders_length(offered.binders)]
            binder = offered.binders[index]
            verify_binder(
                hash_name,
                key,
                binder,
                external=ticket is None,
                dtls=self.dtls,
                transcript_hash=binder_transcript_hash(hash_name, self._binder_prefix, truncated),
            )
            return ChosenPsk(
                index,
                identity.identity,
                key,
                ticket is None,
                mode,
                hash_name,
                binder,
                identity.obfuscated_ticket_age,
                ticket,
            )
        return None

    def _lookup_psk(
        self, identity: bytes, hello: ClientHello, alpn: bytes | None
    ) -> tuple[bytes, str, TicketState | None] | None:
        external = self._external_psks.get(identity)
        if external is not None:
            return external.key, external.hash_name, None
        manager = self.config.tickets
        if manager is None:
            return None
        state = manager.open(identity, self._now)
        # A ticket we cannot use means a full handshake, never an error (§4.2.11, §4.6.1).
        if (
            state is None
            or state.dtls != self.dtls
            or state.suite not in CIPHER_SUITES
            # §4.6.1 / RFC 6066 §3: resume only under the name the ticket was issued for,
            # and (§4.2.10) with the same application protocol.
            or state.sni != hello.extensions.server_name
            or state.alpn != alpn
            # Client authentication is part of the resumed session (§4.6.1): a server that
            # now requires it does not resume a session that had none.
            or (self.config.require_client_certificate and not state.client_auth)
        ):
            return None
        return state.psk, CIPHER_SUITES[state.suite].hash_name, state

    def _psk_suite(
        self, hello: ClientHello, hash_name: str, ticket: TicketState | None
    ) -> CipherSuite | None:
        """A suite with the PSK's hash (§4.2.11); the ticket's own when possible (§4.2.10)."""
        if self._retry_suite is not None:
            # After HelloRetryRequest the suite is fixed (§4.1.4).
            return self._retry_suite if self._retry_suite.hash_name == hash_name else None
        ours = self.config.cipher_suites
        if ticket is not None and ticket.suite in ours and ticket.suite in hello.cipher_suites:
            return CIPHER_SUITES[ticket.suite]
        for code in ours:
            if code in hello.cipher_suites and CIPHER_SUITES[code].hash_name == hash_name:
                return CIPHER_SUITES[code]
        return None

    def _claim_ticket(self, hello: ClientHello, raw: bytes, selection: Selection) -> Selection:
        """§8.1 single-use tickets: the ticket is taken now, for the hello we answer with a
        ServerHello (atomically, so servers sharing a ReplayStore agree); one that another
        handshake took first is passed over as if unknown."""
        psk, manager = selection.psk, self.config.tickets
        skip: frozenset[bytes] = frozenset()
        while psk is not None and psk.ticket is not None and manager is not None:
            if manager.consume(psk.identity, psk.ticket, self._now):
                break
            skip |= {psk.identity}
            selection = self._select(hello, raw, skip)
            psk = selection.psk
        return selection

    def _psk_selection(self, hello: ClientHello, psk: ChosenPsk, alpn: bytes | None) -> Selection:
        ticket = psk.ticket
        suite = self._psk_suite(hello, psk.hash_name, ticket)
        assert suite is not None
        group: int | None = None
        share: bytes | None = None
        if psk.mode == PSK_DHE_KE:
            group, share = self._checked_group(hello)
        return Selection(suite, group, share, None, None, alpn, psk)

    def _early_skip_limit(self, selection: Selection | None) -> int:
        manager = self.config.tickets
        limits = [DEFAULT_EARLY_DATA_SKIP, manager.max_early_data if manager else 0]
        if selection is not None and selection.psk is not None and selection.psk.ticket:
            limits.append(selection.psk.ticket.max_early_data)
        return max(limits)

    def _accept_early_data(self, hello: ClientHello, selection: Selection) -> bool:
        """RFC 8446 §4.2.10 conditions, and §8 anti-replay, for taking 0-RTT data."""
        psk, manager = selection.psk, self.config.tickets
        if not hello.extensions.early_data or self._hello_retry:
            return False
        if psk is None or psk.index != 0 or psk.ticket is None or manager is None:
            return False
        ticket = psk.ticket
        if ticket.max_early_data == 0 or manager.max_early_data == 0:
            return False
        if selection.suite.code != ticket.suite or selection.alpn != ticket.alpn:
            return False
        return manager.early_data_acceptable(ticket, psk.obfuscated_age, psk.binder, self._now)

    def _choose_group(
        self, groups: tuple[int, ...], shares: tuple[KeyShareEntry, ...]
    ) -> tuple[int, bytes | None]:
        # A share the client already sent for any group we accept avoids a round trip; take
        # the one we like best. Only without such a share do we ask (HelloRetryRequest).
        by_group = {entry.group: entry.key_exchange for entry in shares}
        for group in self.config.groups:
            if group in by_group:
                return group, by_group[group]
        for group in self.config.groups:
            if group in groups:
                return group, None
        raise HandshakeError(AlertDescription.handshake_failure, "no key exchange group in common")

    def _choose_credential(
        self,
        peer_schemes: tuple[int, ...],
        server_name: str | None = None,
        authorities: tuple[bytes, ...] | None = None,
    ) -> tuple[Credential, int]:
        """The first usable credential in configuration order, preferring one whose leaf
        names the client's server_name, then one whose chain comes from a CA the client
        listed in certificate_authorities (RFC 8446 §4.4.2.2, §4.2.4: "SHOULD" guide the
        choice). Without a better match the first usable one is the default."""
        usable: list[tuple[Credential, int]] = []
        for credential in self.config.credentials:
            scheme = choose_scheme(credential, peer_schemes)
            if scheme is not None and scheme in self.config.signature_schemes:
                usable.append((credential, scheme))
        if not usable:
            raise HandshakeError(
                AlertDescription.handshake_failure,
                "no signature scheme in common for our certificate",
            )
        if len(usable) == 1:
            return usable[0]
        wanted = frozenset(authorities or ())

        def rank(item: tuple[Credential, int]) -> tuple[bool, bool]:
            credential = item[0]
            named = bool(server_name) and credential.serves(server_name or "")
            return (not named, not (wanted and credential.issuer_names & wanted))

        return min(usable, key=rank)  # min keeps configuration order among equals

    def _choose_alpn(self, offered: tuple[bytes, ...] | None) -> bytes | None:
        if offered is None or not self.config.alpn:
            return None
        for protocol in self.config.alpn:
            if protocol in offered:
                return protocol
        # RFC 7301 §3.2
        raise HandshakeError(
            AlertDescription.no_application_protocol, "no application protocol in common"
        )

    def _hello_retry_request(
        self, hello: ClientHello, selection: Selection, raw: bytes
    ) -> list[Action]:
        if self._hello_retry:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "second ClientHello still has no usable share"
            )
        self._hello_retry = True
        self._retry_suite = selection.suite
        self._transcript.set_hash(selection.suite.hash_name)
        self._transcript.add(raw)
        self._transcript.restart_with_message_hash()
        # With a share for the group already present, only a cookie can make the retry useful.
        ask_group = selection.needs_retry
        self._group_requested = ask_group
        cookie = self._random(32) if (self.config.tls_cookie or not ask_group) else None
        self._hrr_cookie = cookie
        # The retry keeps the group: the client must send a (fresh) share for it.
        self._selection = Selection(
            selection.suite,
            selection.group,
            None,
            selection.credential,
            selection.scheme,
            selection.alpn,
            selection.psk,
        )
        data = self._hello_retry_message(
            selection.suite.code,
            selection.group if ask_group else None,
            cookie,
            b"" if self.dtls else hello.legacy_session_id,
        )
        self._transcript.add(data)
        self._binder_prefix = (
            message_hash_message(hashlib.new(selection.suite.hash_name, raw).digest()) + data
        )
        self.state = ServerState.WAIT_SECOND_CLIENT_HELLO
        actions: list[Action] = [SendMessage(epoch=int(Epoch.INITIAL), data=data)]
        actions.extend(self._compat_ccs(hello))
        return actions

    def _hello_retry_message(
        self, suite: int, group: int | None, cookie: bytes | None, session_id: bytes
    ) -> bytes:
        """HelloRetryRequest bytes, a pure function of its inputs (RFC 8446 §4.1.4), so a
        stateless server can rebuild exactly what it sent (RFC 9147 §5.1)."""
        hrr = ServerHello(
            random=HELLO_RETRY_REQUEST_RANDOM,
            legacy_session_id_echo=session_id,
            cipher_suite=suite,
            extensions=Extensions(
                selected_version=version_for(self.dtls),
                key_share_selected_group=group,
                cookie=cookie,
                order=_HELLO_RETRY_ORDER,
            ),
            legacy_version=legacy_version_for(self.dtls),
        )
        return encode_message(hrr, dtls=self.dtls)

    # -- stateless HelloRetryRequest (RFC 9147 §5.1, RFC 8446 §4.2.2) -------------------------

    def stateless_retry(
        self, raw: bytes, now: float | None = None
    ) -> tuple[RetryParameters, Callable[[bytes], bytes]]:
        """Choose from ClientHello1 what a retry needs, keeping no state.

        Returns the parameters to seal into the cookie and a function that builds the
        HelloRetryRequest carrying that cookie. Raises HandshakeError for a ClientHello we
        would refuse anyway.
        """
        message = parse_message(raw, dtls=self.dtls, hash_len=32)
        if not isinstance(message, ClientHello):
            raise unexpected(message, "stateless")
        self._now = time.time() if now is None else now
        selection = self._select(message, raw)
        ch1_hash = hashlib.new(selection.suite.hash_name, raw).digest()
        ask_group = selection.needs_retry
        params = RetryParameters(
            suite=selection.suite.code,
            group=selection.group or 0,
            group_requested=ask_group,
            client_hello_hash=ch1_hash,
        )

        def build(cookie: bytes) -> bytes:
            return self._hello_retry_message(
                params.suite, params.group if ask_group else None, cookie, b""
            )

        return params, build

    def resume_after_retry(self, params: RetryParameters, cookie: bytes) -> None:
        """Restore the transcript a stateless retry implies, then expect ClientHello2."""
        if self.state is not ServerState.WAIT_CLIENT_HELLO:
            raise RuntimeError("resume_after_retry starts a fresh handshake")
        suite = CIPHER_SUITES.get(params.suite)
        if suite is None:
            raise HandshakeError(AlertDescription.illegal_parameter, "cookie names no suite")
        self._hello_retry = True
        self._retry_suite = suite
        self._hrr_cookie = cookie
        self._transcript.set_hash(suite.hash_name)
        hrr = self._hello_retry_message(
            params.suite, params.group if params.group_requested else None, cookie, b""
        )
        # RFC 8446 §4.2.11.2: binders in ClientHello2 cover message_hash(CH1) and the HRR.
        self._binder_prefix = message_hash_message(params.client_hello_hash) + hrr
        self._transcript.add(message_hash_message(params.client_hello_hash))
        self._transcript.add(hrr)
        self._stateless_group = params.group
        self._group_requested = params.group_requested
        self._stateless_suite = suite
        self.state = ServerState.WAIT_SECOND_CLIENT_HELLO

    # -- our flight ---------------------------------------------------------------------------

    def _server_flight(self, hello: ClientHello, selection: Selection, raw: bytes) -> list[Action]:
        suite = selection.suite
        psk = selection.psk
        self._selection = selection
        self._client_hello = hello
        if not self._hello_retry:
            self._transcript.set_hash(suite.hash_name)
        self._transcript.add(raw)
        key_share: KeyShareEntry | None = None
        shared_secret: bytes | None = None  # psk_ke: no (EC)DHE (RFC 8446 §7.1 uses zeros)
        if selection.group is not None:
            assert selection.share is not None
            server_share, shared_secret = respond_key_share(
                selection.group, selection.share, self._injected.next()
            )
            key_share = KeyShareEntry(selection.group, server_share)
        schedule = KeySchedule(suite, dtls=self.dtls)
        self._schedule = schedule
        early: bytes | None = None
        if psk is not None:
            schedule.set_psk(psk.key)
            if self._accept_early_data(hello, selection):
                # §7.1: client_early_traffic_secret over Transcript-Hash(ClientHello).
                early = schedule.client_early_traffic_secret(self._transcript.digest())
                early_exporter = schedule.early_exporter_master_secret(self._transcript.digest())
        self.early_data_accepted = early is not None
        server_hello = ServerHello(
            random=self._random(32),
            # RFC 9147 §5: a DTLS server never echoes the session id.
            legacy_session_id_echo=b"" if self.dtls else hello.legacy_session_id,
            cipher_suite=suite.code,
            extensions=Extensions(
                key_share_entry=key_share,
                selected_version=version_for(self.dtls),
                selected_identity=psk.index if psk is not None else None,
                connection_id=self._negotiate_cid(hello),
                order=_SERVER_HELLO_ORDER,
            ),
            legacy_version=legacy_version_for(self.dtls),
        )
        actions: list[Action] = [
            self._send(Epoch.INITIAL, encode_message(server_hello, dtls=self.dtls))
        ]
        if self._peer_cid is not None:
            actions.append(ConnectionIdNegotiated(self._peer_cid))
        actions.extend(self._compat_ccs(hello))
        schedule.enter_handshake(shared_secret)
        th = self._transcript.digest()
        self._client_hs_secret = schedule.client_handshake_traffic_secret(th)
        self._server_hs_secret = schedule.server_handshake_traffic_secret(th)
        actions.append(
            self._install(
                "write", Epoch.HANDSHAKE, self._server_hs_secret, "SERVER_HANDSHAKE_TRAFFIC_SECRET"
            )
        )
        if early is not None:
            actions.append(
                self._install("read", Epoch.EARLY_DATA, early, "CLIENT_EARLY_TRAFFIC_SECRET")
            )
            actions.append(LogSecret("EARLY_EXPORTER_SECRET", early_exporter))
        if early is None or self.dtls:
            # TLS reads 0-RTT data and EndOfEarlyData under the early keys first (§4.5); DTLS
            # tells epochs apart by record and has no EndOfEarlyData (RFC 9147 §5.6).
            actions.append(
                self._install(
                    "read",
                    Epoch.HANDSHAKE,
                    self._client_hs_secret,
                    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                )
            )
        if hello.extensions.early_data:
            limit = psk.ticket.max_early_data if early is not None and psk and psk.ticket else 0
            actions.append(
                EarlyDataDecision(early is not None, limit or self._early_skip_limit(selection))
            )
        actions.append(self._send(Epoch.HANDSHAKE, self._encrypted_extensions(hello, selection)))
        cfg = self.config
        if psk is None and (cfg.request_client_certificate or cfg.require_client_certificate):
            # §4.3.2: never in a PSK handshake.
            self._requested_certificate = True
            actions.append(self._send(Epoch.HANDSHAKE, certificate_request(cfg, b"")))
        if psk is None:
            credential, scheme = selection.credential, selection.scheme
            assert credential is not None and scheme is not None
            actions.append(self._send(Epoch.HANDSHAKE, certificate_message(b"", credential)))
            actions.append(
                self._send(
                    Epoch.HANDSHAKE,
                    certificate_verify_message(credential, scheme, True, self._transcript),
                )
            )
        actions.append(
            self._send(
                Epoch.HANDSHAKE,
                finished_message(schedule, self._server_hs_secret, self._transcript),
            )
        )
        schedule.enter_master()
        th = self._transcript.digest()
        self._client_app_secret = schedule.client_application_traffic_secret(th)
        self._server_app_secret = schedule.server_application_traffic_secret(th)
        self.exporter_master_secret = schedule.exporter_master_secret(th)
        actions.append(
            self._install(
                "write", Epoch.APPLICATION, self._server_app_secret, "SERVER_TRAFFIC_SECRET_0"
            )
        )
        actions.append(LogSecret("EXPORTER_SECRET", self.exporter_master_secret))
        if early is not None and not self.dtls:
            self.state = ServerState.WAIT_END_OF_EARLY_DATA
        elif self._requested_certificate:
            self.state = ServerState.WAIT_CLIENT_CERTIFICATE
        else:
            self.state = ServerState.WAIT_CLIENT_FINISHED
        return actions

    def _on_end_of_early_data(self, raw: bytes) -> list[Action]:
        """RFC 8446 §4.5: the 0-RTT data is over; the client's handshake keys follow."""
        self._transcript.add(raw)
        self.state = ServerState.WAIT_CLIENT_FINISHED
        return [
            self._install(
                "read", Epoch.HANDSHAKE, self._client_hs_secret, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
            )
        ]

    def _negotiate_cid(self, hello: ClientHello) -> bytes | None:
        # RFC 9146 §3 / RFC 9147 §9: answer with our CID only when the client offered one.
        offered = hello.extensions.connection_id
        own = self.config.connection_id
        if not self.dtls or offered is None or own is None:
            return None
        self._peer_cid = offered
        return own

    def _encrypted_extensions(self, hello: ClientHello, selection: Selection) -> bytes:
        offered = hello.extensions
        limit = None
        if offered.record_size_limit is not None:
            # RFC 8449 §4: answer only when offered; our own receive limit.
            limit = self.config.record_size_limit or MAX_RECORD_SIZE_LIMIT
        ext = Extensions(
            # RFC 6066 §3: an empty server_name acknowledges that we used the name.
            server_name="" if offered.server_name else None,
            # RFC 8446 §4.2.7: the client may use these in later connections.
            supported_groups=self.config.advertised_groups,
            alpn=(selection.alpn,) if selection.alpn is not None else None,
            record_size_limit=limit,
            early_data=self.early_data_accepted,  # RFC 8446 §4.2.10
            order=_ENCRYPTED_EXTENSIONS_ORDER,
        )
        return encode_message(EncryptedExtensions(extensions=ext))

    # -- client authentication ----------------------------------------------------------------

    def _on_certificate(self, cert: Certificate, raw: bytes) -> list[Action]:
        if cert.certificate_request_context != b"":
            raise HandshakeError(
                AlertDescription.illegal_parameter, "client Certificate context mismatch"
            )
        refuse_unsolicited_entry_extensions(cert)
        self._transcript.add(raw)
        if not cert.entries:
            if self.config.require_client_certificate:
                # RFC 8446 §4.4.2.4
                raise HandshakeError(
                    AlertDescription.certificate_required, "client sent no certificate"
                )
            self.state = ServerState.WAIT_CLIENT_FINISHED
            return []
        chain_der = [entry.cert_data for entry in cert.entries]
        self._peer_chain = client_chain(self.config, chain_der, self._now)
        self._peer_chain_der = chain_der
        self.state = ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY
        return []

    def _on_certificate_verify(self, cv: CertificateVerify, raw: bytes) -> list[Action]:
        check_certificate_verify(
            cv,
            self._peer_chain,
            self.config.signature_schemes,
            from_server=False,
            transcript_hash=self._transcript.digest(),
        )
        self._transcript.add(raw)
        self.state = ServerState.WAIT_CLIENT_FINISHED
        return []

    def _on_finished(self, fin: Finished, raw: bytes) -> list[Action]:
        schedule, selection = self._schedule, self._selection
        assert schedule is not None and selection is not None
        check_finished(schedule, self._client_hs_secret, self._transcript.digest(), fin)
        self._transcript.add(raw)
        self.resumption_master_secret = schedule.resumption_master_secret(self._transcript.digest())
        self.application_keys = ApplicationKeys(
            schedule,
            selection.suite,
            self.dtls,
            send_secret=self._server_app_secret,
            receive_secret=self._client_app_secret,
        )
        self.state = ServerState.CONNECTED
        hello = self._client_hello
        assert hello is not None
        psk = selection.psk
        ticket = psk.ticket if psk is not None else None
        if self.early_data_accepted:
            early_status: Literal["accepted", "rejected", "not_sent"] = "accepted"
        else:
            early_status = "rejected" if self.early_data_offered else "not_sent"
        self.parameters = NegotiatedParameters(
            version=version_for(self.dtls),
            cipher_suite=selection.suite,
            group=selection.group,
            signature_scheme=selection.scheme,
            alpn=selection.alpn,
            server_name=hello.extensions.server_name,
            hello_retry=self._hello_retry,
            resumed=ticket is not None,
            psk_mode=PSK_MODE_NAMES[psk.mode] if psk is not None else None,
            early_data=early_status,
            peer_certificates=tuple(self._peer_chain),
            # A resumed session keeps the original connection's client authentication.
            client_authenticated=ticket.client_auth if ticket else bool(self._peer_chain),
            peer_record_size_limit=hello.extensions.record_size_limit,
        )
        actions: list[Action] = [
            self._install(
                "read", Epoch.APPLICATION, self._client_app_secret, "CLIENT_TRAFFIC_SECRET_0"
            ),
            HandshakeFinished(self.parameters),
        ]
        actions.extend(self._new_session_tickets())
        return actions

    def _new_session_tickets(self) -> list[Action]:
        """RFC 8446 §4.6.1: tickets right after the client's Finished, each with its own
        nonce and ticket_age_add."""
        manager, schedule, selection = self.config.tickets, self._schedule, self._selection
        hello = self._client_hello
        if manager is None or manager.count == 0 or self.parameters is None:
            return []
        assert schedule is not None and selection is not None and hello is not None
        psk = selection.psk
        if psk is not None and psk.ticket is not None:
            client_auth, peer_hash = psk.ticket.client_auth, psk.ticket.peer_chain_hash
        else:
            client_auth = bool(self._peer_chain)
            peer_hash = chain_hash(self._peer_chain_der) if self._peer_chain_der else b""
        extensions = (
            Extensions(max_early_data_size=manager.max_early_data)
            if manager.max_early_data
            else Extensions()
        )
        actions: list[Action] = []
        for index in range(manager.count):
            nonce = index.to_bytes(2, "big")
            age_add = int.from_bytes(self._random(4), "big")
            state = TicketState(
                psk=schedule.resumption_psk(self.resumption_master_secret, nonce),
                suite=selection.suite.code,
                created=self._now,
                lifetime=manager.lifetime,
                age_add=age_add,
                max_early_data=manager.max_early_data,
                alpn=selection.alpn,
                sni=hello.extensions.server_name,
                client_auth=client_auth,
                peer_chain_hash=peer_hash,
                dtls=self.dtls,
            )
            message = NewSessionTicket(
                ticket_lifetime=manager.lifetime,
                ticket_age_add=age_add,
                ticket_nonce=nonce,
                ticket=manager.seal(state),
                extensions=extensions,
            )
            # Post-handshake messages are not part of the transcript.
            actions.append(SendMessage(epoch=int(Epoch.APPLICATION), data=encode_message(message)))
        return actions

    # -- helpers ---------------------------------------------------------------------------------

    def _compat_ccs(self, hello: ClientHello) -> list[Action]:
        # RFC 8446 §D.4: answer a client in compatibility mode (non-empty session id) with a
        # CCS right after our first hello; never in DTLS (RFC 9147 §5).
        if self.dtls or self._sent_ccs or not hello.legacy_session_id:
            return []
        self._sent_ccs = True
        return [SendChangeCipherSpec()]

    def _send(self, epoch: int, data: bytes) -> SendMessage:
        self._transcript.add(data)
        return SendMessage(epoch=int(epoch), data=data)

    def _install(self, direction: str, epoch: int, secret: bytes, label: str) -> InstallKeys:
        assert self._selection is not None
        return install(direction, int(epoch), self._selection.suite, secret, label, self.dtls)
