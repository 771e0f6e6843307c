"""GnuTLS 3.7 command line: ``gnutls-serv --echo`` and ``gnutls-cli`` (TLS 1.3 only).

gnutls-cli sends its stdin line by line and writes what it receives to stdout (its own
messages go to ``--logfile``); ``--inline-commands`` turns a ``^rekey1^`` line into a
KeyUpdate(update_requested). ``-r`` reconnects resuming the first session (``--earlydata``
sends a file as 0-RTT data then). gnutls-serv serves until killed; its echo works on text
lines, so bulk transfers use hex lines.
"""

from __future__ import annotations

import secrets
import threading
import time

from ..peers import PeerInfo
from .base import (
    EARLY_DATA,
    HRR_GROUP,
    PSK_IDENTITY,
    PSK_KEY,
    RSL_PAYLOAD,
    SERVER_NAME,
    Cell,
    CellFailure,
    EchoApp,
    Peer,
    PeerClient,
    PeerServer,
    Role,
    Spec,
    random_tag,
)
from .process import HOST, PeerProcess, ProcessServer

SUITES = {
    "TLS_AES_128_GCM_SHA256": "AES-128-GCM",
    "TLS_AES_256_GCM_SHA384": "AES-256-GCM",
    "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
    "TLS_AES_128_CCM_SHA256": "AES-128-CCM",
    "TLS_AES_128_CCM_8_SHA256": "AES-128-CCM-8",
}
GROUPS = {
    "x25519": "X25519",
    "x448": "X448",
    "secp256r1": "SECP256R1",
    "secp384r1": "SECP384R1",
    "secp521r1": "SECP521R1",
}


def priority(spec: Spec, role: Role) -> str:
    """A GnuTLS priority string for ``spec`` (``role``: GnuTLS's)."""
    parts = ["NORMAL", "-VERS-ALL", "+VERS-TLS1.3"]
    if spec.suite:
        parts += ["-CIPHER-ALL", "+" + SUITES[spec.suite]]
    else:
        parts += ["+AES-128-CCM", "+AES-128-CCM-8"]
    if spec.group:
        parts += ["-GROUP-ALL", "+GROUP-" + GROUPS[spec.group]]
    elif spec.hrr and role == "server":
        parts += ["-GROUP-ALL", "+GROUP-" + GROUPS[HRR_GROUP]]
    elif spec.hrr:
        parts += ["-GROUP-ALL", "+GROUP-X25519", "+GROUP-" + GROUPS[HRR_GROUP]]
        # (gnutls-cli --single-key-share: else GnuTLS shares both and no HRR happens)
    if spec.psk:
        parts += ["+ECDHE-PSK", "+DHE-PSK", "+PSK"]
    return ":".join(parts)


class GnuTLS(Peer):
    name = "gnutls"
    tls = True
    dtls = False

    def __init__(self, info: PeerInfo | None) -> None:
        super().__init__(info.version if info else "?")
        self.info = info
        self.label = f"GnuTLS {self.version}"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.group and spec.group not in GROUPS:
            return f"{self.label} has no {spec.group}"
        return None

    def exe(self, name: str) -> str:
        if self.info is None:
            raise CellFailure("gnutls is not installed")
        return str(self.info.exe(name))

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        return GnuTLSServer(self, cell, spec)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        return GnuTLSClient(self, cell, spec, port)


class GnuTLSServer(ProcessServer):
    label = "gnutls-serv"

    def __init__(self, peer: GnuTLS, cell: Cell, spec: Spec) -> None:
        pki = cell.pki
        port = cell.ports.take()
        argv: list[str | object] = [
            peer.exe("gnutls-serv"),
            "-p",
            str(port),
            "--echo",
            "--x509certfile",
            pki / "server.pem",
            "--x509keyfile",
            pki / "server.key",
            "--priority",
            priority(spec, "server"),
        ]
        if spec.mtls:
            argv += ["-r", "--verify-client-cert", "--x509cafile", pki / "ca.pem"]
        else:
            argv.append("-a")
        for proto in reversed(spec.alpn):
            argv += ["--alpn", proto]
        if spec.record_size_limit:
            argv += ["--recordsize", str(spec.record_size_limit)]
        if spec.psk:
            passwd = cell.workdir / "psk.passwd"
            passwd.write_text(f"{PSK_IDENTITY}:{PSK_KEY.hex()}\n")
            argv += ["--pskpasswd", passwd]
        if spec.early_data:
            argv += ["--earlydata", "--maxearlydata", "16384"]
        self.argv = [str(a) for a in argv]
        self.cell = cell
        self.spec = spec
        super().__init__(port, EchoApp())
        self.bulk_mode = "lines"
        # gnutls-serv has no way to decline 0-RTT of a ticket it can read: a fresh process
        # (new ticket key) rejects it with a full handshake instead
        self.reject_by_restart = True

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        output = self.alive_output()
        if self.spec.resumption and "This is a resumed session" not in output:
            raise CellFailure("gnutls-serv saw no resumed session", self.process.log)
        if "Error" in output and "Error in handshake" in output:
            raise CellFailure(f"gnutls-serv: {self.process.error_line()}", self.process.log)
        return ""


