"""Kong's form/query key syntax: `a.b=`, `a[]=`, `a[2]=`, `a[k]=`, merged into nested values.

Decoding works on Lua-like tables (dicts keyed by 1-based ints and by strings) because Kong's
merge rules depend on that model; `to_plain` turns the result into lists and dicts.

The work per body is bounded: at most 1000 arguments (Kong's limit), array indexes from 1 to 1000, keys at
most 32 levels deep, 10000 array elements (holes included) in all, and key parsing linear in the key's
length. Lua tables are sparse, so Kong can take `a[99999999]=x`; a Python list cannot, and no accepted body
has an index above its argument count anyway (beyond it there are only holes).
"""

from __future__ import annotations

import re
from typing import Any

MAX_ARGS = 1000
MAX_INDEX = MAX_ARGS
MAX_DEPTH = 32
MAX_ELEMENTS = 10 * MAX_ARGS

LuaTable = dict[Any, Any]


class FormError(ValueError):
    """Arguments that cannot be decoded: the Admin API answers 400 `{"message": <message>}`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooManyArguments(FormError):
    """More than 1000 arguments: Kong answers 400 `Too many arguments`."""

    def __init__(self) -> None:
        super().__init__("Too many arguments")


BAD_INDEX = f"Invalid argument: array index must be an integer between 1 and {MAX_INDEX}"
TOO_DEEP = f"Invalid argument: keys nested more than {MAX_DEPTH} levels deep"
TOO_LARGE = f"Invalid argument: more than {MAX_ELEMENTS} array elements"

_DECIMAL = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_HEX = re.compile(r"^\s*([-+]?)0[xX]([0-9a-fA-F]+)\s*$")
_LEADING_OR_TRAILING_DOT = re.compile(r"^\.+|\.$")
_KEY_DELIMITER = re.compile(r"[\[.]")


def lua_tonumber(value: str) -> int | float | None:
    """Lua's tonumber for strings: decimal or hex, surrounding spaces allowed; else None."""
    m = _HEX.match(value)
    if m:
        n = int(m.group(2), 16)
        return -n if m.group(1) == "-" else n
    if not _DECIMAL.match(value):
        return None
    f = float(value)
    # Lua has one number type; integral values print and compare as integers.
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _index(segment: str) -> int | None:
    """The array index a key segment names (Kong: any `tonumber`-able segment), None for a map key."""
    n = lua_tonumber(segment)
    if n is None:
        return None
    if not isinstance(n, int) or not 1 <= n <= MAX_INDEX:
        raise FormError(BAD_INDEX)
    return n


def _border(t: LuaTable) -> int:
    n = 0
    while (n + 1) in t:
        n += 1
    return n


def _as_table(value: Any) -> Any:
    if isinstance(value, list):
        return {i + 1: v for i, v in enumerate(value)}
    return value


def _decode_encoded_brackets(name: str) -> str:
    """`%5B...%5D` (any case) -> `[...]`, each `%5B` paired with the next `%5D` (Kong's lazy regex).

    Linear: once no `%5D` follows, no later `%5B` can pair either."""
    low = name.lower()
    out: list[str] = []
    pos = 0
    while True:
        start = low.find("%5b", pos)
        if start == -1:
            break
        end = low.find("%5d", start + 3)
        if end == -1:
            break
        out.append(name[pos:start])
        out.append("[" + name[start + 3 : end] + "]")
        pos = end + 3
    if not out:
        return name
    out.append(name[pos:])
    return "".join(out)


def _split_segments(name: str) -> list[str]:
    """Split on dots, except dots inside a `[...]` that follows a character.

    Runs of ordinary characters are skipped by the regex engine; once no `]` follows, `[` is ordinary
    and the rest only splits on dots. More than MAX_DEPTH segments and bracket keys: FormError."""
    segments: list[str] = []
    pieces: list[str] = []  # the current segment, in non-empty pieces
    groups = 0
    i, n = 0, len(name)
    while i < n:
        m = _KEY_DELIMITER.search(name, i)
        j = m.start() if m else n
        if j > i:
            pieces.append(name[i:j])
        if j == n:
            break
        if name[j] == ".":
            if pieces:
                _push(segments, pieces)
                pieces = []
            i = j + 1
        elif not pieces:  # a `[` that follows no character is an ordinary one
            pieces.append("[")
            i = j + 1
        else:
            end = name.find("]", j)
            if end != -1:
                # each such `[...]` becomes a key of this segment: count it toward the depth now
                groups += 1
                if len(segments) + groups > MAX_DEPTH:
                    raise FormError(TOO_DEEP)
                pieces.append(name[j : end + 1])
                i = end + 1
                continue
            rest = name[j:].split(".")
            pieces.append(rest[0])
            for part in rest[1:]:
                if pieces:
                    _push(segments, pieces)
                pieces = [part] if part else []
            break
    if pieces:
        _push(segments, pieces)
    return segments


