"""OpenSSL 3.0 command line: ``openssl s_server`` and ``openssl s_client`` (TLS 1.3 only).

s_server serves with its stdin/stdout as the application (what we send is printed, what it
reads on stdin goes to us), ``-rev`` for bulk transfers; s_client is driven line by line on
stdin (``K`` = KeyUpdate(update_requested), ``Q`` = close_notify and exit). Both run under
``stdbuf -o0``: OpenSSL writes through stdio, which a log file would otherwise buffer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import (
    EARLY_DATA,
    PSK_IDENTITY,
    PSK_KEY,
    RSL_PAYLOAD,
    SERVER_NAME,
    Cell,
    CellFailure,
    Peer,
    PeerClient,
    PeerServer,
    ReverseApp,
    Role,
    Spec,
    StdioApp,
    random_tag,
)
from .process import HOST, PeerProcess, wait_bound

SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
GROUPS = {
    "x25519": "X25519",
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
    "x448": "X448",
}


def _common(spec: Spec, pki: Path, role: Role) -> list[str]:
    """Options both s_server and s_client take for ``spec`` (``role``: the peer's)."""
    args = ["-tls1_3"]
    if spec.suite:
        args += ["-ciphersuites", spec.suite]
    elif role == "server":
        args += ["-ciphersuites", ":".join(SUITES)]
    if spec.group:
        args += ["-groups", GROUPS[spec.group]]
    elif spec.hrr:
        # the server takes P-384 only; the client shares X25519 first (then offers P-384)
        args += ["-groups", "P-384" if role == "server" else "X25519:P-384"]
    if spec.alpn:
        args += ["-alpn", ",".join(reversed(spec.alpn)) if role == "server" else "http/1.1"]
    if spec.psk:
        args += ["-psk", PSK_KEY.hex(), "-psk_identity", PSK_IDENTITY]
    return args


class OpenSSL(Peer):
    name = "openssl"
    tls = True
    dtls = False

    def __init__(self, version: str, exe: Path | None, missing: str | None = None) -> None:
        super().__init__(version, missing)
        self.exe = exe
        self.label = f"OpenSSL {version}"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return f"{reason} (DTLS 1.2 only)" if spec.dtls else reason
        if spec.group and spec.group not in GROUPS:
            return f"{self.label} has no {spec.group} (OpenSSL 3.5+)"
        return None

    def argv(self, command: str) -> list[str | Path]:
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None or self.exe is None:
            raise CellFailure("stdbuf (coreutils) and openssl are needed")
        return [stdbuf, "-o0", self.exe, command]

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        return OpenSSLServer(self, cell, spec)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        return OpenSSLClient(self, cell, spec, port)


class OpenSSLServer(PeerServer):
    def __init__(self, peer: OpenSSL, cell: Cell, spec: Spec) -> None:
        self.peer = peer
        self.cell = cell
        self.spec = spec
        port = cell.ports.take()
        process = self._start(port)
        if spec.bulk:
            super().__init__(port, ReverseApp(), process)
            self.bulk_mode = "reverse"
        else:
            super().__init__(port, StdioApp(process), process)

    def _start(self, port: int) -> PeerProcess:
        spec, pki = self.spec, self.cell.pki
        argv = [
            *self.peer.argv("s_server"),
            "-accept",
            f"{HOST}:{port}",
            "-naccept",
            str(spec.connections),
            "-cert",
            pki / "server.pem",
            "-key",
            pki / "server.key",
            *_common(spec, pki, "server"),
        ]
        if spec.bulk:
            argv.append("-rev")
        if spec.mtls:
            argv += ["-Verify", "1", "-CAfile", pki / "ca.pem", "-verify_return_error"]
        if spec.key_update:
            argv.append("-trace")
        if spec.early_data == "accept":
            argv.append("-early_data")
        elif spec.early_data == "reject":
            # tickets promise 0-RTT, but s_server only reads early data with -early_data:
            # the resumed handshake rejects it (RFC 8446 §4.2.10)
            argv += ["-max_early_data", "16384"]
        process = self.cell.start(argv, "s_server")
        wait_bound(process, port, udp=False, timeout=self.cell.timeout)
        return process

    def peer_key_update(self) -> bool:
        """s_server's own KeyUpdate(update_requested): the ``K`` command."""
        assert self.process is not None
        start = len(self.process.output())
        self.process.send(b"K\n")
        return self.process.wait_for("KeyUpdate", self.cell.timeout, start=start)

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        code = self.process.finish(timeout)
        output = self.process.output()
        if code is None:
            raise CellFailure(
                f"s_server did not exit: {self.process.last_line()}", self.process.log
            )
        if code != 0:
            raise CellFailure(
                f"s_server exit {code}: {self.process.error_line()}", self.process.log
            )
        if self.spec.early_data == "accept" and "Early data received" not in output:
            raise CellFailure("s_server received no early data", self.process.log)
        if self.spec.resumption and "Reused session-id" not in output:
            raise CellFailure("s_server did not report a reused session", self.process.log)
        return ""


class OpenSSLClient(PeerClient):
    """s_client runs for every connection of the scenario; ``finish`` drives and checks."""

    def __init__(self, peer: OpenSSL, cell: Cell, spec: Spec, port: int) -> None:
        super().__init__(None)
        self.peer = peer
        self.cell = cell
        self.spec = spec
        self.port = port

    def _argv(self, *extra: str | Path) -> list[str | Path]:
        pki, spec = self.cell.pki, self.spec
        argv = [
            *self.peer.argv("s_client"),
            "-connect",
            f"{HOST}:{self.port}",
            "-CAfile",
            pki / "ca.pem",
            "-servername",
            SERVER_NAME,
            "-verify_hostname",
            SERVER_NAME,
            "-verify_return_error",
            *_common(spec, pki, "client"),
        ]
        if spec.mtls:
            argv += ["-cert", pki / "client.pem", "-key", pki / "client.key"]
        if spec.key_update:
            argv.append("-trace")
        return [*argv, *extra]

    def _line(self, process: PeerProcess, text: str) -> None:
        """Send a line; our server echoes it: it must appear in s_client's output."""
        start = len(process.output())
        process.send(text.encode() + b"\n")
        if not process.wait_for(text + "\n", self.cell.timeout, start=start):
            raise CellFailure(f"s_client never got its echo: {process.error_line()}", process.log)

    def _quit(self, process: PeerProcess) -> str:
        process.send(b"Q\n")
        code = process.finish(self.cell.timeout)
        if code != 0:
            raise CellFailure(f"s_client exit {code}: {process.error_line()}", process.log)
        return process.output()

    def _connection(self, *extra: str | Path) -> str:
        process = self.cell.start(self._argv(*extra), "s_client")
        size = RSL_PAYLOAD if self.spec.record_size_limit else 0
        self._line(process, f"ping-{random_tag(size)}")
        if self.spec.key_update:
            # our server's KeyUpdate(update_requested) came with the echo: s_client answers
            # before this line (RFC 8446 §4.6.3); then its own, with K
            self._line(process, f"answer-{random_tag()}")
            start = len(process.output())
            process.send(b"K\n")
            if not process.wait_for("KeyUpdate", self.cell.timeout, start=start):
                raise CellFailure("s_client sent no KeyUpdate", process.log)
            self._line(process, f"after-K-{random_tag()}")
        return self._quit(process)

    def _bulk(self) -> str:
        size = self.spec.bulk
        data = self.cell.workdir / "bulk-in.bin"
        data.write_bytes(__import__("secrets").token_bytes(size))
        out = self.cell.workdir / "bulk-out.bin"
        process = self.cell.start(self._argv("-quiet"), "s_client-bulk", stdin=data, stdout=out)
        code = process.finish(self.cell.timeout * 3)
        if code != 0:
            raise CellFailure(f"s_client exit {code}: {process.error_line()}", process.log)
        if out.read_bytes() != data.read_bytes():
            raise CellFailure(
                f"s_client got {out.stat().st_size} bytes back, not the {size} it sent"
            )
        return f"{size >> 20} MiB each way"

    def finish(self, timeout: float) -> str:
        spec = self.spec
        if spec.bulk:
            return self._bulk()
        if spec.connections == 1:
            self._connection()
            return ""
        session = self.cell.workdir / "session.pem"
        self._connection("-sess_out", session)
        extra: list[str | Path] = ["-sess_in", session]
        if spec.early_data:
            early = self.cell.workdir / "early.txt"
            early.write_bytes(EARLY_DATA)
            extra += ["-early_data", early]
        output = self._connection(*extra)
        if "Reused, TLSv1.3" not in output:
            raise CellFailure("s_client did not resume")
        if spec.early_data == "accept" and "Early data was accepted" not in output:
            raise CellFailure("s_client: early data not accepted")
        if spec.early_data == "reject" and "Early data was rejected" not in output:
            raise CellFailure("s_client: early data not rejected")
        return ""
