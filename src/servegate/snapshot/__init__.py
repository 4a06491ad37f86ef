"""Immutable runtime view of the configuration, built from the store (see docs/internals.md)."""

from servegate.snapshot.holder import SnapshotHolder
from servegate.snapshot.model import ENTITIES, Snapshot, build_snapshot, load_snapshot

__all__ = ["ENTITIES", "Snapshot", "SnapshotHolder", "build_snapshot", "load_snapshot"]
