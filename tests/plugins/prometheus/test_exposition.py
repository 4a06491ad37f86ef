"""The prometheus plugin's text writer and per-worker store, in-process: the writer's output equals
prometheus_client's `generate_latest` over the same families (but for Kong's counter named without `_total`),
bucket semantics, merging workers, the worker files."""

from __future__ import annotations

import os
import random
import timeit
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from servegate.plugins.prometheus import families as fam
from servegate.plugins.prometheus import record, store
from servegate.plugins.prometheus.exposition import bound, number, render
from servegate.plugins.prometheus.families import Family


class _Registry:
    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Any]:
        return self.metrics


def _client_family(family: Family, series: dict[tuple[str, ...], Any]) -> Any:
    """The same family as prometheus_client's metric family object."""
    labels = list(family.labels)
    if family.kind == fam.COUNTER:
        m: Any = CounterMetricFamily(family.name, family.help, labels=labels)
        for values, v in sorted(series.items()):
            m.add_metric(list(values), v)
    elif family.kind == fam.GAUGE:
        m = GaugeMetricFamily(family.name, family.help, labels=labels)
        for values, v in sorted(series.items()):
            m.add_metric(list(values), v)
    else:
        m = HistogramMetricFamily(family.name, family.help, labels=labels)
        les = [bound(b) for b in family.buckets] + ["+Inf"]
        for values, cell in sorted(series.items()):
            total, buckets = 0, []
            for le, n in zip(les, cell, strict=False):
                total += n
                buckets.append((le, total))
            m.add_metric(list(values), buckets, cell[-1])
    return m


def _random_series(family: Family, rng: random.Random, n: int) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    words = ["", "a", "llm", "route-1", 'q"uote', "back\\slash", "new\nline", "ünï"]
    for _ in range(n):
        labels = tuple(rng.choice(words) + str(rng.randrange(3)) for _ in family.labels)
        if family.kind == fam.HISTOGRAM:
            cell: list[Any] = [0] * (len(family.buckets) + 1) + [0.0]
            for _ in range(rng.randrange(1, 20)):
                record.add(cell, family.buckets, rng.uniform(0, family.buckets[-1] * 1.5))
            out[labels] = cell
        else:
            out[labels] = float(rng.choice([0, 1, 7, 123456, 12345678, 2**40, rng.random() * 1e9]))
    return out


def test_number_matches_prometheus_client() -> None:
    rng = random.Random(1)
    values = [0, 1, -1, 0.5, 1e6, 9999999, 10_000_000, 12345678.5, 2**53, 1e16, 1e21, 1e-7, float("inf"),
              float("-inf"), 123456.789, 0.1 + 0.2]
    values += [rng.uniform(0, 10 ** rng.randrange(12)) for _ in range(2000)]
    values += [float(rng.randrange(10 ** rng.randrange(15))) for _ in range(2000)]
    for v in values:
        assert number(v) == floatToGoString(v), v
    assert number(float("nan")) == "NaN"


@pytest.mark.parametrize("seed", range(5))
def test_render_equals_generate_latest(seed: int) -> None:
    rng = random.Random(seed)
    chosen = [f for f in fam.ALL.values() if f is not fam.BANDWIDTH]
    data = [(f, _random_series(f, rng, rng.randrange(1, 6))) for f in chosen]
    data += [(fam.DATASTORE_REACHABLE, {(): 1.0}), (fam.METRIC_ERRORS, {(): 0.0})]
    data.sort(key=lambda fs: fs[0].name)
    ours = render(data)
    theirs = generate_latest(_Registry([_client_family(f, s) for f, s in data]))  # type: ignore[arg-type]
    assert ours == theirs


def test_kong_counter_without_total_keeps_its_name() -> None:
    series = {("svc", "r", "egress", "default", ""): 1234.0}
    text = render([(fam.BANDWIDTH, series)]).decode()
    assert "# TYPE kong_bandwidth_bytes counter\n" in text
    assert 'kong_bandwidth_bytes{consumer="",direction="egress",route="r",service="svc",workspace="default"} 1234.0' in text
    (parsed,) = text_string_to_metric_families(text)
    assert parsed.type == "counter" and parsed.samples[0].value == 1234.0


