"""The five TLS 1.3 cipher suites (RFC 8446 §B.4) and the parameters the key schedule needs.

A TLS 1.3 suite names only an AEAD and the hash used by HKDF and the transcript; key exchange
and authentication are negotiated separately (RFC 8446 §4.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass

TLS_AES_128_GCM_SHA256 = 0x1301
TLS_AES_256_GCM_SHA384 = 0x1302
TLS_CHACHA20_POLY1305_SHA256 = 0x1303
TLS_AES_128_CCM_SHA256 = 0x1304
TLS_AES_128_CCM_8_SHA256 = 0x1305


@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str  # IANA name
    hash_name: str  # hashlib name: "sha256" | "sha384"
    hash_len: int
    key_len: int
    iv_len: int  # RFC 8446 §5.3: N_MIN 8, every suite here uses 12
    aead: str  # "AES-GCM" | "CHACHA20-POLY1305" | "AES-CCM" | "AES-CCM-8"
    tag_len: int  # 16, or 8 for CCM_8 (RFC 6655)


def _suite(
    code: int, name: str, hash_name: str, key_len: int, aead: str, tag_len: int
) -> CipherSuite:
    hash_len = 48 if hash_name == "sha384" else 32
    return CipherSuite(code, name, hash_name, hash_len, key_len, 12, aead, tag_len)


# RFC 8446 §B.4
CIPHER_SUITES: dict[int, CipherSuite] = {
    s.code: s
    for s in (
        _suite(TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", "sha256", 16, "AES-GCM", 16),
        _suite(TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", "sha384", 32, "AES-GCM", 16),
        _suite(
            TLS_CHACHA20_POLY1305_SHA256,
            "TLS_CHACHA20_POLY1305_SHA256",
            "sha256",
            32,
            "CHACHA20-POLY1305",
            16,
        ),
        _suite(TLS_AES_128_CCM_SHA256, "TLS_AES_128_CCM_SHA256", "sha256", 16, "AES-CCM", 16),
        _suite(TLS_AES_128_CCM_8_SHA256, "TLS_AES_128_CCM_8_SHA256", "sha256", 16, "AES-CCM-8", 8),
    )
}

_BY_NAME: dict[str, CipherSuite] = {s.name: s for s in CIPHER_SUITES.values()}

# CCM suites are supported but opt-in: RFC 8446 §9.1 only makes TLS_AES_128_GCM_SHA256 mandatory,
# and common peers do not enable CCM by default.
DEFAULT_CIPHER_SUITES: tuple[int, ...] = (
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256,
)


def suite_by_name(name: str) -> CipherSuite:
    """Look a suite up by its IANA name; unknown names raise ``ValueError`` (a config error)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown TLS 1.3 cipher suite {name!r}") from None
