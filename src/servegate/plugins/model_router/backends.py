"""The backends of a model-router instance, resolved from the configuration snapshot once per compile.

A backend is named by a service or an upstream (a service wins when both have the name):

* a service whose host is an address or a DNS name: the request is sent there with `set_target`, over the
  service's protocol, under the service's path, with its timeouts and retries;
* a service whose host is an upstream: `set_upstream(host)`, so the balancer spreads it over the targets (health
  checks and the upstream's algorithm apply), with the service's path, timeouts and retries;
* an upstream: `set_upstream(name)`; path, timeouts and retries stay the route's service's.

Paths are joined as the router joins a route with `strip_path = false` (Kong's v0 join, the router's own
function): the service path, then the request path. A service path ending in `/v1` is taken for an OpenAI base
URL: the request's own `/v1` is not repeated (`/v1/chat/completions` on a service `http://h:8000/v1` goes to
`/v1/chat/completions`, not `/v1/v1/...`). The model list of a backend is read from the same place: the service
path with `/models` after a trailing `/v1`, else with `/v1/models`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servegate.proxy.paths import join_v0
from servegate.schema.upstreams import split_target, upstream_targets

log = logging.getLogger("servegate.plugins.model-router")


@dataclass(frozen=True, slots=True)
class Probe:
    """Where one backend's model list is asked for: `GET path` on host:port over scheme."""

    scheme: str
    host: str  # as connected to: an IPv6 address without brackets
    port: int
    path: str
    host_header: str
    tls_verify: bool


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    # A plain service's address (set_target), or None when balanced over `upstream`.
    target: tuple[str, int] | None
    upstream: str | None
    scheme: str | None
    service_path: str | None
    # The service path ends in /v1: the request's leading /v1 is not repeated.
    base_v1: bool
    timeouts: tuple[int, int, int] | None
    retries: int | None
    probes: tuple[Probe, ...]

    def path_for(self, rel: str) -> str:
        """The upstream path of a request whose OpenAI path (the route's prefix removed when it strips it) is
        `rel`."""
        if self.base_v1 and (rel == "/v1" or rel.startswith("/v1/")):
            rel = rel[3:] or "/"
        return join_v0(self.service_path, "/", rel, False)


def models_path(service_path: str | None) -> str:
    base = (service_path or "").rstrip("/")
    return base + "/models" if base.endswith("/v1") else base + "/v1/models"


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def _target_probes(lookups: Any, upstream: Mapping[str, Any], scheme: str, path: str,
                   tls_verify: bool) -> tuple[Probe, ...]:
    """One probe per target that takes traffic (weight > 0), newest first: replicas of one backend serve the
    same models, so the first that answers speaks for all."""
    probes = []
    for row in upstream_targets(lookups.index("targets", "id").values(), str(upstream.get("id"))):
        if not row.get("weight"):
            continue
        host, port = split_target(str(row.get("target")))
        bare = host.strip("[]")
        probes.append(Probe(scheme, bare, port, path, _host_header(bare, port, scheme), tls_verify))
    return tuple(probes)


def resolve(name: str, lookups: Any) -> Backend | None:
    """The backend `name` names in this snapshot, or None (logged) when no service or upstream has that name."""
    service = lookups.index("services", "name").get(name)
    upstreams = lookups.index("upstreams", "name")
    if service is not None:
        scheme = str(service.get("protocol") or "http")
        if scheme not in ("http", "https"):
            log.warning("model-router: backend %s is a %s service; only http and https are routed", name, scheme)
            return None
        host, port, path = str(service.get("host")), int(service.get("port") or 80), service.get("path")
        verify = service.get("tls_verify") is True
        timeouts = (int(service.get("connect_timeout") or 60000), int(service.get("write_timeout") or 60000),
                    int(service.get("read_timeout") or 60000))
        retries = int(service["retries"]) if service.get("retries") is not None else None
        base_v1 = (path or "").rstrip("/").endswith("/v1")
        upstream = upstreams.get(host)
        if upstream is not None:
            probes = _target_probes(lookups, upstream, scheme, models_path(path), verify)
            return Backend(name, None, host, scheme, path, base_v1, timeouts, retries, probes)
        probe = Probe(scheme, host, port, models_path(path), _host_header(host, port, scheme), verify)
        return Backend(name, (host, port), None, scheme, path, base_v1, timeouts, retries, (probe,))
    upstream = upstreams.get(name)
    if upstream is not None:
        # An upstream carries no protocol: its targets are asked over the scheme its active health checks use.
        active = ((upstream.get("healthchecks") or {}).get("active") or {})
        scheme = "https" if active.get("type") == "https" else "http"
        probes = _target_probes(lookups, upstream, scheme, models_path(None), False)
        return Backend(name, None, name, None, None, False, None, None, probes)
    log.warning("model-router: no service or upstream is named %s; its models are not routed", name)
    return None


def strip_route_prefix(route: Mapping[str, Any] | None, path: str) -> str:
    """The request path as the route passes it on: without the matched prefix when the route strips it (the
    longest plain path of the route that the request starts with)."""
    if route is None or not route.get("strip_path"):
        return path
    best = ""
    for prefix in route.get("paths") or ():
        if isinstance(prefix, str) and not prefix.startswith("~") and path.startswith(prefix) \
                and len(prefix) > len(best):
            best = prefix
    if not best or best == "/":
        return path
    rest = path[len(best):]
    return rest if rest.startswith("/") else "/" + rest
