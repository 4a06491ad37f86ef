"""Node-wide rate-limit counters shared by every worker process: an mmap'd open-addressing table.

Layout: a fixed-size file under the prefix, split into stripes of SLOTS slots. A counter's slot
lives in the stripe chosen by hash(scope, identifier), so every window of one request is in one
stripe and one byte-range lock (fcntl, released by the kernel if a worker dies) makes the whole
check-then-increment atomic across processes. Inside a stripe: linear probing from
hash(scope, identifier, period). A slot holds (key digest, window start, expires at, value); a new
window resets the value in place, so slots are not consumed per window, and expired slots are
reused. A probe ends at a never-used slot. When a stripe is full of live counters the one closest
to expiry is evicted (logged), which can over-admit for that counter only.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import threading
from collections.abc import Sequence

log = logging.getLogger("servegate.plugins.rate-limiting")

_SLOT = struct.Struct("<16sqqq")  # key digest, window start, expires at (epoch s), value
_EMPTY = bytes(16)
_HEADER = 64
_MAGIC = b"SGRL1\0\0\0"


def map_file(path: str, size: int, magic: bytes) -> tuple[int, mmap.mmap]:
    """(fd, shared mapping) of the node file at `path`, created sparse with `magic` at offset 0 when new or
    shorter than `size`. Every worker of a node maps the same file (also servegate.plugins.node.shared);
    the whole-file lock makes the first creation safe when several processes get here at once."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0, os.SEEK_SET)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # sparse: pages are allocated on first touch
                os.pwrite(fd, magic, 0)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0, os.SEEK_SET)
        return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise


class SharedCounters:
    """One node's counter table. Safe across processes (fcntl) and threads (a process lock)."""

    def __init__(self, path: str, *, stripes: int = 8192, slots: int = 64) -> None:
        self.path = path
        self.stripes = stripes
        self.slots = slots
        self._stripe_bytes = slots * _SLOT.size
        self._fd, self._mm = map_file(path, _HEADER + stripes * self._stripe_bytes, _MAGIC)
        self._tlock = threading.Lock()

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)

    @staticmethod
    def digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def _find(self, base: int, kd: bytes, now: int, for_write: bool) -> tuple[int, int, int, int] | None:
        """(offset, window start, expires at, value) of `kd`'s slot; when absent and for_write,
        a slot to take over (value reported as -1). None when absent and not for_write."""
        mm, slots, size = self._mm, self.slots, _SLOT.size
        first = int.from_bytes(kd[:4], "little") % slots
        free = -1
        victim, victim_exp = -1, 0
        for i in range(slots):
            off = base + ((first + i) % slots) * size
            k, ws, exp, val = _SLOT.unpack_from(mm, off)
            if k == kd:
                return off, ws, exp, val
            if k == _EMPTY:
                if free < 0:
                    free = off
                break
            if not for_write:
                continue
            if exp <= now:
                if free < 0:
                    free = off
            elif victim < 0 or exp < victim_exp:
                victim, victim_exp = off, exp
        if not for_write:
            return None
        if free < 0:
            log.warning("rate-limiting counter table stripe full; evicting a live counter (%s)", self.path)
            free = victim
        return free, 0, 0, -1

    def hit(self, stripe_key: bytes, entries: Sequence[tuple[bytes, int, int, float]], now: int,
            cost: int = 1) -> tuple[list[int], bool]:
        """Atomically read the usage of each (key digest, window start, expires at, limit) and,
        when every window has room (usage < limit), add `cost` to all of them.
        Returns (usage before this request per entry, admitted)."""
        stripe = int.from_bytes(stripe_key[:8], "little") % self.stripes
        base = _HEADER + stripe * self._stripe_bytes
        mm = self._mm
        with self._tlock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, stripe, os.SEEK_SET)
            try:
                usages: list[int] = []
                offsets: list[int] = []
                admitted = True
                for kd, ws, _exp, limit in entries:
                    off, s_ws, _, val = self._find(base, kd, now, True)  # type: ignore[misc]
                    used = val if val >= 0 and s_ws == ws else 0
                    # -1: a new key; its slot is picked again when writing, as another new key
                    # of this request may take the same free slot first.
                    offsets.append(off if val >= 0 else -1)
                    usages.append(used)
                    if used >= limit:
                        admitted = False
                if admitted:
                    for (kd, ws, exp, _limit), used, off in zip(entries, usages, offsets, strict=True):
                        if off < 0:
                            off = self._find(base, kd, now, True)[0]  # type: ignore[index]
                        _SLOT.pack_into(mm, off, kd, ws, exp, used + cost)
                return usages, admitted
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, stripe, os.SEEK_SET)


class ProcessCounters:
    """The same check-then-count as SharedCounters, for a node with a single worker process.

    No other process can touch the counters, so a dict does; it saves the two fcntl calls per
    request that the shared table needs (measured ~10 µs of the plugin route's ~65 µs).
    Requests run on one event loop thread, so no lock is taken either.
    """

    _SWEEP_EVERY = 65536

    def __init__(self) -> None:
        self._slots: dict[bytes, list[int]] = {}  # key digest -> [window start, expires at, value]
        self._hits = 0

    def hit(self, stripe_key: bytes, entries: Sequence[tuple[bytes, int, int, float]], now: int,
            cost: int = 1) -> tuple[list[int], bool]:
        slots = self._slots
        self._hits += 1
        if self._hits % self._SWEEP_EVERY == 0:
            for kd in [k for k, v in slots.items() if v[1] <= now]:
                del slots[kd]
        usages = []
        found = []
        admitted = True
        for kd, ws, _exp, limit in entries:
            slot = slots.get(kd)
            if slot is not None and slot[0] == ws:
                used = slot[2]
            else:
                used = 0
                slot = None
            usages.append(used)
            found.append(slot)
            if used >= limit:
                admitted = False
        if admitted:
            for (kd, ws, exp, _limit), slot in zip(entries, found, strict=True):
                if slot is None:
                    slots[kd] = [ws, exp, cost]
                else:
                    slot[2] += cost
        return usages, admitted


_tables: dict[str, SharedCounters] = {}
_tables_lock = threading.Lock()


def table(path: str) -> SharedCounters:
    """The process's one handle on the node table at `path`.

    One per process matters: fcntl locks do not exclude each other within a process, so two
    handles would let two threads into a stripe at once; only the handle's thread lock does.
    """
    t = _tables.get(path)
    if t is None:
        with _tables_lock:
            t = _tables.get(path)
            if t is None:
                t = _tables[path] = SharedCounters(path)
    return t
