"""The backends `servegate setup` manages, read from the environment and the optional backends file.

Everything here is the *wanted* state, validated before the job writes anything: a bad URL list or a bad line of
the backends file stops the job before its first request to the Admin API.

A backend has one or more URLs:
  * one URL: a plain service pointing at it (the Kong stack's original shape);
  * several URLs (comma-separated): an upstream `<name>-upstream` with one target `host:port` per URL, and the
    service pointing at the upstream. The URLs must share scheme and path: the service carries them, the targets
    only carry host and port.

Backends file (`BACKENDS_FILE`): one backend per line, `name URL[,URL...] [route-path]`; blank lines and
everything from a `#` field on are ignored; the route path defaults to `/v1/<name>`.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servegate.schema.upstreams import HEALTHCHECKS

Printer = Callable[[str], None]


class SetupError(Exception):
    """A step failed or the wanted state is invalid; the message is what the operator needs to see (never a secret)."""


# A servegate algorithm (the upstream schema's own, beside Kong's four): the target with the fewest open requests,
# a stream counting until its last byte, which is what occupies an inference engine.
DEFAULT_ALGORITHM = "least-outstanding"
HEALTH_PATH = "/health"
HEALTH_INTERVAL_S = 5
# Statuses that, seen on a proxied request, count against a target. An engine whose process is gone is caught by
# tcp_failures; one whose HTTP server outlives its engine answers 5xx (vLLM: 500 to requests, 503 to /health), a
# proxy in front of a dead one 502/504. 429 is left out: it means "busy", and the proxy retries it elsewhere.
PASSIVE_UNHEALTHY_STATUSES = [500, 502, 503, 504]
# Active probes: a server that answers /health at all is up unless it says 5xx. A server without /health (Ollama:
# 404) is up while it answers; llama.cpp answers 503 while its model loads, vLLM 500/503 once its engine died.
ACTIVE_HEALTHY_STATUSES = [200, 302, 404]
ACTIVE_UNHEALTHY_STATUSES = [500, 502, 503, 504]

# Kong 3.9's healthchecks defaults (the upstreams entity's own declaration), sent whole so that the stored
# upstream does not depend on how the server fills a partial record.
_KONG_HEALTHCHECKS: dict[str, Any] = HEALTHCHECKS.default


def healthchecks(protocol: str) -> dict[str, Any]:
    """The health checks an upstream of inference replicas is created with (see docs/usage.md, "Several replicas").

    Passive: one connection failure or one timeout takes a target out of rotation, two 5xx answers of the list
    above in a row too (one 500 may be a single bad request, not a dead engine). Active: GET /health every 5 s on every
    target, healthy or not; one success (200, 302, or 404 from a server without /health) brings a target back, two
    failures (connection, timeout, 500, 502, 503, 504) take it out. Active checks are what return a target that passive checks removed.
    """
    hc = copy.deepcopy(_KONG_HEALTHCHECKS)
    active, passive = hc["active"], hc["passive"]
    active.update(type=protocol, http_path=HEALTH_PATH, timeout=2)
    active["healthy"].update(interval=HEALTH_INTERVAL_S, successes=1, http_statuses=list(ACTIVE_HEALTHY_STATUSES))
    active["unhealthy"].update(interval=HEALTH_INTERVAL_S, tcp_failures=2, timeouts=2, http_failures=2,
                               http_statuses=list(ACTIVE_UNHEALTHY_STATUSES))
    passive["type"] = protocol
    passive["unhealthy"].update(
        http_statuses=list(PASSIVE_UNHEALTHY_STATUSES), tcp_failures=1, timeouts=1, http_failures=2
    )
    return hc


def upstream_body(protocol: str) -> dict[str, Any]:
    return {"algorithm": DEFAULT_ALGORITHM, "healthchecks": healthchecks(protocol)}


# ----------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class Balanced:
    """What the URLs of a list share (the service's fields) and what tells them apart (the targets)."""

    protocol: str
    port: int
    path: str | None
    targets: tuple[str, ...]

    def service_fields(self, upstream: str) -> dict[str, Any]:
        return {"protocol": self.protocol, "host": upstream, "port": self.port, "path": self.path}


@dataclass(frozen=True)
class Backend:
    name: str
    service: str
    route: str
    prefix: str
    upstream: str
    urls: tuple[str, ...]
    source: str  # where it was configured, for messages: "VLLM_UPSTREAM_URL", "BACKENDS_FILE x line 3"
    balanced: Balanced | None = field(default=None)
    in_file: bool = False


def split_urls(raw: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list; blanks around commas and empty items (a trailing comma) are ignored."""
    return tuple(u.strip() for u in raw.split(",") if u.strip())


def check_url(url: str, where: str) -> urllib.parse.SplitResult:
    """An http(s) URL with a host; anything else is a SetupError naming `where`."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise SetupError(f"{where}: {shown_url(url)!r} is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(f"{where}: {shown_url(url)!r} is not an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise SetupError(f"{where}: {shown_url(url)} carries a user name or password, which no request would send")
    return parts


def shown_url(url: str) -> str:
    """The URL as printed: any user:password part is masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***" if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def target_of(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def balance(urls: tuple[str, ...], where: str) -> Balanced:
    """The upstream shape of a list of two or more URLs (validated: http(s), same scheme and path, no duplicate)."""
    parsed = [check_url(u, where) for u in urls]
    first = parsed[0]
    for url, parts in zip(urls[1:], parsed[1:], strict=True):
        if (parts.scheme, parts.path or None) != (first.scheme, first.path or None):
            raise SetupError(
                f"{where}: the URLs of a list must share scheme and path; "
                f"{shown_url(urls[0])!r} and {shown_url(url)!r} differ"
            )
    targets: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for url, parts in zip(urls, parsed, strict=True):
        target = target_of(parts)
        key = target_key(target)
        if key in seen:
            raise SetupError(f"{where}: {shown_url(seen[key])!r} and {shown_url(url)!r} are the same target {target}")
        seen[key] = url
        targets.append(target)
    port = first.port or (443 if first.scheme == "https" else 80)
    return Balanced(first.scheme, port, first.path or None, tuple(targets))


def target_key(target: str) -> tuple[str, int]:
    """A target string (`host:port`, `[v6]:port`, or a bare host: Kong's default port 8000) as a comparable key,
    so that `[::1]:80` and a server's expanded `[0000:...:0001]:80` are the same target."""
    host, port = target, 8000
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif target.count(":") == 1:
        host, _, raw_port = target.partition(":")
        if raw_port.isdigit():
            port = int(raw_port)
    try:
        return ipaddress.ip_address(host).compressed, port
    except ValueError:
        return host.lower().rstrip("."), port


def make_backend(name: str, urls: tuple[str, ...], prefix: str, source: str, *, in_file: bool) -> Backend:
    """A lone URL of the backends file is checked here, so that its error names the line; a lone URL of the
    environment is left to the Admin API, as before lists existed."""
    if len(urls) == 1 and in_file:
        check_url(urls[0], source)
    return Backend(
        name=name, service=f"{name}-service", route=f"{name}-route", prefix=prefix, upstream=f"{name}-upstream",
        urls=urls, source=source, balanced=balance(urls, source) if len(urls) > 1 else None, in_file=in_file,
    )


# ----------------------------------------------------------------------------------------------- the backends


# The two built-in backends: (name, variable, route path). `admin-api` is reserved for the Admin API's route.
BUILT_IN = (("vllm", "VLLM_UPSTREAM_URL", "/v1/vllm"), ("sglang", "SGLANG_UPSTREAM_URL", "/v1/sglang"))
RESERVED = {"vllm": "VLLM_UPSTREAM_URL", "sglang": "SGLANG_UPSTREAM_URL", "admin-api": None}
RESERVED_PATHS = {"/v1/vllm", "/v1/sglang", "/admin-api"}
# `<name>-upstream` must be a host name label (at most 63 characters): lowercase keeps names and hosts identical.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
LINE_FORMAT = "name URL[,URL...] [route-path]"


def parse_backends_file(text: str, label: str) -> list[Backend]:
    """The backends of a backends file; `label` ("BACKENDS_FILE <path>") starts every error message."""
    backends: list[Backend] = []
    names: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        for i, f in enumerate(fields):
            if f.startswith("#"):
                del fields[i:]
                break
        if not fields:
            continue
        where = f"{label} line {lineno}"
        if len(fields) > 3:
            hint = " (no spaces around the commas of a URL list)" if "," in line else ""
            raise SetupError(f"{where}: expected '{LINE_FORMAT}', found {len(fields)} fields{hint}")
        if len(fields) < 2:
            raise SetupError(f"{where}: expected '{LINE_FORMAT}', found no URL after {fields[0]!r}")
        name, raw_urls = fields[0], fields[1]
        if len(fields) == 3 and ("://" in fields[2] or raw_urls.endswith(",") or fields[2].startswith(",")):
            raise SetupError(
                f"{where}: {shown_url(fields[2])!r} is not a route path (no spaces around the commas of a URL list)"
            )
        if not NAME_RE.fullmatch(name):
            raise SetupError(
                f"{where}: invalid backend name {name!r}: use lowercase letters, digits and '-', "
                "starting with a letter or digit, at most 50 characters"
            )
        if name in RESERVED:
            var = RESERVED[name]
            instead = f" (set {var} for it)" if var else ""
            raise SetupError(f"{where}: the backend name {name!r} is reserved for the built-in one{instead}")
        if name in names:
            raise SetupError(f"{where}: backend {name!r} is already defined on line {names[name]}")
        prefix = fields[2] if len(fields) == 3 else f"/v1/{name}"
        if not prefix.startswith("/"):
            raise SetupError(f"{where}: the route path {prefix!r} must start with '/'")
        if prefix in RESERVED_PATHS:
            raise SetupError(f"{where}: the route path {prefix} belongs to a built-in route")
        if prefix in prefixes:
            raise SetupError(f"{where}: the route path {prefix} is already used on line {prefixes[prefix]}")
        urls = split_urls(raw_urls)
        if not urls:
            raise SetupError(f"{where}: no URL in {raw_urls!r}")
        backends.append(make_backend(name, urls, prefix, where, in_file=True))
        names[name] = lineno
        prefixes[prefix] = lineno
    return backends


def read_backends_file(path: str) -> list[Backend]:
    label = f"BACKENDS_FILE {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SetupError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SetupError(f"{label}: cannot read it: {exc.strerror or exc}") from exc
    return parse_backends_file(text, label)


def wanted_backends(env: Mapping[str, str], out: Printer) -> list[Backend]:
    """The built-in backends whose variable is set, then those of the backends file, all validated."""
    backends: list[Backend] = []
    for name, var, prefix in BUILT_IN:
        urls = split_urls(env.get(var, ""))
        if not urls:
            out(f"{var} is not set: skipping {name}-service and {name}-route")
            continue
        backends.append(make_backend(name, urls, prefix, var, in_file=False))
    path = env.get("BACKENDS_FILE", "").strip()
    if path:
        backends.extend(read_backends_file(path))
    return backends
