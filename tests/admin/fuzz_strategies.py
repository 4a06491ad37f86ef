"""Hypothesis strategies for the Admin API fuzz (test_fuzz.py): raw requests over every endpoint.

Requests are plain data (method, raw path with query, headers, body bytes). Entities seeded before the fuzz
are `protected`: a request that could legitimately change one (PUT/PATCH of it, or of whatever a foreign
endpoint `/E/{e}/F` points at) always carries a body that must fail, and none deletes one, so the store
must hold every seeded row unchanged afterwards.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from servegate.schema.entities import ENTITIES

ODD_METHODS = ["TRACE", "FOO", "PROPFIND", "CONNECT", "get", "M-SEARCH"]
BODY_METHODS = ("POST", "PUT", "PATCH")
POISON = "zz_unknown_field"  # never a field: the body that carries it fails validation


@dataclass
class Pools:
    """Values to put in URL segments and bodies: seeded (protected) keys and the fuzz's own."""

    seeded: dict[str, list[str]]  # entity name -> seeded ids and endpoint keys
    own: dict[str, list[str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    offsets: list[str] = field(default_factory=list)  # real page offsets seen in list answers

    def protected(self, entity: str, key: str) -> bool:
        return key in self.seeded.get(entity, ())


@dataclass
class Req:
    method: str
    path: str  # raw request-target, query included
    template: str  # the endpoint pattern it exercises
    headers: dict[str, str]
    body: bytes


# ----------------------------------------------------------------------------------------------- values

_INTS = st.sampled_from(
    [
        0,
        1,
        -1,
        5,
        80,
        443,
        65535,
        65536,
        100000000,
        2**31,
        2**53 + 1,
        2**63 - 1,
        2**63,
        2**64,
        -(2**63) - 1,
        10**30,
    ]
)
_WORDS = st.sampled_from(
    [
        "",
        " ",
        "x",
        "http://a.test",
        "https://b.test:8443/p",
        "a.test",
        "/",
        "/v1",
        "~/re(",
        "GET",
        "http",
        "https",
        "grpc",
        "tcp",
        "v0",
        "v1",
        "local",
        "cluster",
        "redis",
        "consumer",
        "ip",
        "key-auth",
        "rate-limiting",
        "apikey",
        "null",
        "true",
        "60",
        "1e30",
        "0x10",
        "-1",
        "\x00",
        "a\x00b",
        "é",
        "\u202e",
        "%ff",
        "x" * 300,
        "0.0.0.0/0",
        "10.0.0.1",
        str(uuid.UUID(int=0)),
    ]
)
_EXTREMES = st.one_of(
    _INTS,
    st.sampled_from(
        [1e30, -1e30, 1.5, 2.0**63, 2.0**64, "a\x00b", "\x00", "x" * 5000, "é" * 3000, [], {}, [None], True]
    ),
    st.integers(-(2**80), 2**80),
)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    _WORDS,
    _TEXT,
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(_WORDS, _TEXT), inner, max_size=4)
    ),
    max_leaves=8,
)


def _deep(depth: int) -> object:
    value: object = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def _field_names(entity: str) -> list[str]:
    names = list(ENTITIES[entity].field_map())
    if entity == "services":
        names.append("url")
    if entity == "plugins":
        names.append("config")
    return names + ["ttl", "a", POISON]


_PLUGIN_CONFIG = st.dictionaries(
    st.sampled_from(
        [
            "key_names",
            "hide_credentials",
            "anonymous",
            "key_in_body",
            "minute",
            "second",
            "policy",
            "limit_by",
            "redis",
            "redis_host",
            "redis_port",
            "error_code",
            "path",
            "zz",
        ]
    ),
    VALUES,
    max_size=4,
)


def _names(entity: str) -> list[str]:
    return [f"fz-{entity}-{i}" for i in range(12)]


