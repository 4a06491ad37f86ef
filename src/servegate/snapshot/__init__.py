"""Immutable runtime view of the configuration, built from the store and kept current from its change events
(see docs/internals.md)."""

from servegate.snapshot.cache import Caches, LookupCache
from servegate.snapshot.holder import SnapshotHolder
from servegate.snapshot.model import Snapshot, build_snapshot, entity_names, held_entities, load_snapshot

__all__ = ["Caches", "LookupCache", "Snapshot", "SnapshotHolder", "build_snapshot", "entity_names", "held_entities",
           "load_snapshot"]
