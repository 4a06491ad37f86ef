"""Which `Host` a loopback Admin API listener answers: a defence against DNS rebinding.

A page on `http://evil.test` can make its own name resolve to 127.0.0.1 after loading; the browser then counts
the loopback Admin API as the page's own origin and lets it read and write everything. Such requests still say
`Host: evil.test`, so a listener bound to a loopback address answers only the names that mean this machine:
`localhost` (trailing dot allowed), any loopback IP literal (127.0.0.0/8, `[::1]`) and the listener's own
address, each with any port. Anything else gets 421 Misdirected Request (RFC 9110 §15.5.20: this server is not
the authority for the name the request was sent to); a Host that does not parse, or two of them, gets 400.

A request without Host (HTTP/1.0) names nothing to rebind and is served. Listeners on other addresses (the
Docker stack's 0.0.0.0:8001, reached by the setup job as `kong:8001`) accept any Host: browsers on the host
cannot reach them by a rebound name (the port is not published), and their clients use service names.
"""

from __future__ import annotations

import ipaddress

MISDIRECTED = ("invalid Host header: this Admin API listener only answers to localhost, 127.0.0.1, [::1] "
               "or its own address")


def is_loopback(host: str) -> bool:
    """True for a listener address on loopback only (127.0.0.0/8, ::1, `localhost`)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """The name part of a Host header value, lower-cased, without port or IPv6 brackets; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return name or None
    name, sep, port = value.partition(":")
    if not name or (sep and not port.isdigit()):
        return None
    return name


def loopback_name(name: str, own: frozenset[str]) -> bool:
    if name in own or name.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_host(values: list[str], own: frozenset[str]) -> tuple[int, str] | None:
    """None when the request's Host values are acceptable on a loopback listener, else (status, message)."""
    if not values:
        return None
    if len(values) > 1:
        return 400, "Bad request"
    name = host_name(values[0])
    if name is None:
        return 400, "Bad request"
    if not loopback_name(name, own):
        return 421, MISDIRECTED
    return None
