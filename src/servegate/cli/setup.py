"""`servegate setup`: bring a gateway to the stack's standard configuration through its Admin API.

The job is declarative and convergent: it reads the wanted state from the environment, compares it with what the
Admin API reports, and writes only what differs. A second run with the same environment therefore changes nothing,
and re-running it after editing `.env` moves the gateway to the new values.

What it manages:
  * `vllm-service` / `sglang-service` (+ `vllm-route` `/v1/vllm`, `sglang-route` `/v1/sglang`), from
    `VLLM_UPSTREAM_URL` / `SGLANG_UPSTREAM_URL`; an unset or empty URL skips that backend. A comma-separated list
    of URLs makes an upstream `vllm-upstream` / `sglang-upstream` with one target per URL, and the service points
    at it; back to one URL, the service points at it again and the upstream is deleted.
  * the backends of the optional `BACKENDS_FILE` (setup_backends.py), each the same way: `<name>-service`,
    `<name>-route`, and `<name>-upstream` for a list. A backend removed from the file is left as it is.
  * one `/v1` for every model: `llm-route` (`/v1`, strip_path off) on `llm-service` (the first backend's address, a
    placeholder: the plugin chooses), with a `model-router` plugin whose `backends` hold every backend's service;
    a later run adds the backends it does not list yet and leaves the rest of its configuration alone. No backend,
    or a gateway without the plugin: skipped. The longer prefixes (`/v1/vllm`, ...) keep their own routes.
  * `admin-api-service` pointing at the Admin API over loopback, route `admin-api-route` `/admin-api`,
    and a `key-auth` plugin on that service.
  * consumer `admin` holding exactly one key-auth credential: `SERVEGATE_ADMIN_API_KEY` or `KONG_ADMIN_API_KEY`.

Timeouts (120 s) are set when a service is created, an upstream's algorithm and health checks when it is created;
later runs leave them alone so that a value changed through the Admin API survives a re-run. The addresses (the
service's, the upstream's targets), however, always follow the environment.
"""

from __future__ import annotations

import copy
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from servegate.cli.setup_backends import (
    DEFAULT_ALGORITHM,
    HEALTH_INTERVAL_S,
    HEALTH_PATH,
    Backend,
    Balanced,
    Printer,
    SetupError,
    shown_url,
    target_key,
    upstream_body,
    wanted_backends,
)

DEFAULT_ADMIN_URL = "http://127.0.0.1:8001"
DEFAULT_WAIT_S = 60.0
LLM_TIMEOUT_MS = 120_000
# The value shipped in .env.example; worth a warning when it reaches a real deployment.
EXAMPLE_ADMIN_KEY = "changeme-admin-key-secret"
ADMIN_CONSUMER = "admin"
LLM_SERVICE, LLM_ROUTE, ROUTER_PLUGIN = "llm-service", "llm-route", "model-router"

__all__ = ["SetupError", "run_setup", "setup"]


class AdminClient:
    """Minimal JSON client for the Admin API; stdlib only, so the job adds no runtime dependency."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # The Admin API is always local to the stack: never route it through an HTTP_PROXY from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SetupError(
                f"{method} {path}: cannot reach the Admin API at {shown_url(self.base_url)}: {reason}"
            ) from exc

    def expect(
        self, method: str, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201)
    ) -> Any:
        status, payload = self.call(method, path, body)
        if status not in ok:
            raise SetupError(f"{method} {path} failed with HTTP {status}: {_message(payload)}")
        return payload

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        status, payload = self.call("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise SetupError(f"GET {path} failed with HTTP {status}: {_message(payload)}")
        return payload if isinstance(payload, dict) else None

    def list_all(self, path: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        next_path: str | None = path
        while next_path:
            page = self.expect("GET", next_path, ok=(200,))
            rows.extend(page.get("data") or [])
            next_path = page.get("next")
        return rows


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return str(payload) if payload else "(empty response)"


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# ----------------------------------------------------------------------------------------------- wanted state


def upstream_fields(url: str) -> dict[str, Any]:
    """Split a URL into the service fields the Admin API stores, so they can be compared field by field.

    A URL we cannot split is passed on as the `url` shorthand, leaving the Admin API to word the error.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return {"url": url}
    if not parts.scheme or not parts.hostname:
        return {"url": url}
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return {"protocol": parts.scheme, "host": parts.hostname, "port": port, "path": parts.path or None}


def admin_upstream(env: Mapping[str, str], admin_url: str) -> str:
    override = env.get("SERVEGATE_ADMIN_UPSTREAM", "").strip()
    if override:
        return override
    # The proxy reaches its own Admin API over loopback, whatever name the setup job used to reach it.
    try:
        port = urllib.parse.urlsplit(admin_url).port or 8001
    except ValueError:
        port = 8001
    return f"http://127.0.0.1:{port}"


