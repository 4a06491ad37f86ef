"""What the log phase adds to this worker's values (store.VALUES), as cheaply as it can.

Every request of one kind adds to the same series, so the series a kind of request adds to are found once and
kept: a `RouteSeries` per (service, route, consumer) holds its counters' label tuples and its latency histograms'
cells, an `LLMSeries` per (operation, provider, models, target, consumer) the same for the LLM families. A request
then costs a dict lookup for its kind and an addition per figure: no label tuple is built, no series looked up
(in-process, about 1.7 us for every Kong family and 2.6 us for the LLM ones). Both caches hold one entry per
series combination, as the values themselves do.
"""

from __future__ import annotations

from typing import Any, Final

from servegate.llm.record import LLMRecord
from servegate.plugins.prometheus import families as fam
from servegate.plugins.prometheus.store import VALUES, Series

WORKSPACE: Final = "default"  # servegate has one workspace, Kong's default

_S: Final = VALUES.series
REQUESTS: Final = _S[fam.HTTP_REQUESTS.name]
BANDWIDTH: Final = _S[fam.BANDWIDTH.name]
AI_REQUESTS: Final = _S[fam.AI_REQUESTS.name]
AI_TOKENS: Final = _S[fam.AI_TOKENS.name]
ABORTS: Final = _S[fam.CLIENT_ABORTS.name]

Cell = list[Any]


def cell(family: fam.Family, labels: tuple[str, ...]) -> Cell:
    """A histogram's cell for `labels` (created empty): per-bucket counts, +Inf last, then the sum."""
    series: Series = _S[family.name]
    got = series.get(labels)
    if got is None:
        got = series[labels] = [0] * (len(family.buckets) + 1) + [0.0]
    return got


def add(c: Cell, bounds: tuple[float, ...], value: float) -> None:
    # `le`: the first bound >= value. A plain loop: compiled, it compares unboxed floats, where a call to
    # bisect_left costs more than the whole walk over a family's 13 to 21 bounds.
    i = 0
    n = len(bounds)
    while i < n and bounds[i] < value:
        i += 1
    c[i] += 1
    c[n + 1] += value


class RouteSeries:
    """The Kong families' series of one (service, route, consumer)."""

    __slots__ = ("svc", "route", "consumer", "codes", "where", "request", "upstream", "kong", "ingress", "egress")

    def __init__(self, svc: str, route: str, consumer: str) -> None:
        self.svc, self.route, self.consumer = svc, route, consumer
        self.codes: dict[tuple[int, bool], tuple[str, ...]] = {}
        self.where = (svc, route, WORKSPACE)
        # histogram cells, made on first use (a route that only ever answered from Kong has no upstream latency)
        self.request: Cell | None = None
        self.upstream: Cell | None = None
        self.kong: Cell | None = None
        self.ingress = (svc, route, "ingress", WORKSPACE, consumer)
        self.egress = (svc, route, "egress", WORKSPACE, consumer)

    def status(self, code: int, proxied: bool) -> tuple[str, ...]:
        key = self.codes.get((code, proxied))
        if key is None:
            # `source`: "service" when the upstream answered, else "kong" (Kong's exits, errors)
            key = self.codes[(code, proxied)] = (self.svc, self.route, str(code), "service" if proxied else "kong",
                                                 WORKSPACE, self.consumer)
        return key


ROUTES: Final[dict[tuple[str, str, str], RouteSeries]] = {}
_REQ_B: Final = fam.REQUEST_LATENCY.buckets
_UP_B: Final = fam.UPSTREAM_LATENCY.buckets
_KONG_B: Final = fam.KONG_LATENCY.buckets


def route_series(svc: str, route: str, consumer: str) -> RouteSeries:
    key = (svc, route, consumer)
    rs = ROUTES.get(key)
    if rs is None:
        rs = ROUTES[key] = RouteSeries(svc, route, consumer)
    return rs


def latencies(rs: RouteSeries, lat: dict[str, int], proxied: bool) -> None:
    """Kong's three latency histograms (ms); a negative figure (Kong's -1: none) is not observed."""
    v = lat["request"]
    if v >= 0:
        c = rs.request
        if c is None:
            c = rs.request = cell(fam.REQUEST_LATENCY, rs.where)
        add(c, _REQ_B, v)
    if proxied:
        c = rs.upstream
        if c is None:
            c = rs.upstream = cell(fam.UPSTREAM_LATENCY, rs.where)
        add(c, _UP_B, lat["proxy"])
    v = lat["kong"]
    if v >= 0:
        c = rs.kong
        if c is None:
            c = rs.kong = cell(fam.KONG_LATENCY, rs.where)
        add(c, _KONG_B, v)


