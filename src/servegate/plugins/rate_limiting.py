"""rate-limiting: per-window request limits with local, cluster or redis counters (§6.2)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from time import time as _clock
from typing import Any

from servegate import KONG_VERSION
from servegate.plugins import register
from servegate.plugins.base import Context, Lookups, Plugin
from servegate.plugins.ratelimit import EMPTY_UUID, HitResult, Policy, Window, make_policy
from servegate.plugins.ratelimit.windows import EXPIRATION, PERIODS, TITLE, window_start
from servegate.schema import checks
from servegate.schema.fields import Field

log = logging.getLogger("servegate.plugins.rate-limiting")

SYNC_RATE_REALTIME = -1


def _periods_order(config: Any) -> str | None:
    """A larger window may not have a smaller limit; sync_rate only with redis."""
    if not isinstance(config, Mapping):
        return None
    for i, lower in enumerate(PERIODS):
        v1 = config.get(lower)
        if not isinstance(v1, (int, float)) or isinstance(v1, bool):
            continue
        for upper in PERIODS[i + 1:]:
            v2 = config.get(upper)
            if isinstance(v2, (int, float)) and not isinstance(v2, bool) and v2 < v1:
                return f"The limit for {upper}({float(v2):.1f}) cannot be lower than the limit for {lower}({float(v1):.1f})"
    sync_rate = config.get("sync_rate", SYNC_RATE_REALTIME)
    if config.get("policy") != "redis" and sync_rate != SYNC_RATE_REALTIME:
        return "sync_rate can only be used with the redis policy"
    if config.get("policy") == "redis" and isinstance(sync_rate, (int, float)):
        if sync_rate != SYNC_RATE_REALTIME and sync_rate < 0.02:
            return "sync_rate must be greater than 0.02, or -1 to disable"
    return None


# Kong's nested records are required by default: an absent `redis` is filled with its defaults.
REDIS = Field(
    type="record",
    required=True,
    fields=(
        ("host", Field(type="string", checks=(checks.host,))),
        ("port", Field(type="integer", default=6379, between=(0, 65535))),
        ("timeout", Field(type="integer", default=2000, between=(0, 2**31 - 2))),
        ("username", Field(type="string")),
        ("password", Field(type="string")),
        ("database", Field(type="integer", default=0)),
        ("ssl", Field(type="boolean", default=False)),
        ("ssl_verify", Field(type="boolean", default=False)),
        ("server_name", Field(type="string", checks=(checks.wildcard_host,))),
    ),
)

CONFIG = Field(
    type="record",
    required=True,
    fields=(
        ("second", Field(type="number", gt=0)),
        ("minute", Field(type="number", gt=0)),
        ("hour", Field(type="number", gt=0)),
        ("day", Field(type="number", gt=0)),
        ("month", Field(type="number", gt=0)),
        ("year", Field(type="number", gt=0)),
        ("limit_by", Field(type="string", default="consumer",
                           one_of=("consumer", "credential", "ip", "service", "header", "path"))),
        ("header_name", Field(type="string", checks=(checks.header_name,))),
        ("path", Field(type="string", starts_with="/", checks=(checks.service_path,))),
        ("policy", Field(type="string", default="local", one_of=("local", "cluster", "redis"))),
        ("fault_tolerant", Field(type="boolean", required=True, default=True)),
        ("redis", REDIS),
        ("hide_client_headers", Field(type="boolean", required=True, default=False)),
        ("error_code", Field(type="number", default=429, gt=0)),
        ("error_message", Field(type="string", default="API rate limit exceeded")),
        ("sync_rate", Field(type="number", required=True, default=-1)),
    ),
    # Kong's custom_validator (_periods_order) runs in _config_checks, to be reported as
    # `config: "<message>"` as Kong does, not under the record's @entity.
)

_AT_LEAST_ONE = ("at least one of these fields must be non-empty: "
                 + ", ".join(f"'config.{p}'" for p in PERIODS))


def _config(row: Mapping[str, Any]) -> Mapping[str, Any]:
    c = row.get("config")
    return c if isinstance(c, Mapping) else {}


def _config_checks(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """Kong's rate-limiting entity checks and config validator, merged into one result because
    the registry reports a dict result per top-level key (a second "config" would replace the first).

    * no window at all -> "@entity": [at least one of ...]
    * a larger window with a smaller limit, sync_rate misuse -> "config": "<message>"
    * policy redis without redis.host/port/timeout, limit_by header/path without
      header_name/path -> "config": {...: "required field missing"}
    """
    c = _config(row)
    out: dict[str, Any] = {}
    if not any(c.get(p) is not None for p in PERIODS):
        out["@entity"] = [_AT_LEAST_ONE]
    msg = _periods_order(c)
    if msg is not None:
        out["config"] = msg
        return out
    missing: dict[str, Any] = {}
    if c.get("policy") == "redis":
        raw = c.get("redis")
        r: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        redis_missing = {f: "required field missing" for f in ("host", "port", "timeout") if r.get(f) is None}
        if redis_missing:
            missing["redis"] = redis_missing
    field = {"header": "header_name", "path": "path"}.get(c.get("limit_by"))  # type: ignore[arg-type]
    if field is not None and c.get(field) is None:
        missing[field] = "required field missing"
    if missing:
        out["config"] = missing
    return out or None


def _shorthand(field: str, f: Field) -> tuple[Field, Any]:
    return f, lambda value: {"redis": {field: value}}


# Deprecated top-level aliases of config.redis.* (accepted on input, echoed on output).
SHORTHANDS: dict[str, tuple[Field, Any]] = {
    "redis_host": _shorthand("host", Field(type="string")),
    "redis_port": _shorthand("port", Field(type="integer")),
    "redis_password": _shorthand("password", Field(type="string")),
    "redis_username": _shorthand("username", Field(type="string")),
    "redis_ssl": _shorthand("ssl", Field(type="boolean")),
    "redis_ssl_verify": _shorthand("ssl_verify", Field(type="boolean")),
    "redis_server_name": _shorthand("server_name", Field(type="string")),
    "redis_timeout": _shorthand("timeout", Field(type="integer")),
    "redis_database": _shorthand("database", Field(type="integer")),
}
ECHO: dict[str, tuple[str, ...]] = {name: ("redis", name[len("redis_"):]) for name in SHORTHANDS}


def _num(v: float) -> str:
    if type(v) is int:
        return str(v)
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _limit(v: Any) -> float:
    """Integral limits as int, so usage arithmetic and header rendering stay integer."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


