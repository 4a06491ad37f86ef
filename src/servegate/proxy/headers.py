"""Header rewriting for both directions, built directly as bytes (kong-compat §5.3, §5.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from servegate import SERVER_TOKEN

VIA_TOKEN: Final = SERVER_TOKEN.encode()
SERVER_LINE: Final = b"Server: " + VIA_TOKEN + b"\r\n"

# Request headers the proxy never forwards verbatim: hop-by-hop ones, framing (re-emitted by the relay) and the
# ones it sets itself.
REQ_SKIP: Final = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy", b"te", b"upgrade", b"host", b"expect",
        b"transfer-encoding", b"content-length", b"x-forwarded-for", b"x-forwarded-proto",
        b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip",
        b"via", b"x-kong-request-id", b"trailer",
    }
)
# Response headers dropped on the way down (framing headers are kept: the body is relayed as framed).
_FWD_TRUSTED: Final = frozenset(
    (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path", b"x-forwarded-prefix")
)
_RESP_SKIP: Final = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer", b"via"})
# Response headers downstream_head does more than copy.
_RESP_LOOK: Final = _RESP_SKIP | {b"transfer-encoding", b"content-length", b"server"}
_CONN_TOKENS_KEPT: Final = frozenset({b"keep-alive", b"close", b"upgrade"})


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


def forwarded_host(host: bytes | None) -> bytes:
    """X-Forwarded-Host: the client's Host without its port, lower-cased ([v6] kept whole)."""
    h = (host or b"").lower()
    if h.startswith(b"["):
        return h[: h.find(b"]") + 1]
    # find, not `in`: on 3.11 bytes' `in` first tries its operand as an int and raises and clears a TypeError
    colon = h.find(b":")
    return h[:colon] if colon >= 0 else h


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
    drop: frozenset[bytes] | None = None,
    has_connection: bool | None = None,
) -> bytes:
    """The request head sent upstream. `framing` is the Content-Length/Transfer-Encoding line (or b"").

    `drop`: request header names (lower-case) not to forward, a superset of REQ_SKIP (plugins' changes).
    `has_connection`: whether the client sent a Connection header (None: look).
    """
    out = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    if has_connection is None:
        has_connection = any(h[0] == b"connection" for h in headers)
    if drop is None:
        drop = REQ_SKIP
    if has_connection:
        drop = drop | connection_listed(headers)
    xff = None
    via = None
    tr: dict[bytes, bytes] | None = None
    for lname, name, value in headers:
        if lname in drop:
            if lname not in REQ_SKIP:
                continue  # listed in Connection, or cleared by a plugin
            if lname == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif lname == b"via":
                via = value if via is None else via + b", " + value
            elif trusted and lname in _FWD_TRUSTED:
                if tr is None:
                    tr = {}
                tr[lname] = value
            continue
        out += (name, b": ", value, b"\r\n")
    if tr is not None:
        scheme = tr.get(b"x-forwarded-proto", scheme)
        fwd_host = tr.get(b"x-forwarded-host", fwd_host)
        fwd_port = tr.get(b"x-forwarded-port", fwd_port)
        fwd_path = tr.get(b"x-forwarded-path", fwd_path)
        fwd_prefix = tr.get(b"x-forwarded-prefix", fwd_prefix)
    out.append(
        b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: %b\r\nX-Forwarded-Host: %b\r\nX-Forwarded-Port: %b\r\n"
        b"X-Forwarded-Path: %b\r\n"
        % (xff + b", " + client_ip if xff is not None else client_ip, scheme, fwd_host, fwd_port, fwd_path)
    )
    if fwd_prefix is not None:
        out += (b"X-Forwarded-Prefix: ", fwd_prefix, b"\r\n")
    out.append(
        b"X-Real-IP: %b\r\nVia: %b1.1 %b\r\nX-Kong-Request-Id: %b\r\n"
        % (client_ip, via + b", " if via is not None else b"", VIA_TOKEN, request_id)
    )
    if client_te_trailers:
        out.append(b"TE: trailers\r\n")
    if set_headers:
        for name, value in set_headers:
            out += (name, b": ", value, b"\r\n")
    out.append(framing)
    out.append(b"Connection: keep-alive\r\n\r\n")
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
    extra: bytes | None = None,
    reframe: bool = False,
) -> tuple[bytes, bool]:
    """The response head for the client; also says whether the upstream body is close-delimited.

    `extra`: header lines to add, already rendered (plugins' response headers). `reframe`: a body_filter
    changes the body, so the upstream's Content-Length and Transfer-Encoding are dropped (the caller's `extra`
    says how the body is framed now)."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"OK")]
    listed: frozenset[bytes] = frozenset()
    via = None
    has_server = False
    framed = False
    for name, value in headers:
        lname = name.lower()
        if lname not in _RESP_LOOK:
            out += (name, b": ", value, b"\r\n")
            continue
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
            if strip_chunked or reframe:
                continue
        elif lname == b"content-length":
            framed = True
            if reframe:
                continue
        else:  # server
            has_server = True
        out += (name, b": ", value, b"\r\n")
    if listed:
        out = [out[0]] + [
            line for line in _filter_listed(out[1:], listed)
        ]
    if extra:
        out.append(extra)
    out.append(
        b"Via: %b1.1 %b\r\n%bX-Kong-Upstream-Latency: %d\r\nX-Kong-Proxy-Latency: %d\r\nX-Kong-Request-Id: %b\r\n"
        % (via + b", " if via is not None else b"", VIA_TOKEN, b"" if has_server else SERVER_LINE,
           upstream_ms, proxy_ms, request_id)
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


class HeaderView(Mapping[str, Any]):
    """Read-only mapping (lower-case str name -> str, or list[str] when repeated) over the raw header list.

    `.get` scans the few raw headers directly; the dict is built only when someone iterates or reads many.
    """

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

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        d = self._d
        if d is not None:
            return d.get(name, default)
        try:
            key = name.encode("latin-1")
        except UnicodeEncodeError:
            return default
        found: bytes | None = None
        for lname, _, value in self._raw:
            if lname == key:
                if found is not None:
                    return self.as_dict().get(name, default)  # repeated: the list form
                found = value
        return default if found is None else found.decode("latin-1")

    def __getitem__(self, name: str) -> Any:
        return self.as_dict()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())
