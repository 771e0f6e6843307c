"""Every row of the benchmark: what runs, on which implementations, and how many times.

A row is one question ("full x25519 handshakes per second") answered by up to four
implementations: ours, OpenSSL 3 through Python's ``ssl`` ("openssl"), OpenSSL 4 through
pyOpenSSL ("pyopenssl") and tlslite-ng ("tlslite"). An implementation that cannot run a row
here is listed with the reason; a row that cannot exist yet is ``n/a`` with its reason.
"""

from __future__ import annotations

import functools
import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import floor as floor_mod
from . import memory, openssl_py, openssl_ssl, ours, tlslite_ng
from .fixtures import (
    DEFAULT_SUITE,
    GROUP_CODES,
    SUITES,
    Pki,
    Scenario,
)
from .runners import Runner, Unavailable
from .stats import Figure, Plan, rate_figure, time_figure, value_figure

IMPLS = ("ours", "openssl", "pyopenssl", "tlslite")
IMPL_TITLES = {
    "ours": "ours",
    "openssl": "OpenSSL (ssl)",
    "pyopenssl": "OpenSSL (pyOpenSSL)",
    "tlslite": "tlslite-ng",
}
RESUMPTION_NA = "n/a: resumption not implemented yet"

HANDSHAKE_SCENARIOS = {
    "handshake.tls13.x25519": ("x25519 + ECDSA P-256", Scenario("x25519")),
    "handshake.tls13.secp256r1": ("secp256r1 + ECDSA P-256", Scenario("secp256r1")),
    "handshake.tls13.x25519mlkem768": ("X25519MLKEM768 + ECDSA P-256", Scenario("X25519MLKEM768")),
    "handshake.tls13.mtls": ("x25519, mutual TLS (ECDSA P-256)", Scenario("x25519", mutual=True)),
}
FLOOR_ROWS = {
    "floor.x25519": "handshake.tls13.x25519",
    "floor.secp256r1": "handshake.tls13.secp256r1",
    "floor.x25519mlkem768": "handshake.tls13.x25519mlkem768",
    "floor.mtls": "handshake.tls13.mtls",
}
# Every row id a run writes, in table order (tests/test_bench_smoke.py checks them).
ROW_IDS = (
    *HANDSHAKE_SCENARIOS,
    "handshake.tls13.resumed",
    "handshake.dtls13.cookie",
    "handshake.dtls13.no_cookie",
    "handshake.dtls13.resumed",
    "bulk.tls13.aes128gcm.16k",
    "bulk.tls13.chacha20.16k",
    "records.tls13.aes128gcm.64b",
    "bulk.dtls13.aes128gcm.1200",
    *FLOOR_ROWS,
    "memory.tls13.idle",
    "memory.dtls13.idle",
    "memory.tls13.handshake_peak",
)

_HANDSHAKE_MODULES: dict[str, Any] = {
    "ours": ours,
    "openssl": openssl_ssl,
    "pyopenssl": openssl_py,
    "tlslite": tlslite_ng,
}


