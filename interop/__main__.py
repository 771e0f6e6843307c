"""``python -m interop``: run the interop matrix; ``python -m interop probe HOST:PORT``: probe a
server.

    python -m interop                          # every scenario x peer x role (make interop)
    python -m interop --peers wolfssl,nss --scenarios 'dtls-*' -j 2
    python -m interop --list                   # the scenarios and what each peer supports
    python -m interop probe example.com:443    # which features a server has (make probe)
    python -m interop probe 127.0.0.1:4433 --dtls --cafile ca.pem --servername localhost
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from .adapters import PEER_ORDER, make_peers
from .adapters.base import ROLES, Role
from .runner import (
    CELL_TIMEOUT,
    DEFAULT_JOBS,
    KNOWN_ISSUES,
    RESULTS,
    STEP_TIMEOUT,
    Options,
    apply_known_issues,
    exit_status,
    load_known_issues,
    run_matrix,
    select_scenarios,
    summary,
    write_reports,
)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def matrix_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interop",
        description="Run tls13 against every installed TLS/DTLS peer (interop/setup_peers.sh) "
        "and write interop/results/matrix.md and matrix.json. Exit status 1 if a supported "
        "cell failed, unless it is a known peer bug (interop/known_issues.json).",
    )
    parser.add_argument(
        "--peers",
        type=_split,
        default=list(PEER_ORDER),
        help=f"comma-separated peers (default: all: {','.join(PEER_ORDER)})",
    )
    parser.add_argument(
        "--scenarios",
        type=_split,
        default=[],
        help="comma-separated scenario names or globs, e.g. 'dtls-*'",
    )
    parser.add_argument(
        "--roles", type=_split, default=list(ROLES), help="our roles: client,server (default both)"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"cells run in parallel (default {DEFAULT_JOBS})",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=STEP_TIMEOUT,
        help=f"seconds any one wait in a cell may take (default {STEP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=CELL_TIMEOUT,
        help=f"hard limit per cell, scaled by its weight (default {CELL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where matrix.md/.json and failing cells' logs go",
    )
    parser.add_argument("--known-issues", type=Path, default=KNOWN_ISSUES)
    parser.add_argument("--keep", action="store_true", help="keep every cell's folder")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--list", action="store_true", help="list scenarios and support, run nothing"
    )
    args = parser.parse_args(argv)
    roles = [cast(Role, r) for r in args.roles if r in ROLES]
    if args.list:
        return list_matrix(args.peers, args.scenarios, roles)
    options = Options(
        peers=args.peers,
        scenarios=args.scenarios,
        roles=roles,
        jobs=args.jobs,
        step_timeout=args.step_timeout,
        cell_timeout=args.cell_timeout,
        results=args.results,
        keep=args.keep,
        quiet=args.quiet,
        known_issues=args.known_issues,
    )
    options.partial = (
        bool(args.scenarios) or list(args.peers) != list(PEER_ORDER) or (list(roles) != list(ROLES))
    )
    issues = load_known_issues(options.known_issues)
    results, versions, seconds = run_matrix(options)
    for note in apply_known_issues(results, issues):
        print(f"note: {note}")
    json_path, md_path = write_reports(results, versions, seconds, options)
    print(summary(results, seconds))
    print(f"wrote {md_path} and {json_path}")
    return exit_status(results)


def list_matrix(peers: Sequence[str], patterns: Sequence[str], roles: Sequence[Role]) -> int:
    adapters = make_peers(peers)
    for scenario in select_scenarios(patterns):
        print(f"{scenario.name}: {scenario.title}")
        for name, peer in adapters.items():
            for role in roles:
                reason = peer.supports(scenario.spec, role)
                state = f"n/a ({reason})" if reason else ("MISSING" if peer.missing else "runs")
                print(f"    {name:14s} we={role:6s} {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "probe":
        from .probe import main as probe_main

        return probe_main(args[1:])
    return matrix_main(args)


if __name__ == "__main__":
    sys.exit(main())
