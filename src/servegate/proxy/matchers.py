"""A route compiled into matchers: one per group of its paths (all its regexes, or its prefixes of one length,
as Kong splits them), each with its category checks (methods, hosts, headers, SNIs) and its rank key. A matcher
never changes once built: routers built from one another share them (router_build.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from servegate.proxy.paths import join_v0, join_v1

__all__ = ["MAX_HEADER_COUNT", "Matcher", "compile_route", "split_host_port"]

# The router's logger: these lines are about routing, wherever the code that writes them lives.
log = logging.getLogger("servegate.proxy.router")

Row = dict[str, Any]

MAX_HEADER_COUNT = 255

_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (``[v6]:port`` too); a non-numeric port is left in the host, as Kong does."""
    if value.startswith("["):
        end = value.find("]")
        if end > 0:
            rest = value[end + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                return value[: end + 1], int(rest[1:])
        return value, None
    colon = value.find(":")
    if colon < 0:
        return value, None
    port = value[colon + 1 :]
    if port.isdigit():
        return value[:colon], int(port)
    return value, None


class _HostRule:
    __slots__ = ("kind", "port", "value")

    def __init__(self, spec: str) -> None:
        host, port = split_host_port(spec.lower())
        self.port = port
        if host.startswith("*"):
            self.kind = 1  # suffix: "*.example.com" -> ends with ".example.com"
            self.value = host[1:]
        elif host.endswith("*"):
            self.kind = 2  # prefix: "example.*" -> starts with "example."
            self.value = host[:-1]
        else:
            self.kind = 0
            self.value = host

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.kind == 0:
            return host == self.value
        if self.kind == 1:
            return host.endswith(self.value)
        return host.startswith(self.value)


class _HeaderRule:
    __slots__ = ("names", "plain", "regexes")

    def __init__(self, name: str, values: list[str]) -> None:
        lowered = name.lower()
        # Kong compares names with "-" and "_" folded together.
        dashed = lowered.replace("_", "-")
        self.names = (dashed,) if dashed == lowered else (dashed, lowered)
        plain: set[str] = set()
        regexes: list[re.Pattern[str]] = []
        for raw in values:
            value = raw.lower()
            if value.startswith("~*"):
                regexes.append(re.compile(value[2:]))
            else:
                plain.add(value)
        self.plain = frozenset(plain)
        self.regexes = tuple(regexes)

    def matches(self, headers: Mapping[str, Any]) -> bool:
        for name in self.names:
            got = headers.get(name)
            if got is None:
                continue
            for value in (got,) if isinstance(got, str) else got:
                low = value.lower()
                if low in self.plain:
                    return True
                for rx in self.regexes:
                    if rx.search(low):
                        return True
        return False


class Matcher:
    """One (route, path group) pair with its category checks; path is tested by the index that holds it.

    Immutable once built: indexes built from one another share matchers."""

    __slots__ = (
        "headers", "hosts", "index_hosts", "index_keys", "join", "methods", "order", "prefixes", "priority",
        "regexes", "route", "route_id", "service", "service_path", "snis", "strip",
    )

    def __init__(self, route: Row, service: Row | None, paths: list[str] | None) -> None:
        self.route = route
        self.route_id = str(route.get("id") or "")
        self.service = service
        self.service_path = _service_path(service)
        self.strip = bool(route.get("strip_path"))
        # Kong's traditional router honoured the deprecated "v1" joining; chosen once here, not per request.
        self.join = join_v1 if route.get("path_handling") == "v1" else join_v0
        methods = route.get("methods")
        self.methods = frozenset(methods) if methods else None
        host_specs = route.get("hosts")
        self.hosts = tuple(_HostRule(h) for h in host_specs) if host_specs else None
        # The hosts a bucket files it under; () when it has no host or a wildcard one (bucket.other).
        plain = self.hosts is not None and all(h.kind == 0 for h in self.hosts)
        self.index_hosts = tuple(sorted({h.value for h in self.hosts or ()})) if plain else ()
        sni_specs = route.get("snis")
        # SNI values: a trailing dot of a FQDN is not used for routing.
        self.snis = (
            tuple(_HostRule(v[:-1] if len(v) > 1 and v.endswith(".") and not v.endswith("*") else v) for v in sni_specs)
            if sni_specs
            else None
        )
        header_specs = route.get("headers") or {}
        self.headers = tuple(_HeaderRule(k, list(v or ())) for k, v in header_specs.items())
        self.prefixes: tuple[str, ...] = ()
        self.regexes: tuple[re.Pattern[str], ...] = ()
        self.index_keys: tuple[str, ...] = ("",)
        if paths:
            if paths[0].startswith("~"):
                self.regexes = tuple(_compile_path_regex(p[1:]) for p in paths)
                self.index_keys = tuple(sorted({_literal_head(p[1:]) for p in paths}))
            else:
                self.prefixes = tuple(paths)
                self.index_keys = tuple(sorted(set(paths)))
        self.priority = _priority(route, paths, len(self.headers))
        # The rank: a higher order wins. Never "" (router.py starts a lookup from "", below every matcher).
        self.order = _order_key(self.priority, self.route_id)

    def matches_rest(
        self, method: str, host: str | None, port: int | None, headers: Mapping[str, Any] | None
    ) -> bool:
        """Everything but the path."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.hosts is not None:
            if host is None:
                return False
            for host_rule in self.hosts:
                if host_rule.matches(host, port):
                    break
            else:
                return False
        if self.headers:
            if headers is None:
                return False
            for header_rule in self.headers:
                if not header_rule.matches(headers):
                    return False
        return True


def _service_path(service: Row | None) -> str:
    if service is None:
        return "/"
    return service.get("path") or "/"


_LEADING_FLAGS = re.compile(r"^(?:\(\?[aiLmsux]+\))+")


def _compile_path_regex(pattern: str) -> re.Pattern[str]:
    """Kong prepends "^" to the route's regex (so with a top-level "|" only the first alternative is
    anchored) and searches. Named groups use PCRE/Rust syntax, which Python spells (?P<name>...); leading
    inline flags must come before the "^" in Python."""
    body = _NAMED_GROUP.sub("(?P<", pattern)
    flags = _LEADING_FLAGS.match(body)
    lead = flags.group(0) if flags else ""
    return re.compile(lead + "^" + body[len(lead):])


_REGEX_META = frozenset(".^$*+?{}[]()|\\")


def _literal_head(pattern: str) -> str:
    """Text every path matching ``^pattern`` starts with ("" when unsure); lets regexes share the index."""
    if "|" in pattern:  # an alternative could start anywhere
        return ""
    end = 0
    while end < len(pattern) and pattern[end] not in _REGEX_META:
        end += 1
    if end < len(pattern) and pattern[end] in "?*{":  # the last literal may occur zero times
        end -= 1
    return pattern[:max(end, 0)]


def _priority(route: Row, paths: list[str] | None, header_count: int) -> tuple[int, ...]:
    """Kong's priority fields, most significant first (compared as a tuple instead of packed bits)."""
    weight = 0
    for field in ("sources", "destinations", "methods", "hosts", "snis"):
        if route.get(field):
            weight += 1
    if header_count:
        weight += 1
    hosts = route.get("hosts")
    plain_hosts = hosts is not None and not any("*" in h for h in hosts)
    regex = False
    length = 0
    if paths:
        weight += 1
        if paths[0].startswith("~"):
            regex = True
        else:
            length = len(paths[0].encode("utf-8"))
    regex_priority = int(route.get("regex_priority") or 0) if regex else 0
    return (
        weight,
        int(plain_hosts),
        min(header_count, MAX_HEADER_COUNT),
        int(regex),
        regex_priority,
        length,
    )


