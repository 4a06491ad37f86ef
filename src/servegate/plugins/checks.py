"""Value checks used by plugin config schemas (Kong typedefs messages).

Each returns None when the value is fine, else Kong's message (schema.fields.Check).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# RFC 3986 unreserved + sub-delims + ":@/%", as Kong's path typedef allows.
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9._~/%:@!$&'()*+,;=-]*$")
_PCT_OK = re.compile(r"%[0-9A-Fa-f]{2}")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_*.-]+$")


def header_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if value == "":
        return "no header name provided"
    if _HEADER_NAME.match(value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


def path(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if "//" in value:
        return "must not have empty segments"
    if not _PATH_CHARS.match(value):
        return f"invalid path: '{value}' (characters outside of the reserved list of RFC 3986 found)"
    rest = _PCT_OK.sub("___", value)
    i = rest.find("%")
    if i >= 0:
        return f"invalid url-encoded value: '{rest[i:i + 3]}'"
    return None


def _split_host(value: str) -> tuple[str, bool, bool] | None:
    """(host, is_ip, has_port) or None when unparsable."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        inner, tail = value[1:end], value[end + 1:]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        return inner, True, tail.startswith(":")
    if value.count(":") > 1:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return value, True, False
    host, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    try:
        ipaddress.IPv4Address(host)
        return host, True, bool(colon)
    except ValueError:
        pass
    if not host or not _HOSTNAME.match(host):
        return None
    return host, False, bool(colon)


def host(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parsed = _split_host(value)
    if parsed is None:
        return f"invalid value: {value}"
    if parsed[2]:
        return "must not have a port"
    return None


def sni(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parsed = _split_host(value)
    if parsed is None:
        return f"invalid value: {value}"
    if parsed[1]:
        return "must not be an IP"
    if parsed[2]:
        return "must not have a port"
    return None
