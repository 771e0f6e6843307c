"""Transcript hash (RFC 8446 §4.4.1): buffering, non-destructive digests, the HRR rewrite."""

from __future__ import annotations

import hashlib

import pytest

from handshake.transcript import Transcript, message_hash_message

CH1 = b"\x01\x00\x00\x05hello"
HRR = b"\x02\x00\x00\x03hrr"
CH2 = b"\x01\x00\x00\x06hello2"
SH = b"\x02\x00\x00\x02sh"


@pytest.mark.parametrize("hash_name", ["sha256", "sha384"])
def test_messages_before_set_hash_are_buffered(hash_name: str) -> None:
    t = Transcript()
    assert t.hash_name is None
    t.add(CH1)
    t.add(SH)
    t.set_hash(hash_name)
    assert t.hash_name == hash_name
    assert t.digest() == hashlib.new(hash_name, CH1 + SH).digest()
    t.add(CH2)
    assert t.digest() == hashlib.new(hash_name, CH1 + SH + CH2).digest()


def test_digest_does_not_disturb_running_hash() -> None:
    t = Transcript()
    t.set_hash("sha256")
    t.add(CH1)
    first = t.digest()
    assert t.digest() == first == hashlib.sha256(CH1).digest()
    t.add(SH)
    assert t.digest() == hashlib.sha256(CH1 + SH).digest()


def test_digest_before_hash_is_known_is_an_error() -> None:
    t = Transcript()
    t.add(CH1)
    with pytest.raises(RuntimeError):
        t.digest()


def test_set_hash_is_idempotent_but_cannot_switch() -> None:
    t = Transcript()
    t.add(CH1)
    t.set_hash("sha256")
    t.set_hash("sha256")
    assert t.digest() == hashlib.sha256(CH1).digest()
    with pytest.raises(RuntimeError):
        t.set_hash("sha384")


def test_add_accepts_memoryview_and_bytearray() -> None:
    t = Transcript()
    t.add(memoryview(CH1))  # buffered: must be copied, not referenced
    buf = bytearray(SH)
    t.set_hash("sha256")
    t.add(buf)
    buf[:] = b"x" * len(buf)
    assert t.digest() == hashlib.sha256(CH1 + SH).digest()


@pytest.mark.parametrize("hash_name", ["sha256", "sha384"])
def test_hello_retry_request_replaces_client_hello1(hash_name: str) -> None:
    t = Transcript()
    t.add(CH1)
    t.set_hash(hash_name)
    t.restart_with_message_hash()
    t.add(HRR)
    t.add(CH2)
    t.add(SH)
    ch1_hash = hashlib.new(hash_name, CH1).digest()
    synthetic = bytes((254, 0, 0, len(ch1_hash))) + ch1_hash
    assert message_hash_message(ch1_hash) == synthetic
    assert t.digest() == hashlib.new(hash_name, synthetic + HRR + CH2 + SH).digest()


def test_stateless_server_rebuilds_the_same_transcript() -> None:
    # §4.2.2: a server that kept only Hash(CH1) in its cookie reaches the same transcript.
    normal = Transcript()
    normal.set_hash("sha256")
    normal.add(CH1)
    normal.restart_with_message_hash()
    normal.add(HRR)

    rebuilt = Transcript()
    rebuilt.set_hash("sha256")
    rebuilt.add(message_hash_message(hashlib.sha256(CH1).digest()))
    rebuilt.add(HRR)
    assert rebuilt.digest() == normal.digest()


def test_message_hash_rewrite_only_applies_to_client_hello1() -> None:
    t = Transcript()
    t.set_hash("sha256")
    t.add(CH1)
    t.add(HRR)
    with pytest.raises(RuntimeError):
        t.restart_with_message_hash()
    empty = Transcript()
    empty.set_hash("sha256")
    with pytest.raises(RuntimeError):
        empty.restart_with_message_hash()
