"""Kong's URI normalization, used to reject non-normalized route prefix paths."""

from __future__ import annotations

import re

# Reserved characters stay percent-encoded (with upper-case hex); everything else is decoded.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _decode_unreserved(m: re.Match[bytes]) -> bytes:
    code = int(m.group(1), 16)
    if code in _RESERVED:
        return m.group(0).upper()
    return bytes([code])


def normalize_path(uri: str, *, merge_slashes: bool = False) -> str:
    """Decode unreserved %-escapes, upper-case the others, drop dot segments, optionally merge `//`."""
    if uri in ("", "/"):
        return uri
    data = uri.encode("utf-8")
    if b"%" in data:
        data = _PCT.sub(_decode_unreserved, data)
    if b"." not in data and (not merge_slashes or b"//" not in data):
        return data.decode("utf-8", errors="replace")

    out: list[bytes] = []
    rest = data
    while rest:
        if rest == b"/.":
            rest = b"/"
        elif rest == b"/..":
            rest = b"/"
            if out:
                out.pop()
        elif rest in (b".", b".."):
            rest = b""
        elif rest.startswith(b"../"):
            rest = rest[3:]
        elif rest.startswith(b"./"):
            rest = rest[2:]
        elif rest.startswith(b"/./"):
            rest = rest[2:]
        elif rest.startswith(b"/../"):
            rest = rest[3:]
            if out:
                out.pop()
        elif merge_slashes and rest.startswith(b"//"):
            rest = rest[1:]
        else:
            i = rest.find(b"/", 1)
            if i == -1:
                out.append(rest)
                rest = b""
            else:
                out.append(rest[:i])
                rest = rest[i:]
    return b"".join(out).decode("utf-8", errors="replace")
