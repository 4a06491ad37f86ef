"""Kong-compatible Admin API, generated from the entity declarations, on our own small HTTP/1.1 server."""

from servegate.admin.app import AdminApp, create_admin_app, serve
from servegate.admin.server import AdminServer

__all__ = ["AdminApp", "AdminServer", "create_admin_app", "serve"]
