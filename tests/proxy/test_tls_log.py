"""TLS listener with the generated certificate, and the access log."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
import requests
from proxy_support import Backend, route, service


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_listener_with_generated_cert(backend: Backend, start_proxy, tmp_path: Path) -> None:
    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]},
                        proxy_listen="127.0.0.1:0, 127.0.0.1:0 ssl")
    plain, tls = (int(p) for p in proxy.ready_words)
    cert = tmp_path / "prefix" / "ssl" / "servegate-default.crt"
    key = tmp_path / "prefix" / "ssl" / "servegate-default.key"
    assert cert.exists() and key.exists()
    assert key.stat().st_mode & 0o077 == 0
    r = requests.get(f"https://127.0.0.1:{tls}/__echo", verify=False, timeout=5)
    assert r.status_code == 200
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == str(tls)
    # the served certificate is the generated one
    served = ssl.get_server_certificate(("127.0.0.1", tls))
    assert served.strip() == cert.read_text().strip()
    assert requests.get(f"http://127.0.0.1:{plain}/v1/models", timeout=5).status_code == 200
    # a second start reuses the same certificate
    before = cert.read_bytes()
    proxy2 = start_proxy({"services": [svc], "routes": [route(svc)]}, proxy_listen="127.0.0.1:0 ssl")
    assert requests.get(f"https://127.0.0.1:{proxy2.port}/v1/models", verify=False, timeout=5).status_code == 200
    assert cert.read_bytes() == before


def test_https_upstream(backend: Backend, start_proxy) -> None:
    """A service with protocol https: the relay speaks TLS upstream (here to a second proxy's TLS listener)."""
    svc = service(backend.port)
    edge = start_proxy({"services": [svc], "routes": [route(svc)]}, proxy_listen="127.0.0.1:0 ssl")
    tls_svc = service(edge.port, protocol="https")
    front = start_proxy({"services": [tls_svc], "routes": [route(tls_svc)]})
    r = requests.get(front.url + "/__echo", timeout=5)
    assert r.status_code == 200
    assert r.headers["Via"].count("servegate") == 2
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-forwarded-proto"] == "https"  # as seen by the TLS-terminating edge


def test_access_log_line_without_secrets(simple) -> None:
    _, proxy = simple
    r = requests.get(proxy.url + "/v1/models?apikey=sekrit-123&x=1", headers={"apikey": "hdr-secret-9"},
                     timeout=5)
    rid = r.headers["X-Kong-Request-Id"]
    deadline = time.monotonic() + 3
    while rid not in proxy.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in proxy.output().splitlines() if rid in line]
    assert len(lines) == 1
    line = lines[0]
    assert "sekrit-123" not in line and "hdr-secret-9" not in line
    assert '"GET /v1/models?apikey=REDACTED&x=1 HTTP/1.1" 200 ' in line
    assert line.startswith("127.0.0.1 ")


def test_access_log_off_and_file(backend: Backend, start_proxy, tmp_path: Path) -> None:
    svc = service(backend.port)
    log = tmp_path / "access.log"
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]}, proxy_access_log=str(log))
    for _ in range(3):
        requests.get(proxy.url + "/v1/models", timeout=5)
    requests.get(proxy.url + "/nope?apikey=zzz", timeout=5)
    time.sleep(0.3)
    text = log.read_text()
    assert text.count("\n") == 4 and "zzz" not in text
    assert " 404 " in text.splitlines()[-1]
    quiet = start_proxy({"services": [svc], "routes": [route(svc)]}, proxy_access_log="off")
    requests.get(quiet.url + "/v1/models", timeout=5)
    time.sleep(0.3)
    assert "/v1/models" not in quiet.output()


def _tls_get(port: int, path: str, sni: str | None) -> bytes:
    import socket

    from proxy_support import read_response

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        return read_response(s)


def test_https_only_route_and_sni(backend: Backend, start_proxy) -> None:
    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [
        route(svc, paths=["/secure"], protocols=["https"], strip_path=False),
        route(svc, paths=["/moved"], protocols=["https"], https_redirect_status_code=301, strip_path=False),
        route(svc, paths=["/__echo"], protocols=["https"], snis=["api.test"], strip_path=False),
    ]}, proxy_listen="127.0.0.1:0, 127.0.0.1:0 ssl")
    plain, tls = (int(p) for p in proxy.ready_words)
    r = requests.get(f"http://127.0.0.1:{plain}/secure", headers={"Accept": "application/json"}, timeout=5)
    assert r.status_code == 426
    assert r.json()["message"] == "Please use HTTPS protocol"
    assert r.headers["Upgrade"] == "TLS/1.2, HTTP/1.1" and r.headers["Connection"] == "Upgrade"
    r = requests.get(f"http://127.0.0.1:{plain}/moved/x?a=1", headers={"Host": "api.test"}, timeout=5,
                     allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "https://api.test/moved/x?a=1"
    # over TLS the same route is served
    resp = _tls_get(tls, "/secure", "localhost")
    assert resp.startswith(b"HTTP/1.1 404") and b'{"error":"not found"}' in resp  # the backend's own 404
    # a route with snis matches only when the client sent that server name
    assert _tls_get(tls, "/__echo", "api.test").startswith(b"HTTP/1.1 200")
    assert b"no Route matched" in _tls_get(tls, "/__echo", "other.test")
