"""rate-limiting access behaviour: windows, headers, limit_by, errors (cases from Kong's
spec/03-plugins/23-rate-limiting/04-access_spec.lua), run through the real local policy."""

from __future__ import annotations

import calendar
from typing import Any

import pytest
from plugin_support import index, needs_redis, new_id, plugin_row, run_access

from servegate.plugins import Context, Exit, rate_limiting
from servegate.plugins.rate_limiting import RateLimitConf, identifier
from servegate.plugins.ratelimit.windows import reset_seconds, window_start
from servegate.plugins.runner import Plan

T0 = calendar.timegm((2024, 2, 29, 13, 45, 30))  # a leap day, mid-minute


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The plugin's clock, pinned so that windows do not roll over mid-test."""
    now = [float(T0)]
    monkeypatch.setattr(rate_limiting, "_clock", lambda: now[0])
    return now


def test_windows_are_calendar_aligned_utc() -> None:
    assert window_start("second", T0) == T0
    assert window_start("minute", T0) == T0 - 30
    assert window_start("hour", T0) == calendar.timegm((2024, 2, 29, 13, 0, 0))
    assert window_start("day", T0) == calendar.timegm((2024, 2, 29, 0, 0, 0))
    assert window_start("month", T0) == calendar.timegm((2024, 2, 1, 0, 0, 0))
    assert window_start("year", T0) == calendar.timegm((2024, 1, 1, 0, 0, 0))
    assert window_start("month", calendar.timegm((2025, 1, 1, 0, 0, 0))) == calendar.timegm((2025, 1, 1, 0, 0, 0))
    assert reset_seconds("minute", T0, T0 - 30) == 30
    assert reset_seconds("second", T0, T0) == 1
    # Kong counts a month as 30 days: late in a 31-day month the reset floors at 1
    late = calendar.timegm((2024, 1, 31, 12, 0, 0))
    assert reset_seconds("month", late, window_start("month", late)) == 1


def plan_for(config: dict[str, Any], **scope: Any) -> Plan:
    route, service = scope.pop("route", new_id()), scope.pop("service", new_id())
    p = index([plugin_row("rate-limiting", config, route=route, **scope)]).plan(route, service)
    assert p is not None
    return p


def ctx(ip: str = "127.0.0.1", **kw: Any) -> Context:
    return Context("GET", kw.pop("path", "/test"), "", kw.pop("headers", {}), ip, **kw)


async def call(plan: Plan, c: Context | None = None) -> tuple[int, dict[str, str]]:
    c = c or ctx()
    e = await run_access(plan, c)
    headers = dict(c.response_headers or [])
    return (e.status if e else 200), headers


async def test_minute_limit_headers_sequence(clock: list[float]) -> None:
    plan = plan_for({"minute": 6})
    seen = [await call(plan) for _ in range(7)]
    assert [s for s, _ in seen] == [200] * 6 + [429]
    assert [h["X-RateLimit-Limit-Minute"] for _, h in seen] == ["6"] * 7
    assert [h["X-RateLimit-Remaining-Minute"] for _, h in seen] == ["5", "4", "3", "2", "1", "0", "0"]
    assert [h["RateLimit-Limit"] for _, h in seen] == ["6"] * 7
    assert [h["RateLimit-Remaining"] for _, h in seen] == ["5", "4", "3", "2", "1", "0", "0"]
    assert all(h["RateLimit-Reset"] == "30" for _, h in seen)
    assert "Retry-After" not in seen[5][1] and seen[6][1]["Retry-After"] == "30"


async def test_429_body_message_and_counter_not_incremented(clock: list[float]) -> None:
    plan = plan_for({"minute": 1, "hour": 5})
    assert (await call(plan))[0] == 200
    c = ctx()
    e = await run_access(plan, c)
    assert e is not None and (e.status, e.message) == (429, "API rate limit exceeded")
    h = dict(c.response_headers or [])
    # only the blocking window is decremented for the rejected request
    assert h["X-RateLimit-Remaining-Minute"] == "0" and h["X-RateLimit-Remaining-Hour"] == "4"
    await call(plan)  # rejected again
    clock[0] += 60  # next minute: the rejected requests did not count against the hour
    status, h = await call(plan)
    assert status == 200 and h["X-RateLimit-Remaining-Hour"] == "3"


async def test_multiple_limits_lowest_remaining_wins(clock: list[float]) -> None:
    plan = plan_for({"minute": 6, "hour": 99999})
    status, h = await call(plan)
    assert status == 200
    assert h["X-RateLimit-Limit-Hour"] == "99999" and h["X-RateLimit-Remaining-Hour"] == "99998"
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == ("6", "5", "30")


async def test_tie_picks_the_longer_window(clock: list[float]) -> None:
    _, h = await call(plan_for({"minute": 5, "hour": 5}))
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"]) == ("5", "4")
    assert h["RateLimit-Reset"] == str(3600 - (45 * 60 + 30))


async def test_second_window_expires(clock: list[float]) -> None:
    plan = plan_for({"second": 1}, )
    status, h = await call(plan)
    assert status == 200 and h["X-RateLimit-Remaining-Second"] == "0" and h["RateLimit-Reset"] == "1"
    assert (await call(plan))[0] == 429
    clock[0] += 1
    assert (await call(plan))[0] == 200


async def test_hide_client_headers(clock: list[float]) -> None:
    plan = plan_for({"minute": 1, "hide_client_headers": True})
    assert await call(plan) == (200, {})
    assert await call(plan) == (429, {})