def _valid_base(entity: str, pools: Pools) -> st.SearchStrategy[dict[str, object]]:
    """A body that would be accepted as it is (names from the fuzz's own pool), to mutate from."""
    name = st.sampled_from(_names(entity))
    tags = st.lists(st.sampled_from(pools.tags or ["fz"]), max_size=2, unique=True)
    if entity == "services":
        return st.fixed_dictionaries(
            {
                "name": name,
                "url": st.sampled_from(["http://a.test", "https://b.test:8443/p", "http://10.0.0.1/"]),
            },
            optional={"tags": tags, "retries": st.integers(0, 32767), "enabled": st.booleans()},
        )
    if entity == "routes":
        return st.fixed_dictionaries(
            {
                "name": name,
                "paths": st.lists(st.sampled_from(["/fz", "/fz/a", "~/fz/(re)$"]), min_size=1, max_size=2),
            },
            optional={
                "tags": tags,
                "service": st.sampled_from([{"name": "seed-svc"}, {"name": "seed-svc-2"}]),
                "methods": st.just(["GET"]),
                "strip_path": st.booleans(),
            },
        )
    if entity == "consumers":
        return st.fixed_dictionaries({"username": name}, optional={"custom_id": name, "tags": tags})
    if entity == "keyauth_credentials":
        return st.fixed_dictionaries(
            {"key": name},
            optional={
                "consumer": st.just({"username": "seed-user-2"}),
                "tags": tags,
                "ttl": st.integers(0, 100),
            },
        )
    return st.one_of(
        st.fixed_dictionaries(
            {"name": st.just("key-auth")},
            optional={"instance_name": name, "tags": tags, "config": st.just({"key_names": ["fzkey"]})},
        ),
        st.fixed_dictionaries(
            {
                "name": st.just("rate-limiting"),
                "config": st.fixed_dictionaries({"minute": st.integers(1, 100)}),
            },
            optional={
                "instance_name": name,
                "service": st.just({"name": "seed-svc-2"}),
                "enabled": st.booleans(),
            },
        ),
    )


@st.composite
def json_object(draw: st.DrawFn, entity: str, pools: Pools) -> dict[str, object]:
    body = dict(draw(_valid_base(entity, pools))) if draw(st.integers(0, 3)) else {}
    extra = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    for name in draw(
        st.lists(st.sampled_from(_field_names(entity)), min_size=extra, max_size=extra, unique=True)
    ):
        body[name] = draw(_field_value(entity, name, pools))
    return body


def _field_value(entity: str, name: str, pools: Pools) -> st.SearchStrategy[object]:
    choices: list[st.SearchStrategy[object]] = [VALUES]
    if name in ("service", "route", "consumer"):
        refs = pools.seeded.get(name + "s", [])
        if refs:
            key = st.one_of(st.sampled_from(refs), _own(pools, name + "s"))
            choices += [
                key.map(lambda k: {"id": k}),
                key.map(lambda k: {"name": k}),
                key.map(lambda k: {"username": k}),
            ]
    if name == "id":
        # never a seeded id: an upsert under it would legitimately replace the seeded row
        choices = [st.none(), st.just("not-a-uuid"), st.uuids().map(str), _own(pools, entity)]
    if name == "config" and entity == "plugins":
        choices.append(_PLUGIN_CONFIG)
    if name == "name" and entity == "plugins":
        choices.append(st.sampled_from(["key-auth", "rate-limiting", "nope"]))
    if name in ("tags", "paths", "hosts", "methods", "protocols", "snis", "key_names"):
        choices.append(st.lists(st.one_of(_WORDS, _TEXT), max_size=4))
    if name == "headers":
        choices.append(st.dictionaries(_WORDS, st.lists(_WORDS, max_size=2), max_size=2))
    if name in ("sources", "destinations"):
        choices.append(st.lists(st.fixed_dictionaries({"ip": _WORDS}, optional={"port": _INTS}), max_size=2))
    return st.one_of(*choices)


# ----------------------------------------------------------------------------------------------- bodies

_FORM_SUFFIXES = [
    "",
    "",
    "",
    "[]",
    "[1]",
    "[2]",
    "[0]",
    "[-1]",
    "[1001]",
    "[99999999]",
    "[1.5]",
    "[a]",
    ".a",
    "[1][a]",
    "%5B1%5D",
    "[x-a][1]",
    "[" * 40,
    "[a]" * 40,
    ".a" * 40,
]


