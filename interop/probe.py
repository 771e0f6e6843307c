"""``python -m interop probe HOST:PORT``: which TLS 1.3 / DTLS 1.3 features a server has, and
where it deviates from RFC 8446 / RFC 9147.

Every probe is one or two connections of our own client (the Sans-IO connection over a real
socket), each with its own JSON-lines trace; the trace of every probe that fails or shows a
deviation is kept in ``interop/results/traces/`` for study. Probes:

- the handshake with our defaults (certificate verified with ``--cafile`` or the system
  store; on a verification failure the remaining probes run without verification, said so);
- each cipher suite and each group alone (X25519MLKEM768 included);
- HelloRetryRequest: our key share for a group the server refused, the group it accepted
  listed second; DTLS: whether the first answer is a stateless HRR with a cookie;
- ALPN, record_size_limit (512: the server's records must fit), KeyUpdate(update_requested)
  answered before the server's next data, tickets, resumption with one, 0-RTT;
- DTLS: Connection ID;
- malformed input: a corrupted record (TLS: bad_record_mac, RFC 8446 §5.2; DTLS: silently
  dropped or bad_record_mac, RFC 9147 §4.5.2) and ClientHellos with a bad extension (a list
  length past its end: decode_error; an all-zero X25519 share: illegal_parameter,
  RFC 8446 §7.4.2 / RFC 7748 §6.1).

The request that makes a server talk is ``GET / HTTP/1.0`` (HTTP servers answer it, echo
servers echo it, wolfSSL's example server answers anything).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.config import ClientConfig
from protocol.connection.dtls import DTLSClientConnection
from protocol.connection.tls import TLSClientConnection
from protocol.errors import ProtocolError
from protocol.sessions import InMemorySessionStore

from .adapters.base import Cell, CellFailure
from .adapters.ours import OurDTLS, OurTLS, dtls_client, trace_hook
from .adapters.process import PortPool
from .scenarios import GROUPS, HRR_RANDOM, SUITES

TRACES = Path(__file__).resolve().parent / "results" / "traces"
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    80: "internal_error",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
}
SUPPORTED_GROUPS = 10
KEY_SHARE = 51


@dataclass
class Finding:
    feature: str
    status: str  # "yes" | "no" | "deviation" | "error" | "n/a"
    detail: str = ""
    trace: str | None = None


@dataclass
class Report:
    target: str
    dtls: bool
    findings: list[Finding] = field(default_factory=list)

    def add(self, feature: str, status: str, detail: str = "", trace: str | None = None) -> None:
        self.findings.append(Finding(feature, status, detail, trace))

    def get(self, feature: str) -> Finding | None:
        return next((f for f in self.findings if f.feature == feature), None)

    def text(self) -> str:
        width = max((len(f.feature) for f in self.findings), default=10)
        lines = [f"probe of {self.target} ({'DTLS 1.3' if self.dtls else 'TLS 1.3'})"]
        for f in self.findings:
            mark = {
                "yes": "yes",
                "no": "no",
                "deviation": "DEVIATION",
                "error": "error",
                "n/a": "n/a",
            }.get(f.status, f.status)
            lines.append(f"  {f.feature:<{width}}  {mark:<9}  {f.detail}")
        deviations = [f for f in self.findings if f.status in ("deviation", "error")]
        lines.append(f"{len(deviations)} deviation(s)/error(s)")
        for f in deviations:
            if f.trace:
                lines.append(f"  trace of {f.feature}: {f.trace}")
        return "\n".join(lines)


class Prober:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        dtls: bool = False,
        server_name: str | None = None,
        cafile: Path | None = None,
        timeout: float = 5.0,
        traces: Path = TRACES,
        only: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.only = {name.lower() for name in only}  # probe names to run (all when empty)
        self.port = port
        self.dtls = dtls
        self.server_name = server_name or host
        self.cafile = cafile
        self.timeout = timeout
        self.traces = traces
        self.verify = True
        self.workdir = Path(tempfile.mkdtemp(prefix="tls13-probe-"))
        self.report = Report(f"{host}:{port}", dtls)
        self._count = 0
        self.dead: str | None = None  # the probe after which the server stopped answering
        self.failures = 0
        self.supported_groups: list[str] = []

    # -- plumbing ---------------------------------------------------------------------------------

    def _cell(self, name: str) -> Cell:
        self._count += 1
        folder = self.workdir / f"{self._count:02d}-{name.replace('/', '_')}"
        folder.mkdir()
        return Cell(
            "probe",
            "server",
            "client",
            folder,
            self.workdir,
            self.workdir,
            PortPool(0),
            timeout=self.timeout,
        )

    def config(self, cell: Cell, **options: Any) -> ClientConfig:
        settings: dict[str, Any] = {
            "server_name": self.server_name,
            "trace": trace_hook(cell),
            "retransmit_initial": 0.3,
            "max_retransmits": 5,
            "cipher_suites": SUITES,
        }
        if self.cafile is not None:
            settings["cafile"] = self.cafile
        if not self.verify:
            settings["dangerously_skip_certificate_verification"] = True
        settings.update(options)
        return ClientConfig(**settings)

    def keep(self, cell: Cell) -> str | None:
        """Save the cell's trace for study; returns where."""
        if not cell.trace_path.exists():
            return None
        self.traces.mkdir(parents=True, exist_ok=True)
        host = self.host.replace(":", "_")
        kind = "dtls" if self.dtls else "tls"
        target = self.traces / f"{host}_{self.port}_{kind}_{cell.workdir.name}.jsonl"
        shutil.copyfile(cell.trace_path, target)
        return str(target)

    def connect(self, cell: Cell, config: ClientConfig, **kwargs: Any) -> OurTLS | OurDTLS:
        if self.dtls:
            return dtls_client(
                cell, self.port, config, host=self.host, server_name=self.server_name, **kwargs
            )
        from .adapters.ours import tls_client

        return tls_client(
            cell, self.port, config, host=self.host, server_name=self.server_name, **kwargs
        )

    def attempt(
        self, name: str, options: dict[str, Any], then: Callable[[Cell, Any], str] | None = None
    ) -> tuple[bool, str, Cell]:
        """One connection; ``then`` runs on it. (ok, detail or failure, cell)."""
        cell = self._cell(name)
        try:
            chan = self.connect(cell, self.config(cell, **options))
            detail = then(cell, chan) if then is not None else ""
            with contextlib.suppress(Exception):
                chan.close()
            return True, detail, cell
        except CellFailure as exc:
            self.failures += 1
            return False, str(exc), cell
        except OSError as exc:
            self.failures += 1
            return False, f"socket: {exc}", cell
        finally:
            cell.close()

    # -- the probes -------------------------------------------------------------------------------

    def run(self) -> Report:
        """Features first, then the probes that make handshakes fail (some servers stop
        answering after one: the rest is then n/a, and that is a finding of its own)."""
        probes: list[tuple[str, Callable[[], None]]] = [
            ("Connection ID", self.connection_id),
            ("ALPN", self.alpn),
            ("record_size_limit", self.record_size_limit),
            ("KeyUpdate", self.key_update),
            ("tickets", self.resumption),
            ("cipher suites", self.suites),
            ("groups", self.groups),
            ("HRR", self.hello_retry),
            # Last: the probes a server may end the connection over (and stop answering).
            ("CID updates", self.connection_id_updates),
            ("corrupted record", self.corrupted_record),
            ("malformed ClientHellos", self.bad_client_hellos),
        ]
        if not self.dtls:
            probes = [p for p in probes if p[0] not in ("Connection ID", "CID updates")]
        if self.only:
            probes = [p for p in probes if p[0].lower() in self.only]
        try:
            if not self.baseline():
                return self.report
            for name, probe in probes:
                if self.dead is not None:
                    self.report.add(name, "n/a", f"the server stopped answering after {self.dead}")
                    continue
                self.failures = 0
                probe()
                if self.failures and not self.alive():
                    self.dead = name
                    self.report.add(
                        "availability",
                        "deviation",
                        f"the server answers no new handshake after the {name} probe",
                    )
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.report

    def alive(self) -> bool:
        ok, _, _ = self.attempt("alive", {})
        return ok

    def baseline(self) -> bool:
        ok, detail, cell = self.attempt("baseline", {}, self._describe)
        certificate_words = ("certificate", "unknown_ca", "hostname", "unknown CA", "expired")
        if not ok and any(word in detail for word in certificate_words):
            self.report.add("certificate", "no", f"verification failed: {detail}", self.keep(cell))
            self.verify = False
            ok, detail, cell = self.attempt("baseline-insecure", {}, self._describe)
        elif ok:
            self.report.add("certificate", "yes", "chain and name verified")
        if not ok:
            self.report.add("handshake", "error", detail, self.keep(cell))
            return False
        self.report.add("handshake", "yes", detail)
        if self.dtls:
            cookies = _hrr_cookies(cell)
            if any(cookies):
                self.report.add("cookie exchange", "yes", "stateless HelloRetryRequest with cookie")
            else:
                self.report.add(
                    "cookie exchange",
                    "no",
                    "HelloRetryRequest without cookie" if cookies else "no HRR",
                )
        return True

    def _describe(self, cell: Cell, chan: Any) -> str:
        hs = chan.handshake
        parts = [hs.version, hs.cipher_suite, f"group {hs.group}", f"sig {hs.signature_scheme}"]
        if hs.hello_retry:
            parts.append("after HRR")
        return ", ".join(parts)

    def _one_by_one(self, kind: str, values: Sequence[str], option: str) -> list[str]:
        """Offer each value alone; a refusal must be handshake_failure (RFC 8446 §4.1.1). A
        silence is checked first: a server that stopped answering altogether (some example
        servers do after one refused handshake) ends the probe instead of being blamed."""
        supported = []
        for value in values:
            ok, detail, cell = self.attempt(f"{kind}-{value}", {option: (value,)})
            if ok:
                supported.append(value)
            elif "timed out" in detail and not self.alive():
                break  # run() reports the server as unavailable from here on
            elif "handshake_failure" not in detail and "insufficient_security" not in detail:
                self.report.add(
                    f"{kind} {value}",
                    "deviation",
                    f"refused without handshake_failure: {detail}",
                    self.keep(cell),
                )
        return supported

    def suites(self) -> None:
        supported = self._one_by_one("suite", SUITES, "cipher_suites")
        self.report.add("cipher suites", "yes" if supported else "no", ", ".join(supported))

    def groups(self) -> None:
        supported = self._one_by_one("group", GROUPS, "groups")
        self.supported_groups = supported
        self.report.add("groups", "yes" if supported else "no", ", ".join(supported))

    def hello_retry(self) -> None:
        supported = self.supported_groups
        refused = [g for g in GROUPS if g not in supported]
        if not supported:
            self.report.add("HRR", "n/a", "no group worked")
            return
        if refused:
            share, other = refused[0], supported[0]
            how = f"our share {share} (refused), {other} listed second"
        else:
            # every group works: share the one a server is least likely to prefer
            share = "secp521r1" if "secp521r1" in supported else supported[-1]
            other = supported[0] if supported[0] != share else supported[-1]
            how = f"our share {share}, {other} listed second"

        def check(cell: Cell, chan: Any) -> str:
            hs = chan.handshake
            return f"HRR to {hs.group}" if hs.hello_retry else f"no HRR: took {hs.group}"

        ok, detail, cell = self.attempt("hrr", {"groups": (share, other)}, check)
        if not ok:
            self.report.add("HRR", "deviation", f"{how}: {detail}", self.keep(cell))
        elif detail.startswith("HRR"):
            self.report.add("HRR", "yes", f"{how}: {detail}, handshake completed")
        else:
            self.report.add("HRR", "no" if refused else "n/a", f"{how}: {detail}")

    def alpn(self) -> None:
        def check(cell: Cell, chan: Any) -> str:
            return str(chan.handshake.alpn)

        ok, detail, cell = self.attempt("alpn", {"alpn": ("h2", "http/1.1")}, check)
        if not ok:
            status = "no" if "no_application_protocol" in detail else "deviation"
            self.report.add("ALPN", status, detail, self.keep(cell) if status != "no" else None)
        else:
            self.report.add(
                "ALPN",
                "yes" if detail != "None" else "no",
                f"selected {detail}" if detail != "None" else "none selected",
            )

    def record_size_limit(self) -> None:
        limit = 512

        def check(cell: Cell, chan: Any) -> str:
            peer = chan.handshake.peer_record_size_limit
            if peer is None:
                return "not negotiated"
            _talk(chan, self.timeout)
            sizes = _received_sizes(cell)
            largest = max(sizes, default=0)
            if largest > limit - 1:
                raise CellFailure(f"server limit {peer}, but it sent a {largest}-byte record")
            return f"server limit {peer}; its records ≤ {largest} B"

        ok, detail, cell = self.attempt("record-size-limit", {"record_size_limit": limit}, check)
        if not ok:
            self.report.add("record_size_limit", "deviation", detail, self.keep(cell))
        else:
            self.report.add(
                "record_size_limit", "no" if detail == "not negotiated" else "yes", detail
            )

    def key_update(self) -> None:
        def check(cell: Cell, chan: Any) -> str:
            chan.key_update(True)
            answer = _talk(chan, self.timeout)
            if chan.key_updates_received >= 1:
                return f"answered ({len(answer)} B of data after it)"
            if not answer:
                return "no data came back: cannot tell"
            raise CellFailure(
                "data came back under the old keys without a KeyUpdate "
                "(RFC 8446 §4.6.3: update_requested must be answered first)"
            )

        ok, detail, cell = self.attempt("key-update", {}, check)
        if not ok:
            self.report.add("KeyUpdate", "deviation", detail, self.keep(cell))
        else:
            self.report.add("KeyUpdate", "yes" if detail.startswith("answered") else "n/a", detail)

    def resumption(self) -> None:
        store = InMemorySessionStore()
        cell = self._cell("tickets")
        config = self.config(cell, session_store=store)
        sessions: list[Any] = []
        try:
            chan = self.connect(cell, config)
            _talk(chan, self.timeout)
            if isinstance(chan, OurTLS):
                chan.wait_ticket(1.0)
                sessions = chan.sessions
            else:
                chan.pump(0.5)
            chan.close()
        except CellFailure as exc:
            self.report.add("tickets", "error", str(exc), self.keep(cell))
            return
        finally:
            cell.close()
        session = store.take(self.server_name, self.port)
        if session is None:
            self.report.add(
                "tickets", "no", "no NewSessionTicket after the handshake and a request"
            )
            self.report.add("resumption", "n/a", "no ticket")
            self.report.add("0-RTT", "n/a", "no ticket")
            return
        count = max(len(sessions), 1)
        self.report.add(
            "tickets",
            "yes",
            f"{count} ticket(s), lifetime {session.lifetime} s, "
            f"max_early_data {session.max_early_data}",
        )
        early = session.max_early_data > 0
        for name, use_early in (("resumption", False), ("0-RTT", True)):
            if use_early and not early:
                self.report.add("0-RTT", "no", "tickets allow no early data")
                continue
            cell = self._cell(name)
            try:
                config = self.config(cell, session_store=store)
                chan = self.connect(
                    cell, config, session=session, early_data=REQUEST if use_early else None
                )
                hs = chan.handshake
                _talk(chan, self.timeout)
                if use_early:
                    accepted = hs.early_data == "accepted"
                    self.report.add(
                        "0-RTT", "yes" if accepted else "no", f"early data {hs.early_data}"
                    )
                else:
                    self.report.add(
                        "resumption",
                        "yes" if hs.resumed else "no",
                        f"resumed={hs.resumed}, psk_mode={hs.psk_mode}",
                    )
                chan.close()
            except CellFailure as exc:
                self.report.add(name, "deviation", str(exc), self.keep(cell))
            finally:
                cell.close()
            session = store.take(self.server_name, self.port) or session

    def connection_id(self) -> None:
        def check(cell: Cell, chan: Any) -> str:
            conn = chan.connection
            theirs, ours = conn.cid_sent, conn.cid_received
            if not theirs and not ours:
                return "none"
            _talk(chan, self.timeout)
            return f"server's CID {len(theirs or b'')} B, ours {len(ours or b'')} B (in use)"

        ok, detail, cell = self.attempt("cid", {"cid_length": 8}, check)
        if not ok:
            self.report.add("Connection ID", "deviation", detail, self.keep(cell))
        else:
            self.report.add("Connection ID", "no" if detail == "none" else "yes", detail)

    def connection_id_updates(self) -> None:
        """RFC 9147 §9: with CIDs negotiated, ask the server for a spare one."""

        def check(cell: Cell, chan: Any) -> str:
            conn = chan.connection
            if not conn.cid_sent:
                return "n/a: the server gave no CID"
            conn.request_connection_ids(1)
            try:
                _talk(chan, self.timeout)
            except CellFailure as exc:
                return f"no: {exc}"
            spares = conn.spare_connection_ids
            if spares:
                return f"yes: RequestConnectionId answered with {len(spares)} spare CID"
            return "no: RequestConnectionId not answered (§9: SHOULD answer)"

        ok, detail, cell = self.attempt("cid-update", {"cid_length": 8}, check)
        status = detail.split(":", 1)[0] if ok else "deviation"
        self.report.add("CID updates", status, detail, None if ok else self.keep(cell))

    def corrupted_record(self) -> None:
        cell = self._cell("corrupted-record")
        try:
            chan = self.connect(cell, self.config(cell))
            if isinstance(chan, OurTLS):
                status, detail = _corrupt_tls(chan, self.timeout)
            else:
                status, detail = _corrupt_dtls(chan, self.timeout)
        except CellFailure as exc:
            status, detail = "error", str(exc)
        finally:
            cell.close()
        self.failures += 1
        self.report.add(
            "corrupted record", status, detail, self.keep(cell) if status != "yes" else None
        )

    def bad_client_hellos(self) -> None:
        cases = [
            ("bad extension length", SUPPORTED_GROUPS, ("decode_error",)),
            ("all-zero X25519 share", KEY_SHARE, ("illegal_parameter", "handshake_failure")),
        ]
        for name, ext_type, expected in cases:
            cell = self._cell(name.replace(" ", "-"))
            config = self.config(cell, groups=("x25519", "secp256r1"))
            try:
                if self.dtls:
                    outcome = _bad_hello_dtls(self, config, ext_type)
                else:
                    outcome = _bad_hello_tls(self, config, ext_type)
            except OSError as exc:
                outcome = f"socket: {exc}"
            finally:
                cell.close()
            self.failures += 1
            if outcome in expected:
                self.report.add(f"ClientHello, {name}", "yes", f"answered {outcome}")
            else:
                want = " or ".join(expected)
                self.report.add(
                    f"ClientHello, {name}",
                    "deviation",
                    f"answered {outcome}, expected {want}",
                    self.keep(cell),
                )


