"""Bridge between the relay and the plugin phase plan (servegate.plugins). Only used when plugins apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange
    from servegate.proxy.upstream import UpstreamProtocol


def run_access(ex: Exchange, plugins: Any, snapshot: Any) -> bool:
    """Run the access phase. True when the exchange was finished or continues asynchronously."""
    return False


def run_header_filter(ex: Exchange, up: UpstreamProtocol) -> list[tuple[bytes, bytes]] | None:
    return None


def run_log(ex: Exchange) -> None:
    return None
