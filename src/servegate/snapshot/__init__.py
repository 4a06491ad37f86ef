"""Immutable runtime view of the configuration, built from the store (see docs/internals.md)."""

from servegate.snapshot.holder import SnapshotHolder
from servegate.snapshot.model import Snapshot, build_snapshot, entity_names, load_snapshot

__all__ = ["Snapshot", "SnapshotHolder", "build_snapshot", "entity_names", "load_snapshot"]
