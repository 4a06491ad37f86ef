"""Field and entity declarations: the one place an entity's shape is written down.

Store (DDL, columns), Admin API (endpoints, form coercion), validation and error messages all
read these declarations; nothing else may restate an entity's fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Sentinel: the field has no default (absent stays absent / null on output).
NO_DEFAULT: Any = object()

# A custom check returns None when the value is fine, else Kong's error string.
Check = Callable[[Any], "str | None"]
# A normalizer returns (normalized value, None) or (None, error message).
Normalizer = Callable[[Any], "tuple[Any, str | None]"]
# An entity check sees the whole (merged, defaulted) row and returns errors:
# a list of "@entity" strings, or a dict field -> message for field-level errors.
EntityCheck = Callable[[Mapping[str, Any]], "list[str] | dict[str, Any] | None"]

# Both stores keep integers in 64-bit columns (PostgreSQL BIGINT, SQLite INTEGER) and the Admin API
# renders them as JSON integers: an integer field without a `between` of its own is held to this range.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# PostgreSQL refuses a btree index entry over ~2.7 KB; a key-auth key is also stored, JSON-escaped
# (up to twice as long once control characters are refused), in the cache_key index.
UNIQUE_MAX_BYTES = 1024


@dataclass(frozen=True)
class Field:
    """One field of an entity or record.

    type is one of: string, integer, number, boolean, array, set, map, record, foreign.
    """

    type: str
    required: bool = False
    default: Any = NO_DEFAULT
    unique: bool = False
    # auto: generated on insert when absent (uuid for id, timestamps, key-auth key).
    auto: bool = False
    # uuid: the string must be a UUID (message "expected a valid UUID").
    uuid: bool = False
    # timestamp: a positive integer (Kong's `timestamp` validator, "expected a valid timestamp").
    timestamp: bool = False
    immutable: bool = False
    # array / set
    elements: Field | None = None
    len_min: int | None = None
    len_eq: int | None = None
    # strings: counted in UTF-8 bytes, as Kong's `#value` counts them
    len_max: int | None = None
    # strings: False refuses C0 control characters (key-auth keys: see UNIQUE_MAX_BYTES)
    control_chars: bool = True
    # map
    keys: Field | None = None
    values: Field | None = None
    # record: ordered (name, Field) pairs; Kong reports and returns them in this order.
    fields: tuple[tuple[str, Field], ...] | None = None
    # foreign
    reference: str | None = None  # entity name, e.g. "services"
    on_delete: str | None = None  # "cascade" or None (= restrict: FK violation on parent delete)
    # value rules
    one_of: tuple[Any, ...] | None = None
    between: tuple[float, float] | None = None
    gt: float | None = None
    starts_with: str | None = None
    checks: tuple[Check, ...] = ()
    # Kong's DAO-level rewrite of an input value before validation (targets.target: `host[:port]` with the
    # default port, IPv4 without leading zeros, IPv6 expanded in brackets): value -> (normalized, None), or
    # (None, message). On insert and upsert the message is the field's error (Kong's DAO answers it before the
    # schema validates); on update a value it refuses is left for the field's own checks to report.
    normalize: Normalizer | None = None
    # A legacy alias accepted on input and echoed on output (rate-limiting's redis_*).
    description: str = ""

    def record_fields(self) -> dict[str, Field]:
        return dict(self.fields or ())


@dataclass(frozen=True)
class Entity:
    """An entity declaration (Kong's `kong/db/schema/entities/*.lua`, in our terms)."""

    name: str  # table and collection name: "services", "consumers"
    fields: tuple[tuple[str, Field], ...]
    primary_key: tuple[str, ...] = ("id",)
    endpoint_key: str | None = None  # second lookup key in URLs: name, username, key
    # Fields that together are UNIQUE (plugins: name+route+service+consumer; key-auth: key).
    cache_key: tuple[str, ...] = ()
    # Admin collection path when it differs from name (a plugin entity's Kong endpoint name).
    admin_name: str | None = None
    # Path segment when nested under its foreign parent ("key-auth" under /consumers/{c}).
    nested_name: str | None = None
    ttl: bool = False
    entity_checks: tuple[EntityCheck, ...] = ()
    # Input-only shorthands: name -> function(value) -> dict of fields to set (services.url). Applied in
    # declaration order, each seeing what the previous ones set (Kong's shorthand_fields); a shorthand may have
    # the name of a real field (upstreams.hash_on), whose input value it then rewrites.
    shorthands: Mapping[str, Callable[[Any], dict[str, Any]]] = field(default_factory=dict)
    # Shorthands whose function also gets an explicit null (upstreams: `hash_on: null` means "none"); the
    # others drop a null.
    null_shorthands: tuple[str, ...] = ()
    # For plugins: the field whose value picks a subschema for "config".
    subschema_key: str | None = None
    # Whether Admin API generates endpoints for it (ratelimiting_metrics: no).
    admin: bool = True
    # False: its Admin endpoints exist only under its foreign parent (`/upstreams/{u}/targets`); the top-level
    # ones (`/targets`, `/targets/{targets}`, `/targets/{targets}/upstream`) answer 404 (Kong's
    # `endpoints.disable`).
    admin_top_level: bool = True
    # Whether updated_at is maintained.
    has_updated_at: bool = True
    # Defaults that depend on other input fields (routes: grpc protocols default strip_path to
    # false): row -> {field: default}, applied before the static defaults.
    default_overrides: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # The error for a subschema key naming no subschema (routes: unknown protocol, plugins: not enabled):
    # row -> {field: message}, or None when the value is known. Kong checks it before anything else.
    unknown_subschema: Callable[[Mapping[str, Any]], dict[str, Any] | None] | None = None
    # Kong's extra list filter by a unique field on the collection (consumers: GET /consumers?custom_id=v).
    list_filter: str | None = None
    # Rows that grow with users (consumers, credentials): not held in every worker's snapshot but looked up
    # through the worker's bounded cache on use (servegate.snapshot.cache), as Kong's mem cache does.
    cached: bool = False

    def field_map(self) -> dict[str, Field]:
        return dict(self.fields)

    def foreign_keys(self) -> dict[str, Field]:
        return {n: f for n, f in self.fields if f.type == "foreign"}

    @property
    def collection(self) -> str:
        return self.admin_name or self.name
