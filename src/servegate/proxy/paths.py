"""Request path normalization, Kong's v0 and v1 upstream path joins, and upstream re-escaping.

Paths are ``str``. Raw bytes that are not valid UTF-8 (from ``%XX`` decoding or from a request line the
listener decoded with ``surrogateescape``) are carried as lone surrogates and turned back into the same bytes
by :func:`escape`, so nothing is lost between the client and the upstream.
"""

from __future__ import annotations

import re

__all__ = ["escape", "join_v0", "join_v1", "normalize", "sanitize_postfix"]

# RFC 3986 reserved characters (plus "%"): their escapes change a URI's meaning, so they stay encoded.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")

_PCT_BYTES = re.compile(rb"%([0-9A-Fa-f]{2})")

# What may be sent upstream as is; everything else is percent-encoded.
_SAFE = frozenset(b"!#$&'()*+,/:;=?@[]-_.~%ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NEEDS_ESCAPE = re.compile(r"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")
_BYTE_ESCAPES = tuple(chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256))


def _decode_escape(m: re.Match[bytes]) -> bytes:
    value = int(m.group(1), 16)
    if value in _RESERVED:
        return b"%" + m.group(1).upper()
    return bytes((value,))


def _percent_decode(path: str) -> str:
    raw = path.encode("utf-8", "surrogateescape")
    return _PCT_BYTES.sub(_decode_escape, raw).decode("utf-8", "surrogateescape")


def _remove_dots_absolute(path: str) -> str:
    """Dot-segment removal plus empty-segment merging for a path that starts with "/"."""
    parts = path.split("/")
    out: list[str] = []
    last = len(parts) - 1
    trailing = False
    for i in range(1, last + 1):
        seg = parts[i]
        if seg == "" or seg == ".":
            trailing = i == last
        elif seg == "..":
            if out:
                out.pop()
            trailing = i == last
        else:
            out.append(seg)
            trailing = False
    if not out:
        return "/"
    joined = "/" + "/".join(out)
    return joined + "/" if trailing else joined


def _remove_dots_relative(path: str) -> str:
    """RFC 3986 §5.2.4 loop (with "//" merging) for the rare path that does not start with "/"."""
    pieces: list[str] = []
    rest = path
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest in (".", ".."):
            rest = ""
        elif rest == "/.":
            rest = "/"
        elif rest == "/..":
            rest = "/"
            if pieces:
                pieces.pop()
        elif rest.startswith("/./"):
            rest = rest[2:]
        elif rest.startswith("/../"):
            rest = rest[3:]
            if pieces:
                pieces.pop()
        elif rest.startswith("//"):
            rest = rest[1:]
        else:
            cut = rest.find("/", 1)
            if cut < 0:
                pieces.append(rest)
                rest = ""
            else:
                pieces.append(rest[:cut])
                rest = rest[cut:]
    return "".join(pieces)


def normalize(raw_path: str) -> str:
    """Normalize a request path (no query string) the way Kong does before routing.

    Escapes of non-reserved characters are decoded, escapes of reserved ones are upper-cased, dot segments are
    removed and runs of "/" are merged.
    """
    path = raw_path
    if path == "" or path == "/":
        return path
    if "%" in path:
        path = _percent_decode(path)
    if path[0] == "/":
        # in an absolute path every dot segment follows a "/"
        if "/." not in path and "//" not in path:
            return path
        return _remove_dots_absolute(path)
    if "." not in path and "//" not in path:
        return path
    return _remove_dots_relative(path)


def sanitize_postfix(postfix: str) -> str:
    """Drop a leading "./" or "../" (or a lone "." / "..") left after stripping a route prefix."""
    if not postfix:
        return postfix
    if postfix == "." or postfix == "..":
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def join_v0(service_path: str | None, prefix: str, request_path: str, strip: bool) -> str:
    """Kong's ``path_handling = v0`` upstream path (before re-escaping).

    ``prefix`` is the matched part of ``request_path`` when the route strips it (``"/"`` otherwise).
    """
    base = service_path or "/"
    if base[-1] == "/":
        if not strip:
            return base + request_path[1:]
        postfix = sanitize_postfix(request_path[len(prefix):])
        if postfix == "":
            if base == "/":
                return "/"
            return base if request_path.endswith("/") else base[:-1]
        if postfix[0] == "/":
            return base[:-1] + postfix
        return base + postfix
    if not strip:
        return base if request_path == "/" else base + request_path
    postfix = sanitize_postfix(request_path[len(prefix):])
    if postfix == "":
        if len(request_path) > 1 and request_path.endswith("/"):
            return base + "/"
        return base
    if postfix[0] == "/":
        return base + postfix
    return base + "/" + postfix


def join_v1(service_path: str | None, prefix: str, request_path: str, strip: bool) -> str:
    """Kong's deprecated ``path_handling = v1`` upstream path (before re-escaping), as the traditional router
    built it; same arguments as :func:`join_v0`.

    v1 glues the service path and the rest of the request together with no "/" added between them (service
    ``/srv`` + request ``/req`` gives ``/srvreq``); only a doubled "/" at the seam is collapsed, and only when
    the route strips its prefix.
    """
    base = service_path or "/"
    if not strip:
        return base + request_path[1:]
    postfix = sanitize_postfix(request_path[len(prefix):])
    if postfix and postfix[0] == "/" and base[-1] == "/":
        return base[:-1] + postfix
    return base + postfix


def escape(path: str) -> str:
    """Percent-encode what is not safe to send upstream; existing escapes and reserved chars are kept."""
    if _NEEDS_ESCAPE.search(path) is None:
        return path
    raw = path.encode("utf-8", "surrogateescape")
    return "".join([_BYTE_ESCAPES[b] for b in raw])
