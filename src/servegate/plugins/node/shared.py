"""Counters and gauges shared by every process of a node, for plugins to bump and export.

One mmap'd file under the prefix (mapped with the rate-limit table's `map_file`), in two regions:

- a name directory of CAPACITY entries (kind, name length, UTF-8 name), open addressing by hash(name);
  a name is added once per node under a byte-range lock and never removed while the node runs;
- a value matrix: one float64 cell per (name, process). Worker i writes column i, the process serving the
  Admin API without a proxy (the master of a multi-worker node) column `workers`.

Each cell has exactly one writer, its own process, so an increment is a plain read-add-write on mapped
memory: no lock, no syscall (~0.1 µs from Python). Readers sum a name's row. A name's entry is written
before its length, so a reader that sees the length sees the whole name. The file is removed when a node
starts (`reset`), so values count from the node's start, as Kong's shm dicts do.

Values are floats: integer counts are exact up to 2**53. Writers must be their process's event loop thread
(one writer per cell); reads from any thread or process are fine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

from servegate.plugins.ratelimit.shm import map_file

CAPACITY = 4096
NAME_MAX = 248
_ENTRY = 256
_ENTRY_HEAD = struct.Struct("<IB")  # name length (0 = free), kind
_HEADER = 64
_MAGIC = b"SGNS1\0\0\0"
COUNTER, GAUGE = 1, 2
KINDS = {COUNTER: "counter", GAUGE: "gauge"}
FILE_NAME = "node-shared.shm"


class SharedState:
    """One process's handle on the node's table: `column` is the cell this process writes."""

    def __init__(self, path: str | None, column: int, columns: int) -> None:
        if not 0 <= column < columns:
            raise ValueError(f"column {column} outside 0..{columns - 1}")
        self.path, self.column, self.columns = path, column, columns
        self._values_at = _HEADER + CAPACITY * _ENTRY
        size = self._values_at + CAPACITY * columns * 8
        if path is None:  # no node (a test, a tool): private memory, same code path
            self._fd = -1
            self._mm = mmap.mmap(-1, size)
        else:
            self._fd, self._mm = map_file(path, size, _MAGIC)
        self._cells: Any = memoryview(self._mm)[self._values_at:].cast("d")
        self._index: dict[str, tuple[int, int]] = {}  # name -> (slot, kind)

    def close(self) -> None:
        self._cells.release()
        self._mm.close()
        if self._fd >= 0:
            os.close(self._fd)

    # -- names ----------------------------------------------------------------------------------
    def _probe(self, name: bytes) -> Iterator[int]:
        first = int.from_bytes(hashlib.blake2b(name, digest_size=4).digest(), "little") % CAPACITY
        for i in range(CAPACITY):
            yield (first + i) % CAPACITY

    def _entry(self, slot: int) -> tuple[int, int, bytes]:
        off = _HEADER + slot * _ENTRY
        length, kind = _ENTRY_HEAD.unpack_from(self._mm, off)
        return length, kind, bytes(self._mm[off + 8:off + 8 + length]) if length else b""

    def _find(self, name: bytes) -> tuple[int, int] | None:
        """(slot, kind) of `name`, or None; stops at the first free entry (no name is ever removed)."""
        for slot in self._probe(name):
            length, kind, text = self._entry(slot)
            if not length:
                return None
            if text == name:
                return slot, kind
        return None

    def slot(self, name: str, kind: int) -> int:
        """The slot of `name` (added when new). ValueError for a bad name, a kind clash or a full table."""
        known = self._index.get(name)
        if known is not None and known[1] == kind:
            return known[0]
        raw = name.encode()
        if not raw or len(raw) > NAME_MAX:
            raise ValueError(f"shared value names are 1 to {NAME_MAX} UTF-8 bytes")
        found = self._find(raw)
        if found is None:
            found = self._add(raw, kind)
        if found[1] != kind:
            raise ValueError(f"{name!r} is a {KINDS[found[1]]}, not a {KINDS[kind]}")
        self._index[name] = found
        return found[0]

    def _add(self, raw: bytes, kind: int) -> tuple[int, int]:
        with self._locked():
            found = self._find(raw)  # another process may have added it meanwhile
            if found is not None:
                return found
            for slot in self._probe(raw):
                off = _HEADER + slot * _ENTRY
                if not _ENTRY_HEAD.unpack_from(self._mm, off)[0]:
                    self._mm[off + 8:off + 8 + len(raw)] = raw
                    struct.pack_into("<B", self._mm, off + 4, kind)
                    struct.pack_into("<I", self._mm, off, len(raw))  # last: marks the entry used
                    return slot, kind
        raise ValueError(f"the node's shared value table is full ({CAPACITY} names)")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._fd < 0:
            yield
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)

    # -- values ---------------------------------------------------------------------------------
    def cells(self, slot: int) -> list[float]:
        start = slot * self.columns
        return self._cells[start:start + self.columns].tolist()

    def items(self) -> list[tuple[str, str, float]]:
        """(name, "counter"|"gauge", sum over processes) of every name, sorted by name."""
        out = []
        for slot in range(CAPACITY):
            length, kind, text = self._entry(slot)
            if length:
                out.append((text.decode(), KINDS.get(kind, "?"), sum(self.cells(slot))))
        out.sort()
        return out


class Counter:
    """A monotonically increasing value: `add(n)` in any process, `value()` is the node-wide sum."""

    __slots__ = ("_state", "_slot", "_cells", "_mine")

    def __init__(self, state: SharedState, slot: int) -> None:
        self._state, self._slot = state, slot
        self._cells = state._cells
        self._mine = slot * state.columns + state.column

    def add(self, amount: float = 1.0) -> None:
        self._cells[self._mine] += amount

    def value(self) -> float:
        return sum(self._state.cells(self._slot))

    def values(self) -> list[float]:
        """One value per process (column order: workers 0..n-1, then the Admin process)."""
        return self._state.cells(self._slot)


class Gauge(Counter):
    """A value each process sets for itself; `value()` sums them (or `max`/`min` of `values()`)."""

    __slots__ = ()

    def set(self, value: float) -> None:
        self._cells[self._mine] = value


_state: SharedState | None = None
_where: tuple[str | None, int, int] = (None, 0, 1)


def configure(path: str | None, column: int, columns: int) -> None:
    """Called by the node in each process before plugins run (see servegate.node). The file is mapped on
    first use: a node whose plugins share nothing never maps it."""
    global _state, _where
    if not 0 <= column < columns:
        raise ValueError(f"column {column} outside 0..{columns - 1}")
    if _state is not None:
        with contextlib.suppress(BufferError):  # Counter objects still hold the old mapping
            _state.close()
        _state = None
    _where = (path, column, columns)


def state() -> SharedState:
    """This process's handle (outside a node: private memory with one column)."""
    global _state
    if _state is None:
        _state = SharedState(*_where)
    return _state


def counter(name: str) -> Counter:
    """The node-wide counter `name` (a plugin keeps the object: each call looks the name up)."""
    s = state()
    return Counter(s, s.slot(name, COUNTER))


def gauge(name: str) -> Gauge:
    s = state()
    return Gauge(s, s.slot(name, GAUGE))


def items() -> list[tuple[str, str, float]]:
    return state().items()


def reset(prefix: str) -> str:
    """The node file's path under `prefix`, removed so that a starting node counts from zero (before fork)."""
    path = os.path.join(prefix, FILE_NAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return path
