"""DTLS anti-replay sliding window (RFC 9147 §4.5.1, borrowed from RFC 4303 §3.4.3).

One window per epoch: each epoch restarts its sequence-number space at 0 (RFC 9147 §4.2).
The window is an ``int`` bitmap: bit ``i`` set means record ``highest - i`` was accepted.
Checking and updating are separate steps because the window "MUST NOT be updated due to a
received record until that record has been deprotected successfully" (§4.5.1).
"""

from __future__ import annotations

__all__ = ["DEFAULT_WINDOW_SIZE", "ReplayWindow"]

DEFAULT_WINDOW_SIZE = 64


class ReplayWindow:
    """Tracks which sequence numbers of one epoch have been accepted."""

    __slots__ = ("_bitmap", "_highest", "_mask", "size")

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE) -> None:
        if size < 1:
            raise ValueError("replay window size must be positive")
        self.size = size
        self._mask = (1 << size) - 1
        self._bitmap = 0
        # -1: nothing accepted yet in this epoch (the "received record counter" starts at
        # zero, §4.5.1, so the first expected record number is 0).
        self._highest = -1

    @property
    def highest(self) -> int:
        """The right edge: highest accepted sequence number, or -1 if none yet."""
        return self._highest

    @property
    def next_expected(self) -> int:
        """One plus the highest deprotected record: the reconstruction target (§4.2.2)."""
        return self._highest + 1

    def is_duplicate(self, seq: int) -> bool:
        """True if ``seq`` was already accepted or lies left of the window (too old)."""
        diff = self._highest - seq
        if diff < 0:
            return False  # right of the window: new
        if diff >= self.size:
            return True  # left of the window: rejected (§4.5.1)
        return bool((self._bitmap >> diff) & 1)

    def accept(self, seq: int) -> None:
        """Record ``seq`` as received; call only after successful deprotection."""
        shift = seq - self._highest
        if shift > 0:
            # Slide the window right; a jump of at least a full window forgets everything.
            self._bitmap = ((self._bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self._highest = seq
        elif -shift < self.size:
            self._bitmap |= 1 << -shift

    def check_and_accept(self, seq: int) -> bool:
        """Accept ``seq`` unless it is a replay; returns whether it was new."""
        if self.is_duplicate(seq):
            return False
        self.accept(seq)
        return True
