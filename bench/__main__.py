"""python -m bench [--quick] [--profile handshake|resumed|bulk] [--scale] [--only P] [--reps N]"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .stats import MIN_REPS, Plan, use_clock


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tls13 benchmarks against OpenSSL and tlslite-ng (see bench/README.md)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run (< 20 s)")
    parser.add_argument(
        "--profile",
        choices=("handshake", "resumed", "bulk"),
        help="cProfile our side only and print the top 25 entries (no table, no JSON)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="socket-level server tests: openssl s_time against ours and s_server, and idle "
        "connections' RSS (not part of the default run)",
    )
    parser.add_argument(
        "--reps", type=int, default=MIN_REPS, help=f"repetitions per figure (>= {MIN_REPS})"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PREFIX",
        help="run only rows whose id starts with PREFIX (repeatable); the JSON marks it partial",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time figures by this process's CPU time (default: other load on the machine does "
        "not count) or by the wall clock",
    )
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/latest.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _run_table(args: argparse.Namespace) -> int:
    from . import machine, report
    from .fixtures import make_pki
    from .suite import Bench

    started = time.perf_counter()
    plan = Plan(quick=args.quick, reps=args.reps)
    pki = make_pki()
    bench = Bench(pki, plan, tuple(args.only))
    if not args.quiet:
        bench.progress = lambda line: print(line, file=sys.stderr, flush=True)
    info = machine.describe()
    bench.run_all()
    rows = bench.ordered()
    report.print_table(rows, sys.stdout)
    duration = time.perf_counter() - started
    info["load_average_at_end"] = os.getloadavg()
    document = {
        "schema": 1,
        "generated": datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "partial": bool(args.only),
        "reps": plan.reps,
        "clock": args.clock,
        "duration_s": round(duration, 2),
        "machine": info,
        "rows": [row.to_json() for row in rows],
    }
    path = report.write_json(document, args.output)
    print(f"\n{len(rows)} rows in {duration:.1f} s -> {path}")
    errors = bench.errors()
    for line in errors:
        print(f"ERROR {line}", file=sys.stderr)
    return 1 if errors else 0


def _run_profile(args: argparse.Namespace) -> int:
    from . import profile
    from .fixtures import make_pki

    pki = make_pki()
    if args.profile == "handshake":
        profile.profile_handshake(pki, 20 if args.quick else 300)
    elif args.profile == "resumed":
        profile.profile_resumed(pki, 20 if args.quick else 300)
    else:
        profile.profile_bulk(pki, 200 if args.quick else 3000)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < MIN_REPS:
        print(f"--reps must be at least {MIN_REPS}", file=sys.stderr)
        return 2
    use_clock(args.clock)
    if args.profile:
        return _run_profile(args)
    if args.scale:
        from . import scale

        return scale.main(quick=args.quick)
    return _run_table(args)


if __name__ == "__main__":
    sys.exit(main())