def test_families_without_series_are_left_out() -> None:
    assert render([(fam.HTTP_REQUESTS, {}), (fam.TTFT, {})]) == b""


def test_le_bounds_are_written_as_kong_writes_them() -> None:
    text = render([(fam.KONG_LATENCY, {("s", "r", "default"): [1] + [0] * 17 + [1.0]})]).decode()
    assert 'le="1"' in text and 'le="6000"' in text and 'le="+Inf"' in text and 'le="1.0"' not in text
    text = render([(fam.TTFT, {("chat",) + ("",) * 6: [1] + [0] * 21 + [0.001]})]).decode()
    assert 'le="0.001"' in text and 'le="60"' in text


def test_writer_is_faster_than_generate_latest() -> None:
    """The reason to write the format ourselves besides Kong's names: a scrape of many series costs less."""
    rng = random.Random(7)
    data = sorted(((f, _random_series(f, rng, 200)) for f in fam.ALL.values() if f is not fam.BANDWIDTH),
                  key=lambda fs: fs[0].name)
    registry = _Registry([_client_family(f, s) for f, s in data])
    ours = min(timeit.repeat(lambda: render(data), number=3, repeat=3))
    # theirs includes building the family objects, as a collector would on every scrape
    theirs = min(timeit.repeat(
        lambda: generate_latest(_Registry([_client_family(f, s) for f, s in data])),  # type: ignore[arg-type]
        number=3, repeat=3))
    assert render(data) == generate_latest(registry)  # type: ignore[arg-type]
    assert ours < theirs, (ours, theirs)


def test_observe_uses_le_buckets() -> None:
    cell = [0, 0, 0, 0, 0.0]
    for v in (0.5, 1.0, 1.5, 2.0, 5.0, 5.5, 100.0):
        record.add(cell, (1.0, 2.0, 5.0), v)
    assert cell == [2, 2, 1, 2, 115.5]  # a value equal to a bound counts in that bucket


def test_merge_adds_workers_without_touching_them() -> None:
    a = {fam.HTTP_REQUESTS.name: {("s", "r", "200", "service", "default", ""): 2},
         fam.TPOT.name: {("l",) * 7: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3.5]}}
    b = {fam.HTTP_REQUESTS.name: {("s", "r", "200", "service", "default", ""): 3,
                                  ("s", "r", "500", "service", "default", ""): 1},
         fam.TPOT.name: {("l",) * 7: [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.02]}, "unknown_family": {(): 1}}
    merged: dict[str, Any] = {}
    store.merge(merged, a)
    store.merge(merged, b)
    assert merged[fam.HTTP_REQUESTS.name] == {("s", "r", "200", "service", "default", ""): 5,
                                              ("s", "r", "500", "service", "default", ""): 1}
    assert merged[fam.TPOT.name][("l",) * 7] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3.52]
    assert a[fam.TPOT.name][("l",) * 7][-1] == 3.5 and "unknown_family" not in merged


def test_worker_file_round_trip_and_other_runs_ignored(tmp_path: Any) -> None:
    f = store.WorkerFile(str(tmp_path), 3)
    os.makedirs(f.directory)
    assert f.read() is None
    series = {fam.HTTP_REQUESTS.name: {("s", "r", "200", "service", "default", ""): 7}}
    f.write(series)
    assert f.read() == (os.getpid(), series)
    assert sorted(os.listdir(f.directory)) == ["worker-3.metrics"]  # the temporary file was renamed over
    saved = store.NODE_TOKEN
    try:
        store.NODE_TOKEN = "an-earlier-run"
        assert f.read() is None
    finally:
        store.NODE_TOKEN = saved
    with open(f.path, "wb") as out:
        out.write(b"garbage")
    assert f.read() is None
