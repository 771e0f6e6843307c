"""Post-handshake client authentication (RFC 8446 §4.6.2), TLS only.

A client that offered ``post_handshake_auth`` may, at any time after the handshake, get a
CertificateRequest with a non-empty, connection-unique ``certificate_request_context``. It
answers with Certificate (echoing the context), CertificateVerify (if it sent a certificate)
and Finished, all under its current application traffic keys. Each exchange hashes the
handshake's transcript (through the client's Finished) followed by its own messages; the
Finished key comes from ``client_application_traffic_secret_N``, the one in use (§4.4).

DTLS 1.3 would need one reliability state machine per request (RFC 9147 §5.8.4); we never
offer the extension there, so a DTLS CertificateRequest after the handshake stays
unexpected_message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from .actions import Action, CertificateRequested, ClientAuthenticated, SendMessage
from .alerts import AlertDescription, HandshakeError
from .certificates import parse_certificate_chain, verify_client_certificate
from .common import (
    certificate_message,
    certificate_verify_message,
    check_certificate_verify,
    check_finished,
    choose_scheme,
    finished_message,
)
from .config import Credential, HandshakeConfig
from .entry_extensions import refuse_unsolicited_entry_extensions
from .extensions import Extensions
from .key_schedule import KeySchedule
from .key_update import ApplicationKeys
from .messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    Finished,
    HandshakeMessage,
    encode_message,
)
from .transcript import Transcript

# Requests a server keeps open at once: each holds a transcript until answered.
MAX_OPEN_REQUESTS = 8


def answer_request(
    request: CertificateRequest,
    raw: bytes,
    *,
    config: HandshakeConfig,
    base: Transcript,
    schedule: KeySchedule,
    keys: ApplicationKeys,
) -> list[Action]:
    """The client's answer to a post-handshake CertificateRequest (§4.6.2)."""
    schemes = request.extensions.signature_algorithms
    if schemes is None:
        # §4.3.2: signature_algorithms MUST be in every CertificateRequest.
        raise HandshakeError(
            AlertDescription.missing_extension, "CertificateRequest lacks signature_algorithms"
        )
    credential, scheme = pick_client_credential(config.credentials, request)
    transcript = base.copy()
    transcript.add(raw)
    context = request.certificate_request_context
    messages = [certificate_message(context, credential)]
    transcript.add(messages[0])
    if credential is not None and scheme is not None:
        messages.append(certificate_verify_message(credential, scheme, False, transcript))
        transcript.add(messages[-1])
    messages.append(finished_message(schedule, keys.send_secret, transcript))
    actions: list[Action] = [SendMessage(epoch=keys.write_epoch, data=m) for m in messages]
    actions.append(CertificateRequested(context, credential is not None))
    return actions


def pick_client_credential(
    credentials: tuple[Credential, ...], request: CertificateRequest
) -> tuple[Credential | None, int | None]:
    """The client's answer to a CertificateRequest (RFC 8446 §4.4.2.3): the first chain whose
    key signs a requested scheme, preferring one from a CA the request names in
    certificate_authorities (§4.2.4); none when no key fits (an empty Certificate)."""
    schemes = request.extensions.signature_algorithms or ()
    wanted = frozenset(request.extensions.certificate_authorities or ())
    fallback: tuple[Credential | None, int | None] = (None, None)
    for credential in credentials:
        scheme = choose_scheme(credential, schemes)
        if scheme is None:
            continue
        if not wanted or credential.issuer_names & wanted:
            return credential, scheme
        if fallback[0] is None:
            fallback = (credential, scheme)
    return fallback


def certificate_request(config: HandshakeConfig, context: bytes) -> bytes:
    """A server's CertificateRequest, in the handshake (empty context) or after it (RFC
    8446 §4.3.2): our signature schemes and the roots we accept (§4.2.4)."""
    extensions = Extensions(
        signature_algorithms=tuple(config.signature_schemes),
        certificate_authorities=config.certificate_authorities,
    )
    return encode_message(CertificateRequest(context, extensions))


