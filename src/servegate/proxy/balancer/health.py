"""The node's balancer health table: one health state per (upstream, target, address), shared by every
process of a node (workers and the Admin process).

Workers write it (passive checks on their own traffic, the active checker in worker 0, the addresses a target
resolved to); the Admin API reads it (`GET /upstreams/{u}/health`) and writes it (`PUT .../healthy`). It is a
`SharedState` with one column: every process writes the same cell of a name, last writer wins, which is what
a health flag wants (a float write to mapped memory is atomic on the machines we run on).

Names (all under the upstream's id and a short hash of the target string, so they stay under NAME_MAX):
- `<u>|<t>|<ip:port>`: an address's state, `UNSET` (never checked: healthy), `UP`, `DOWN` or `GONE` (the
  target no longer resolves to it);
- `<u>|<t>|dns`: 1 when the target's name did not resolve (`DNS_ERROR`), else 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any, Final

from servegate.plugins.node.shared import GAUGE, SharedState

FILE_NAME: Final = "balancer-health.shm"

UNSET: Final = 0.0
UP: Final = 1.0
DOWN: Final = 2.0
GONE: Final = 3.0

HEALTHY: Final = "HEALTHY"
UNHEALTHY: Final = "UNHEALTHY"
DNS_ERROR: Final = "DNS_ERROR"
HEALTHCHECKS_OFF: Final = "HEALTHCHECKS_OFF"


def target_key(upstream_id: str, target: str) -> str:
    digest = hashlib.blake2b(target.encode(), digest_size=8).hexdigest()
    return f"{upstream_id}|{digest}|"


class HealthTable:
    """This process's handle on the node's table."""

    def __init__(self, path: str | None) -> None:
        self.state = SharedState(path, 0, 1)
        self._cells = self.state._cells

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self.state.close()

    def cell(self, upstream_id: str, target: str, address: str) -> int:
        """The index of an address's state in `cells` (added when new): workers keep it, so a pick reads the
        state with one memoryview index."""
        return self.state.slot(target_key(upstream_id, target) + address, GAUGE)

    @property
    def cells(self) -> Any:
        """The states, a float64 memoryview indexed by `cell()`."""
        return self._cells

    def get(self, upstream_id: str, target: str, address: str) -> float:
        """A state (UNSET when no process registered the name: reading adds no name)."""
        found = self.state._find((target_key(upstream_id, target) + address).encode())
        return UNSET if found is None else float(self._cells[found[0]])

    def put(self, upstream_id: str, target: str, address: str, value: float) -> None:
        self._cells[self.cell(upstream_id, target, address)] = value

    def set_dns_error(self, upstream_id: str, target: str, error: bool) -> None:
        self.put(upstream_id, target, "dns", 1.0 if error else 0.0)

    def dns_error(self, upstream_id: str, target: str) -> bool:
        return self.get(upstream_id, target, "dns") == 1.0

    def addresses(self, upstream_id: str, target: str) -> list[tuple[str, float]]:
        """(`ip:port`, state) of every address a worker registered for the target and did not mark GONE."""
        prefix = target_key(upstream_id, target)
        out = []
        for name, _kind, value in self.state.items():
            if name.startswith(prefix):
                address = name[len(prefix):]
                if address != "dns" and value != GONE:
                    out.append((address, value))
        return out

    def set_target(self, upstream_id: str, target: str, address: str | None, healthy: bool) -> None:
        """The Admin API's `PUT .../healthy|unhealthy`: one address, or (None) every address of the target."""
        value = UP if healthy else DOWN
        if address is not None:
            self.put(upstream_id, target, address, value)
            return
        for addr, _ in self.addresses(upstream_id, target):
            self.put(upstream_id, target, addr, value)


_table: HealthTable | None = None
_path: str | None = None


def configure(prefix: str | None) -> None:
    """Called by the node in each process (the file is mapped on first use)."""
    global _table, _path
    if _table is not None:
        _table.close()
        _table = None
    _path = os.path.join(prefix, FILE_NAME) if prefix else None


def table() -> HealthTable:
    global _table
    if _table is None:
        _table = HealthTable(_path)
    return _table


def reset(prefix: str) -> None:
    """Remove the node's file before workers fork: health starts unknown (healthy) on a node's start."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(prefix, FILE_NAME))


def checks_enabled(upstream: dict[str, object]) -> bool:
    """Whether any health check runs for the upstream (else its targets report HEALTHCHECKS_OFF): an active
    interval, or a passive unhealthy threshold, is non-zero."""
    hc = upstream.get("healthchecks")
    if not isinstance(hc, dict):
        return False
    active = hc.get("active") or {}
    passive = hc.get("passive") or {}
    if not isinstance(active, dict) or not isinstance(passive, dict):
        return False
    for part in (active.get("healthy"), active.get("unhealthy")):
        if isinstance(part, dict) and part.get("interval"):
            return True
    bad = passive.get("unhealthy")
    return isinstance(bad, dict) and any(bad.get(k) for k in ("tcp_failures", "timeouts", "http_failures"))


def target_health(upstream: dict[str, object], table: HealthTable, target: str,
                  addresses: list[tuple[str, float]]) -> str:
    """Kong's per-target `health`: DNS_ERROR when its name did not resolve, HEALTHCHECKS_OFF when no check
    runs, else UNHEALTHY when every address is down, HEALTHY otherwise."""
    uid = str(upstream.get("id"))
    if table.dns_error(uid, target):
        return DNS_ERROR
    if not checks_enabled(upstream):
        return HEALTHCHECKS_OFF
    if addresses and all(state == DOWN for _, state in addresses):
        return UNHEALTHY
    return HEALTHY
