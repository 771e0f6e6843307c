"""Reader for the hex blocks of the RFC 8448 trace file (shared by tests that need vectors).

A block in the trace looks like::

       {server}  construct a ServerHello handshake message

          ServerHello (90 octets):  02 00 00 56 03 03 12 74 99 14 95 cf 42
             58 57 26 2d ...

Blocks may run across page breaks (form feed, running header/footer). Every block is checked
against its declared octet count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.shared_data import SHARED

TRACE_FILE = SHARED / "rfc" / "tls13-example-traces.txt"

_SECTION = re.compile(r"^(\d+)\.\s{2}\S")
_ACTION = re.compile(r"^\s+(\{(?:client|server)\}.*?):?\s*$")
_LABEL = re.compile(r"^(\s+)([^\s:{][^:]*?):\s+((?:[0-9a-f]{2}(?: |$))+|\(empty\))\s*$")
_HEX_LINE = re.compile(r"^(\s+)((?:[0-9a-f]{2}(?: |$))+)\s*$")
_PAGE_JUNK = re.compile(r"^(\f|Thomson\s.*\[Page \d+\]|Internet-Draft\s.*|\s*)$")
_OCTETS = re.compile(r"\((\d+) octets?\)")


@dataclass(frozen=True)
class HexBlock:
    section: str
    action: str  # the preceding "{client}  ..." / "{server}  ..." line
    label: str  # e.g. "ClientHello (196 octets)"
    data: bytes

    @property
    def heading(self) -> str:
        return f"{self.action} | {self.label}"


def _strip_hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@cache
def all_blocks() -> tuple[HexBlock, ...]:
    lines = TRACE_FILE.read_text(encoding="ascii").split("\n")
    blocks: list[HexBlock] = []
    section = ""
    action = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := _SECTION.match(line):
            section, action = m.group(1), ""
            continue
        if m := _ACTION.match(line):
            action = m.group(1)
            continue
        m = _LABEL.match(line)
        if not m or not section:
            continue
        indent, label, first = len(m.group(1)), m.group(2), m.group(3)
        parts = [] if first == "(empty)" else [first]
        # Continuation lines are indented deeper than the label; page furniture in between
        # is skipped, anything else ends the block.
        j = i
        while j < len(lines):
            nxt = lines[j]
            h = _HEX_LINE.match(nxt)
            if h and len(h.group(1)) > indent:
                parts.append(h.group(2))
                j += 1
                i = j
                continue
            if _PAGE_JUNK.match(nxt):
                j += 1
                continue
            break
        data = _strip_hex(" ".join(parts))
        if (n := _OCTETS.search(label)) is not None and int(n.group(1)) != len(data):
            raise ValueError(f"§{section} {label}: parsed {len(data)} octets")
        blocks.append(HexBlock(section, action, label, data))
    return tuple(blocks)


def find_blocks(section: str, heading_contains: str) -> list[HexBlock]:
    """All blocks of ``section`` whose "action | label" heading contains the string."""
    return [b for b in all_blocks() if b.section == section and heading_contains in b.heading]


def hex_block(section: str, heading_contains: str, index: int = 0) -> bytes:
    """The ``index``-th hex block in top-level ``section`` (e.g. "3") whose heading contains
    ``heading_contains``. The heading is "<action line> | <label>", for instance
    ``{server}  construct a ServerHello handshake message | ServerHello (90 octets)``, so both
    ``"ServerHello ("`` and ``"construct a ServerHello"`` select it."""
    matches = find_blocks(section, heading_contains)
    if index >= len(matches):
        raise LookupError(f"§{section}: no block #{index} matching {heading_contains!r}")
    return matches[index].data


def _int(label: str) -> int:
    return int.from_bytes(hex_block("2", label), "big")


@cache
def server_rsa_private_key() -> rsa.RSAPrivateKey:
    """The RSA key of §2 (the "rsa" certificate's key in §3, §4, §5 and §7).

    The CRT values (exponent1/2, coefficient) are taken from the trace when it shows them and
    computed from the primes otherwise."""
    p, q, d = _int("prime1"), _int("prime2"), _int("private exponent")
    public = rsa.RSAPublicNumbers(_int("public exponent"), _int("modulus (public)"))

    def crt(label: str, compute: int) -> int:
        try:
            return _int(label)
        except LookupError:
            return compute

    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=crt("exponent1", rsa.rsa_crt_dmp1(d, p)),
        dmq1=crt("exponent2", rsa.rsa_crt_dmq1(d, q)),
        iqmp=crt("coefficient", rsa.rsa_crt_iqmp(p, q)),
        public_numbers=public,
    )
    return numbers.private_key()
