"""Where the real TLS/DTLS peers are: the peers.json written by interop/setup_peers.sh.

Interop tests call :func:`require`; a peer that is not installed raises :class:`PeerMissing`,
so the test fails (never skips) and the message says how to install it.

The cache folder is ``$TLS13_PEERS`` or ``~/.cache/tls13-peers``, the same default as the script.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SETUP_COMMAND = "interop/setup_peers.sh"

#: Every peer setup_peers.sh installs, by the name peers.json gives it.
PEER_NAMES: tuple[str, ...] = (
    "openssl",  # OpenSSL CLI (Debian 12): TLS 1.3, DTLS 1.2 only
    "gnutls",  # gnutls-serv / gnutls-cli (Debian 12): TLS 1.3
    "wolfssl",  # wolfSSL from sid, built: the main DTLS 1.3 peer
    "wolfssl-5.5.4",  # wolfSSL 5.5.4 from Debian 12, built: the older fleet
    "nss",  # NSS from sid (tstclnt, selfserv): the second DTLS 1.3 peer
    "mbedtls",  # mbedTLS from sid, built (ssl_server2, ssl_client2): TLS 1.3
    "tlslite-ng",  # pure-Python TLS 1.3 (pip)
    "pyopenssl",  # pyOpenSSL over cryptography's bundled OpenSSL (pip)
)


class PeerMissing(RuntimeError):
    """A peer the caller needs is not installed, or its files have gone."""


@dataclass(frozen=True)
class PeerInfo:
    """One installed peer, as peers.json describes it."""

    name: str
    version: str
    #: The peer's folder (built peers: run their examples from here) or its main executable.
    path: Path
    #: Executables by role: "server"/"client" (wolfSSL), "tstclnt" (NSS), "openssl", ...
    executables: Mapping[str, Path]
    #: Environment the executables need (NSS: LD_LIBRARY_PATH).
    env: Mapping[str, str]
    #: Anything else worth recording (Debian version, build flags, OpenSSL under pyOpenSSL).
    details: Mapping[str, str]

    def exe(self, role: str) -> Path:
        """The executable for *role*; PeerMissing if peers.json names none."""
        try:
            return self.executables[role]
        except KeyError:
            raise PeerMissing(
                f"peer {self.name} has no executable {role!r} "
                f"(has: {', '.join(sorted(self.executables)) or 'none'})"
            ) from None

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """*base* (default: this process's environment) with the peer's variables set."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged


def cache_dir() -> Path:
    """The folder setup_peers.sh installs into."""
    configured = os.environ.get("TLS13_PEERS")
    return Path(configured) if configured else Path.home() / ".cache" / "tls13-peers"


def peers_file() -> Path:
    return cache_dir() / "peers.json"


def _strings(name: str, field: str, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise PeerMissing(f"peers.json: {name}.{field} is not a mapping of strings")
    return dict(raw)


def _parse(name: str, raw: object) -> PeerInfo:
    if not isinstance(raw, dict):
        raise PeerMissing(f"peers.json: entry {name} is not an object")
    version, path = raw.get("version"), raw.get("path")
    if not isinstance(version, str) or not isinstance(path, str):
        raise PeerMissing(f"peers.json: entry {name} lacks a version or a path")
    executables = _strings(name, "executables", raw.get("executables"))
    return PeerInfo(
        name=name,
        version=version,
        path=Path(path),
        executables={role: Path(exe) for role, exe in executables.items()},
        env=_strings(name, "env", raw.get("env")),
        details=_strings(name, "details", raw.get("details")),
    )


def load_peers(path: Path | None = None) -> dict[str, PeerInfo]:
    """Every peer in peers.json (default: :func:`peers_file`); empty if there is no file yet."""
    source = peers_file() if path is None else path
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PeerMissing(f"{source} is not valid JSON ({exc}): run {SETUP_COMMAND}") from exc
    if not isinstance(raw, dict):
        raise PeerMissing(f"{source} is not a JSON object: run {SETUP_COMMAND}")
    return {name: _parse(name, entry) for name, entry in raw.items()}


def require(name: str) -> PeerInfo:
    """The installed peer *name*, with its files checked; PeerMissing otherwise."""
    source = peers_file()
    peer = load_peers(source).get(name)
    if peer is None:
        raise PeerMissing(
            f"peer {name} is not installed: run {SETUP_COMMAND} (not listed in {source})"
        )
    for needed in (peer.path, *peer.executables.values()):
        if not needed.exists():
            raise PeerMissing(
                f"peer {name} is not installed: run {SETUP_COMMAND} ({needed} is gone)"
            )
    return peer
