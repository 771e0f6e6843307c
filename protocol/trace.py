"""Observation of every record and handshake message, sent and received.

A trace hook is any callable taking one ``TraceEvent``. Connections check ``is not None``
once per record, so tracing costs nothing when off.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from handshake.messages import HandshakeType
from records.content_types import ContentType


@dataclass(frozen=True, slots=True)
class TraceEvent:
    direction: Literal["sent", "received"]
    kind: Literal["record", "handshake", "alert", "ack", "datagram", "note"]
    epoch: int
    content_type: str
    length: int
    detail: str = ""
    data: bytes = b""
    connection: str = ""


TraceHook = Callable[[TraceEvent], None]


def content_type_name(value: int) -> str:
    try:
        return ContentType(value).name
    except ValueError:
        return f"unknown({value})"


def handshake_name(value: int) -> str:
    try:
        return HandshakeType(value).name
    except ValueError:
        return f"unknown({value})"


class JsonLinesTrace:
    """Writes one JSON object per event (bytes as hex, with a timestamp)."""

    def __init__(self, target: str | Path | IO[str], *, include_data: bool = True) -> None:
        self._own = isinstance(target, str | Path)
        if isinstance(target, str | Path):
            self._fh: IO[str] = Path(target).open("a", encoding="utf-8")  # noqa: SIM115
        else:
            self._fh = target
        self._include_data = include_data
        self._lock = threading.Lock()

    def __call__(self, event: TraceEvent) -> None:
        record: dict[str, Any] = asdict(event)
        record["data"] = event.data.hex() if self._include_data else ""
        record["t"] = round(time.time(), 6)
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()


class TextTrace:
    """A readable one-line-per-event trace (the demo's output)."""

    def __init__(self, write: Callable[[str], None], *, prefix: str = "") -> None:
        self._write = write
        self._prefix = prefix

    def __call__(self, event: TraceEvent) -> None:
        arrow = "->" if event.direction == "sent" else "<-"
        label = event.detail or event.content_type
        self._write(
            f"{self._prefix}{arrow} [{event.kind:9s}] epoch {event.epoch} {label} "
            f"({event.length} bytes)"
        )