# -- helpers ---------------------------------------------------------------------------------------


def _talk(chan: Any, timeout: float) -> bytes:
    """Send the request; whatever comes back within ``timeout`` (b"" if nothing)."""
    chan.send(REQUEST)
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = chan.recv(max(min(deadline - time.monotonic(), 0.5), 0.05))
        except CellFailure as exc:
            if "within" in str(exc):
                if got:
                    break
                continue
            raise
        if not data:
            break
        got += data
    return bytes(got)


def _received_sizes(cell: Cell) -> list[int]:
    from .scenarios import received_record_sizes

    return received_record_sizes(cell)


def _hrr_cookies(cell: Cell) -> list[bool]:
    from .scenarios import hello_retry_cookies

    return hello_retry_cookies(cell, "received")


def _corrupt_tls(chan: OurTLS, timeout: float) -> tuple[str, str]:
    """RFC 8446 §5.2: a record that fails to deprotect MUST end the connection with
    bad_record_mac."""
    chan.conn.send_data(REQUEST)
    record = bytearray(chan.conn.data_to_send())
    record[-1] ^= 0x01  # the last byte of the AEAD tag
    chan.sock.setblocking(True)
    chan.sock.sendall(bytes(record))
    chan.sock.setblocking(False)
    try:
        while chan.recv(timeout):
            pass
    except CellFailure:
        pass
    error = chan.conn.error
    if isinstance(error, ProtocolError) and error.by_peer and error.alert is not None:
        if error.alert.name == "bad_record_mac":
            return "yes", "answered bad_record_mac"
        return "deviation", f"answered {error.alert.name}, expected bad_record_mac"
    if chan.eof:
        return "deviation", "closed TCP without an alert (expected bad_record_mac)"
    return "deviation", "no answer to a corrupted record (expected bad_record_mac)"


