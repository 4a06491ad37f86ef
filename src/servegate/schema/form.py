"""Kong's form/query key syntax: `a.b=`, `a[]=`, `a[2]=`, `a[k]=`, merged into nested values.

Decoding works on Lua-like tables (dicts keyed by 1-based ints and by strings) because Kong's
merge rules depend on that model; `to_plain` turns the result into lists and dicts.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ARGS = 1000

LuaTable = dict[Any, Any]


class TooManyArguments(Exception):
    """More than 1000 arguments: Kong answers 400 `Too many arguments`."""


_ENCODED_BRACKETS = re.compile(r"%5B(.*?)%5D", re.I | re.S)
_KEYS = re.compile(r"\.([^\[.]+)|\[([^\]]*)\]", re.S)
_LEADING_OR_TRAILING_DOT = re.compile(r"^\.+|\.$")


def _border(t: LuaTable) -> int:
    n = 0
    while (n + 1) in t:
        n += 1
    return n


def _as_table(value: Any) -> Any:
    if isinstance(value, list):
        return {i + 1: v for i, v in enumerate(value)}
    return value


def _split_segments(name: str) -> list[str]:
    """Split on dots, except dots inside a `[...]` that follows a character."""
    segments: list[str] = []
    current = ""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "[" and current:
            end = name.find("]", i)
            if end != -1:
                current += name[i : end + 1]
                i = end + 1
                continue
        if ch == ".":
            if current:
                segments.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if current:
        segments.append(current)
    return segments


def _name_and_keys(segment: str) -> tuple[str, list[str], bool] | None:
    m = re.compile(r"[\[.]").search(segment, 1)
    if not m:
        return None
    keys: list[str] = []
    is_map = False
    for dotted, bracketed in _KEYS.findall(segment[m.start() :]):
        if dotted:
            keys.append(dotted)
        else:
            keys.append(bracketed)
            if bracketed != "" and _lua_int(bracketed) is None:
                is_map = True
    if not keys:
        return None
    return segment[: m.start()], keys, is_map


def _lua_int(s: str) -> int | None:
    try:
        f = float(s.strip()) if "_" not in s else None
    except ValueError:
        return None
    if f is None or not f.is_integer():
        return None
    return int(f)


def _insert_at(container: LuaTable, pos: int, value: Any) -> None:
    """Lua table.insert(t, pos, v): shift the array part up from pos."""
    n = _border(container)
    for j in range(n, pos - 1, -1):
        container[j + 1] = container[j]
    container[pos] = value


def _nest(container: LuaTable, path: list[str], value: Any) -> Any:
    for i, segment in enumerate(path):
        last = i == len(path) - 1
        index = _lua_int(segment) if segment != "" else None
        if segment == "" or index is not None:
            if last:
                if index is not None:
                    _insert_at(container, index, value)
                    return container[index]
                if isinstance(value, dict):
                    for j in range(1, _border(value) + 1):
                        _insert_at(container, j, value[j])
                    return container
                container[_border(container) + 1] = value
                return container
            position = index if index is not None else 1
            if position not in container:
                container[position] = {}
                container = container[position]
        else:
            if last:
                container[segment] = value
                return container[segment]
            if segment not in container:
                container[segment] = {}
                container = container[segment]
    return None


def _decode_complex(name: str, value: Any, container: LuaTable, allow_map_keys: bool) -> Any:
    parsed = _name_and_keys(name)
    if parsed is not None and not (parsed[2] and not allow_map_keys):
        param, keys, _ = parsed
        return _nest(container, [param, *keys], value)
    container[name] = value
    return container[name]


def _decode_arg(raw_name: str, value: Any, allow_map_keys: bool) -> LuaTable:
    if _LEADING_OR_TRAILING_DOT.search(raw_name):
        return {"name": value}  # Kong's quirk for such keys
    name = _ENCODED_BRACKETS.sub(r"[\1]", raw_name)
    segments = _split_segments(name)
    container: LuaTable = {}
    if not segments:
        _decode_complex(name, value, container, allow_map_keys)
        return container
    bucket = container
    for i, seg in enumerate(segments):
        if i == len(segments) - 1:
            _decode_complex(seg, value, bucket, allow_map_keys)
        else:
            bucket = _decode_complex(seg, {}, bucket, allow_map_keys)
    return container


def _combine(to: LuaTable, arg: Any) -> None:
    if not isinstance(arg, dict):
        to[_border(to) + 1] = arg
        return
    for k, v in arg.items():
        t = to.get(k)
        if t is None:
            to[k] = v
        elif isinstance(t, dict):
            _combine(t, v)
        else:
            to[k] = {1: t}
            _combine(to[k], v)


def to_plain(value: Any) -> Any:
    """Lua-like tables -> lists (int keys, holes as None) or dicts (string keys)."""
    if not isinstance(value, dict):
        return value
    if value and all(isinstance(k, int) and k >= 1 for k in value):
        out: list[Any] = [None] * max(value)
        for k, v in value.items():
            out[k - 1] = to_plain(v)
        return out
    return {str(k): to_plain(v) for k, v in value.items()}


def decode_form(pairs: list[tuple[str, str]], *, allow_map_keys: bool) -> dict[str, Any]:
    """Decode (name, value) pairs (already percent-decoded) with Kong's key syntax.

    Repeated names become arrays; `allow_map_keys` (POST/PUT/PATCH bodies) enables `a[k]=v`.
    """
    if len(pairs) > MAX_ARGS:
        raise TooManyArguments()
    grouped: dict[str, Any] = {}
    for name, value in pairs:
        if name in grouped:
            prev = grouped[name]
            grouped[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            grouped[name] = value
    result: LuaTable = {}
    for name, value in grouped.items():
        _combine(result, _decode_arg(name, _as_table(value), allow_map_keys))
    plain = to_plain(result)
    return plain if isinstance(plain, dict) else {}