def _flatten(prefix: str, value: object, out: list[tuple[str, str]]) -> None:
    """A JSON-ish value as form pairs in Kong's key syntax."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i + 1}]", v, out)
    else:
        out.append(
            (prefix, "" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        )


@st.composite
def body(draw: st.DrawFn, entity: str, pools: Pools, *, poison: bool) -> tuple[dict[str, str], bytes]:
    """(headers, body) in one of the encodings the Admin API reads, or a broken one."""
    mode = draw(st.sampled_from(["clean", "mutant", "random"]))
    clean = mode == "clean"  # a body that should be accepted: fills the store
    obj = draw(json_object(entity, pools)) if mode == "random" else dict(draw(_valid_base(entity, pools)))
    if mode == "mutant":  # accepted but for one field: the value reaches as deep as validation lets it
        obj[draw(st.sampled_from(_field_names(entity)[:-1]))] = draw(_EXTREMES)
    if poison:  # first, so that no truncated encoding can drop it
        obj = {POISON: 1, **obj}
    kinds = (
        ["json", "form"]
        if clean
        else ["json"] * 8 + ["form"] * 6 + ["multipart"] * 2 + ["raw"] * 2 + ["deep", "none"]
    )
    if poison:  # only encodings that carry the poisoned field (an empty or raw body could succeed)
        kinds = [k for k in kinds if k in ("json", "form", "multipart", "deep")]
    kind = draw(st.sampled_from(kinds))
    if kind == "json":
        ctype = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"])
        )
        return {"Content-Type": ctype}, json.dumps(obj).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([50, 101, 495, 700, 1023, 1100]))
        return {"Content-Type": "application/json"}, json.dumps({**obj, "tags": _deep(depth)}).encode()
    pairs: list[tuple[str, str]] = []
    _flatten("", obj, pairs)
    for _ in range(0 if clean else draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name = draw(st.sampled_from(_field_names(entity)))
        pairs.append((name + draw(st.sampled_from(_FORM_SUFFIXES)), draw(st.one_of(_WORDS, _TEXT))))
    if kind == "form":
        raw = urlencode(pairs).encode()
        if not clean and draw(st.booleans()):
            raw += draw(st.sampled_from([b"&%ff=1", b"&a=%", b"&=x", b"&&", b"&a[%5B=1", b"&x=%zz"]))
        return {"Content-Type": "application/x-www-form-urlencoded"}, raw
    if kind == "multipart":
        return _multipart(draw, pairs, obj)
    if kind == "none":
        return {}, b"" if draw(st.booleans()) else json.dumps(obj).encode()
    ctype = draw(
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "application/yaml",
                "\x7fbad",
            ]
        )
    )
    raw = draw(
        st.sampled_from(
            [
                b"",
                b"{",
                b"[1]",
                b'"x"',
                b"null",
                b"{}",
                b"\xff\xfe",
                b'{"a":1}{',
                b"x=1",
                b'{"id": null}',
                b'{"tags": [' * 3,
                b"--b\r\n\r\n--b--",
            ]
        )
    )
    return {"Content-Type": ctype}, raw


def _multipart(
    draw: st.DrawFn, pairs: list[tuple[str, str]], obj: dict[str, object]
) -> tuple[dict[str, str], bytes]:
    boundary = "fzb" + str(draw(st.integers(0, 999)))
    chunks: list[bytes] = []
    for name, value in pairs:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, value in obj.items():
        if isinstance(value, dict | list) and draw(st.booleans()):
            chunks.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                f"Content-Type: application/json\r\n\r\n".encode()
                + json.dumps(value).encode()
                + b"\r\n"
            )
    closing = f"--{boundary}--\r\n".encode()
    tail = draw(st.sampled_from([closing, closing, closing, b"", f"--{boundary}\r\n".encode()]))
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, b"".join(chunks) + tail


# ----------------------------------------------------------------------------------------------- URLs

_GARBAGE_SEGMENTS = [
    "%ff",
    "%",
    "%zz",
    "..",
    "a%20b",
    "bad name",
    "x" * 300,
    "%00",
    "%2F",
    "é",
    "1.2.3.4",
    "-",
    "_",
    "0",
    "null",
    "undefined",
    "%E2%80%AE",
]


def _own(pools: Pools, entity: str) -> st.SearchStrategy[str]:
    """One of the fuzz's own keys; the pool grows during the run, so draw a position, not a member
    (Hypothesis wants the same draws for the same choices)."""

    def pick(i: int) -> str:
        own = pools.own.get(entity) or _names(entity)
        return own[i % len(own)]

    return st.integers(0, 23).map(pick)


def _key(pools: Pools, entity: str) -> st.SearchStrategy[str]:
    seeded = pools.seeded.get(entity) or ["none"]
    return st.one_of(
        st.sampled_from(seeded),
        _own(pools, entity),
        st.uuids().map(str),
        st.sampled_from(_names(entity)),
        st.sampled_from(_GARBAGE_SEGMENTS),
    )


def _segment(value: str) -> str:
    return value if "%" in value else quote(value, safe="")


_QUERY_VALUES = st.one_of(
    _WORDS.map(lambda w: quote(w, safe="")),
    st.sampled_from(
        [
            "%ff",
            "%",
            "a%2Cb",
            "a/b",
            "a,b/c",
            "1,2,3,4,5,6",
            "0",
            "1000",
            "1001",
            "x",
            "WyJ4Il0",
            "WzFd",
            "bm90IGpzb24",
            "====",
            "%00",
            "1e3",
            "0x10",
            "-5",
        ]
    ),
)


def _offset(pools: Pools) -> st.SearchStrategy[str]:
    def pick(i: int) -> str:
        return quote(pools.offsets[i % len(pools.offsets)], safe="") if pools.offsets else "WyJ4Il0"

    return st.integers(0, 15).map(pick)


@st.composite
def query(draw: st.DrawFn, pools: Pools) -> str:
    names = st.sampled_from(
        [
            "size",
            "offset",
            "offset",
            "tags",
            "custom_id",
            "unit",
            "scale",
            "balancer_health",
            "a[b]",
            "x",
            "%ff",
            "",
        ]
    )
    values = st.one_of(
        _QUERY_VALUES, _offset(pools), st.sampled_from(pools.tags or ["t"]), st.integers(1, 3).map(str)
    )
    pairs = draw(st.lists(st.tuples(names, values), max_size=4))
    text = "&".join(f"{k}={v}" for k, v in pairs)
    if draw(st.integers(0, 40)) == 0:
        text = "&".join(f"k{i}=v" for i in range(1001))  # over Kong's argument limit
    return "?" + text if text or draw(st.booleans()) else ""


@st.composite
def request(draw: st.DrawFn, templates: dict[str, list[str]], pools: Pools) -> Req:
    """One request to one endpoint template (`/services/{services}/routes`...)."""
    template = draw(st.sampled_from(sorted(templates)))
    segments = [s for s in template.split("/") if s]
    values: list[str] = []
    keyed: list[tuple[str, str]] = []  # (entity, key) for each entity parameter
    for seg in segments:
        if not seg.startswith("{"):
            values.append(seg)
            continue
        name = seg[1:-1]
        if name in ENTITIES:
            key = draw(_key(pools, name))
            keyed.append((name, key))
        elif name == "tags":
            key = draw(st.one_of(st.sampled_from(pools.tags or ["t"]), st.sampled_from(_GARBAGE_SEGMENTS)))
        else:  # schema names
            key = draw(
                st.sampled_from(
                    [*ENTITIES, "key-auth", "rate-limiting", "plugins", "nope", "%ff", "workspaces"]
                )
            )
        values.append(_segment(key))
    allowed = [m for m in templates[template] if m not in ("HEAD", "OPTIONS")] or ["GET"]
    method = (
        draw(st.sampled_from(allowed))
        if draw(st.integers(0, 5))
        else draw(st.sampled_from(["HEAD", "OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE", *ODD_METHODS]))
    )
    foreign = bool(segments) and not segments[-1].startswith("{") and len(keyed) == 1 and len(segments) == 3
    target_protected = bool(keyed) and pools.protected(*keyed[-1]) and segments[-1].startswith("{")
    if method == "DELETE" and (target_protected or foreign):
        method = "GET"
    poison = method in ("PUT", "PATCH") and (target_protected or foreign)
    entity = _body_entity(segments, keyed)
    headers, raw = ({}, b"")
    if method in BODY_METHODS or draw(st.integers(0, 9)) == 0:
        headers, raw = draw(body(entity, pools, poison=poison))
        if method not in BODY_METHODS and poison:
            raw = b""
    if draw(st.integers(0, 19)) == 0:
        headers["Origin"] = draw(st.sampled_from(["http://a.test", "null", "\x7f"]))
    path = "/" + "/".join(values)
    if draw(st.integers(0, 9)) == 0:
        path = draw(st.sampled_from([path + "/", "/" + path, path.replace("/", "//")]))
    return Req(method, path + draw(query(pools)), template, headers, raw)


def _body_entity(segments: list[str], keyed: list[tuple[str, str]]) -> str:
    by_collection = {e.collection: e.name for e in ENTITIES.values()}
    by_collection["key-auth"] = "keyauth_credentials"
    for seg in reversed(segments):
        if seg in by_collection:
            return by_collection[seg]
        if seg in ("service", "route", "consumer"):
            return seg + "s"
    return keyed[-1][0] if keyed else "services"
