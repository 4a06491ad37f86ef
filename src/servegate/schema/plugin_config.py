"""Deprecated plugin config aliases (rate-limiting's `redis_host` for `redis.host`, ...).

On input an alias is validated, removed, and its value written to the new place unless that
place already holds a value; on output the aliases are echoed from their new place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servegate.schema.plugins import PluginSchema


def _get_path(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = config
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _merge_missing(target: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Deep-merge `new` into `target`; values already present (non-null) in target win."""
    for k, v in new.items():
        cur = target.get(k)
        if isinstance(v, Mapping) and isinstance(cur, Mapping):
            merged = dict(cur)
            _merge_missing(merged, v)
            target[k] = merged
        elif isinstance(v, Mapping) and cur is None:
            target[k] = dict(v)
        elif cur is None:
            target[k] = v


def expand_config_shorthands(plugin: PluginSchema, config: Any) -> tuple[Any, dict[str, Any]]:
    """(config with aliases resolved, {alias: error})."""
    if not plugin.config_shorthands or not isinstance(config, Mapping):
        return config, {}
    from servegate.schema.validate import validate_field

    out = dict(config)
    errors: dict[str, Any] = {}
    for name, (field, expand) in plugin.config_shorthands.items():
        if name not in out:
            continue
        value = out.pop(name)
        if value is None:
            continue
        err = validate_field(field, value)
        if err is not None:
            errors[name] = err
            continue
        path = plugin.config_echo.get(name)
        current = _get_path(out, path) if path else None
        if current is not None and current != value:
            errors[name] = (
                f"both deprecated and new field are used but their values mismatch: "
                f"{name} = {value} vs {'.'.join(path or ())} = {current}"
            )
            continue
        _merge_missing(out, expand(value))
    return out, errors


def echo_config(plugin: PluginSchema, config: Any) -> Any:
    """Config as returned by the Admin API: the aliases mirror their new place."""
    if not plugin.config_echo or not isinstance(config, Mapping):
        return config
    out = dict(config)
    for name, path in plugin.config_echo.items():
        out[name] = _get_path(config, path)
    return out