def _corrupt_dtls(chan: OurDTLS, timeout: float) -> tuple[str, str]:
    """RFC 9147 §4.5.2: invalid records SHOULD be silently discarded (an alert, if any, is a
    fatal bad_record_mac); the association must go on."""
    conn = chan.connection
    conn.send_data(b"corrupted")
    for datagram in conn.datagrams_to_send(time.time()):
        broken = bytearray(datagram)
        broken[-1] ^= 0x01
        chan.dsock.socket.send(bytes(broken))
    try:
        answer = _talk(chan, timeout)
    except CellFailure as exc:
        if "bad_record_mac" in str(exc):
            return "yes", "fatal bad_record_mac (allowed by RFC 9147 §4.5.2)"
        return "deviation", f"after a corrupted record: {exc}"
    if answer:
        return "yes", "silently discarded; the association goes on"
    return "yes", "silently discarded (no data came back to a request, cannot tell more)"


def _locate_extension(hello: bytes, offset: int, ext_type: int) -> int | None:
    """Offset of extension ``ext_type``'s body in a ClientHello whose body starts at
    ``offset`` (legacy_version): None if absent or the message is cut short."""
    pos = offset + 2 + 32
    pos += 1 + hello[pos]  # legacy_session_id
    if hello[offset] == 0xFE:  # DTLS (legacy_version 0xfefd): legacy_cookie
        pos += 1 + hello[pos]
    pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
    pos += 1 + hello[pos]  # compression methods
    end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= min(end, len(hello)):
        kind = int.from_bytes(hello[pos : pos + 2], "big")
        size = int.from_bytes(hello[pos + 2 : pos + 4], "big")
        if kind == ext_type:
            return pos + 4 if pos + 4 + size <= len(hello) else None
        pos += 4 + size
    return None


