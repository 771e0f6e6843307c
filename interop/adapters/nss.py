"""NSS 3.132 (Debian sid's libnss3-tools): ``selfserv`` and ``tstclnt`` for TLS 1.3,
``tstclnt -P server|client`` for DTLS 1.3 (shared/PEERS.md §2).

selfserv answers each HTTP request with a page that repeats the request, then closes with
close_notify. tstclnt as a TLS client sends a request file (``-A``) and prints the answer,
exiting once the server closes; with an open stdin pipe it relays lines but never exits by
itself (it is killed once its echo came). ``tstclnt -P server`` relays stdin/stdout over one
DTLS association. One NSS database per run trusts the test CA and holds the server and client
identities (``prepare``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..peers import PeerInfo
from .base import (
    EARLY_DATA,
    PSK_IDENTITY,
    PSK_KEY,
    RSL_PAYLOAD,
    App,
    Cell,
    CellFailure,
    Channel,
    Peer,
    PeerClient,
    PeerServer,
    Role,
    Spec,
    StdioApp,
    random_tag,
)
from .process import HOST, ProcessServer, wait_bound

SUITES = {
    "TLS_AES_128_GCM_SHA256": ":1301",
    "TLS_AES_256_GCM_SHA384": ":1302",
    "TLS_CHACHA20_POLY1305_SHA256": ":1303",
}
GROUPS = {
    "x25519": "x25519",
    "secp256r1": "P256",
    "secp384r1": "P384",
    "secp521r1": "P521",
    "X25519MLKEM768": "x25519mlkem768",
}


class HttpEchoApp(App):
    """selfserv: one HTTP request per connection, answered with a page that contains it."""

    rounds = 1

    def exchange(self, channel: Channel, timeout: float, size: int = 0) -> None:
        pad = f"X-Pad: {random_tag(size)}\r\n" if size else ""
        request = f"GET / HTTP/1.0\r\nX-Tag: {random_tag()}\r\n{pad}\r\n".encode()
        channel.send(request)
        got = bytearray()
        while data := channel.recv(timeout):
            got += data
        if not got.startswith(b"HTTP/1.0 200 OK") or request not in got:
            raise CellFailure(f"selfserv's page lacks our request: {bytes(got[:80])!r}")


class NSS(Peer):
    name = "nss"
    tls = True
    dtls = True
    echo_early_data = True  # tstclnt -A -Z sends its request file as 0-RTT data

    def __init__(self, info: PeerInfo | None) -> None:
        super().__init__(info.version if info else "?")
        self.info = info
        self.label = f"NSS {self.version}"
        self.db = ""

    def exe(self, name: str) -> Path:
        if self.info is None:
            raise CellFailure("nss is not installed")
        return self.info.exe(name)

    @property
    def env(self) -> dict[str, str]:
        return self.info.environ() if self.info else {}

    def prepare(self, shared: Path, pki: Path) -> None:
        """An NSS database trusting our CA, with the server and client identities."""
        directory = shared / "nssdb"
        directory.mkdir()
        self.db = f"sql:{directory}"
        key = serialization.load_pem_private_key((pki / "client.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((pki / "client.pem").read_bytes())
        (shared / "client.p12").write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"client",
                key,  # type: ignore[arg-type]
                cert,
                None,
                serialization.NoEncryption(),
            )
        )
        steps: list[list[str | Path]] = [
            [self.exe("certutil"), "-N", "-d", self.db, "--empty-password"],
            [
                self.exe("certutil"),
                "-A",
                "-d",
                self.db,
                "-n",
                "ca",
                "-t",
                "CT,C,C",
                "-i",
                pki / "ca.pem",
            ],
            [self.exe("pk12util"), "-i", pki / "server.p12", "-d", self.db, "-W", ""],
            [self.exe("pk12util"), "-i", shared / "client.p12", "-d", self.db, "-W", ""],
        ]
        for argv in steps:
            done = subprocess.run(
                [str(a) for a in argv],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{argv[0]} {argv[1]}: {done.stdout}{done.stderr}".strip())

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.suite and spec.suite not in SUITES:
            return f"{self.label} has no {spec.suite}"
        if spec.group and spec.group not in GROUPS:
            return f"{self.label} has no {spec.group}"
        if spec.cid:
            return f"{self.label} has no DTLS Connection ID (RFC 9146)"
        if spec.psk and role == "client":
            return (
                "NSS selfserv -z never selects the external PSK: it authenticates with its "
                "certificate (NSS's own tstclnt -z too)"
            )
        if spec.alpn and role == "server":
            return "NSS's tstclnt cannot offer ALPN"
        if spec.bulk and role == "client":
            what = "tstclnt -P server relays lines" if spec.dtls else "selfserv answers one request"
            return f"{self.label}: no echo server for a bulk transfer ({what})"
        if spec.dtls and spec.bulk:
            return f"{self.label}: tstclnt -P client has no bulk mode"
        if spec.dtls and spec.resumption and role == "server":
            return (
                f"{self.label}'s tstclnt -P client does not reconnect (-L 2) after our "
                "close_notify: no second association to resume"
            )
        if spec.dtls and spec.resumption and role == "client":
            return (
                f"{self.label}'s DTLS server (tstclnt -P server) serves one association per "
                "process: its tickets die with it"
            )
        return None

    def common(self, spec: Spec, role: Role) -> list[str]:
        args = ["-d", self.db, "-V", "tls1.3:tls1.3"]
        if spec.suite:
            args += ["-c", SUITES[spec.suite]]
        if spec.group:
            args += ["-I", GROUPS[spec.group]]
        elif spec.hrr or (spec.cookie and role == "server"):
            args += ["-I", "P384" if role == "server" else "x25519,P384"]
        elif spec.dtls or role == "client":
            args += ["-I", "x25519,P256,P384,P521"]
        if spec.psk:
            args += ["-z", f"0x{PSK_KEY.hex()}:{PSK_IDENTITY}"]
        return args

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        if spec.dtls:
            return NSSDTLSServer(self, cell, spec)
        return SelfServ(self, cell, spec)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        return TstClnt(self, cell, spec, port)

    def client_connections(self, spec: Spec) -> int:
        # tstclnt sends its request as 0-RTT only if it has read it before the (loopback-fast)
        # handshake is done: two resumed connections give it two chances
        return 3 if spec.early_data == "accept" else spec.connections

    def echo_limit(self, spec: Spec) -> int | None:
        """tstclnt -A exits once the server closes: close after its request's echo."""
        if spec.dtls or spec.key_update:
            return None
        if spec.bulk:
            return spec.bulk
        if spec.early_data:
            return len(EARLY_DATA)
        return len(f"ping-{random_tag(RSL_PAYLOAD if spec.record_size_limit else 0)}\n")


