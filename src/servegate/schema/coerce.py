"""Typing form-encoded and query values per schema (Kong's `infer_value`).

Only form/multipart/query input is coerced; JSON bodies are validated as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servegate.schema.entities import ENTITIES
from servegate.schema.fields import Entity, Field
from servegate.schema.form import MAX_ARGS, FormError, TooManyArguments, decode_form, lua_tonumber
from servegate.schema.plugins import get_plugin

__all__ = [
    "MAX_ARGS",
    "FormError",
    "TooManyArguments",
    "coerce",
    "coerce_value",
    "decode_form",
    "lua_tonumber",
]


def coerce_value(value: Any, field: Field | None) -> Any:
    """One value typed for `field`; values that cannot be typed are left for validation to reject."""
    if value is None or value is False or field is None:
        return value
    if value == "":
        return None
    t = field.type
    if t in ("number", "integer"):
        if isinstance(value, str):
            n = lua_tonumber(value)
            return value if n is None else n
        return value
    if t == "boolean":
        if value == "true":
            return True
        if value == "false":
            return False
        return value
    if t in ("array", "set"):
        if not isinstance(value, list | Mapping):
            value = [value]
        if isinstance(value, list):
            out = list(value)
            for i, item in enumerate(out):
                if item is None:
                    break  # Lua's ipairs stops at the first hole
                out[i] = coerce_value(item, field.elements)
            return out
        return value
    if t == "foreign":
        ref = ENTITIES.get(field.reference or "")
        if isinstance(value, Mapping) and ref is not None:
            return _coerce_fields(dict(value), ref.field_map())
        return value
    if t == "map":
        if isinstance(value, Mapping):
            return {k: coerce_value(v, field.values) for k, v in value.items()}
        return value
    if t == "record" and field.fields is not None and isinstance(value, Mapping):
        return _coerce_fields(dict(value), field.record_fields())
    return value


def _coerce_fields(data: dict[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    for name, field in fields.items():
        if name in data:
            data[name] = coerce_value(data[name], field)
    return data


def coerce(entity: Entity, data: Mapping[str, Any], *, plugin_name: str | None = None) -> dict[str, Any]:
    """Form/query input typed per the entity's schema (plugins: `config` per the plugin's schema)."""
    from servegate.schema.validate import entity_fields

    out = dict(data)
    if entity.subschema_key == "name":
        name = plugin_name if plugin_name is not None else out.get("name")
        plugin = get_plugin(name) if isinstance(name, str) else None
        fields = entity_fields(entity, plugin)
        config = out.get("config")
        if plugin is not None and isinstance(config, Mapping):
            out["config"] = _coerce_fields(
                dict(config), {k: f for k, (f, _) in plugin.config_shorthands.items()}
            )
    else:
        fields = entity.field_map()
    out = _coerce_fields(out, fields)
    for shorthand in entity.shorthands:
        if shorthand in out:
            out[shorthand] = coerce_value(out[shorthand], Field("string"))
    if entity.ttl and isinstance(out.get("ttl"), str):
        n = lua_tonumber(out["ttl"])
        if n is not None:
            out["ttl"] = n
    return out