def _break(hello: bytearray, offset: int, ext_type: int) -> bool:
    """Corrupt ``ext_type`` in place, keeping every length outside it intact."""
    body = _locate_extension(bytes(hello), offset, ext_type)
    if body is None:
        return False
    if ext_type == SUPPORTED_GROUPS:
        inner = int.from_bytes(hello[body : body + 2], "big")
        hello[body : body + 2] = (inner + 2).to_bytes(2, "big")  # runs past the extension
    else:  # key_share: client_shares<..>, first entry group(2) length(2) key
        group = int.from_bytes(hello[body + 2 : body + 4], "big")
        size = int.from_bytes(hello[body + 4 : body + 6], "big")
        if group != 29:
            return False
        hello[body + 6 : body + 6 + size] = bytes(size)
    return True


def _alert_of(data: bytes, dtls: bool) -> str:
    if not data:
        return "nothing (connection closed or no answer)"
    header = 13 if dtls else 5
    if data[0] == 21 and len(data) >= header + 2:
        return ALERT_NAMES.get(data[header + 1], f"alert {data[header + 1]}")
    if data[0] == 22:
        return "a handshake message (the malformed ClientHello was accepted)"
    return f"a record of type {data[0]}"


def _recv(sock: socket.socket, timeout: float) -> bytes:
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return b""
    try:
        return sock.recv(65535)
    except OSError:
        return b""


