"""The crypto floor: exactly the ``cryptography`` (and ``hmac``) calls one full handshake makes,
timed alone, without any TLS around them.

Asymmetric work per handshake (both ends, as the RFC requires):
- key exchange: x25519 = 2 key generations + 2 exchanges (with the public-key loads);
  secp256r1 = the same with P-256 keys and uncompressed points; X25519MLKEM768 = ML-KEM-768
  key generation + encapsulation + decapsulation plus the x25519 part.
- CertificateVerify: 1 ECDSA P-256/SHA-256 signature and 1 verification (2 each with mTLS).
- certificate chain: leaf DER parse + ``x509.verification`` server verifier build and verify
  with host name (plus a client verifier with mTLS), from a cached PolicyBuilder as ours.
Symmetric work is counted, not assumed: one handshake of ours runs with HKDFExpand, hmac
(HKDF-Extract and Finished) and RecordCipher wrapped, and the floor replays every recorded
call with the same algorithm and sizes (AEAD key setups, seals, opens of the handshake
records). Transcript hashing (hashlib, a few KiB) is not part of the floor.
"""

from __future__ import annotations

import datetime
import hmac
import os
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.verification import PolicyBuilder, Store

import handshake.key_schedule as key_schedule
from records.aead import RecordCipher

from . import ours
from .fixtures import SERVER_NAME, Pki, Scenario
from .stats import clock

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}
_AEADS: dict[str, Callable[[bytes], Any]] = {
    "AES-GCM": AESGCM,
    "CHACHA20-POLY1305": ChaCha20Poly1305,
}


@dataclass
class SymmetricCalls:
    """What one handshake of ours asked of the symmetric primitives (both ends)."""

    expands: list[tuple[str, int, bytes, int]] = field(default_factory=list)  # hash,len,info,|prk|
    hmacs: list[tuple[str, int, int]] = field(default_factory=list)  # hash, |key|, |msg|
    aead_keys: list[tuple[str, int]] = field(default_factory=list)  # aead, |key|
    seals: list[tuple[str, int, int]] = field(default_factory=list)  # aead, |aad|, |plaintext|
    opens: list[tuple[str, int, int]] = field(default_factory=list)  # aead, |aad|, |ciphertext|

    def summary(self) -> dict[str, int]:
        return {
            "hkdf_expand": len(self.expands),
            "hmac (HKDF-Extract + Finished)": len(self.hmacs),
            "aead_key_setups": len(self.aead_keys),
            "aead_seals": len(self.seals),
            "aead_opens": len(self.opens),
            "aead_bytes_sealed": sum(p for _, _, p in self.seals),
        }


@contextmanager
def _recording(calls: SymmetricCalls) -> Any:
    namespace = vars(key_schedule)  # patched by name: the module's own references
    real_expand = namespace["HKDFExpand"]
    real_hmac = namespace["hmac"]
    real = (RecordCipher.__init__, RecordCipher.seal, RecordCipher.open)

    class CountingExpand:
        def __init__(self, algorithm: hashes.HashAlgorithm, length: int, info: bytes) -> None:
            self._inner: HKDFExpand = real_expand(algorithm, length, info)
            self._args = (algorithm.name, length, bytes(info))

        def derive(self, key: bytes) -> bytes:
            calls.expands.append((*self._args, len(key)))
            return self._inner.derive(key)

    def digest(key: bytes, msg: bytes, name: str) -> bytes:
        calls.hmacs.append((name, len(key), len(msg)))
        return hmac.digest(key, msg, name)

    def init(self: RecordCipher, aead: str, key: bytes, iv: bytes, tag_len: int) -> None:
        calls.aead_keys.append((aead, len(key)))
        real[0](self, aead, key, iv, tag_len)

    def seal(self: RecordCipher, seq: int, aad: Any, plaintext: Any) -> bytes:
        calls.seals.append((self.aead, len(aad), len(plaintext)))
        return real[1](self, seq, aad, plaintext)

    def open_(self: RecordCipher, seq: int, aad: Any, ciphertext: Any) -> bytes:
        calls.opens.append((self.aead, len(aad), len(ciphertext)))
        return real[2](self, seq, aad, ciphertext)

    namespace["HKDFExpand"] = CountingExpand
    namespace["hmac"] = types.SimpleNamespace(digest=digest, compare_digest=hmac.compare_digest)
    RecordCipher.__init__ = init  # type: ignore[method-assign]
    RecordCipher.seal = seal  # type: ignore[method-assign]
    RecordCipher.open = open_  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        namespace["HKDFExpand"] = real_expand
        namespace["hmac"] = real_hmac
        RecordCipher.__init__, RecordCipher.seal, RecordCipher.open = real  # type: ignore[method-assign]


def count_symmetric_calls(pki: Pki, scenario: Scenario) -> SymmetricCalls:
    client_config, server_config = ours.configs(pki, scenario)
    ours.tls_handshake(client_config, server_config, time.time())  # warm caches first
    calls = SymmetricCalls()
    with _recording(calls):
        ours.tls_handshake(client_config, server_config, time.time())
    return calls


