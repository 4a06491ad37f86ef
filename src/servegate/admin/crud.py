"""Generic entity handlers: one set of factories, instantiated per entity by `endpoints.py`.

Shapes (E = entity, F = foreign field of E pointing at P):
  collection      /E              /P/{P}/E           GET page, POST insert
  entity          /E/{E}                             GET, PUT upsert, PATCH, DELETE
  nested entity   /P/{P}/E/{E}                       the same, restricted to children of P
  foreign entity  /E/{E}/F                           the P row that E points at
"""

from __future__ import annotations

from typing import Any

from servegate.admin.context import Ctx
from servegate.admin.http import Response
from servegate.admin.lookup import Row, bindable, find, fk_id, is_uuid, resolve_foreign_keys
from servegate.admin.paging import list_body, next_link, page_args
from servegate.admin.responses import (
    bad_request,
    empty_reply,
    json_reply,
    method_not_allowed,
    not_found,
)
from servegate.admin.routing import Handler, invalid_utf8_message
from servegate.schema import errors
from servegate.schema.fields import Entity
from servegate.schema.output import to_output
from servegate.schema.validate import process_input

# ---------------------------------------------------------------------------------------------
# write primitives


def _output(entity: Entity, row: Row) -> dict[str, Any]:
    return to_output(entity, row)


def _process(entity: Entity, args: dict[str, Any], op: str, existing: Row | None = None) -> Row:
    row = process_input(entity, args, op=op, existing=existing)
    if row.get("id") is None:
        # `{"id": null}` in a body: Kong generates an id only when none is given, so the null stays and
        # the row has no primary key. Refused before the store sees it (it would answer a 500).
        raise errors.schema_violation({"id": "required field missing"})
    return row


def _plugin_name(entity: Entity, ctx: Ctx, existing: Row | None) -> str | None:
    # Only plugins pick their config subschema by `name` (routes pick theirs by protocols).
    if entity.subschema_key != "name":
        return None
    name = ctx.body_plugin_name()
    if name is None and existing is not None and isinstance(existing.get(entity.subschema_key), str):
        name = existing[entity.subschema_key]
    return name


async def insert(ctx: Ctx, entity: Entity, args: dict[str, Any]) -> Row:
    await resolve_foreign_keys(ctx.store, entity, args)
    row = _process(entity, args, "insert")
    saved = await ctx.store.insert(entity.name, row)
    await ctx.changed()
    return saved


async def upsert(ctx: Ctx, entity: Entity, key: str, args: dict[str, Any], existing: Row | None) -> Row:
    """PUT: create or replace the row named by key (id, or endpoint key which is then injected)."""
    if is_uuid(key):
        args["id"] = key
    else:
        if entity.endpoint_key is None:
            raise not_found()
        bad_utf8 = invalid_utf8_message(key)
        if bad_utf8 is not None:  # it would become the stored key: no row may hold such bytes
            raise errors.invalid_unique(entity.endpoint_key, bad_utf8)
        args[entity.endpoint_key] = key
        if existing is not None:
            args["id"] = existing["id"]
    await resolve_foreign_keys(ctx.store, entity, args)
    row = _process(entity, args, "upsert", existing)
    saved = await ctx.store.upsert(entity.name, row)
    await ctx.changed()
    return saved


async def update(ctx: Ctx, entity: Entity, existing: Row, args: dict[str, Any]) -> Row:
    await resolve_foreign_keys(ctx.store, entity, args)
    row = _process(entity, args, "update", existing)
    saved = await ctx.store.update(entity.name, row)
    await ctx.changed()
    return saved


async def delete(ctx: Ctx, entity: Entity, row: Row) -> None:
    if await ctx.store.delete(entity.name, {"id": row["id"]}):
        await ctx.changed()


async def _must_find(ctx: Ctx, entity: Entity, key: str) -> Row:
    row = await find(ctx.store, entity, key)
    if row is None:
        raise not_found()
    return row


def _child_of(child: Row, fk_field: str, parent: Row) -> Row:
    if fk_id(child, fk_field) != parent["id"]:
        raise not_found()
    return child


def _ok(entity: Entity, row: Row, status: int = 200) -> Response:
    return json_reply(status, _output(entity, row))


# ---------------------------------------------------------------------------------------------
# collections: /E and /P/{P}/E


def collection_get(entity: Entity, parent: Entity | None = None, fk_field: str | None = None) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        filters: dict[str, Any] = {}
        base = f"/{entity.collection}"
        if parent is not None and fk_field is not None:
            prow = await _must_find(ctx, parent, ctx.params[parent.name])
            filters[fk_field] = prow["id"]
            child_seg = entity.nested_name or entity.collection
            base = f"/{parent.collection}/{ctx.raw_params[parent.name]}/{child_seg}"
        else:
            special = entity.list_filter
            if special is not None and ctx.query_has(special):
                return await _list_by_unique(ctx, entity, special)
        args = page_args(ctx)
        top = parent is None
        rows, offset = await ctx.store.page(
            entity.name,
            size=args.size,
            offset=args.offset,
            tags=args.tags if top else None,
            tags_mode=args.tags_mode,
            filters=filters or None,
        )
        data = [_output(entity, r) for r in rows]
        link = next_link(base, offset, args if top else None)
        return json_reply(200, list_body(data, offset, link))

    return handler