def admin_key(env: Mapping[str, str]) -> tuple[str, str] | None:
    for var in ("SERVEGATE_ADMIN_API_KEY", "KONG_ADMIN_API_KEY"):
        value = env.get(var, "")
        if value:
            return var, value
    return None


# ----------------------------------------------------------------------------------------------- steps


def ensure_service(client: AdminClient, name: str, url: str, out: Printer) -> str:
    return ensure_service_fields(client, name, upstream_fields(url), f"service {name} -> {shown_url(url)}", out)


def ensure_service_fields(client: AdminClient, name: str, wanted: dict[str, Any], label: str, out: Printer) -> str:
    path = f"/services/{_q(name)}"
    current = client.get_or_none(path)
    if current is None:
        row = client.expect(
            "PUT", path, {**wanted, "read_timeout": LLM_TIMEOUT_MS, "write_timeout": LLM_TIMEOUT_MS}
        )
        out(f"{label}: created")
        return str(row["id"])
    if "url" in wanted or any(current.get(k) != v for k, v in wanted.items()):
        row = client.expect("PATCH", path, wanted)
        out(f"{label}: updated")
        return str(row["id"])
    out(f"{label}: unchanged")
    return str(current["id"])


def ensure_route(client: AdminClient, name: str, service_id: str, prefix: str, out: Printer, *,
                 strip: bool = True) -> None:
    wanted = {"service": {"id": service_id}, "paths": [prefix], "strip_path": strip}
    path = f"/routes/{_q(name)}"
    current = client.get_or_none(path)
    if current is None:
        client.expect("PUT", path, wanted)
        state = "created"
    elif any(current.get(k) != v for k, v in wanted.items()):
        client.expect("PATCH", path, wanted)
        state = "updated"
    else:
        state = "unchanged"
    out(f"route {name} {prefix} ({'strip_path' if strip else 'no strip_path'}): {state}")


def ensure_upstream(client: AdminClient, name: str, balanced: Balanced, out: Printer) -> None:
    """Create the upstream with the job's algorithm and health checks; an existing one keeps its settings, except
    that health checks over http(s) follow the URLs' scheme (an http check against a TLS port fails every time)."""
    path = f"/upstreams/{_q(name)}"
    current = client.get_or_none(path)
    if current is None:
        status, payload = client.call("PUT", path, upstream_body(balanced.protocol))
        if status == 404:
            raise SetupError(
                f"PUT {path} failed with HTTP 404: this Admin API has no /upstreams endpoint, "
                "which a list of backend URLs needs"
            )
        if status not in (200, 201):
            raise SetupError(f"PUT {path} failed with HTTP {status}: {_message(payload)}")
        out(
            f"upstream {name}: created ({DEFAULT_ALGORITHM}; active health checks GET {HEALTH_PATH} "
            f"every {HEALTH_INTERVAL_S} s, passive on connection failures, timeouts and 5xx)"
        )
        return
    checks = copy.deepcopy(current.get("healthchecks") or {})
    changed = False
    for kind in ("active", "passive"):
        part = checks.get(kind)
        if isinstance(part, dict) and part.get("type") in ("http", "https") and part["type"] != balanced.protocol:
            part["type"] = balanced.protocol
            changed = True
    if changed:
        client.expect("PATCH", path, {"healthchecks": checks}, ok=(200,))
        out(f"upstream {name}: updated (health checks over {balanced.protocol})")
    else:
        out(f"upstream {name}: unchanged")


def ensure_targets(client: AdminClient, upstream: str, targets: tuple[str, ...], out: Printer) -> None:
    """Exactly one target per URL: missing ones added (weight 100), others deleted. New targets go in before old
    ones leave, so the upstream never runs empty. The weight of a target that stays is left alone."""
    base = f"/upstreams/{_q(upstream)}/targets"
    have = {target_key(str(row.get("target", ""))): row for row in client.list_all(base)}
    wanted = {target_key(t): t for t in targets}
    for key, target in wanted.items():
        if key in have:
            state = "unchanged"
        else:
            status, payload = client.call("POST", base, {"target": target})
            if status == 201:
                state = "created"
            elif status == 409:  # added meanwhile, by a concurrent run or an operator
                state = "unchanged"
            else:
                raise SetupError(f"POST {base} failed with HTTP {status}: {_message(payload)}")
        out(f"target {target} of {upstream}: {state}")
    for key, row in have.items():
        if key not in wanted:
            client.expect("DELETE", f"{base}/{_q(str(row['id']))}", ok=(204, 404))
            out(f"target {row.get('target')} of {upstream}: deleted")


