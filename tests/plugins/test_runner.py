"""Plugin scope precedence, priority order and phase execution (PluginIndex / Plan)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from typing import Any

import pytest
from plugin_support import new_id, run_access

from servegate.plugins import Context, Plugin
from servegate.plugins.runner import PluginIndex
from servegate.schema.fields import Field

ROUTE, SERVICE, CONSUMER = new_id(), new_id(), new_id()
ALICE = {"id": CONSUMER, "username": "alice"}


class Probe(Plugin):
    """Records which instance ran (its config "tag") in ctx.shared["ran"]."""

    name = "probe"
    PRIORITY = 500
    VERSION = "1"
    config_schema = Field(type="record", fields=())

    def access(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        ctx.shared = ctx.shared or {}
        ctx.shared.setdefault("ran", []).append((self.name, conf["tag"]))


class Auth(Probe):
    """Sets the consumer, like an auth plugin (higher priority than Probe)."""

    name = "auth"
    PRIORITY = 1000

    def access(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        super().access(ctx, conf)
        if conf.get("login"):
            ctx.consumer = ALICE


class Late(Probe):
    """Async access hook plus header_filter and log hooks."""

    name = "late"
    PRIORITY = 10

    def access(self, ctx: Context, conf: Any) -> Awaitable[None]:  # type: ignore[override]
        async def run() -> None:
            Probe.access(self, ctx, conf)

        return run()

    def header_filter(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        ctx.downstream_headers["x-late"] = conf["tag"]

    def log(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        ctx.shared = ctx.shared or {}
        ctx.shared["logged"] = conf["tag"]


HANDLERS: dict[str, Plugin] = {"probe": Probe(), "auth": Auth(), "late": Late()}


def row(name: str, tag: str, *, route: bool = False, service: bool = False, consumer: bool = False,
        enabled: bool = True, protocols: list[str] | None = None, **conf: Any) -> dict[str, Any]:
    return {
        "id": new_id(), "name": name, "enabled": enabled, "protocols": protocols or ["http", "https"],
        "route": {"id": ROUTE} if route else None, "service": {"id": SERVICE} if service else None,
        "consumer": {"id": CONSUMER} if consumer else None, "config": {"tag": tag, **conf},
    }


def make(rows: list[dict[str, Any]]) -> PluginIndex:
    return PluginIndex(rows, indexes={"consumers": {"id": {CONSUMER: ALICE}}}, handlers=HANDLERS)


def ctx(scheme: str = "http") -> Context:
    return Context("GET", "/", "", {}, "127.0.0.1", scheme=scheme)


# Kong's precedence, best first: (route, service, consumer)
ORDER = [
    (True, True, True), (True, False, True), (False, True, True), (True, True, False),
    (False, False, True), (True, False, False), (False, True, False), (False, False, False),
]


def tag(scope: tuple[bool, bool, bool]) -> str:
    return "".join(n if on else "-" for n, on in zip("RSC", scope, strict=True))


@pytest.mark.parametrize("drop", range(len(ORDER)))
async def test_precedence_best_remaining_scope_wins(drop: int) -> None:
    """With the best `drop` scopes removed, the next one in Kong's order is chosen."""
    present = ORDER[drop:]
    rows = [row("probe", tag(s), route=s[0], service=s[1], consumer=s[2]) for s in present]
    rows.append(row("auth", "auth", login=True))
    c = ctx()
    assert await run_access(make(rows).plan(ROUTE, SERVICE), c) is None
    assert c.shared is not None
    assert c.shared["ran"] == [("auth", "auth"), ("probe", tag(present[0]))]


@pytest.mark.parametrize("scope", list(itertools.product([True, False], repeat=2)))
async def test_consumer_scoped_ignored_without_consumer(scope: tuple[bool, bool]) -> None:
    rows = [row("probe", "consumer", route=scope[0], service=scope[1], consumer=True),
            row("probe", "global")]
    c = ctx()
    await run_access(make(rows).plan(ROUTE, SERVICE), c)
    assert c.shared == {"ran": [("probe", "global")]}
    c = ctx()
    c.consumer = ALICE
    await run_access(make(rows).plan(ROUTE, SERVICE), c)
    assert c.shared == {"ran": [("probe", "consumer")]}


async def test_consumer_only_plugin_runs_after_auth_sets_consumer() -> None:
    idx = make([row("auth", "a", login=True), row("probe", "mine", consumer=True)])
    c = ctx()
    await run_access(idx.plan(ROUTE, SERVICE), c)
    assert c.shared == {"ran": [("auth", "a"), ("probe", "mine")]}
    idx = make([row("auth", "a", login=False), row("probe", "mine", consumer=True)])
    c = ctx()
    await run_access(idx.plan(ROUTE, SERVICE), c)
    assert c.shared == {"ran": [("auth", "a")]}


async def test_other_route_or_service_scopes_do_not_apply() -> None:
    rows = [row("probe", "other", route=True)]
    assert make(rows).plan(new_id(), SERVICE) is None
    rows = [row("probe", "svc", service=True)]
    assert make(rows).plan(ROUTE, new_id()) is None
    assert make(rows).plan(ROUTE, SERVICE) is not None


async def test_disabled_and_unknown_instances_are_ignored() -> None:
    rows = [row("probe", "off", route=True, enabled=False), row("nope", "x"), row("probe", "global")]
    c = ctx()
    await run_access(make(rows).plan(ROUTE, SERVICE), c)
    assert c.shared == {"ran": [("probe", "global")]}
    assert make([row("probe", "off", enabled=False)]).plan(ROUTE, SERVICE) is None


