"""Route protocol enforcement: a route serving only https, requested over plain http (kong-compat §5.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange


def https_allowed(ex: Exchange, route: dict[str, Any]) -> bool:
    """A route serving only https, hit over plain http: 426, or a redirect (https_redirect_status_code)."""
    protocols = route.get("protocols")
    if not protocols or "http" in protocols or "https" not in protocols:
        return True
    scheme = ex.conn.scheme
    if ex.conn.trusted:
        fwd = ex.header(b"x-forwarded-proto").lower()
        if fwd:
            scheme = fwd
    if scheme == b"https":
        return True
    code = route.get("https_redirect_status_code") or 426
    if code == 426:
        ex.fail(426, "Please use HTTPS protocol",
                [("Connection", "Upgrade"), ("Upgrade", "TLS/1.2, HTTP/1.1")], by_kong=True)
    else:
        host = (ex.host or b"").decode("latin-1")
        ex.answer(code, b"", None, [("Location", f"https://{host}{ex.url.decode('latin-1')}")])
    return False
