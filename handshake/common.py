"""Pieces both handshake roles share: versions, message framing, Finished, CertificateVerify."""

from __future__ import annotations

import hmac
import os
import weakref
from collections.abc import Callable, Iterator, Sequence

from cryptography import x509

from .actions import InstallKeys
from .alerts import AlertDescription, HandshakeError
from .certificates import leaf_public_key
from .cipher_suites import CipherSuite
from .config import Credential, HandshakeConfig
from .key_schedule import KeySchedule, traffic_keys
from .messages import (
    Certificate,
    CertificateEntry,
    CertificateVerify,
    Extensions,
    Finished,
    HandshakeMessage,
    decode_message,
    encode_message,
)
from .signatures import (
    certificate_verify_input,
    is_rsassa_pss_certificate,
    is_valid_for_certificate_verify,
    sign,
    verify,
)
from .transcript import Transcript

TLS13 = 0x0304
DTLS13 = 0xFEFC  # RFC 9147 §5.3: ~{3, 4} as a DTLS version
TLS12_LEGACY = 0x0303
DTLS12_LEGACY = 0xFEFD


def version_for(dtls: bool) -> int:
    return DTLS13 if dtls else TLS13


def legacy_version_for(dtls: bool) -> int:
    return DTLS12_LEGACY if dtls else TLS12_LEGACY


def random_source(config: HandshakeConfig) -> Callable[[int], bytes]:
    return config.random_bytes or os.urandom


class InjectedKeys:
    """Ephemeral private keys handed in by test vectors, consumed in order."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys: Iterator[bytes] = iter(keys)

    def next(self) -> bytes | None:
        return next(self._keys, None)


def parse_message(raw: bytes, *, dtls: bool, hash_len: int) -> HandshakeMessage:
    """Decode one whole TLS-form handshake message (type, uint24 length, body)."""
    if len(raw) < 4:
        raise HandshakeError(AlertDescription.decode_error, "truncated handshake header")
    length = int.from_bytes(raw[1:4], "big")
    if length != len(raw) - 4:
        raise HandshakeError(AlertDescription.decode_error, "handshake length mismatch")
    return decode_message(raw[0], raw[4:], dtls=dtls, hash_len=hash_len)


def install(
    direction: str, epoch: int, suite: CipherSuite, secret: bytes, label: str, dtls: bool
) -> InstallKeys:
    keys = traffic_keys(suite, secret, dtls=dtls)
    return InstallKeys(
        direction="read" if direction == "read" else "write",
        epoch=epoch,
        suite=suite,
        secret=secret,
        keys=keys,
        log_label=label,
    )


def finished_message(schedule: KeySchedule, base_secret: bytes, transcript: Transcript) -> bytes:
    verify_data = schedule.finished_verify_data(base_secret, transcript.digest())
    return encode_message(Finished(verify_data=verify_data))


def check_finished(
    schedule: KeySchedule, base_secret: bytes, transcript_hash: bytes, message: Finished
) -> None:
    # RFC 8446 §4.4.4: a wrong verify_data is a decrypt_error.
    expected = schedule.finished_verify_data(base_secret, transcript_hash)
    if not hmac.compare_digest(expected, message.verify_data):
        raise HandshakeError(AlertDescription.decrypt_error, "Finished verify_data mismatch")


# A server sends the same Certificate message (empty context, RFC 8446 §4.4.2) in every full
# handshake with a credential: encode it once per credential.
_CERTIFICATE_MESSAGES: weakref.WeakKeyDictionary[Credential, bytes] = weakref.WeakKeyDictionary()


def certificate_message(context: bytes, credential: Credential | None) -> bytes:
    if context or credential is None:
        return _encode_certificate(context, credential)
    message = _CERTIFICATE_MESSAGES.get(credential)
    if message is None:
        message = _encode_certificate(b"", credential)
        _CERTIFICATE_MESSAGES[credential] = message
    return message


def _encode_certificate(context: bytes, credential: Credential | None) -> bytes:
    entries = tuple(
        CertificateEntry(cert_data=der, extensions=Extensions())
        for der in (credential.chain if credential else ())
    )
    return encode_message(Certificate(certificate_request_context=context, entries=entries))


def certificate_verify_message(
    credential: Credential, scheme: int, is_server: bool, transcript: Transcript
) -> bytes:
    # RFC 8446 §4.4.3: sign the transcript hash up to and including Certificate.
    data = certificate_verify_input(is_server, transcript.digest())
    signature = sign(credential.private_key, scheme, data, rsassa_pss_key=credential.rsassa_pss)
    return encode_message(CertificateVerify(algorithm=scheme, signature=signature))


def check_certificate_verify(
    message: CertificateVerify,
    chain: Sequence[x509.Certificate],
    offered: Sequence[int],
    from_server: bool,
    transcript_hash: bytes,
) -> None:
    # RFC 8446 §4.4.3: the scheme must be one we offered and never rsa_pkcs1 (illegal_parameter).
    if message.algorithm not in offered or not is_valid_for_certificate_verify(message.algorithm):
        raise HandshakeError(
            AlertDescription.illegal_parameter,
            f"CertificateVerify scheme 0x{message.algorithm:04x} is not offered or not allowed "
            "in TLS 1.3",
        )
    data = certificate_verify_input(from_server, transcript_hash)
    verify(
        leaf_public_key(chain),
        message.algorithm,
        data,
        message.signature,
        rsassa_pss_key=is_rsassa_pss_certificate(chain[0]),
    )


def choose_scheme(credential: Credential, peer_schemes: Sequence[int]) -> int | None:
    """The first scheme our key can make that the peer accepts (our key's preference order)."""
    accepted = set(peer_schemes)
    for scheme in credential.schemes():
        if scheme in accepted:
            return scheme
    return None


def unexpected(message: HandshakeMessage, state: str) -> HandshakeError:
    # RFC 8446 §6.2: a message out of order is unexpected_message.
    return HandshakeError(
        AlertDescription.unexpected_message,
        f"{type(message).__name__} not expected in state {state}",
    )
