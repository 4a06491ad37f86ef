"""Value checks behind Kong's typedefs (hosts, paths, names, tags, header names, IPs).

Each check takes an already type-checked value and returns None when it is fine, or
Kong's error string.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from servegate.schema.fields import EntityCheck, Field
from servegate.schema.paths import normalize_path

# ---------------------------------------------------------------------------------------------
# names and tags


def _is_name_char(ch: str) -> bool:
    return ord(ch) >= 0x80 or ch.isascii() and (ch.isalnum() or ch in ".-_~")


def utf8_name(value: str) -> str | None:
    if value and all(_is_name_char(c) for c in value):
        return None
    return f"invalid value '{value}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"


def _is_tag_char(ch: str) -> bool:
    o = ord(ch)
    return o >= 0x80 or (0x20 <= o <= 0x7E and ch not in ",/")


def tag(value: str) -> str | None:
    if value and all(_is_tag_char(c) for c in value):
        return None
    return f"invalid tag '{value}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"


_HEADER_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")


def header_name(value: str) -> str | None:
    if value == "":
        return "no header name provided"
    if _HEADER_NAME.match(value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


_UPPER = re.compile(r"^[A-Z]+$")


def http_method(value: str) -> str | None:
    return None if _UPPER.match(value) else f"invalid value: {value}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_string(value: str) -> str | None:
    """Kong's validate_utf8_string. Bytes that are not UTF-8 reach us as lone surrogates
    (surrogateescape: URL segments); neither store can hold them."""
    m = _SURROGATE.search(value)
    if m is None:
        return None
    position = len(value[: m.start()].encode("utf-8")) + 1
    return f"invalid utf-8 character sequence detected at position {position}"


# ---------------------------------------------------------------------------------------------
# hosts (Kong's normalize_ip: classify as ipv4 / ipv6 / name, then parse with optional port)

PORT_ERROR = "invalid port number"


def _hostname_type(name: str) -> str:
    if name.count(":") > 1:
        return "ipv6"
    if re.fullmatch(r"[\d.]+", name.replace(":", "")):
        return "ipv4"
    return "name"


def _parse_ipv4(address: str) -> tuple[str | None, int | str | None]:
    m = re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::(\d+))?", address)
    if not m or any(int(p) > 255 for p in m.groups()[:4]):
        return None, f"invalid ipv4 address: {address}"
    host = ".".join(m.groups()[:4])
    if m.group(5) is not None:
        port = int(m.group(5))
        if port > 65535:
            return None, PORT_ERROR
        return host, port
    return host, None


def _parse_ipv6(address: str) -> tuple[str | None, int | str | None]:
    port: int | None = None
    check = address
    m = re.fullmatch(r"\[([^\]]*)\](.*)", address, re.S)
    if m:
        check, rest = m.group(1), m.group(2)
        if rest:
            pm = re.fullmatch(r":(\d*)", rest)
            if not pm or pm.group(1) == "":
                return None, "invalid ipv6 address"
            port = int(pm.group(1))
            if port > 65535:
                return None, PORT_ERROR
    try:
        ipaddress.IPv6Address(check)
    except ValueError:
        return None, f"invalid ipv6 address: {address}"
    return check, port


def _parse_hostname(address: str) -> tuple[str | None, int | str | None]:
    name = address
    port: int | None = None
    m = re.search(r":(\d+)$", address)
    if m:
        name = address[: -(len(m.group(1)) + 1)]
        port = int(m.group(1))
        if port > 65535:
            return None, PORT_ERROR
    if not re.fullmatch(r"[A-Za-z0-9\-._]+", name):
        return None, f"invalid hostname: {address}"
    segments = name.split(".")
    for i, seg in enumerate(segments):
        if seg.endswith("-") or (seg == "" and i != len(segments) - 1):
            return None, f"invalid hostname: {address}"
    return name, port


def normalize_ip(address: str) -> tuple[dict[str, Any] | None, str | None]:
    """Classify and parse a host with optional port: ({type, host, port}, None) or (None, error).
    `host` is without the port (and without the brackets of an IPv6 address)."""
    kind = _hostname_type(address)
    parser = {"ipv4": _parse_ipv4, "ipv6": _parse_ipv6, "name": _parse_hostname}[kind]
    host, port_or_err = parser(address)
    if host is None:
        return None, str(port_or_err)
    return {"type": kind, "host": host, "port": port_or_err}, None


def host(value: str) -> str | None:
    """Service host: a hostname or IP address, without a port."""
    res, err = normalize_ip(value)
    if err is not None and err != PORT_ERROR:
        return f"invalid value: {value}"
    if err == PORT_ERROR or (res is not None and res["port"] is not None):
        return "must not have a port"
    return None


def host_with_optional_port(value: str) -> str | None:
    _, err = normalize_ip(value)
    return err


def format_host(value: str, default_port: int | None = None) -> tuple[str | None, str | None]:
    """Kong's format_host(normalize_ip(value), default_port): `host:port` with IPv4 leading zeros dropped and
    IPv6 fully expanded, lower case, in brackets (a name is kept as written); the port is `default_port` when
    the value has none. (formatted, None) or (None, normalize_ip's error)."""
    res, err = normalize_ip(value)
    if res is None:
        return None, err
    host = res["host"]
    if res["type"] == "ipv4":
        host = ".".join(str(int(part)) for part in host.split("."))
    elif res["type"] == "ipv6":
        host = "[" + ipaddress.IPv6Address(host).exploded + "]"
    port = res["port"] if res["port"] is not None else default_port
    return (host if port is None else f"{host}:{port}"), None


def sni(value: str) -> str | None:
    """Kong's typedefs.sni: a host name, no IP, no port."""
    return _name_only(value)


def _name_only(value: str) -> str | None:
    """A host name: not an IP, no port (Kong's messages)."""
    res, err = normalize_ip(value)
    if err is not None and err != PORT_ERROR:
        return f"invalid value: {value}"
    if res is not None and res["type"] != "name":
        return "must not be an IP"
    if err == PORT_ERROR or (res is not None and res["port"] is not None):
        return "must not have a port"
    return None


# RFC 2616 token: no controls, no bytes >= 0x80, no separators.
_NOT_TOKEN = re.compile(r'[\x00-\x1f\x7f\x80-\U0010ffff ()<>@,;:\\"/?={}\[\]\t]')


def http_token(value: str) -> str | None:
    """Kong's validate_http_token (typedefs.cookie_name)."""
    if value == "":
        return "no token provided"
    if _NOT_TOKEN.search(value) is None:
        return None
    return ("contains one or more invalid characters. ASCII control characters (0-31;127), space, tab and the "
            'characters ()<>@,;:\\"/?={}[] are not allowed.')


def wildcard_host(value: str) -> str | None:
    """SNI-like host with at most one wildcard at either end; no IP, no port."""
    idx = value.find("*")
    if idx != -1:
        if idx != 0 and idx != len(value) - 1:
            return "wildcard must be leftmost or rightmost character"
        if value.count("*") > 1:
            return "only one wildcard must be specified"
        value = value.replace("*", "wildcard")
    return _name_only(value)


def route_host(value: str) -> str | None:
    """An element of routes.hosts: optional `*` at the leftmost/rightmost label, optional port."""
    if value.count("*") > 1:
        return "invalid wildcard: must have at most one wildcard"
    if "*" in value and not (value.startswith("*.") or value.endswith(".*")):
        return "invalid wildcard: must be placed at leftmost or rightmost label"
    return host_with_optional_port(value.replace("*", "abc"))


def ip_or_cidr(value: str) -> str | None:
    try:
        if "/" in value:
            addr, _, prefix = value.partition("/")
            ip = ipaddress.ip_address(addr)
            if not prefix.isdigit() or int(prefix) > ip.max_prefixlen or str(int(prefix)) != prefix:
                raise ValueError(value)
        else:
            ipaddress.ip_address(value)
        return None
    except ValueError:
        return f"invalid ip or cidr range: '{value}'"


# ---------------------------------------------------------------------------------------------
# paths

_RFC3986_PATH = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*$")
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")


def _percent_error(path: str) -> str | None:
    raw = _PCT.sub("___", path)
    i = raw.find("%")
    if i == -1:
        return None
    return f"invalid url-encoded value: '{raw[i : i + 3]}'"


def service_path(value: str) -> str | None:
    """Service path, after `should start with: /`: no empty segments, RFC 3986 characters, valid escapes."""
    if "//" in value:
        return "must not have empty segments"
    if not _RFC3986_PATH.match(value):
        return f"invalid path: '{value}' (characters outside of the reserved list of RFC 3986 found)"
    return _percent_error(value)


def route_path(value: str) -> str | None:
    """An element of routes.paths: `/prefix` (normalized) or `~/regex` (must compile)."""
    if "//" in value:
        return "must not have empty segments"
    if not (value.startswith("/") or value.startswith("~/")):
        return "should start with: / (fixed path) or ~/ (regex path)"
    # Of the service-path rules only a bad %-escape is fatal here: route paths may hold
    # other characters (regexes, raw UTF-8).
    pct = _percent_error(value)
    if pct is not None:
        return pct
    if not value.startswith("~"):
        normalized = normalize_path(value, merge_slashes=True)
        if normalized != value:
            return f"non-normalized path, consider use '{normalized}' instead"
        return None
    regex = value[1:]
    try:
        compile_pcre(regex)
    except re.error as exc:
        return f"invalid regex: '{regex}' (PCRE returned: {pcre_error_text(exc, regex)})"
    return None


# Python's wording -> PCRE2's, for the errors people actually make.
_PCRE_WORDING = (
    ("missing ), unterminated subpattern", "missing closing parenthesis"),
    ("unbalanced parenthesis", "unmatched closing parenthesis"),
    ("nothing to repeat", "quantifier does not follow a repeatable item"),
    ("multiple repeat", "quantifier does not follow a repeatable item"),
    ("unterminated character set", "missing terminating ] for character class"),
    ("bad character range", "range out of order in character class"),
)


def pcre_error_text(exc: re.error, regex: str) -> str:
    """Render a compile error the way Kong shows PCRE2's (`pcre2_compile() failed: ... in "<re>"`)."""
    msg = exc.msg
    for python_text, pcre_text in _PCRE_WORDING:
        if msg.startswith(python_text):
            msg = pcre_text
            break
    return f'pcre2_compile() failed: {msg} in "{regex}"'


_PCRE_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def compile_pcre(regex: str) -> re.Pattern[str]:
    """Compile a PCRE-style route regex with Python's `re` (PCRE `(?<name>` groups accepted)."""
    return re.compile(_PCRE_NAMED_GROUP.sub("(?P<", regex))


def route_header_name(value: str) -> str | None:
    if value.lower() == "host":
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    return header_name(value)


# ---------------------------------------------------------------------------------------------
# uuid

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 36 and bool(_UUID.match(value))


# ---------------------------------------------------------------------------------------------
# entity checkers (Kong's `conditional` and `distinct`; both run even when the fields have errors)


def _nonempty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def conditional(
    if_field: str,
    if_value: Any,
    then_field: str,
    then: Field,
    *,
    required: bool = False,
    one_of: tuple[Any, ...] | None = None,
) -> EntityCheck:
    """When `if_field` equals `if_value`, `then_field` must be given (`required`) or be one of `one_of` (in place
    of its field's own list); `then` is then_field's Field, whose other rules a given value must also pass. A
    failure sets then_field's error and adds `failed conditional validation given value of field '<if_field>'`
    to "@entity"."""
    rules = then if one_of is None else dataclasses.replace(then, one_of=one_of)

    def check(row: Mapping[str, Any]) -> dict[str, Any] | None:
        from servegate.schema.validate import validate_field  # (validate imports the declarations)

        if row.get(if_field) != if_value:
            return None
        value = row.get(then_field)
        if value is None:
            err: Any = "required field missing" if required else None
        else:
            err = validate_field(rules, value)
        if err is None:
            return None
        return {then_field: err, "@entity": [f"failed conditional validation given value of field '{if_field}'"]}

    return check


def distinct(*fields: str) -> EntityCheck:
    """The non-empty values of `fields` must differ."""

    def check(row: Mapping[str, Any]) -> list[str] | None:
        seen: list[Any] = []
        for name in fields:
            value = row.get(name)
            if _nonempty(value):
                if value in seen:
                    return ["values of these fields must be distinct: " + ", ".join(f"'{n}'" for n in fields)]
                seen.append(value)
        return None

    return check
