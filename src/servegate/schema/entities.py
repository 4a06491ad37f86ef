"""The Kong core entities we serve (services, routes, consumers, plugins here; upstreams and targets in
upstreams.py) and the registry that plugins add their own entities to (Kong's `daos.lua`: key-auth's
credentials are declared in plugins/key_auth.py).

Field order matches Kong's declarations (it is the order Kong reports and returns them in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servegate.schema import checks
from servegate.schema.fields import Entity, Field
from servegate.schema.typedefs import (
    tags_field,
    timestamp_field,
    timestamp_ms_field,
    unique_string_field,
    utf8_name_field,
    uuid_field,
)
from servegate.schema.upstreams import TARGETS, UPSTREAMS
from servegate.schema.urls import expand_service_url

__all__ = [
    "CONSUMERS",
    "DAO_MAX_TTL",
    "ENTITIES",
    "HTTP_PROTOCOLS",
    "PLUGINS",
    "PROTOCOLS",
    "ROUTES",
    "SERVICES",
    "TARGETS",
    "UPSTREAMS",
    "declared",
    "get_entity",
    "protocols_field",
    "register_entity",
    "route_subschema",
    "tags_field",
    "timestamp_field",
    "timestamp_ms_field",
    "unique_string_field",
    "unregister_entity",
    "utf8_name_field",
    "uuid_field",
]

PROTOCOLS: tuple[str, ...] = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")
HTTP_PROTOCOLS: tuple[str, ...] = ("grpc", "grpcs", "http", "https")
DAO_MAX_TTL = 100000000


# ---------------------------------------------------------------------------------------------
# shared field shapes: Kong's typedefs (schema/typedefs.py; re-exported here for older imports)


def protocols_field(default: tuple[str, ...] = HTTP_PROTOCOLS, allowed: tuple[str, ...] = PROTOCOLS) -> Field:
    return Field("set", required=True, default=list(default), elements=Field("string", one_of=tuple(allowed)))


def _endpoint_set(values: Any) -> list[Any]:
    return values if isinstance(values, list) else []


def _at_least_one_ip_or_port(record: Any) -> str | None:
    if isinstance(record, Mapping) and record.get("ip") is None and record.get("port") is None:
        return "at least one of these fields must be non-empty: 'ip', 'port'"
    return None


def _ip_port_set() -> Field:
    return Field(
        "set",
        elements=Field(
            "record",
            fields=(
                ("ip", Field("string", checks=(checks.ip_or_cidr,))),
                ("port", Field("integer", between=(0, 65535))),
            ),
            checks=(_at_least_one_ip_or_port,),
        ),
    )


def _nonempty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# ---------------------------------------------------------------------------------------------
# services


def _service_checks(row: Mapping[str, Any]) -> dict[str, Any] | None:
    errors: dict[str, Any] = {}
    entity: list[str] = []
    protocol = row.get("protocol")
    if protocol in ("tcp", "tls", "udp", "grpc", "grpcs") and row.get("path") is not None:
        errors["path"] = "value must be null"
        entity.append("failed conditional validation given value of field 'protocol'")
    if isinstance(protocol, str) and protocol not in ("https", "tls"):
        for name in ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"):
            if row.get(name) is not None:
                errors[name] = "value must be null"
                entity.append("failed conditional validation given value of field 'protocol'")
    if entity:
        errors["@entity"] = entity
    return errors or None


def _nonzero_timeout() -> Field:
    return Field("integer", default=60000, between=(1, 2**31 - 2))


SERVICES = Entity(
    name="services",
    endpoint_key="name",
    fields=(
        ("id", uuid_field()),
        ("created_at", timestamp_field()),
        ("updated_at", timestamp_field()),
        ("name", utf8_name_field()),
        ("retries", Field("integer", default=5, between=(0, 32767))),
        ("protocol", Field("string", required=True, default="http", one_of=PROTOCOLS)),
        ("host", Field("string", required=True, checks=(checks.host,))),
        ("port", Field("integer", required=True, default=80, between=(0, 65535))),
        ("path", Field("string", starts_with="/", checks=(checks.service_path,))),
        ("connect_timeout", _nonzero_timeout()),
        ("write_timeout", _nonzero_timeout()),
        ("read_timeout", _nonzero_timeout()),
        ("tags", tags_field()),
        # Kong references its `certificates` entity, which servegate does not store: keep the field
        # for shape compatibility; it can only be set with https/tls and has no table to point at.
        ("client_certificate", Field("foreign", reference="certificates")),
        ("tls_verify", Field("boolean")),
        ("tls_verify_depth", Field("integer", between=(0, 64))),
        ("ca_certificates", Field("array", elements=Field("string", uuid=True))),
        ("enabled", Field("boolean", required=True, default=True)),
    ),
    entity_checks=(_service_checks,),
    shorthands={"url": expand_service_url},
)


# ---------------------------------------------------------------------------------------------
# routes

_TLS_PROTOCOLS = ("grpcs", "https", "tls", "tls_passthrough")
_ROUTE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("http", "https"),
    ("tcp", "tls", "udp"),
    ("tls_passthrough",),
    ("grpc", "grpcs"),
)


def _route_protocols(row: Mapping[str, Any]) -> list[str]:
    return [p for p in _endpoint_set(row.get("protocols")) if isinstance(p, str)]


def route_subschema(row: Mapping[str, Any]) -> str | None:
    """Kong picks a route subschema by the first protocol it knows: http, stream or grpc."""
    for p in _route_protocols(row):
        if p in ("http", "https"):
            return "http"
        if p in ("tcp", "tls", "udp", "tls_passthrough"):
            return "stream"
        if p in ("grpc", "grpcs"):
            return "grpc"
    return None


def _protocol_groups(value: Any) -> str | None:
    """Kong's mutually_exclusive_subsets on routes.protocols."""
    seen: list[tuple[str, ...]] = []
    for p in _endpoint_set(value):
        for group in _ROUTE_GROUPS:
            if p in group and group not in seen:
                seen.append(group)
    if len(seen) <= 1:
        return None
    return "these sets are mutually exclusive: " + ", ".join(f"({_quoted(g)})" for g in seen)


