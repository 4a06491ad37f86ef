"""Bundled plugins: handler registry and loading.

`load_all()` imports every bundled plugin module; each module calls `register(PluginClass)`,
which records the handler here, its config schema in `servegate.schema.plugins`, its own entities
(`daos`) in `servegate.schema.entities` and its migrations (`migrations`) in `servegate.store.migrations`.
"""

from __future__ import annotations

import importlib
from typing import Any

from servegate.plugins.base import Context, Exit, Lookups, Plugin

__all__ = ["Context", "Exit", "Lookups", "Plugin", "BUNDLED", "configure", "get_handler", "handlers", "load_all",
           "prepare_node", "register"]

# Module names of the bundled plugins, in no particular order (the runner orders by PRIORITY).
BUNDLED: tuple[str, ...] = ("key_auth", "rate_limiting")

_HANDLERS: dict[str, Plugin] = {}
_loaded = False


def _register_schema(cls: type[Plugin]) -> None:
    from servegate.schema.plugins import register_plugin

    register_plugin(
        cls.name,
        priority=cls.PRIORITY,
        version=cls.VERSION,
        config=cls.config_schema,
        no_consumer=cls.no_consumer,
        protocols_default=cls.protocols_default,
        entity_checks=cls.entity_checks,
        config_shorthands=cls.config_shorthands,
        config_echo=cls.config_echo,
    )


def _register_daos(cls: type[Plugin]) -> None:
    """Kong's daos.lua and migrations/: the plugin's own entities and the migrations of its subsystem."""
    from servegate.schema.entities import register_entity
    from servegate.store.migrations import register_migrations

    for entity in cls.daos:
        register_entity(entity)
    if cls.migrations:
        register_migrations(cls.name, cls.migrations)


def register(cls: type[Plugin]) -> type[Plugin]:
    """Register a plugin class (usable as a decorator). Idempotent per name."""
    if cls.name not in _HANDLERS:
        _HANDLERS[cls.name] = cls()
        _register_schema(cls)
        _register_daos(cls)
    return cls


def load_all() -> dict[str, Plugin]:
    """Import every bundled plugin (registering handlers and schemas); returns the handlers."""
    global _loaded
    if not _loaded:
        for mod in BUNDLED:
            importlib.import_module(f"servegate.plugins.{mod}")
        _loaded = True
    return dict(_HANDLERS)


def configure(settings: Any) -> None:
    """Per-process runtime for plugins: node prefix (local rate-limit counters) and, with
    database=postgres, the DSN the rate-limiting `cluster` policy uses. Call once per worker."""
    from servegate.plugins.ratelimit import configure_from_settings

    configure_from_settings(settings)


def prepare_node(settings: Any) -> None:
    """Once per node, before workers fork: configure this process (inherited by forked workers)
    and create the node-wide rate-limit counter file under the prefix, so every worker maps the
    same table."""
    from servegate.plugins.ratelimit import runtime
    from servegate.plugins.ratelimit.shm import table

    configure(settings)
    table(runtime.counters_path())


def handlers() -> dict[str, Plugin]:
    """Registered handler instances by plugin name (loads the bundled ones first)."""
    if not _loaded:
        load_all()
    return _HANDLERS


def get_handler(name: str) -> Plugin | None:
    return handlers().get(name)
