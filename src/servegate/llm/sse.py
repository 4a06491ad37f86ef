"""Server-Sent Events framing over de-framed body chunks, as the OpenAI SDK reads it: an event ends at a blank
line (LF or CRLF line ends), lines starting with `:` are comments, several `data:` lines join with "\\n", one
space after the colon is dropped. (A lone CR as line end, which the spec also allows, is not produced by any
OpenAI-compatible server and is not recognised.)

The functions take a buffer and bounds instead of slices, so that the tap scans a chunk without copying it.
"""

from __future__ import annotations

from typing import Final

LF: Final = 10
CR: Final = 13
SPACE: Final = 32
QUOTE: Final = 34
BACKSLASH: Final = 92


def event_end(buf: bytes, start: int) -> int:
    """The index just past the blank line ending the event that starts at `start`; -1 while it is incomplete."""
    n = len(buf)
    i = buf.find(b"\n", start)
    while i >= 0:
        j = i + 1
        if j < n and buf[j] == CR:
            j += 1
        if j < n and buf[j] == LF:
            return j + 1
        i = buf.find(b"\n", j)
    return -1


def single_data(buf: bytes, s: int, e: int) -> tuple[int, int]:
    """Bounds of the payload of an event `buf[s:e]` made of one `data:` line (the usual shape, read in place);
    (-1, -1) when the event has another shape (see `event_data`)."""
    if not buf.startswith(b"data:", s):
        return -1, -1
    p = s + 5
    if p < e and buf[p] == SPACE:
        p += 1
    nl = buf.find(b"\n", p, e)
    if nl < 0 or e - nl > 3:
        return -1, -1  # more lines follow: general shape
    q = nl - 1 if nl > p and buf[nl - 1] == CR else nl
    return p, q


def event_data(event: bytes) -> bytes | None:
    """The data of any event (its `data:` lines joined with LF); None for a comment or an event without data."""
    parts: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            v = line[5:]
            parts.append(v[1:] if v[:1] == b" " else v)
    return b"\n".join(parts) if parts else None


def value_at(buf: bytes, key: bytes, p: int, q: int) -> int:
    """Index of the first character of the JSON value following `key` (`"name":`) in `buf[p:q]`, -1 if absent.

    A key pattern (quote, name, quote, colon) cannot match inside a JSON string, where quotes are escaped."""
    i = buf.find(key, p, q)
    if i < 0:
        return -1
    v = i + len(key)
    if v < q and buf[v] == SPACE:
        v += 1
    return v if v < q else -1


def nonempty_string_at(buf: bytes, key: bytes, p: int, q: int) -> bool:
    """Whether `key` holds a non-empty string in `buf[p:q]`."""
    v = value_at(buf, key, p, q)
    return v >= 0 and buf[v] == QUOTE and v + 1 < q and buf[v + 1] != QUOTE


def string_at(buf: bytes, key: bytes, p: int, q: int) -> str | None:
    """The string value of `key` in `buf[p:q]` when it holds no escape (model names never do); else None."""
    v = value_at(buf, key, p, q)
    if v < 0 or buf[v] != QUOTE:
        return None
    end = buf.find(b'"', v + 1, q)
    if end < 0 or buf.find(b"\\", v + 1, end) >= 0:
        return None
    return buf[v + 1 : end].decode("utf-8", "replace")


def object_at(buf: bytes, v: int, q: int) -> int:
    """The index just past the JSON object starting at `buf[v]` (`{`), braces inside strings skipped; -1 when it
    does not end before `q`."""
    depth = 0
    i = v
    in_str = False
    while i < q:
        c = buf[i]
        if in_str:
            if c == BACKSLASH:
                i += 1
            elif c == QUOTE:
                in_str = False
        elif c == QUOTE:
            in_str = True
        elif c == 123:  # {
            depth += 1
        elif c == 125:  # }
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1
