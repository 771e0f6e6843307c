"""wolfSSL's example server and client (5.9.2 from sid, 5.5.4 from Debian 12): TLS 1.3 and
DTLS 1.3 (shared/PEERS.md §1, §3).

Both run from the wolfSSL tree. The server echoes (``-e``) until close_notify; ``-r`` allows
one resumption, ``-0`` reads 0-RTT data, ``-U``/client ``-I`` send KeyUpdate, ``-u`` is DTLS
(``-u N``: MTU N), ``--cid`` a Connection ID, ``-B N`` a client throughput run whose echo the
client compares byte for byte. What the builds lack (setup_peers.sh's configure line): ALPN,
AES-CCM, X448, RFC 8449; 5.5.4 also ML-KEM.
"""

from __future__ import annotations

from pathlib import Path

from ..peers import PeerInfo
from .base import (
    HRR_GROUP,
    PSK_IDENTITY,
    Cell,
    CellFailure,
    EchoApp,
    Peer,
    PeerClient,
    PeerServer,
    Role,
    Spec,
)
from .process import PeerProcess, ProcessServer

SUITES = {
    "TLS_AES_128_GCM_SHA256": "TLS13-AES128-GCM-SHA256",
    "TLS_AES_256_GCM_SHA384": "TLS13-AES256-GCM-SHA384",
    "TLS_CHACHA20_POLY1305_SHA256": "TLS13-CHACHA20-POLY1305-SHA256",
}
CURVES = {
    "x25519": "CURVE25519",
    "secp256r1": "SECP256R1",
    "secp384r1": "SECP384R1",
    "secp521r1": "SECP521R1",
}
MLKEM = "X25519MLKEM768"
WOLF_CID = "wolfcid1"  # the CID wolfSSL asks for (8 bytes; 5.9.2's own CIDs are ≤ 10)
SMALL_MTU = 352  # wolfSSL's -u N counts the datagram: our MTU 400 minus IP/UDP (SPEC_NOTES D1)


class WolfSSL(Peer):
    dtls = True
    tls = True

    def __init__(self, name: str, info: PeerInfo | None) -> None:
        super().__init__(info.version if info else "?")
        self.name = name
        self.info = info
        self.label = f"wolfSSL {self.version}"

    @property
    def old(self) -> bool:
        return self.version.startswith("5.5.")

    def supports(self, spec: Spec, role: Role) -> str | None:
        reason = super().supports(spec, role)
        if reason:
            return reason
        if spec.suite and spec.suite not in SUITES:
            return f"{self.label} is built without AES-CCM (setup_peers.sh configure line)"
        if spec.group == "x448":
            return f"{self.label} is built without Curve448"
        if spec.group == MLKEM and self.old:
            return f"{self.label} has no ML-KEM (5.9.2 has it)"
        if spec.alpn:
            return f"{self.label} is built without ALPN (--enable-alpn)"
        if spec.dtls and spec.bulk and role == "server":
            return (
                f"{self.label}'s example client has no DTLS bulk mode (-B writes 16 KiB "
                "messages, which no datagram holds: error -439)"
            )
        return None

    def exe(self, role: str) -> Path:
        if self.info is None:
            raise CellFailure(f"{self.name} is not installed")
        return self.info.exe(role)

    @property
    def cwd(self) -> Path | None:
        return self.info.path if self.info else None

    def common(self, spec: Spec) -> list[str]:
        args = ["-v", "4"]
        if spec.dtls:
            args += ["-u", str(SMALL_MTU)] if spec.mtu else ["-u"]
        if spec.suite:
            args += ["-l", SUITES[spec.suite]]
        if spec.psk:
            args.append("-s")
        if spec.cid:
            args += ["--cid", WOLF_CID]
        return args

    def server(self, cell: Cell, spec: Spec) -> PeerServer:
        return WolfServer(self, cell, spec)

    def client(self, cell: Cell, spec: Spec, port: int) -> PeerClient:
        return WolfClient(self, cell, spec, port)

    def our_client_options(self, spec: Spec) -> dict[str, object]:
        if spec.psk:
            from .ours import external_psk

            # wolfSSL's server takes the PSK's hash from a suffix of the identity
            # (examples/test.h my_psk_server_tls13_cb); without one it assumes SHA-384
            return {"external_psk": external_psk(PSK_IDENTITY + "SHA256")}
        return {}

    def our_server_options(self, spec: Spec) -> dict[str, object]:
        if spec.psk:
            from .ours import external_psk

            # wolfSSL's client names the hash in its identity (Client_identitySHA256)
            return {
                "external_psks": {
                    PSK_IDENTITY: external_psk(),
                    PSK_IDENTITY + "SHA256": external_psk(PSK_IDENTITY + "SHA256"),
                    PSK_IDENTITY + "SHA384": external_psk(PSK_IDENTITY + "SHA384", "sha384"),
                }
            }
        return {}