def drop_upstream(client: AdminClient, backend: Backend, out: Printer) -> None:
    """Back to one URL: delete the backend's upstream (and so its targets), unless another service uses it."""
    path = f"/upstreams/{_q(backend.upstream)}"
    if client.get_or_none(path) is None:
        return
    users = sorted(
        str(s.get("name") or s.get("id"))
        for s in client.list_all("/services")
        if s.get("host") == backend.upstream and s.get("name") != backend.service
    )
    if users:
        out(f"upstream {backend.upstream}: kept, still the host of service {', '.join(users)}")
        return
    client.expect("DELETE", path, ok=(204, 404))
    out(f"upstream {backend.upstream}: deleted ({backend.service} has a single URL again)")


def ensure_backend(client: AdminClient, backend: Backend, out: Printer) -> None:
    """One backend: its upstream and targets (for a list of URLs), its service, its route, in the order that keeps
    it serving: the upstream is complete before the service points at it, and unused only after it moved away."""
    try:
        balanced = backend.balanced
        if balanced is None:
            service_id = ensure_service(client, backend.service, backend.urls[0], out)
            drop_upstream(client, backend, out)
        else:
            ensure_upstream(client, backend.upstream, balanced, out)
            ensure_targets(client, backend.upstream, balanced.targets, out)
            label = f"service {backend.service} -> upstream {backend.upstream} ({len(balanced.targets)} targets)"
            service_id = ensure_service_fields(
                client, backend.service, balanced.service_fields(backend.upstream), label, out
            )
        ensure_route(client, backend.route, service_id, backend.prefix, out)
    except SetupError as exc:
        if backend.in_file:  # name the line the backend comes from
            raise SetupError(f"{backend.source}: {exc}") from exc
        raise


def ensure_llm_route(client: AdminClient, backends: list[Backend], out: Printer) -> None:
    """`/v1` for every model: llm-route on llm-service, and the model-router plugin over every backend's service."""
    if not backends:
        out(f"no backend configured: skipping {LLM_SERVICE}, {LLM_ROUTE} and its {ROUTER_PLUGIN} plugin")
        return
    enabled = client.expect("GET", "/plugins/enabled", ok=(200,))
    if ROUTER_PLUGIN not in ((enabled or {}).get("enabled_plugins") or ()):
        out(f"the gateway has no {ROUTER_PLUGIN} plugin: skipping {LLM_SERVICE} and {LLM_ROUTE} (/v1)")
        return
    # A placeholder (a route needs a service; the plugin sends what it routes elsewhere): the first backend's first
    # URL, never its upstream, which would then outlive a return to one URL (drop_upstream keeps a used upstream).
    url = backends[0].urls[0]
    service_id = ensure_service(client, LLM_SERVICE, url, out)
    ensure_route(client, LLM_ROUTE, service_id, "/v1", out, strip=False)
    wanted = [b.service for b in backends]
    base = f"/routes/{_q(LLM_ROUTE)}/plugins"
    found = [p for p in client.list_all(base) if p.get("name") == ROUTER_PLUGIN and not p.get("consumer")]
    if not found:
        client.expect("POST", base, {"name": ROUTER_PLUGIN, "config": {"backends": wanted}})
        state = "created"
    else:
        plugin = found[0]
        have = list((plugin.get("config") or {}).get("backends") or [])
        missing = [name for name in wanted if name not in have]
        change: dict[str, Any] = {}
        if missing:
            change["config"] = {"backends": have + missing}
        if plugin.get("enabled") is False:
            change["enabled"] = True
        if change:
            client.expect("PATCH", f"/plugins/{plugin['id']}", change, ok=(200,))
            state = "updated" if missing else "re-enabled"
        else:
            state = "unchanged"
    out(f"plugin {ROUTER_PLUGIN} on {LLM_ROUTE} over {', '.join(wanted)}: {state}")


def ensure_key_auth(client: AdminClient, service: str, out: Printer) -> None:
    plugins = client.list_all(f"/services/{_q(service)}/plugins")
    found = [
        p for p in plugins if p.get("name") == "key-auth" and not p.get("route") and not p.get("consumer")
    ]
    if not found:
        # hide_credentials keeps the admin key from being forwarded to (and logged by) the Admin API.
        client.expect(
            "POST",
            f"/services/{_q(service)}/plugins",
            {"name": "key-auth", "config": {"hide_credentials": True}},
        )
        state = "created"
    elif found[0].get("enabled") is False:
        client.expect("PATCH", f"/plugins/{found[0]['id']}", {"enabled": True})
        state = "re-enabled"
    else:
        state = "unchanged"
    out(f"plugin key-auth on {service}: {state}")


