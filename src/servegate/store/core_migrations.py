"""The core subsystem's migrations, each frozen as the SQL it ran at its version.

Never edit a migration that has shipped: a database that ran it keeps what it made, and a fresh bootstrap
must make the same. A schema change is a new migration appended to CORE with its own literal SQL; the
declarations in schema/entities.py change alongside, and `catalog.schema_drift` (tested) says when the two
disagree.

`000_base` is the schema servegate shipped before migrations were frozen, including the key-auth credentials
table that the key-auth plugin now owns (its own `000_base_key_auth` counts as executed wherever this ran).
"""

from __future__ import annotations

from .migrations import Migration, sql

# Column types of 000_base per dialect, frozen here (the store's Dialect.types may change later).
_TYPES_000 = {
    "sqlite": {"ID": "TEXT", "INT": "INTEGER", "BOOL": "INTEGER", "REAL": "REAL"},
    "postgres": {"ID": 'TEXT COLLATE "C"', "INT": "BIGINT", "BOOL": "BOOLEAN", "REAL": "DOUBLE PRECISION"},
}

_BASE_000 = [
    """CREATE TABLE IF NOT EXISTS "services" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "updated_at" {INT},
  "name" TEXT,
  "retries" {INT},
  "protocol" TEXT,
  "host" TEXT,
  "port" {INT},
  "path" TEXT,
  "connect_timeout" {INT},
  "write_timeout" {INT},
  "read_timeout" {INT},
  "tags" TEXT,
  "client_certificate_id" TEXT,
  "tls_verify" {BOOL},
  "tls_verify_depth" {INT},
  "ca_certificates" TEXT,
  "enabled" {BOOL},
  CONSTRAINT "services_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "services_name_key" UNIQUE ("name")
)""",
    'CREATE INDEX IF NOT EXISTS "services_client_certificate_id_idx" ON "services" ("client_certificate_id")',
    """CREATE TABLE IF NOT EXISTS "routes" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "updated_at" {INT},
  "name" TEXT,
  "protocols" TEXT,
  "https_redirect_status_code" {INT},
  "strip_path" {BOOL},
  "preserve_host" {BOOL},
  "request_buffering" {BOOL},
  "response_buffering" {BOOL},
  "tags" TEXT,
  "service_id" TEXT,
  "snis" TEXT,
  "sources" TEXT,
  "destinations" TEXT,
  "methods" TEXT,
  "hosts" TEXT,
  "paths" TEXT,
  "headers" TEXT,
  "regex_priority" {INT},
  "path_handling" TEXT,
  CONSTRAINT "routes_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "routes_name_key" UNIQUE ("name"),
  CONSTRAINT "routes_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services" ("id") ON DELETE RESTRICT
)""",
    'CREATE INDEX IF NOT EXISTS "routes_service_id_idx" ON "routes" ("service_id")',
    """CREATE TABLE IF NOT EXISTS "consumers" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "updated_at" {INT},
  "username" TEXT,
  "custom_id" TEXT,
  "tags" TEXT,
  CONSTRAINT "consumers_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "consumers_username_key" UNIQUE ("username"),
  CONSTRAINT "consumers_custom_id_key" UNIQUE ("custom_id")
)""",
    """CREATE TABLE IF NOT EXISTS "plugins" (
  "id" {ID} NOT NULL,
  "name" TEXT,
  "instance_name" TEXT,
  "created_at" {INT},
  "updated_at" {INT},
  "route_id" TEXT,
  "service_id" TEXT,
  "consumer_id" TEXT,
  "config" TEXT,
  "protocols" TEXT,
  "enabled" {BOOL},
  "tags" TEXT,
  "cache_key" TEXT,
  CONSTRAINT "plugins_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "plugins_instance_name_key" UNIQUE ("instance_name"),
  CONSTRAINT "plugins_cache_key_key" UNIQUE ("cache_key"),
  CONSTRAINT "plugins_route_id_fkey" FOREIGN KEY ("route_id") REFERENCES "routes" ("id") ON DELETE CASCADE,
  CONSTRAINT "plugins_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services" ("id") ON DELETE CASCADE,
  CONSTRAINT "plugins_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE
)""",
    'CREATE INDEX IF NOT EXISTS "plugins_route_id_idx" ON "plugins" ("route_id")',
    'CREATE INDEX IF NOT EXISTS "plugins_service_id_idx" ON "plugins" ("service_id")',
    'CREATE INDEX IF NOT EXISTS "plugins_consumer_id_idx" ON "plugins" ("consumer_id")',
    """CREATE TABLE IF NOT EXISTS "keyauth_credentials" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "consumer_id" TEXT,
  "key" TEXT,
  "tags" TEXT,
  "cache_key" TEXT,
  "ttl" {REAL},
  CONSTRAINT "keyauth_credentials_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "keyauth_credentials_key_key" UNIQUE ("key"),
  CONSTRAINT "keyauth_credentials_cache_key_key" UNIQUE ("cache_key"),
  CONSTRAINT "keyauth_credentials_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE
)""",
    'CREATE INDEX IF NOT EXISTS "keyauth_credentials_consumer_id_idx" ON "keyauth_credentials" ("consumer_id")',
    'CREATE INDEX IF NOT EXISTS "keyauth_credentials_ttl_idx" ON "keyauth_credentials" ("ttl")',
    """CREATE TABLE IF NOT EXISTS "ratelimiting_metrics" (
  identifier TEXT NOT NULL, period TEXT NOT NULL, period_date {INT} NOT NULL,
  service_id TEXT NOT NULL, route_id TEXT NOT NULL, value {INT} NOT NULL DEFAULT 0,
  ttl {REAL},
  CONSTRAINT "ratelimiting_metrics_pkey" PRIMARY KEY (identifier, period, period_date, service_id, route_id)
)""",
    'CREATE INDEX IF NOT EXISTS "ratelimiting_metrics_ttl_idx" ON "ratelimiting_metrics" (ttl)',
    'CREATE TABLE IF NOT EXISTS "config_version" (id INTEGER PRIMARY KEY, "version" {INT} NOT NULL)',
    'INSERT INTO "config_version" (id, "version") VALUES (1, 0) ON CONFLICT (id) DO NOTHING',
]


