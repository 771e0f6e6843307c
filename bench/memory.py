"""Python heap (tracemalloc) of established idle server-side connections, and the peak heap
of one handshake. Only Python allocations are seen: what ``cryptography`` keeps in OpenSSL's
own heap (AEAD contexts, keys) is not counted (--scale measures RSS for that)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

from protocol.connection.tls import TLSServerConnection

from . import ours
from .fixtures import Pki, Scenario

ROOT = Path(__file__).resolve().parent.parent
Sites = list[tuple[str, float]]


def _top_sites(snapshot: tracemalloc.Snapshot, count: int, limit: int = 8) -> Sites:
    """Where the held bytes were allocated (file:line relative to the repository), per
    connection, largest first: tells what to slim."""
    out = []
    for stat in snapshot.statistics("lineno")[:limit]:
        frame = stat.traceback[0]
        try:
            where = str(Path(frame.filename).resolve().relative_to(ROOT))
        except ValueError:
            where = Path(frame.filename).name
        out.append((f"{where}:{frame.lineno}", round(stat.size / count, 1)))
    return out


def tls_idle_per_connection(pki: Pki, count: int, sites: Sites | None = None) -> float:
    """Bytes of Python heap per established, idle TLSServerConnection (client ends dropped)."""
    client_config, server_config = ours.configs(pki, Scenario())
    now = time.time()
    ours.tls_handshake(client_config, server_config, now)  # caches, lazy imports
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        servers: list[TLSServerConnection] = []
        for _ in range(count):
            _, server, _ = ours.tls_handshake(client_config, server_config, now)
            servers.append(server)
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        if sites is not None:
            sites[:] = _top_sites(tracemalloc.take_snapshot(), count)
    finally:
        tracemalloc.stop()
    if not all(s.state == "connected" for s in servers):
        raise RuntimeError("a connection is not established")
    return (current - base) / count


def dtls_idle_per_connection(pki: Pki, count: int, sites: Sites | None = None) -> float:
    """Bytes per established DTLSServerConnection (no cookie exchange: its state is gone once
    the association exists), each with its own address as DTLSServer would hold it."""
    client_config, server_config = ours.configs(
        pki, Scenario(), server_extra={"dtls_cookie": False}
    )
    driver = ours.DTLSHandshake(client_config, server_config)
    now = time.time()
    warm = ("127.0.0.1", 1)
    driver.run_one(ours.SingleAssociation(server_config, warm), warm, now)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        held: list[ours.SingleAssociation] = []
        for i in range(count):
            address = ("127.0.0.1", 10000 + i)
            association = ours.SingleAssociation(server_config, address)
            driver.run_one(association, address, now)
            held.append(association)
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        if sites is not None:
            sites[:] = _top_sites(tracemalloc.take_snapshot(), count)
    finally:
        tracemalloc.stop()
    if not all(a.conn.handshake_complete for a in held):
        raise RuntimeError("an association is not established")
    return (current - base) / count


def handshake_peak(pki: Pki) -> float:
    """Peak Python heap above the starting point while one full TLS handshake (both ends,
    this process) runs."""
    client_config, server_config = ours.configs(pki, Scenario())
    now = time.time()
    ours.tls_handshake(client_config, server_config, now)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        ours.tls_handshake(client_config, server_config, now)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return float(peak - base)
