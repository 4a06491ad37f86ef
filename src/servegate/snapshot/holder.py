"""Per-worker reference to the current snapshot."""

from __future__ import annotations

from servegate.snapshot.model import Snapshot

__all__ = ["SnapshotHolder"]


class SnapshotHolder:
    """Requests read ``current`` once and keep using that snapshot to the end, even if it is swapped meanwhile.
    servegate.snapshot.feed.SnapshotFeed keeps it in step with the store."""

    __slots__ = ("with_plugins", "current")

    def __init__(self, current: Snapshot, *, with_plugins: bool = True) -> None:
        self.current = current
        self.with_plugins = with_plugins

    def swap(self, new: Snapshot) -> Snapshot:
        """Install ``new``; returns the previous snapshot."""
        old, self.current = self.current, new
        return old
