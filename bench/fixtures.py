"""What every implementation under test shares: one throwaway PKI (ECDSA P-256 root and leaves
for "localhost"), the scenarios, and the names each library uses for groups and suites."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from protocol.pki import generate_pki

SERVER_NAME = "localhost"

# Our group names (protocol.config.parse_groups) -> OpenSSL's and tlslite-ng's.
OPENSSL_GROUPS = {"x25519": "X25519", "secp256r1": "P-256", "X25519MLKEM768": "X25519MLKEM768"}
SSL_MODULE_CURVES = {"x25519": "X25519", "secp256r1": "prime256v1"}  # ssl.set_ecdh_curve
TLSLITE_GROUPS = {"x25519": "x25519", "secp256r1": "secp256r1"}
GROUP_CODES = {"x25519": 0x001D, "secp256r1": 0x0017, "X25519MLKEM768": 0x11EC}

# IANA suite name -> tlslite-ng's cipher name, and the code point seen on the wire.
SUITES = {
    "TLS_AES_128_GCM_SHA256": ("aes128gcm", 0x1301),
    "TLS_CHACHA20_POLY1305_SHA256": ("chacha20-poly1305", 0x1303),
}
DEFAULT_SUITE = "TLS_AES_128_GCM_SHA256"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    roots: tuple[x509.Certificate, ...]
    server_chain_der: tuple[bytes, ...]
    client_chain_der: tuple[bytes, ...]


def make_pki(directory: Path | None = None) -> Pki:
    """ECDSA P-256 everywhere (root, server leaf, client leaf), no intermediate."""
    where = directory or Path(tempfile.mkdtemp(prefix="tls13-bench-"))
    pki = generate_pki(where, key_type="ecdsa-p256", hosts=(SERVER_NAME, "127.0.0.1"))
    return Pki(
        directory=where,
        ca=where / "ca.pem",
        server_cert=where / "server.pem",
        server_key=where / "server.key",
        client_cert=where / "client.pem",
        client_key=where / "client.key",
        roots=tuple(pki.roots),
        server_chain_der=tuple(pki.server.chain_der),
        client_chain_der=tuple(pki.client.chain_der),
    )


@dataclass(frozen=True)
class Scenario:
    """One full-handshake configuration; verification (chain + host name) is always on."""

    group: str = "x25519"
    mutual: bool = False
    suite: str = DEFAULT_SUITE

    @property
    def label(self) -> str:
        return f"{self.group}{' mTLS' if self.mutual else ''}"


def server_hello_choice(flight: bytes) -> tuple[int, int] | None:
    """(cipher_suite, key_share group) of the plaintext ServerHello that opens a TLS server's
    first flight: proves from the wire what each library negotiated. None if absent."""
    if len(flight) < 9 or flight[0] != 22 or flight[5] != 2:
        return None
    body = memoryview(flight)[9:]
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # legacy_session_id_echo
    suite = int.from_bytes(body[pos : pos + 2], "big")
    pos += 3  # cipher_suite, legacy_compression_method
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    group = -1
    while pos + 4 <= end:
        ext_type = int.from_bytes(body[pos : pos + 2], "big")
        ext_len = int.from_bytes(body[pos + 2 : pos + 4], "big")
        if ext_type == 51 and ext_len >= 2:  # key_share (RFC 8446 §4.2.8)
            group = int.from_bytes(body[pos + 4 : pos + 6], "big")
        pos += 4 + ext_len
    return suite, group
