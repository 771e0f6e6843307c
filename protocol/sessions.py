"""Where a client keeps its session tickets between connections (RFC 8446 §4.6.1, §C.4).

A ``Session`` is what a NewSessionTicket leaves the client: the ticket, its resumption PSK and
what it was issued for. Stores are keyed by (server name, port) and hand each session out
once (``take``): RFC 8446 §C.4 says clients SHOULD NOT reuse a ticket, which also keeps a
passive observer from linking connections. Expired sessions are dropped.

The file store holds PSKs: it is written with mode 0600, atomically (write a temporary file in
the same directory, then rename over the old one), so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from handshake.psk import Session

FILE_FORMAT = "tls13-sessions"
FILE_VERSION = 1
MAX_SESSIONS_PER_SERVER = 4

__all__ = [
    "FileSessionStore",
    "InMemorySessionStore",
    "Session",
    "SessionStore",
    "session_from_json",
    "session_to_json",
]


class SessionStore(Protocol):
    """What a client connection needs from a session cache."""

    def add(self, server_name: str, port: int, session: Session) -> None:
        """Keep a session received from ``server_name``:``port``."""

    def take(self, server_name: str, port: int, now: float | None = None) -> Session | None:
        """Remove and return the newest unexpired session for the server, if any."""


Key = tuple[str, int]


def _prune(sessions: list[Session], now: float) -> list[Session]:
    return [s for s in sessions if not s.expired(now)]


class InMemorySessionStore:
    """Sessions in a dict, newest last, at most ``max_per_server`` per server."""

    def __init__(self, max_per_server: int = MAX_SESSIONS_PER_SERVER) -> None:
        self.max_per_server = max_per_server
        self._sessions: dict[Key, list[Session]] = {}

    def add(self, server_name: str, port: int, session: Session) -> None:
        key = (server_name, port)
        kept = _prune(self._sessions.get(key, []), time.time())
        kept.append(session)
        self._sessions[key] = kept[-self.max_per_server :]

    def take(self, server_name: str, port: int, now: float | None = None) -> Session | None:
        key = (server_name, port)
        kept = _prune(self._sessions.get(key, []), time.time() if now is None else now)
        session = kept.pop() if kept else None
        if kept:
            self._sessions[key] = kept
        else:
            self._sessions.pop(key, None)
        return session

    def __len__(self) -> int:
        return sum(len(v) for v in self._sessions.values())


def session_to_json(session: Session) -> dict[str, Any]:
    return {
        "ticket": session.ticket.hex(),
        "psk": session.psk.hex(),
        "suite": session.suite,
        "lifetime": session.lifetime,
        "age_add": session.age_add,
        "received_at": session.received_at,
        "max_early_data": session.max_early_data,
        "alpn": session.alpn.hex() if session.alpn is not None else None,
        "sni": session.sni,
        "dtls": session.dtls,
    }


def session_from_json(data: dict[str, Any]) -> Session:
    alpn = data.get("alpn")
    return Session(
        ticket=bytes.fromhex(data["ticket"]),
        psk=bytes.fromhex(data["psk"]),
        suite=int(data["suite"]),
        lifetime=int(data["lifetime"]),
        age_add=int(data["age_add"]),
        received_at=float(data["received_at"]),
        max_early_data=int(data.get("max_early_data", 0)),
        alpn=bytes.fromhex(alpn) if alpn is not None else None,
        sni=data.get("sni"),
        dtls=bool(data.get("dtls", False)),
    )


class FileSessionStore:
    """Sessions in a versioned JSON file, rewritten atomically on every change.

    Every call reads the file afresh, so separate processes (e.g. successive CLI runs)
    share it; concurrent writers do not corrupt it, the last rename wins.
    """

    def __init__(self, path: str | os.PathLike[str], max_per_server: int = MAX_SESSIONS_PER_SERVER):
        self.path = Path(path)
        self.max_per_server = max_per_server

    # -- file format ------------------------------------------------------------------------

    def load(self, now: float | None = None) -> dict[Key, list[Session]]:
        """Everything unexpired in the file (missing file: nothing)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        document = json.loads(text)
        if document.get("format") != FILE_FORMAT:
            raise ValueError(f"{self.path} is not a session file")
        if document.get("version") != FILE_VERSION:
            raise ValueError(f"{self.path}: unsupported session file version")
        now = time.time() if now is None else now
        out: dict[Key, list[Session]] = {}
        for entry in document.get("sessions", []):
            session = session_from_json(entry)
            if not session.expired(now):
                out.setdefault((entry["server_name"], int(entry["port"])), []).append(session)
        return out

    def save(self, sessions: dict[Key, list[Session]], now: float | None = None) -> None:
        now = time.time() if now is None else now
        entries = [
            {"server_name": name, "port": port, **session_to_json(s)}
            for (name, port), kept in sessions.items()
            for s in _prune(kept, now)[-self.max_per_server :]
        ]
        document = {"format": FILE_FORMAT, "version": FILE_VERSION, "sessions": entries}
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)  # the file holds resumption PSKs
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # -- SessionStore -----------------------------------------------------------------------

    def add(self, server_name: str, port: int, session: Session) -> None:
        sessions = self.load()
        sessions.setdefault((server_name, port), []).append(session)
        self.save(sessions)

    def take(self, server_name: str, port: int, now: float | None = None) -> Session | None:
        sessions = self.load(now)
        kept = sessions.get((server_name, port), [])
        session = kept.pop() if kept else None
        if session is not None or self.path.exists():
            self.save(sessions, now)  # also drops what expired
        return session