async def test_plan_is_cached_and_none_when_nothing_applies() -> None:
    idx = make([row("probe", "g")])
    assert idx.plan(ROUTE, SERVICE) is idx.plan(ROUTE, SERVICE)
    assert make([]).plan(ROUTE, SERVICE) is None


async def test_priority_order_sync_and_async_and_later_phases() -> None:
    idx = make([row("late", "L"), row("probe", "P"), row("auth", "A")])
    plan = idx.plan(ROUTE, SERVICE)
    assert plan is not None
    c = ctx()
    pending = plan.access(c)
    # auth and probe ran inline; late returned an awaitable
    assert c.shared == {"ran": [("auth", "A"), ("probe", "P")]}
    assert pending is not None
    await pending
    assert c.shared["ran"][-1] == ("late", "L")
    headers: dict[str, str] = {}
    assert plan.header_filter(c, headers, 200) is None
    assert headers == {"x-late": "L"} and c.response_status == 200
    assert plan.log(c) is None
    assert c.shared["logged"] == "L"


async def test_protocols_filter() -> None:
    idx = make([row("probe", "https-only", protocols=["https"])])
    plan = idx.plan(ROUTE, SERVICE)
    c = ctx("http")
    await run_access(plan, c)
    assert c.shared is None
    c = ctx("https")
    await run_access(plan, c)
    assert c.shared == {"ran": [("probe", "https-only")]}


async def test_exit_stops_the_phase() -> None:
    class Stop(Probe):
        name = "stop"
        PRIORITY = 700

        def access(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
            ctx.exit(403)

    idx = PluginIndex([row("stop", "s"), row("probe", "p")], handlers={**HANDLERS, "stop": Stop()})
    c = ctx()
    e = await run_access(idx.plan(ROUTE, SERVICE), c)
    assert e is not None and e.status == 403 and e.message == "Forbidden"
    assert c.shared is None


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_plugins_after_an_exit_still_log(asynchronous: bool) -> None:
    """Kong's collecting iterator: a plugin answering in access stops the later access hooks, not the later
    plugins' log phase (prometheus counts key-auth's 401s)."""
    class Stop(Probe):
        name = "stop"
        PRIORITY = 700

        def access(self, ctx: Context, conf: Any) -> Awaitable[None] | None:  # type: ignore[override]
            if not asynchronous:
                ctx.exit(401)

            async def later() -> None:
                ctx.exit(401)

            return later()

    idx = PluginIndex([row("stop", "s"), row("late", "L"), row("probe", "p")], handlers={**HANDLERS, "stop": Stop()})
    plan = idx.plan(ROUTE, SERVICE)
    assert plan is not None
    c = ctx()
    e = await run_access(plan, c)
    assert e is not None and e.status == 401
    assert c.shared is None  # no access hook after the exit ran
    assert [b.handler.name for b in c.collected or ()] == ["late"]
    assert plan.log(c) is None and c.shared == {"logged": "L"}


class Upper(Probe):
    """A body_filter (sync): upper-cases each chunk, appends a tail at end of stream."""

    name = "upper"
    PRIORITY = 5

    def body_filter(self, ctx: Context, conf: Any, chunk: bytes, eof: bool) -> bytes | None:  # type: ignore[override]
        return b"<eof>" if eof else chunk.upper()


async def test_body_filters_only_in_plans_that_have_one() -> None:
    from servegate.plugins.runner import run_body_filters

    handlers = {**HANDLERS, "upper": Upper()}
    plain = PluginIndex([row("probe", "P"), row("late", "L")], handlers=handlers).plan(ROUTE, SERVICE)
    assert plain is not None and not plain.has_body_filter
    c = ctx()
    await run_access(plain, c)
    assert plain.body_filters(c) is None  # the proxy relays the body untouched
    plan = PluginIndex([row("probe", "P"), row("upper", "U")], handlers=handlers).plan(ROUTE, SERVICE)
    assert plan is not None and plan.has_body_filter
    c = ctx()
    await run_access(plan, c)
    filters = plan.body_filters(c)
    assert filters is not None and [b.handler.name for b in filters] == ["upper"]
    assert run_body_filters(c, filters, b"abc", False) == b"ABC"
    assert run_body_filters(c, filters, b"", True) == b"<eof>"
    # access-only plugins (key-auth, rate-limiting) collect nothing for the later phases
    only_access = PluginIndex([row("probe", "P")], handlers=handlers).plan(ROUTE, SERVICE)
    assert only_access is not None and not only_access.has_later and not only_access.has_body_filter
    c = ctx()
    await run_access(only_access, c)
    assert c.collected is None


class Reader(Probe):
    """Reads the body only when its instance says so (as prometheus with ai_metrics)."""

    name = "reader"
    reads_body = True

    def reads_body_with(self, conf: Any) -> bool:
        return bool(conf.get("read"))


def test_plan_reads_body_follows_the_instances_that_apply() -> None:
    """Plan.reads_body (the proxy waits for a small body before the access phase) is set by an applying
    instance whose plugin reads the body with its config, a consumer-scoped one included; not by others."""
    handlers = {**HANDLERS, "reader": Reader()}

    def plan(*rows: dict[str, Any]) -> Any:
        idx = PluginIndex(list(rows), indexes={"consumers": {"id": {CONSUMER: ALICE}}}, handlers=handlers)
        return idx.plan(ROUTE, SERVICE)

    assert plan(row("probe", "p")).reads_body is False
    assert plan(row("reader", "r", read=False), row("probe", "p")).reads_body is False
    assert plan(row("reader", "r", read=True)).reads_body is True
    assert plan(row("reader", "r", read=False), row("reader", "c", consumer=True, route=True,
                                                     read=True)).reads_body is True
