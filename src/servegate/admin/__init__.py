"""Kong-compatible Admin API (aiohttp), generated from the entity declarations."""

from servegate.admin.app import create_admin_app

__all__ = ["create_admin_app"]
