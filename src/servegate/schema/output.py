"""Rows as the Admin API returns them: every declared field, unset ones as null."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from servegate.schema.fields import Entity
from servegate.schema.plugin_config import echo_config
from servegate.schema.plugins import get_plugin


def to_output(entity: Entity, row: Mapping[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """Kong's Admin JSON for a row.

    `ttl` appears only for ttl entities and only when the row has one: either `ttl` (remaining
    seconds, as the store returns it) or `expires_at` (epoch seconds) from which it is computed.
    """
    out: dict[str, Any] = {}
    for name, field in entity.fields:
        value = row.get(name)
        if field.type in ("array", "set") and isinstance(value, Mapping) and not value:
            value = []  # an empty table is an empty array on output
        out[name] = value
    if entity.subschema_key == "name" and isinstance(out.get("name"), str):
        plugin = get_plugin(out["name"])
        if plugin is not None:
            out["config"] = echo_config(plugin, out.get("config"))
    if entity.ttl:
        ttl = row.get("ttl")
        expires_at = row.get("expires_at")
        if ttl is None and expires_at is not None:
            current = time.time() if now is None else now
            ttl = max(0, int(expires_at - current))
        if ttl is not None:
            out["ttl"] = int(ttl)
    return out
