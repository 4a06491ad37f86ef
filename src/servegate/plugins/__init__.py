"""Plugins: handler registry and loading.

`load_all(entries)` imports the plugin modules the `plugins` setting names (default: every bundled one);
each module calls `register(PluginClass)`, which records the handler here, its config schema in
`servegate.schema.plugins`, its own entities (`daos`) in `servegate.schema.entities` and its migrations
(`migrations`) in `servegate.store.migrations`. Only registered plugins are enabled.

How an entry of the `plugins` setting is resolved (docs/configuration.md, "Plugins"):
- `bundled`: every bundled plugin; `off` (alone): none;
- the name of a bundled plugin (`key-auth`): that one;
- any other name `my-plugin`: the module named by the entry point `my-plugin` in the group
  `servegate.plugins` of an installed distribution, else the module `servegate_plugin_my_plugin`.
The module must register a plugin of that name.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from servegate.plugins.base import Context, Exit, Lookups, Plugin

__all__ = ["Context", "Exit", "Lookups", "Plugin", "BUNDLED", "PluginLoadError", "configure", "get_handler",
           "handlers", "load_all", "prepare_node", "register"]

# Module names of the bundled plugins, in no particular order (the runner orders by PRIORITY).
BUNDLED: tuple[str, ...] = ("key_auth", "rate_limiting", "prometheus", "model_router")

ENTRY_POINT_GROUP = "servegate.plugins"
MODULE_PREFIX = "servegate_plugin_"

_HANDLERS: dict[str, Plugin] = {}
_loaded = False


class PluginLoadError(Exception):
    """A plugin named in the `plugins` setting cannot be loaded (start-up stops with this one line)."""


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


def load_all(entries: Sequence[str] | None = None) -> dict[str, Plugin]:
    """Import the plugins `entries` name (the `plugins` setting; None: `bundled`) once per process, and
    register them; returns the handlers. Raises PluginLoadError naming the entry that failed."""
    global _loaded
    if not _loaded:
        for entry in ("bundled",) if entries is None else entries:
            _load_entry(entry)
        _loaded = True
    return dict(_HANDLERS)


def _load_entry(entry: str) -> None:
    if entry == "off":
        return
    if entry == "bundled":
        for mod in BUNDLED:
            importlib.import_module(f"servegate.plugins.{mod}")
        return
    bundled = entry.replace("-", "_")
    if bundled in BUNDLED:
        importlib.import_module(f"servegate.plugins.{bundled}")
        return
    module = module_for(entry)
    try:
        importlib.import_module(module)
    except Exception as e:  # whatever the plugin's import raises, start-up reports it in one line
        raise PluginLoadError(f"plugin '{entry}': cannot import module {module}: {type(e).__name__}: {e}") from None
    if entry not in _HANDLERS:
        raise PluginLoadError(f"plugin '{entry}': module {module} registered no plugin named '{entry}'")


def module_for(name: str) -> str:
    """The module a custom plugin name loads: its `servegate.plugins` entry point, else the naming rule."""
    # Imported here: importlib.metadata (email, zipfile, csv ...) costs ~1 MB per process, and only a node
    # that names a custom plugin needs it.
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        return ep.module
    return MODULE_PREFIX + name.replace("-", "_")


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