class RateLimitConf:
    __slots__ = ("limits", "headers", "limit_by", "header_name", "path", "policy", "fault_tolerant", "hide",
                 "error_code", "error_message", "route_id", "service_id", "_at", "_windows")

    def __init__(self, row: Mapping[str, Any]) -> None:
        c = _config(row)
        self.limits: tuple[tuple[str, float], ...] = tuple(
            (p, _limit(c[p])) for p in PERIODS if c.get(p) is not None)
        # Per window, built once: (X-RateLimit-Limit-<W>, its value), X-RateLimit-Remaining-<W>.
        self.headers: tuple[tuple[tuple[str, str], str], ...] = tuple(
            ((f"X-RateLimit-Limit-{TITLE[p]}", _num(v)), f"X-RateLimit-Remaining-{TITLE[p]}")
            for p, v in self.limits)
        self.limit_by: str = c.get("limit_by") or "consumer"
        hn = c.get("header_name")
        self.header_name: str | None = hn.lower() if isinstance(hn, str) else None
        self.path: str | None = c.get("path")
        redis = dict(c.get("redis") or {})
        for alias, (_, key) in ECHO.items():  # rows written with the deprecated aliases only
            if redis.get(key) is None and c.get(alias) is not None:
                redis[key] = c[alias]
        self.policy: Policy = make_policy(c.get("policy") or "local", redis)
        self.fault_tolerant = c.get("fault_tolerant", True) is not False
        self.hide = bool(c.get("hide_client_headers"))
        self.error_code = int(c.get("error_code") or 429)
        self.error_message: str | None = c.get("error_message")
        route, service = row.get("route"), row.get("service")
        self.route_id: str = (route or {}).get("id") or EMPTY_UUID
        self.service_id: str = (service or {}).get("id") or EMPTY_UUID
        self._at = -1
        self._windows: list[Window] = []

    def windows(self, now: int) -> list[Window]:
        """The windows containing `now`; the same list object for every request within one second, which
        lets policies reuse what they derived from it. Never mutated."""
        if now != self._at:
            self._windows = [(p, limit, window_start(p, now)) for p, limit in self.limits]
            self._at = now
        return self._windows


