"""The lookup caches' counters across a node's workers, through the node's shared values.

Each worker publishes its caches' counters as gauges in its own column after every configuration poll
(`db_update_frequency`); the process serving the Admin API sums the columns for `GET /status`.
"""

from __future__ import annotations

from servegate.snapshot.cache import Caches

_PREFIX = "lookup_cache:"


def publish(caches: Caches) -> None:
    from servegate.plugins.node import shared

    for name, counters in caches.stats().items():
        for field, value in counters.items():
            shared.gauge(f"{_PREFIX}{name}:{field}").set(float(value))


def read() -> dict[str, dict[str, int]]:
    """{cache name: {hits, negative_hits, misses, evictions, size, capacity}} summed over the node's workers."""
    from servegate.plugins.node import shared

    out: dict[str, dict[str, int]] = {}
    for full, _kind, value in shared.items():
        if full.startswith(_PREFIX):
            name, _, field = full[len(_PREFIX):].rpartition(":")
            out.setdefault(name, {})[field] = int(value)
    return out
