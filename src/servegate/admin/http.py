"""The Admin API's request and response objects: plain data, no I/O (the server in `server.py` fills and
writes them).

Header text is latin-1 both ways, so whatever bytes a client sent (an `Origin` echoed back in CORS headers)
round-trip unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively. A repeated name answers its first value (what the
    handlers need for Content-Type and Origin)."""

    __slots__ = ("_first",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        first: dict[str, str] = {}
        for name, value in items:
            first.setdefault(name.lower(), value)
        self._first = first

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)


class ResponseHeaders(MutableMapping[str, str]):
    """Response headers: names keep the case they were first set with; setting, reading and deleting
    ignore case (setting `content-type` replaces `Content-Type`)."""

    __slots__ = ("_map",)

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._map: dict[str, tuple[str, str]] = {}
        if initial:
            for name, value in initial.items():
                self[name] = value

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        key = name.lower()
        old = self._map.get(key)
        self._map[key] = (old[0] if old else name, value)

    def __delitem__(self, name: str) -> None:
        del self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._map.values())

    def __len__(self) -> int:
        return len(self._map)

    def pairs(self) -> list[tuple[str, str]]:
        """(name as set, value) in the order first set."""
        return list(self._map.values())


class Request:
    """One parsed request with its whole body.

    `path` and `query_string` are the request-target as sent, still percent-encoded. `conn` is the
    connection it arrived on (the server's protocol object).
    """

    __slots__ = ("method", "path", "query_string", "headers", "body", "version", "keep_alive", "conn")

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Headers,
        body: bytes = b"",
        *,
        version: str = "1.1",
        keep_alive: bool = True,
        conn: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self.conn = conn


class Response:
    """Status, headers, body. The server adds Content-Length, Date and Connection when it writes it."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int = 200, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = ResponseHeaders(headers)
