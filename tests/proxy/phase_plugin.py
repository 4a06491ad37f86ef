"""Test plugins for the response phases and the access-phase PDK (loaded by run_proxy.py through "imports").

test-headers: header_filter (sync or async) and log only, no body_filter.
test-phases: header_filter, body_filter (upper / drop / pass, an end-of-stream tail) and log.
test-pdk: access-phase upstream choice and body reading, steered by request headers.
Each log hook appends one JSON line to the `log_file` of its config.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from servegate.plugins import register
from servegate.plugins.base import Context, Plugin
from servegate.schema.fields import Field


def _s(default: str | None = None) -> Field:
    return Field(type="string", default=default)


def _record(*fields: tuple[str, Field]) -> Field:
    return Field(type="record", fields=fields)


def _write_log(ctx: Context, conf: Any, extra: dict[str, Any]) -> None:
    if conf.get("log_file"):
        with open(conf["log_file"], "a") as f:
            f.write(json.dumps({"status": ctx.response_status, "request_size": ctx.request_size,
                                "response_size": ctx.response_size, "latencies": ctx.latencies, **extra}) + "\n")


def _set_headers(ctx: Context, conf: Any) -> None:
    h = ctx.downstream_headers
    h["X-Phase"] = "set-" + str(ctx.response_status)
    if conf.get("delete"):
        h.pop(conf["delete"], None)
    h.add("X-Multi", "a")
    h.add("X-Multi", "b")
    h["Content-Length"] = "1"  # framing is the proxy's: ignored


class Headers(Plugin):
    name = "test-headers"
    PRIORITY = 900
    VERSION = "0.0.0"
    config_schema = _record(("mode", _s("sync")), ("delete", _s()), ("log_file", _s()))

    def header_filter(self, ctx: Context, conf: Any) -> Any:  # type: ignore[override]
        if conf.get("mode") == "async":
            return self._later(ctx, conf)
        _set_headers(ctx, conf)
        return None

    async def _later(self, ctx: Context, conf: Any) -> None:
        await asyncio.sleep(0.05)
        _set_headers(ctx, conf)

    def log(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        _write_log(ctx, conf, {})


class Phases(Plugin):
    name = "test-phases"
    PRIORITY = 800
    VERSION = "0.0.0"
    config_schema = _record(("body", _s("upper")), ("tail", _s()), ("log_file", _s()))

    def header_filter(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        ctx.downstream_headers["X-Body-Filter"] = conf.get("body")

    def body_filter(self, ctx: Context, conf: Any, chunk: bytes, eof: bool) -> bytes | None:  # type: ignore[override]
        st = ctx.shared = ctx.shared or {"chunks": 0, "eof": 0, "seen": 0}
        if eof:
            st["eof"] += 1
            return (conf.get("tail") or "").encode()
        st["chunks"] += 1
        st["seen"] += len(chunk)
        mode = conf.get("body")
        if mode == "upper":
            return chunk.upper()
        if mode == "drop":
            return b""
        return None

    def log(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        _write_log(ctx, conf, {"shared": ctx.shared})


class Pdk(Plugin):
    name = "test-pdk"
    PRIORITY = 700
    VERSION = "0.0.0"
    config_schema = _record(("log_file", _s()))

    def access(self, ctx: Context, conf: Any) -> Any:  # type: ignore[override]
        target = ctx.header("x-pdk-target")
        if target:
            host, port = target.rsplit(":", 1)
            ctx.set_target(host, int(port))
        if ctx.header("x-pdk-path"):
            ctx.set_path(ctx.header("x-pdk-path") or "/")
        if ctx.header("x-pdk-scheme"):
            ctx.set_scheme(ctx.header("x-pdk-scheme") or "http")
        if ctx.header("x-pdk-upstream"):
            err = ctx.set_upstream(ctx.header("x-pdk-upstream") or "")
            ctx.set_upstream_header("X-Upstream-Error", err or "none")
        if ctx.header("x-pdk-read-ms"):
            ctx.set_timeouts(1000, 1000, int(ctx.header("x-pdk-read-ms") or 1))
        if ctx.header("x-pdk-retries"):
            ctx.set_retries(int(ctx.header("x-pdk-retries") or 0))
        if ctx.header("x-pdk-respond"):
            ctx.respond(404, {"error": {"message": ctx.header("x-pdk-respond"), "code": "model_not_found"}},
                        headers={"X-Answered-By": "plugin"})
        if ctx.header("x-pdk-json"):
            return self._json(ctx)
        return None

    async def _json(self, ctx: Context) -> None:
        first = await ctx.json_body()
        again = await ctx.json_body()
        model = first.get("model") if isinstance(first, dict) else None
        ctx.set_upstream_header("X-Model", str(model))
        ctx.set_upstream_header("X-Parsed-Once", "yes" if first is again else "no")


register(Headers)
register(Phases)
register(Pdk)