def identifier(ctx: Context, conf: RateLimitConf) -> str:
    by = conf.limit_by
    ident: str | None = None
    if by == "consumer":
        src = ctx.consumer or ctx.credential
        ident = src.get("id") if src is not None else None
    elif by == "credential":
        ident = ctx.credential.get("id") if ctx.credential is not None else None
    elif by == "service":
        ident = ctx.service.get("id") if ctx.service is not None else None
    elif by == "header":
        ident = ctx.header(conf.header_name) if conf.header_name else None
    elif by == "path":
        ident = ctx.path if ctx.path == conf.path else None
    return ident or ctx.client_ip


class RateLimiting(Plugin):
    name = "rate-limiting"
    PRIORITY = 910
    VERSION = KONG_VERSION
    config_schema = CONFIG
    protocols_default = ("grpc", "grpcs", "http", "https")
    entity_checks = (_config_checks,)
    config_shorthands = SHORTHANDS
    config_echo = ECHO

    def compile(self, row: Mapping[str, Any], lookups: Lookups) -> RateLimitConf:
        return RateLimitConf(row)

    def access(self, ctx: Context, conf: RateLimitConf) -> Awaitable[None] | None:  # type: ignore[override]
        if not conf.limits:
            return None
        now = int(_clock())
        windows = conf.windows(now)
        try:
            r = conf.policy.hit(conf.route_id, conf.service_id, identifier(ctx, conf), windows, now)
        except Exception as e:
            self._failed(ctx, conf, e)
            return None
        if isinstance(r, tuple):
            apply(ctx, conf, windows, r, now)
            return None
        return self._finish(ctx, conf, windows, r, now)

    async def _finish(self, ctx: Context, conf: RateLimitConf, windows: list[Window],
                      pending: Awaitable[HitResult], now: int) -> None:
        try:
            r = await pending
        except Exception as e:
            self._failed(ctx, conf, e)
            return
        apply(ctx, conf, windows, r, now)

    @staticmethod
    def _failed(ctx: Context, conf: RateLimitConf, err: Exception) -> None:
        if not conf.fault_tolerant:
            log.error("rate-limiting: failed to get usage: %s", err)
            ctx.exit(500)
        log.error("rate-limiting: failed to get usage (fault tolerant, request not limited): %s", err)


def apply(ctx: Context, conf: RateLimitConf, windows: list[Window], result: HitResult, now: int) -> None:
    """Set the client headers for the usage the policy saw and reject when a window is full."""
    usages, admitted = result
    stop: str | None = None
    if not admitted:
        for (period, limit, _), used in zip(windows, usages, strict=True):
            if limit - used <= 0:
                stop = period
    if not conf.hide:
        out = ctx.response_headers
        if out is None:
            out = ctx.response_headers = []
        # Any: a limit is an int unless configured fractional; ints keep their exact text form
        best_limit: Any = 0
        best_remaining: Any = 0
        best_window = 0
        reset = 1
        i = 0
        for period, limit, start in windows:
            remaining: Any = limit - usages[i]
            limit_header, remaining_name = conf.headers[i]
            i += 1
            if stop is None or stop == period:
                remaining -= 1
            if remaining < 0:
                remaining = 0
            length = EXPIRATION[period]
            if not best_window or remaining < best_remaining or (
                    remaining == best_remaining and length > best_window):
                best_limit, best_remaining, best_window = limit, remaining, length
                reset = max(1, length - (now - start))
            out.append(limit_header)
            out.append((remaining_name, _num(remaining)))
        reset_s = str(reset)
        out.append(("RateLimit-Limit", _num(best_limit)))
        out.append(("RateLimit-Remaining", _num(best_remaining)))
        out.append(("RateLimit-Reset", reset_s))
        if stop is not None:
            out.append(("Retry-After", reset_s))
    if stop is not None:
        ctx.exit(conf.error_code, conf.error_message)


register(RateLimiting)
