"""Generates the entity endpoints from the schema declarations (Kong's `endpoints.lua` idea, our code), then
adds the core entities' own endpoints (upstreams.py: targets, health) and the endpoints plugins declare
(Kong's `api.lua`, see servegate.plugins.api)."""

from __future__ import annotations

from typing import Any

from servegate.admin import crud
from servegate.admin.context import Ctx
from servegate.admin.http import Response
from servegate.admin.lookup import admin_entities, entity_named
from servegate.admin.responses import Reply, dao_error_reply, json_reply
from servegate.admin.routing import Handler, PathTable
from servegate.schema.errors import DaoError


def add_entity_endpoints(table: PathTable) -> None:
    entities = admin_entities()
    admin_names = {e.name for e in entities}
    for entity in entities:
        coll = f"/{entity.collection}"
        one = f"{coll}/{{{entity.name}}}"
        top = entity.admin_top_level  # False: only the nested endpoints below (Kong's targets)
        if top:
            table.add(coll, "GET", crud.collection_get(entity))
            table.add(coll, "POST", crud.collection_post(entity))
            table.add(one, "GET", crud.entity_get(entity))
            table.add(one, "PUT", crud.entity_put(entity))
            table.add(one, "PATCH", crud.entity_patch(entity))
            table.add(one, "DELETE", crud.entity_delete(entity))
        for fk_field, field in entity.foreign_keys().items():
            parent = entity_named(field.reference or "")
            if parent is None or parent.name not in admin_names:
                continue
            if top:
                # /routes/{routes}/service
                ref = f"{one}/{fk_field}"
                table.add(ref, "GET", crud.foreign_get(entity, fk_field, parent))
                table.add(ref, "PUT", crud.foreign_put(entity, fk_field, parent))
                table.add(ref, "PATCH", crud.foreign_patch(entity, fk_field, parent))
                table.add(ref, "DELETE", crud.foreign_delete(entity, fk_field, parent))
            # /services/{services}/routes and /services/{services}/routes/{routes}
            nested = f"/{parent.collection}/{{{parent.name}}}/{entity.nested_name or entity.collection}"
            nested_one = f"{nested}/{{{entity.name}}}"
            table.add(nested, "GET", crud.collection_get(entity, parent, fk_field))
            table.add(nested, "POST", crud.collection_post(entity, parent, fk_field))
            table.add(nested_one, "GET", crud.nested_get(parent, entity, fk_field))
            table.add(nested_one, "PUT", crud.nested_put(parent, entity, fk_field))
            table.add(nested_one, "PATCH", crud.nested_patch(parent, entity, fk_field))
            table.add(nested_one, "DELETE", crud.nested_delete(parent, entity, fk_field))
    # Then the core entities' own endpoints over the generated ones (Kong's kong/api/routes/<entity>.lua)...
    add_core_endpoints(table)
    # ...and last the plugins': a plugin endpoint may wrap a generated one.
    add_plugin_endpoints(table, "admin_api")


def add_core_endpoints(table: PathTable) -> None:
    from servegate.admin import upstreams

    upstreams.add_endpoints(table)


def add_plugin_endpoints(table: PathTable, attr: str) -> None:
    """Every loaded plugin's `admin_api` or `status_api` endpoints, by plugin name then declaration order.
    The same method and path declared again replaces the handler, which the new one gets as `parent`."""
    from servegate.plugins import handlers

    for name in sorted(handlers()):
        for ep in getattr(handlers()[name], attr, ()):
            pattern = ep.pattern
            method = ep.method.upper()
            table.add(pattern, method, _plugin_handler(ep.handler, table.handler(pattern, method)))


def _plugin_handler(handler: Any, parent: Handler | None) -> Handler:
    async def run_parent(ctx: Ctx) -> Response:
        # The wrapper sees the generated answer whatever it is (201, 404, 409...), so it can act after it;
        # database failures still go to the dispatcher, which logs them and answers 5xx.
        assert parent is not None
        try:
            return await parent(ctx)
        except Reply as r:
            return r.response
        except DaoError as e:
            if e.http_status >= 500:
                raise
            return dao_error_reply(e)

    async def call(ctx: Ctx) -> Response:
        result = await handler(ctx, (lambda: run_parent(ctx)) if parent is not None else None)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
            return json_reply(result[0], result[1])
        raise TypeError(f"a plugin endpoint returned {type(result).__name__}, not a Response or (status, body)")

    return call