def _verdict(process: PeerProcess, what: str) -> int | None:
    code = process.proc.poll()
    if code not in (None, 0):
        raise CellFailure(f"{what} exit {code}: {process.error_line()}", process.log)
    return code


class WolfServer(ProcessServer):
    label = "wolf-server"

    def __init__(self, peer: WolfSSL, cell: Cell, spec: Spec) -> None:
        self.peer = peer
        self.cell = cell
        self.spec = spec
        self.cwd = peer.cwd
        self.udp = spec.dtls
        pki = cell.pki
        port = cell.ports.take()
        argv: list[str | Path] = [
            peer.exe("server"),
            "-p",
            str(port),
            *peer.common(spec),
            "-c",
            pki / "server.pem",
            "-k",
            pki / "server.key",
            "-e",
        ]
        if spec.mtls:
            argv += ["-A", pki / "ca.pem"]
        else:
            argv.append("-d")
        if spec.group == MLKEM:
            argv += ["--pqc", MLKEM]
        elif spec.group:
            argv += ["--force-curve", CURVES[spec.group]]
        elif spec.hrr:
            argv += ["--force-curve", CURVES[HRR_GROUP]]
        if spec.key_update:
            argv.append("-U")
        if spec.resumption or (spec.early_data == "accept"):
            argv.append("-r")
        if spec.early_data:
            argv.append("-0")
        self.argv = argv
        super().__init__(port, EchoApp())
        self.bulk_mode = "echo"
        # A wolfSSL server reads 0-RTT whenever -0 is on; rejection is shown by a fresh
        # server (new ticket key): full handshake, early data declined.
        self.reject_by_restart = True

    def restart(self) -> None:
        assert self.process is not None
        self.process.finish(2.0)  # wolfSSL's server exits after its connection
        super().restart()

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        code = self.process.finish(timeout)
        output = self.process.output()
        if code is None:
            raise CellFailure(
                f"wolfSSL server did not exit: {self.process.last_line()}", self.process.log
            )
        if code != 0:
            raise CellFailure(
                f"wolfSSL server exit {code}: {self.process.error_line()}", self.process.log
            )
        notes = []
        if self.spec.cid:
            if "CID extension was negotiated" not in output:
                raise CellFailure("wolfSSL server did not negotiate a CID", self.process.log)
            notes.append("wolfSSL: CID negotiated")
        if self.spec.early_data == "accept" and "Early Data" not in output:
            raise CellFailure("wolfSSL server reports no early data", self.process.log)
        return "; ".join(notes)


class WolfClient(PeerClient):
    def __init__(self, peer: WolfSSL, cell: Cell, spec: Spec, port: int) -> None:
        self.peer = peer
        self.cell = cell
        self.spec = spec
        pki = cell.pki
        argv: list[str | Path] = [
            peer.exe("client"),
            "-p",
            str(port),
            *peer.common(spec),
            "-A",
            pki / "ca.pem",
        ]
        if spec.mtls:
            argv += ["-c", pki / "client.pem", "-k", pki / "client.key"]
        else:
            argv.append("-x")
        if spec.group == MLKEM:
            argv += ["--pqc", MLKEM]
        elif spec.group == "x25519":
            argv.append("-t")  # its one key share: X25519
        if spec.key_update:
            argv.append("-I")
        if spec.connections == 2:
            argv.append("-r")
            if spec.dtls:
                argv.append("--waitTicket")
        if spec.early_data:
            argv.append("-0")
        if spec.bulk:
            argv += ["-B", str(spec.bulk)]
        super().__init__(cell.start(argv, "wolf-client", cwd=peer.cwd, stdin="null"))

    def finish(self, timeout: float) -> str:
        assert self.process is not None
        code = self.process.finish(timeout)
        output = self.process.output()
        if code is None:
            raise CellFailure(f"wolfSSL client hung: {self.process.last_line()}", self.process.log)
        if code != 0:
            raise CellFailure(
                f"wolfSSL client exit {code}: {self.process.error_line()}", self.process.log
            )
        if self.spec.connections == 2 and "reused session id" not in output:
            raise CellFailure("wolfSSL client did not resume", self.process.log)
        if self.spec.cid and "CID extension was negotiated" not in output:
            raise CellFailure("wolfSSL client did not negotiate a CID", self.process.log)
        if self.spec.bulk:
            return f"{self.spec.bulk >> 20} MiB each way (wolfSSL -B compares the echo)"
        return ""
