"""The matrix runner: every scenario x peer x role, in parallel, into matrix.md and matrix.json.

Each runnable cell runs in its own forked process (its own session, so a hung peer or a wedged
thread is killed with it at the cell's hard deadline) on one of ``jobs`` worker slots; a slot
owns a block of ports, so parallel cells never collide. Cells a peer cannot run are "n/a" with
the adapter's reason; a peer that is not installed makes its cells "fail" (never skipped).
Failing cells keep their folder (peer logs, command lines, our JSON-lines trace) under
``results/logs/``. Known peer bugs (``known_issues.json``) stay "fail", with the detail
"known peer bug: ...", and do not make the exit status non-zero.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .adapters import PEER_ORDER, make_peers
from .adapters.base import ROLES, Cell, CellFailure, Peer, Role
from .adapters.process import PORTS_PER_SLOT, PortPool
from .scenarios import SCENARIOS, Scenario, run

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KNOWN_ISSUES = HERE / "known_issues.json"
DEFAULT_JOBS = 3
STEP_TIMEOUT = 8.0  # any one wait inside a cell
CELL_TIMEOUT = 60.0  # hard limit of one cell (slow scenarios get more, see _deadline)


@dataclass
class CellResult:
    scenario: str
    peer: str
    role: Role
    status: str  # "pass" | "fail" | "n/a"
    detail: str
    seconds: float
    known: bool = False
    log_dir: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "peer": self.peer,
            "role": self.role,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Job:
    index: int
    scenario: Scenario
    peer: str
    role: Role

    @property
    def cell_id(self) -> str:
        return f"{self.scenario.name.replace('/', '_')}__{self.peer}__{self.role}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.cell_id.encode()) & 0xFFFF


@dataclass
class Options:
    peers: Sequence[str] = PEER_ORDER
    scenarios: Sequence[str] = ()  # glob patterns; empty: all
    roles: Sequence[Role] = ROLES
    jobs: int = DEFAULT_JOBS
    step_timeout: float = STEP_TIMEOUT
    cell_timeout: float = CELL_TIMEOUT
    results: Path = RESULTS
    keep: bool = False
    quiet: bool = False
    progress: bool | None = None  # None: when stdout is a terminal
    known_issues: Path = KNOWN_ISSUES
    partial: bool = field(init=False, default=False)


# -- planning --------------------------------------------------------------------------------------


def select_scenarios(patterns: Sequence[str]) -> list[Scenario]:
    if not patterns:
        return list(SCENARIOS)
    chosen = [s for s in SCENARIOS if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"no scenario matches {', '.join(patterns)}")
    return chosen


def plan(
    peers: dict[str, Peer], scenarios: Sequence[Scenario], roles: Sequence[Role]
) -> tuple[list[Job], list[CellResult]]:
    """The runnable jobs, and the cells decided without running (n/a, missing peers)."""
    jobs: list[Job] = []
    decided: list[CellResult] = []
    for scenario in scenarios:
        for name, peer in peers.items():
            for role in roles:
                reason = peer.supports(scenario.spec, role)
                if reason:
                    decided.append(CellResult(scenario.name, name, role, "n/a", reason, 0.0))
                elif peer.missing:
                    decided.append(CellResult(scenario.name, name, role, "fail", peer.missing, 0))
                else:
                    jobs.append(Job(len(jobs), scenario, name, role))
    return jobs, decided


def load_known_issues(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    entries = json.loads(path.read_text())
    if not isinstance(entries, list):
        raise SystemExit(f"{path}: expected a list of issues")
    for entry in entries:
        for key in ("peer", "scenario", "role", "reason", "evidence"):
            if not isinstance(entry.get(key), str):
                raise SystemExit(f"{path}: an issue lacks {key!r}: {entry}")
        if not isinstance(entry.get("match", ""), str):
            raise SystemExit(f"{path}: 'match' must be a string: {entry}")
    return list(entries)


def apply_known_issues(results: list[CellResult], issues: list[dict[str, str]]) -> list[str]:
    """Mark failing cells that are written-down peer bugs; returns notes about stale entries."""
    stale: list[str] = []
    for issue in issues:
        matched = False
        for result in results:
            if (
                result.peer == issue["peer"]
                and result.role == issue["role"]
                and fnmatch.fnmatchcase(result.scenario, issue["scenario"])
                # the recorded symptom, if given: another failure of the cell stays a failure
                and issue.get("match", "") in result.detail
            ):
                matched = True
                if result.status == "fail":
                    result.known = True
                    result.detail = f"known peer bug: {issue['reason']} — {result.detail}"
                elif result.status == "pass":
                    stale.append(
                        f"{issue['peer']} {issue['scenario']} {issue['role']}: known issue "
                        f"no longer reproduces"
                    )
        if not matched:
            continue
    return stale


# -- running one cell (in the forked child) --------------------------------------------------------


def _deadline(job: Job, options: Options) -> float:
    return options.cell_timeout * job.scenario.weight


def execute(
    job: Job,
    peer: Peer,
    slot: int,
    run_dir: Path,
    pki: Path,
    shared: Path,
    options: Options,
    port_start: int,
) -> CellResult:
    workdir = run_dir / job.cell_id
    workdir.mkdir(parents=True, exist_ok=True)
    cell = Cell(
        scenario=job.scenario.name,
        peer=job.peer,
        role=job.role,
        workdir=workdir,
        pki=pki,
        shared=shared,
        ports=PortPool(slot, port_start),
        timeout=options.step_timeout,
        seed=job.seed,
    )
    started = time.monotonic()
    status, detail = "fail", ""
    first_failure = ""
    for attempt in range(2):
        try:
            detail = run(cell, peer, job.scenario)
            status = "pass"
        except CellFailure as exc:
            detail = str(exc)
        except Exception as exc:
            detail = f"harness error: {type(exc).__name__}: {exc}"
            (workdir / "traceback.txt").write_text(traceback.format_exc())
        finally:
            cell.close()
        if status == "pass" or attempt == 1:
            break
        # One more try on a fresh cell: a loaded 2-core machine can starve a peer process.
        # The first failure stays in the detail, so a flaky cell is never a silent pass.
        first_failure = detail
        cell = replace(cell, workdir=workdir / "retry", notes=[], processes=[], cleanups=[])
        cell.workdir.mkdir(parents=True, exist_ok=True)
    if first_failure:
        detail = f"{detail} (first try failed: {first_failure})"
    if cell.notes:
        detail = "; ".join([detail, *cell.notes]) if detail else "; ".join(cell.notes)
    return CellResult(
        job.scenario.name, job.peer, job.role, status, detail, time.monotonic() - started
    )


def _child(
    conn: Connection,
    job: Job,
    peer: Peer,
    slot: int,
    run_dir: Path,
    pki: Path,
    shared: Path,
    options: Options,
    port_start: int,
) -> None:
    os.setsid()  # the parent kills the whole cell (and its peers, see _kill) at the deadline
    try:
        result = execute(job, peer, slot, run_dir, pki, shared, options, port_start)
        conn.send(asdict(result))
    finally:
        conn.close()
        os._exit(0)


def _kill(pid: int, workdir: Path) -> None:
    """Kill a cell past its deadline: its process group and every peer it started (each peer
    runs in a session of its own; their pids are in the cell's pids file)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    pids = workdir / "pids"
    if pids.exists():
        for line in pids.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(line), signal.SIGKILL)


