"""List query arguments (size, offset, tags) and Kong's `next` links."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import quote

from servegate.admin.context import Ctx
from servegate.admin.routing import has_invalid_utf8
from servegate.schema import errors

DEFAULT_SIZE = 100
MAX_SIZE = 1000
MAX_TAGS = 5


@dataclass
class PageArgs:
    size: int
    offset: str | None
    tags: list[str] | None
    tags_mode: str
    raw_size: str | None
    raw_tags: str | None


def _lua_tonumber(text: str) -> float | None:
    try:
        return int(text.strip(), 0) if text.strip().lower().startswith("0x") else float(text)
    except ValueError:
        return None


def parse_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_SIZE
    n = _lua_tonumber(raw)
    if n is None or math.isnan(n):
        raise errors.invalid_size("size must be a number")
    if math.isinf(n) or n != int(n) or not 1 <= n <= MAX_SIZE:
        raise errors.invalid_size(f"size must be an integer between 1 and {MAX_SIZE}")
    return int(n)


def _tag_ok(tag: str) -> bool:
    # Same byte classes as Kong's filter regex; a space is refused like Kong's tag validation does.
    return (
        bool(tag) and not has_invalid_utf8(tag) and all(ord(c) >= 0x80 or 0x21 <= ord(c) <= 0x7E for c in tag)
    )


def parse_tags(raw: str | None) -> tuple[list[str] | None, str]:
    if raw is None:
        return None, "and"
    if raw == "":
        raise errors.invalid_options({"tags": "cannot be null"})
    if "," in raw and "/" in raw:
        raise errors.invalid_options({"tags": "invalid filter syntax"})
    mode, sep = ("or", "/") if "/" in raw else ("and", ",")
    tags = raw.split(sep)
    if not all(_tag_ok(t) for t in tags):
        raise errors.invalid_options({"tags": "invalid filter syntax"})
    if len(tags) > MAX_TAGS:
        raise errors.invalid_options({"tags": f"cannot query more than {MAX_TAGS} tags"})
    return tags, mode


def page_args(ctx: Ctx) -> PageArgs:
    raw_size = ctx.query_first("size")
    raw_tags = ctx.query_first("tags")
    tags, mode = parse_tags(raw_tags)
    size = parse_size(raw_size)
    offset = ctx.query_first("offset")
    return PageArgs(size, offset or None, tags, mode, raw_size, raw_tags)


def escape(value: str) -> str:
    return quote(value, safe="")


def next_link(base: str, offset: str | None, args: PageArgs | None = None) -> str | None:
    """`/services?offset=..&tags=..&size=..`; nested collections pass args=None (no size/tags)."""
    if offset is None:
        return None
    link = f"{base}?offset={escape(offset)}"
    if args is not None:
        if args.raw_tags is not None:
            link += f"&tags={escape(args.raw_tags)}"
        if args.raw_size is not None:
            link += f"&size={escape(args.raw_size)}"
    return link


def list_body(data: list[dict[str, object]], offset: str | None, next_: str | None) -> dict[str, object]:
    body: dict[str, object] = {"data": data}
    if offset is not None:
        body["offset"] = offset
    body["next"] = next_
    return body
