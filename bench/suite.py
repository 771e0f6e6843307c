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
from .stats import Figure, Job, Plan, clock, interleaved, time_figure, value_figure

IMPLS = ("ours", "openssl", "pyopenssl", "tlslite")
IMPL_TITLES = {
    "ours": "ours",
    "openssl": "OpenSSL (ssl)",
    "pyopenssl": "OpenSSL (pyOpenSSL)",
    "tlslite": "tlslite-ng",
}

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

    def _prepare(
        self,
        row: Row,
        impl: str,
        make: Callable[[], Runner],
        expect: tuple[int, int] | None = None,
    ) -> Runner | None:
        """Build an implementation's runner and check what it negotiated on the wire; a
        library that cannot do the row is listed as unavailable, a failure as an error."""
        try:
            runner = make()
            if expect is not None and runner.negotiated is not None:
                row.negotiated[impl] = _describe_choice(runner.negotiated)
                if runner.negotiated != expect:
                    raise RuntimeError(
                        f"negotiated {_describe_choice(runner.negotiated)}, "
                        f"expected {_describe_choice(expect)}"
                    )
        except Unavailable as exc:
            row.unavailable[impl] = str(exc)
            return None
        except Exception as exc:
            row.errors[impl] = f"{type(exc).__name__}: {exc}"
            self.progress(traceback.format_exc())
            return None
        row.notes.extend(f"{impl}: {note}" for note in runner.notes)
        return runner

    def _measure(self, row: Row, jobs: dict[str, Job], runners: dict[str, Runner]) -> None:
        figures, errors = interleaved(self.plan, jobs, row.unit)
        row.errors.update(errors)
        for impl, figure in figures.items():
            row.results[impl] = figure
            self.progress(f"  {row.id:34} {impl:10} {figure.median:12.1f} {figure.unit}")
        for impl, runner in runners.items():
            if runner.info and impl in figures:
                row.info[impl] = dict(runner.info)

    # -- rows -------------------------------------------------------------------------------

    def handshakes(self) -> None:
        """Each handshake row and its crypto-floor row are measured together, interleaved:
        the floor's repetition i runs next to each library's repetition i."""
        for (row_id, (title, scenario)), floor_id in zip(
            HANDSHAKE_SCENARIOS.items(), FLOOR_ROWS, strict=True
        ):
            if not (self.wanted(row_id) or self.wanted(floor_id)):
                continue
            row = self.add(
                Row(row_id, "handshake", f"TLS 1.3 full handshake, {title}", "hs/s", label=title)
            )
            expect = (SUITES[scenario.suite][1], GROUP_CODES[scenario.group])
            runners: dict[str, Runner] = {}
            jobs: dict[str, Job] = {}
            for impl, module in _HANDSHAKE_MODULES.items():
                runner = self._prepare(
                    row,
                    impl,
                    functools.partial(module.handshake_runner, self.pki, scenario),
                    expect,
                )
                if runner is not None:
                    runners[impl] = runner
                    jobs[impl] = Job(runner.run, quick_count=2 if impl == "tlslite" else 5)
            floor_row = self.add(
                Row(floor_id, "floor", f"crypto floor, {title}", "us/handshake", label=title)
            )
            floor = self._floor(floor_row, scenario)
            if floor is not None:
                jobs["floor"] = Job(floor.runner(floor.one), quick_count=5, per="time")
            self._measure(row, jobs, runners)
            floor_figure = row.results.pop("floor", None)
            if "floor" in row.errors:
                floor_row.errors["floor"] = row.errors.pop("floor")
            if floor is not None and floor_figure is not None:
                self._floor_overheads(floor_row, floor, floor_figure, row)
        self.resumed_handshakes()

    def resumed_handshakes(self) -> None:
        """Resumed TLS handshakes beside OpenSSL's, with our full x25519 handshake measured
        interleaved as the reference for resumption's gain."""
        row_id = "handshake.tls13.resumed"
        if not self.wanted(row_id):
            return
        row = self.add(
            Row(
                row_id,
                "handshake",
                "TLS 1.3 resumed handshake (ticket, psk_dhe_ke, x25519)",
                "hs/s",
                label="resumed (ticket, psk_dhe_ke, x25519)",
            )
        )
        expect = (SUITES[DEFAULT_SUITE][1], GROUP_CODES["x25519"])
        runners: dict[str, Runner] = {}
        jobs: dict[str, Job] = {}
        for impl, module in (("ours", ours), ("openssl", openssl_ssl), ("pyopenssl", openssl_py)):
            runner = self._prepare(
                row, impl, functools.partial(module.resumed_handshake_runner, self.pki), expect
            )
            if runner is not None:
                runners[impl] = runner
                jobs[impl] = Job(runner.run, quick_count=5)
        row.unavailable["tlslite"] = "not measured: tlslite-ng resumption is not driven here"
        full = self._prepare(
            row, "full_reference", functools.partial(ours.handshake_runner, self.pki, Scenario())
        )
        if full is not None:
            jobs["full_reference"] = Job(full.run, quick_count=5)
        self._measure(row, jobs, runners)
        self._reference(
            row, row.results.pop("full_reference", None), "our_full_x25519", "ratio_to_our_full"
        )
        row.notes.append(
            "one full handshake issues a ticket; every resumed handshake offers it and the "
            "server issues none (OpenSSL: num_tickets = 0; pyOpenSSL cannot set it); "
            "ratio_to_our_full against our full x25519 handshakes measured interleaved"
        )

    def _floor(self, row: Row, scenario: Scenario) -> floor_mod.Floor | None:
        try:
            calls = floor_mod.count_symmetric_calls(self.pki, scenario)
            floor = floor_mod.Floor(self.pki, scenario, calls)
        except Exception as exc:
            row.errors["floor"] = f"{type(exc).__name__}: {exc}"
            return None
        row.info["symmetric_calls_per_handshake"] = calls.summary()
        return floor

    def _floor_overheads(
        self, row: Row, floor: floor_mod.Floor, floor_figure: Figure, handshakes: Row
    ) -> None:
        row.results["floor"] = Figure("us/handshake", floor_figure.samples, floor_figure.per_rep)
        overheads: dict[str, Any] = {}
        for impl in ("ours", "openssl", "pyopenssl"):
            figure = handshakes.results.get(impl)
            if figure is None:
                continue
            per_handshake = [1e6 / rate for rate in figure.samples]
            row.results[impl] = value_figure("us/handshake", per_handshake)
            # Repetition i of the library against repetition i of the floor (interleaved).
            overhead = [
                (t - f) / f for t, f in zip(per_handshake, floor_figure.samples, strict=True)
            ]
            overheads[impl] = value_figure("ratio", overhead).to_json()
        row.info["overhead"] = overheads
        components = {
            name: time_figure(self.plan, floor.runner(fn), quick_count=5).to_json()
            for name, fn in floor.components().items()
        }
        row.info["floor_components_us"] = components
        row.notes.append(
            "overhead = (time per handshake - floor) / floor, repetition by repetition "
            "(measured interleaved); components timed separately"
        )
        self.progress(f"  {row.id:34} floor {floor_figure.median:10.1f} us")

    def _reference(
        self, row: Row, reference: Figure | None, name: str, ratio: str = "ratio_to_our_tls"
    ) -> None:
        """Another figure of ours measured interleaved with this row: the ratio compares runs
        that saw the same machine."""
        mine = row.results.get("ours")
        if reference is None or mine is None:
            return
        row.info[name] = reference.to_json()
        row.info[ratio] = mine.median / reference.median

    def dtls_handshakes(self) -> None:
        tls = functools.partial(ours.handshake_runner, self.pki, Scenario())
        for cookie in (True, False):
            row_id = f"handshake.dtls13.{'cookie' if cookie else 'no_cookie'}"
            if not self.wanted(row_id):
                continue
            title = f"DTLS 1.3 full handshake, x25519, cookie exchange {'on' if cookie else 'off'}"
            row = self.add(Row(row_id, "dtls", title, "hs/s"))
            runner = self._prepare(
                row, "ours", functools.partial(ours.dtls_handshake_runner, self.pki, cookie=cookie)
            )
            reference = self._prepare(row, "tls_reference", tls)
            if runner is not None and reference is not None:
                jobs = {
                    "ours": Job(runner.run, quick_count=5),
                    "tls_reference": Job(reference.run, quick_count=5),
                }
                self._measure(row, jobs, {"ours": runner})
                self._reference(row, row.results.pop("tls_reference", None), "our_tls_x25519")
            row.notes.append(
                "virtual clock: a retransmission timer that fires costs its CPU, not its wait; "
                "ratio_to_our_tls against our TLS x25519 handshakes measured interleaved"
            )
        if not self.wanted("handshake.dtls13.resumed"):
            return
        row = self.add(
            Row(
                "handshake.dtls13.resumed",
                "dtls",
                "DTLS 1.3 resumed handshake (ticket, psk_dhe_ke, x25519), cookie exchange on",
                "hs/s",
            )
        )
        runner = self._prepare(
            row, "ours", functools.partial(ours.dtls_resumed_handshake_runner, self.pki)
        )
        tls_resumed = self._prepare(
            row, "tls_reference", functools.partial(ours.resumed_handshake_runner, self.pki)
        )
        dtls_full = self._prepare(
            row,
            "full_reference",
            functools.partial(ours.dtls_handshake_runner, self.pki, cookie=True),
        )
        if runner is not None and tls_resumed is not None and dtls_full is not None:
            jobs = {
                "ours": Job(runner.run, quick_count=5),
                "tls_reference": Job(tls_resumed.run, quick_count=5),
                "full_reference": Job(dtls_full.run, quick_count=5),
            }
            self._measure(row, jobs, {"ours": runner})
            self._reference(row, row.results.pop("tls_reference", None), "our_tls_resumed")
            self._reference(
                row,
                row.results.pop("full_reference", None),
                "our_dtls_full_cookie",
                "ratio_to_our_full",
            )
        row.notes.append(
            "ratio_to_our_tls against our TLS resumed handshakes, ratio_to_our_full against "
            "our full DTLS handshakes (cookie on), both measured interleaved"
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
            runners: dict[str, Runner] = {}
            jobs: dict[str, Job] = {}
            for impl, module in _HANDSHAKE_MODULES.items():
                runner = self._prepare(
                    row, impl, functools.partial(module.bulk_runner, self.pki, suite, size), expect
                )
                if runner is None:
                    continue
                slow = impl == "tlslite"
                quick = (1 if size > 64 else 20) if slow else (20 if size > 64 else 500)
                runners[impl] = runner
                jobs[impl] = Job(runner.run, quick_count=quick, scale=scale)
            self._measure(row, jobs, runners)
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
            runner = self._prepare(
                row, "ours", functools.partial(ours.dtls_bulk_runner, self.pki, 1200)
            )
            reference = self._prepare(
                row,
                "tls_reference",
                functools.partial(ours.bulk_runner, self.pki, DEFAULT_SUITE, 16384),
            )
            if runner is not None and reference is not None:
                jobs = {
                    "ours": Job(runner.run, quick_count=5, scale=16384 / 1e6),
                    "tls_reference": Job(reference.run, quick_count=20, scale=16384 / 1e6),
                }
                self._measure(row, jobs, {"ours": runner})
                self._reference(row, row.results.pop("tls_reference", None), "our_tls_16k")
            row.notes.append(
                "16 KiB sends cut into datagrams of at most 1,200 bytes; ratio_to_our_tls "
                "against our TLS 16 KiB records measured interleaved"
            )

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

    def warm_up(self) -> None:
        """Before the first figure: run every library's handshake and bulk paths for a while.
        The first work of a process pays for heap growth (page faults count as its CPU time),
        cold caches and lazy initialisation; without this the first row reads slow."""
        seconds = 0.2 if self.plan.quick else 1.5
        runners = []
        for module in _HANDSHAKE_MODULES.values():
            for make in (
                functools.partial(module.handshake_runner, self.pki, Scenario()),
                functools.partial(module.bulk_runner, self.pki, DEFAULT_SUITE, 16384),
            ):
                try:
                    runners.append(make())
                except Exception:  # reported by the row itself
                    continue
        deadline = clock() + seconds
        while clock() < deadline:
            for runner in runners:
                runner.run(1)

    def run_all(self) -> None:
        self.warm_up()
        self.handshakes()
        self.dtls_handshakes()
        self.bulk()
        self.memory()
        for row_id in ROW_IDS:
            if row_id not in self.rows:
                self.rows[row_id] = Row(row_id, "-", row_id, "-", status="skipped", reason="--only")

    def ordered(self) -> list[Row]:
        return [self.rows[r] for r in ROW_IDS if r in self.rows]

    def errors(self) -> list[str]:
        return [f"{r.id} {impl}: {e}" for r in self.ordered() for impl, e in r.errors.items()]