class SelfServ(ProcessServer):
    label = "selfserv"

    def __init__(self, peer: NSS, cell: Cell, spec: Spec) -> None:
        self.peer, self.cell, self.spec = peer, cell, spec
        self.env = peer.env
        port = cell.ports.take()
        argv: list[str | Path] = [
            peer.exe("selfserv"),
            "-n",
            "server",
            "-p",
            str(port),
            *peer.common(spec, "server"),
            "-u",
        ]
        if spec.mtls:
            argv += ["-r", "-r"]
        if spec.alpn:
            argv.append("-Q")
        if spec.early_data:
            argv.append("-Z")
        self.argv = argv
        super().__init__(port, HttpEchoApp())
        self.reject_by_restart = True  # selfserv accepts 0-RTT whenever -Z is on
        # NSS's anti-replay context rejects all 0-RTT during its first window (tls13replay.c:
        # it cannot know the ClientHellos seen before it started)
        self.early_data_delay = 10.5  # selfserv: SSL_CreateAntiReplayContext(now, 10 s, ...)

    def finish(self, timeout: float) -> str:
        self.alive_output()
        return ""


class NSSDTLSServer(PeerServer):
    """``tstclnt -P server``: one association, stdin/stdout as the application."""

    def __init__(self, peer: NSS, cell: Cell, spec: Spec) -> None:
        port = cell.ports.take()
        argv: list[str | Path] = [
            peer.exe("tstclnt"),
            "-P",
            "server",
            "-4",
            "-h",
            HOST,
            "-p",
            str(port),
            "-n",
            "server",
            *peer.common(spec, "server"),
        ]
        process = cell.start(argv, "tstclnt-server", env=peer.env)
        wait_bound(process, port, udp=True, timeout=cell.timeout)
        super().__init__(port, StdioApp(process), process)

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        if not self.process.alive() and self.process.proc.returncode not in (0, None):
            raise CellFailure(
                f"tstclnt -P server exit {self.process.proc.returncode}: "
                f"{self.process.error_line()}",
                self.process.log,
            )
        return ""


