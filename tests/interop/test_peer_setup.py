"""The real peers that interop/setup_peers.sh installs are there and work.

Every peer is looked up with require(): a missing peer fails the test with the command that
installs it. The smoke runs follow shared/PEERS.md §1-§3: wolfSSL's example server and client
over DTLS 1.3 on loopback, the older wolfSSL 5.5.4 client against it, and NSS's tstclnt as a
DTLS 1.3 client against it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from interop.peers import PEER_NAMES, PeerInfo, require

pytestmark = pytest.mark.interop

WOLFSSL_ANSWER = "I hear you fa shizzle!"  # what wolfSSL's example server sends back
STEP_TIMEOUT = 30.0  # seconds any one peer process may take


# --- processes: each in its own session, output to a file, always killed -----------------------


class Running:
    """A peer process whose output (stdout and stderr) goes to a log file."""

    def __init__(
        self,
        argv: Sequence[str | Path],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = STEP_TIMEOUT) -> bool:
        """True once *text* is in the output; False if the process ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = STEP_TIMEOUT) -> int | None:
        """The exit code, or None if the process had to be killed after *timeout*."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def describe(self) -> str:
        return f"$ {' '.join(self.argv)}\n{self.output()}"


@contextmanager
def running(
    argv: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Iterator[Running]:
    process = Running(argv, log, cwd=cwd, env=env, stdin=stdin)
    try:
        yield process
    finally:
        process.kill()


def run(
    argv: Sequence[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether some socket on this machine is bound to UDP *port* (/proc/net/udp{,6})."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        if any(line.split()[1].endswith(suffix) for line in lines if line.strip()):
            return True
    return False


def wait_udp_bound(port: int, server: Running, timeout: float = 10.0) -> None:
    """Wait until *server* listens: a DTLS client started earlier meets an ICMP refusal."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        assert server.proc.poll() is None, f"server ended before binding:\n{server.describe()}"
        assert time.monotonic() < deadline, f"server never bound UDP {port}:\n{server.describe()}"
        time.sleep(0.05)


# --- certificates ------------------------------------------------------------------------------


def _pki_module() -> ModuleType | None:
    try:
        return importlib.import_module("protocol.pki")
    except ModuleNotFoundError as exc:
        if exc.name != "protocol.pki":
            raise
        return None


def _openssl_pki(directory: Path) -> None:
    """ca.pem, server.pem/.key, client.pem/.key, server.p12 with a real PKI's extensions."""
    openssl = require("openssl").exe("openssl")

    def sh(*args: str) -> None:
        done = run([openssl, *args], cwd=directory)
        assert done.returncode == 0, f"openssl {' '.join(args)}:\n{done.stdout}{done.stderr}"

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    sh("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
       "-subj", "/CN=tls13 test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "keyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        sh("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
           "-subj", f"/CN={'localhost' if name == 'server' else 'tls13 test client'}")  # fmt: skip
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "30", "-extfile", f"{name}.ext",
           "-out", f"{name}.pem")  # fmt: skip
    sh("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem",
       "-name", "server", "-out", "server.p12", "-passout", "pass:")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates from protocol.pki.generate_pki when the project has it, else openssl's."""
    directory = tmp_path_factory.mktemp("pki")
    module = _pki_module()
    if module is not None:
        module.generate_pki(directory)
    else:
        _openssl_pki(directory)
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (directory / name).is_file(), f"{name} missing from {directory}"
    return directory


# --- every peer is installed -------------------------------------------------------------------


@pytest.mark.parametrize("name", PEER_NAMES)
def test_peer_is_installed_with_a_version(name: str) -> None:
    peer = require(name)
    assert re.fullmatch(r"\d+(\.\d+)+", peer.version), f"{name}: odd version {peer.version!r}"
    assert peer.path.exists()
    for role, exe in peer.executables.items():
        assert exe.is_file() and os.access(exe, os.X_OK), f"{name}: {role} {exe} not executable"


EXPECTED_VERSIONS = {"wolfssl-5.5.4": "5.5.4"}


def test_old_wolfssl_is_the_bookworm_one() -> None:
    for name, version in EXPECTED_VERSIONS.items():
        assert require(name).version == version


# (peer, executable, arguments, text its output must contain): the binary loads and runs.
STARTS = [
    ("openssl", "openssl", ["version"], "OpenSSL"),
    ("gnutls", "gnutls-cli", ["--version"], "gnutls-cli"),
    ("gnutls", "gnutls-serv", ["--version"], "gnutls-serv"),
    ("nss", "tstclnt", [], "Usage:"),
    ("nss", "selfserv", [], "Usage:"),
    ("nss", "certutil", ["-H"], "-N"),
    ("nss", "pk12util", [], "Usage:"),
    ("mbedtls", "ssl_client2", ["help"], "usage: ssl_client2"),
    ("mbedtls", "ssl_server2", ["help"], "usage: ssl_server2"),
    ("wolfssl", "client", ["-?"], "wolfSSL client"),
    ("wolfssl", "server", ["-?"], "Help, print this usage"),
    ("wolfssl-5.5.4", "client", ["-?"], "client 5.5.4"),
    ("wolfssl-5.5.4", "server", ["-?"], "server 5.5.4"),
]


