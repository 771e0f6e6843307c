"""Peer adapters: one per peer implementation, built from the installed peers (peers.json)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..peers import PeerInfo, PeerMissing, load_peers
from .base import Peer

#: Every peer of the matrix, in the order its columns appear.
PEER_ORDER: tuple[str, ...] = (
    "openssl",
    "python-ssl",
    "pyopenssl",
    "gnutls",
    "tlslite-ng",
    "wolfssl",
    "wolfssl-5.5.4",
    "nss",
    "mbedtls",
)


def _openssl(info: PeerInfo | None) -> Peer:
    from .openssl_cli import OpenSSL

    if info is None:
        return OpenSSL("?", None, missing="openssl is not installed")
    return OpenSSL(info.version, info.exe("openssl"))


def _python_ssl(info: PeerInfo | None) -> Peer:
    from .inprocess import PythonSSL

    return PythonSSL()


def _pyopenssl(info: PeerInfo | None) -> Peer:
    from .inprocess import PyOpenSSL

    return PyOpenSSL(info)


def _tlslite(info: PeerInfo | None) -> Peer:
    from .inprocess import TLSLite

    return TLSLite(info)


def _gnutls(info: PeerInfo | None) -> Peer:
    from .gnutls import GnuTLS

    return GnuTLS(info)


def _wolfssl(info: PeerInfo | None, name: str) -> Peer:
    from .wolfssl import WolfSSL

    return WolfSSL(name, info)


def _nss(info: PeerInfo | None) -> Peer:
    from .nss import NSS

    return NSS(info)


def _mbedtls(info: PeerInfo | None) -> Peer:
    from .mbedtls import MbedTLS

    return MbedTLS(info)


FACTORIES: dict[str, Callable[[PeerInfo | None], Peer]] = {
    "openssl": _openssl,
    "python-ssl": _python_ssl,
    "pyopenssl": _pyopenssl,
    "gnutls": _gnutls,
    "tlslite-ng": _tlslite,
    "wolfssl": lambda info: _wolfssl(info, "wolfssl"),
    "wolfssl-5.5.4": lambda info: _wolfssl(info, "wolfssl-5.5.4"),
    "nss": _nss,
    "mbedtls": _mbedtls,
}


def make_peers(names: Sequence[str] | None = None) -> dict[str, Peer]:
    """The adapters for ``names`` (default: every peer), from peers.json. A peer that is not
    installed still gets an adapter, whose ``missing`` says so: its cells fail, never vanish."""
    try:
        installed = load_peers()
        broken = None
    except PeerMissing as exc:
        installed, broken = {}, str(exc)
    peers: dict[str, Peer] = {}
    for name in names or PEER_ORDER:
        if name not in FACTORIES:
            raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEER_ORDER)}")
        key = "openssl" if name == "python-ssl" else name
        info = installed.get(key)
        peer = FACTORIES[name](info)
        peer.name = name
        if info is None and name != "python-ssl":
            peer.missing = broken or f"{name} is not installed: run interop/setup_peers.sh"
        else:
            missing = [str(p) for p in (info.path, *info.executables.values())] if info else []
            gone = [p for p in missing if not __import__("os").path.exists(p)]
            if gone:
                peer.missing = f"{name}: {gone[0]} is gone: run interop/setup_peers.sh"
        peers[name] = peer
    return peers


__all__ = ["PEER_ORDER", "Peer", "make_peers"]