class Floor:
    """The handshake's crypto, prepared so that ``one()`` does only library calls."""

    def __init__(self, pki: Pki, scenario: Scenario, calls: SymmetricCalls) -> None:
        self.scenario = scenario
        self.calls = calls
        load_key = serialization.load_pem_private_key
        self.server_key: Any = load_key(pki.server_key.read_bytes(), None)
        self.client_key: Any = load_key(pki.client_key.read_bytes(), None)
        self.server_leaf = pki.server_chain_der[0]
        self.client_leaf = pki.client_chain_der[0]
        self.builder = PolicyBuilder().store(Store(list(pki.roots)))
        self.when = datetime.datetime.now(tz=datetime.UTC)
        self.signed = os.urandom(64 + 33 + 1 + 32)  # §4.4.3 CertificateVerify input size
        self.expands = [
            (_HASHES[h], length, info, os.urandom(prk)) for h, length, info, prk in calls.expands
        ]
        self.hmacs = [(os.urandom(k), os.urandom(m), h) for h, k, m in calls.hmacs]
        self.keys = [(_AEADS[a], os.urandom(k)) for a, k in calls.aead_keys]
        key = os.urandom(16)
        self.nonce = os.urandom(12)
        self.seals = [(AESGCM(key), os.urandom(a), os.urandom(p)) for _, a, p in calls.seals]
        sealer = AESGCM(key)
        self.opens = []
        for _, aad_len, ct_len in calls.opens:
            aad = os.urandom(aad_len)
            ciphertext = sealer.encrypt(self.nonce, os.urandom(ct_len - 16), aad)
            self.opens.append((sealer, aad, ciphertext))
        if any(a != "AES-GCM" for a, _, _ in calls.seals + calls.opens):
            raise ValueError("the floor replays AES-GCM handshake records only")

    # -- components --------------------------------------------------------------------------

    def key_exchange(self) -> None:
        group = self.scenario.group
        if group == "x25519":
            c = x25519.X25519PrivateKey.generate()
            c_pub = c.public_key().public_bytes_raw()
            s = x25519.X25519PrivateKey.generate()
            s_pub = s.public_key().public_bytes_raw()
            s.exchange(x25519.X25519PublicKey.from_public_bytes(c_pub))
            c.exchange(x25519.X25519PublicKey.from_public_bytes(s_pub))
        elif group == "secp256r1":
            curve = ec.SECP256R1()
            point = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ce = ec.generate_private_key(curve)
            ce_pub = ce.public_key().public_bytes(*point)
            se = ec.generate_private_key(curve)
            se_pub = se.public_key().public_bytes(*point)
            se.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, ce_pub))
            ce.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, se_pub))
        elif group == "X25519MLKEM768":
            kem = mlkem.MLKEM768PrivateKey.generate()
            c = x25519.X25519PrivateKey.generate()
            share = kem.public_key().public_bytes_raw() + c.public_key().public_bytes_raw()
            ek = mlkem.MLKEM768PublicKey.from_public_bytes(share[:1184])
            s = x25519.X25519PrivateKey.generate()
            s.exchange(x25519.X25519PublicKey.from_public_bytes(share[1184:]))
            _, ciphertext = ek.encapsulate()
            s_pub = s.public_key().public_bytes_raw()
            kem.decapsulate(ciphertext)
            c.exchange(x25519.X25519PublicKey.from_public_bytes(s_pub))
        else:
            raise ValueError(group)

    def signatures(self) -> None:
        algorithm = ec.ECDSA(hashes.SHA256())
        pairs = [(self.server_key, self.server_leaf)]
        if self.scenario.mutual:
            pairs.append((self.client_key, self.client_leaf))
        for key, leaf_der in pairs:
            signature = key.sign(self.signed, algorithm)
            leaf = x509.load_der_x509_certificate(leaf_der)
            public = leaf.public_key()
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(signature, self.signed, algorithm)

    def chains(self) -> None:
        builder = self.builder.time(self.when)
        leaf = x509.load_der_x509_certificate(self.server_leaf)
        builder.build_server_verifier(x509.DNSName(SERVER_NAME)).verify(leaf, [])
        if self.scenario.mutual:
            leaf = x509.load_der_x509_certificate(self.client_leaf)
            builder.build_client_verifier().verify(leaf, [])

    def key_schedule(self) -> None:
        for algorithm, length, info, prk in self.expands:
            HKDFExpand(algorithm, length, info).derive(prk)
        for key, msg, name in self.hmacs:
            hmac.digest(key, msg, name)

    def records(self) -> None:
        for factory, key in self.keys:
            factory(key)
        nonce = self.nonce
        for aead, aad, plaintext in self.seals:
            aead.encrypt(nonce, plaintext, aad)
        for aead, aad, ciphertext in self.opens:
            aead.decrypt(nonce, ciphertext, aad)

    def components(self) -> dict[str, Callable[[], None]]:
        return {
            "key_exchange": self.key_exchange,
            "signatures": self.signatures,
            "chain_verification": self.chains,
            "key_schedule": self.key_schedule,
            "record_aead": self.records,
        }

    def one(self) -> None:
        self.key_exchange()
        self.signatures()
        self.chains()
        self.key_schedule()
        self.records()

    def runner(self, fn: Callable[[], None]) -> Callable[[int], float]:
        def run(n: int) -> float:
            start = clock()
            for _ in range(n):
                fn()
            return clock() - start

        return run