def _bad_hello_tls(prober: Prober, config: ClientConfig, ext_type: int) -> str:
    conn = TLSClientConnection(config, server_name=prober.server_name)
    hello = bytearray(conn.data_to_send())
    if not _break(hello, 5 + 4, ext_type):
        return "n/a (extension not in our ClientHello)"
    with socket.create_connection((prober.host, prober.port), timeout=prober.timeout) as sock:
        sock.sendall(bytes(hello))
        return _alert_of(_recv(sock, prober.timeout), dtls=False)


def _bad_hello_dtls(prober: Prober, config: ClientConfig, ext_type: int) -> str:
    """The malformed ClientHello over DTLS; a stateless server may answer it with a cookie
    HRR first (parsing no more than it needs): the ClientHello with the cookie is then
    malformed the same way."""
    conn = DTLSClientConnection(config, server_name=prober.server_name)
    conn.start(time.time())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((prober.host, prober.port))
        datagrams = conn.datagrams_to_send(time.time())
        for attempt in range(2):
            first = bytearray(datagrams[0])
            if not _break(first, 13 + 12, ext_type):
                return "n/a (extension not in our ClientHello)"
            sock.send(bytes(first))
            for rest in datagrams[1:]:
                sock.send(rest)
            answer = _recv(sock, prober.timeout)
            if attempt == 0 and answer[:1] == b"\x16" and HRR_RANDOM in answer:
                # cookie HRR without looking at the bad extension: answer it
                conn.receive_datagram(answer, time.time())
                datagrams = conn.datagrams_to_send(time.time())
                if not datagrams:
                    return "a HelloRetryRequest our client could not answer"
                continue
            return _alert_of(answer, dtls=True)
    return "nothing"


