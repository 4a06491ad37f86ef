"""Which browser origins may use the Admin API: CORS response headers, preflights, cross-origin writes.

The Admin API has no authentication of its own: whoever reaches its (loopback) port may change everything.
A web page open in a browser on the gateway host reaches that port too, so only the origins of the UIs named in
`admin_gui_url` (Kong 3.9's setting; Kong derives its allowed origin from it the same way) are granted CORS
access. Kong itself reflects any `Origin` with credentials allowed; servegate does not:

- a request from an allowed origin gets `Access-Control-Allow-Origin: <origin>` and `...-Credentials: true`;
- a request from any other origin gets no `Access-Control-Allow-*` header, so the browser keeps the response
  from the page; its preflight gets no permission (no Allow-Methods/-Headers);
- a write (POST, PUT, PATCH, DELETE) carrying a foreign `Origin` is refused with 403 before it runs: a form POST
  is a "simple" request that browsers send without any preflight, so hiding the response would not be enough;
- a request without `Origin` is not a browser's cross-origin request (curl, scripts, the /admin-api route):
  it keeps Kong's `Access-Control-Allow-Origin: *`, which grants nothing for credentialed or preflighted use.

Every response says `Vary: Origin`, so no cache hands one origin's answer to another.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from servegate.admin.http import Request, Response
from servegate.admin.responses import Reply, message_reply

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
REFUSED = "cross-origin request refused: origin not allowed by admin_gui_url"


def _origin_parts(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL or an Origin value, default port filled in; None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _host_parts(host: str) -> tuple[str, int | None]:
    """(name, port) of a Host header value, lower-cased, brackets of an IPv6 literal removed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else None


class CorsPolicy:
    """The origins derived from `admin_gui_url` (scheme://host:port of each URL)."""

    __slots__ = ("origins",)

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self.origins = frozenset(p for p in map(_origin_parts, urls) if p is not None)

    @classmethod
    def from_settings(cls, settings: Any) -> CorsPolicy:
        return cls(getattr(settings, "admin_gui_url", None) or ())

    def allowed(self, origin: str) -> bool:
        return bool(self.origins) and _origin_parts(origin) in self.origins

    def check(self, request: Request) -> None:
        """Refuse (403) a write sent by a page of a foreign origin."""
        if request.method in SAFE_METHODS:
            return
        headers = request.headers
        origin = headers.get("Origin")
        if origin is None or self.allowed(origin) or _same_origin(origin, headers.get("Host")):
            return
        raise Reply(message_reply(403, REFUSED))

    def preflight(self, request: Request, resp: Response, methods: str) -> None:
        """The CORS part of an OPTIONS answer (`Allow` itself is the caller's)."""
        headers = request.headers
        origin = headers.get("Origin")
        if origin is not None and not self.allowed(origin):
            return  # no permission for a foreign page
        resp.headers["Access-Control-Allow-Methods"] = methods
        wanted = headers.get("Access-Control-Request-Headers") if origin is not None else None
        resp.headers["Access-Control-Allow-Headers"] = wanted or "Content-Type"

    def decorate(self, request: Request, resp: Response) -> None:
        headers = resp.headers
        headers["Vary"] = "Origin"
        origin = request.headers.get("Origin")
        if origin is None:
            headers["Access-Control-Allow-Origin"] = "*"
        elif self.allowed(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"


def _same_origin(origin: str, host: str | None) -> bool:
    """The page was served by the authority the request is addressed to (Host is checked by the server)."""
    parts = _origin_parts(origin)
    if parts is None or host is None:
        return False
    scheme, name, port = parts
    host_name, host_port = _host_parts(host)
    return (host_name, host_port or _DEFAULT_PORTS[scheme]) == (name, port)