def _push(segments: list[str], pieces: list[str]) -> None:
    segments.append("".join(pieces))
    if len(segments) > MAX_DEPTH:
        raise FormError(TOO_DEEP)


def _find_keys(text: str) -> list[str]:
    """The keys of `.k` and `[k]` items in text, in order (Kong's `\\.([^\\[\\.]+)|\\[([^\\]]*)\\]`), in
    linear time; stops after MAX_DEPTH + 1 keys."""
    keys: list[str] = []
    closed = True  # a `]` may still follow
    i, n = 0, len(text)
    while i < n and len(keys) <= MAX_DEPTH:
        if closed:
            m = _KEY_DELIMITER.search(text, i)
            if m is None:
                break
            i = m.start()
        else:  # without a `]` ahead only dotted keys remain
            i = text.find(".", i)
            if i == -1:
                break
        if text[i] == ".":
            m = _KEY_DELIMITER.search(text, i + 1)
            j = m.start() if m else n
            if j > i + 1:
                keys.append(text[i + 1 : j])
                i = j
            else:
                i += 1
            continue
        end = text.find("]", i + 1)
        if end == -1:
            closed = False
            i += 1
            continue
        keys.append(text[i + 1 : end])
        i = end + 1
    return keys


def _name_and_keys(segment: str) -> tuple[str, list[str], bool] | None:
    m = _KEY_DELIMITER.search(segment, 1)
    if not m:
        return None
    keys = _find_keys(segment[m.start() :])
    if len(keys) > MAX_DEPTH:
        raise FormError(TOO_DEEP)
    if not keys:
        return None
    is_map = any(k != "" and lua_tonumber(k) is None for k in keys)
    return segment[: m.start()], keys, is_map


def _insert_at(container: LuaTable, pos: int, value: Any) -> None:
    """Lua table.insert(t, pos, v): shift the array part up from pos."""
    n = _border(container)
    for j in range(n, pos - 1, -1):
        container[j + 1] = container[j]
    container[pos] = value


def _nest(container: LuaTable, path: list[str], value: Any) -> Any:
    for i, segment in enumerate(path):
        last = i == len(path) - 1
        index = _index(segment) if segment != "" else None
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


def _decode_complex(
    name: str,
    parsed: tuple[str, list[str], bool] | None,
    value: Any,
    container: LuaTable,
    allow_map_keys: bool,
) -> Any:
    if parsed is not None and not (parsed[2] and not allow_map_keys):
        param, keys, _ = parsed
        return _nest(container, [param, *keys], value)
    container[name] = value
    return container[name]


def _decode_arg(raw_name: str, value: Any, allow_map_keys: bool) -> LuaTable:
    if _LEADING_OR_TRAILING_DOT.search(raw_name):
        return {"name": value}  # Kong's quirk for such keys
    name = _decode_encoded_brackets(raw_name)
    segments = _split_segments(name)
    container: LuaTable = {}
    if not segments:
        _decode_complex(name, _name_and_keys(name), value, container, allow_map_keys)
        return container
    parsed = [_name_and_keys(seg) for seg in segments]
    if sum(1 + (len(p[1]) if p is not None else 0) for p in parsed) > MAX_DEPTH:
        raise FormError(TOO_DEEP)
    bucket = container
    for i, seg in enumerate(segments):
        if i == len(segments) - 1:
            _decode_complex(seg, parsed[i], value, bucket, allow_map_keys)
        else:
            bucket = _decode_complex(seg, parsed[i], {}, bucket, allow_map_keys)
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


def to_plain(value: Any, budget: list[int] | None = None) -> Any:
    """Lua-like tables -> lists (int keys, holes as None) or dicts (string keys).

    `budget` ([elements left]) bounds the list elements built, holes included."""
    if not isinstance(value, dict):
        return value
    if budget is None:
        budget = [MAX_ELEMENTS]
    if value and all(isinstance(k, int) and k >= 1 for k in value):
        size = max(value)
        budget[0] -= size
        if budget[0] < 0:
            raise FormError(TOO_LARGE)
        out: list[Any] = [None] * size
        for k, v in value.items():
            out[k - 1] = to_plain(v, budget)
        return out
    return {str(k): to_plain(v, budget) for k, v in value.items()}


def decode_form(pairs: list[tuple[str, str]], *, allow_map_keys: bool) -> dict[str, Any]:
    """Decode (name, value) pairs (already percent-decoded) with Kong's key syntax.

    Repeated names become arrays; `allow_map_keys` (POST/PUT/PATCH bodies) enables `a[k]=v`.
    Raises FormError (TooManyArguments over 1000 pairs) for arguments beyond the bounds above.
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
