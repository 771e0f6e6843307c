"""Arbitrary post-handshake handshake messages, protected under the real keys, never raise
out of a DTLS connection: each is handled or ends the association with an alert (RFC 8446
§6; RFC 9147 §4.5.2 covers only records that fail to deprotect)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.events import ConnectionFailed
from tests.protocol.dtls.test_dtls_loopback import established, simulation

# Types a peer may legitimately send after the handshake (RFC 9147 §5.8.4) weighted up,
# next to every other value.
_POST_HANDSHAKE = st.sampled_from([4, 9, 10, 24])
_ANY_TYPE = st.integers(min_value=0, max_value=255)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    msg_type=st.one_of(_POST_HANDSHAKE, _ANY_TYPE),
    body=st.binary(max_size=48),
    to_server=st.booleans(),
    cids=st.booleans(),
)
def test_any_post_handshake_message_is_handled_or_alerted(
    pki_dir: Path, msg_type: int, body: bytes, to_server: bool, cids: bool
) -> None:
    sim = simulation(
        pki_dir,
        client={"cid_length": 4 if cids else None},
        server={"cid_length": 8 if cids else None},
    )
    assert sim.run_until(lambda: established(sim), limit=30)
    server_conn = sim.server.connections[0]
    sender = sim.client if to_server else server_conn
    message = bytes((msg_type,)) + len(body).to_bytes(3, "big") + body
    sender._send_post_handshake(message)  # past our own sending rules: a misbehaving peer
    sim.run(until=3)
    receiver_side = "server" if to_server else "client"
    receiver = server_conn if to_server else sim.client
    failed = sim.of(receiver_side, ConnectionFailed)
    if receiver.state == "failed":
        assert len(failed) == 1 and failed[0].alert is not None and not failed[0].by_peer
        assert receiver.error is not None and receiver.error.alert == failed[0].alert
    else:
        assert not failed and receiver.state == "connected"
        receiver.send_data(b"still working")
        sim.run(until=1)
