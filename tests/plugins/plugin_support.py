"""Helpers for plugin tests: plugin rows via the schema layer, running the access phase."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from servegate.plugins import Context, Exit, load_all
from servegate.plugins.runner import Plan, PluginIndex

load_all()


def plugin_row(name: str, config: Mapping[str, Any] | None = None, *, route: str | None = None,
               service: str | None = None, consumer: str | None = None, enabled: bool = True,
               protocols: list[str] | None = None) -> dict[str, Any]:
    """A plugin row in the store's shape, config validated and defaulted by the schema layer."""
    from servegate.schema.entities import PLUGINS
    from servegate.schema.validate import process_input

    body: dict[str, Any] = {"name": name, "config": dict(config or {})}
    row = process_input(PLUGINS, body, op="insert")
    row.update(
        route={"id": route} if route else None,
        service={"id": service} if service else None,
        consumer={"id": consumer} if consumer else None,
        enabled=enabled,
    )
    if protocols is not None:
        row["protocols"] = protocols
    return row


def new_id() -> str:
    return str(uuid.uuid4())


async def run_access(plan: Plan | None, ctx: Context) -> Exit | None:
    """Run the access phase like the proxy does; returns the Exit a plugin raised, if any."""
    if plan is None:
        return None
    try:
        pending = plan.access(ctx)
        if pending is not None:
            await pending
    except Exit as e:
        return e
    return None


def index(rows: list[dict[str, Any]], consumers: list[dict[str, Any]] | None = None,
          credentials: list[dict[str, Any]] | None = None, **kw: Any) -> PluginIndex:
    # Consumers and credentials are cached entities: key-auth finds them through the lookup caches, here over
    # these rows held in memory (MemorySource), as a snapshot built from given rows does.
    indexes = {
        "consumers": {"id": {c["id"]: c for c in consumers or []},
                      "username": {c["username"]: c for c in consumers or [] if c.get("username")}},
        "keyauth_credentials": {"key": {c["key"]: c for c in credentials or []}},
    }
    return PluginIndex(rows, indexes=indexes, **kw)


def redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not redis_up(), reason="Redis not reachable at 127.0.0.1:6379")