def _order_key(priority: tuple[int, ...], route_id: str) -> str:
    """(priority, route id) as one string that sorts the same way: comparing strings is several times cheaper
    than tuples. Fixed-width hex priority fields (regex_priority made non-negative; it and the path length
    clamped to 32 bits, beyond any real configuration), then the id."""
    weight, plain_hosts, header_count, regex, regex_priority, length = priority
    shifted = min(max(regex_priority, -0x80000000), 0x7FFFFFFF) + 0x80000000
    # %-formatting: a third cheaper than the same f-string, and this runs for every fresh matcher.
    return "%x%x%02x%x%08x%08x%s" % (  # noqa: UP031
        weight, plain_hosts, header_count, regex, shifted, min(length, 0xFFFFFFFF), route_id
    )


def _group_paths(paths: list[str] | None) -> list[list[str] | None]:
    """Kong splits a route's paths into one group for all regexes and one per prefix length."""
    if not paths:
        return [None]
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(-1 if p.startswith("~") else len(p.encode("utf-8")), []).append(p)
    return list(groups.values())


def compile_route(route: Row, service: Row | None) -> tuple[Matcher, ...]:
    """The route's matchers, one per path group; a group with an invalid regex is logged and left out."""
    matchers: list[Matcher] = []
    for group in _group_paths(route.get("paths")):
        try:
            matchers.append(Matcher(route, service, group))
        except re.error as exc:
            log.error("route %s skipped: invalid regex: %s", route.get("id"), exc)
    return tuple(matchers)
