"""kong.log.serialize(): the table Kong's log plugins write, built from a request's Context in the log phase.

Field names and shapes follow Kong 3.9's kong/pdk/log.lua: request {id, uri, url, querystring, method,
headers, size}, upstream_uri, upstream_status, response {status, headers, size}, latencies {kong, proxy,
request, receive}, tries, authenticated_entity, route, service, consumer, client_ip, started_at, workspace
fields, plus `ai` {"proxy": {meta, usage}} when an LLM record was tracked (servegate.llm). Kong redacts the
authorization headers; servegate also redacts API-key headers and query arguments, whose values key-auth treats
as secrets.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from servegate.plugins.base import Context

REDACTED = "REDACTED"
# Header and query argument names whose values are credentials (Kong's two, and the usual API key spellings).
SECRET_HEADERS = frozenset(("authorization", "proxy-authorization", "apikey", "api-key", "api_key", "x-api-key"))
SECRET_ARGS = frozenset(("apikey", "api-key", "api_key", "key"))
# Response header lines that describe the connection, not the response (not in nginx's view of the response).
_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"))
DEFAULT_WORKSPACE = "default"


def _arg_secret(name: str) -> bool:
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    return name.split("[", 1)[0].strip().lower() in SECRET_ARGS


def redact_uri(uri: str) -> str:
    """`uri` with the values of credential query arguments replaced by REDACTED."""
    path, sep, query = uri.partition("?")
    if not sep or not query:
        return uri
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and _arg_secret(name):
            parts[i] = name + "=" + REDACTED
    return path + "?" + "&".join(parts)


def _request_headers(ctx: Context) -> dict[str, Any]:
    headers = ctx.headers
    as_dict = getattr(headers, "as_dict", None)
    out: dict[str, Any] = as_dict() if callable(as_dict) else dict(headers)
    for name in out:
        if name in SECRET_HEADERS:
            out[name] = REDACTED
    return out


def _response_headers(ctx: Context) -> dict[str, Any]:
    view = ctx.downstream_headers
    if view is not None:
        return {str(k).lower(): v for k, v in view.items()}
    out: dict[str, Any] = {}
    for raw_name, raw_value in ctx.response_raw or ():
        name = raw_name.decode("latin-1").lower()
        if name in _HOP:
            continue
        value = raw_value.decode("latin-1")
        prev = out.get(name)
        out[name] = value if prev is None else (prev + [value] if isinstance(prev, list) else [prev, value])
    return out


def _query(ctx: Context) -> dict[str, Any]:
    q: dict[str, Any] = dict(ctx.query())
    for name in q:
        if _arg_secret(name):
            q[name] = REDACTED
    return q


def serialize_context(ctx: Context) -> dict[str, Any]:
    src = ctx.log_source
    raw_target, port, upstream, target, query = src if src is not None else (None, 0, None, None, b"")
    uri = redact_uri(raw_target.decode("latin-1") if raw_target is not None
                     else ctx.path + ("?" + ctx.raw_query if ctx.raw_query else ""))
    host = ctx.header("host") or ""
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.split(":", 1)[0]
    lat = ctx.latencies or {"request": 0, "proxy": -1, "kong": 0}
    upstream_uri = ""
    if upstream is not None:
        # The path and query sent upstream: a plugin's set_path / set_query, else the route and service's.
        path = ctx.upstream_path if ctx.upstream_path is not None else target.decode("utf-8", "replace")
        if ctx.upstream_query is not None:
            q = "?" + ctx.upstream_query if ctx.upstream_query else ""
        else:
            q = query.decode("latin-1")
        upstream_uri = redact_uri(path + q)
    status = ctx.response_status
    root: dict[str, Any] = {
        "request": {
            "id": ctx.request_id,
            "uri": uri,
            "url": f"{ctx.scheme}://{host}:{port}{uri}" if port else f"{ctx.scheme}://{host}{uri}",
            "querystring": _query(ctx),
            "method": ctx.method,
            "headers": _request_headers(ctx),
            "size": ctx.request_size,
        },
        "upstream_uri": upstream_uri,
        "upstream_status": str(status) if upstream is not None and status else "",
        "response": {"status": status, "headers": _response_headers(ctx), "size": ctx.response_size},
        "latencies": {"kong": lat.get("kong", 0), "proxy": lat.get("proxy", -1), "request": lat.get("request", 0),
                      "receive": 0},
        # Kong lists every try; the last one's address is what servegate keeps.
        "tries": [{"ip": upstream[0], "port": upstream[1], "balancer_latency": 0}] if upstream is not None else None,
        "route": dict(ctx.route) if ctx.route is not None else None,
        "service": dict(ctx.service) if ctx.service is not None else None,
        "consumer": dict(ctx.consumer) if ctx.consumer is not None else None,
        "client_ip": ctx.client_ip,
        "started_at": int(time.time() * 1000) - int(lat.get("request", 0)),
        "workspace_name": DEFAULT_WORKSPACE,
    }
    cred = ctx.credential
    if cred is not None:
        consumer = cred.get("consumer")
        cid = consumer.get("id") if isinstance(consumer, dict) else None
        if cid is None and ctx.consumer is not None:
            cid = ctx.consumer.get("id")
        root["authenticated_entity"] = {"id": cred.get("id"), "consumer_id": cid}
    rec = ctx.llm
    if rec is not None:
        root["ai"] = {"proxy": rec.as_kong_ai()}
    return root
