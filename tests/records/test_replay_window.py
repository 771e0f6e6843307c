"""Anti-replay window semantics (RFC 9147 §4.5.1, RFC 4303 §3.4.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from records.replay import DEFAULT_WINDOW_SIZE, ReplayWindow


def test_fresh_window_accepts_zero_and_expects_zero() -> None:
    w = ReplayWindow()
    assert w.size == DEFAULT_WINDOW_SIZE == 64
    assert w.highest == -1 and w.next_expected == 0
    assert not w.is_duplicate(0)
    assert w.check_and_accept(0)
    assert w.is_duplicate(0)
    assert w.next_expected == 1


def test_duplicates_rejected_in_order_and_out_of_order() -> None:
    w = ReplayWindow()
    for seq in (5, 3, 10, 4, 9):
        assert w.check_and_accept(seq)
    for seq in (5, 3, 10, 4, 9):
        assert not w.check_and_accept(seq)
    for seq in (0, 1, 2, 6, 7, 8, 11):
        assert not w.is_duplicate(seq)
    assert w.highest == 10


def test_is_duplicate_does_not_update() -> None:
    """§4.5.1: the window changes only after deprotection, i.e. on accept()."""
    w = ReplayWindow()
    w.accept(3)
    assert not w.is_duplicate(7)
    assert not w.is_duplicate(7)  # still new: checking did not record it
    assert w.highest == 3


def test_left_edge() -> None:
    w = ReplayWindow()
    w.accept(100)
    assert not w.is_duplicate(100 - 63)  # last slot inside the 64-record window
    assert w.is_duplicate(100 - 64)  # left of the window: rejected as too old
    assert w.check_and_accept(37)
    assert not w.check_and_accept(37)


def test_far_jump_forgets_old_bits() -> None:
    w = ReplayWindow()
    for seq in range(64):
        w.accept(seq)
    w.accept(10_000)
    assert w.highest == 10_000
    assert w.is_duplicate(63)  # far left of the window now
    assert not w.is_duplicate(10_000 - 1)
    assert not w.is_duplicate(10_000 - 63)
    assert w.is_duplicate(10_000)


def test_jump_of_exactly_window_size() -> None:
    w = ReplayWindow()
    w.accept(0)
    w.accept(64)
    assert w.is_duplicate(0)  # 64 behind: outside
    assert not w.is_duplicate(1)
    w.accept(1)
    assert w.is_duplicate(1)


def test_shift_keeps_earlier_bits() -> None:
    w = ReplayWindow()
    w.accept(10)
    w.accept(20)  # shift by 10: bit for 10 moves to offset 10
    assert w.is_duplicate(10)
    assert not w.is_duplicate(15)
    w.accept(73)  # 10 is now 63 behind: still inside and still marked
    assert w.is_duplicate(10)
    assert w.is_duplicate(20)
    w.accept(74)  # 10 falls off the left edge
    assert w.is_duplicate(10)  # rejected as too old rather than as seen
    assert not w.is_duplicate(11)


def test_large_sequence_numbers() -> None:
    w = ReplayWindow()
    top = (1 << 64) - 1
    w.accept(top)
    assert w.is_duplicate(top)
    assert not w.is_duplicate(top - 1)
    assert w.is_duplicate(0)


def test_custom_size_and_validation() -> None:
    w = ReplayWindow(size=8)
    w.accept(10)
    assert not w.is_duplicate(3)
    assert w.is_duplicate(2)
    with pytest.raises(ValueError):
        ReplayWindow(size=0)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=200))
def test_matches_reference_model(seqs: list[int]) -> None:
    """Against a set-based model: new iff unseen and not left of the window."""
    w = ReplayWindow()
    seen: set[int] = set()
    highest = -1
    for seq in seqs:
        expected_new = seq not in seen and seq > highest - 64
        assert w.check_and_accept(seq) == expected_new
        if expected_new:
            seen.add(seq)
            highest = max(highest, seq)
        assert w.highest == highest
