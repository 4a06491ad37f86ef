"""The proxy running real plugins (key-auth) through the phase bridge."""

from __future__ import annotations

import json
import time
import uuid

import requests
from proxy_support import Backend, route, service


def plugin(name: str, config: dict, **scope: object) -> dict:
    return {"id": str(uuid.uuid4()), "name": name, "instance_name": None, "config": config, "enabled": True,
            "protocols": ["grpc", "grpcs", "http", "https"], "tags": None, "route": None, "service": None,
            "consumer": None, "created_at": 0, "updated_at": 0, **scope}


def test_key_auth_through_proxy(backend: Backend, start_proxy) -> None:
    svc = service(backend.port)
    rt = route(svc)
    consumer = {"id": str(uuid.uuid4()), "username": "alice", "custom_id": None, "tags": None, "created_at": 0,
                "updated_at": 0}
    cred = {"id": str(uuid.uuid4()), "key": "k-123", "consumer": {"id": consumer["id"]}, "tags": None,
            "created_at": 0, "ttl": None}
    conf = {"key_names": ["apikey", "token"], "hide_credentials": True, "anonymous": None, "key_in_header": True,
            "key_in_query": True, "key_in_body": True, "run_on_preflight": True, "realm": None}
    proxy = start_proxy({"services": [svc], "routes": [rt], "consumers": [consumer],
                         "keyauth_credentials": [cred],
                         "plugins": [plugin("key-auth", conf, route={"id": rt["id"]})]})
    r = requests.get(proxy.url + "/__echo", timeout=5, headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert json.loads(r.text)["message"] == "No API key found in request"
    assert "X-Kong-Response-Latency" in r.headers
    r = requests.get(proxy.url + "/__echo?apikey=wrong", timeout=5)
    assert r.status_code == 401
    r = requests.get(proxy.url + "/__echo?apikey=k-123&x=1", timeout=5)
    assert r.status_code == 200
    seen = r.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["x-consumer-username"] == "alice"
    assert seen["url"] == "/__echo?x=1"  # hide_credentials removed the key from the query
    r = requests.get(proxy.url + "/__echo", headers={"apikey": "k-123"}, timeout=5)
    assert r.status_code == 200 and "apikey" not in {k.lower() for k, _ in r.json()["headers"]}
    # key in a JSON body: the plugin reads the body before the upstream request is built
    r = requests.post(proxy.url + "/__echo", json={"apikey": "k-123", "q": 1}, timeout=5)
    assert r.status_code == 200
    assert json.loads(r.json()["body"]) == {"q": 1}
    r = requests.get(proxy.url + "/__echo?token=k-123", timeout=5)
    assert r.status_code == 200
    time.sleep(0.3)  # the access log is flushed by the 100 ms sweep
    out = proxy.output()
    assert "/__echo?token=REDACTED" in out
    assert "k-123" not in out