def _per_dialect(stmts: list[str], types: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    return {dialect: [s.format(**t) for s in stmts] for dialect, t in types.items()}


# 001: change events (store/changes.py), so that workers apply what a write touched instead of reloading all.
_CHANGES_001 = [
    """CREATE TABLE IF NOT EXISTS "config_changes" (
  "version" {INT} NOT NULL,
  "seq" {INT} NOT NULL,
  "entity" TEXT NOT NULL,
  "op" TEXT NOT NULL,
  "pk" TEXT,
  "row" TEXT,
  "at" {REAL} NOT NULL,
  CONSTRAINT "config_changes_pkey" PRIMARY KEY ("version", "seq")
)""",
    'CREATE INDEX IF NOT EXISTS "config_changes_at_idx" ON "config_changes" ("at")',
]

# 002: Kong's upstreams and targets (schema/upstreams.py), with servegate's three upstream fields at the end.
# A target is one row per (upstream, target): `cache_key` holds both, UNIQUE; its timestamps are seconds with a
# millisecond fraction (REAL), as Kong's.
_UPSTREAMS_002 = [
    """CREATE TABLE IF NOT EXISTS "upstreams" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "name" TEXT,
  "updated_at" {INT},
  "algorithm" TEXT,
  "hash_on" TEXT,
  "hash_fallback" TEXT,
  "hash_on_header" TEXT,
  "hash_fallback_header" TEXT,
  "hash_on_cookie" TEXT,
  "hash_on_cookie_path" TEXT,
  "hash_on_query_arg" TEXT,
  "hash_fallback_query_arg" TEXT,
  "hash_on_uri_capture" TEXT,
  "hash_fallback_uri_capture" TEXT,
  "slots" {INT},
  "healthchecks" TEXT,
  "tags" TEXT,
  "host_header" TEXT,
  "client_certificate_id" TEXT,
  "use_srv_name" {BOOL},
  "prefix_chars" {INT},
  "load_factor" {REAL},
  "retry_on_overload" {BOOL},
  CONSTRAINT "upstreams_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "upstreams_name_key" UNIQUE ("name")
)""",
    'CREATE INDEX IF NOT EXISTS "upstreams_client_certificate_id_idx" ON "upstreams" ("client_certificate_id")',
    """CREATE TABLE IF NOT EXISTS "targets" (
  "id" {ID} NOT NULL,
  "created_at" {REAL},
  "updated_at" {REAL},
  "upstream_id" TEXT,
  "target" TEXT,
  "weight" {INT},
  "tags" TEXT,
  "cache_key" TEXT,
  CONSTRAINT "targets_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "targets_cache_key_key" UNIQUE ("cache_key"),
  CONSTRAINT "targets_upstream_id_fkey" FOREIGN KEY ("upstream_id") REFERENCES "upstreams" ("id") ON DELETE CASCADE
)""",
    'CREATE INDEX IF NOT EXISTS "targets_upstream_id_idx" ON "targets" ("upstream_id")',
]

CORE: list[Migration] = [
    # tables: what reset drops besides the declared entities' tables (keyauth_credentials too: it stays
    # even when the key-auth plugin is not loaded, and a later bootstrap must not find its old rows).
    Migration("000_base", up=sql(**_per_dialect(_BASE_000, _TYPES_000)),
              tables=("keyauth_credentials", "ratelimiting_metrics", "config_version")),
    Migration("001_config_changes", up=sql(**_per_dialect(_CHANGES_001, _TYPES_000)), tables=("config_changes",)),
    Migration("002_upstreams_targets", up=sql(**_per_dialect(_UPSTREAMS_002, _TYPES_000))),
]
