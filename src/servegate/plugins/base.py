"""Plugin base class, the request Context plugins act through, and the Exit signal.

A plugin never sees the proxy's internals. The proxy builds one `Context` per request, the plugin
phase plan calls the hooks with it, and the proxy applies what the hooks recorded on it (upstream
header/query/body changes, extra response headers) or renders the `Exit` a hook raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn
from urllib.parse import quote, unquote_plus

import orjson
from mypy_extensions import mypyc_attr

from servegate.plugins.serialize import serialize_context
from servegate.schema.fields import Field

if TYPE_CHECKING:  # servegate.llm (track) and servegate.plugins.runner import this module
    from servegate.llm.record import LLMRecord
    from servegate.plugins.runner import Bound

# kong.response.error's message for a status when the caller gave none (kong-compat §5.5).
DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    426: "Upgrade required",
    429: "Too many requests",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}

QueryValue = str | bool | list[str | bool]
HookResult = Awaitable[None] | None
# Context._json before json_body() has parsed the body.
_UNPARSED: Final[Any] = object()
_loads: Final = orjson.loads  # bound once: compiled, a module attribute is looked up on every use


class Exit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by `Context.exit`: the proxy answers with `status` and a §5.5 path-1 error body; or, raised by
    `Context.respond`, with `body` as given (`content_type` its type).

    `message` is always a string (the status default when the plugin gave none); `headers`
    are added to the Kong-generated response together with `Context.response_headers`.
    """

    __slots__ = ("status", "message", "headers", "body", "content_type")

    def __init__(self, status: int, message: str | None = None,
                 headers: Mapping[str, str] | None = None, body: bytes | None = None,
                 content_type: str | None = None) -> None:
        if message is None:
            message = DEFAULT_MESSAGES.get(status, f"The upstream server responded with {status}")
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = dict(headers) if headers else None
        self.body = body
        self.content_type = content_type


