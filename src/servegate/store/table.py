"""Table layout derived from an entity declaration: DDL, and row <-> column conversion.

Scalars are native columns; arrays, sets, maps and records are JSON text (same on both databases, so a
record's field order survives); a foreign field `x` is column `x_id` with a real FOREIGN KEY; an entity
with a cache_key gets a `cache_key` text column holding every key part (NULL parts included), so the
UNIQUE constraint treats NULL as a value; ttl entities get a `ttl` column holding the expiry epoch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from servegate.schema import errors as _errors
from servegate.schema.fields import Entity
from servegate.schema.validate import column_error

from .backend import Dialect

JSON_TYPES = frozenset({"array", "set", "map", "record"})
CACHE_KEY = "cache_key"
TTL = "ttl"


def q(name: str) -> str:
    """Quote an identifier (field names such as `key` are keywords in SQLite)."""
    return '"' + name + '"'


@dataclass(frozen=True)
class Foreign:
    field: str
    column: str
    reference: str
    cascade: bool
    constrained: bool  # False when the referenced entity has no table here


@dataclass
class Table:
    entity: Entity
    columns: list[str] = field(default_factory=list)
    column_field: dict[str, str] = field(default_factory=dict)  # column -> field name
    foreign: dict[str, Foreign] = field(default_factory=dict)  # field name -> Foreign
    # constraint name -> fields it covers (for mapping violations back to Kong's error fields)
    unique: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pk: tuple[str, ...] = ("id",)

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def has_ttl(self) -> bool:
        return self.entity.ttl

    @property
    def has_tags(self) -> bool:
        return "tags" in self.entity.field_map()

    def column_of(self, field_name: str) -> str:
        fk = self.foreign.get(field_name)
        return fk.column if fk else field_name

    # --- DDL -----------------------------------------------------------------------------------

    def column_type(self, col: str, dialect: Dialect) -> str:
        fname = self.column_field.get(col)
        if fname is None:
            return dialect.column_type("number") if col == TTL else "TEXT"
        f = self.entity.field_map()[fname]
        return "TEXT" if f.type in JSON_TYPES else dialect.column_type(f.type)

    def create_sql(self, dialect: Dialect) -> list[str]:
        t = self.name
        defs: list[str] = []
        for col in self.columns:
            ctype = self.column_type(col, dialect)
            extra = ""
            if self.column_field.get(col) in self.pk:
                # Paging orders by pk: make text order byte order whatever the database locale is.
                extra = (dialect.binary_collation if ctype == "TEXT" else "") + " NOT NULL"
            defs.append(f"{q(col)} {ctype}{extra}")
        defs.append(f"CONSTRAINT {q(t + '_pkey')} PRIMARY KEY ({', '.join(q(c) for c in self.pk)})")
        for cname, fields in self.unique.items():
            if fields == self.pk:
                continue
            cols = [CACHE_KEY] if cname == f"{t}_{CACHE_KEY}_key" else [self.column_of(f) for f in fields]
            defs.append(f"CONSTRAINT {q(cname)} UNIQUE ({', '.join(q(c) for c in cols)})")
        for fk in self.foreign.values():
            if not fk.constrained:
                continue
            action = "CASCADE" if fk.cascade else "RESTRICT"
            defs.append(
                f"CONSTRAINT {q(t + '_' + fk.column + '_fkey')} FOREIGN KEY ({q(fk.column)}) "
                f"REFERENCES {q(fk.reference)} ({q('id')}) ON DELETE {action}"
            )
        stmts = [f"CREATE TABLE IF NOT EXISTS {q(t)} (\n  " + ",\n  ".join(defs) + "\n)"]
        for fk in self.foreign.values():
            stmts.append(f"CREATE INDEX IF NOT EXISTS {q(t + '_' + fk.column + '_idx')} ON {q(t)} ({q(fk.column)})")
        if self.has_ttl:
            stmts.append(f"CREATE INDEX IF NOT EXISTS {q(t + '_ttl_idx')} ON {q(t)} ({q(TTL)})")
        return stmts

    # --- rows ----------------------------------------------------------------------------------

    def cache_key_value(self, row: dict[str, Any]) -> str:
        parts: list[Any] = [self.name]
        for fname in self.entity.cache_key:
            v = row.get(fname)
            if fname in self.foreign:
                v = _fk_id(v)
            parts.append(v)
        return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)

    def encode(self, row: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
        """Row (Admin JSON shape) -> column values, without the ttl column."""
        fmap = self.entity.field_map()
        out: dict[str, Any] = {}
        refused: dict[str, Any] = {}
        for col in self.columns:
            fname = self.column_field.get(col)
            if fname is None:
                if col == CACHE_KEY:
                    out[col] = self.cache_key_value(row)
                continue
            v = row.get(fname)
            f = fmap[fname]
            if f.type == "foreign":
                v = _fk_id(v)
            elif v is None:
                pass
            elif f.type in JSON_TYPES:
                v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            elif f.type == "boolean":
                v = dialect.to_db_bool(v)
            elif f.type == "number" and isinstance(v, int) and dialect.name == "postgres":
                v = float(v)
            elif f.type in ("integer", "string"):
                # SQLite would keep what PostgreSQL refuses (a REAL 1e30 in an INTEGER column, which no
                # read could render): refuse it here, before the write, on both.
                err = column_error(f, v)
                if err is not None:
                    refused[fname] = err
                elif isinstance(v, float):
                    v = int(v)
            out[col] = v
        if refused:
            raise _errors.schema_violation(refused)
        return out

    def decode(self, dbrow: dict[str, Any], dialect: Dialect, now: float) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for fname, f in self.entity.fields:
            v = dbrow.get(self.column_of(fname))
            if f.type == "foreign":
                v = {"id": v} if v is not None else None
            elif v is None:
                pass
            elif f.type in JSON_TYPES:
                v = _loads(v)
            elif f.type == "boolean":
                v = dialect.from_db_bool(v)
            elif f.type == "integer" and isinstance(v, float) and v.is_integer():
                v = int(v)
            row[fname] = v
        if self.has_ttl:
            expiry = dbrow.get(TTL)
            if expiry is not None:
                row[TTL] = max(0, math.floor(expiry - now))
        return row


def _loads(text: str) -> Any:
    """A JSON column's value. orjson reads them several times faster (a change event or a reload decodes every
    JSON column of every row); json takes what orjson refuses (integers over 64 bits, NaN), so any stored value
    reads back as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _fk_id(v: Any) -> Any:
    if isinstance(v, dict):
        return v.get("id")
    return v


def build_table(entity: Entity, known: set[str]) -> Table:
    t = Table(entity=entity, pk=tuple(entity.primary_key))
    for fname, f in entity.fields:
        if f.type == "foreign":
            col = fname + "_id"
            ref = f.reference or ""
            t.foreign[fname] = Foreign(
                field=fname,
                column=col,
                reference=ref,
                cascade=(f.on_delete == "cascade"),
                constrained=ref in known,
            )
        else:
            col = fname
        t.columns.append(col)
        t.column_field[col] = fname
        if f.unique and (fname,) != t.pk:
            t.unique[f"{entity.name}_{col}_key"] = (fname,)
    if entity.cache_key:
        t.columns.append(CACHE_KEY)
        t.unique[f"{entity.name}_{CACHE_KEY}_key"] = tuple(entity.cache_key)
    if entity.ttl:
        t.columns.append(TTL)
    return t
