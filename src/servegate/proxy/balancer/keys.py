"""The hash input of a request: Kong's hash_on / hash_fallback for consistent-hashing, and the prompt prefix
for prefix-affinity. Read from the exchange only when the upstream's algorithm needs one."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson


def _header(ex: Any, name: str) -> str | None:
    lname = name.lower().encode("latin-1")
    values = [v.strip().decode("latin-1") for n, _, v in ex.headers if n == lname]
    return ",".join(values) if values else None


def _cookie(ex: Any, name: str) -> str | None:
    for n, _, v in ex.headers:
        if n == b"cookie":
            for part in v.decode("latin-1").split(";"):
                k, _, value = part.strip().partition("=")
                if k == name:
                    return value
    return None


def _query_arg(ex: Any, name: str) -> str | None:
    if not ex.query:
        return None
    values = [v for k, v in parse_qsl(ex.query[1:].decode("latin-1"), keep_blank_values=True) if k == name]
    return ",".join(values) if values else None


def one(ex: Any, upstream: dict[str, Any], how: str, prefix: str) -> str | None:
    """The value `how` (a hash_on value) names for this request, None when it has none."""
    if how == "ip":
        return str(ex.client_ip.decode("latin-1"))
    if how == "consumer":
        ctx = ex.ctx
        consumer = getattr(ctx, "consumer", None) if ctx is not None else None
        credential = getattr(ctx, "credential", None) if ctx is not None else None
        row = consumer or credential
        return str(row.get("id")) if row else None
    if how == "path":
        return str(ex.norm_path)
    if how == "header":
        name = upstream.get(f"{prefix}_header")
        return _header(ex, name) if name else None
    if how == "cookie":
        name = upstream.get("hash_on_cookie")
        return _cookie(ex, name) if name else None
    if how == "query_arg":
        name = upstream.get(f"{prefix}_query_arg")
        return _query_arg(ex, name) if name else None
    if how == "uri_capture":
        name = upstream.get(f"{prefix}_uri_capture")
        captures = ex.match.captures if ex.match is not None else None
        if not name or not captures:
            return None
        value = captures.get(int(name) if name.isdigit() else name)
        return value if value else None
    return None


def hash_input(ex: Any, upstream: dict[str, Any]) -> str | None:
    """hash_on's value, else hash_fallback's (Kong's order), else None (the ring then is not used)."""
    value = one(ex, upstream, upstream.get("hash_on") or "none", "hash_on")
    if value is None:
        value = one(ex, upstream, upstream.get("hash_fallback") or "none", "hash_fallback")
    return value


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_prefix(body: Any, chars: int) -> str | None:
    """The first `chars` characters of a chat (`messages`: role and text of each, in order) or completion
    (`prompt`) request; None for a body without either (it is then balanced by load alone)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        parts: list[str] = []
        size = 0
        for m in messages:
            if not isinstance(m, dict):
                continue
            piece = f"{m.get('role', '')}\x1f{_text(m.get('content'))}\x1e"
            parts.append(piece)
            size += len(piece)
            if size >= chars:
                break
        text = "".join(parts)
        return text[:chars] if text else None
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
    if isinstance(prompt, str) and prompt:
        return prompt[:chars]
    return None
