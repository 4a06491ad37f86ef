"""The services `url` shorthand, splitting URLs the way LuaSocket's `url.parse` does.

LuaSocket is lenient (no scheme validation, no lower-casing, the path is whatever is left),
so Kong's results differ from `urllib.parse` in corner cases; we reproduce LuaSocket's.
"""

from __future__ import annotations

import re
from typing import Any

_SCHEME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+\-.]*):")
_AUTHORITY = re.compile(r"^//([^/]*)")


def parse_url(url: str) -> dict[str, str] | None:
    """Split into scheme, authority, userinfo, host, port, path, params, query, fragment."""
    if url == "":
        return None
    parsed: dict[str, str] = {}
    rest = url
    m = _SCHEME.match(rest)
    if m:
        parsed["scheme"] = m.group(1)
        rest = rest[m.end() :]
    m = _AUTHORITY.match(rest)
    if m:
        parsed["authority"] = m.group(1)
        rest = rest[m.end() :]
    i = rest.find("#")
    if i != -1:
        parsed["fragment"] = rest[i + 1 :]
        rest = rest[:i]
    i = rest.find("?")
    if i != -1:
        parsed["query"] = rest[i + 1 :]
        rest = rest[:i]
    i = rest.find(";")
    if i != -1:
        parsed["params"] = rest[i + 1 :]
        rest = rest[:i]
    if rest != "":
        parsed["path"] = rest
    authority = parsed.get("authority")
    if authority is None:
        return parsed
    m = re.match(r"^([^@]*)@", authority)
    if m:
        parsed["userinfo"] = m.group(1)
        authority = authority[m.end() :]
    m = re.search(r":([^:\]]*)$", authority)
    if m:
        parsed["port"] = m.group(1)
        authority = authority[: m.start()]
    if authority != "":
        v6 = re.fullmatch(r"\[(.+)\]", authority, re.S)
        parsed["host"] = v6.group(1) if v6 else authority
    return parsed


def _to_number(s: str) -> int | float | None:
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else f


def expand_service_url(value: Any) -> dict[str, Any]:
    """services.url -> protocol/host/port/path (overwriting same-named input fields)."""
    parsed = parse_url(str(value))
    if parsed is None:
        return {}
    raw_port = parsed.get("port")
    port: Any = _to_number(raw_port) if raw_port is not None else None
    by_port = {80: "http", 443: "https"}.get(port) if isinstance(port, int) else None
    protocol = parsed.get("scheme") or by_port or "http"
    if port is None:
        port = raw_port  # a non-numeric port is kept as a string and fails validation
    if port is None:
        port = {"http": 80, "https": 443}.get(protocol, 80)
    return {
        "protocol": protocol,
        "host": parsed.get("host"),
        "port": port,
        "path": parsed.get("path"),
    }
