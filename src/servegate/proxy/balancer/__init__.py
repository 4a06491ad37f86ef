"""Load balancing over an upstream's targets (Kong's upstreams and targets, and servegate's LLM-aware
algorithms). A service whose `host` names an upstream is balanced over its targets.

`Balancers` is the worker's registry, owned by the proxy server like the connection pool: it follows the
snapshot (a balancer per upstream, rebuilt only when its upstream or target rows change), resolves target host
names in the background with their TTL, and in worker 0 runs the active health checks. Health lives in the
node's shared table (`health`), so every worker skips an address any of them found down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from servegate.proxy.balancer import dns, health
from servegate.proxy.balancer.core import Balancer

__all__ = ["Balancer", "Balancers"]

log = logging.getLogger("servegate.balancer")
MAX_DNS_WAIT_S = 3600.0


def _upstream_id(row: dict[str, Any]) -> str | None:
    ref = row.get("upstream")
    if isinstance(ref, dict):
        return str(ref.get("id")) if ref.get("id") is not None else None
    return str(row["upstream_id"]) if row.get("upstream_id") is not None else None


class Balancers:
    def __init__(self, *, checks: bool = False) -> None:
        self.snapshot: Any = None
        self.seen: tuple[Any, Any] = (None, None)
        self.by_id: dict[str, Balancer] = {}
        self.by_name: dict[str, Balancer] = {}
        self.checks = checks  # run active health checks (worker 0 of a node)
        self.resolved: dict[str, tuple[list[str], float]] = {}  # host -> (addresses, valid until)
        self.tasks: dict[str, list[asyncio.Task[None]]] = {}
        self.ready: dict[str, asyncio.Future[None]] = {}

    def get(self, snapshot: Any, name: str) -> Balancer | None:
        if snapshot is not self.snapshot:
            self.sync(snapshot)
        return self.by_name.get(name)

    def sync(self, snapshot: Any) -> None:
        self.snapshot = snapshot
        ups = snapshot.index("upstreams", "id")
        tgs = snapshot.index("targets", "id")
        # Indexes are copied on write: the same objects mean no upstream or target changed.
        if (ups is self.seen[0] and tgs is self.seen[1]) or (not ups and not self.by_id):
            self.seen = (ups, tgs)
            return
        self.seen = (ups, tgs)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in tgs.values():
            uid = _upstream_id(row)
            if uid is not None:
                grouped.setdefault(uid, []).append(row)
        by_id: dict[str, Balancer] = {}
        for uid, row in ups.items():
            rows = sorted(grouped.get(str(uid), []), key=lambda r: (str(r.get("target")), str(r.get("id"))))
            old = self.by_id.get(str(uid))
            if old is not None and old.upstream is row and len(old.target_rows) == len(rows) and all(
                    a is b for a, b in zip(old.target_rows, rows, strict=True)):
                by_id[str(uid)] = old
                continue
            bal = Balancer(row, rows, self._addresses(), old)
            by_id[str(uid)] = bal
            self._start(bal, old)
        for uid in self.by_id:
            if uid not in by_id:
                self._stop(uid)
        self.by_id = by_id
        self.by_name = {b.name: b for b in by_id.values()}

    def _addresses(self) -> dict[str, list[str]]:
        return {host: addrs for host, (addrs, _) in self.resolved.items()}

    # -- background work: DNS and active checks ----------------------------------------------------------
    def _start(self, bal: Balancer, old: Balancer | None) -> None:
        self._stop(bal.id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # built outside a loop (tests, tools): names stay unresolved
            return
        tasks = []
        names = bal.names()
        if names:
            missing = [n for n in names if n not in self.resolved]
            if missing:
                self.ready[bal.id] = loop.create_future()
            tasks.append(loop.create_task(self._dns_loop(bal, names)))
        if self.checks:
            from servegate.proxy.balancer.checks import active_enabled, run_active

            if active_enabled(bal.upstream):
                tasks.append(loop.create_task(run_active(self, bal.id)))
        self.tasks[bal.id] = tasks

    def _stop(self, uid: str) -> None:
        for task in self.tasks.pop(uid, []):
            task.cancel()
        fut = self.ready.pop(uid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def stop_all(self) -> None:
        for uid in list(self.tasks):
            self._stop(uid)

    async def wait_resolved(self, bal: Balancer) -> None:
        """Until the first resolution of a new balancer's names is done (a request that found no address yet)."""
        fut = self.ready.get(bal.id)
        if fut is not None:
            await asyncio.shield(fut)

    async def _dns_loop(self, bal: Balancer, names: set[str]) -> None:
        while True:
            now = time.monotonic()
            changed = False
            next_at = now + MAX_DNS_WAIT_S
            for host in names:
                known = self.resolved.get(host)
                if known is not None and known[1] > now:
                    next_at = min(next_at, known[1])
                    continue
                try:
                    addresses, ttl = await dns.resolve(host)
                except dns.NameNotFound:
                    addresses, ttl = [], dns.NOT_FOUND_TTL
                except OSError as e:
                    log.warning("upstream %s: cannot resolve %s: %s", bal.name, host, e)
                    addresses, ttl = (known[0] if known else []), dns.ERROR_TTL
                valid = time.monotonic() + ttl
                next_at = min(next_at, valid)
                if known is None or known[0] != addresses:
                    changed = True
                self.resolved[host] = (addresses, valid)
                for row in bal.target_rows:
                    if str(row["target"]).rsplit(":", 1)[0].strip("[]") == host:
                        bal.table.set_dns_error(bal.id, str(row["target"]), not addresses)
            if changed:
                bal.resolved = self._addresses()
                bal.build(bal.all)
            fut = self.ready.pop(bal.id, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            await asyncio.sleep(max(dns.MIN_TTL, next_at - time.monotonic()))


def configure_node(prefix: str | None) -> None:
    """Point this process at the node's health table (see servegate.node)."""
    health.configure(prefix)