def client_chain(
    config: HandshakeConfig, chain_der: list[bytes], now: float
) -> list[x509.Certificate]:
    """A client's certificate chain, verified against the server's roots unless
    verification is off (RFC 8446 §4.4.2.4); errors are HandshakeErrors with their alert."""
    verification = config.verification
    if not verification.enabled:
        return parse_certificate_chain(chain_der)
    return verify_client_certificate(
        chain_der,
        now=now,
        roots=verification.anchors,
        relaxed_extensions=verification.relaxed_extensions,
    )


@dataclass
class _Exchange:
    transcript: Transcript
    required: bool
    chain: list[x509.Certificate] = field(default_factory=list)


class ServerAuthRequests:
    """The server's open post-handshake CertificateRequests and the answer in progress."""

    def __init__(self, config: HandshakeConfig, schedule: KeySchedule, base: Transcript) -> None:
        self._config = config
        self._schedule = schedule
        self._base = base
        self._open: dict[bytes, _Exchange] = {}
        self.used: set[bytes] = set()
        self._answering: tuple[bytes, _Exchange] | None = None
        self._expect: type[HandshakeMessage] = Certificate

    @property
    def answer_in_progress(self) -> bool:
        return self._answering is not None

    def request(self, context: bytes, keys: ApplicationKeys, *, required: bool) -> list[Action]:
        if len(self._open) >= MAX_OPEN_REQUESTS:
            raise RuntimeError(f"{MAX_OPEN_REQUESTS} CertificateRequests are already open")
        if not context or context in self.used:
            raise RuntimeError("certificate_request_context must be non-empty and unique")
        self.used.add(context)
        raw = certificate_request(self._config, context)
        transcript = self._base.copy()
        transcript.add(raw)
        self._open[context] = _Exchange(transcript, required)
        return [SendMessage(epoch=keys.write_epoch, data=raw)]

    def handle(
        self, message: HandshakeMessage, raw: bytes, keys: ApplicationKeys, now: float
    ) -> list[Action]:
        """Certificate, CertificateVerify or Finished of an answer (§4.6.2)."""
        if self._answering is None:
            if not isinstance(message, Certificate):
                raise HandshakeError(
                    AlertDescription.unexpected_message,
                    f"{type(message).__name__} without a post-handshake CertificateRequest",
                )
            return self._on_certificate(message, raw, now)
        if not isinstance(message, self._expect):
            raise HandshakeError(
                AlertDescription.unexpected_message,
                f"expected {self._expect.__name__} in the client's post-handshake answer, got "
                f"{type(message).__name__}",
            )
        context, exchange = self._answering
        if isinstance(message, CertificateVerify):
            check_certificate_verify(
                message,
                exchange.chain,
                self._config.signature_schemes,
                from_server=False,
                transcript_hash=exchange.transcript.digest(),
            )
            exchange.transcript.add(raw)
            self._expect = Finished
            return []
        assert isinstance(message, Finished)
        # §4.4: the Finished key comes from the client's current application traffic secret.
        check_finished(self._schedule, keys.receive_secret, exchange.transcript.digest(), message)
        self._answering = None
        self._expect = Certificate
        return [ClientAuthenticated(context, tuple(exchange.chain))]

    def _on_certificate(self, cert: Certificate, raw: bytes, now: float) -> list[Action]:
        context = cert.certificate_request_context
        exchange = self._open.pop(context, None)
        if exchange is None:
            # §4.4.2: the context echoes one of our open requests.
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "post-handshake Certificate answers no open CertificateRequest",
            )
        refuse_unsolicited_entry_extensions(cert)
        exchange.transcript.add(raw)
        self._answering = (context, exchange)
        if not cert.entries:
            if exchange.required:
                raise HandshakeError(
                    AlertDescription.certificate_required, "client sent no certificate"
                )
            self._expect = Finished
            return []
        exchange.chain = client_chain(self._config, [e.cert_data for e in cert.entries], now)
        self._expect = CertificateVerify
        return []
