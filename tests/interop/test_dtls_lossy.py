"""DTLS 1.3 with wolfSSL 5.9.2 through a lossy path, in both roles, with and without CID.

Every datagram goes through tests/interop/udp_relay.py, seeded, with 25 % loss of
handshake-phase datagrams, 20 % duplication and 20 % reordering in each direction. The
handshake must complete on both sides and the application data arrive exactly once: our
``--trace`` lists every record that passed deprotection and the replay check, so a
duplicated record delivered twice shows there.

Application data is not retransmitted by DTLS (RFC 9147 §5: as unreliable as UDP), so the
relay loses only handshake-phase datagrams (epochs 0 and 2) by default; duplicates and
reordering hit every epoch. The "everything lossy" runs drop any datagram and only check
that the handshake completes.

Our side retransmits after 300 ms (doubling, up to 8 times) to keep the runs short;
wolfSSL's timer starts at 1 s. A failing seed replays the same fates: the relay log (hex of
every datagram, with its fate) is in the test's tmp_path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from interop.peers import PeerInfo, require
from tests.interop.dtls_helpers import (
    finish_pair,
    free_udp_port,
    load_trace,
    run_our_client,
    start_our_server,
    wait_udp_bound,
)
from tests.interop.helpers import Processes
from tests.interop.udp_relay import Impairment, LossScope, UdpRelay, first_epoch, udp_relay

pytestmark = pytest.mark.interop

LOSSY = Impairment(loss=0.25, duplicate=0.2, reorder=0.2)
OURS_FAST = ("--retransmit-initial", "300", "--max-retransmits", "8")
# Three records at our default MTU (1,232-byte datagrams): every one must come back once.
PAYLOAD = "|".join(f"piece {i:04d} of the lossy run" for i in range(110))
WOLFSSL_MESSAGE = "hello wolfssl!"  # what wolfSSL's example client sends
TIMEOUT = 45.0  # a lossy handshake may need a few of wolfSSL's 1 s, 2 s, 4 s timeouts


@dataclass(frozen=True)
class LossyRun:
    cid: bool
    seed: int
    scope: LossScope = "handshake"


RUNS: dict[str, LossyRun] = {
    "seed1": LossyRun(cid=False, seed=1),
    "seed2": LossyRun(cid=False, seed=2),
    "cid-seed3": LossyRun(cid=True, seed=3),
    "cid-seed4": LossyRun(cid=True, seed=4),
    "all-lossy-seed5": LossyRun(cid=False, seed=5, scope="all"),
}


def wolfssl() -> PeerInfo:
    return require("wolfssl")


# wolfSSL's examples print through stdio: line-buffer it, or what a killed peer printed is lost.
LINE_BUFFERED = ("stdbuf", "-oL")


def data_overtook_finished(relay: UdpRelay) -> bool:
    """Whether our application data can have reached the server before our Finished.

    Our client sends its Finished (epoch 2) and then, at once, its data (epoch 3): the
    datagram just before the first epoch-3 one is the Finished. If the relay dropped or held
    back that first copy, the data arrived first, and RFC 9147 §5.8.4 lets the server
    "either discard or buffer" epoch-3 records until the Finished arrives; wolfSSL discards
    them (we buffer: SPEC_NOTES D7). DTLS never retransmits application data, so such a run
    can only promise "at most once".
    """
    fates: dict[int, str] = {}  # first decision per client datagram
    epochs: dict[int, int | None] = {}
    for _, direction, index, action, data in relay.events:
        if direction == "c2s" and index >= 0 and index not in fates:
            fates[index] = action
            epochs[index] = first_epoch(data)
    first_data = min((i for i, e in epochs.items() if e == 3), default=None)
    assert first_data is not None and epochs.get(first_data - 1) == 2, (
        f"expected our Finished right before our data: {sorted(epochs.items())}"
    )
    return fates[first_data - 1] in ("drop", "hold")


def app_records(trace: list[dict[str, object]], direction: str) -> Counter[str]:
    """Application data records (hex payloads) our side sent or accepted, with counts."""
    return Counter(
        str(e["data"])
        for e in trace
        if e["kind"] == "record"
        and e["direction"] == direction
        and e["content_type"] == "application_data"
    )


@pytest.mark.parametrize("run_name", RUNS)
def test_lossy_our_client_wolfssl_server(
    run_name: str, peer_pki: Path, processes: Processes, tmp_path: Path
) -> None:
    run_spec = RUNS[run_name]
    peer = wolfssl()
    port = free_udp_port()
    # -e: echo every record until the client closes.
    argv: list[str | Path] = [*LINE_BUFFERED, peer.exe("server"), "-u", "-v", "4", "-p", str(port),
                              "-c", peer_pki / "server.pem", "-k", peer_pki / "server.key",
                              "-d", "-e"]  # fmt: skip
    ours = list(OURS_FAST)
    if run_spec.cid:
        argv += ["--cid", "srvcid01"]
        ours += ["--cid-length", "8"]
    server = processes.start(argv, name="wolfssl-server", stdin="null", cwd=peer.path)
    wait_udp_bound(port, server)
    log = tmp_path / "relay.log"
    with udp_relay(
        port, run_spec.seed, c2s=LOSSY, s2c=LOSSY, loss_scope=run_spec.scope, log_path=log
    ) as relay:
        run = run_our_client(
            processes, tmp_path, relay.port, peer_pki, ours, send=PAYLOAD, timeout=TIMEOUT
        )
        server_exit = server.finish(5.0 if run_spec.scope == "handshake" else 1.0)
        relay_state = relay.describe()
        raced = data_overtook_finished(relay)
    context = f"{relay_state}\n{run.context()}\n--- wolfSSL server ---\n{server.describe()}"
    summary = run.summary
    assert run.exit_code == 0, context
    assert summary.get("handshake_complete") is True, context
    assert summary.get("version") == "DTLS 1.3", context
    assert "SSL version is DTLSv1.3" in server.output(), context
    if run_spec.cid:
        assert summary.get("cid_sent") == b"srvcid01".hex(), context
        assert "CID extension was negotiated" in server.output(), context
    dropped = relay.stats["c2s"].dropped + relay.stats["s2c"].dropped
    assert dropped > 0, f"the seed lost nothing: not a lossy run\n{context}"
    if run_spec.scope != "handshake":
        return
    sent, received = app_records(run.trace, "sent"), app_records(run.trace, "received")
    assert len(sent) >= 3 and all(n == 1 for n in sent.values()), context
    # wolfSSL echoes record by record, in the order they reached it: never a record twice
    # (the relay duplicated some), never one we did not send.
    records = f"sent {sorted(sent)}\nreceived {sorted(received)}\n{context}"
    assert all(n == 1 for n in received.values()) and set(received) <= set(sent), records
    if not raced:
        assert received == sent, records  # exactly once
        assert len(run.received) == len(PAYLOAD), context
    assert server_exit == 0, context


@pytest.mark.parametrize("run_name", RUNS)
def test_lossy_wolfssl_client_our_server(
    run_name: str, peer_pki: Path, processes: Processes, tmp_path: Path
) -> None:
    run_spec = RUNS[run_name]
    peer = wolfssl()
    ours = list(OURS_FAST)
    client_args: list[str | Path] = ["-x"]
    if run_spec.cid:
        ours += ["--cid-length", "8"]
        client_args += ["--cid", "cli-0001"]
    server = start_our_server(processes, tmp_path, peer_pki, ours)
    log = tmp_path / "relay.log"
    with udp_relay(
        server.port, run_spec.seed, c2s=LOSSY, s2c=LOSSY, loss_scope=run_spec.scope, log_path=log
    ) as relay:
        argv: list[str | Path] = [*LINE_BUFFERED, peer.exe("client"), "-u", "-v", "4",
                                  "-p", str(relay.port),
                                  "-A", peer_pki / "ca.pem", *client_args]  # fmt: skip
        client = processes.start(argv, name="wolfssl-client", stdin="null", cwd=peer.path)
        client_exit, server_exit = finish_pair(client, server.process, TIMEOUT, grace=2.0)
        relay_state = relay.describe()
    context = f"{relay_state}\n--- wolfSSL client ---\n{client.describe()}\n{server.context()}"
    line = server.association()
    assert line.get("version") == "DTLS 1.3", context  # our side completed the handshake
    assert "SSL version is DTLSv1.3" in client.output(), context
    if run_spec.cid:
        assert line.get("cid_sent") == b"cli-0001".hex(), context
        assert "CID extension was negotiated" in client.output(), context
    dropped = relay.stats["c2s"].dropped + relay.stats["s2c"].dropped
    assert dropped > 0, f"the seed lost nothing: not a lossy run\n{context}"
    if run_spec.scope != "handshake":
        return
    trace = load_trace(server.trace_path)
    received = app_records(trace, "received")
    assert received == Counter({WOLFSSL_MESSAGE.encode().hex(): 1}), context
    assert app_records(trace, "sent") == received, context  # echoed once
    output = client.output()
    assert output.count(WOLFSSL_MESSAGE) == 1, context  # the echo, printed once
    assert client_exit == 0, context
    assert server_exit == 0, context
