"""The mutable response headers a header_filter hook sees as `ctx.downstream_headers` (kong.response.set_header,
add_header, clear_header). Built only for a response some plugin's header_filter runs on.

Names are matched case-insensitively and keep the case they were given; a repeated header reads as a list.
The framing headers (Content-Length, Transfer-Encoding) are the proxy's: changes to them are ignored, since the
body is relayed (or re-framed by a body_filter) as the proxy frames it.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Final

_FRAMING: Final = frozenset(("content-length", "transfer-encoding"))
_FRAMING_B: Final = frozenset((b"content-length", b"transfer-encoding"))

HeaderValue = str | list[str]


def _check(name: str, value: str) -> None:
    if not name or any(c in name for c in " \t\r\n:") or "\r" in value or "\n" in value:
        raise ValueError(f"invalid header {name!r}")


class ResponseHeaders(MutableMapping[str, HeaderValue]):
    """lower-case name -> (name as given, values)."""

    __slots__ = ("_h", "changed")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        h: dict[str, tuple[str, list[str]]] = {}
        for n, v in raw:
            name = n.decode("latin-1")
            entry = h.get(name.lower())
            if entry is None:
                h[name.lower()] = (name, [v.decode("latin-1")])
            else:
                entry[1].append(v.decode("latin-1"))
        self._h = h
        self.changed = False

    def __getitem__(self, name: str) -> HeaderValue:
        values = self._h[name.lower()][1]
        return values[0] if len(values) == 1 else list(values)

    def __setitem__(self, name: str, value: HeaderValue) -> None:
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        for v in values:
            _check(name, v)
        self._h[name.lower()] = (name, values)
        self.changed = True

    def __delitem__(self, name: str) -> None:
        del self._h[name.lower()]
        self.changed = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._h)

    def __len__(self) -> int:
        return len(self._h)

    def add(self, name: str, value: str) -> None:
        """Append one more value (kong.response.add_header)."""
        _check(name, value)
        entry = self._h.get(name.lower())
        if entry is None:
            self._h[name.lower()] = (name, [value])
        else:
            entry[1].append(value)
        self.changed = True

    def raw(self, upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The header list to send: every header held here, except that framing comes from `upstream`."""
        out = [(n, v) for n, v in upstream if n.lower() in _FRAMING_B]
        for lname, (name, values) in self._h.items():
            if lname in _FRAMING:
                continue
            nb = name.encode("latin-1")
            out += [(nb, v.encode("latin-1")) for v in values]
        return out
