"""Post-handshake client authentication (RFC 8446 §4.6.2) between our client and server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handshake.alerts import AlertDescription, HandshakeError
from handshake.messages import (
    Certificate,
    CertificateEntry,
    Extensions,
    Finished,
    KeyUpdate,
    encode_message,
)
from handshake.post_handshake_auth import ServerAuthRequests
from protocol.errors import ConnectionStateError
from protocol.events import (
    ApplicationData,
    CertificateRequested,
    ClientAuthenticated,
    ConnectionFailed,
    HandshakeComplete,
)
from tests.protocol.connection.test_tls_loopback import NOW, completed, connect, failure
from tests.protocol.memory_pump import Pump


def client_with_certificate(pki_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "certfile": pki_dir / "client.pem",
        "keyfile": pki_dir / "client.key",
        "post_handshake_auth": True,
        **extra,
    }


def established(pki_dir: Path, client: dict[str, Any]) -> Pump:
    pump = connect(pki_dir, client=client, server={"cafile": pki_dir / "ca.pem"})
    completed(pump)
    return pump


def test_request_after_the_handshake(pki_dir: Path) -> None:
    pump = established(pki_dir, client_with_certificate(pki_dir))
    assert not pump.of("server", HandshakeComplete)[0].client_authenticated
    assert pump.server.post_handshake_auth_offered
    pump.server.request_client_certificate()
    pump.client.send_data(b"data interleaves with the request")
    pump.run()
    (event,) = pump.of("server", ClientAuthenticated)
    assert event.subject is not None and "client" in event.subject.lower()
    assert pump.of("client", CertificateRequested) == [CertificateRequested(True)]
    assert [e.data for e in pump.of("server", ApplicationData)] == [
        b"data interleaves with the request"
    ]
    pump.server.send_data(b"authenticated")
    pump.run()
    assert [e.data for e in pump.of("client", ApplicationData)] == [b"authenticated"]


def test_several_requests_and_key_updates(pki_dir: Path) -> None:
    pump = established(pki_dir, client_with_certificate(pki_dir))
    pump.client.key_update(request_peer_update=True)  # Finished keys move with the secrets
    pump.run()
    pump.server.request_client_certificate()
    pump.server.request_client_certificate()  # two open at once, distinct contexts
    pump.run()
    assert len(pump.of("server", ClientAuthenticated)) == 2
    pump.server.key_update(request_peer_update=True)
    pump.run()
    pump.server.request_client_certificate()
    pump.run()
    assert len(pump.of("server", ClientAuthenticated)) == 3
    assert not pump.of("server", ConnectionFailed) and not pump.of("client", ConnectionFailed)


def test_client_without_certificate(pki_dir: Path) -> None:
    pump = established(pki_dir, {"post_handshake_auth": True})
    pump.server.request_client_certificate(required=False)
    pump.run()
    (answer,) = pump.of("server", ClientAuthenticated)
    assert answer.certificates == () and answer.subject is None and len(answer.context) == 8
    assert pump.of("client", CertificateRequested) == [CertificateRequested(False)]
    pump.server.request_client_certificate(required=True)
    pump.run()
    assert failure(pump, "server").alert is AlertDescription.certificate_required
    assert failure(pump, "client").alert is AlertDescription.certificate_required


def test_untrusted_client_certificate(
    pki_dir: Path, pki_factory: Callable[..., tuple[Any, Path]]
) -> None:
    _, other = pki_factory("ecdsa-p384")  # a client chain under another CA
    client = {"certfile": other / "client.pem", "keyfile": other / "client.key"}
    pump = established(pki_dir, {**client, "post_handshake_auth": True})
    pump.server.request_client_certificate()
    pump.run()
    assert failure(pump, "server").alert is AlertDescription.unknown_ca
    assert not pump.of("server", ClientAuthenticated)


def test_not_offered(pki_dir: Path) -> None:
    pump = established(pki_dir, client_with_certificate(pki_dir, post_handshake_auth=False))
    assert not pump.server.post_handshake_auth_offered
    with pytest.raises(ConnectionStateError):
        pump.server.request_client_certificate()
    # A server that asks anyway (§4.6.2 "MUST NOT"): the client refuses.
    hs = pump.server._server_hs
    assert hs._schedule is not None and hs.application_keys is not None
    requests = ServerAuthRequests(hs.config, hs._schedule, hs._transcript)
    pump.server._apply(requests.request(b"ctx", hs.application_keys, required=True))
    pump.run()
    assert failure(pump, "client").alert is AlertDescription.unexpected_message


def test_dtls_never_offers(pki_dir: Path) -> None:
    from protocol.config import ClientConfig

    config = ClientConfig(server_name="localhost", post_handshake_auth=True)
    assert config.handshake_config(dtls=False).post_handshake_auth
    assert not config.handshake_config(dtls=True).post_handshake_auth


def _server_with_open_request(pki_dir: Path, required: bool = False) -> Pump:
    pump = established(pki_dir, {"post_handshake_auth": True})
    pump.server.request_client_certificate(required=required)
    pump.server.data_to_send()  # the request is "sent"; the client never sees it
    return pump


@pytest.mark.parametrize(
    ("messages", "alert"),
    [
        ([Certificate(b"not ours", ())], AlertDescription.illegal_parameter),
        ([Finished(b"\x00" * 32)], AlertDescription.unexpected_message),
        ([Certificate(None, ()), Finished(b"\x00" * 32)], AlertDescription.decrypt_error),  # type: ignore[arg-type]
        (
            [Certificate(None, ()), KeyUpdate(0)],  # type: ignore[arg-type]
            AlertDescription.unexpected_message,  # the answer's keys must not move midway
        ),
        (  # §4.4.2: entry extensions must answer the request's; it had none
            [Certificate(None, (CertificateEntry(b"der", Extensions(unknown=((18, b"x"),))),))],  # type: ignore[arg-type]
            AlertDescription.unsupported_extension,
        ),
    ],
    ids=["unknown-context", "finished-first", "bad-finished", "key-update-midway", "entry-ext"],
)
def test_server_refuses_bad_answers(
    pki_dir: Path, messages: list[Any], alert: AlertDescription
) -> None:
    pump = _server_with_open_request(pki_dir)
    hs = pump.server._server_hs
    assert hs._auth_requests is not None
    (context,) = hs._auth_requests.used
    with pytest.raises(HandshakeError) as error:
        for message in messages:
            if isinstance(message, Certificate) and message.certificate_request_context is None:
                message = Certificate(context, message.entries)
            hs.handle(encode_message(message), NOW)
    assert error.value.alert is alert


def test_answers_in_any_order_are_matched_by_context(pki_dir: Path) -> None:
    # §4.6.2: "clients ... MAY respond to them in a different order than they were received
    # (the certificate_request_context value allows the server to disambiguate)".
    from handshake.actions import ClientAuthenticated as Answered
    from handshake.actions import SendMessage
    from handshake.messages import CertificateRequest, decode_message
    from handshake.post_handshake_auth import answer_request

    pump = established(pki_dir, client_with_certificate(pki_dir))
    first = pump.server.request_client_certificate(required=False)
    second = pump.server.request_client_certificate(required=False)
    assert first != second
    requests = []
    for raw in _handshake_messages(pump.server.data_to_send(), pump):
        message = decode_message(raw[0], raw[4:])
        assert isinstance(message, CertificateRequest)
        requests.append((message, raw))
    client_hs, server_hs = pump.client._hs, pump.server._server_hs
    for message, raw in reversed(requests):  # the second request answered first
        actions = answer_request(
            message,
            raw,
            config=client_hs.config,
            base=client_hs._transcript,
            schedule=client_hs._schedule,
            keys=client_hs.application_keys,
        )
        answered = []
        for action in actions:
            if isinstance(action, SendMessage):
                answered += server_hs.handle(action.data, NOW)
        (done,) = [a for a in answered if isinstance(a, Answered)]
        assert done.context == message.certificate_request_context
        assert "client" in done.chain[0].subject.rfc4514_string().lower()


def _handshake_messages(wire: bytes, pump: Pump) -> list[bytes]:
    """The server's handshake messages in ``wire``, read through the client's record layer."""
    records = pump.client._records
    records.feed(wire)
    stream = b""
    while (record := records.read_record()) is not None:
        assert record[0] == 22
        stream += bytes(record[1])
    messages = []
    while stream:  # several messages may share a record (RFC 8446 §5.1)
        end = 4 + int.from_bytes(stream[1:4], "big")
        messages.append(stream[:end])
        stream = stream[end:]
    return messages