@dataclass
class Row:
    id: str
    section: str
    title: str
    unit: str
    results: dict[str, Figure] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    negotiated: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # "ok" | "n/a" | "skipped"
    reason: str = ""
    label: str = ""  # short title for the table

    def ratios(self) -> dict[str, float]:
        """ours / other, medians; > 1 means ours is faster (every ratio row is a rate)."""
        out: dict[str, float] = {}
        mine = self.results.get("ours")
        if mine is None or self.section not in ("handshake", "bulk"):
            return out
        for impl in IMPLS[1:]:
            other = self.results.get(impl)
            if other is not None and other.median > 0:
                out[f"ours/{impl}"] = mine.median / other.median
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "section": self.section,
            "title": self.title,
            "label": self.label or self.title,
            "unit": self.unit,
            "status": self.status,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.results:
            out["results"] = {k: v.to_json() for k, v in self.results.items()}
        ratios = self.ratios()
        if ratios:
            out["ratios"] = ratios
        for key in ("unavailable", "errors", "negotiated", "info"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.notes:
            out["notes"] = self.notes
        return out


def _describe_choice(choice: tuple[int, int] | None) -> str:
    if choice is None:
        return "?"
    suites = {code: name for name, (_, code) in SUITES.items()}
    groups = {code: name for name, code in GROUP_CODES.items()}
    suite, group = choice
    return f"{suites.get(suite, hex(suite))} {groups.get(group, hex(group))}"


class Bench:
    def __init__(self, pki: Pki, plan: Plan, only: tuple[str, ...] = ()) -> None:
        self.pki = pki
        self.plan = plan
        self.only = only
        self.rows: dict[str, Row] = {}
        self.progress: Callable[[str], None] = lambda line: None

    def wanted(self, row_id: str) -> bool:
        return not self.only or any(row_id.startswith(prefix) for prefix in self.only)

    def add(self, row: Row) -> Row:
        self.rows[row.id] = row
        return row

    def _measure(self, row: Row, impl: str, make: Callable[[], Runner], **kw: Any) -> None:
        """Build the runner, check what it negotiated, measure; failures stay in the row."""
        kind: Callable[..., Figure] = kw.pop("kind", rate_figure)
        expect: tuple[int, int] | None = kw.pop("expect", None)
        try:
            runner = make()
            if expect is not None and runner.negotiated is not None:
                row.negotiated[impl] = _describe_choice(runner.negotiated)
                if runner.negotiated != expect:
                    raise RuntimeError(
                        f"negotiated {_describe_choice(runner.negotiated)}, "
                        f"expected {_describe_choice(expect)}"
                    )
            figure = kind(self.plan, runner.run, unit=row.unit, **kw)
        except Unavailable as exc:
            row.unavailable[impl] = str(exc)
            return
        except Exception as exc:
            row.errors[impl] = f"{type(exc).__name__}: {exc}"
            self.progress(traceback.format_exc())
            return
        row.results[impl] = figure
        row.notes.extend(f"{impl}: {note}" for note in runner.notes)
        if runner.info:
            row.info[impl] = dict(runner.info)
        self.progress(f"  {row.id:34} {impl:10} {figure.median:12.1f} {row.unit}")

    # -- rows -------------------------------------------------------------------------------

    def handshakes(self) -> None:
        for row_id, (title, scenario) in HANDSHAKE_SCENARIOS.items():
            if not self.wanted(row_id):
                continue
            row = self.add(
                Row(row_id, "handshake", f"TLS 1.3 full handshake, {title}", "hs/s", label=title)
            )
            expect = (SUITES[scenario.suite][1], GROUP_CODES[scenario.group])
            for impl, module in _HANDSHAKE_MODULES.items():
                quick = 2 if impl == "tlslite" else 5
                self._measure(
                    row,
                    impl,
                    functools.partial(module.handshake_runner, self.pki, scenario),
                    quick_count=quick,
                    expect=expect,
                )
        self.add(
            Row(
                "handshake.tls13.resumed",
                "handshake",
                "TLS 1.3 resumed handshake (PSK + ECDHE)",
                "hs/s",
                label="resumed (PSK + ECDHE)",
                status="n/a",
                reason=RESUMPTION_NA,
            )
        )

    def dtls_handshakes(self) -> None:
        tls = self.rows.get("handshake.tls13.x25519")
        for cookie in (True, False):
            row_id = f"handshake.dtls13.{'cookie' if cookie else 'no_cookie'}"
            if not self.wanted(row_id):
                continue
            title = f"DTLS 1.3 full handshake, x25519, cookie exchange {'on' if cookie else 'off'}"
            row = self.add(Row(row_id, "dtls", title, "hs/s"))
            self._measure(
                row,
                "ours",
                functools.partial(ours.dtls_handshake_runner, self.pki, cookie=cookie),
                quick_count=5,
            )
            mine = row.results.get("ours")
            if mine is not None and tls is not None and "ours" in tls.results:
                row.info["ratio_to_our_tls"] = mine.median / tls.results["ours"].median
            row.notes.append(
                "virtual clock: a retransmission timer that fires costs its CPU, not its wait"
            )
        self.add(
            Row(
                "handshake.dtls13.resumed",
                "dtls",
                "DTLS 1.3 resumed handshake",
                "hs/s",
                status="n/a",
                reason=RESUMPTION_NA,
            )
        )

    def bulk(self) -> None:
        cases = (
            (
                "bulk.tls13.aes128gcm.16k",
                DEFAULT_SUITE,
                16384,
                "MB/s",
                "TLS 16 KiB records AES-128-GCM",
            ),
            (
                "bulk.tls13.chacha20.16k",
                "TLS_CHACHA20_POLY1305_SHA256",
                16384,
                "MB/s",
                "TLS 16 KiB records ChaCha20-Poly1305",
            ),
            (
                "records.tls13.aes128gcm.64b",
                DEFAULT_SUITE,
                64,
                "records/s",
                "TLS 64 B records AES-128-GCM",
            ),
        )
        for row_id, suite, size, unit, label in cases:
            if not self.wanted(row_id):
                continue
            what = "bulk one way" if size > 64 else "records one way"
            title = f"TLS 1.3 {what}, {size}-byte records, {suite}"
            row = self.add(Row(row_id, "bulk", title, unit, label=label))
            expect = (SUITES[suite][1], GROUP_CODES["x25519"])
            scale = size / 1e6 if unit == "MB/s" else 1.0
            for impl, module in _HANDSHAKE_MODULES.items():
                slow = impl == "tlslite"
                self._measure(
                    row,
                    impl,
                    functools.partial(module.bulk_runner, self.pki, suite, size),
                    quick_count=(1 if size > 64 else 20) if slow else (20 if size > 64 else 500),
                    scale=scale,
                    expect=expect,
                )
            row.notes.append("MB = 10^6 bytes of application data; sender and receiver both run")
        if self.wanted("bulk.dtls13.aes128gcm.1200"):
            row = self.add(
                Row(
                    "bulk.dtls13.aes128gcm.1200",
                    "bulk",
                    "DTLS 1.3 bulk one way, 1,200-byte datagrams, TLS_AES_128_GCM_SHA256",
                    "MB/s",
                    label="DTLS 1,200 B datagrams AES-128-GCM",
                )
            )
            self._measure(
                row,
                "ours",
                functools.partial(ours.dtls_bulk_runner, self.pki, 1200),
                quick_count=5,
                scale=16384 / 1e6,
            )
            tls = self.rows.get("bulk.tls13.aes128gcm.16k")
            if tls is not None and "ours" in tls.results and "ours" in row.results:
                row.info["ratio_to_our_tls"] = (
                    row.results["ours"].median / tls.results["ours"].median
                )
            row.notes.append("16 KiB sends cut into datagrams of at most 1,200 bytes")

    def floors(self) -> None:
        for row_id, handshake_row in FLOOR_ROWS.items():
            if not self.wanted(row_id):
                continue
            title, scenario = HANDSHAKE_SCENARIOS[handshake_row]
            row = self.add(
                Row(row_id, "floor", f"crypto floor, {title}", "us/handshake", label=title)
            )
            try:
                calls = floor_mod.count_symmetric_calls(self.pki, scenario)
                floor = floor_mod.Floor(self.pki, scenario, calls)
            except Exception as exc:
                row.errors["floor"] = f"{type(exc).__name__}: {exc}"
                continue
            row.info["symmetric_calls_per_handshake"] = calls.summary()
            row.results["floor"] = time_figure(self.plan, floor.runner(floor.one), quick_count=5)
            components = {}
            for name, fn in floor.components().items():
                components[name] = time_figure(self.plan, floor.runner(fn), quick_count=5)
            row.info["floor_components_us"] = {k: v.to_json() for k, v in components.items()}
            floor_us = row.results["floor"].median
            handshakes = self.rows.get(handshake_row)
            overheads: dict[str, Any] = {}
            for impl in ("ours", "openssl", "pyopenssl"):
                figure = handshakes.results.get(impl) if handshakes else None
                if figure is None:
                    continue
                per_handshake = [1e6 / rate for rate in figure.samples]
                row.results[impl] = value_figure("us/handshake", per_handshake)
                overhead = [(t - floor_us) / floor_us for t in per_handshake]
                overheads[impl] = value_figure("ratio", overhead).to_json()
            row.info["overhead"] = overheads
            row.notes.append(
                "overhead = (time per handshake - floor) / floor, each repetition against the "
                "floor's median"
            )
            self.progress(f"  {row_id:34} floor {floor_us:10.1f} us")

    def memory(self) -> None:
        count = 30 if self.plan.quick else 1000
        cases: tuple[tuple[str, str, Callable[[list[tuple[str, float]]], float]], ...] = (
            (
                "memory.tls13.idle",
                f"Python heap per idle established TLS connection, server side ({count})",
                lambda sites: memory.tls_idle_per_connection(self.pki, count, sites),
            ),
            (
                "memory.dtls13.idle",
                f"Python heap per idle established DTLS association, server side ({count})",
                lambda sites: memory.dtls_idle_per_connection(self.pki, count, sites),
            ),
        )
        for row_id, title, measure in cases:
            if not self.wanted(row_id):
                continue
            row = self.add(Row(row_id, "memory", title, "bytes"))
            sites: list[tuple[str, float]] = []
            try:
                values = [measure(sites) for _ in range(self.plan.reps)]
            except Exception as exc:
                row.errors["ours"] = f"{type(exc).__name__}: {exc}"
                continue
            row.results["ours"] = value_figure("bytes", values, per_rep=count)
            row.info["top_allocation_sites_bytes_per_connection"] = sites
            self.progress(f"  {row_id:34} ours {statistics.median(values):12.0f} bytes")
        if self.wanted("memory.tls13.handshake_peak"):
            row = self.add(
                Row(
                    "memory.tls13.handshake_peak",
                    "memory",
                    "peak Python heap during one TLS handshake (client + server)",
                    "bytes",
                )
            )
            values = [memory.handshake_peak(self.pki) for _ in range(self.plan.reps)]
            row.results["ours"] = value_figure("bytes", values, per_rep=1)

    def run_all(self) -> None:
        self.handshakes()
        self.dtls_handshakes()
        self.bulk()
        self.floors()
        self.memory()
        for row_id in ROW_IDS:
            if row_id not in self.rows:
                self.rows[row_id] = Row(row_id, "-", row_id, "-", status="skipped", reason="--only")

    def ordered(self) -> list[Row]:
        return [self.rows[r] for r in ROW_IDS if r in self.rows]

    def errors(self) -> list[str]:
        return [f"{r.id} {impl}: {e}" for r in self.ordered() for impl, e in r.errors.items()]