class LLMSeries:
    """The LLM families' series of one (operation, provider, request model, response model, target, consumer).

    Its counters are kept here, as plain numbers, and written into the values by `sync()` (before a flush or a
    scrape): a request then costs additions to attributes, not a lookup by a label tuple per counter (several
    series share one Kong AI counter, whose labels are only provider and model)."""

    __slots__ = ("ai", "tokens", "genai", "aborts", "ai_latency", "usage", "duration", "ttft", "tpot",
                 "requests", "prompt", "completion", "total", "aborted", "ok_cell")

    def __init__(self, op: str, provider: str, model: str, response_model: str, target: str | None,
                 consumer: str) -> None:
        # Kong's AI families (no cache plugins here: their four labels stay empty).
        self.ai = (provider, model, "", "", "", "", WORKSPACE)
        self.tokens = tuple((provider, model, "", "", "", "", t, WORKSPACE)
                            for t in ("prompt_tokens", "completion_tokens", "total_tokens"))
        address, port = split_target(target)
        self.genai = (op, provider, model, response_model, address, port, consumer)
        self.aborts = (op, model, address, port, consumer)
        self.ai_latency: Cell | None = None
        self.ttft: Cell | None = None
        self.tpot: Cell | None = None
        # token usage cells: input, input estimated, output, output estimated (an index, not a label tuple per use)
        self.usage: list[Cell | None] = [None, None, None, None]
        self.duration: dict[str, Cell] = {}  # error type -> cell
        self.ok_cell: Cell | None = None  # the duration cell of requests without an error
        self.requests = 0
        self.prompt = 0
        self.completion = 0
        self.total = 0
        self.aborted = 0

    def token_cell(self, output: bool, estimated: bool) -> Cell:
        """The token usage cell of input or output tokens, reported or estimated (made on first use)."""
        i = (2 if output else 0) + (1 if estimated else 0)
        got = self.usage[i]
        if got is None:
            labels = (*self.genai, "output" if output else "input", "true" if estimated else "false")
            got = self.usage[i] = cell(fam.TOKEN_USAGE, labels)
        return got

    def duration_cell(self, error: str) -> Cell:
        got = self.duration.get(error)
        if got is None:
            got = self.duration[error] = cell(fam.REQUEST_DURATION, (*self.genai, error))
        return got


def split_target(target: str | None) -> tuple[str, str]:
    """("ip", "port") of an "ip:port" target (IPv6 without its brackets); empty when unknown."""
    if not target:
        return "", ""
    host, _, port = target.rpartition(":")
    return (host.strip("[]"), port) if host else (target, "")


LLM: Final[dict[tuple[Any, ...], LLMSeries]] = {}
_AI_B: Final = fam.AI_LATENCY.buckets
_TOKEN_B: Final = fam.TOKEN_USAGE.buckets
_DURATION_B: Final = fam.REQUEST_DURATION.buckets
_TTFT_B: Final = fam.TTFT.buckets
_TPOT_B: Final = fam.TPOT.buckets


def llm(rec: LLMRecord, consumer: str, status: int) -> None:
    """One finished LLM request (its servegate.llm.LLMRecord) into the Kong AI and GenAI families."""
    provider = rec.provider or rec.backend or ""
    model = rec.request_model or ""
    key = (rec.operation, provider, model, rec.response_model, rec.target, consumer)
    s = LLM.get(key)
    if s is None:
        s = LLM[key] = LLMSeries(rec.operation, provider, model, rec.response_model or "", rec.target, consumer)
    s.requests += 1
    duration = rec.duration()
    if duration is not None:
        if duration > 0:
            c = s.ai_latency
            if c is None:
                c = s.ai_latency = cell(fam.AI_LATENCY, s.ai)
            add(c, _AI_B, duration * 1000.0)
        if status < 400 and not rec.aborted and rec.error is None:
            c = s.ok_cell
            if c is None:
                c = s.ok_cell = s.duration_cell("")
        else:
            c = s.duration_cell(str(status) if status >= 400 else rec.error or "client_abort")
        add(c, _DURATION_B, duration)
    prompt, completion, total = rec.prompt_tokens, rec.completion_tokens, rec.total_tokens
    estimated = rec.estimated
    if prompt is not None:
        add(s.token_cell(False, estimated), _TOKEN_B, prompt)
        if prompt > 0:
            s.prompt += prompt
    if completion is not None and rec.operation != "embeddings":  # an embedding has input tokens only
        add(s.token_cell(True, estimated), _TOKEN_B, completion)
        if completion > 0:
            s.completion += completion
    if total:
        s.total += total
    if 200 <= status < 300:
        ttft = rec.ttft()
        if ttft is not None:
            c = s.ttft
            if c is None:
                c = s.ttft = cell(fam.TTFT, s.genai)
            add(c, _TTFT_B, ttft)
            tpot = rec.tpot()
            if tpot is not None:
                c = s.tpot
                if c is None:
                    c = s.tpot = cell(fam.TPOT, s.genai)
                add(c, _TPOT_B, tpot)
    if rec.aborted:
        s.aborted += 1


def sync() -> None:
    """Write the LLM series' counters into the values (sums: several series share a Kong AI counter's labels)."""
    requests: dict[tuple[str, ...], int] = {}
    tokens: dict[tuple[str, ...], int] = {}
    aborts: dict[tuple[str, ...], int] = {}
    for s in LLM.values():
        requests[s.ai] = requests.get(s.ai, 0) + s.requests
        for k, n in zip(s.tokens, (s.prompt, s.completion, s.total), strict=True):
            if n:
                tokens[k] = tokens.get(k, 0) + n
        if s.aborted:
            aborts[s.aborts] = aborts.get(s.aborts, 0) + s.aborted
    AI_REQUESTS.update(requests)
    AI_TOKENS.update(tokens)
    ABORTS.update(aborts)
