"""prometheus: Kong's metrics plugin (PRIORITY 13), plus the LLM figures Kong lacks.

The log phase adds each request to this worker's values (store.VALUES) according to the instance's switches;
`/metrics` (exporter.py) shows the node's sum. With `ai_metrics`, the access phase asks the proxy to track the
request's LLM exchange (servegate.llm.track: usage, first and last token times) and the log phase reads it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Final

from servegate import KONG_VERSION
from servegate.llm.record import LLMRecord
from servegate.llm.track import track_now
from servegate.plugins import register
from servegate.plugins.api import ApiEndpoint
from servegate.plugins.base import Context, Exit, Lookups, Plugin
from servegate.plugins.prometheus import record, store
from servegate.plugins.prometheus.exporter import metrics_endpoint
from servegate.plugins.prometheus.schema import CONFIG


class PromConf:
    __slots__ = ("per_consumer", "status", "latency", "bandwidth", "upstream_health", "ai", "records", "kong")

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.per_consumer = bool(config.get("per_consumer"))
        self.status = bool(config.get("status_code_metrics"))
        self.latency = bool(config.get("latency_metrics"))
        self.bandwidth = bool(config.get("bandwidth_metrics"))
        self.upstream_health = bool(config.get("upstream_health_metrics"))
        self.ai = bool(config.get("ai_metrics"))
        # Anything to record per request (with the defaults, nothing: the instance only enables /metrics).
        self.kong = self.status or self.latency or self.bandwidth
        self.records = self.kong or self.ai


def _stream_labels(rec: LLMRecord, consumer: str) -> tuple[str, ...]:
    """The streams-in-flight gauge's labels of a stream in progress (its target is known from its response head)."""
    address, port = record.split_target(rec.target)
    return (rec.operation, rec.request_model or "", address, port, consumer)


def _consumer(ctx: Context, conf: PromConf) -> str:
    if conf.per_consumer:
        c = ctx.consumer
        if c is not None:
            return c.get("username") or ""
    return ""


def _access(ctx: Context, conf: PromConf) -> Awaitable[None] | None:
    if not conf.ai:
        return None
    rec = ctx.llm
    if rec is not None:  # another plugin (model-router) tracks it already
        _started(rec, ctx, conf)
        return None
    if ctx.method != "POST":  # an LLM request is a POST whose JSON body names a model
        return None
    if ctx.body_ready():
        _track(ctx, conf)
        return None
    return _track_after_body(ctx, conf)


async def _track_after_body(ctx: Context, conf: PromConf) -> None:
    try:
        await ctx.body()
    except Exit:
        # Over client_body_buffer_size: relayed as it came, untracked. (A metrics plugin never answers a request;
        # model-router, which must read the model, answers this one with Kong's 413.)
        return
    _track(ctx, conf)


def _track(ctx: Context, conf: PromConf) -> None:
    body = ctx.json_body_now()  # parsed once: track_now() reads the same
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return  # not an LLM request (an Admin API write through a gateway route, say): nothing to watch
    rec = track_now(ctx)
    if rec is not None:
        _started(rec, ctx, conf)


def _started(rec: LLMRecord, ctx: Context, conf: PromConf) -> None:
    if rec.stream and not rec.finished:
        _LIVE[rec] = _consumer(ctx, conf)


def _log(ctx: Context, conf: PromConf) -> None:
    route = ctx.route
    if route is None or not conf.records:  # as Kong: nothing is recorded for a request that matched no route
        return None
    consumer = _consumer(ctx, conf)
    if conf.kong:  # the route families: not with ai_metrics alone
        service = ctx.service
        svc = (service.get("name") or service.get("host") or "") if service is not None else ""
        rs = record.route_series(svc, route.get("name") or route.get("id") or "", consumer)
        lat = ctx.latencies
        # Kong's latencies.proxy is -1 when no upstream answered (an exit, a failed connection): that, too, says
        # whether the response came from the service or from Kong.
        proxied = lat is not None and lat["proxy"] >= 0
        if conf.status:
            key = rs.status(ctx.response_status or 0, proxied)
            _REQUESTS[key] = _REQUESTS.get(key, 0) + 1
        if conf.latency and lat is not None:
            record.latencies(rs, lat, proxied)
        if conf.bandwidth:
            if ctx.request_size > 0:
                _BANDWIDTH[rs.ingress] = _BANDWIDTH.get(rs.ingress, 0) + ctx.request_size
            if ctx.response_size > 0:
                _BANDWIDTH[rs.egress] = _BANDWIDTH.get(rs.egress, 0) + ctx.response_size
    if conf.ai:
        rec: LLMRecord | None = ctx.llm
        if rec is not None:
            if rec.stream:  # only streams are watched while in flight
                _LIVE.pop(rec, None)
            record.llm(rec, consumer, ctx.response_status or rec.status)
    _CHANGES[0] += 1
    return None


_REQUESTS: Final = record.REQUESTS
_BANDWIDTH: Final = record.BANDWIDTH
_LIVE: Final = store.LIVE
_CHANGES: Final[list[int]] = store.VALUES.changes


class Prometheus(Plugin):
    name = "prometheus"
    PRIORITY = 13
    VERSION = KONG_VERSION
    config_schema = CONFIG
    admin_api = (ApiEndpoint("GET", "/metrics", metrics_endpoint),)
    status_api = (ApiEndpoint("GET", "/metrics", metrics_endpoint),)

    def compile(self, row: Mapping[str, Any], lookups: Lookups) -> PromConf:
        config = row.get("config")
        return PromConf(config if isinstance(config, Mapping) else {})

    def reads_body_with(self, conf: PromConf) -> bool:  # type: ignore[override]
        return conf.ai  # the access phase reads the body only to track an LLM request

    def access(self, ctx: Context, conf: PromConf) -> Awaitable[None] | None:  # type: ignore[override]
        return _access(ctx, conf)

    def log(self, ctx: Context, conf: PromConf) -> None:  # type: ignore[override]
        _log(ctx, conf)

    def init_worker(self, worker: Any) -> None:  # type: ignore[override]
        store.attach(worker.settings.prefix, worker.id, _stream_labels, record.sync)
        worker.every(store.FLUSH_INTERVAL_S, store.flush, name="prometheus flush")

    def shutdown_worker(self, worker: Any) -> None:  # type: ignore[override]
        store.flush()  # the node's view keeps this worker's last requests


register(Prometheus)
