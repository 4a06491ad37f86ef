"""Generates the entity endpoints from the schema declarations (Kong's `endpoints.lua` idea, our code)."""

from __future__ import annotations

from servegate.admin import crud
from servegate.admin.lookup import admin_entities, entity_named
from servegate.admin.routing import PathTable


def add_entity_endpoints(table: PathTable) -> None:
    entities = admin_entities()
    admin_names = {e.name for e in entities}
    for entity in entities:
        coll = f"/{entity.collection}"
        one = f"{coll}/{{{entity.name}}}"
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
