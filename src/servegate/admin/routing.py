"""Path table for the Admin API: segment patterns, percent-decoding, literal-first matching.

Our own table because Kong's rules differ from generic web routers: keys are matched after percent-decoding
each segment, a trailing slash is tolerated, literal segments win over parameters (`/plugins/enabled` before
`/plugins/{plugins}`), and unknown paths vs. known paths with a wrong method must give distinct Kong bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    from servegate.admin.context import Ctx
    from servegate.admin.http import Response

Handler = Callable[["Ctx"], Awaitable["Response"]]


@dataclass
class Endpoint:
    """One path pattern, e.g. ("services", "{services}", "routes"), and its method handlers."""

    segments: tuple[str, ...]
    methods: dict[str, Handler] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return "/" + "/".join(self.segments)

    def allowed(self) -> list[str]:
        names = set(self.methods)
        if "GET" in names:
            names.add("HEAD")
        names.add("OPTIONS")
        return sorted(names)


def is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


@dataclass
class Match:
    endpoint: Endpoint
    params: dict[str, str]  # decoded values
    raw_params: dict[str, str]  # as sent (still percent-encoded), for `next` links


class PathTable:
    def __init__(self) -> None:
        self._by_len: dict[int, list[Endpoint]] = {}
        self._all: dict[tuple[str, ...], Endpoint] = {}

    def add(self, path: str, method: str, handler: Handler) -> None:
        segments = tuple(s for s in path.split("/") if s)
        ep = self._all.get(segments)
        if ep is None:
            ep = Endpoint(segments)
            self._all[segments] = ep
            self._by_len.setdefault(len(segments), []).append(ep)
        ep.methods[method] = handler

    def handler(self, path: str, method: str) -> Handler | None:
        """The handler registered for exactly this pattern and method (a plugin endpoint may wrap it)."""
        ep = self._all.get(tuple(s for s in path.split("/") if s))
        return ep.methods.get(method) if ep is not None else None

    def paths(self) -> list[str]:
        return sorted(ep.path for ep in self._all.values())

    def match(self, raw_path: str) -> Match | None:
        raw_segments = split_path(raw_path)
        decoded = [decode_segment(s) for s in raw_segments]
        best: tuple[tuple[int, ...], Endpoint] | None = None
        for ep in self._by_len.get(len(decoded), ()):
            score: list[int] = []
            for pat, value in zip(ep.segments, decoded, strict=True):
                if is_param(pat):
                    score.append(0)
                elif pat == value:
                    score.append(1)
                else:
                    break
            else:
                key = tuple(score)
                if best is None or key > best[0]:
                    best = (key, ep)
        if best is None:
            return None
        ep = best[1]
        params: dict[str, str] = {}
        raw: dict[str, str] = {}
        for pat, value, raw_value in zip(ep.segments, decoded, raw_segments, strict=True):
            if is_param(pat):
                params[pat[1:-1]] = value
                raw[pat[1:-1]] = raw_value
        return Match(ep, params, raw)


def split_path(raw_path: str) -> list[str]:
    # Empty segments are dropped, as nginx's merge_slashes does in front of Kong: `//services/` is
    # `/services`, and a trailing slash is tolerated.
    path = raw_path.split("?", 1)[0]
    return [s for s in path.split("/") if s]


def decode_segment(segment: str) -> str:
    # surrogateescape keeps invalid UTF-8 visible to handlers that must reject it (/tags/<bad>).
    return unquote_to_bytes(segment).decode("utf-8", "surrogateescape")


def has_invalid_utf8(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def invalid_utf8_message(value: str) -> str | None:
    """Kong's message for the first byte of `value` that is not UTF-8 (1-based byte position), or None."""
    for i, ch in enumerate(value):
        if "\udc80" <= ch <= "\udcff":
            position = len(value[:i].encode("utf-8", "surrogateescape")) + 1
            return f"invalid utf-8 character sequence detected at position {position}"
    return None


def printable(value: str) -> str:
    """A decoded value made JSON-encodable for quoting in a message: each byte that was not UTF-8
    (kept by surrogateescape) becomes U+FFFD."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