class GnuTLSClient(PeerClient):
    def __init__(self, peer: GnuTLS, cell: Cell, spec: Spec, port: int) -> None:
        super().__init__(None)
        self.peer = peer
        self.cell = cell
        self.spec = spec
        self.port = port

    def _argv(self, info_log: str) -> list[str]:
        pki, spec = self.cell.pki, self.spec
        argv = [
            self.peer.exe("gnutls-cli"),
            HOST,
            "-p",
            str(self.port),
            "--x509cafile",
            str(pki / "ca.pem"),
            "--verify-hostname",
            SERVER_NAME,
            "--sni-hostname",
            SERVER_NAME,
            "--priority",
            priority(spec, "client"),
            f"--logfile={self.cell.workdir / info_log}",
        ]
        if spec.mtls:
            argv += [
                "--x509certfile",
                str(pki / "client.pem"),
                "--x509keyfile",
                str(pki / "client.key"),
            ]
        if spec.alpn:
            argv.append("--alpn=http/1.1")
        if spec.record_size_limit:
            argv.append(f"--recordsize={spec.record_size_limit}")
        if spec.psk:
            argv += ["--pskusername", PSK_IDENTITY, "--pskkey", PSK_KEY.hex()]
        if spec.key_update:
            argv.append("--inline-commands")
        if spec.hrr:
            argv.append("--single-key-share")
        if spec.connections == 2:
            argv += ["-r", "--waitresumption"]
        if spec.early_data:
            early = self.cell.workdir / "early.txt"
            early.write_bytes(EARLY_DATA)
            argv.append(f"--earlydata={early}")
        return argv

    def _wait_line(self, process: PeerProcess, out: str, text: str) -> None:
        path = self.cell.workdir / out
        deadline = time.monotonic() + self.cell.timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if not process.alive():
                break
            time.sleep(0.02)
        raise CellFailure(f"gnutls-cli never got its echo: {process.error_line()}", process.log)

    def finish(self, timeout: float) -> str:
        spec = self.spec
        out = self.cell.workdir / "gnutls-cli.out"
        info = "gnutls-cli.info"
        if spec.bulk:
            data = self.cell.workdir / "bulk-in.txt"
            count = spec.bulk // 4096
            data.write_bytes(
                b"".join(secrets.token_hex(2047).encode() + b"x\n" for _ in range(count))
            )
            # gnutls-cli exits at stdin EOF without waiting for the rest of the echo: keep its
            # stdin open until everything came back
            process = self.cell.start(self._argv(info), "gnutls-cli", stdout=out)
            payload = data.read_bytes()
            feeder = threading.Thread(target=process.send, args=(payload,), daemon=True)
            feeder.start()
            deadline = time.monotonic() + timeout
            while out.stat().st_size < len(payload) and time.monotonic() < deadline:
                if not process.alive():
                    break
                time.sleep(0.05)
            process.close_stdin()
            code = process.finish(timeout)
            if out.read_bytes() != data.read_bytes():
                raise CellFailure(
                    f"gnutls-cli got {out.stat().st_size} of {data.stat().st_size} bytes back "
                    f"(exit {code})",
                    process.log,
                )
            return f"{spec.bulk >> 20} MiB each way (lines)"
        process = self.cell.start(self._argv(info), "gnutls-cli", stdout=out)
        if spec.record_size_limit:
            # gnutls-cli sends one record per line read and ignores short writes: lines
            # under the limit, RSL_PAYLOAD bytes in all
            lines = [f"ping-{random_tag(400)}" for _ in range(RSL_PAYLOAD // 400)]
        else:
            lines = [f"ping-{random_tag()}"]
        for line in lines:  # one at a time: a read of several lines would be one record
            process.send(line.encode() + b"\n")
            self._wait_line(process, out.name, line)
        if spec.key_update:
            second = f"answer-{random_tag()}"
            process.send(second.encode() + b"\n")
            self._wait_line(process, out.name, second)
            process.send(b"^rekey1^\n")
            third = f"after-rekey-{random_tag()}"
            process.send(third.encode() + b"\n")
            self._wait_line(process, out.name, third)
        process.close_stdin()  # EOF: gnutls-cli sends close_notify (bye) and exits
        code = process.finish(timeout)
        log = (self.cell.workdir / info).read_text(errors="replace")
        if code != 0:
            raise CellFailure(f"gnutls-cli exit {code}: {_first_error(log)}", process.log)
        if spec.connections == 2 and "This is a resumed session" not in log:
            raise CellFailure("gnutls-cli did not resume")
        return ""


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if "rror" in line or "alert" in line.lower():
            return line.strip()[:200]
    return text.strip().splitlines()[-1][:200] if text.strip() else "(no output)"