def _route_defaults(row: Mapping[str, Any]) -> dict[str, Any]:
    # gRPC routes never strip the path: the grpc subschema's default differs.
    return {"strip_path": False} if route_subschema(row) == "grpc" else {}


def _must_set_one_of(row: Mapping[str, Any], names: tuple[str, ...], proto_text: str) -> str | None:
    if any(_nonempty(row.get(n)) for n in names):
        return None
    return f"must set one of {_quoted(names)} when 'protocols' is {proto_text}"


def _route_checks(row: Mapping[str, Any]) -> dict[str, Any] | None:
    errors: dict[str, Any] = {}
    entity: list[str] = []
    protocols = _route_protocols(row)

    # snis only with TLS-capable protocols
    if protocols and not any(p in _TLS_PROTOCOLS for p in protocols):
        snis = row.get("snis")
        if isinstance(snis, list) and len(snis) != 0:
            errors["snis"] = "length must be 0"
            entity.append(
                "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
            )

    kind = route_subschema(row)
    forbidden: tuple[str, ...] = ()
    if kind == "http":
        forbidden = ("sources", "destinations")
        suffix = "'http' or 'https'"
        if "https" in protocols:
            msg = _must_set_one_of(row, ("methods", "hosts", "headers", "paths", "snis"), "'https'")
        else:
            msg = _must_set_one_of(row, ("methods", "hosts", "headers", "paths"), "'http'")
    elif kind == "stream":
        forbidden = ("methods", "hosts", "paths", "headers")
        suffix = "'tcp', 'tls', 'tls_passthrough' or 'udp'"
        msg = None
        if all(p in ("tcp", "tls", "udp") for p in protocols):
            msg = _must_set_one_of(row, ("sources", "destinations", "snis"), "'tcp', 'tls' or 'udp'")
        if (
            msg is None
            and protocols == ["tls_passthrough"] * len(protocols)
            and not _nonempty(row.get("snis"))
        ):
            msg = "must set snis when 'protocols' is 'tls_passthrough'"
    elif kind == "grpc":
        forbidden = ("methods", "sources", "destinations")
        suffix = "'grpc' or 'grpcs'"
        if row.get("strip_path") is True:
            errors["strip_path"] = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
        if "grpcs" in protocols:
            msg = _must_set_one_of(row, ("hosts", "headers", "paths", "snis"), "'grpcs'")
        else:
            msg = _must_set_one_of(row, ("hosts", "headers", "paths"), "'grpc'")
    else:
        msg = None
        suffix = ""
    for name in forbidden:
        if row.get(name) is not None:
            errors[name] = f"cannot set '{name}' when 'protocols' is {suffix}"
    if msg:
        entity.append(msg)
    if entity:
        errors["@entity"] = entity
    return errors or None


def _unknown_route_type(row: Mapping[str, Any]) -> dict[str, Any] | None:
    value = row.get("protocols")
    if isinstance(value, list) and route_subschema(row) is None:
        return {"protocols": f"unknown type: {value[0] if value else 'nil'}"}
    return None


