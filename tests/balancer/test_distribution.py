"""How requests spread: Kong's weighted round-robin, and servegate's prefix-affinity (consistent hashing of the
prompt's first characters with bounded loads)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, defaultdict
from typing import Any

from lb_support import Client, Replicas, burst, configure, run, start_replicas, wait_routed


def test_weighted_round_robin_within_2_percent_over_3000_requests(gateway):
    weights = [100, 50, 150, 0]  # a weight-0 target takes nothing
    with start_replicas(4) as reps:
        sg = gateway(workers=2)
        configure(sg, reps, weights=weights)
        wait_routed(sg)
        started = time.monotonic()
        res = run(burst(sg.proxy_port, 3000, 8, stream=False))
        took = time.monotonic() - started
        counts = Counter(x.replica for x in res)
        total = sum(weights)
        expected = {r.name: 3000 * w / total for r, w in zip(reps, weights, strict=True)}
        print(f"\nweighted round-robin over 2 workers, 3000 requests in {took:.1f}s: {dict(counts)} "
              f"(expected {expected})")
        assert all(x.status == 200 for x in res)
        for name, want in expected.items():
            assert abs(counts[name] - want) <= 0.02 * want, (name, counts[name], want)


# -- prefix-affinity ------------------------------------------------------------------------------------------
LOAD_FACTOR = 0.25


def system_prompts(n: int, size: int = 3000) -> list[str]:
    rng = random.Random(7)
    words = ["tokens", "cache", "replica", "answer", "policy", "context", "model", "user", "gateway", "prefix"]
    out = []
    for i in range(n):
        text = f"You are assistant number {i}. "
        while len(text) < size:
            text += rng.choice(words) + " "
        out.append(text[:size])
    return out


def chat_for(prompt: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt}, {"role": "user", "content": question}]


async def place(port: int, prompts: list[str], per_prompt: int, concurrency: int, **chat: Any) -> dict[int, Counter]:
    """`per_prompt` requests for each prompt (distinct user messages), shuffled, over `concurrency` clients:
    prompt index -> Counter of the replicas that answered."""
    rng = random.Random(11)
    jobs = [(i, j) for i in range(len(prompts)) for j in range(per_prompt)]
    rng.shuffle(jobs)
    todo = iter(jobs)
    seen: dict[int, Counter] = defaultdict(Counter)

    async def worker() -> None:
        client = Client(port)
        try:
            for i, j in todo:
                res = await client.chat(messages=chat_for(prompts[i], f"question {j}: what about {rng.random()}?"),
                                        **chat)
                assert res.status == 200, res.body
                seen[i][res.replica] += 1
        finally:
            client.close()

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


def hit_rate(seen: dict[int, Counter]) -> float:
    """The share of requests answered by their prompt's most frequent replica (its "home")."""
    return sum(c.most_common(1)[0][1] for c in seen.values()) / sum(sum(c.values()) for c in seen.values())


def averaged_open(reps: Replicas, seconds: float) -> dict[str, float]:
    """Each replica's open requests averaged over the next `seconds` (its integral of open over time)."""
    before = reps.stats()
    time.sleep(seconds)
    after = reps.stats()
    return {n: (after[n]["open_seconds"] - before[n]["open_seconds"]) / (after[n]["t"] - before[n]["t"])
            for n in after}


def test_prefix_affinity_keeps_a_prefix_on_its_replica_until_the_load_bound(gateway):
    prompts = system_prompts(5)
    with start_replicas(3) as reps:
        sg = gateway()
        configure(sg, reps, algorithm="prefix-affinity", load_factor=LOAD_FACTOR, prefix_chars=2048)
        wait_routed(sg)

        # Light load (one request at a time): every prompt stays on one replica.
        seen = run(place(sg.proxy_port, prompts, 40, 1, chunks=2))
        light = hit_rate(seen)
        homes = {i: c.most_common(1)[0][0] for i, c in seen.items()}
        print(f"\nprefix-affinity, 5 prompts x 40 questions, concurrency 1: hit rate {light:.1%}, homes {homes}")
        assert light >= 0.95

        # Moderate load (6 at once over 5 prompts): mostly home, some spill (reported).
        seen = run(place(sg.proxy_port, prompts, 40, 6, chunks=5, pace_ms=10))
        print(f"concurrency 6: hit rate {hit_rate(seen):.1%}, {dict((i, dict(c)) for i, c in seen.items())}")

        # Heavy load of one hot prompt: 30 streams at once. Its home fills to the bound, the rest spills, and
        # no replica holds more than ceil((1 + load_factor) x 30 / 3) = 13 open requests at any time.
        concurrency = 30
        bound = math.ceil((1 + LOAD_FACTOR) * concurrency / 3)
        reps.reset()
        stop = False

        async def hot() -> None:
            async def loop(k: int) -> None:
                client = Client(sg.proxy_port)
                n = 0
                try:
                    while not stop:
                        n += 1
                        res = await client.chat(messages=chat_for(prompts[0], f"hot {k} {n}"), chunks=10, pace_ms=20)
                        assert res.status == 200
                finally:
                    client.close()

            async with asyncio.timeout(30):
                await asyncio.gather(*(loop(k) for k in range(concurrency)))

        async def drive() -> dict[str, float]:
            nonlocal stop
            task = asyncio.get_running_loop().create_task(hot())
            await asyncio.sleep(1.0)
            avg = await asyncio.to_thread(averaged_open, reps, 3.0)
            stop = True
            await task
            return avg

        avg = run(drive())
        stats = reps.stats()
        mean = sum(avg.values()) / 3
        home = homes[0]
        print(f"hot prompt (home {home}), 30 streams: time-averaged open {({k: round(v, 2) for k, v in avg.items()})}, "
              f"peak open {({k: v['peak_open'] for k, v in stats.items()})}, bound {bound}, "
              f"(1+e) x mean + 1 = {(1 + LOAD_FACTOR) * mean + 1:.2f}")
        assert all(s["peak_open"] <= bound for s in stats.values()), stats
        assert all(v <= (1 + LOAD_FACTOR) * mean + 1 for v in avg.values()), avg
        # stays on its home up to the bound, then spills to the others
        assert avg[home] >= 0.8 * bound and stats[home]["peak_open"] == bound
        assert all(v >= 1.0 for v in avg.values()), avg
