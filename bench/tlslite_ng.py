"""tlslite-ng (pure Python) through its generator API over an in-memory socket pair.

``handshakeClientCert`` / ``handshakeServerAsync`` are generators that yield whenever the
socket would block; the fake socket raises EWOULDBLOCK on an empty buffer, so both ends run
interleaved in this process with no syscalls: the same conditions as ours.

tlslite-ng does no X.509 path validation (its Checker only compares fingerprints), so the
driver verifies the peer's chain and host name after the handshake with ``cryptography``'s
``x509.verification`` (the same verifier ours uses) for an equal amount of work. It sends no
session tickets (``ticketCount = 0``). Its crypto backends (M2Crypto, pycryptodome, gmpy2)
are optional; which ones are loaded is recorded in the results' machine section.
"""

from __future__ import annotations

import datetime
import errno
import time
from typing import Any

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from .fixtures import SERVER_NAME, SUITES, TLSLITE_GROUPS, Pki, Scenario, server_hello_choice
from .runners import Runner, Unavailable
from .stats import clock

try:
    import tlslite
    from tlslite.api import (
        HandshakeSettings,
        TLSConnection,
        X509CertChain,
        parsePEMKey,
    )
    from tlslite.utils import cryptomath
except ImportError:  # pragma: no cover - tlslite-ng is in the test extras
    tlslite = None


def version() -> str:
    return str(getattr(tlslite, "__version__", "absent")) if tlslite is not None else "absent"


def backends() -> dict[str, bool]:
    if tlslite is None:
        return {}
    return {
        "m2crypto": bool(cryptomath.m2cryptoLoaded),
        "pycryptodome": bool(cryptomath.pycryptoLoaded),
        "gmpy": bool(cryptomath.gmpyLoaded),
    }


class MemorySocket:
    """Half of an in-memory socket pair: ``send`` appends to the peer's buffer."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.peer: MemorySocket = self

    def recv(self, size: int) -> bytes:
        if not self.inbox:
            raise BlockingIOError(errno.EWOULDBLOCK, "would block")
        out = bytes(self.inbox[:size])
        del self.inbox[:size]
        return out

    def send(self, data: bytes) -> int:
        self.peer.inbox += data
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.peer.inbox += data

    def close(self) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None


def socket_pair() -> tuple[MemorySocket, MemorySocket]:
    a, b = MemorySocket(), MemorySocket()
    a.peer, b.peer = b, a
    return a, b


class _Verifier:
    """Post-handshake chain + name check with cryptography (built once, like ours)."""

    def __init__(self, pki: Pki) -> None:
        self.builder = PolicyBuilder().store(Store(list(pki.roots)))

    def server(self, chain: Any, now: float) -> None:
        certs = [x509.load_der_x509_certificate(bytes(c.bytes)) for c in chain.x509List]
        when = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        verifier = self.builder.time(when).build_server_verifier(x509.DNSName(SERVER_NAME))
        verifier.verify(certs[0], certs[1:])

    def client(self, chain: Any, now: float) -> None:
        certs = [x509.load_der_x509_certificate(bytes(c.bytes)) for c in chain.x509List]
        when = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        self.builder.time(when).build_client_verifier().verify(certs[0], certs[1:])


def _settings(scenario: Scenario) -> Any:
    if tlslite is None:
        raise Unavailable("tlslite-ng not installed")
    group = TLSLITE_GROUPS.get(scenario.group)
    if group is None:
        raise Unavailable(f"tlslite-ng {version()}: no {scenario.group} (kyber-py absent)")
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 4)
    settings.eccCurves = [group]
    settings.keyShares = [group]
    settings.cipherNames = [SUITES[scenario.suite][0]]
    settings.ticketCount = 0
    return settings


def _credentials(cert: Any, key: Any) -> tuple[Any, Any]:
    chain = X509CertChain()
    chain.parsePemList(cert.read_text())
    return chain, parsePEMKey(key.read_text(), private=True)


class _Driver:
    def __init__(self, pki: Pki, scenario: Scenario) -> None:
        self.settings = _settings(scenario)
        self.mutual = scenario.mutual
        self.server_creds = _credentials(pki.server_cert, pki.server_key)
        self.client_creds = _credentials(pki.client_cert, pki.client_key)
        self.verifier = _Verifier(pki)

    def handshake(self, now: float) -> tuple[Any, Any, bytes]:
        a, b = socket_pair()
        client, server = TLSConnection(a), TLSConnection(b)
        client_chain, client_key = self.client_creds if self.mutual else (None, None)
        client_gen = client.handshakeClientCert(
            certChain=client_chain,
            privateKey=client_key,
            serverName=SERVER_NAME,
            settings=self.settings,
            async_=True,
        )
        server_gen = server.handshakeServerAsync(
            certChain=self.server_creds[0],
            privateKey=self.server_creds[1],
            settings=self.settings,
            reqCert=self.mutual,
        )
        client_done = server_done = False
        first = b""
        for _ in range(10_000):
            if not client_done:
                try:
                    next(client_gen)
                except StopIteration:
                    client_done = True
            if not server_done:
                try:
                    next(server_gen)
                except StopIteration:
                    server_done = True
            if not first and a.inbox:
                first = bytes(a.inbox)
            if client_done and server_done:
                break
        else:
            raise RuntimeError("tlslite-ng handshake did not finish")
        self.verifier.server(client.session.serverCertChain, now)
        if self.mutual:
            self.verifier.client(server.session.clientCertChain, now)
        return client, server, first


def handshake_runner(pki: Pki, scenario: Scenario) -> Runner:
    driver = _Driver(pki, scenario)

    def run(n: int) -> float:
        now = time.time()
        start = clock()
        for _ in range(n):
            driver.handshake(now)
        return clock() - start

    _, _, first = driver.handshake(time.time())
    return Runner(
        run,
        negotiated=server_hello_choice(first),
        notes=["chain + host name verified with cryptography after the handshake"],
    )


def bulk_runner(pki: Pki, suite: str, record_size: int) -> Runner:
    driver = _Driver(pki, Scenario(suite=suite))
    client, server, first = driver.handshake(time.time())
    payload = bytes(record_size)

    def run(n: int) -> float:
        received = 0
        start = clock()
        for _ in range(n):
            client.write(payload)
            got = 0
            while got < record_size:
                got += len(server.read(max=record_size))
            received += got
        elapsed = clock() - start
        if received != n * record_size:
            raise RuntimeError("short read")
        return elapsed

    return Runner(run, negotiated=server_hello_choice(first), notes=[f"backends {backends()}"])