class TstClnt(PeerClient):
    def __init__(self, peer: NSS, cell: Cell, spec: Spec, port: int) -> None:
        super().__init__(None)
        self.peer, self.cell, self.spec, self.port = peer, cell, spec, port

    def _argv(self) -> list[str | Path]:
        spec = self.spec
        argv: list[str | Path] = [
            self.peer.exe("tstclnt"),
            "-4",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-a",
            "localhost",
            *self.peer.common(spec, "client"),
        ]
        if spec.dtls:
            argv[1:1] = ["-P", "client"]
        if spec.mtls:
            argv += ["-n", "client"]
        connections = self.peer.client_connections(spec)
        if connections > 1:
            argv += ["-L", str(connections), "-u"]
        if spec.early_data:
            argv.append("-Z")
        return argv

    def _lines(self) -> list[bytes]:
        size = RSL_PAYLOAD if self.spec.record_size_limit else 0
        lines = [f"ping-{random_tag(size)}\n".encode()]
        if self.spec.key_update:
            lines.append(f"answer-{random_tag()}\n".encode())
        return lines

    def finish(self, timeout: float) -> str:
        spec = self.spec
        lines = self._lines()
        if spec.dtls or spec.key_update:
            return self._interactive(lines, timeout)
        # TLS: the request from a file; our server closes after the echo and tstclnt exits
        request = self.cell.workdir / "request.txt"
        request.write_bytes(b"".join(lines) if not spec.early_data else EARLY_DATA)
        argv = [*self._argv(), "-A", request]
        stdout = self.cell.workdir / "tstclnt.out" if spec.bulk else None
        if spec.bulk:
            request.write_bytes(_bulk_payload(spec.bulk))
        process = self.cell.start(argv, "tstclnt", env=self.peer.env, stdin="null", stdout=stdout)
        code = process.finish(timeout)
        if code != 0:
            raise CellFailure(f"tstclnt exit {code}: {process.error_line()}", process.log)
        if stdout is not None:
            if request.read_bytes() not in stdout.read_bytes():
                raise CellFailure(f"tstclnt printed {stdout.stat().st_size} bytes, not the echo")
            return f"{spec.bulk >> 20} MiB each way"
        if request.read_text() not in process.output():
            raise CellFailure("tstclnt never printed our echo", process.log)
        return ""

    def _interactive(self, lines: list[bytes], timeout: float) -> str:
        """tstclnt on an open stdin: a line, its echo, the next line (which follows tstclnt's
        answer to our KeyUpdate), then it is killed: it does not exit by itself."""
        process = self.cell.start(self._argv(), "tstclnt", env=self.peer.env)
        for _ in range(self.spec.connections):
            for line in lines:
                start = len(process.output())
                process.send(line)
                if not process.wait_for(line.decode().strip(), self.cell.timeout, start=start):
                    raise CellFailure(
                        f"tstclnt never got its echo: {process.error_line()}", process.log
                    )
        time.sleep(0.2)  # let the last ACKs and KeyUpdates through before the kill
        process.kill()
        return ""


def _bulk_payload(size: int) -> bytes:
    import secrets

    return secrets.token_bytes(size)
