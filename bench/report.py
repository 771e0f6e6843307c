"""The printed table and bench/results/latest.json."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .stats import Figure
from .suite import IMPL_TITLES, IMPLS, Row

RESULTS = Path(__file__).resolve().parent / "results"
SECTION_TITLES = {
    "handshake": "TLS 1.3 handshakes per second (in memory, chain + host name verified)",
    "dtls": "DTLS 1.3 handshakes per second (ours)",
    "bulk": "Bulk transfer, one way (in memory)",
    "floor": "Crypto floor: the library calls of one handshake alone (us per handshake)",
    "memory": "Memory (tracemalloc)",
}
TITLE_WIDTH = 44
CELL_WIDTH = 21


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(figure: Figure | None) -> str:
    if figure is None:
        return "-"
    return f"{_num(figure.median)} [{_num(figure.min)}-{_num(figure.max)}]"


def _short(row: Row) -> str:
    title = row.label or row.title
    return title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1] + "…"


def _line(parts: Iterable[str], widths: Iterable[int]) -> str:
    return " ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip()


def print_table(rows: list[Row], out: TextIO) -> None:
    sections: dict[str, list[Row]] = {}
    for row in rows:
        sections.setdefault(row.section, []).append(row)
    for section, members in sections.items():
        if section == "-":
            continue
        print(f"\n== {SECTION_TITLES.get(section, section)}", file=out)
        if section in ("handshake", "bulk"):
            _rate_table(members, out)
        elif section == "floor":
            _floor_table(members, out)
        else:
            _single_table(members, out)


def _rate_table(rows: list[Row], out: TextIO) -> None:
    widths = [TITLE_WIDTH, 10] + [CELL_WIDTH] * len(IMPLS) + [10, 10, 10]
    head = ["", "unit"] + [IMPL_TITLES[i] for i in IMPLS] + ["/OpenSSL", "/pyOpenSSL", "/tlslite"]
    print(_line(head, widths), file=out)
    for row in rows:
        if row.status != "ok":
            print(_line([_short(row), row.reason or row.status], [TITLE_WIDTH, 80]), file=out)
            continue
        ratios = row.ratios()
        cells = []
        for impl in IMPLS:
            if impl in row.results:
                cells.append(cell(row.results[impl]))
            elif impl in row.errors:
                cells.append("ERROR")
            else:
                cells.append("n/a")
        ratio_cells = [
            f"{ratios[k]:.2f}x" if k in ratios else "-"
            for k in ("ours/openssl", "ours/pyopenssl", "ours/tlslite")
        ]
        print(_line([_short(row), row.unit, *cells, *ratio_cells], widths), file=out)
    for row in rows:
        if "ratio_to_our_tls" in row.info:
            ratio = row.info["ratio_to_our_tls"]
            print(f"  {_short(row)}: {ratio:.2f}x our TLS (measured interleaved)", file=out)
        if "ratio_to_our_full" in row.info:
            ratio = row.info["ratio_to_our_full"]
            print(
                f"  {_short(row)}: {ratio:.2f}x our full handshake (measured interleaved)",
                file=out,
            )


def _single_table(rows: list[Row], out: TextIO) -> None:
    for row in rows:
        if row.status != "ok":
            print(f"  {row.title}: {row.reason or row.status}", file=out)
            continue
        figure = row.results.get("ours")
        extra = ""
        if "ratio_to_our_tls" in row.info:
            extra = f"  ({row.info['ratio_to_our_tls']:.2f}x our TLS"
            if "ratio_to_our_full" in row.info:
                extra += f", {row.info['ratio_to_our_full']:.2f}x our full DTLS"
            extra += ")"
        retrans = row.info.get("ours", {}).get("retransmissions_per_handshake")
        if retrans:
            extra += f"  [{retrans} retransmissions/handshake]"
        text = cell(figure) if figure else "ERROR " + "; ".join(row.errors.values())
        print(f"  {row.title:<80} {text} {row.unit}{extra}", file=out)


def _floor_table(rows: list[Row], out: TextIO) -> None:
    widths = [TITLE_WIDTH, CELL_WIDTH, CELL_WIDTH, 10, CELL_WIDTH, 10, CELL_WIDTH, 10]
    head = ["", "floor", "ours", "overhead", "OpenSSL (ssl)", "overhead", "pyOpenSSL", "overhead"]
    print(_line(head, widths), file=out)
    for row in rows:
        overhead: dict[str, Any] = row.info.get("overhead", {})

        def ov(impl: str, overhead: dict[str, Any] = overhead) -> str:
            return f"{overhead[impl]['median']:.2f}" if impl in overhead else "-"

        cells = [
            _short(row),
            cell(row.results.get("floor")),
            cell(row.results.get("ours")),
            ov("ours"),
            cell(row.results.get("openssl")),
            ov("openssl"),
            cell(row.results.get("pyopenssl")),
            ov("pyopenssl"),
        ]
        print(_line(cells, widths), file=out)
    first = rows[0].info.get("floor_components_us") if rows else None
    if first:
        parts = ", ".join(f"{k} {v['median']:.0f}" for k, v in first.items())
        print(f"  {rows[0].id} components (us): {parts}", file=out)


def write_json(document: dict[str, Any], path: Path | None = None) -> Path:
    target = path or RESULTS / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(target)
    return target
