"""Request-body decoding for plugins that read arguments from the body (key-auth's key_in_body).

Supports application/x-www-form-urlencoded, application/json (object bodies) and
multipart/form-data, and re-encodes a body with one field removed in the same MIME type.
"""

from __future__ import annotations

from typing import Any

import orjson

from servegate import multipart
from servegate.plugins.base import encode_query, parse_query


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _multipart_parts(content_type: str | None, body: bytes) -> list[multipart.Part] | None:
    """The parts of a multipart body, or None when it is not valid multipart."""
    try:
        return multipart.parse(body, content_type or "")
    except multipart.MultipartError:
        return None


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
        out: dict[str, Any] = {}
        for part in _multipart_parts(content_type, body) or ():
            if part.name is not None and part.name not in out:
                out[part.name] = part.data.decode("utf-8", "replace")
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
        parts = _multipart_parts(content_type, body)
        if not parts or all(p.name != name for p in parts):
            return None
        delim = b"--" + multipart.header_params(content_type or "")[1]["boundary"].encode("latin-1", "replace")
        kept = [p.raw for p in parts if p.name != name]
        return b"".join(delim + b"\r\n" + raw + b"\r\n" for raw in kept) + delim + b"--\r\n"
    return None