async def test_custom_error_code_and_message(clock: list[float]) -> None:
    plan = plan_for({"minute": 1, "error_code": 404, "error_message": "Fake Not Found"})
    await call(plan)
    e = await run_access(plan, ctx())
    assert e is not None and (e.status, e.message) == (404, "Fake Not Found")


async def test_float_limits_render_like_kong(clock: list[float]) -> None:
    _, h = await call(plan_for({"minute": 2.5}))
    assert h["X-RateLimit-Limit-Minute"] == "2.5" and h["X-RateLimit-Remaining-Minute"] == "1.5"


@pytest.mark.parametrize(("limit_by", "extra"), [
    ("ip", {}), ("header", {"header_name": "X-App"}), ("path", {"path": "/test"}), ("service", {}),
    ("consumer", {}), ("credential", {}),
])
async def test_limit_by_separates_counters(clock: list[float], limit_by: str, extra: dict[str, Any]) -> None:
    plan = plan_for({"minute": 1, "limit_by": limit_by, **extra})

    def who(i: int) -> Context:
        c = ctx(f"10.0.0.{i}", headers={"x-app": f"v{i}"}, service={"id": f"service-{i}"})
        c.consumer = {"id": f"consumer-{i}"}
        c.credential = {"id": f"cred-{i}"}
        return c

    assert (await call(plan, who(1)))[0] == 200
    assert (await call(plan, who(2)))[0] == (429 if limit_by == "path" else 200)
    assert (await call(plan, who(1)))[0] == 429


def test_identifier_fallbacks() -> None:
    def conf(limit_by: str, **extra: Any) -> RateLimitConf:
        return RateLimitConf({"config": {"minute": 1, "limit_by": limit_by, **extra}})

    c = ctx("1.2.3.4", headers={"x-app": "v2"}, service={"id": "svc"}, path="/other")
    assert identifier(c, conf("consumer")) == "1.2.3.4"
    assert identifier(c, conf("credential")) == "1.2.3.4"
    assert identifier(c, conf("header", header_name="X-Missing")) == "1.2.3.4"
    assert identifier(c, conf("header", header_name="X-App")) == "v2"
    assert identifier(c, conf("path", path="/test")) == "1.2.3.4"
    assert identifier(c, conf("path", path="/other")) == "/other"
    assert identifier(c, conf("service")) == "svc"
    c.credential = {"id": "cred"}
    assert identifier(c, conf("consumer")) == "cred"
    c.consumer = {"id": "cons"}
    assert identifier(c, conf("consumer")) == "cons"
    assert identifier(c, conf("credential")) == "cred"
    assert identifier(c, conf("ip")) == "1.2.3.4"


async def test_scope_ids_separate_counters(clock: list[float]) -> None:
    route = new_id()
    p1 = plan_for({"minute": 1}, route=route)
    p2 = plan_for({"minute": 1})
    assert (await call(p1))[0] == 200 and (await call(p2))[0] == 200
    assert (await call(p1))[0] == 429


async def test_concurrent_requests_admit_exactly_limit(clock: list[float]) -> None:
    import asyncio

    plan = plan_for({"minute": 37})
    results = await asyncio.gather(*(call(plan) for _ in range(200)))
    assert sum(1 for s, _ in results if s == 200) == 37


@pytest.mark.parametrize("policy", ["redis", "cluster"])
async def test_fault_tolerant(clock: list[float], policy: str, counters_prefix: str) -> None:
    from servegate.plugins.ratelimit import configure

    # nothing listens on port 1: redis fails to connect; cluster fails to reach PostgreSQL
    configure(prefix=counters_prefix, pg_dsn="postgresql://postgres@127.0.0.1:1/none")
    cfg = {"minute": 6, "policy": policy, "redis": {"host": "127.0.0.1", "port": 1, "timeout": 500}}
    assert await call(plan_for({**cfg, "fault_tolerant": True})) == (200, {})
    c = ctx()
    e = await run_access(plan_for({**cfg, "fault_tolerant": False}), c)
    assert isinstance(e, Exit) and (e.status, e.message) == (500, "An unexpected error occurred")
    assert c.response_headers is None


async def test_cluster_without_postgres_uses_node_counters(clock: list[float]) -> None:
    plan = plan_for({"minute": 2, "policy": "cluster"})
    assert [(await call(plan))[0] for _ in range(3)] == [200, 200, 429]


async def _three_requests(plan: Plan) -> list[tuple[int, str]]:
    out = []
    for _ in range(3):
        status, h = await call(plan)
        out.append((status, h["X-RateLimit-Remaining-Minute"]))
    return out


@needs_redis
async def test_redis_policy_through_the_plugin(clock: list[float]) -> None:
    import redis

    from servegate.plugins.ratelimit.redis_policy import close_clients

    route = new_id()
    plan = plan_for({"minute": 2, "policy": "redis", "redis": {"host": "127.0.0.1", "port": 6379}}, route=route)
    try:
        assert await _three_requests(plan) == [(200, "1"), (200, "0"), (429, "0")]
    finally:
        await close_clients()
        r = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(r.scan_iter(f"ratelimit:{route}:*"))
        assert len(keys) == 1
        r.delete(*keys)


async def test_cluster_policy_through_the_plugin(clock: list[float], metrics_db: str,
                                                 counters_prefix: str) -> None:
    from servegate.plugins.ratelimit import configure
    from servegate.plugins.ratelimit.cluster import close_pools

    configure(prefix=counters_prefix, pg_dsn=metrics_db)
    try:
        assert await _three_requests(plan_for({"minute": 2, "policy": "cluster"})) == [
            (200, "1"), (200, "0"), (429, "0")]
    finally:
        await close_pools()
