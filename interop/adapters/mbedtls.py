"""mbedTLS 3.6.7's sample programs ``ssl_server2`` and ``ssl_client2`` (TLS 1.3 only; built
with MBEDTLS_SSL_EARLY_DATA and MBEDTLS_SSL_RECORD_SIZE_LIMIT, shared/PEERS.md §4).

ssl_server2 answers each request (read until a chunk ends in a newline) with a short HTML page
and closes with close_notify, then waits for the next connection. ssl_client2 sends
``GET / HTTP/1.0``, reads until a chunk ends in a newline (our echo does), closes, and with
``reconnect=1`` resumes once (its request then goes as 0-RTT data with ``early_data=1``).
"""

from __future__ import annotations

from pathlib import Path

from ..peers import PeerInfo
from .base import (
    HRR_GROUP,
    PSK_IDENTITY,
    PSK_KEY,
    SERVER_NAME,
    Cell,
    CellFailure,
    FixedApp,
    Peer,
    PeerClient,
    PeerServer,
    Role,
    Spec,
)
from .process import HOST, ProcessServer

SUITES = {
    "TLS_AES_128_GCM_SHA256": "TLS1-3-AES-128-GCM-SHA256",
    "TLS_AES_256_GCM_SHA384": "TLS1-3-AES-256-GCM-SHA384",
    "TLS_CHACHA20_POLY1305_SHA256": "TLS1-3-CHACHA20-POLY1305-SHA256",
    "TLS_AES_128_CCM_SHA256": "TLS1-3-AES-128-CCM-SHA256",
    "TLS_AES_128_CCM_8_SHA256": "TLS1-3-AES-128-CCM-8-SHA256",
}
GROUPS = ("x25519", "x448", "secp256r1", "secp384r1", "secp521r1")


class MbedTLS(Peer):
    name = "mbedtls"
    tls = True
    dtls = False

    def __init__(self, info: PeerInfo | None) -> None:
        super().__init__(info.version if info else "?")
        self.info = info
        self.label = f"mbedTLS {self.version}"

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return f"{reason} (DTLS 1.2 with RFC 9146 CID only)" if spec.dtls else reason
        if spec.group and spec.group not in GROUPS:
            return f"{self.label} has no {spec.group}"
        if spec.key_update:
            return f"{self.label}: no KeyUpdate (a received KeyUpdate aborts the connection)"
        if spec.bulk:
            return (
                f"{self.label}'s sample programs have no echo or bulk mode (requests and "
                "answers ≤ 16 KiB)"
            )
        return None

    def exe(self, name: str) -> Path:
        if self.info is None:
            raise CellFailure("mbedtls is not installed")
        return self.info.exe(name)

    def common(self, spec: Spec, role: Role) -> list[str]:
        args = ["force_version=tls13"]
        if spec.suite:
            args.append(f"force_ciphersuite={SUITES[spec.suite]}")
        if spec.group:
            args.append(f"groups={spec.group}")
        elif spec.hrr:
            args.append(f"groups={HRR_GROUP}" if role == "server" else f"groups=x25519,{HRR_GROUP}")
        if spec.alpn:
            args.append(
                "alpn=" + (",".join(reversed(spec.alpn)) if role == "server" else "http/1.1")
            )
        if spec.psk:
            args += [
                f"psk={PSK_KEY.hex()}",
                f"psk_identity={PSK_IDENTITY}",
                "tls13_kex_modes=psk_ephemeral",
            ]
        if spec.early_data:
            args.append("early_data=1")
        return args

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        return MbedServer(self, cell, spec)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        return MbedClient(self, cell, spec, port)


class MbedServer(ProcessServer):
    label = "ssl_server2"

    def __init__(self, peer: MbedTLS, cell: Cell, spec: Spec) -> None:
        self.peer, self.cell, self.spec = peer, cell, spec
        pki = cell.pki
        port = cell.ports.take()
        self.argv: list[str | Path] = [
            peer.exe("ssl_server2"),
            f"server_addr={HOST}",
            f"server_port={port}",
            f"crt_file={pki / 'server.pem'}",
            f"key_file={pki / 'server.key'}",
            f"ca_file={pki / 'ca.pem'}",
            *peer.common(spec, "server"),
        ]
        self.argv.append("auth_mode=required" if spec.mtls else "auth_mode=none")
        if spec.early_data:
            self.argv.append("max_early_data_size=16384")
        app = FixedApp(b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK", until_close=True)
        super().__init__(port, app)
        self.reject_by_restart = True  # early_data=1 always accepts; a new process cannot
        # read the old ticket

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        output = self.alive_output()
        failed = [line for line in output.splitlines() if "! mbedtls_ssl_" in line]
        if failed:
            raise CellFailure(f"ssl_server2: {failed[0].strip()}", self.process.log)
        return ""


class MbedClient(PeerClient):
    def __init__(self, peer: MbedTLS, cell: Cell, spec: Spec, port: int) -> None:
        pki = cell.pki
        argv: list[str | Path] = [
            peer.exe("ssl_client2"),
            f"server_name={SERVER_NAME}",
            f"server_addr={HOST}",
            f"server_port={port}",
            f"ca_file={pki / 'ca.pem'}",
            "auth_mode=required",
            *peer.common(spec, "client"),
        ]
        if spec.mtls:
            argv += [f"crt_file={pki / 'client.pem'}", f"key_file={pki / 'client.key'}"]
        else:
            argv += ["crt_file=none", "key_file=none"]
        if spec.connections == 2:
            argv += ["reconnect=1", "new_session_tickets=1"]
        if spec.record_size_limit:
            argv.append("request_size=4000")
        self.spec = spec
        super().__init__(cell.start(argv, "ssl_client2", stdin="null"))

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        code = self.process.finish(timeout)
        output = self.process.output()
        if code != 0:
            failed = [line for line in output.splitlines() if "failed" in line or " ! " in line]
            reason = failed[0].strip() if failed else self.process.last_line()
            raise CellFailure(f"ssl_client2 exit {code}: {reason}", self.process.log)
        if self.spec.connections == 2 and "Reconnecting with saved session" not in output:
            raise CellFailure("ssl_client2 did not reconnect", self.process.log)
        return ""
