"""The shape every implementation's driver has: ``run(n)`` does n operations and returns the
seconds they took; ``negotiated`` is what the wire showed (suite, group) when known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class Unavailable(Exception):
    """This implementation cannot run this row here (the reason goes into the table)."""


@dataclass
class Runner:
    run: Callable[[int], float]
    negotiated: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    # Facts a run observed (retransmissions, datagram sizes), copied into the results.
    info: dict[str, object] = field(default_factory=dict)