ROUTES = Entity(
    name="routes",
    endpoint_key="name",
    fields=(
        ("id", uuid_field()),
        ("created_at", timestamp_field()),
        ("updated_at", timestamp_field()),
        ("name", utf8_name_field()),
        (
            "protocols",
            Field(
                "set",
                required=True,
                default=["http", "https"],
                len_min=1,
                elements=Field("string", one_of=PROTOCOLS),
                checks=(_protocol_groups,),
            ),
        ),
        (
            "https_redirect_status_code",
            Field("integer", required=True, default=426, one_of=(426, 301, 302, 307, 308)),
        ),
        ("strip_path", Field("boolean", required=True, default=True)),
        ("preserve_host", Field("boolean", required=True, default=False)),
        ("request_buffering", Field("boolean", required=True, default=True)),
        ("response_buffering", Field("boolean", required=True, default=True)),
        ("tags", tags_field()),
        ("service", Field("foreign", reference="services")),
        ("snis", Field("set", elements=Field("string", checks=(checks.wildcard_host,)))),
        ("sources", _ip_port_set()),
        ("destinations", _ip_port_set()),
        ("methods", Field("set", elements=Field("string", checks=(checks.http_method,)))),
        ("hosts", Field("array", elements=Field("string", checks=(checks.route_host,)))),
        ("paths", Field("array", elements=Field("string", checks=(checks.route_path,)))),
        (
            "headers",
            Field(
                "map",
                keys=Field("string", checks=(checks.route_header_name,)),
                values=Field("array", elements=Field("string")),
            ),
        ),
        ("regex_priority", Field("integer", default=0)),
        ("path_handling", Field("string", default="v0", one_of=("v0", "v1"))),
    ),
    entity_checks=(_route_checks,),
    subschema_key="protocols",
    default_overrides=_route_defaults,
    unknown_subschema=_unknown_route_type,
)


# ---------------------------------------------------------------------------------------------
# consumers


def _consumer_checks(row: Mapping[str, Any]) -> list[str] | None:
    if _nonempty(row.get("custom_id")) or _nonempty(row.get("username")):
        return None
    return ["at least one of these fields must be non-empty: 'custom_id', 'username'"]


CONSUMERS = Entity(
    name="consumers",
    endpoint_key="username",
    cached=True,
    fields=(
        ("id", uuid_field()),
        ("created_at", timestamp_field()),
        ("updated_at", timestamp_field()),
        ("username", unique_string_field()),
        ("custom_id", unique_string_field()),
        ("tags", tags_field()),
    ),
    entity_checks=(_consumer_checks,),
    list_filter="custom_id",
)


# ---------------------------------------------------------------------------------------------
# plugins (the `config` record is picked from the plugin registry by `name`)

def _unknown_plugin(row: Mapping[str, Any]) -> dict[str, Any] | None:
    from servegate.schema.plugins import get_plugin

    name = row.get("name")
    if isinstance(name, str) and get_plugin(name) is None:
        return {"name": f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"}
    return None


PLUGINS = Entity(
    name="plugins",
    endpoint_key="instance_name",
    cache_key=("name", "route", "service", "consumer"),
    fields=(
        ("id", uuid_field()),
        ("name", Field("string", required=True)),
        ("instance_name", utf8_name_field()),
        ("created_at", timestamp_field()),
        ("updated_at", timestamp_field()),
        ("route", Field("foreign", reference="routes", on_delete="cascade")),
        ("service", Field("foreign", reference="services", on_delete="cascade")),
        ("consumer", Field("foreign", reference="consumers", on_delete="cascade")),
        # Abstract: no fields here; validate.py specializes it with the plugin's config schema.
        ("config", Field("record", required=True)),
        ("protocols", protocols_field()),
        ("enabled", Field("boolean", required=True, default=True)),
        ("tags", tags_field()),
    ),
    subschema_key="name",
    unknown_subschema=_unknown_plugin,
)


# ---------------------------------------------------------------------------------------------
# the registry

# Dependency order: parents before children (store DDL, declarative import, snapshot loads). Core entities
# first; a plugin's entities follow when the plugin registers (servegate.plugins.register).
ENTITIES: dict[str, Entity] = {e.name: e for e in (SERVICES, ROUTES, CONSUMERS, PLUGINS, UPSTREAMS, TARGETS)}


def register_entity(entity: Entity) -> None:
    """Add a plugin-owned entity (idempotent for the same declaration)."""
    known = ENTITIES.get(entity.name)
    if known is not None and known is not entity:
        raise ValueError(f"entity '{entity.name}' is already declared")
    ENTITIES[entity.name] = entity


def unregister_entity(name: str) -> None:
    ENTITIES.pop(name, None)


def declared() -> dict[str, Entity]:
    """Every declared entity, the loaded plugins' included (loads the bundled plugins first)."""
    from servegate.plugins import load_all

    load_all()
    return ENTITIES


def get_entity(name: str) -> Entity | None:
    """Look up by table name or Admin collection name (an entity's `admin_name`)."""
    entities = declared()
    if name in entities:
        return entities[name]
    for e in entities.values():
        if e.admin_name == name:
            return e
    return None


def __getattr__(attr: str) -> Entity:
    # A plugin's entity is reachable here under the same kind of name as a core one (its table name in
    # upper case), once the plugins are loaded.
    if attr.isupper():
        entity = declared().get(attr.lower())
        if entity is not None:
            return entity
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
