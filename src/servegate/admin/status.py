"""Kong's status listener (`status_listen`, off by default): `/status` and plugin status endpoints.

The same server and dispatcher as the Admin API (Kong's error bodies, timeouts, loopback Host check) with a
table of its own: the Admin API's `/status` handler and the endpoints plugins list in `status_api`
(servegate.plugins.api). It runs in the process that serves the Admin API; values the proxy workers share
(servegate.plugins.node.shared) are readable from there.
"""

from __future__ import annotations

from typing import Any

from servegate.admin.app import AdminApp, serve
from servegate.admin.context import NODE_ID, AppState
from servegate.admin.endpoints import add_plugin_endpoints
from servegate.admin.info import status
from servegate.admin.routing import PathTable
from servegate.admin.server import AdminServer
from servegate.plugins import load_all


def build_status_table() -> PathTable:
    table = PathTable()
    table.add("/status", "GET", status)
    add_plugin_endpoints(table, "status_api")
    return table


async def _nothing() -> None:
    return None


async def serve_status(store: Any, settings: Any) -> AdminServer:
    """The status listener on settings.status_listen (OSError when an address cannot be bound)."""
    load_all()
    state = AppState(store=store, settings=settings, on_change=_nothing, node_id=NODE_ID)
    app = AdminApp(build_status_table(), state)
    return await serve(store, settings, on_change=_nothing, listen=settings.status_listen, app=app)
