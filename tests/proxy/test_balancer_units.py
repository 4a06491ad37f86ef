"""The balancer's parts in-process: algorithms, passive checks, hash inputs, prompt prefixes, DNS helpers.
The end-to-end behaviour (real replicas, a real node) is in tests/balancer/."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from servegate.proxy.balancer import dns, health, keys
from servegate.proxy.balancer.core import Balancer, split_target

_n = 0


def balancer(algorithm: str = "round-robin", weights: tuple[int, ...] = (100, 100, 100), **upstream: Any) -> Balancer:
    global _n
    _n += 1  # a fresh upstream id: node-wide load cells are per upstream id and address
    row = {"id": f"u{_n}", "name": f"up{_n}", "algorithm": algorithm, "slots": 1000, **upstream}
    targets = [{"id": f"t{i}", "target": f"10.0.0.{i + 1}:8000", "weight": w} for i, w in enumerate(weights)]
    return Balancer(row, targets, {}, None)


def passive(**unhealthy: int) -> dict[str, Any]:
    return {"passive": {"healthy": {"http_statuses": [200], "successes": 2},
                        "unhealthy": {"http_statuses": [429, 500, 503], **unhealthy}}}


def test_weighted_round_robin_is_exact_per_cycle() -> None:
    b = balancer(weights=(100, 50, 150))
    got = Counter(b.pick(None, None).ip for _ in range(3000))  # type: ignore[union-attr]
    assert got == {"10.0.0.1": 1000, "10.0.0.2": 500, "10.0.0.3": 1500}
    # interleaved, not in bursts: no endpoint twice in a row more than its share allows
    seq = [b.pick(None, None).ip for _ in range(6)]  # type: ignore[union-attr]
    assert len(set(seq)) == 3


def test_weight_zero_and_down_endpoints_are_never_picked() -> None:
    b = balancer(weights=(100, 0, 100))
    b.cells[b.all[2].cell] = health.DOWN
    assert {b.pick(None, None).ip for _ in range(50)} == {"10.0.0.1"}  # type: ignore[union-attr]
    b.cells[b.all[0].cell] = health.DOWN
    assert b.pick(None, None) is None


@pytest.mark.parametrize("algorithm", ["round-robin", "least-connections", "latency", "least-outstanding",
                                       "consistent-hashing", "prefix-affinity"])
def test_a_retry_goes_elsewhere_while_another_is_usable(algorithm: str) -> None:
    b = balancer(algorithm)
    first = b.pick("k", None)
    assert first is not None
    second = b.pick("k", [first])
    assert second is not None and second is not first
    third = b.pick("k", [first, second])
    assert third not in (first, second)
    # everything tried: a usable one is reused rather than failing the request
    assert b.pick("k", [first, second, third]) is not None


def test_least_connections_counts_this_workers_open_requests_by_weight() -> None:
    b = balancer("least-connections", weights=(100, 200, 100))
    held = [b.pick(None, None) for _ in range(8)]
    counts = Counter(ep.ip for ep in held if ep)
    assert counts["10.0.0.2"] == 4 and counts["10.0.0.1"] == 2 and counts["10.0.0.3"] == 2
    for ep in held:
        b.release(ep)  # type: ignore[arg-type]
    assert [ep.active for ep in b.all] == [0, 0, 0]


def test_least_outstanding_counts_are_exact_after_releases() -> None:
    b = balancer("least-outstanding")
    held = [b.pick(None, None) for _ in range(300)]
    assert sorted(ep.load() for ep in b.all) == [100.0, 100.0, 100.0]
    for ep in held:
        b.release(ep)  # type: ignore[arg-type]
    assert [ep.load() for ep in b.all] == [0.0, 0.0, 0.0]


def test_least_outstanding_sees_the_load_a_previous_balancer_placed() -> None:
    """A configuration change rebuilds the balancer; requests in flight keep counting on the same endpoints."""
    b = balancer("least-outstanding")
    ep = b.pick(None, None)
    again = Balancer(dict(b.upstream), b.target_rows, {}, b)
    assert ep in again.all and ep.load() == 1.0  # type: ignore[union-attr]
    again.release(ep)  # type: ignore[arg-type]
    assert sum(e.load() for e in again.all) == 0.0


def test_consistent_hashing_keeps_keys_and_moves_few_when_a_target_goes() -> None:
    b = balancer("consistent-hashing", hash_on="header", hash_on_header="x-user")
    before = {f"user{i}": b.pick(f"user{i}", None) for i in range(600)}
    assert all(b.pick(k, None) is ep for k, ep in before.items())
    gone = b.all[1]
    b.cells[gone.cell] = health.DOWN
    moved = sum(1 for k, ep in before.items() if ep is not gone and b.pick(k, None) is not ep)
    assert moved == 0  # keys of the other targets stay where they were
    assert 100 < sum(1 for ep in before.values() if ep is gone) < 350  # about a third remapped


def test_prefix_affinity_sticks_until_the_load_bound_then_spills() -> None:
    b = balancer("prefix-affinity", load_factor=0.25)
    alone = [b.pick("system prompt A", None) for _ in range(1)]
    b.release(alone[0])  # type: ignore[arg-type]
    home = alone[0]
    for _ in range(20):  # light load: one at a time, always home
        ep = b.pick("system prompt A", None)
        assert ep is home
        b.release(ep)  # type: ignore[arg-type]
    held = [b.pick("system prompt A", None) for _ in range(30)]  # one hot prefix held open
    loads = [ep.load() for ep in b.all]
    bound = 1.25 * sum(loads) / 3 + 1
    assert max(loads) <= bound, loads
    assert sum(1 for ep in held if ep is home) > 10  # it still took more than its share
    assert b.algorithm.spills > 0 and b.algorithm.hits >= 21  # type: ignore[attr-defined]
    for ep in held:
        b.release(ep)  # type: ignore[arg-type]


def test_passive_checks_take_an_address_out_and_successes_bring_it_back() -> None:
    b = balancer(healthchecks=passive(tcp_failures=2, http_failures=1))
    ep = b.all[0]
    b.failed(ep, "tcp")
    assert b.usable(ep)
    b.failed(ep, "tcp")
    assert not b.usable(ep)
    b.status(ep, 200)
    assert not b.usable(ep)
    b.status(ep, 200)
    assert b.usable(ep)  # healthy.successes = 2
    b.status(ep, 503)
    assert not b.usable(ep)  # http_failures = 1


def test_passive_checks_off_count_nothing() -> None:
    b = balancer()
    ep = b.all[0]
    for _ in range(10):
        b.failed(ep, "tcp")
        b.status(ep, 503)
    assert b.usable(ep) and b.passive is None


def test_split_target() -> None:
    assert split_target("example.test:8000") == ("example.test", 8000)
    assert split_target("[::1]:9000") == ("::1", 9000)
    assert split_target("10.1.2.3:1") == ("10.1.2.3", 1)


def _ex(headers: dict[str, str], query: str = "", client_ip: str = "10.9.8.7") -> Any:
    raw = [(k.lower().encode(), k.encode(), v.encode()) for k, v in headers.items()]
    return SimpleNamespace(headers=raw, query=query.encode(), client_ip=client_ip.encode(), ctx=None,
                           norm_path="/v1/chat", match=SimpleNamespace(captures={"model": "m1", 1: "m1"}))


def test_hash_inputs_and_fallback() -> None:
    up = {"hash_on": "header", "hash_on_header": "X-User", "hash_fallback": "query_arg",
          "hash_fallback_query_arg": "session"}
    assert keys.hash_input(_ex({"X-User": "alice"}), up) == "alice"
    assert keys.hash_input(_ex({}, "?session=s1&x=2"), up) == "s1"
    assert keys.hash_input(_ex({}), up) is None
    assert keys.hash_input(_ex({}), {"hash_on": "ip"}) == "10.9.8.7"
    assert keys.hash_input(_ex({"Cookie": "a=1; sticky=xyz"}), {"hash_on": "cookie", "hash_on_cookie": "sticky"}) == "xyz"
    assert keys.hash_input(_ex({}), {"hash_on": "uri_capture", "hash_on_uri_capture": "model"}) == "m1"
    assert keys.hash_input(_ex({}), {"hash_on": "path"}) == "/v1/chat"


def test_prompt_prefix() -> None:
    chat = {"model": "m", "messages": [{"role": "system", "content": "S" * 50},
                                       {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    p = keys.prompt_prefix(chat, 20)
    assert p is not None and len(p) == 20 and p.startswith("system")
    longer = dict(chat, messages=[*chat["messages"], {"role": "assistant", "content": "x"}])
    assert keys.prompt_prefix(longer, 40) == keys.prompt_prefix(chat, 40)  # a conversation keeps its prefix
    assert keys.prompt_prefix(b'{"prompt": "abcdef"}', 3) == "abc"
    assert keys.prompt_prefix(b'{"prompt": ["abcdef", "x"]}', 4) == "abcd"
    assert keys.prompt_prefix(b"not json", 10) is None
    assert keys.prompt_prefix(b'{"input": "embed me"}', 10) is None


def test_dns_ip_literals_and_hosts_file(tmp_path: Any) -> None:
    assert dns.is_ip("10.0.0.1") and dns.is_ip("[::1]") and not dns.is_ip("vllm-a")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# comment\n10.1.1.1 vllm-a vllm-a.local  # trailing\nbad line\n")
    dns._hosts = (0.0, {})
    table = dns.hosts_file(str(hosts))
    assert table["vllm-a"] == ["10.1.1.1"] and table["vllm-a.local"] == ["10.1.1.1"]
    dns._hosts = (0.0, {})
    assert asyncio.run(dns.resolve("10.2.3.4"))[0] == ["10.2.3.4"]


def test_dns_unknown_name_is_not_found() -> None:
    with pytest.raises((dns.NameNotFound, OSError)):
        asyncio.run(dns.resolve("no-such-host.invalid"))


def test_null_healthcheck_fields_mean_their_defaults() -> None:
    """Kong lets every healthchecks sub-field be null; the balancer reads a null as the default."""
    hc = {"passive": {"type": None, "healthy": None,
                      "unhealthy": {"http_statuses": None, "tcp_failures": None, "timeouts": None, "http_failures": 1}},
          "active": None, "threshold": None}
    b = balancer(healthchecks=hc)
    ep = b.all[0]
    b.status(ep, 500)  # in the default unhealthy statuses (429, 500, 503)
    assert not b.usable(ep)
