"""Plugin schema registry: which plugins exist and how their `config` is shaped.

Bundled plugins register at import (`servegate.plugins.load_all()`); the plugins entity
validates `config` against the schema registered under the row's `name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servegate.schema.entities import HTTP_PROTOCOLS, PROTOCOLS
from servegate.schema.fields import EntityCheck, Field


@dataclass(frozen=True)
class PluginSchema:
    name: str
    priority: int
    version: str
    config: Field  # a record
    # The plugin cannot be scoped to a consumer (`consumer: value must be null`).
    no_consumer: bool = False
    # ... to a route / to a service (`route: value must be null`).
    no_route: bool = False
    no_service: bool = False
    protocols_default: tuple[str, ...] = HTTP_PROTOCOLS
    # Values allowed in `protocols` (register_plugin defaults it to protocols_default, as Kong's
    # protocols_http typedef does for key-auth and rate-limiting).
    protocols_allowed: tuple[str, ...] = PROTOCOLS
    # Checks over the whole plugin row, reported under "@entity" (or per field for a dict).
    # Example: rate-limiting's "at least one of these fields must be non-empty: 'config.second', ...".
    entity_checks: tuple[EntityCheck, ...] = ()
    # Deprecated config aliases: name -> (Field, value -> dict deep-merged into config).
    config_shorthands: Mapping[str, tuple[Field, Callable[[Any], dict[str, Any]]]] = field(
        default_factory=dict
    )
    # Aliases echoed in output: name -> path inside config (also used to detect conflicting input).
    config_echo: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_REGISTRY: dict[str, PluginSchema] = {}


def register_plugin(
    name: str,
    *,
    priority: int,
    version: str,
    config: Field,
    no_consumer: bool = False,
    no_route: bool = False,
    no_service: bool = False,
    protocols_default: tuple[str, ...] = HTTP_PROTOCOLS,
    protocols_allowed: tuple[str, ...] | None = None,
    entity_checks: tuple[EntityCheck, ...] = (),
    config_shorthands: Mapping[str, tuple[Field, Callable[[Any], dict[str, Any]]]] | None = None,
    config_echo: Mapping[str, tuple[str, ...]] | None = None,
) -> PluginSchema:
    """Register (or replace) a plugin's schema. Returns the stored PluginSchema."""
    if config.type != "record":
        raise ValueError(f"plugin {name!r}: config must be a record field")
    schema = PluginSchema(
        name=name,
        priority=priority,
        version=version,
        config=config,
        no_consumer=no_consumer,
        no_route=no_route,
        no_service=no_service,
        protocols_default=tuple(protocols_default),
        # Plugins whose default is the http subsystem (key-auth, rate-limiting) accept only those.
        protocols_allowed=tuple(protocols_allowed if protocols_allowed is not None else protocols_default),
        entity_checks=tuple(entity_checks),
        config_shorthands=dict(config_shorthands or {}),
        config_echo={k: tuple(v) for k, v in (config_echo or {}).items()},
    )
    _REGISTRY[name] = schema
    return schema


def unregister_plugin(name: str) -> None:
    """Remove a plugin (tests register throw-away schemas)."""
    _REGISTRY.pop(name, None)


def get_plugin(name: str) -> PluginSchema | None:
    return _REGISTRY.get(name)


def enabled_plugins() -> list[str]:
    return sorted(_REGISTRY)