# -- command line ----------------------------------------------------------------------------------


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interop probe",
        description="Probe a TLS 1.3 or DTLS 1.3 server: which features it has and where it "
        "deviates from RFC 8446 / RFC 9147. Traces of failing probes go to "
        "interop/results/traces/.",
    )
    parser.add_argument("target", type=parse_target, metavar="HOST:PORT")
    parser.add_argument("--dtls", action="store_true", help="DTLS 1.3 over UDP")
    parser.add_argument("--servername", help="SNI and the name to verify (default: HOST)")
    parser.add_argument("--cafile", type=Path, help="trusted roots (default: the system store)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per wait (default 5 s)")
    parser.add_argument("--json", type=Path, help="also write the findings as JSON")
    parser.add_argument("--traces", type=Path, default=TRACES, help="where failing traces go")
    parser.add_argument(
        "--only",
        metavar="PROBES",
        help="comma-separated probe names to run after the baseline handshake, e.g. "
        "'CID updates,KeyUpdate' (default: all)",
    )
    args = parser.parse_args(argv)
    host, port = args.target
    prober = Prober(
        host,
        port,
        dtls=args.dtls,
        server_name=args.servername,
        cafile=args.cafile,
        timeout=args.timeout,
        traces=args.traces,
        only=[name.strip() for name in args.only.split(",")] if args.only else (),
    )
    report = prober.run()
    print(report.text())
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "target": report.target,
                    "dtls": report.dtls,
                    "findings": [asdict(f) for f in report.findings],
                },
                indent=1,
            )
            + "\n"
        )
    handshake = report.get("handshake")
    return 0 if handshake is not None and handshake.status == "yes" else 1
