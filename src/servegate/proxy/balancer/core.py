"""A balancer: one upstream's endpoints (its targets' addresses), its algorithm, and the passive health
checks of the requests it places. Built per snapshot by `Balancers`, which carries endpoints (and their
counters) over from the balancer it replaces."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from servegate.proxy.balancer import health
from servegate.proxy.balancer.algorithms import ALGORITHMS, Algorithm
from servegate.proxy.balancer.dns import is_ip
from servegate.proxy.balancer.endpoint import Endpoint
from servegate.schema.upstreams import HEALTHCHECKS
from servegate.schema.upstreams import split_target as schema_split_target

log = logging.getLogger("servegate.balancer")

TCP, TIMEOUT = "tcp", "timeout"
# What an overloaded engine answers before it starts a response (vLLM, SGLang, TGI: 429 or 503).
OVERLOADED = frozenset((429, 503))


def split_target(target: str) -> tuple[str, int]:
    """(host without IPv6 brackets, port) of a stored target (the targets entity always stores a port)."""
    host, port = schema_split_target(target)
    return host.strip("[]"), port


def _section(upstream: dict[str, Any], *path: str) -> dict[str, Any]:
    """A part of the upstream's `healthchecks` with Kong's defaults in place of nulls (every sub-field may be
    null, and means its default)."""
    node: Any = upstream.get("healthchecks") or {}
    default: Any = HEALTHCHECKS.default
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
        default = default.get(p) if isinstance(default, dict) else None
    node = node if isinstance(node, dict) else {}
    if not isinstance(default, dict):
        return node
    return {**default, **{k: v for k, v in node.items() if v is not None}}


class Passive:
    """healthchecks.passive: thresholds of consecutive failures that take an address out, and of successes
    that bring it back (0: that kind is not counted)."""

    __slots__ = ("bad_statuses", "good_statuses", "tcp", "timeouts", "http", "successes")

    def __init__(self, upstream: dict[str, Any]) -> None:
        bad = _section(upstream, "passive", "unhealthy")
        good = _section(upstream, "passive", "healthy")
        self.bad_statuses = frozenset(bad.get("http_statuses") or ())
        self.good_statuses = frozenset(good.get("http_statuses") or ())
        self.tcp = int(bad.get("tcp_failures") or 0)
        self.timeouts = int(bad.get("timeouts") or 0)
        self.http = int(bad.get("http_failures") or 0)
        self.successes = int(good.get("successes") or 0)

    @property
    def enabled(self) -> bool:
        return bool(self.tcp or self.timeouts or self.http or self.successes)


class Balancer:
    def __init__(self, upstream: dict[str, Any], targets: list[dict[str, Any]],
                 resolved: dict[str, list[str]], previous: Balancer | None) -> None:
        self.upstream = upstream
        self.id = str(upstream["id"])
        self.name = str(upstream["name"])
        self.target_rows = targets
        self.resolved = resolved  # host name -> addresses (IP targets need none)
        self.table = health.table()
        self.cells = self.table.cells
        passive = Passive(upstream)
        self.passive: Passive | None = passive if passive.enabled else None
        self.retry_overload = bool(upstream.get("retry_on_overload", True))
        self.host_header = upstream.get("host_header")
        self.algorithm_name = str(upstream.get("algorithm") or "round-robin")
        self.latency = self.algorithm_name == "latency"  # measures each try's time to the response head
        self.needs_body = self.algorithm_name == "prefix-affinity"
        self.prefix_chars = int(upstream.get("prefix_chars") or 2048)
        self.all: list[Endpoint] = []
        self.endpoints: list[Endpoint] = []
        self.algorithm: Algorithm = ALGORITHMS[self.algorithm_name](upstream, [])
        self.build(previous.all if previous is not None else ())

    # -- endpoints ----------------------------------------------------------------------------------------
    def names(self) -> set[str]:
        """The targets' host names that need resolving."""
        out = set()
        for row in self.target_rows:
            host, _ = split_target(str(row["target"]))
            if not is_ip(host):
                out.add(host)
        return out

    def build(self, previous: Iterable[Endpoint]) -> None:
        """(Re)make the endpoint list from the target rows and the resolved names, keeping the Endpoint objects
        (and counters) of addresses that stay."""
        from servegate.plugins.node import shared

        old = {(ep.target, ep.address): ep for ep in previous}
        table = self.table
        state = shared.state()
        fresh: list[Endpoint] = []
        seen: set[tuple[str, str]] = set()
        for row in self.target_rows:
            target = str(row["target"])
            host, port = split_target(target)
            raw_weight = row.get("weight")
            weight = int(raw_weight) if raw_weight is not None else 100
            ips = [host] if is_ip(host) else self.resolved.get(host, [])
            for ip in ips:
                ep = Endpoint(target, host, ip, port, weight)
                known = old.get((target, ep.address))
                if known is not None:
                    known.weight = weight
                    ep = known
                else:
                    ep.cell = table.cell(self.id, target, ep.address)
                    if self.cells[ep.cell] == health.GONE:
                        self.cells[ep.cell] = health.UNSET
                    try:
                        slot = state.slot(f"balancer|{self.id}|{ep.address}", shared.GAUGE)
                        start = slot * state.columns
                        ep.load_cells = state._cells[start:start + state.columns]
                        ep.load_mine = state.column
                    except ValueError:  # the node's shared table is full: count this worker's requests only
                        ep.load_cells = None
                if (target, ep.address) not in seen:
                    seen.add((target, ep.address))
                    fresh.append(ep)
        for key, ep in old.items():
            if key not in seen:
                self.cells[ep.cell] = health.GONE
        self.all = fresh
        self.endpoints = [ep for ep in fresh if ep.weight > 0]
        self.algorithm = ALGORITHMS[self.algorithm_name](self.upstream, self.endpoints)

    # -- placing a request --------------------------------------------------------------------------------
    def usable(self, ep: Endpoint) -> bool:
        return self.cells[ep.cell] != health.DOWN

    def pick(self, key: str | None, exclude: Any) -> Endpoint | None:
        ep = self.algorithm.pick(self.usable, exclude, key)
        if ep is not None:
            ep.active += 1
            cells = ep.load_cells
            if cells is not None:
                cells[ep.load_mine] += 1
        return ep

    def has_other(self, tried: Any) -> bool:
        """Whether a usable endpoint not in `tried` exists (a retry would go elsewhere)."""
        return any(self.usable(ep) and ep not in tried for ep in self.endpoints)

    @staticmethod
    def release(ep: Endpoint) -> None:
        ep.active -= 1
        cells = ep.load_cells
        if cells is not None:
            cells[ep.load_mine] -= 1

    # -- passive health -----------------------------------------------------------------------------------
    def failed(self, ep: Endpoint, kind: str) -> None:
        p = self.passive
        if p is None:
            return
        ep.oks = 0
        if kind == TCP:
            ep.fails_tcp += 1
            if p.tcp and ep.fails_tcp >= p.tcp:
                self.mark(ep, False, f"{ep.fails_tcp} TCP failure(s)")
        else:
            ep.fails_timeout += 1
            if p.timeouts and ep.fails_timeout >= p.timeouts:
                self.mark(ep, False, f"{ep.fails_timeout} timeout(s)")

    def status(self, ep: Endpoint, status: int) -> None:
        p = self.passive
        if p is None:
            return
        if status in p.bad_statuses:
            ep.oks = 0
            ep.fails_http += 1
            if p.http and ep.fails_http >= p.http:
                self.mark(ep, False, f"{ep.fails_http} HTTP failure(s), last {status}")
        elif status in p.good_statuses:
            ep.fails_tcp = ep.fails_timeout = ep.fails_http = 0
            ep.oks += 1
            if p.successes and ep.oks >= p.successes and self.cells[ep.cell] == health.DOWN:
                self.mark(ep, True, f"{ep.oks} success(es)")

    def mark(self, ep: Endpoint, healthy: bool, why: str) -> None:
        want = health.UP if healthy else health.DOWN
        if self.cells[ep.cell] == want:
            return
        self.cells[ep.cell] = want
        ep.fails_tcp = ep.fails_timeout = ep.fails_http = ep.oks = 0
        ep.checks_ok = ep.checks_tcp = ep.checks_timeout = ep.checks_http = 0
        log.warning("upstream %s: target %s (%s) is %s after %s", self.name, ep.target, ep.address,
                    "healthy" if healthy else "unhealthy", why)

    def close(self) -> None:
        """The upstream left the configuration."""