@pytest.mark.parametrize(
    ("name", "role", "args", "expected"), STARTS, ids=[f"{s[0]}-{s[1]}" for s in STARTS]
)
def test_peer_executable_runs(name: str, role: str, args: list[str], expected: str) -> None:
    peer = require(name)
    cwd = peer.path if peer.path.is_dir() else None  # wolfSSL's examples run from their tree
    done = run([peer.exe(role), *args], env=peer.environ(), cwd=cwd)
    output = done.stdout + done.stderr
    assert expected in output, f"{peer.exe(role)} {args}: exit {done.returncode}\n{output}"
    assert "error while loading shared libraries" not in output


def test_python_peers_import() -> None:
    """The pip peers import in the interpreter running the tests, at the recorded versions."""
    importlib.import_module("tlslite")
    assert importlib.metadata.version("tlslite-ng") == require("tlslite-ng").version
    ssl = importlib.import_module("OpenSSL.SSL")
    assert importlib.metadata.version("pyOpenSSL") == require("pyopenssl").version
    runs_on: bytes = ssl.OpenSSL_version(ssl.OPENSSL_VERSION)
    assert require("pyopenssl").details["openssl_version"] == runs_on.decode()


# --- DTLS 1.3 smoke runs -----------------------------------------------------------------------


@contextmanager
def wolfssl_dtls13_server(
    pki: Path, log: Path, extra: Sequence[str] = ()
) -> Iterator[tuple[Running, int]]:
    """wolfSSL's example server, DTLS 1.3, no client certificate, serving one connection."""
    wolfssl = require("wolfssl")
    port = free_udp_port()
    argv: list[str | Path] = [wolfssl.exe("server"), "-u", "-v", "4", "-p", str(port),
                              "-c", pki / "server.pem", "-k", pki / "server.key", "-d",
                              *extra]  # fmt: skip
    with running(argv, log, cwd=wolfssl.path) as server:
        wait_udp_bound(port, server)
        yield server, port


def wolfssl_client_run(peer: PeerInfo, port: int, pki: Path, log: Path) -> Running:
    argv: list[str | Path] = [peer.exe("client"), "-u", "-v", "4", "-p", str(port)]
    argv += ["-A", pki / "ca.pem", "-x"]
    with running(argv, log, cwd=peer.path) as client:
        client.finish()
    return client


@pytest.mark.parametrize("client_name", ["wolfssl", "wolfssl-5.5.4"])
def test_wolfssl_client_dtls13_with_wolfssl_server(
    client_name: str, pki: Path, tmp_path: Path
) -> None:
    with wolfssl_dtls13_server(pki, tmp_path / "server.log") as (server, port):
        client = wolfssl_client_run(require(client_name), port, pki, tmp_path / "client.log")
        server_exit = server.finish()
    context = f"{client.describe()}\n--- server ---\n{server.describe()}"
    assert client.proc.returncode == 0, context
    assert "SSL version is DTLSv1.3" in client.output(), context
    assert WOLFSSL_ANSWER in client.output(), context
    assert server_exit == 0, context


def nss_db(nss: PeerInfo, pki: Path, directory: Path) -> str:
    """An NSS database trusting the test CA (PEERS.md §2)."""
    directory.mkdir()
    db = f"sql:{directory}"
    certutil = nss.exe("certutil")
    for args in (
        ["-N", "-d", db, "--empty-password"],
        ["-A", "-d", db, "-n", "ca", "-t", "CT,C,C", "-i", str(pki / "ca.pem")],
    ):
        done = run([certutil, *args], env=nss.environ())
        assert done.returncode == 0, f"certutil {args}:\n{done.stdout}{done.stderr}"
    return db


# NSS's default ClientHello carries an X25519MLKEM768 share and spans two datagrams; wolfSSL's
# stateless cookie exchange drops a fragmented ClientHello that has no cookie, so that pair stalls
# (shared/PEERS.md §1, §2). Two runs that work: a small x25519 share through wolfSSL's cookie HRR,
# and NSS's defaults against a server with the cookie exchange off (-J n).
NSS_RUNS = {
    "x25519-cookie-hrr": (["-I", "x25519"], [], "SSL curve name is X25519\n"),
    "mlkem-fragmented-ch": ([], ["-J", "n"], "SSL curve name is X25519MLKEM768"),
}


@pytest.mark.parametrize("run_name", NSS_RUNS)
def test_nss_tstclnt_dtls13_with_wolfssl_server(run_name: str, pki: Path, tmp_path: Path) -> None:
    client_extra, server_extra, server_says = NSS_RUNS[run_name]
    nss = require("nss")
    db = nss_db(nss, pki, tmp_path / "nssdb")
    with wolfssl_dtls13_server(pki, tmp_path / "server.log", server_extra) as (server, port):
        argv: list[str | Path] = [nss.exe("tstclnt"), "-P", "client", "-4", "-h", "127.0.0.1",
                                  "-p", str(port), "-d", db, "-V", "tls1.3:tls1.3",
                                  *client_extra]  # fmt: skip
        # tstclnt sends what it reads on stdin and quits at EOF (or spins on an idle pipe):
        # keep stdin open until the answer is in, then close it and end the client.
        with running(
            argv, tmp_path / "tstclnt.log", env=nss.environ(), stdin=subprocess.PIPE
        ) as client:
            assert client.proc.stdin is not None
            client.proc.stdin.write(b"hello from NSS\n")
            client.proc.stdin.flush()
            answered = client.wait_for(WOLFSSL_ANSWER)
            client.proc.stdin.close()
            client.finish(3)
        server.finish(10)
    context = f"{client.describe()}\n--- server ---\n{server.describe()}"
    assert answered, context
    assert "SSL version is DTLSv1.3" in server.output(), context
    assert server_says in server.output(), context
    assert "Client message: hello from NSS" in server.output(), context
