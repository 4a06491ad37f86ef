"""key-auth access behaviour (cases from Kong's spec/03-plugins/09-key-auth/02-access_spec.lua)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from plugin_support import index, new_id, plugin_row, run_access

from servegate.plugins import Context
from servegate.plugins.runner import Plan

BOB = {"id": new_id(), "username": "bob", "custom_id": None}
NOBODY = {"id": new_id(), "username": "no-body", "custom_id": "anon-1"}
KONG_CRED = {"id": new_id(), "key": "kong", "consumer": {"id": BOB["id"]}, "ttl": None}
ROUTE = new_id()


def plan_for(config: dict[str, Any] | None = None, *, creds: list[dict[str, Any]] | None = None,
             loaded_at: float | None = None) -> Plan:
    p = index([plugin_row("key-auth", config, route=ROUTE)], [BOB, NOBODY],
              creds if creds is not None else [KONG_CRED], loaded_at=loaded_at).plan(ROUTE, None)
    assert p is not None
    return p


def ctx(query: str = "", headers: dict[str, Any] | None = None, *, method: str = "GET",
        body: bytes | None = None, content_type: str | None = None) -> Context:
    h = dict(headers or {})
    if content_type:
        h["content-type"] = content_type
    return Context(method, "/request", query, h, "127.0.0.1", body=body)


async def test_missing_key_is_401_with_www_authenticate() -> None:
    e = await run_access(plan_for(), ctx())
    assert e is not None and e.status == 401
    assert e.message == "No API key found in request"
    assert e.headers == {"WWW-Authenticate": "Key"}


async def test_preflight_skipped_only_when_run_on_preflight_false() -> None:
    assert await run_access(plan_for({"run_on_preflight": False}), ctx(method="OPTIONS")) is None
    e = await run_access(plan_for(), ctx(method="OPTIONS"))
    assert e is not None and e.message == "No API key found in request"


@pytest.mark.parametrize("c", [ctx(headers={"apikey": ""}), ctx("apikey"), ctx("apikey=")])
async def test_empty_key_header_or_query(c: Context) -> None:
    e = await run_access(plan_for(), c)
    assert e is not None and e.status == 401 and e.message == "No API key found in request"


async def test_realm_in_www_authenticate() -> None:
    e = await run_access(plan_for({"realm": "test-realm"}), ctx(headers={"apikey": ""}))
    assert e is not None and e.headers == {"WWW-Authenticate": 'Key realm="test-realm"'}


async def test_invalid_key_is_unauthorized() -> None:
    for c in (ctx("apikey=123"), ctx(headers={"apikey": "123"})):
        e = await run_access(plan_for(), c)
        assert e is not None and e.status == 401 and e.message == "Unauthorized"
        assert e.headers == {"WWW-Authenticate": "Key"}


async def test_duplicate_key_in_query_or_header() -> None:
    for c in (ctx("apikey=kong&apikey=kong"), ctx(headers={"apikey": ["kong", "kong"]})):
        e = await run_access(plan_for(), c)
        assert e is not None and e.message == "Duplicate API key found"


async def test_valid_key_sets_consumer_and_upstream_headers() -> None:
    c = ctx("apikey=kong")
    assert await run_access(plan_for(), c) is None
    assert c.consumer is BOB and c.credential is KONG_CRED
    up = c.upstream_headers or {}
    assert up["x-consumer-id"] == ("X-Consumer-ID", BOB["id"])
    assert up["x-consumer-username"] == ("X-Consumer-Username", "bob")
    assert up["x-consumer-custom-id"] == ("X-Consumer-Custom-ID", None)  # removed
    assert up["x-credential-identifier"] == ("X-Credential-Identifier", KONG_CRED["id"])
    assert up["x-anonymous-consumer"] == ("X-Anonymous-Consumer", None)
    assert c.upstream_query is None  # hide_credentials=false leaves the query untouched


async def test_key_names_with_underscore_match_hyphenated_header() -> None:
    p = plan_for({"key_names": ["api_key"]})
    for name in ("api_key", "api-key"):
        c = ctx(headers={name: "kong"})
        assert await run_access(p, c) is None, name
        assert c.consumer is BOB
    e = await run_access(p, ctx(headers={"api-key": "123"}))
    assert e is not None and e.message == "Unauthorized"


async def test_header_lookup_is_case_insensitive_by_config_name() -> None:
    c = ctx(headers={"x-api-key": "kong"})
    assert await run_access(plan_for({"key_names": ["X-API-KEY"]}), c) is None


async def test_hide_credentials_strips_query_keeping_order() -> None:
    c = ctx("c=value1&b=value2&apikey=kong&a=value3")
    assert await run_access(plan_for({"hide_credentials": True}), c) is None
    assert c.upstream_query == "c=value1&b=value2&a=value3"
    c = ctx("c=valu%651&b=value2&api%6B%65%79=kong&a=valu%653")
    assert await run_access(plan_for({"hide_credentials": True}), c) is None
    assert c.upstream_query == "c=value1&b=value2&a=value3"


async def test_hide_credentials_strips_header() -> None:
    c = ctx(headers={"apikey": "kong"})
    assert await run_access(plan_for({"hide_credentials": True}), c) is None
    assert (c.upstream_headers or {})["apikey"] == ("apikey", None)


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MULTIPART = "multipart/form-data; boundary=XyZ"


def multipart(fields: dict[str, str]) -> bytes:
    out = b""
    for k, v in fields.items():
        out += (f'--XyZ\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n').encode()
    return out + b"--XyZ--\r\n"


def encode(ct: str, fields: dict[str, Any]) -> bytes:
    if ct == FORM:
        return "&".join(f"{k}={v}" for k, v in fields.items()).encode()
    if ct == JSON:
        return orjson.dumps(fields)
    return multipart(fields)


@pytest.mark.parametrize("ct", [FORM, JSON, MULTIPART])
async def test_key_in_body(ct: str) -> None:
    p = plan_for({"key_in_body": True})
    c = ctx(body=encode(ct, {"apikey": "kong"}), content_type=ct)
    assert await run_access(p, c) is None and c.consumer is BOB
    # the query and header still win
    assert await run_access(p, ctx("apikey=kong", body=encode(ct, {"non_apikey": "kong"}), content_type=ct)) is None
    e = await run_access(p, ctx(body=encode(ct, {"apikey": "123"}), content_type=ct))
    assert e is not None and e.message == "Unauthorized"


@pytest.mark.parametrize("ct", [FORM, JSON, MULTIPART])
async def test_hide_credentials_strips_body_field_same_mime(ct: str) -> None:
    c = ctx(body=encode(ct, {"apikey": "kong", "foo": "bar"}), content_type=ct)
    assert await run_access(plan_for({"key_in_body": True, "hide_credentials": True}), c) is None
    assert c.upstream_body is not None
    from servegate.plugins.body import decode

    assert decode(c.header("content-type"), c.upstream_body) == {"foo": "bar"}


async def test_body_duplicates_and_bracket_names() -> None:
    p = plan_for({"key_in_body": True})
    e = await run_access(p, ctx(body=b'{"apikey":["kong","kong"]}', content_type=JSON))
    assert e is not None and e.message == "Duplicate API key found"
    e = await run_access(p, ctx(body=b"apikey=kong&apikey=kong", content_type=FORM))
    assert e is not None and e.message == "Duplicate API key found"
    for raw in (b"apikey[]=kong&apikey[]=kong", b"apikey[1]=kong&apikey[1]=kong"):
        e = await run_access(p, ctx(body=raw, content_type=FORM))
        assert e is not None and e.message == "No API key found in request"


async def test_key_in_body_unsupported_content_type() -> None:
    e = await run_access(plan_for({"key_in_body": True, "hide_credentials": True}),
                         ctx(body=b"foobar", content_type="text/plain"))
    assert e is not None and e.message == "No API key found in request"


async def test_anonymous_by_id_and_by_username() -> None:
    for ref in (NOBODY["id"], "no-body"):
        p = plan_for({"anonymous": ref})
        c = ctx()
        assert await run_access(p, c) is None
        assert c.consumer is NOBODY and c.credential is None
        up = c.upstream_headers or {}
        assert up["x-anonymous-consumer"] == ("X-Anonymous-Consumer", "true")
        assert up["x-consumer-username"] == ("X-Consumer-Username", "no-body")
        assert up["x-consumer-custom-id"] == ("X-Consumer-Custom-ID", "anon-1")
        assert up["x-credential-identifier"] == ("X-Credential-Identifier", None)
        # a right key still authenticates the real consumer
        c = ctx("apikey=kong")
        assert await run_access(p, c) is None and c.consumer is BOB
        assert (c.upstream_headers or {})["x-anonymous-consumer"][1] is None


async def test_unknown_anonymous_consumer_is_500() -> None:
    e = await run_access(plan_for({"anonymous": new_id()}), ctx())
    assert e is not None and e.status == 500 and e.message == "An unexpected error occurred"


async def test_logical_or_skips_when_already_authenticated() -> None:
    c = ctx()
    other = {"id": new_id(), "key": "x", "consumer": {"id": BOB["id"]}}
    c.credential, c.consumer = other, BOB
    assert await run_access(plan_for({"anonymous": NOBODY["id"]}), c) is None
    assert c.credential is other and c.upstream_headers is None


async def test_credential_ttl_expiry_is_checked_at_request_time() -> None:
    # `ttl` is what remained when the key was read: it expires that many seconds after, cached or not
    cred = {"id": new_id(), "key": "short", "consumer": {"id": BOB["id"]}, "ttl": 1}
    p = plan_for(creds=[cred])
    assert await run_access(p, ctx("apikey=short")) is None
    await asyncio.sleep(1.05)
    e = await run_access(p, ctx("apikey=short"))
    assert e is not None and e.message == "Unauthorized"
    expired = dict(cred, ttl=0)
    e = await run_access(plan_for(creds=[expired]), ctx("apikey=short"))
    assert e is not None and e.message == "Unauthorized"


# Kong's full combination table (02-access_spec.lua): key in header/query/body as r(ight), w(rong)
# or n(one) : key_in_header/query/body t(rue)/f(alse) : + (200) or - (401).
COMBINATIONS = """
rrr:ttt:+ rrr:ttf:+ rrr:tff:+ rrr:fff:- rrr:fft:+ rrr:tft:+ rrr:ftf:+ rrw:ttt:+ rrw:ttf:+
rrw:tff:+ rrw:fff:- rrw:fft:- rrw:tft:+ rrw:ftf:+ rww:ttt:+ rww:ttf:+ rww:tff:+ rww:fff:-
rww:fft:- rww:tft:+ rww:ftf:- www:ttt:- www:ttf:- www:tff:- www:fff:- www:fft:- www:tft:-
www:ftf:- wwr:ttt:- wwr:ttf:- wwr:tff:- wwr:fff:- wwr:fft:+ wwr:tft:- wwr:ftf:- rwr:ttt:+
rwr:ttf:+ rwr:tff:+ rwr:fff:- rwr:fft:+ rwr:tft:+ rwr:ftf:- wrw:ttt:- wrw:ttf:- wrw:tff:-
wrw:fff:- wrw:fft:- wrw:tft:- wrw:ftf:+ nnn:ttt:- nnn:ttf:- nnn:tff:- nnn:fff:- nnn:fft:-
nnn:tft:- nnn:ftf:- nnw:ttt:- nnw:ttf:- nnw:tff:- nnw:fff:- nnw:fft:- nnw:tft:- nnw:ftf:-
nww:ttt:- nww:ttf:- nww:tff:- nww:fff:- nww:fft:- nww:tft:- nww:ftf:- wwn:ttt:- wwn:ttf:-
wwn:tff:- wwn:fff:- wwn:fft:- wwn:tft:- wwn:ftf:- nwn:ttt:- nwn:ttf:- nwn:tff:- nwn:fff:-
nwn:fft:- nwn:tft:- nwn:ftf:- wnw:ttt:- wnw:ttf:- wnw:tff:- wnw:fff:- wnw:fft:- wnw:tft:-
wnw:ftf:- rrn:ttt:+ rrn:ttf:+ rrn:tff:+ rrn:fff:- rrn:fft:- rrn:tft:+ rrn:ftf:+ rnn:ttt:+
rnn:ttf:+ rnn:tff:+ rnn:fff:- rnn:fft:- rnn:tft:+ rnn:ftf:- nnr:ttt:+ nnr:ttf:- nnr:tff:-
nnr:fff:- nnr:fft:+ nnr:tft:+ nnr:ftf:- rnr:ttt:+ rnr:ttf:+ rnr:tff:+ rnr:fff:- rnr:fft:+
rnr:tft:+ rnr:ftf:- nrn:ttt:+ nrn:ttf:+ nrn:tff:- nrn:fff:- nrn:fft:- nrn:tft:- nrn:ftf:+
nrw:ttt:+ nrw:ttf:+ nrw:tff:- nrw:fff:- nrw:fft:- nrw:tft:- nrw:ftf:+ rwn:ttt:+ rwn:ttf:+
rwn:tff:+ rwn:fff:- rwn:fft:- rwn:tft:+ rwn:ftf:- rnw:ttt:+ rnw:ttf:+ rnw:tff:+ rnw:fff:-
rnw:fft:- rnw:tft:+ rnw:ftf:- nwr:ttt:- nwr:ttf:- nwr:tff:- nwr:fff:- nwr:fft:+ nwr:tft:+
nwr:ftf:- wrn:ttt:- wrn:ttf:- wrn:tff:- wrn:fff:- wrn:fft:- wrn:tft:- wrn:ftf:+ wnr:ttt:-
wnr:ttf:- wnr:tff:- wnr:fff:- wnr:fft:+ wnr:tft:- wnr:ftf:-
""".split()


_KEY = {"r": "right", "w": "wrong", "n": None}


@pytest.mark.parametrize("case", COMBINATIONS)
async def test_lookup_order_combinations(case: str) -> None:
    given, flags, expect = case.split(":")
    header, query, body = (_KEY[ch] for ch in given)
    cred = {"id": new_id(), "key": "right", "consumer": {"id": BOB["id"]}}
    p = plan_for({"key_in_header": flags[0] == "t", "key_in_query": flags[1] == "t",
                  "key_in_body": flags[2] == "t"}, creds=[cred])
    c = ctx(f"apikey={query}" if query else "", {"apikey": header} if header else {},
            method="POST", body=f"apikey={body}".encode() if body else b"", content_type=FORM)
    e = await run_access(p, c)
    if expect == "+":
        assert e is None
    else:
        assert e is not None and e.status == 401 and e.headers == {"WWW-Authenticate": "Key"}
