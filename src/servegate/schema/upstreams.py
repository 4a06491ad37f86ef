"""Kong's `upstreams` and `targets` entities (kong/db/schema/entities/upstreams.lua, targets.lua and the target
normalization of kong/db/dao/targets.lua), declared once like the other core entities and registered with them
in entities.py.

servegate extensions, at the end of the upstream's fields (Kong has none of them; Kong clients never need to
send them, as each has a default):

- `algorithm` also accepts `least-outstanding` (fewest open requests, a stream counted until its last byte,
  weighted) and `prefix-affinity` (hash of the prompt's first `prefix_chars` characters, under a bounded load);
- `prefix_chars`: how many characters of the prompt prefix-affinity hashes;
- `load_factor`: prefix-affinity's bounded-load ε: no target above (1 + ε) × the mean load;
- `retry_on_overload`: a 429 or 503 answered before the first byte reached the client is retried on another
  target (within the service's `retries`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from servegate.schema import checks
from servegate.schema.defaults import record_with_defaults
from servegate.schema.fields import UNIQUE_MAX_BYTES, Entity, EntityCheck, Field
from servegate.schema.typedefs import (
    header_name_field,
    headers_field,
    path_field,
    tags_field,
    timestamp_field,
    timestamp_ms_field,
    unique_string_field,
    uuid_field,
)

HASH_ON: tuple[str, ...] = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")
KONG_ALGORITHMS: tuple[str, ...] = ("consistent-hashing", "least-connections", "round-robin", "latency")
# servegate's own algorithms (see the module docstring)
SERVEGATE_ALGORITHMS: tuple[str, ...] = ("least-outstanding", "prefix-affinity")
ALGORITHMS: tuple[str, ...] = KONG_ALGORITHMS + SERVEGATE_ALGORITHMS
# Algorithms that hash nothing from the request's hash_on: choosing one resets hash_on to "none".
_UNHASHED = ("least-connections", "latency", "least-outstanding", "prefix-affinity")

DEFAULT_TARGET_PORT = 8000
DEFAULT_WEIGHT = 100


# ---------------------------------------------------------------------------------------------
# upstreams


def _name_for_error(value: str) -> str:
    return "Invalid name" if checks.utf8_string(value) else f"Invalid name ('{value}')"


def upstream_name(value: str) -> str | None:
    """A host name: no IP address, no port (it is what a service's `host` names)."""
    res, _ = checks.normalize_ip(value)
    if res is None:
        return f"{_name_for_error(value)}; must be a valid hostname"
    if res["type"] != "name":
        return f"{_name_for_error(value)}; no ip addresses allowed"
    if res["port"] is not None:
        return f"{_name_for_error(value)}; no port allowed"
    return None


def _expand_algorithm(value: Any) -> dict[str, Any]:
    # Kong's shorthand: an algorithm that hashes nothing clears hash_on (then "none", below).
    return {"algorithm": value, "hash_on": None} if value in _UNHASHED else {"algorithm": value}


def _expand_hash_on(value: Any) -> dict[str, Any]:
    # Kong's shorthand: hashing on anything means consistent-hashing; "none" means round-robin.
    if value is None:
        return {"hash_on": "none"}
    if value == "none":
        return {"hash_on": "none", "algorithm": "round-robin"}
    return {"hash_on": value, "algorithm": "consistent-hashing"}


def _seconds(default: float) -> Field:
    return Field("number", default=default, between=(0, 65535))


def _counter() -> Field:
    return Field("integer", default=0, between=(0, 255))


def _statuses(*default: int) -> Field:
    return Field("array", default=list(default), elements=Field("integer", between=(100, 999)))


def _check_type() -> Field:
    return Field("string", default="http", one_of=("tcp", "http", "https", "grpc", "grpcs"))


# Kong's healthchecks record; every counter at 0 (and both intervals) means "off".
HEALTHCHECKS = record_with_defaults(
    (
        "active",
        record_with_defaults(
            ("type", _check_type()),
            ("timeout", _seconds(1)),
            ("concurrency", Field("integer", default=10, between=(1, 2**31))),
            ("http_path", path_field(default="/")),
            ("https_sni", Field("string", checks=(checks.sni,))),
            ("https_verify_certificate", Field("boolean", required=True, default=True)),
            ("headers", headers_field()),
            (
                "healthy",
                record_with_defaults(
                    ("interval", _seconds(0)),
                    ("http_statuses", _statuses(200, 302)),
                    ("successes", _counter()),
                ),
            ),
            (
                "unhealthy",
                record_with_defaults(
                    ("interval", _seconds(0)),
                    ("http_statuses", _statuses(429, 404, 500, 501, 502, 503, 504, 505)),
                    ("tcp_failures", _counter()),
                    ("timeouts", _counter()),
                    ("http_failures", _counter()),
                ),
            ),
        ),
    ),
    (
        "passive",
        record_with_defaults(
            ("type", _check_type()),
            (
                "healthy",
                record_with_defaults(
                    (
                        "http_statuses",
                        _statuses(200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                  300, 301, 302, 303, 304, 305, 306, 307, 308),
                    ),
                    ("successes", _counter()),
                ),
            ),
            (
                "unhealthy",
                record_with_defaults(
                    ("http_statuses", _statuses(429, 500, 503)),
                    ("tcp_failures", _counter()),
                    ("timeouts", _counter()),
                    ("http_failures", _counter()),
                ),
            ),
        ),
    ),
    ("threshold", Field("number", default=0, between=(0, 100))),
)

_UPSTREAM_FIELDS: tuple[tuple[str, Field], ...] = (
    ("id", uuid_field()),
    ("created_at", timestamp_field()),
    ("name", dataclasses.replace(unique_string_field(upstream_name), required=True)),
    ("updated_at", timestamp_field()),
    ("algorithm", Field("string", default="round-robin", one_of=ALGORITHMS)),
    ("hash_on", Field("string", default="none", one_of=HASH_ON)),
    ("hash_fallback", Field("string", default="none", one_of=HASH_ON)),
    ("hash_on_header", header_name_field()),
    ("hash_fallback_header", header_name_field()),
    ("hash_on_cookie", Field("string", checks=(checks.http_token,))),
    ("hash_on_cookie_path", path_field(default="/")),
    ("hash_on_query_arg", Field("string")),
    ("hash_fallback_query_arg", Field("string")),
    ("hash_on_uri_capture", Field("string")),
    ("hash_fallback_uri_capture", Field("string")),
    ("slots", Field("integer", default=10000, between=(10, 2**16))),
    ("healthchecks", HEALTHCHECKS),
    ("tags", tags_field()),
    ("host_header", Field("string", checks=(checks.host_with_optional_port,))),
    # Kong references its `certificates` entity, which servegate does not store (as services.client_certificate).
    ("client_certificate", Field("foreign", reference="certificates")),
    ("use_srv_name", Field("boolean", default=False)),
    # --- servegate extensions (module docstring) ---
    ("prefix_chars", Field("integer", required=True, default=2048, between=(1, 1000000))),
    ("load_factor", Field("number", required=True, default=0.25, between=(0, 100))),
    ("retry_on_overload", Field("boolean", required=True, default=True)),
)


def _upstream_checks() -> tuple[EntityCheck, ...]:
    """Kong's entity checks of upstreams, in Kong's order (the order of their "@entity" messages)."""
    f = dict(_UPSTREAM_FIELDS)

    def cond(if_field: str, if_value: str, then_field: str, **rule: Any) -> EntityCheck:
        return checks.conditional(if_field, if_value, then_field, f[then_field], **rule)

    def fallback_except(hash_on: str) -> tuple[str, ...]:
        return tuple(h for h in HASH_ON if h != hash_on)

    return (
        cond("hash_on", "header", "hash_on_header", required=True),
        cond("hash_fallback", "header", "hash_fallback_header", required=True),
        cond("hash_on", "cookie", "hash_on_cookie", required=True),
        cond("hash_fallback", "cookie", "hash_on_cookie", required=True),
        cond("hash_on", "none", "hash_fallback", one_of=("none",)),
        cond("hash_on", "cookie", "hash_fallback", one_of=("none",)),
        cond("hash_on", "consumer", "hash_fallback", one_of=fallback_except("consumer")),
        cond("hash_on", "ip", "hash_fallback", one_of=fallback_except("ip")),
        # (Kong lists path's allowed fallbacks in another order: "none, consumer, header, cookie, query_arg, ip,
        # uri_capture"; its message follows that order)
        cond("hash_on", "path", "hash_fallback",
             one_of=("none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture")),
        checks.distinct("hash_on_header", "hash_fallback_header"),
        cond("hash_on", "query_arg", "hash_on_query_arg", required=True),
        cond("hash_fallback", "query_arg", "hash_fallback_query_arg", required=True),
        checks.distinct("hash_on_query_arg", "hash_fallback_query_arg"),
        cond("hash_on", "uri_capture", "hash_on_uri_capture", required=True),
        cond("hash_fallback", "uri_capture", "hash_fallback_uri_capture", required=True),
        checks.distinct("hash_on_uri_capture", "hash_fallback_uri_capture"),
    )


UPSTREAMS = Entity(
    name="upstreams",
    endpoint_key="name",
    fields=_UPSTREAM_FIELDS,
    entity_checks=_upstream_checks(),
    # Kong's shorthand_fields, in Kong's order: algorithm first, then hash_on (which sees what algorithm set).
    shorthands={"algorithm": _expand_algorithm, "hash_on": _expand_hash_on},
    null_shorthands=("hash_on",),
)


# ---------------------------------------------------------------------------------------------
# targets


def normalize_target(value: Any) -> tuple[Any, str | None]:
    """Kong's targets DAO: `host[:port]`, the port 8000 when absent, IPv4 without leading zeros, IPv6 expanded
    in brackets (`::1` -> `[0000:0000:0000:0000:0000:0000:0000:0001]:8000`); a name is kept as written."""
    if not isinstance(value, str):
        return value, None  # the type check reports it
    formatted, _ = checks.format_host(value, DEFAULT_TARGET_PORT)
    if formatted is None:
        return None, "Invalid target; not a valid hostname or ip address"
    return formatted, None


def target_address(value: str) -> str | None:
    res, _ = checks.normalize_ip(value)
    if res is not None:
        return None
    if checks.utf8_string(value):
        return "Invalid target; not a valid hostname or ip address"
    return f"Invalid target ('{value}'); not a valid hostname or ip address"


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of a stored (normalized) target: `[::1]:80` -> ("[::1]", 80), `a.test:8000` -> ("a.test",
    8000)."""
    host, _, port = target.rpartition(":")
    return host, int(port)


def address_key(ip: str, port: int) -> str:
    """How an address of a target is named in the node's health table (servegate.proxy.balancer.health), as the
    balancer's workers name it: `ip:port`, an IPv6 address in brackets, the IP as written (an IPv6 literal target
    keeps its expanded form, a resolved name the resolver's text)."""
    ip = ip.strip("[]")
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def parse_address(key: str) -> tuple[str, int] | None:
    """(ip as written, without brackets; port) of an address_key, or None when it is not one."""
    host, sep, port = key.rpartition(":")
    ip = host.strip("[]")
    if not sep or not port.isdigit():
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    return ip, int(port)


def same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two (ip, port) name one address (`::1` is `0000:...:0001`)."""
    return a[1] == b[1] and ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0])


TARGETS = Entity(
    name="targets",
    endpoint_key="target",
    # One row per (upstream, target): a second POST of the same target is a 409.
    cache_key=("upstream", "target"),
    # Kong serves them only under their upstream (/upstreams/{u}/targets, admin/upstreams.py).
    admin_top_level=False,
    fields=(
        ("id", uuid_field()),
        ("created_at", timestamp_ms_field()),
        ("updated_at", timestamp_ms_field()),
        ("upstream", Field("foreign", reference="upstreams", required=True, on_delete="cascade")),
        (
            "target",
            Field("string", required=True, len_max=UNIQUE_MAX_BYTES, checks=(target_address,),
                  normalize=normalize_target),
        ),
        ("weight", Field("integer", default=DEFAULT_WEIGHT, between=(0, 65535))),
        ("tags", tags_field()),
    ),
)


def upstream_targets(rows: Iterable[Mapping[str, Any]], upstream_id: str) -> list[Mapping[str, Any]]:
    """The targets of one upstream among `rows` (e.g. `snapshot.rows("targets")`), newest first (Kong's order
    for `/upstreams/{u}/targets`: created_at, then id, descending)."""
    mine = [r for r in rows if isinstance(r.get("upstream"), Mapping) and r["upstream"].get("id") == upstream_id]
    mine.sort(key=lambda r: (r.get("created_at") or 0, r.get("id") or ""), reverse=True)
    return mine
