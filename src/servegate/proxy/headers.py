"""Header rewriting for both directions, built directly as bytes (kong-compat §5.3, §5.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from servegate import SERVER_TOKEN

VIA_TOKEN = SERVER_TOKEN.encode()
SERVER_LINE = b"Server: " + VIA_TOKEN + b"\r\n"

# Request headers the proxy never forwards verbatim: hop-by-hop ones, framing (re-emitted by the relay) and the
# ones it sets itself.
_REQ_SKIP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy", b"te", b"upgrade", b"host", b"expect",
        b"transfer-encoding", b"content-length", b"x-forwarded-for", b"x-forwarded-proto",
        b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip",
        b"via", b"x-kong-request-id", b"trailer",
    }
)
# Response headers dropped on the way down (framing headers are kept: the body is relayed as framed).
_RESP_SKIP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer", b"via"})
_CONN_TOKENS_KEPT = frozenset({b"keep-alive", b"close", b"upgrade"})


def connection_listed(headers: Iterable[tuple[bytes, bytes, bytes]]) -> frozenset[bytes]:
    """Header names (lower-case) listed in Connection, to be removed as hop-by-hop."""
    out: set[bytes] = set()
    for lname, _, value in headers:
        if lname == b"connection":
            for tok in value.split(b","):
                tok = tok.strip().lower()
                if tok and tok not in _CONN_TOKENS_KEPT:
                    out.add(tok)
    return frozenset(out)


class TrustedIps:
    """`trusted_ips` setting: peers whose X-Forwarded-* values are believed."""

    def __init__(self, spec: object) -> None:
        nets = []
        items: list[str] = []
        if isinstance(spec, str):
            items = [s.strip() for s in spec.split(",") if s.strip()]
        elif isinstance(spec, list | tuple):
            items = [str(s).strip() for s in spec]
        for item in items:
            if item.upper() == "NONE" or not item:
                continue
            if item == "unix:":
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue
        self.nets = nets
        self._cache: dict[str, bool] = {}

    def __contains__(self, ip: str) -> bool:
        if not self.nets:
            return False
        hit = self._cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in n for n in self.nets)
            except ValueError:
                hit = False
            if len(self._cache) < 10000:
                self._cache[ip] = hit
        return hit


def upstream_head(
    method: bytes,
    target: bytes,
    host: bytes,
    headers: list[tuple[bytes, bytes, bytes]],
    *,
    client_ip: bytes,
    trusted: bool,
    scheme: bytes,
    fwd_host: bytes,
    fwd_port: bytes,
    fwd_path: bytes,
    fwd_prefix: bytes | None,
    request_id: bytes,
    framing: bytes,
    client_te_trailers: bool,
    set_headers: list[tuple[bytes, bytes]] | None = None,
    cleared: frozenset[bytes] | None = None,
) -> bytes:
    """The request head sent upstream. `framing` is the Content-Length/Transfer-Encoding line (or b"")."""
    out = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    append = out.append
    listed = connection_listed(headers) if any(h[0] == b"connection" for h in headers) else frozenset()
    xff = None
    via = None
    tr = {}
    for lname, name, value in headers:
        if lname in _REQ_SKIP:
            if lname == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif lname == b"via":
                via = value if via is None else via + b", " + value
            elif trusted and lname in (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                                       b"x-forwarded-path", b"x-forwarded-prefix"):
                tr[lname] = value
            continue
        if (listed and lname in listed) or (cleared and lname in cleared):
            continue
        out += (name, b": ", value, b"\r\n")
    append(b"X-Forwarded-For: ")
    append(xff + b", " + client_ip if xff is not None else client_ip)
    append(b"\r\nX-Forwarded-Proto: ")
    append(tr.get(b"x-forwarded-proto", scheme))
    append(b"\r\nX-Forwarded-Host: ")
    append(tr.get(b"x-forwarded-host", fwd_host))
    append(b"\r\nX-Forwarded-Port: ")
    append(tr.get(b"x-forwarded-port", fwd_port))
    append(b"\r\nX-Forwarded-Path: ")
    append(tr.get(b"x-forwarded-path", fwd_path))
    prefix = tr.get(b"x-forwarded-prefix", fwd_prefix)
    if prefix is not None:
        append(b"\r\nX-Forwarded-Prefix: ")
        append(prefix)
    append(b"\r\nX-Real-IP: ")
    append(client_ip)
    append(b"\r\nVia: ")
    if via is not None:
        append(via + b", ")
    append(b"1.1 " + VIA_TOKEN)
    append(b"\r\nX-Kong-Request-Id: ")
    append(request_id)
    if client_te_trailers:
        append(b"\r\nTE: trailers")
    append(b"\r\n")
    if set_headers:
        for name, value in set_headers:
            out += (name, b": ", value, b"\r\n")
    append(framing)
    append(b"Connection: keep-alive\r\n\r\n")
    return b"".join(out)


def downstream_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    request_id: bytes,
    upstream_ms: int,
    proxy_ms: int,
    keep_alive: bool,
    client_te_trailers: bool,
    strip_chunked: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[bytes, bool]:
    """The response head for the client; also says whether the upstream body is close-delimited."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"OK")]
    listed: frozenset[bytes] = frozenset()
    via = None
    has_server = False
    framed = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"connection":
            listed = listed | connection_listed([(lname, name, value)])
            continue
        if lname in _RESP_SKIP:
            if lname == b"via":
                via = value if via is None else via + b", " + value
            elif lname == b"trailer" and client_te_trailers:
                out += (name, b": ", value, b"\r\n")
            elif lname == b"upgrade" and status == 101:
                out += (name, b": ", value, b"\r\n")
            continue
        if lname == b"transfer-encoding":
            framed = True
            if strip_chunked:
                continue
        elif lname == b"content-length":
            framed = True
        elif lname == b"server":
            has_server = True
        out += (name, b": ", value, b"\r\n")
    if listed:
        out = [out[0]] + [
            line for line in _filter_listed(out[1:], listed)
        ]
    if extra:
        for name, value in extra:
            out += (name, b": ", value, b"\r\n")
    out.append(b"Via: " + (via + b", " if via is not None else b"") + b"1.1 " + VIA_TOKEN + b"\r\n")
    if not has_server:
        out.append(SERVER_LINE)
    out.append(
        b"X-Kong-Upstream-Latency: %d\r\nX-Kong-Proxy-Latency: %d\r\nX-Kong-Request-Id: %s\r\n"
        % (upstream_ms, proxy_ms, request_id)
    )
    close_delimited = not framed and status >= 200 and status not in (204, 304)
    out.append(b"Connection: keep-alive\r\n\r\n" if keep_alive and not close_delimited
               else b"Connection: close\r\n\r\n")
    return b"".join(out), close_delimited


def _filter_listed(parts: list[bytes], listed: frozenset[bytes]) -> list[bytes]:
    # parts come in groups of 4: name, ": ", value, CRLF
    kept: list[bytes] = []
    for i in range(0, len(parts), 4):
        if parts[i].lower() not in listed:
            kept += parts[i : i + 4]
    return kept


class HeaderView:
    """Read-only `.get(lower_name)` over the raw header list; built into a dict only if someone asks."""

    __slots__ = ("_raw", "_d")

    def __init__(self, raw: list[tuple[bytes, bytes, bytes]]) -> None:
        self._raw = raw
        self._d: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = self._d
        if d is None:
            d = {}
            for lname, _, value in self._raw:
                k = lname.decode("latin-1")
                v = value.decode("latin-1")
                old = d.get(k)
                if old is None:
                    d[k] = v
                elif isinstance(old, list):
                    old.append(v)
                else:
                    d[k] = [old, v]
            self._d = d
        return d

    def get(self, name: str, default: Any = None) -> Any:
        return self.as_dict().get(name, default)
