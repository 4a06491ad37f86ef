"""The Admin API against browsers: CORS only for configured origins, no cross-origin writes, and no answer to a
Host that names another site on a loopback listener (DNS rebinding). Real servers over loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from helpers import Servegate
from servegate.admin import serve
from servegate.admin.server import AdminServer
from servegate.settings import Listen, load_settings
from servegate.store import open_store_url

EVIL = "http://evil.test"
UI = "http://localhost:8002"


async def raw(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    """One request written byte for byte (Host included, or left out); returns status, headers, JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, orjson.loads(rest) if rest else None


def req(method: str, path: str, host: str | None, *extra: str, body: bytes = b"") -> tuple[str, bytes]:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(extra)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return "\n".join(lines) + "\n", body


async def call(port: int, method: str, path: str, host: str | None = "127.0.0.1", *extra: str,
               body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    head, data = req(method, path, host, *extra, body=body)
    return await raw(port, head, data)


async def start(tmp_path: Any, listen_host: str = "127.0.0.1", **env: str) -> tuple[AdminServer, Any]:
    store = open_store_url(f"sqlite:///{tmp_path}/cors.db")
    await store.connect()
    await store.bootstrap()
    settings = load_settings(env={"SERVEGATE_PREFIX": str(tmp_path), **env})

    async def on_change() -> None:
        return None

    server = await serve(store, settings, on_change=on_change, listen=[Listen(listen_host, 0)])
    return server, store


@pytest.fixture
async def plain(tmp_path: Any) -> AsyncIterator[int]:
    """Admin API on 127.0.0.1 with no admin_gui_url."""
    server, store = await start(tmp_path)
    try:
        yield server.addresses[0][1]
    finally:
        await server.stop(0)
        await store.close()


@pytest.fixture
async def with_ui(tmp_path: Any) -> AsyncIterator[int]:
    """Admin API on 127.0.0.1 with admin_gui_url naming two UI origins."""
    server, store = await start(tmp_path, SERVEGATE_ADMIN_GUI_URL=f"{UI}/manager, https://ui.example.com")
    try:
        yield server.addresses[0][1]
    finally:
        await server.stop(0)
        await store.close()


FORM = b"name=planted&url=http://attacker.test"
FORM_TYPE = "Content-Type: application/x-www-form-urlencoded"


# ---------------------------------------------------------------------------------------------------- CORS


async def test_foreign_origin_is_not_granted_access(plain: int) -> None:
    status, headers, _ = await call(plain, "GET", "/consumers", "127.0.0.1", f"Origin: {EVIL}")
    assert status == 200
    assert "access-control-allow-origin" not in headers
    assert "access-control-allow-credentials" not in headers
    assert headers.get("vary") == "Origin"


async def test_preflight_from_unknown_origin_gets_no_permission(plain: int) -> None:
    status, headers, _ = await call(plain, "OPTIONS", "/services/vllm-service", "127.0.0.1", f"Origin: {EVIL}",
                                    "Access-Control-Request-Method: DELETE",
                                    "Access-Control-Request-Headers: content-type")
    assert status == 204
    assert not [h for h in headers if h.startswith("access-control-")], headers
    assert "DELETE" in headers["allow"]  # plain OPTIONS semantics stay


async def test_cross_origin_write_is_refused_and_stores_nothing(plain: int) -> None:
    # A form POST is a "simple" request: a browser sends it without a preflight, so refusing CORS access is not
    # enough; the write itself must not happen.
    for origin in (EVIL, "null"):
        status, _, body = await call(plain, "POST", "/services", "127.0.0.1", f"Origin: {origin}", FORM_TYPE,
                                     body=FORM)
        assert status == 403, body
        assert body == {"message": "cross-origin request refused: origin not allowed by admin_gui_url"}
    status, _, body = await call(plain, "GET", "/services")
    assert (status, body["data"]) == (200, [])


async def test_requests_without_origin_keep_kongs_headers(plain: int) -> None:
    status, headers, _ = await call(plain, "GET", "/")
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    status, headers, _ = await call(plain, "POST", "/services", "127.0.0.1", FORM_TYPE, body=FORM)
    assert status == 201


async def test_same_origin_write_is_allowed(plain: int) -> None:
    status, _, _ = await call(plain, "POST", "/services", f"127.0.0.1:{plain}", f"Origin: http://127.0.0.1:{plain}",
                              FORM_TYPE, body=FORM)
    assert status == 201


async def test_configured_origins_get_cors_access(with_ui: int) -> None:
    for origin in (UI, "https://ui.example.com"):
        status, headers, _ = await call(with_ui, "GET", "/services", "127.0.0.1", f"Origin: {origin}")
        assert status == 200
        assert headers["access-control-allow-origin"] == origin
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["vary"] == "Origin"
    status, headers, _ = await call(with_ui, "OPTIONS", "/services/x", "127.0.0.1", f"Origin: {UI}",
                                    "Access-Control-Request-Method: DELETE",
                                    "Access-Control-Request-Headers: content-type, x-custom")
    assert status == 204
    assert headers["access-control-allow-origin"] == UI
    assert headers["access-control-allow-methods"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    assert headers["access-control-allow-headers"] == "content-type, x-custom"
    assert headers["access-control-allow-credentials"] == "true"
    status, _, _ = await call(with_ui, "POST", "/services", "127.0.0.1", f"Origin: {UI}", FORM_TYPE, body=FORM)
    assert status == 201
    # Same host, another port or scheme: another origin.
    for other in ("http://localhost:8003", "https://localhost:8002", "http://ui.example.com", EVIL):
        status, headers, _ = await call(with_ui, "GET", "/services", "127.0.0.1", f"Origin: {other}")
        assert "access-control-allow-origin" not in headers, other
        status, _, _ = await call(with_ui, "DELETE", "/services/planted", "127.0.0.1", f"Origin: {other}")
        assert status == 403, other
    assert (await call(with_ui, "GET", "/services/planted"))[0] == 200


def test_admin_gui_url_must_be_urls(tmp_path: Any) -> None:
    from servegate.settings import SettingsError

    with pytest.raises(SettingsError, match="admin_gui_url"):
        load_settings(env={"SERVEGATE_PREFIX": str(tmp_path), "SERVEGATE_ADMIN_GUI_URL": "localhost:8002"})
    settings = load_settings(env={"SERVEGATE_PREFIX": str(tmp_path), "KONG_ADMIN_GUI_URL": "http://a.test/x"})
    assert settings.admin_gui_url == ["http://a.test/x"]


# ---------------------------------------------------------------------------------------------------- Host


MISDIRECTED = {"message": "invalid Host header: this Admin API listener only answers to localhost, 127.0.0.1, "
                          "[::1] or its own address"}


async def test_rebinding_host_is_refused_on_loopback(plain: int) -> None:
    for host in ("evil.test", f"evil.test:{plain}", "attacker.localhost", "127.0.0.1.evil.test", "", "[::1"):
        status, headers, body = await call(plain, "GET", "/consumers", host)
        if host in ("", "[::1"):
            assert status == 400, host
            continue
        assert (status, body) == (421, MISDIRECTED), host
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert "access-control-allow-origin" not in headers
    # A refused write changes nothing.
    status, _, _ = await call(plain, "POST", "/services", "evil.test", FORM_TYPE, body=FORM)
    assert status == 421
    assert (await call(plain, "GET", "/services"))[2]["data"] == []
    # Two Host headers: malformed (RFC 9112 §3.2).
    status, _, _ = await call(plain, "GET", "/", "127.0.0.1", "Host: evil.test")
    assert status == 400


async def test_loopback_names_are_accepted(plain: int) -> None:
    for host in ("localhost", f"localhost:{plain}", "LOCALHOST:1", "localhost.", "127.0.0.1", f"127.0.0.1:{plain}",
                 "[::1]", f"[::1]:{plain}", "127.0.0.2:80"):
        status, _, _ = await call(plain, "GET", "/", host)
        assert status == 200, host
    # HTTP/1.0 without Host: no name to rebind
    status, _, _ = await raw(plain, "GET / HTTP/1.0\n")
    assert status == 200


async def test_non_loopback_listener_accepts_any_host(tmp_path: Any) -> None:
    # The Docker stack: 0.0.0.0:8001 inside the container, reached by service name (kong:8001).
    server, store = await start(tmp_path, listen_host="0.0.0.0")
    try:
        port = server.addresses[0][1]
        for host in ("kong:8001", "evil.test"):
            status, _, _ = await call(port, "GET", "/", host)
            assert status == 200, host
    finally:
        await server.stop(0)
        await store.close()


# ------------------------------------------------------------------------------ through the /admin-api route


def test_admin_api_route_still_works_for_any_client_host(tmp_path: Any) -> None:
    """The proxy forwards the upstream's host (127.0.0.1:<admin port>) to the Admin API, whatever Host the client
    used to reach the proxy, so the /admin-api route keeps working with a public gateway name."""
    key = "cors-host-admin-key-123"
    with Servegate(prefix=str(tmp_path / "node")) as sg:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
        env.update(KONG_ADMIN_API_KEY=key, SERVEGATE_ADMIN_URL=sg.admin_url, VLLM_UPSTREAM_URL="",
                   SGLANG_UPSTREAM_URL="")
        setup = subprocess.run([sys.executable, "-m", "servegate", "setup"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        for host in ("gateway.example.com", "localhost:8000", None):
            headers = {"apikey": key}
            if host:
                headers["Host"] = host
            r = urllib.request.Request(sg.proxy_url + "/admin-api/services", headers=headers)
            with urllib.request.urlopen(r, timeout=10) as resp:
                assert resp.status == 200
                names = {s["name"] for s in orjson.loads(resp.read())["data"]}
            assert "admin-api-service" in names