# -- the run ---------------------------------------------------------------------------------------


class Progress:
    def __init__(self, total: int, decided: list[CellResult], enabled: bool, quiet: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.quiet = quiet
        self.done = 0
        self.counts = {"pass": 0, "fail": 0, "n/a": 0}
        for result in decided:
            self.counts[result.status] += 1
        self.started = time.monotonic()
        self.last_print = 0.0

    def line(self, running: list[str]) -> str:
        c = self.counts
        elapsed = time.monotonic() - self.started
        now = ", ".join(running[:3])
        return (
            f"[{self.done}/{self.total}] {elapsed:5.0f}s pass {c['pass']} fail {c['fail']} "
            f"n/a {c['n/a']} | {now}"
        )

    def update(self, running: list[str]) -> None:
        if self.quiet:
            return
        if self.enabled:
            text = self.line(running)[:160]
            sys.stdout.write("\r\x1b[K" + text)
            sys.stdout.flush()
        elif time.monotonic() - self.last_print > 15:
            self.last_print = time.monotonic()
            print(self.line(running), flush=True)

    def finished(self, result: CellResult) -> None:
        self.done += 1
        self.counts[result.status] += 1
        if self.quiet or result.status != "fail":
            return
        prefix = "\r\x1b[K" if self.enabled else ""
        mark = "known" if result.known else "FAIL"
        print(
            f"{prefix}{mark} {result.scenario} {result.peer} we={result.role}: "
            f"{result.detail[:200]}",
            flush=True,
        )


def run_matrix(options: Options) -> tuple[list[CellResult], dict[str, str], float]:
    """Run the (selected) matrix; returns every cell, the peers' versions and the run time."""
    started = time.monotonic()
    peers = make_peers(options.peers)
    scenarios = select_scenarios(options.scenarios)
    run_dir = Path(tempfile.mkdtemp(prefix="tls13-interop-"))
    pki, shared = run_dir / "pki", run_dir / "shared"
    shared.mkdir(parents=True)
    from protocol.pki import generate_pki

    generate_pki(pki)
    for peer in peers.values():
        if peer.missing:
            continue
        try:
            peer.prepare(shared, pki)
        except Exception as exc:
            peer.missing = f"{peer.name} set-up failed: {exc}"
    jobs, decided = plan(peers, scenarios, options.roles)
    if not options.partial:
        shutil.rmtree(options.results / "logs", ignore_errors=True)  # only this run's failures
    # Slow cells first, so the tail of the run is short ones spread over the workers.
    queue = sorted(jobs, key=lambda j: (-j.scenario.weight, j.index))
    total = len(jobs) + len(decided)
    enabled = sys.stdout.isatty() if options.progress is None else options.progress
    progress = Progress(total, decided, enabled, options.quiet)
    progress.done = len(decided)
    results: list[CellResult] = list(decided)
    context = multiprocessing.get_context("fork")
    free_slots = list(range(max(1, options.jobs)))
    slot_uses = dict.fromkeys(free_slots, 0)
    # Where this run's ports start in each block: random, so that two runs on one machine
    # (a developer's beside CI's) rarely pick the same port at the same time.
    run_offset = secrets.randbelow(PORTS_PER_SLOT)
    running: dict[int, tuple[Any, Connection, Job, int, float]] = {}
    # A cell killed at its hard limit runs once more (a hung peer on a loaded machine, like
    # the in-cell retry), its first timeout kept in the detail: cell id -> that detail.
    timed_out: dict[str, str] = {}
    while queue or running:
        while queue and free_slots:
            job = queue.pop(0)
            slot = free_slots.pop(0)
            start = (run_offset + slot_uses[slot] * 12) % PORTS_PER_SLOT
            slot_uses[slot] += 1
            parent_end, child_end = context.Pipe(duplex=False)
            process = context.Process(
                target=_child,
                args=(child_end, job, peers[job.peer], slot, run_dir, pki, shared, options, start),
            )
            process.start()
            child_end.close()
            deadline = time.monotonic() + _deadline(job, options)
            running[process.pid or 0] = (process, parent_end, job, slot, deadline)
        labels = [f"{j.scenario.name} {j.peer} {j.role}" for _, _, j, _, _ in running.values()]
        progress.update(labels)
        ready = wait([entry[1] for entry in running.values()], timeout=0.25)
        now = time.monotonic()
        for pid, (process, conn, job, slot, deadline) in list(running.items()):
            result: CellResult | None = None
            overdue = False
            if conn in ready:
                try:
                    result = CellResult(**conn.recv())
                except (EOFError, OSError):
                    result = _failed(job, "harness error: the cell process died", 0.0)
            elif now > deadline:
                limit, overdue = _deadline(job, options), True
                result = _failed(job, f"cell timed out after {limit:.0f} s", limit)
            if result is None:
                continue
            _kill(pid, run_dir / job.cell_id)  # the cell's processes, finished or overdue
            process.join(5)
            conn.close()
            del running[pid]
            free_slots.append(slot)
            first_timeout = timed_out.get(job.cell_id)
            if overdue and first_timeout is None:
                timed_out[job.cell_id] = result.detail
                queue.insert(0, job)  # once more, first in line
                continue
            if first_timeout is not None:
                result = replace(result, detail=f"{result.detail} (first try: {first_timeout})")
            results.append(result)
            _keep_logs(result, run_dir / job.cell_id, options)
            progress.finished(result)
    if progress.enabled and not options.quiet:
        sys.stdout.write("\r\x1b[K")
    if not options.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"cell folders kept in {run_dir}")
    versions = {name: peer.version for name, peer in peers.items()}
    order = {
        (s.name, p, r): i
        for i, (s, p, r) in enumerate(
            (s, p, r) for s in scenarios for p in peers for r in options.roles
        )
    }
    results.sort(key=lambda r: order[(r.scenario, r.peer, r.role)])
    return results, versions, time.monotonic() - started


