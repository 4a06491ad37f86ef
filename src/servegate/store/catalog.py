"""What the database's catalogue holds, and where it disagrees with the entity declarations.

`read_catalogue` reads tables, columns, indexes and constraints (SQLite: sqlite_master and the table_info /
index_list / index_info / foreign_key_list pragmas; PostgreSQL: information_schema.columns, pg_indexes and
pg_constraint) into plain sorted data, so two databases can be compared with `==` (a fresh bootstrap against
an upgrade). `schema_drift` compares the declared entities' tables with it: a field declared without the
migration that adds its column is reported, which is what a test runs on every change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .table import q

if TYPE_CHECKING:
    from . import Store

Catalogue = dict[str, dict[str, Any]]


async def read_catalogue(store: Store) -> Catalogue:
    async with store.backend.read() as conn:
        if store.dialect.name == "postgres":
            return await _postgres(conn)
        return await _sqlite(conn)


async def _sqlite(conn: Any) -> Catalogue:
    out: Catalogue = {}
    tables = await conn.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    for t in (r["name"] for r in tables):
        cols = await conn.fetch(f"PRAGMA table_info({q(t)})")
        indexes = []
        for ix in await conn.fetch(f"PRAGMA index_list({q(t)})"):
            icols = await conn.fetch(f"PRAGMA index_info({q(ix['name'])})")
            # auto-index names (sqlite_autoindex_<table>_<n>) follow constraint order: compare by content
            name = None if ix["origin"] in ("u", "pk") else ix["name"]
            indexes.append((name, bool(ix["unique"]), ix["origin"], tuple(c["name"] for c in icols)))
        fks = await conn.fetch(f"PRAGMA foreign_key_list({q(t)})")
        out[t] = {
            "columns": [
                (c["name"], c["type"].upper(), bool(c["notnull"]), c["dflt_value"], c["pk"]) for c in cols
            ],
            "indexes": sorted(indexes, key=repr),
            "unique": sorted({ix[3] for ix in indexes if ix[1] and ix[2] != "pk"}),
            "foreign": sorted((f["from"], f["table"], f["to"], f["on_delete"].upper()) for f in fks),
        }
    return out


async def _postgres(conn: Any) -> Catalogue:
    out: Catalogue = {}
    cols = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default, collation_name "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "ORDER BY table_name, ordinal_position"
    )
    for c in cols:
        entry = out.setdefault(c["table_name"], {"columns": [], "indexes": [], "constraints": [], "unique": []})
        entry["columns"].append(
            (c["column_name"], c["data_type"].upper(), c["is_nullable"] == "NO", c["column_default"],
             c["collation_name"])
        )
    for ix in await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    ):
        out[ix["tablename"]]["indexes"].append((ix["indexname"], ix["indexdef"]))
    uniques = await conn.fetch(
        "SELECT t.relname AS tab, array_agg(a.attname::text ORDER BY k.ord) AS cols "
        "FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = current_schema() AND ix.indisunique AND NOT ix.indisprimary "
        "GROUP BY t.relname, ix.indexrelid"
    )
    for u in uniques:
        out[u["tab"]]["unique"].append(tuple(u["cols"]))
    fks = await conn.fetch(
        "SELECT cl.relname AS tab, c.conname, c.contype::text AS kind, pg_get_constraintdef(c.oid) AS def, "
        "a.attname::text AS col, rf.relname AS ref, c.confdeltype::text AS del "
        "FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = cl.relnamespace "
        "LEFT JOIN pg_class rf ON rf.oid = c.confrelid "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE n.nspname = current_schema()"
    )
    actions = {"c": "CASCADE", "r": "RESTRICT", "a": "NO ACTION", "n": "SET NULL", "d": "SET DEFAULT"}
    for f in fks:
        entry = out[f["tab"]]
        entry["constraints"].append((f["conname"], f["kind"], f["def"]))
        if f["kind"] == "f":
            entry.setdefault("foreign", []).append((f["col"], f["ref"], "id", actions.get(f["del"], f["del"])))
    for entry in out.values():
        entry.setdefault("foreign", [])
        for k in ("indexes", "constraints", "unique", "foreign"):
            entry[k] = sorted(entry[k], key=repr)
    return out


async def schema_drift(store: Store, catalogue: Catalogue | None = None) -> list[str]:
    """Where the declared entities and the migrated database disagree (empty: they agree)."""
    cat = catalogue if catalogue is not None else await read_catalogue(store)
    problems: list[str] = []
    for name, table in store.tables.items():
        got = cat.get(name)
        if got is None:
            ddl = ";\n".join(table.create_sql(store.dialect))
            problems.append(f"{name}: table missing (declared, but no migration creates it); today's DDL:\n{ddl}")
            continue
        columns = {c[0]: c[1] for c in got["columns"]}
        for col in table.columns:
            declared = table.column_type(col, store.dialect)
            if col not in columns:
                problems.append(
                    f"{name}.{col}: column missing (declared, but no migration adds it: "
                    f"ALTER TABLE {q(name)} ADD COLUMN {q(col)} {declared})"
                )
            elif columns[col] != declared:
                problems.append(f"{name}.{col}: column is {columns[col]}, declared {declared}")
        for col in columns:
            if col not in table.columns:
                problems.append(f"{name}.{col}: column not declared")
        unique = {tuple(u) for u in got["unique"]}
        for cname, fields in table.unique.items():
            cols = ("cache_key",) if cname == f"{name}_cache_key_key" else tuple(table.column_of(f) for f in fields)
            if cols not in unique:
                problems.append(f"{name}: no UNIQUE ({', '.join(cols)}) (declared unique)")
        foreign = {(f[0], f[1], f[3]) for f in got["foreign"]}
        for fk in table.foreign.values():
            if not fk.constrained:
                continue
            want = (fk.column, fk.reference, "CASCADE" if fk.cascade else "RESTRICT")
            if want not in foreign:
                problems.append(f"{name}.{fk.column}: no FOREIGN KEY to {fk.reference} ON DELETE {want[2]}")
    return problems
