"""Request-body decoding for plugins that read arguments from the body (key-auth's key_in_body).

Supports application/x-www-form-urlencoded, application/json (object bodies) and
multipart/form-data, and re-encodes a body with one field removed in the same MIME type.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from servegate.plugins.base import encode_query, parse_query

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_NAME = re.compile(rb'\bname="([^"]*)"', re.I)


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _multipart_parts(body: bytes, boundary: bytes) -> list[tuple[str | None, bytes, bytes]] | None:
    """[(field name, raw part incl. headers, value)] or None when the body is not valid multipart."""
    delim = b"--" + boundary
    chunks = body.split(delim)
    if len(chunks) < 3:
        return None
    parts: list[tuple[str | None, bytes, bytes]] = []
    for chunk in chunks[1:-1]:
        raw = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw
        head, sep, value = raw.partition(b"\r\n\r\n")
        if not sep:
            return None
        m = _NAME.search(head)
        parts.append((m.group(1).decode("utf-8", "replace") if m else None, raw, value))
    return parts


def decode(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Body arguments by name; a repeated form field gives a list. {} when undecodable."""
    mime = _mime(content_type)
    if not body:
        return {}
    if mime == "application/x-www-form-urlencoded":
        return dict(parse_query(body.decode("latin-1")))
    if mime == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    if mime == "multipart/form-data":
        m = _BOUNDARY.search(content_type or "")
        parts = _multipart_parts(body, m.group(1).encode()) if m else None
        out: dict[str, Any] = {}
        for name, _, value in parts or ():
            if name is not None and name not in out:
                out[name] = value.decode("utf-8", "replace")
        return out
    return {}


def remove_field(content_type: str | None, body: bytes, name: str) -> bytes | None:
    """The body without field `name`, same MIME type; None when nothing changes."""
    mime = _mime(content_type)
    if mime == "application/x-www-form-urlencoded":
        args = parse_query(body.decode("latin-1"))
        if name not in args:
            return None
        del args[name]
        return encode_query(args).encode("latin-1")
    if mime == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or name not in data:
            return None
        del data[name]
        return orjson.dumps(data)
    if mime == "multipart/form-data":
        m = _BOUNDARY.search(content_type or "")
        if not m:
            return None
        boundary = m.group(1).encode()
        parts = _multipart_parts(body, boundary)
        if not parts or all(n != name for n, _, _ in parts):
            return None
        delim = b"--" + boundary
        kept = [raw for n, raw, _ in parts if n != name]
        return b"".join(delim + b"\r\n" + raw + b"\r\n" for raw in kept) + delim + b"--\r\n"
    return None
