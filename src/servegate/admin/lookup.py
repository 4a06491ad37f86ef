"""Entity lookup for the Admin API: by id or endpoint key, and foreign keys given by a unique field.

Every store call of the admin goes through here, so the admin depends on the store's contract in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from servegate.admin.routing import has_invalid_utf8
from servegate.schema import errors
from servegate.schema.entities import ENTITIES
from servegate.schema.fields import Entity, Field
from servegate.schema.validate import validate_field

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
Row = dict[str, Any]


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def entities() -> list[Entity]:
    values = ENTITIES.values() if isinstance(ENTITIES, Mapping) else ENTITIES
    return list(values)


def admin_entities() -> list[Entity]:
    return [e for e in entities() if e.admin]


def entity_named(name: str) -> Entity | None:
    for e in entities():
        if e.name == name:
            return e
    return None


def _validate_key_value(field: Field, value: str) -> str | None:
    """Kong validates an endpoint key from the URL with the field's own rules (code 10 on failure)."""
    err = validate_field(field, value, lookup=True)
    if err is None:
        return None
    return err if isinstance(err, str) else str(err)


def bindable(value: str) -> bool:
    # Bytes that are not UTF-8, and NUL (which PostgreSQL text cannot hold), can name no stored row;
    # no driver would bind them as text either.
    return "\x00" not in value and not has_invalid_utf8(value)


async def find(store: Any, entity: Entity, key: str) -> Row | None:
    """The row that `key` (URL segment, already percent-decoded) names: a UUID is always an id."""
    if is_uuid(key):
        return await store.select(entity.name, {"id": key})
    ek = entity.endpoint_key
    if ek is None or has_invalid_utf8(key):
        # bytes that are not UTF-8 can name no stored row (and no driver would bind them)
        return None
    field = entity.field_map()[ek]
    msg = _validate_key_value(field, key)
    if msg is not None:
        raise errors.invalid_unique(ek, msg)
    return await store.select_by(entity.name, ek, key) if bindable(key) else None


async def resolve_foreign_keys(store: Any, entity: Entity, body: dict[str, Any]) -> None:
    """Replace `{"name": "svc"}`-style foreign keys by `{"id": ...}`; unknown -> DaoError 13.

    Values without an id and without a usable unique field are left for validation to report.
    """
    unresolved: dict[str, Any] = {}
    for fname, field in entity.foreign_keys().items():
        value = body.get(fname)
        if not isinstance(value, dict) or value.get("id") is not None or field.reference is None:
            continue
        ref = entity_named(field.reference)
        if ref is None:
            continue
        ref_fields = ref.field_map()
        for key in sorted(value):
            kv = value[key]
            kf = ref_fields.get(key)
            if kv is None or kf is None or not (kf.unique or key == ref.endpoint_key):
                continue
            row = await store.select_by(ref.name, key, kv) if isinstance(kv, str) and bindable(kv) else None
            if row is None:
                unresolved[fname] = {key: errors.unresolved_message(key, kv, ref.name)}
            else:
                body[fname] = {"id": row["id"]}
            break
    if unresolved:
        raise errors.foreign_keys_unresolved(unresolved)


def fk_id(row: Row, field_name: str) -> str | None:
    value = row.get(field_name)
    if isinstance(value, dict):
        v = value.get("id")
        return v if isinstance(v, str) else None
    return None
