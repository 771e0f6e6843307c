"""Repetitions and their summary: every published figure is a median with its min and max."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MIN_REPS = 5

# Every duration is CPU time of this process by default: everything measured runs in this one
# thread, and other load on the machine (CI, other jobs) then does not count as our time.
_CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = [_CLOCKS["cpu"]]


def use_clock(name: str) -> None:
    _clock[0] = _CLOCKS[name]


def clock() -> float:
    """The benchmark clock, in seconds (see :func:`use_clock`)."""
    return _clock[0]()


@dataclass(frozen=True)
class Figure:
    """One measured quantity over ``reps`` repetitions (``samples`` in run order)."""

    unit: str
    samples: tuple[float, ...]
    # How much work one repetition did (handshakes, bytes, connections), for the reader.
    per_rep: int = 0
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def reps(self) -> int:
        return len(self.samples)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "reps": self.reps,
            "unit": self.unit,
            "samples": list(self.samples),
        }
        if self.per_rep:
            out["per_rep"] = self.per_rep
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Plan:
    """How long to run: ``quick`` uses fixed tiny counts, otherwise each repetition is sized
    to last about ``target_seconds`` (from a timed warm-up)."""

    quick: bool
    reps: int = MIN_REPS
    target_seconds: float = 0.6
    notes: list[str] = field(default_factory=list)

    def count(self, one_op_seconds: float, *, quick_count: int, cap: int = 1_000_000) -> int:
        if self.quick:
            return quick_count
        wanted = int(self.target_seconds / max(one_op_seconds, 1e-9))
        return max(quick_count, min(cap, wanted))


def time_figure(
    plan: Plan,
    run: Callable[[int], float],
    *,
    unit: str = "us",
    quick_count: int,
    cap: int = 1_000_000,
) -> Figure:
    """``run(n)`` does n operations and returns their seconds; the figure is µs per
    operation. One warm-up call (n=1) sizes n."""
    warm = run(1)
    n = plan.count(warm, quick_count=quick_count, cap=cap)
    samples = tuple(1e6 * run(n) / n for _ in range(plan.reps))
    return Figure(unit, samples, per_rep=n)


def value_figure(unit: str, values: list[float], *, per_rep: int = 0, note: str = "") -> Figure:
    return Figure(unit, tuple(values), per_rep=per_rep, note=note)


@dataclass
class Job:
    """One implementation's share of an interleaved measurement."""

    run: Callable[[int], float]
    quick_count: int
    scale: float = 1.0
    per: str = "rate"  # "rate": scale * n / seconds; "time": µs per operation
    cap: int = 1_000_000
    count: int = 0
    samples: list[float] = field(default_factory=list)

    def sample(self) -> None:
        seconds = self.run(self.count)
        if self.per == "rate":
            self.samples.append(self.scale * self.count / seconds)
        else:
            self.samples.append(1e6 * seconds / self.count)


def interleaved(
    plan: Plan, jobs: dict[str, Job], unit: str
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Measure several implementations of one row turn by turn: repetition 1 of each, then
    repetition 2 of each, ... so that a slow spell of the machine hits them all alike.
    Returns the figures and, per implementation, the error that stopped it (if any)."""
    errors: dict[str, str] = {}
    live: dict[str, Job] = {}
    for name, job in jobs.items():
        try:
            warm = job.run(1)
            job.count = plan.count(warm, quick_count=job.quick_count, cap=job.cap)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        live[name] = job
    for _ in range(plan.reps):
        for name, job in list(live.items()):
            try:
                job.sample()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                del live[name]
    figures = {
        name: Figure(unit if job.per == "rate" else "us", tuple(job.samples), per_rep=job.count)
        for name, job in live.items()
    }
    return figures, errors