async def _list_by_unique(ctx: Ctx, entity: Entity, field: str) -> Response:
    value = ctx.query_first(field)
    if not value:
        raise bad_request(f"{field} must be an unempty string")
    row = await ctx.store.select_by(entity.name, field, value) if bindable(value) else None
    data = [_output(entity, row)] if row is not None else []
    return json_reply(200, {"data": data, "next": None})


def collection_post(entity: Entity, parent: Entity | None = None, fk_field: str | None = None) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        forced: dict[str, Any] = {}
        if parent is not None and fk_field is not None:
            prow = await _must_find(ctx, parent, ctx.params[parent.name])
            forced[fk_field] = {"id": prow["id"]}
        args = ctx.body_args(entity, plugin_name=_plugin_name(entity, ctx, None))
        args.update(forced)
        return _ok(entity, await insert(ctx, entity, args), 201)

    return handler


# ---------------------------------------------------------------------------------------------
# entities: /E/{E}


def entity_get(entity: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        return _ok(entity, await _must_find(ctx, entity, ctx.params[entity.name]))

    return handler


def entity_put(entity: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        key = ctx.params[entity.name]
        existing = await find(ctx.store, entity, key)
        args = ctx.body_args(entity, plugin_name=_plugin_name(entity, ctx, existing))
        return _ok(entity, await upsert(ctx, entity, key, args, existing))

    return handler


def entity_patch(entity: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        key = ctx.params[entity.name]
        existing = await find(ctx.store, entity, key)
        if existing is None:
            if is_uuid(key):
                raise errors.not_found({"id": key})
            raise errors.not_found_by_field({entity.endpoint_key or "id": key})
        args = ctx.body_args(entity, plugin_name=_plugin_name(entity, ctx, existing))
        return _ok(entity, await update(ctx, entity, existing, args))

    return handler


def entity_delete(entity: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        row = await find(ctx.store, entity, ctx.params[entity.name])
        if row is not None:
            await delete(ctx, entity, row)
        return empty_reply(204)

    return handler


# ---------------------------------------------------------------------------------------------
# nested entities: /P/{P}/E/{E}


def nested_get(parent: Entity, entity: Entity, fk_field: str) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        prow = await _must_find(ctx, parent, ctx.params[parent.name])
        row = _child_of(await _must_find(ctx, entity, ctx.params[entity.name]), fk_field, prow)
        return _ok(entity, row)

    return handler


def nested_put(parent: Entity, entity: Entity, fk_field: str) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        prow = await _must_find(ctx, parent, ctx.params[parent.name])
        key = ctx.params[entity.name]
        existing = await find(ctx.store, entity, key)
        args = ctx.body_args(entity, plugin_name=_plugin_name(entity, ctx, existing))
        args[fk_field] = {"id": prow["id"]}
        return _ok(entity, await upsert(ctx, entity, key, args, existing))

    return handler


def nested_patch(parent: Entity, entity: Entity, fk_field: str) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        prow = await _must_find(ctx, parent, ctx.params[parent.name])
        row = _child_of(await _must_find(ctx, entity, ctx.params[entity.name]), fk_field, prow)
        args = ctx.body_args(entity, plugin_name=_plugin_name(entity, ctx, row))
        if args.get(fk_field) is None:
            args[fk_field] = {"id": prow["id"]}
        return _ok(entity, await update(ctx, entity, row, args))

    return handler


def nested_delete(parent: Entity, entity: Entity, fk_field: str) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        prow = await _must_find(ctx, parent, ctx.params[parent.name])
        row = _child_of(await _must_find(ctx, entity, ctx.params[entity.name]), fk_field, prow)
        await delete(ctx, entity, row)
        return empty_reply(204)

    return handler


# ---------------------------------------------------------------------------------------------
# foreign entities: /E/{E}/F  (e.g. /routes/{routes}/service)


async def _referenced(ctx: Ctx, entity: Entity, fk_field: str, ref: Entity) -> tuple[Row, Row | None]:
    row = await _must_find(ctx, entity, ctx.params[entity.name])
    ref_id = fk_id(row, fk_field)
    target = await ctx.store.select(ref.name, {"id": ref_id}) if ref_id else None
    return row, target


def foreign_get(entity: Entity, fk_field: str, ref: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        _, target = await _referenced(ctx, entity, fk_field, ref)
        if target is None:
            raise not_found()
        return _ok(ref, target)

    return handler


def foreign_patch(entity: Entity, fk_field: str, ref: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        _, target = await _referenced(ctx, entity, fk_field, ref)
        if target is None:
            raise not_found()
        args = ctx.body_args(ref, plugin_name=_plugin_name(ref, ctx, target))
        return _ok(ref, await update(ctx, ref, target, args))

    return handler


def foreign_put(entity: Entity, fk_field: str, ref: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        row, target = await _referenced(ctx, entity, fk_field, ref)
        ref_id = fk_id(row, fk_field)
        args = ctx.body_args(ref, plugin_name=_plugin_name(ref, ctx, target))
        if ref_id is None:
            # No associated row yet: create one under a fresh id, then point E at it.
            import uuid

            saved = await upsert(ctx, ref, str(uuid.uuid4()), args, None)
            await update(ctx, entity, row, {fk_field: {"id": saved["id"]}})
        else:
            saved = await upsert(ctx, ref, ref_id, args, target)
        return _ok(ref, saved)

    return handler


def foreign_delete(entity: Entity, fk_field: str, ref: Entity) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        row = await _must_find(ctx, entity, ctx.params[entity.name])
        if fk_id(row, fk_field) is None:
            raise not_found()
        raise method_not_allowed()

    return handler
