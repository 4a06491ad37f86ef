"""Plugin scope resolution and per-request phase plans.

`PluginIndex` is built once per configuration snapshot. `index.plan(route_id, service_id)` gives
the phase plan for a matched route, computed on first use and cached: every plugin name that has
an enabled instance able to apply (global, on the route, on the service, or consumer-scoped on any
of those), in descending PRIORITY. For each name the plan holds the best non-consumer instance and
a consumer id -> instance map, so that a plugin running after an auth plugin picks up the
consumer-scoped config in O(1) (Kong: Route+Service+Consumer > Route+Consumer > Service+Consumer >
Route+Service > Consumer > Route > Service > Global; one instance per name).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from servegate.plugins.base import Context, HookResult, Lookups, Plugin

log = logging.getLogger("servegate.plugins")

_HTTP_BOTH = frozenset(("http", "https"))


def _fk(row: Mapping[str, Any], field: str) -> str | None:
    ref = row.get(field)
    if isinstance(ref, Mapping):
        return ref.get("id")
    return ref if isinstance(ref, str) else None


# Rank of a (route, service, consumer) scope: lower wins.
def _rank(has_route: bool, has_service: bool, has_consumer: bool) -> int:
    if has_consumer:
        if has_route and has_service:
            return 0
        if has_route:
            return 1
        if has_service:
            return 2
        return 4
    if has_route and has_service:
        return 3
    if has_route:
        return 5
    if has_service:
        return 6
    return 7


class Bound:
    """One plugin instance ready to run: its handler, compiled conf and protocol filter, and its phase hooks
    (the handler's bound methods, or None), looked up once here rather than on every request."""

    __slots__ = ("handler", "conf", "protocols", "plugin_id", "access", "header_filter", "body_filter", "log")

    def __init__(self, handler: Plugin, conf: Any, protocols: frozenset[str] | None, plugin_id: str) -> None:
        self.handler = handler
        self.conf = conf
        # None when the instance runs for any HTTP scheme (no per-request check needed).
        self.protocols = protocols
        self.plugin_id = plugin_id
        self.access: Callable[..., HookResult] | None = handler.access
        self.header_filter: Callable[..., HookResult] | None = handler.header_filter
        self.body_filter: Callable[..., bytes | None] | None = handler.body_filter
        self.log: Callable[..., HookResult] | None = handler.log


class _Slot:
    __slots__ = ("base", "by_consumer", "later")

    def __init__(self, base: Bound | None, by_consumer: dict[str, Bound] | None, later: bool) -> None:
        self.base = base
        self.by_consumer = by_consumer
        # The handler has a header_filter, body_filter or log hook: remember it for the later phases.
        self.later = later


class Plan:
    """The phases for one (route, service). Hooks run inline; awaited only when one returns an awaitable."""

    __slots__ = ("slots", "has_later", "has_body_filter", "reads_body")

    def __init__(self, slots: list[_Slot], has_body_filter: bool = False, reads_body: bool = False) -> None:
        self.slots = slots
        self.has_later = any(s.later for s in slots)
        # Some plugin of this plan has a body_filter hook: only then does the proxy de-frame the body.
        self.has_body_filter = has_body_filter
        # Some plugin's access hook reads the request body (Plugin.reads_body).
        self.reads_body = reads_body

    @staticmethod
    def _resolve(slot: _Slot, ctx: Context) -> Bound | None:
        if slot.by_consumer is not None:
            consumer = ctx.consumer
            if consumer is not None:
                b = slot.by_consumer.get(consumer["id"])
                if b is not None:
                    return b
        return slot.base

    def access(self, ctx: Context) -> Awaitable[None] | None:
        """Run access hooks from the start; raises `Exit` when a plugin ends the request."""
        return self._access_from(ctx, 0)

    def _access_from(self, ctx: Context, start: int) -> Awaitable[None] | None:
        slots = self.slots
        for i in range(start, len(slots)):
            slot = slots[i]
            b = self._resolve(slot, ctx)
            if b is None or (b.protocols is not None and ctx.scheme not in b.protocols):
                continue
            if slot.later:
                if ctx.collected is None:
                    ctx.collected = []
                ctx.collected.append(b)
            hook = b.access
            if hook is None:
                continue
            try:
                r = hook(ctx, b.conf)
            except BaseException:
                self._collect_rest(ctx, i + 1)
                raise
            if r is not None:
                return self._await_then(ctx, r, i + 1)
        return None

    async def _await_then(self, ctx: Context, pending: Awaitable[None], nxt: int) -> None:
        try:
            await pending
        except BaseException:
            self._collect_rest(ctx, nxt)
            raise
        rest = self._access_from(ctx, nxt)
        if rest is not None:
            await rest

    def _collect_rest(self, ctx: Context, start: int) -> None:
        """The access phase ended early (a plugin answered, or failed): as Kong's collecting iterator, the plugins
        after it run no access hook but are still collected, so their log hooks see the request (prometheus
        counts key-auth's 401s and rate-limiting's 429s)."""
        slots = self.slots
        for i in range(start, len(slots)):
            slot = slots[i]
            if not slot.later:
                continue
            b = self._resolve(slot, ctx)
            if b is None or (b.protocols is not None and ctx.scheme not in b.protocols):
                continue
            if ctx.collected is None:
                ctx.collected = []
            ctx.collected.append(b)

    def header_filter(self, ctx: Context, headers: Any, status: int | None = None) -> Awaitable[None] | None:
        """Run header_filter hooks of the plugins collected in access; `headers` is the proxy's
        mutable downstream header object, exposed as `ctx.downstream_headers`."""
        if ctx.collected is None:
            return None
        ctx.downstream_headers = headers
        if status is not None:
            ctx.response_status = status
        return _run_phase(ctx, ctx.collected, False, 0)

    def body_filters(self, ctx: Context) -> list[Bound] | None:
        """The instances whose body_filter runs on this response (None: the body is relayed untouched)."""
        if not self.has_body_filter or ctx.collected is None:
            return None
        return [b for b in ctx.collected if b.body_filter is not None] or None

    def log(self, ctx: Context) -> Awaitable[None] | None:
        if ctx.collected is None:
            return None
        return _run_phase(ctx, ctx.collected, True, 0)


def run_body_filters(ctx: Context, filters: list[Bound], chunk: bytes, eof: bool) -> bytes:
    """One body chunk (or end of stream, chunk b"") through every body_filter in order: each sees what the
    previous one emitted."""
    for b in filters:
        hook = b.body_filter
        if hook is not None:
            out = hook(ctx, b.conf, chunk, eof)
            if out is not None:
                chunk = out
    return chunk


# The header_filter and log phases: every collected hook in order; from the first that returns an awaitable on,
# the rest run on a task after it.
def _run_phase(ctx: Context, items: list[Bound], log: bool, start: int) -> Awaitable[None] | None:
    for i in range(start, len(items)):
        b = items[i]
        hook = b.log if log else b.header_filter
        if hook is None:
            continue
        r: HookResult = hook(ctx, b.conf)
        if r is not None:
            return _await_phase(ctx, items, log, r, i + 1)
    return None


async def _await_phase(ctx: Context, items: list[Bound], log: bool, pending: Awaitable[None], nxt: int) -> None:
    await pending
    rest = _run_phase(ctx, items, log, nxt)
    if rest is not None:
        await rest


def plugin_inputs() -> frozenset[str]:
    """The entities whose change means rebuilding the plugin index: plugins, and what a loaded plugin's
    compile() reads from the snapshot (Plugin.binds)."""
    from servegate.plugins import handlers

    return frozenset({"plugins", *(name for h in handlers().values() for name in h.binds)})


class PluginIndex:
    """Enabled plugin instances of one snapshot, grouped for fast plan building."""

    def __init__(
        self,
        plugin_rows: Iterable[Mapping[str, Any]],
        *,
        indexes: Mapping[str, Mapping[str, Mapping[Any, Mapping[str, Any]]]] | None = None,
        handlers: Mapping[str, Plugin] | None = None,
        loaded_at: float | None = None,
        caches: Any = None,
    ) -> None:
        if handlers is None:
            from servegate.plugins import handlers as registered

            handlers = registered()
        if caches is None:
            from servegate.snapshot.cache import Caches, MemorySource

            caches = Caches(MemorySource(indexes or {}))
        self.lookups = Lookups(
            indexes=indexes or {},
            loaded_at=time.time() if loaded_at is None else loaded_at,
            caches=caches,
        )
        # name -> list of (rank-relevant scope, Bound)
        self._by_name: dict[str, list[tuple[str | None, str | None, str | None, Bound]]] = {}
        self._priority: dict[str, int] = {}
        self._plans: dict[tuple[str | None, str | None], Plan | None] = {}
        for row in plugin_rows:
            if row.get("enabled") is False:
                continue
            name = row.get("name")
            handler = handlers.get(name) if isinstance(name, str) else None
            if handler is None:
                log.warning("plugin %r has no handler; instance %s ignored", name, row.get("id"))
                continue
            try:
                conf = handler.compile(row, self.lookups)
            except Exception:  # a bad row must not take the whole snapshot down
                log.exception("plugin %s instance %s failed to compile; ignored", name, row.get("id"))
                continue
            protos = row.get("protocols")
            pset = frozenset(protos) if protos else None
            bound = Bound(handler, conf, None if pset is None or _HTTP_BOTH <= pset else pset, str(row.get("id")))
            self._by_name.setdefault(handler.name, []).append(
                (_fk(row, "route"), _fk(row, "service"), _fk(row, "consumer"), bound))
            self._priority[handler.name] = handler.PRIORITY

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def plan(self, route_id: str | None, service_id: str | None) -> Plan | None:
        key = (route_id, service_id)
        try:
            return self._plans[key]
        except KeyError:
            pass
        p = self._build(route_id, service_id)
        self._plans[key] = p
        return p

    def _build(self, route_id: str | None, service_id: str | None) -> Plan | None:
        chosen: list[tuple[int, str, _Slot]] = []
        body_filter = reads_body = False
        for name, instances in self._by_name.items():
            best: tuple[int, Bound] | None = None
            consumers: dict[str, tuple[int, Bound]] = {}
            for r, s, c, bound in instances:
                if r is not None and r != route_id:
                    continue
                if s is not None and s != service_id:
                    continue
                rank = _rank(r is not None, s is not None, c is not None)
                if c is None:
                    if best is None or rank < best[0]:
                        best = (rank, bound)
                else:
                    prev = consumers.get(c)
                    if prev is None or rank < prev[0]:
                        consumers[c] = (rank, bound)
            if best is not None:
                # A consumer-only instance loses to Route+Service: drop those that can never win.
                consumers = {c: rb for c, rb in consumers.items() if rb[0] < best[0]}
            if best is None and not consumers:
                continue
            any_bound = best[1] if best is not None else next(iter(consumers.values()))[1]
            h = any_bound.handler
            slot = _Slot(
                best[1] if best is not None else None,
                {c: b for c, (_, b) in consumers.items()} or None,
                h.header_filter is not None or h.log is not None or h.body_filter is not None,
            )
            if h.body_filter is not None:
                body_filter = True
            applying = [b for _, b in consumers.values()]
            if best is not None:
                applying.append(best[1])
            if any(b.handler.reads_body_with(b.conf) for b in applying):
                reads_body = True
            chosen.append((-self._priority[name], name, slot))
        if not chosen:
            return None
        chosen.sort(key=lambda t: (t[0], t[1]))
        return Plan([slot for _, _, slot in chosen], body_filter, reads_body)
