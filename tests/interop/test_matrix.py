"""The full interop matrix (``python -m interop``), as CI runs it, and the runner's own rules.

``test_full_matrix`` runs every scenario x peer x role (about 90 s on 2 cores with 3 workers)
and requires exit status 0: every supported cell passes or is a written-down peer bug
(interop/known_issues.json). matrix.json must hold every cell, each with a valid status, and
the peers' versions. The other tests check the runner without peers: the plan never drops a
cell, known issues only excuse failures, and the lossy relay is deterministic per seed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from interop.adapters import PEER_ORDER, make_peers
from interop.adapters.base import ROLES
from interop.relay import Impairment, LossyRelay
from interop.runner import (
    KNOWN_ISSUES,
    CellResult,
    apply_known_issues,
    exit_status,
    load_known_issues,
    plan,
)
from interop.scenarios import SCENARIOS

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
MATRIX_BUDGET = 600.0  # the issue's CI limit for the whole matrix on 2 cores


def test_full_matrix(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "interop", "--results", str(tmp_path), "--quiet"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=MATRIX_BUDGET,
        check=False,
    )
    seconds = time.monotonic() - started
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    assert set(matrix) == {"cells", "peers"}
    assert set(matrix["peers"]) == set(PEER_ORDER)
    cells = matrix["cells"]
    expected = {(s.name, p, r) for s in SCENARIOS for p in PEER_ORDER for r in ROLES}
    seen = [(c["scenario"], c["peer"], c["role"]) for c in cells]
    assert len(seen) == len(set(seen)), "a cell appears twice"
    assert set(seen) == expected, f"missing: {sorted(expected - set(seen))[:5]}"
    for cell in cells:
        assert cell["status"] in ("pass", "fail", "n/a"), cell
        assert isinstance(cell["detail"], str) and isinstance(cell["seconds"], float), cell
        if cell["status"] != "pass":
            assert cell["detail"], f"a {cell['status']} cell without its reason: {cell}"
    failing = [
        f"{c['scenario']} {c['peer']} we={c['role']}: {c['detail'][:160]}"
        for c in cells
        if c["status"] == "fail" and not c["detail"].startswith("known peer bug")
    ]
    assert done.returncode == 0, "\n".join(failing) + "\n" + done.stdout[-2000:] + done.stderr
    assert not failing
    assert (tmp_path / "matrix.md").read_text().startswith("# Interoperability matrix")
    assert seconds < MATRIX_BUDGET


def test_plan_accounts_for_every_cell() -> None:
    """Every scenario x peer x role is either a job or decided (n/a or a missing peer)."""
    peers = make_peers()
    jobs, decided = plan(peers, SCENARIOS, ROLES)
    cells = [(j.scenario.name, j.peer, j.role) for j in jobs]
    cells += [(d.scenario, d.peer, d.role) for d in decided]
    assert len(cells) == len(SCENARIOS) * len(PEER_ORDER) * 2 == len(set(cells))
    for result in decided:
        assert result.status in ("n/a", "fail") and result.detail


def test_known_issues_excuse_failures_only() -> None:
    issues = load_known_issues(KNOWN_ISSUES)
    assert issues, "interop/known_issues.json lists the peer bugs"
    for issue in issues:
        assert issue["peer"] in PEER_ORDER and issue["role"] in ROLES
        assert any(s.name == issue["scenario"] for s in SCENARIOS), issue
        assert "SPEC_NOTES" in issue["evidence"] or "PEERS" in issue["evidence"]
    first = issues[0]
    cell = (first["scenario"], first["peer"], first["role"])
    failed = CellResult(*cell, "fail", f"x {first.get('match', '')} y", 1.0)  # type: ignore[arg-type]
    other = CellResult("tls-alpn", "openssl", "client", "fail", "boom", 1.0)
    results = [failed, other]
    apply_known_issues(results, issues)
    assert failed.known and failed.status == "fail"
    assert failed.detail.startswith("known peer bug: ")
    assert not other.known
    assert exit_status(results) == 1  # the unexplained failure still counts
    assert exit_status([failed]) == 0
    if first.get("match"):
        # the same cell failing another way is not excused
        different = CellResult(*cell, "fail", "something else broke", 1.0)  # type: ignore[arg-type]
        apply_known_issues([different], issues)
        assert not different.known


def _relay_decisions(seed: int) -> list[str]:
    """Decisions of the relay for 40 handshake-like datagrams from a client."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    relay = LossyRelay(0, server.getsockname(), seed=seed, impairment=Impairment(hold=0.01))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(40):
            client.sendto(b"\x16" + bytes([i]), ("127.0.0.1", relay.port))
            time.sleep(0.002)
        time.sleep(0.1)
        return [line.split(" ", 2)[2] for line in relay.stats.log]
    finally:
        relay.close()
        client.close()
        server.close()


def test_lossy_relay_is_seeded() -> None:
    first, again, other = _relay_decisions(7), _relay_decisions(7), _relay_decisions(8)
    assert first == again
    assert first != other
    actions = {line.split()[-1] for line in first}
    assert {"drop", "duplicate", "reorder", "pass"} <= actions


def test_lossy_relay_passes_application_data() -> None:
    """Only handshake-phase datagrams are impaired (DTLS never retransmits application
    data): an epoch-3 record (unified header 0x2f) always gets through."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(2)
    relay = LossyRelay(0, server.getsockname(), seed=1, impairment=Impairment(drop=1.0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: list[bytes] = []

    def receive() -> None:
        try:
            while True:
                got.append(server.recv(100))
        except OSError:
            pass

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    try:
        client.sendto(b"\x16handshake", ("127.0.0.1", relay.port))
        client.sendto(b"\x2fapplication", ("127.0.0.1", relay.port))
        time.sleep(0.3)
    finally:
        relay.close()
        client.close()
        server.close()
        reader.join(3)
    assert got == [b"\x2fapplication"]


def test_an_overdue_cell_runs_once_more_and_keeps_its_first_timeout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "interop", "--peers", "openssl", "--roles", "client",
         "--scenarios", "tls-full/TLS_AES_128_GCM_SHA256/x25519", "--cell-timeout", "0.01",
         "--results", str(tmp_path), "--quiet"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (cell,) = json.loads((tmp_path / "partial.json").read_text())["cells"]
    assert cell["status"] == "fail"
    assert (
        cell["detail"].startswith("cell timed out")
        and "(first try: cell timed out" in cell["detail"]
    )