class Context:
    """Per-request view for plugins. Cheap to build: parsing happens on first use.

    Request side (read): method, path (normalized, no query), raw_query, query(), headers
    (lower-case name -> str, or list[str] when repeated), client_ip, scheme, route, service,
    request_id, body().
    Identity (read/write, set by auth plugins): consumer, credential (rows or None).
    Recorded for the proxy: upstream_headers (lower name -> (name, value or None = remove)),
    upstream_query (encoded query string replacing the client's, or None), upstream_body,
    response_headers (added to the downstream response, proxied or Kong-generated).
    Response side (header_filter/log phases): response_status, downstream_headers.
    Upstream choice (access): set_target(host, port), set_scheme(scheme), set_path(path), set_upstream(name),
    set_timeouts(connect, write, read), set_retries(n); read by the proxy as upstream_target, upstream_scheme,
    upstream_path, upstream_name, upstream_timeouts, upstream_retries.
    Answering instead of proxying: exit(status, message) (Kong's error body), respond(status, body).
    Log phase: request_size, response_size (bytes), latencies (Kong's: request, proxy, kong; ms), serialize()
    (kong.log.serialize), llm (the servegate.llm.LLMRecord when a plugin tracked the request).
    """

    __slots__ = (
        "method", "path", "raw_query", "headers", "client_ip", "scheme", "route", "service",
        "request_id", "consumer", "credential",
        "upstream_headers", "upstream_query", "upstream_body", "response_headers",
        "response_status", "downstream_headers", "shared", "collected", "upstream_preset",
        "upstream_target", "upstream_scheme", "upstream_path", "_request_size", "_response_size", "_latencies",
        "upstream_name", "upstream_timeouts", "upstream_retries", "_query", "_body", "_read_body", "_json",
        "_config", "llm", "_log_source", "response_raw", "_log_figures",
    )

    def __init__(
        self,
        method: str,
        path: str,
        raw_query: str = "",
        headers: Mapping[str, str | list[str]] | None = None,
        client_ip: str = "",
        *,
        scheme: str = "http",
        route: Mapping[str, Any] | None = None,
        service: Mapping[str, Any] | None = None,
        request_id: str = "",
        read_body: Callable[[], Awaitable[bytes]] | None = None,
        body: bytes | None = None,
        config: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.headers: Mapping[str, str | list[str]] = headers if headers is not None else {}
        self.client_ip = client_ip
        self.scheme = scheme
        self.route = route
        self.service = service
        self.request_id = request_id
        self.consumer: Mapping[str, Any] | None = None
        self.credential: Mapping[str, Any] | None = None
        self.upstream_headers: dict[str, tuple[str, str | None]] | None = None
        # The preset that filled upstream_headers, while nothing else changed them (lets the proxy reuse
        # the preset's encoded bytes instead of encoding per request).
        self.upstream_preset: HeaderPreset | None = None
        self.upstream_query: str | None = None
        self.upstream_body: bytes | None = None
        self.response_headers: list[tuple[str, str]] | None = None
        self.response_status: int | None = None
        self.downstream_headers: Any = None
        # kong.ctx.shared: plugins exchanging state within one request.
        self.shared: dict[str, Any] | None = None
        # The instances (servegate.plugins.runner.Bound) the plan collected in access for the later phases.
        self.collected: list[Bound] | None = None
        # Upstream choice made in access (None: the service's).
        self.upstream_target: tuple[str, int] | None = None
        self.upstream_scheme: str | None = None
        self.upstream_path: str | None = None
        self.upstream_name: str | None = None
        self.upstream_timeouts: tuple[int, int, int] | None = None
        self.upstream_retries: int | None = None
        # What the configuration holds now (the snapshot holder: `.current.index(entity, field)`), for lookups
        # such as set_upstream's; None outside a proxy.
        self._config = config
        # The log phase's figures (request_size, response_size, latencies, log_source): the proxy leaves here how
        # to compute them, (function, exchange, end time), and they are computed on first read; most log hooks
        # (prometheus with ai_metrics alone, model-router) read none of them.
        self._log_figures: tuple[Callable[[Any, Context, float], None], Any, float] | None = None
        self._request_size = 0
        self._response_size = 0
        self._latencies: dict[str, int] | None = None
        # The request's servegate.llm.LLMRecord once an LLM-aware plugin called servegate.llm.track(ctx): the
        # proxy then feeds it the response (usage, timings) for the log phase.
        self.llm: LLMRecord | None = None
        # For log hooks only, read by serialize(): log_source (request target as received, server port, upstream
        # (host, port) or None, upstream target path, upstream query), and the upstream's response head.
        self._log_source: tuple[Any, ...] | None = None
        self.response_raw: list[tuple[bytes, bytes]] | None = None
        self._json: Any = _UNPARSED
        self._query: dict[str, QueryValue] | None = None
        self._body = body
        self._read_body = read_body

    # -- log phase figures, computed on first read ----------------------------------------------------
    def _figures(self) -> None:
        figures = self._log_figures
        if figures is not None:
            self._log_figures = None
            fill, source, now = figures
            fill(source, self, now)

    @property
    def request_size(self) -> int:
        self._figures()
        return self._request_size

    @request_size.setter
    def request_size(self, value: int) -> None:
        self._request_size = value

    @property
    def response_size(self) -> int:
        self._figures()
        return self._response_size

    @response_size.setter
    def response_size(self, value: int) -> None:
        self._response_size = value

    @property
    def latencies(self) -> dict[str, int] | None:
        self._figures()
        return self._latencies

    @latencies.setter
    def latencies(self, value: dict[str, int] | None) -> None:
        self._latencies = value

    @property
    def log_source(self) -> tuple[Any, ...] | None:
        self._figures()
        return self._log_source

    @log_source.setter
    def log_source(self, value: tuple[Any, ...] | None) -> None:
        self._log_source = value

    def serialize(self) -> dict[str, Any]:
        """kong.log.serialize(): the request as log plugins see it (Kong's field names; credentials redacted),
        with Kong's `ai.proxy` section when an LLM record was tracked. For the log phase."""
        return serialize_context(self)

    # -- request ---------------------------------------------------------------------------------
    def query(self) -> dict[str, QueryValue]:
        """Decoded query args in order; a repeated name gives a list, a name without `=` gives True."""
        q = self._query
        if q is None:
            q = self._query = parse_query(self.raw_query)
        return q

    def header(self, name: str) -> str | None:
        """First value of a request header (name matched case-insensitively)."""
        v = self.headers.get(name.lower())
        if isinstance(v, list):
            return v[0] if v else None
        return v

    async def body(self) -> bytes:
        """The raw request body (read once; b"" when there is none)."""
        if self._body is None:
            self._body = await self._read_body() if self._read_body is not None else b""
        return self._body

    async def json_body(self) -> Any:
        """The request body parsed as JSON (orjson), once per request; None when it is empty or not JSON.
        Like body(), a body over client_body_buffer_size ends the request with a 413."""
        if self._body is None:
            await self.body()
        return self.json_body_now()

    def body_ready(self) -> bool:
        """True when body() would not wait: the body was read already, or came whole before the access phase
        (the proxy defers the access phase of a plan with a `reads_body` plugin until a small body is in).
        A hook can then use body_now() / json_body_now() and stay synchronous."""
        return self._body is not None

    def body_now(self) -> bytes:
        """The body, when body_ready()."""
        body = self._body
        if body is None:
            raise RuntimeError("the request body is not read yet: await body()")
        return body

    def json_body_now(self) -> Any:
        """json_body(), when body_ready()."""
        j = self._json
        if j is _UNPARSED:
            raw = self.body_now()
            try:
                j = _loads(raw) if raw else None
            except orjson.JSONDecodeError:
                j = None
            self._json = j
        return j

    # -- upstream choice (kong.service) ----------------------------------------------------------
    def set_target(self, host: str, port: int) -> None:
        """kong.service.set_target: send this request to host:port instead of the service's. Like Kong, the
        Host header becomes `host` (no port), whatever the route's preserve_host."""
        if not isinstance(host, str) or not host:
            raise TypeError("host must be a string")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError("port must be an integer")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer between 0 and 65535: given {port}")
        self.upstream_target = (host, port)

    def set_scheme(self, scheme: str) -> None:
        """kong.service.request.set_scheme: `http` or `https` to the upstream."""
        if scheme not in ("http", "https"):
            raise ValueError("invalid scheme: " + str(scheme))
        self.upstream_scheme = scheme

    def set_path(self, path: str) -> None:
        """kong.service.request.set_path: the upstream path (no query), replacing the route/service join."""
        if not isinstance(path, str) or not path.startswith("/") or "?" in path:
            raise ValueError("path must start with / and hold no query")
        self.upstream_path = path

    def set_timeouts(self, connect_ms: int, write_ms: int, read_ms: int) -> None:
        """kong.service.set_timeouts: this request's upstream timeouts (ms), instead of the service's."""
        for v in (connect_ms, write_ms, read_ms):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2**31 - 2:
                raise ValueError("timeouts must be integers between 1 and 2147483646 (ms)")
        self.upstream_timeouts = (connect_ms, write_ms, read_ms)

    def set_retries(self, retries: int) -> None:
        """kong.service.set_retries: how many times this request is tried again (0..32767)."""
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 32767:
            raise ValueError("retries must be an integer between 0 and 32767")
        self.upstream_retries = retries

    def set_upstream(self, name: str) -> str | None:
        """kong.service.set_upstream: balance this request over the targets of the upstream `name` instead of
        the service's host. Returns Kong's error message for an unknown name, None when done. A set_target
        wins over it."""
        config = self._config
        snapshot = config.current if config is not None else None
        if not isinstance(name, str) or snapshot is None or name not in snapshot.index("upstreams", "name"):
            return f"could not find an Upstream named '{name}'"
        self.upstream_name = name
        return None

    # -- upstream request changes ----------------------------------------------------------------
    def set_upstream_header(self, name: str, value: str) -> None:
        if self.upstream_headers is None:
            self.upstream_headers = {}
        self.upstream_headers[name.lower()] = (name, value)

    def clear_upstream_header(self, name: str) -> None:
        if self.upstream_headers is None:
            self.upstream_headers = {}
        self.upstream_headers[name.lower()] = (name, None)

    def apply_upstream_preset(self, preset: HeaderPreset) -> None:
        """set/clear every header of `preset` (same result as the single calls, in its order)."""
        if self.upstream_headers is None:
            self.upstream_headers = dict(preset.items)
            self.upstream_preset = preset
        else:
            self.upstream_headers.update(preset.items)

    def set_query(self, args: Mapping[str, QueryValue]) -> None:
        """Replace the upstream query string with `args` (encoded like ngx.encode_args)."""
        self.upstream_query = encode_query(args)

    def set_body(self, body: bytes) -> None:
        """Replace the upstream request body (the proxy fixes Content-Length)."""
        self.upstream_body = body

    # -- downstream ------------------------------------------------------------------------------
    def add_response_header(self, name: str, value: str) -> None:
        if self.response_headers is None:
            self.response_headers = []
        self.response_headers.append((name, value))

    def exit(self, status: int, message: str | None = None,
             headers: Mapping[str, str] | None = None) -> NoReturn:
        raise Exit(status, message, headers)

    def respond(self, status: int, body: Any, headers: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> NoReturn:
        """kong.response.exit with a body: answer the client with `body` (bytes as they are; str as UTF-8; any
        other value as JSON) instead of proxying (an OpenAI-shaped error, a list the plugin builds)."""
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = orjson.dumps(body)
        raise Exit(status, None, headers, raw, content_type)


class HeaderPreset:
    """A fixed set of upstream header changes a plugin applies as one (e.g. key-auth's consumer headers),
    built once per snapshot. `encoded` is the proxy's cache of its wire form."""

    __slots__ = ("items", "encoded")

    def __init__(self, changes: list[tuple[str, str | None]]) -> None:
        self.items: dict[str, tuple[str, str | None]] = {name.lower(): (name, value) for name, value in changes}
        self.encoded: Any = None


def parse_query(raw: str) -> dict[str, QueryValue]:
    out: dict[str, QueryValue] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        key = unquote_plus(name)
        if not key:
            continue
        v: str | bool = unquote_plus(value) if eq else True
        prev = out.get(key)
        if prev is None:
            out[key] = v
        elif isinstance(prev, list):
            prev.append(v)
        else:
            out[key] = [prev, v]
    return out


def _esc(s: str) -> str:
    return quote(s, safe="-_.~")


def encode_query(args: Mapping[str, QueryValue]) -> str:
    parts: list[str] = []
    for key, value in args.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is True:
                parts.append(_esc(key))
            elif v is False:
                continue
            else:
                parts.append(_esc(key) + "=" + _esc(str(v)))
    return "&".join(parts)


@dataclass
class Lookups:
    """Snapshot data a plugin may bind to when it compiles its config (never mutated)."""

    # The held entities' rows by field: indexes[entity][field][value] -> row (id and endpoint key). A plugin
    # whose compile() reads an entity here names it in `Plugin.binds`, so that its change recompiles plugins.
    indexes: Mapping[str, Mapping[str, Mapping[Any, Mapping[str, Any]]]] = field(default_factory=dict)
    # When the snapshot was read (epoch seconds).
    loaded_at: float = 0.0
    # Per-snapshot data plugins derive at compile time (shared by all instances of a plugin).
    derived: dict[str, Any] = field(default_factory=dict)
    # The worker's lookup caches (servegate.snapshot.cache.Caches) for cached entities (consumers,
    # credentials): `caches.named(plugin)` is a bounded LRU invalidated by change events, `caches.source.find`
    # reads a row on a miss. They outlive the snapshot.
    caches: Any = None

    def index(self, entity: str, by: str) -> Mapping[Any, Mapping[str, Any]]:
        return self.indexes.get(entity, {}).get(by, {})


# Compiled builds (mypyc) must still accept plugins written as plain Python classes.
@mypyc_attr(allow_interpreted_subclasses=True)
class Plugin:
    """A bundled plugin: a name, a PRIORITY, a config schema and phase hooks.

    Subclasses define any of `access(ctx, conf)`, `header_filter(ctx, conf)`, `log(ctx, conf)`;
    each returns None or an awaitable. `body_filter(ctx, conf, chunk, eof)` is synchronous and returns
    None (pass `chunk` on) or the bytes to send instead (b"" drops it); it is called once more with
    eof=True and chunk=b"" after the last chunk. `compile(row, lookups)` turns a stored plugin row into
    the `conf` object the hooks receive; it runs once per snapshot, never per request.
    """

    name: ClassVar[str]
    PRIORITY: ClassVar[int]
    VERSION: ClassVar[str]
    config_schema: ClassVar[Field]
    no_consumer: ClassVar[bool] = False
    protocols_default: ClassVar[tuple[str, ...]] = ("grpc", "grpcs", "http", "https")
    # Entity checks over the whole plugin row (EntityCheck signature, see schema.fields).
    entity_checks: ClassVar[tuple[Callable[[Mapping[str, Any]], Any], ...]] = ()
    # Deprecated config aliases: name -> (Field, func(value) -> dict deep-merged into config).
    config_shorthands: ClassVar[dict[str, tuple[Field, Callable[[Any], dict[str, Any]]]]] = {}
    # Aliases echoed on output: name -> path inside config.
    config_echo: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Kong's daos.lua and migrations/: the entities this plugin owns (schema.fields.Entity) and the migrations
    # of its subsystem (store.migrations.Migration), registered with the plugin.
    daos: ClassVar[tuple[Any, ...]] = ()
    migrations: ClassVar[tuple[Any, ...]] = ()
    # Entities whose snapshot rows `compile` reads through `lookups.indexes`: their change recompiles plugins.
    binds: ClassVar[tuple[str, ...]] = ()

    # ClassVars, not instance attributes: compiled (mypyc) classes would otherwise give every instance a
    # None attribute that hides the subclass's method.
    access: ClassVar[Callable[..., HookResult] | None] = None
    header_filter: ClassVar[Callable[..., HookResult] | None] = None
    log: ClassVar[Callable[..., HookResult] | None] = None
    body_filter: ClassVar[Callable[..., bytes | None] | None] = None
    # The access hook reads the request body: the proxy then starts the access phase once a small body is in
    # (Context.body_ready), so that the hook can read it without awaiting.
    reads_body: ClassVar[bool] = False
    # Node hooks (servegate.plugins.node): `init_worker(worker)` once per worker process after its loop starts,
    # `shutdown_worker(worker)` before it exits.
    init_worker: ClassVar[Callable[..., HookResult] | None] = None
    shutdown_worker: ClassVar[Callable[..., HookResult] | None] = None
    # Extra endpoints (servegate.plugins.api.ApiEndpoint): on the Admin API (Kong's api.lua), on status_listen.
    admin_api: ClassVar[tuple[Any, ...]] = ()
    status_api: ClassVar[tuple[Any, ...]] = ()

    def compile(self, row: Mapping[str, Any], lookups: Lookups) -> Any:
        return row.get("config")

    def reads_body_with(self, conf: Any) -> bool:
        """Whether the access hook reads the body with this compiled conf (read once per plan): `reads_body`
        unless the plugin knows better per instance."""
        return self.reads_body

    def redact_query_args(self, config: Mapping[str, Any]) -> Iterable[str]:
        """Query argument names whose values the access log never writes, for one instance's config (read
        once per snapshot)."""
        return ()
