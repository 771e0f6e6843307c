"""The one wire-encoding helper: a read cursor over bytes and a write builder.

Codecs read like the RFC's presentation language (RFC 8446 §3): ``pull_uint16``,
``pull_opaque(2)`` for ``opaque x<0..2^16-1>``, and so on. Reading past the end, or leaving
bytes unread where a structure must end, is a ``decode_error`` (RFC 8446 §6.2).
"""

from __future__ import annotations

import struct

from .alerts import decode_error

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Reader:
    """Pulls fields from ``data[pos:end]``; never copies more than the field it returns."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def span(self) -> tuple[bytes | memoryview, int, int]:
        """``(data, position, end)``: for codecs that parse a run of fields with struct and
        then :meth:`seek` past them."""
        return self._data, self._pos, self._end

    def seek(self, pos: int) -> None:
        if not self._pos <= pos <= self._end:
            raise ValueError("seek outside the unread part")
        self._pos = pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _take(self, n: int) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise decode_error("truncated structure")
        self._pos = pos + n
        return pos

    def pull_bytes(self, n: int) -> bytes:
        pos = self._take(n)
        return bytes(self._data[pos : pos + n])

    def pull_uint8(self) -> int:
        pos = self._take(1)
        return self._data[pos]

    def pull_uint16(self) -> int:
        pos = self._take(2)
        return int(_U16.unpack_from(self._data, pos)[0])

    def pull_uint24(self) -> int:
        pos = self._take(3)
        d = self._data
        return (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2]

    def pull_uint32(self) -> int:
        pos = self._take(4)
        return int(_U32.unpack_from(self._data, pos)[0])

    def pull_uint64(self) -> int:
        pos = self._take(8)
        return int(_U64.unpack_from(self._data, pos)[0])

    def _pull_length(self, width: int) -> int:
        if width == 1:
            return self.pull_uint8()
        if width == 2:
            return self.pull_uint16()
        if width == 3:
            return self.pull_uint24()
        return self.pull_uint32()

    def pull_opaque(self, width: int, min_len: int = 0) -> bytes:
        """``opaque x<min..2^(8*width)-1>``: a length prefix of ``width`` bytes, then data."""
        n = self._pull_length(width)
        if n < min_len:
            raise decode_error(f"vector shorter than its minimum of {min_len}")
        return self.pull_bytes(n)

    def pull_block(self, width: int, min_len: int = 0) -> Reader:
        """A length-prefixed vector read field by field, as ``with r.pull_block(2) as v:``;
        leaving the block with bytes unread is a decode_error."""
        n = self._pull_length(width)
        if n < min_len:
            raise decode_error(f"vector shorter than its minimum of {min_len}")
        start = self._take(n)
        return Reader(self._data, start, start + n)

    def take_block(self, width: int, min_len: int = 0) -> tuple[bytes | memoryview, int, int]:
        """Consume a length-prefixed vector as :meth:`pull_block` does, but return
        ``(data, start, end)`` for codecs that walk it with struct themselves (no Reader per
        vector); they must account for every byte up to ``end``."""
        data = self._data
        pos = self._pos
        if width == 2:
            if self._end - pos < 2:
                raise decode_error("truncated structure")
            n = (data[pos] << 8) | data[pos + 1]
            self._pos = pos + 2
        else:
            n = self._pull_length(width)
        if n < min_len:
            raise decode_error(f"vector shorter than its minimum of {min_len}")
        start = self._take(n)
        return data, start, start + n

    # A Reader is its own context manager (cheaper than a generator-based one on hot paths).
    def __enter__(self) -> Reader:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and self._pos < self._end:
            raise decode_error("trailing bytes inside a vector")

    def pull_list(self, width: int, item_width: int, min_len: int = 0) -> list[int]:
        """A vector of fixed-width unsigned integers (1 or 2 bytes each)."""
        raw = self.pull_opaque(width, min_len)
        if len(raw) % item_width:
            raise decode_error("vector length is not a multiple of its element size")
        if item_width == 1:
            return list(raw)
        return list(struct.unpack(f"!{len(raw) // 2}H", raw))

    def expect_end(self) -> None:
        if not self.eof():
            raise decode_error("trailing bytes after structure")


class _Block:
    """Reserves a length prefix and patches it on exit (see ``Writer.push_block``)."""

    __slots__ = ("_buf", "_start", "_width")

    def __init__(self, buf: bytearray, width: int) -> None:
        self._buf = buf
        self._width = width
        self._start = len(buf)
        buf += bytes(width)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            return
        buf, start, width = self._buf, self._start, self._width
        n = len(buf) - start - width
        if n >= 1 << (8 * width):
            raise ValueError("vector too long for its length prefix")
        buf[start : start + width] = n.to_bytes(width, "big")


class Writer:
    """Builds a message into one ``bytearray``; length prefixes are patched in place."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def data(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def push_bytes(self, b: bytes | bytearray | memoryview) -> None:
        self._buf += b

    def push_uint8(self, v: int) -> None:
        self._buf.append(v)

    def push_uint16(self, v: int) -> None:
        self._buf += _U16.pack(v)

    def push_uint24(self, v: int) -> None:
        self._buf += v.to_bytes(3, "big")

    def push_uint32(self, v: int) -> None:
        self._buf += _U32.pack(v)

    def push_uint64(self, v: int) -> None:
        self._buf += _U64.pack(v)

    def push_opaque(self, width: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if n >= 1 << (8 * width):
            raise ValueError("vector too long for its length prefix")
        self._buf += n.to_bytes(width, "big")
        self._buf += data

    def push_block(self, width: int) -> _Block:
        """Write a length-prefixed vector (``with w.push_block(2): ...``); the prefix is
        filled in when the block closes."""
        return _Block(self._buf, width)

    def push_list(self, width: int, item_width: int, items: list[int] | tuple[int, ...]) -> None:
        if item_width == 1:
            self.push_opaque(width, bytes(items))
        else:
            self.push_opaque(width, struct.pack(f"!{len(items)}H", *items))
