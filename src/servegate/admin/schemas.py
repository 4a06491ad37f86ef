"""Schema endpoints: /schemas/{entity}, /schemas/plugins/{name}, /plugins/schema/{name}, */validate."""

from __future__ import annotations

from typing import Any

from servegate.admin.context import Ctx
from servegate.admin.http import Response
from servegate.admin.lookup import entity_named
from servegate.admin.responses import json_reply, message_reply
from servegate.admin.routing import PathTable, printable
from servegate.schema import errors
from servegate.schema.fields import NO_DEFAULT, Entity, Field
from servegate.schema.plugins import get_plugin
from servegate.schema.validate import process_input

# Field attributes rendered as-is when set (Kong's schema JSON uses the same names).
_FLAGS = ("required", "unique", "auto", "immutable", "timestamp")
_VALUES = ("len_min", "len_eq", "len_max", "reference", "on_delete", "one_of", "between", "gt", "starts_with")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def field_json(field: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"type": field.type}
    if field.uuid:
        out["uuid"] = True
    for flag in _FLAGS:
        if getattr(field, flag):
            out[flag] = True
    for name in _VALUES:
        value = getattr(field, name)
        if value is not None:
            out[name] = _jsonable(value)
    if field.default is not NO_DEFAULT and not callable(field.default):
        out["default"] = _jsonable(field.default)
    if field.elements is not None:
        out["elements"] = field_json(field.elements)
    if field.keys is not None:
        out["keys"] = field_json(field.keys)
    if field.values is not None:
        out["values"] = field_json(field.values)
    if field.fields is not None:
        out["fields"] = [{name: field_json(f)} for name, f in field.fields]
    if field.description:  # Kong 3.x schemas carry a field's description too
        out["description"] = field.description
    return out


def entity_json(entity: Entity) -> dict[str, Any]:
    return {
        "name": entity.name,
        "primary_key": list(entity.primary_key),
        "endpoint_key": entity.endpoint_key,
        "ttl": entity.ttl or None,
        "fields": [{name: field_json(f)} for name, f in entity.fields],
        # Entity checks are code, not declarative data; none are rendered.
        "entity_checks": [],
    }


def plugin_json(name: str) -> dict[str, Any] | None:
    plugin = get_plugin(name)
    if plugin is None:
        return None
    fields: list[dict[str, Any]] = []
    if plugin.no_consumer:
        fields.append({"consumer": {"type": "foreign", "reference": "consumers", "eq": None}})
    protocols = {
        "type": "set",
        "required": True,
        "default": list(plugin.protocols_default),
        "elements": {"type": "string", "one_of": list(plugin.protocols_allowed)},
    }
    fields.append({"protocols": protocols})
    fields.append({"config": {**field_json(plugin.config), "required": True}})
    return {"name": name, "fields": fields, "entity_checks": []}


async def get_entity_schema(ctx: Ctx) -> Response:
    name = ctx.params["name"]
    entity = entity_named(name)
    if entity is None:
        return message_reply(404, f"No entity named '{printable(name)}'")
    return json_reply(200, entity_json(entity))


async def get_plugin_schema(ctx: Ctx) -> Response:
    name = ctx.params["name"]
    body = plugin_json(name)
    if body is None:
        return message_reply(404, f"No plugin named '{printable(name)}'")
    return json_reply(200, body)


async def get_plugin_config_schema(ctx: Ctx) -> Response:
    name = ctx.params["name"]
    plugin = get_plugin(name)
    if plugin is None:
        return message_reply(404, f"No plugin named '{printable(name)}'")
    return json_reply(200, {**field_json(plugin.config), "required": True})


def _validate(ctx: Ctx, entity: Entity) -> Response:
    plugin_name = ctx.body_plugin_name() if entity.subschema_key == "name" else None
    args = ctx.body_args(entity, plugin_name=plugin_name)
    try:
        process_input(entity, args, op="insert")
    except errors.DaoError as e:
        if e.code != errors.SCHEMA_VIOLATION:
            raise
        return json_reply(400, e.to_json())
    return message_reply(200, "schema validation successful")


async def validate_entity(ctx: Ctx) -> Response:
    name = ctx.params["db_entity_name"]
    entity = entity_named(name)
    if entity is None:
        return message_reply(404, f"No entity named '{printable(name)}'")
    return _validate(ctx, entity)


async def validate_plugin(ctx: Ctx) -> Response:
    entity = entity_named("plugins")
    assert entity is not None
    return _validate(ctx, entity)


def add_schema_endpoints(table: PathTable) -> None:
    table.add("/schemas/{name}", "GET", get_entity_schema)
    table.add("/schemas/{db_entity_name}/validate", "POST", validate_entity)
    table.add("/schemas/plugins/{name}", "GET", get_plugin_schema)
    table.add("/schemas/plugins/validate", "POST", validate_plugin)
    table.add("/plugins/schema/{name}", "GET", get_plugin_config_schema)
