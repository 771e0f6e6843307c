"""``python -m bench --profile handshake|resumed|bulk``: cProfile of our code only (no other library
runs), top entries by cumulative and by own time, with file:line relative to the repository."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import TextIO

from protocol.events import Event

from . import ours
from .fixtures import Pki, Scenario

ROOT = Path(__file__).resolve().parent.parent
TOP = 25


def _where(filename: str, line: int, function: str) -> str:
    if filename == "~":  # a builtin or C function
        return function
    path = Path(filename)
    try:
        name = str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        name = (
            "/".join(parts[parts.index("site-packages") + 1 :])
            if "site-packages" in parts
            else path.name
        )
    return f"{name}:{line}({function})"


def print_top(profiler: cProfile.Profile, out: TextIO, *, total_ops: int, what: str) -> None:
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in entries.values()) if entries else 0.0
    for key, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
        index = 3 if key == "cumulative" else 2
        rows = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)[:TOP]
        print(f"\n{what}: top {TOP} by {title} over {total_ops} ops", file=out)
        print(f"{'ncalls':>9} {'tottime':>8} {'cumtime':>8} {'us/op':>8}  function", file=out)
        for (filename, line, function), (cc, nc, tt, ct, _callers) in rows:
            calls = f"{nc}" if nc == cc else f"{nc}/{cc}"
            per_op = 1e6 * (ct if key == "cumulative" else tt) / total_ops
            print(
                f"{calls:>9} {tt:8.3f} {ct:8.3f} {per_op:8.1f}  {_where(filename, line, function)}",
                file=out,
            )
    print(f"(profiled total {total:.3f} s)", file=out)


def profile_handshake(pki: Pki, count: int, out: TextIO = sys.stdout) -> None:
    client_config, server_config = ours.configs(pki, Scenario())
    now = time.time()
    ours.tls_handshake(client_config, server_config, now)  # warm caches outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        ours.tls_handshake(client_config, server_config, now)
    profiler.disable()
    print_top(profiler, out, total_ops=count, what="TLS 1.3 full handshake x25519 (client+server)")


def profile_resumed(pki: Pki, count: int, out: TextIO = sys.stdout) -> None:
    client_config, issuing, resuming = ours.resumption_configs(pki)
    now = time.time()
    events: list[Event] = []
    ours.tls_handshake(client_config, issuing, now, client_events=events)
    session = ours.first_session(events)
    ours.tls_handshake(client_config, resuming, now, session=session)  # warm caches
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        ours.tls_handshake(client_config, resuming, now, session=session)
    profiler.disable()
    print_top(
        profiler, out, total_ops=count, what="TLS 1.3 resumed handshake psk_dhe_ke (client+server)"
    )


def profile_bulk(pki: Pki, count: int, out: TextIO = sys.stdout) -> None:
    for size, n in ((16384, count), (64, count * 8)):
        runner = ours.bulk_runner(pki, "TLS_AES_128_GCM_SHA256", size)
        runner.run(1)
        profiler = cProfile.Profile()
        profiler.enable()
        runner.run(n)
        profiler.disable()
        print_top(profiler, out, total_ops=n, what=f"TLS bulk AES-128-GCM, {size}-byte records")
    dtls = ours.dtls_bulk_runner(pki, 1200)
    dtls.run(1)
    profiler = cProfile.Profile()
    profiler.enable()
    dtls.run(count)
    profiler.disable()
    print_top(
        profiler, out, total_ops=count, what="DTLS bulk, 16 KiB sends in 1,200-byte datagrams"
    )
