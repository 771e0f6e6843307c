"""NSS key log format (the SSLKEYLOGFILE lines Wireshark and tshark read)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

KeyLog = Callable[[str, bytes, bytes], None]

_lock = threading.Lock()


def open_keylog(target: str | Path | Callable[[str], None] | None) -> KeyLog | None:
    """A writer of ``LABEL <client_random hex> <secret hex>`` lines, or None when off."""
    if target is None:
        return None
    if callable(target):
        sink = target

        def to_callable(label: str, client_random: bytes, secret: bytes) -> None:
            sink(f"{label} {client_random.hex()} {secret.hex()}")

        return to_callable
    path = Path(target)

    def to_file(label: str, client_random: bytes, secret: bytes) -> None:
        line = f"{label} {client_random.hex()} {secret.hex()}\n"
        # Append-only, one line per write: several connections may share the file.
        with _lock, path.open("a", encoding="ascii") as fh:
            fh.write(line)

    return to_file
