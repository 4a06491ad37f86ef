"""multipart/form-data bodies (RFC 7578): a boundary splitter and part-header parser.

Used by the Admin API (form bodies) and by plugins that read arguments from a request body (key-auth's
key_in_body). Bodies are read whole (bounded by the caller), so the parts are cut from one bytes object.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not multipart/form-data with the announced boundary."""


@dataclass
class Part:
    name: str | None  # Content-Disposition's `name`; None for a part without one
    content_type: str  # media type, lower case, no parameters ("" when the part has none)
    charset: str | None
    data: bytes  # with any Content-Transfer-Encoding undone
    raw: bytes  # the part as sent (headers, blank line, body): to re-emit it unchanged


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """`form-data; name="a;b"; filename=x` -> ("form-data", {"name": "a;b", "filename": "x"}).

    Quoted strings may hold `;` and backslash escapes; parameter names are lower-cased.
    """
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        eq = rest.find("=", i)
        semi = rest.find(";", i)
        if eq < 0 or (0 <= semi < eq):  # a parameter without a value: skip it
            if semi < 0:
                break
            i = semi + 1
            continue
        key = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            val = "".join(chars)
            semi = rest.find(";", i)
            i = n if semi < 0 else semi + 1
        else:
            semi = rest.find(";", i)
            end = n if semi < 0 else semi
            val = rest[i:end].strip()
            i = end + 1
        if key:
            params.setdefault(key, val)
    return main.strip().lower(), params


def _decode_transfer(data: bytes, encoding: str) -> bytes:
    # RFC 7578 deprecates Content-Transfer-Encoding, but older clients still send base64/quoted-printable.
    enc = encoding.strip().lower()
    try:
        if enc == "base64":
            return binascii.a2b_base64(data)
        if enc == "quoted-printable":
            return binascii.a2b_qp(data)
    except binascii.Error:
        raise MultipartError("bad transfer encoding") from None
    return data


def _part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):  # no part headers at all
        head, body = b"", raw[2:]
    else:
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("part without a blank line after its headers")
    name: str | None = None
    ctype, charset, transfer = "", None, ""
    for line in head.decode("utf-8", "surrogateescape").split("\r\n") if head else ():
        hname, colon, hvalue = line.partition(":")
        if not colon:
            raise MultipartError("bad part header")
        hname = hname.strip().lower()
        if hname == "content-disposition":
            _, params = header_params(hvalue)
            name = params.get("name")
        elif hname == "content-type":
            ctype, params = header_params(hvalue)
            charset = params.get("charset")
        elif hname == "content-transfer-encoding":
            transfer = hvalue
    return Part(name, ctype, charset, _decode_transfer(body, transfer) if transfer else body, raw)


def parse(body: bytes, content_type: str) -> list[Part]:
    """The parts of a multipart body whose Content-Type header is `content_type`; MultipartError if malformed."""
    _, params = header_params(content_type)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise MultipartError("no usable boundary")
    delim = b"--" + boundary.encode("latin-1", "replace")
    # The first delimiter may open the body or follow a preamble line.
    if body.startswith(delim):
        pos = len(delim)
    else:
        at = body.find(b"\r\n" + delim)
        if at < 0:
            raise MultipartError("boundary not found")
        pos = at + 2 + len(delim)
    parts: list[Part] = []
    sep = b"\r\n" + delim
    while True:
        if body.startswith(b"--", pos):  # close delimiter; an epilogue may follow
            return parts
        # transport padding, then the line break that ends the delimiter line
        while pos < len(body) and body[pos] in b" \t":
            pos += 1
        if not body.startswith(b"\r\n", pos):
            raise MultipartError("bad delimiter line")
        start = pos + 2
        end = body.find(sep, start)
        if end < 0:
            raise MultipartError("unterminated part")
        parts.append(_part(body[start:end]))
        pos = end + len(sep)