def _failed(job: Job, detail: str, seconds: float) -> CellResult:
    return CellResult(job.scenario.name, job.peer, job.role, "fail", detail, seconds)


def _keep_logs(result: CellResult, workdir: Path, options: Options) -> None:
    target = options.results / "logs" / workdir.name
    shutil.rmtree(target, ignore_errors=True)  # a stale folder from an earlier run
    if result.status != "fail" or not workdir.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(workdir, target, ignore=shutil.ignore_patterns("bulk-*", "pids"))
    result.log_dir = str(target)


# -- reports ---------------------------------------------------------------------------------------


def matrix_json(results: list[CellResult], versions: dict[str, str]) -> dict[str, Any]:
    return {"cells": [r.public() for r in results], "peers": versions}


def counts(results: list[CellResult]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in results:
        per = out.setdefault(r.peer, {"pass": 0, "fail": 0, "known": 0, "n/a": 0})
        per["known" if r.known else r.status] += 1
    return out


def exit_status(results: list[CellResult]) -> int:
    """1 if a supported cell failed for a reason that is not a written-down peer bug."""
    return int(any(r.status == "fail" and not r.known for r in results))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def matrix_markdown(
    results: list[CellResult], versions: dict[str, str], seconds: float, jobs: int
) -> str:
    from .scenarios import BY_NAME

    peers = list(dict.fromkeys(r.peer for r in results))
    by_cell = {(r.scenario, r.peer, r.role): r for r in results}
    lines = [
        "# Interoperability matrix",
        "",
        f"Generated by `python -m interop` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" in {seconds:.0f} s ({jobs} workers). Role = the role **tls13** plays (client: our "
        "client against the peer's server; server: the peer's client against our server).",
        "",
        "| peer | version | pass | fail | known peer bug | n/a |",
        "|---|---|---|---|---|---|",
    ]
    total = {"pass": 0, "fail": 0, "known": 0, "n/a": 0}
    for peer, c in counts(results).items():
        lines.append(
            f"| {peer} | {versions.get(peer, '?')} | {c['pass']} | {c['fail']} | "
            f"{c['known']} | {c['n/a']} |"
        )
        for key in total:
            total[key] += c[key]
    lines.append(
        f"| **all** | | {total['pass']} | {total['fail']} | {total['known']} | {total['n/a']} |"
    )
    sections: dict[str, list[str]] = {}
    for name in dict.fromkeys(r.scenario for r in results):
        sections.setdefault(BY_NAME[name].section, []).append(name)
    for section, names in sections.items():
        notes: dict[str, int] = {}
        lines += ["", f"## {section}", ""]
        lines.append("| scenario | role | " + " | ".join(peers) + " |")
        lines.append("|---|---|" + "---|" * len(peers))
        for name in names:
            for role in ROLES:
                row = []
                for peer in peers:
                    r = by_cell.get((name, peer, role))
                    if r is None:
                        row.append("")
                        continue
                    mark = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}[r.status]
                    if r.known:
                        mark = "known bug"
                    if r.status != "pass":
                        key = r.detail.split(" — ")[0] if r.known else r.detail
                        number = notes.setdefault(key, len(notes) + 1)
                        mark += f" [{number}]"
                    row.append(mark)
                label = BY_NAME[name].title if name.startswith("tls-full/") else name
                lines.append(f"| {_md_escape(label)} | {role} | " + " | ".join(row) + " |")
        if notes:
            lines.append("")
            for text, number in notes.items():
                lines.append(f"{number}. {_md_escape(text)}")
    lines += ["", "## Passing cells: what was checked", ""]
    lines.append("| scenario | peer | role | s | detail |")
    lines.append("|---|---|---|---|---|")
    for r in results:
        if r.status == "pass" and r.detail:
            lines.append(
                f"| {r.scenario} | {r.peer} | {r.role} | {r.seconds:.1f} | {_md_escape(r.detail)} |"
            )
    return "\n".join(lines) + "\n"


def write_reports(
    results: list[CellResult], versions: dict[str, str], seconds: float, options: Options
) -> tuple[Path, Path]:
    options.results.mkdir(parents=True, exist_ok=True)
    stem = "partial" if options.partial else "matrix"
    json_path = options.results / f"{stem}.json"
    md_path = options.results / f"{stem}.md"
    json_path.write_text(json.dumps(matrix_json(results, versions), indent=1) + "\n")
    md_path.write_text(matrix_markdown(results, versions, seconds, options.jobs))
    return json_path, md_path


def summary(results: list[CellResult], seconds: float) -> str:
    lines = []
    for peer, c in counts(results).items():
        lines.append(
            f"  {peer:14s} pass {c['pass']:3d}  fail {c['fail']:3d}  "
            f"known {c['known']:2d}  n/a {c['n/a']:3d}"
        )
    lines.append(f"  {len(results)} cells in {seconds:.0f} s")
    return "\n".join(lines)