def ensure_admin_consumer(client: AdminClient, key_var: str, key: str, out: Printer) -> None:
    path = f"/consumers/{_q(ADMIN_CONSUMER)}"
    if client.get_or_none(path) is None:
        client.expect("PUT", path, {"username": ADMIN_CONSUMER})
        out(f"consumer {ADMIN_CONSUMER}: created")
    else:
        out(f"consumer {ADMIN_CONSUMER}: unchanged")

    creds = client.list_all(f"{path}/key-auth")
    matching = [c for c in creds if hmac.compare_digest(str(c.get("key", "")).encode(), key.encode())]
    stale = [c for c in creds if c not in matching]
    if not matching:
        # Add the new key before removing old ones, so a failure never leaves the consumer without a key.
        client.expect("POST", f"{path}/key-auth", {"key": key})
    for cred in stale:
        client.expect("DELETE", f"{path}/key-auth/{cred['id']}", ok=(204, 404))
    if not matching:
        state = "replaced" if stale else "created"
    else:
        state = "unchanged" if not stale else f"unchanged, {len(stale)} old credential(s) removed"
    out(f"key-auth credential for {ADMIN_CONSUMER} (from {key_var}): {state}")
    if key == EXAMPLE_ADMIN_KEY:
        out(
            f"warning: {key_var} still holds the example value from .env.example; change it before exposing the gateway"
        )


def wait_for_admin(client: AdminClient, wait_s: float, out: Printer) -> None:
    out(f"waiting for the Admin API at {shown_url(client.base_url)} (up to {wait_s:g} s)")
    deadline = time.monotonic() + wait_s
    last = "no answer yet"
    while True:
        try:
            status, payload = client.call("GET", "/")
            if status == 200:
                version = payload.get("version", "?") if isinstance(payload, dict) else "?"
                out(f"Admin API is up (Kong-compatible version {version})")
                return
            last = f"HTTP {status}: {_message(payload)}"
        except SetupError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise SetupError(f"the Admin API did not become ready within {wait_s:g} s ({last})")
        time.sleep(0.5)


# ----------------------------------------------------------------------------------------------- entry points


def _wait_seconds(env: Mapping[str, str]) -> float:
    raw = env.get("SERVEGATE_SETUP_WAIT", "").strip()
    if not raw:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise SetupError(f"invalid SERVEGATE_SETUP_WAIT: {raw!r} is not a number of seconds") from exc
    if value < 0:
        raise SetupError("invalid SERVEGATE_SETUP_WAIT: must not be negative")
    return value


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_setup(
    env: Mapping[str, str] | None = None,
    *,
    out: Printer = print,
    err: Printer | None = None,
    wait_s: float | None = None,
) -> int:
    """Run every step; return the process exit status (0 ok, 1 failure). Errors go to `err` (stderr)."""
    env = os.environ if env is None else env
    err = err or _stderr
    admin_url = env.get("SERVEGATE_ADMIN_URL", "").strip() or DEFAULT_ADMIN_URL
    client = AdminClient(admin_url)
    try:
        # Every URL and the backends file are checked before the first write.
        backends = wanted_backends(env, out)
        wait_for_admin(client, _wait_seconds(env) if wait_s is None else wait_s, out)
        for backend in backends:
            ensure_backend(client, backend, out)
        ensure_llm_route(client, backends, out)

        admin_service_id = ensure_service(client, "admin-api-service", admin_upstream(env, admin_url), out)
        ensure_route(client, "admin-api-route", admin_service_id, "/admin-api", out)
        ensure_key_auth(client, "admin-api-service", out)

        key = admin_key(env)
        if key is None:
            out(
                "SERVEGATE_ADMIN_API_KEY / KONG_ADMIN_API_KEY not set: no admin credential, /admin-api stays closed"
            )
        else:
            ensure_admin_consumer(client, key[0], key[1], out)
    except SetupError as exc:
        err(f"setup failed: {exc}")
        return 1
    out("setup complete")
    return 0


def setup(
    wait: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds to wait for the Admin API (default: SERVEGATE_SETUP_WAIT or 60)."),
    ] = None,
) -> None:
    """Create or update the standard services, routes, the /v1 model router, key-auth and the admin consumer.

    Reads VLLM_UPSTREAM_URL and SGLANG_UPSTREAM_URL (one URL, or a comma-separated list that becomes an upstream
    with one target per URL), the optional BACKENDS_FILE (lines "name URL[,URL...] [route-path]") and
    SERVEGATE_ADMIN_API_KEY (or KONG_ADMIN_API_KEY); talks to the Admin API at SERVEGATE_ADMIN_URL
    (default http://127.0.0.1:8001).
    """
    code = run_setup(wait_s=wait)
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":
    typer.run(setup)
