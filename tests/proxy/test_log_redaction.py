"""No API key in any log line: the access log redacts every spelling of a key name key-auth would accept."""

from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest
from proxy_support import Backend, Proxy, route, service
from test_plugins_path import plugin

from servegate.proxy.accesslog import redact_target

KEY = "k3y-S3cr3t-value"
OTHER = "t0ken-S3cr3t-other"


def _key_auth_proxy(backend: Backend, start_proxy, **settings: object) -> Proxy:
    svc = service(backend.port)
    open_rt = route(svc, paths=["/open"], strip_path=False)
    auth_rt = route(svc, paths=["/auth"], strip_path=True)
    other_rt = route(svc, paths=["/other"], strip_path=True)
    consumer = {"id": str(uuid.uuid4()), "username": "alice", "custom_id": None, "tags": None, "created_at": 0,
                "updated_at": 0}
    creds = [{"id": str(uuid.uuid4()), "key": k, "consumer": {"id": consumer["id"]}, "tags": None,
              "created_at": 0, "ttl": None} for k in (KEY, OTHER)]
    conf = {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None, "key_in_header": True,
            "key_in_query": True, "key_in_body": False, "run_on_preflight": True, "realm": None}
    # A second key-auth instance with its own key name (on another route): its name is redacted too.
    conf2 = {**conf, "key_names": ["X_Team_Token"]}
    return start_proxy({"services": [svc], "routes": [open_rt, auth_rt, other_rt], "consumers": [consumer],
                        "keyauth_credentials": creds,
                        "plugins": [plugin("key-auth", conf, route={"id": auth_rt["id"]}),
                                    plugin("key-auth", conf2, route={"id": other_rt["id"]})]},
                       **settings)


def _get(proxy: Proxy, target: str) -> tuple[int, str]:
    """GET with the target sent byte for byte (requests would re-encode it); (status, request id)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers["X-Kong-Request-Id"]
    finally:
        conn.close()


def _log_lines(proxy: Proxy, rids: list[str]) -> str:
    deadline = time.monotonic() + 3
    while not all(rid in proxy.output() for rid in rids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proxy.output()


# Spellings of the name `apikey` that key-auth decodes to `apikey` (it percent-decodes names, `+` as space
# included), and array/bracket forms that carry the same value.
SPELLINGS = [
    "apikey", "api%6Bey", "api%6bey", "%61pikey", "%61%70%69%6B%65%79", "apikey[]", "apikey[0]", "api%6Bey[]",
    "apikey%5B%5D", "apikey%5b0%5d", "APIKEY", "ApiKey[]", "apikey+", "apikey%20", "apikey[a][b]",
]


def test_access_log_redacts_decoded_and_array_names(backend: Backend, start_proxy) -> None:
    proxy = _key_auth_proxy(backend, start_proxy)
    # The decoded spelling authenticates: this is the key an attacker's log reader would get.
    status, rid = _get(proxy, f"/auth/v1/models?api%6Bey={KEY}")
    assert status == 200
    rids = [rid]
    for name in SPELLINGS:
        rids.append(_get(proxy, f"/open/v1/models?x=1&{name}={KEY}&y=2")[1])
    # the second plugin's name, spelled with encoded underscore
    status, rid = _get(proxy, f"/other/v1/models?X%5FTeam%5FToken={OTHER}")
    assert status == 200
    rids.append(rid)
    rids.append(_get(proxy, f"/open/v1/models?x_team_token[]={OTHER}")[1])
    out = _log_lines(proxy, rids)
    assert KEY not in out and OTHER not in out
    lines = [line for line in out.splitlines() if any(rid in line for rid in rids)]
    assert len(lines) == len(rids)
    assert all("REDACTED" in line for line in lines)
    # what is not a key stays readable
    assert '"GET /open/v1/models?x=1&api%6Bey[]=REDACTED&y=2 HTTP/1.1" 404 ' in out


def test_json_access_log_redacts(backend: Backend, start_proxy) -> None:
    proxy = _key_auth_proxy(backend, start_proxy, proxy_access_log_format="json")
    status, rid = _get(proxy, f"/auth/v1/models?%61pikey={KEY}&q=%22x%22")
    assert status == 200
    out = _log_lines(proxy, [rid])
    assert KEY not in out
    entry = json.loads(next(line for line in out.splitlines() if rid in line))
    assert entry["request"]["uri"] == "/auth/v1/models?%61pikey=REDACTED&q=%22x%22"


@pytest.mark.parametrize(("target", "expected"), [
    ("/p?apikey=K", "/p?apikey=REDACTED"),
    ("/p?api%6Bey=K&a=1", "/p?api%6Bey=REDACTED&a=1"),
    ("/p?a=1&%61pikey[]=K", "/p?a=1&%61pikey[]=REDACTED"),
    ("/p?apikey%5B0%5D=K", "/p?apikey%5B0%5D=REDACTED"),
    ("/p?api+key=K", "/p?api+key=K"),  # `api key` is another name
    ("/p?apikeys=K", "/p?apikeys=K"),
    ("/p?a=apikey", "/p?a=apikey"),
    ("/p?apikey", "/p?apikey"),
    ("/p", "/p"),
    ("/p?%ZZ=1&apikey=K", "/p?%ZZ=1&apikey=REDACTED"),
])
def test_redact_target(target: str, expected: str) -> None:
    assert redact_target(target, frozenset({"apikey"})) == expected
