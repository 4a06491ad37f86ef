"""prometheus: Kong's metrics plugin (PRIORITY 13), plus the LLM figures Kong lacks.

The log phase adds each request to this worker's values (store.VALUES) according to the instance's switches;
`/metrics` (exporter.py) shows the node's sum. With `ai_metrics`, the access phase asks the proxy to track the
request's LLM exchange (servegate.llm.track: usage, first and last token times) and the log phase reads it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from servegate import KONG_VERSION
from servegate.llm import track as _track
from servegate.plugins import register
from servegate.plugins.api import ApiEndpoint
from servegate.plugins.base import Context, Lookups, Plugin
from servegate.plugins.prometheus import families as fam
from servegate.plugins.prometheus import store
from servegate.plugins.prometheus.exporter import metrics_endpoint
from servegate.plugins.prometheus.schema import CONFIG
from servegate.plugins.prometheus.store import inc, observe

WORKSPACE = "default"  # servegate has one workspace, Kong's default


class PromConf:
    __slots__ = ("per_consumer", "status", "latency", "bandwidth", "upstream_health", "ai")

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.per_consumer = bool(config.get("per_consumer"))
        self.status = bool(config.get("status_code_metrics"))
        self.latency = bool(config.get("latency_metrics"))
        self.bandwidth = bool(config.get("bandwidth_metrics"))
        self.upstream_health = bool(config.get("upstream_health_metrics"))
        self.ai = bool(config.get("ai_metrics"))


# The series dicts, looked up once: the log phase adds to them directly.
_S = store.VALUES.series
_REQUESTS = _S[fam.HTTP_REQUESTS.name]
_KONG_LAT = _S[fam.KONG_LATENCY.name]
_UP_LAT = _S[fam.UPSTREAM_LATENCY.name]
_REQ_LAT = _S[fam.REQUEST_LATENCY.name]
_BANDWIDTH = _S[fam.BANDWIDTH.name]
_AI_REQUESTS = _S[fam.AI_REQUESTS.name]
_AI_TOKENS = _S[fam.AI_TOKENS.name]
_AI_LAT = _S[fam.AI_LATENCY.name]
_TOKENS = _S[fam.TOKEN_USAGE.name]
_DURATION = _S[fam.REQUEST_DURATION.name]
_TTFT = _S[fam.TTFT.name]
_TPOT = _S[fam.TPOT.name]
_ABORTS = _S[fam.CLIENT_ABORTS.name]

_KONG_B = fam.KONG_LATENCY.buckets
_UP_B = fam.UPSTREAM_LATENCY.buckets
_AI_B = fam.AI_LATENCY.buckets
_TOKEN_B = fam.TOKEN_USAGE.buckets
_DURATION_B = fam.REQUEST_DURATION.buckets
_TTFT_B = fam.TTFT.buckets
_TPOT_B = fam.TPOT.buckets

# "ip:port" -> (server_address, server_port); bounded by the node's targets.
_targets: dict[str | None, tuple[str, str]] = {None: ("", "")}


def _split(target: str | None) -> tuple[str, str]:
    got = _targets.get(target)
    if got is None:
        assert target is not None
        host, _, port = target.rpartition(":")
        got = (host.strip("[]"), port) if host else (target, "")
        if len(_targets) < 4096:
            _targets[target] = got
    return got


def _stream_labels(rec: Any, consumer: str) -> tuple[str, ...]:
    address, port = _split(rec.target)
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
    if rec is not None:
        _started(rec, ctx, conf)
        return None
    return _track_then(ctx, conf)


async def _track_then(ctx: Context, conf: PromConf) -> None:
    rec = await _track(ctx)
    if rec is not None:
        _started(rec, ctx, conf)


def _started(rec: Any, ctx: Context, conf: PromConf) -> None:
    if rec.stream and not rec.finished:
        store.LIVE[rec] = _consumer(ctx, conf)


def _log(ctx: Context, conf: PromConf) -> None:
    route = ctx.route
    if route is None:  # as Kong: nothing is recorded for a request that matched no route
        return None
    service = ctx.service
    svc = (service.get("name") or service.get("host") or "") if service is not None else ""
    rname = route.get("name") or route.get("id") or ""
    consumer = _consumer(ctx, conf)
    lat = ctx.latencies
    # Kong's latencies.proxy is -1 when no upstream answered (an exit, a failed connection): that, too, says
    # whether the response came from the service or from Kong.
    proxied = lat is not None and lat["proxy"] >= 0
    if conf.status:
        key = (svc, rname, str(ctx.response_status or 0), "service" if proxied else "kong", WORKSPACE, consumer)
        _REQUESTS[key] = _REQUESTS.get(key, 0) + 1
    if conf.latency and lat is not None:
        where = (svc, rname, WORKSPACE)
        v = lat["request"]
        if v >= 0:
            observe(_REQ_LAT, where, _UP_B, v)
        if proxied:
            observe(_UP_LAT, where, _UP_B, lat["proxy"])
        v = lat["kong"]
        if v >= 0:
            observe(_KONG_LAT, where, _KONG_B, v)
    if conf.bandwidth:
        if ctx.request_size > 0:
            inc(_BANDWIDTH, (svc, rname, "ingress", WORKSPACE, consumer), ctx.request_size)
        if ctx.response_size > 0:
            inc(_BANDWIDTH, (svc, rname, "egress", WORKSPACE, consumer), ctx.response_size)
    if conf.ai:
        rec = ctx.llm
        if rec is not None:
            store.LIVE.pop(rec, None)
            _log_llm(rec, consumer, ctx.response_status or rec.status)
    store.VALUES.changes += 1
    return None


def _log_llm(rec: Any, consumer: str, status: int) -> None:
    provider = rec.provider or rec.backend or ""
    model = rec.request_model or ""
    # Kong's AI families (no cache plugins here: their four labels stay empty).
    ai = (provider, model, "", "", "", "", WORKSPACE)
    inc(_AI_REQUESTS, ai, 1)
    duration = rec.duration()
    if duration is not None and duration > 0:
        observe(_AI_LAT, ai, _AI_B, duration * 1000.0)
    for token_type, n in (("prompt_tokens", rec.prompt_tokens), ("completion_tokens", rec.completion_tokens),
                          ("total_tokens", rec.total_tokens)):
        if n:
            inc(_AI_TOKENS, (provider, model, "", "", "", "", token_type, WORKSPACE), n)
    # OpenTelemetry GenAI.
    address, port = _split(rec.target)
    op = rec.operation
    genai = (op, provider, model, rec.response_model or "", address, port, consumer)
    estimated = "true" if rec.estimated else "false"
    if rec.prompt_tokens is not None:
        observe(_TOKENS, (*genai, "input", estimated), _TOKEN_B, rec.prompt_tokens)
    if rec.completion_tokens is not None:
        observe(_TOKENS, (*genai, "output", estimated), _TOKEN_B, rec.completion_tokens)
    if duration is not None:
        error = str(status) if status >= 400 else "client_abort" if rec.aborted else ""
        observe(_DURATION, (*genai, error), _DURATION_B, duration)
    if 200 <= status < 300:
        ttft = rec.ttft()
        if ttft is not None:
            observe(_TTFT, genai, _TTFT_B, ttft)
            tpot = rec.tpot()
            if tpot is not None:
                observe(_TPOT, genai, _TPOT_B, tpot)
    if rec.aborted:
        inc(_ABORTS, (op, model, address, port, consumer), 1)


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

    def access(self, ctx: Context, conf: PromConf) -> Awaitable[None] | None:  # type: ignore[override]
        return _access(ctx, conf)

    def log(self, ctx: Context, conf: PromConf) -> None:  # type: ignore[override]
        _log(ctx, conf)

    def init_worker(self, worker: Any) -> None:  # type: ignore[override]
        store.attach(worker.settings.prefix, worker.id, _stream_labels)
        worker.every(store.FLUSH_INTERVAL_S, store.flush, name="prometheus flush")

    def shutdown_worker(self, worker: Any) -> None:  # type: ignore[override]
        store.flush()  # the node's view keeps this worker's last requests


register(Prometheus)
