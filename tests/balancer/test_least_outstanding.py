"""servegate's least-outstanding on a 2-worker node: a stream occupies its replica until its last byte, so a
replica whose streams last 10x longer gets a tenth of the requests and the same number of open ones; the
node-wide open counters (one shared gauge per address, a cell per worker) are exact under client aborts,
client timeouts and overload retries."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from lb_support import Aborted, Client, Gauges, Load, configure, run, start_replicas, wait_routed

STREAMS = 30


def test_least_outstanding_balances_open_streams_and_its_counters_return_to_zero(gateway):
    with start_replicas(3, slow={2: 10.0}) as reps:
        sg = gateway(workers=2)
        up = configure(sg, reps, algorithm="least-outstanding", retries=5)
        wait_routed(sg)
        reps.reset()

        # 1. Steady load: 30 clients streaming 10 tokens 20 ms apart (200 ms; 2 s on r3, slow-factor 10).
        async def steady() -> tuple[dict[str, float], dict[str, float], Load]:
            load = Load(sg.proxy_port, STREAMS, chunks=10, pace_ms=20).start()
            await asyncio.sleep(2.5)  # r3's first streams are 2 s long: past them, the spread is steady
            before = await asyncio.to_thread(reps.stats)
            sums: Counter[str] = Counter()
            samples = 0
            with Gauges(sg, up["id"]) as gauges:
                t_end = time.monotonic() + 4.0
                while time.monotonic() < t_end:
                    sums.update(gauges.read())
                    samples += 1
                    await asyncio.sleep(0.02)
            after = await asyncio.to_thread(reps.stats)
            await load.stop()
            replica_avg = {n: (after[n]["open_seconds"] - before[n]["open_seconds"]) / (after[n]["t"] - before[n]["t"])
                           for n in after}
            gauge_avg = {a: v / samples for a, v in sums.items()}
            return replica_avg, gauge_avg, load

        replica_avg, gauge_avg, load = run(steady())
        served = Counter(r.replica for r in load.records if r.ok)
        print(f"\nleast-outstanding, {STREAMS} streams, r3 10x slower: time-averaged open at the replicas "
              f"{({k: round(v, 2) for k, v in replica_avg.items()})}, node gauges "
              f"{({k: round(v, 2) for k, v in gauge_avg.items()})}; requests served {dict(served)}")
        assert not load.failed(), [r.error for r in load.failed()][:5]
        # "Within 10%": the replicas' time-averaged open-request counts over a 4 s window of steady load,
        # largest over smallest <= 1.10 (what an engine's batch sees), and the same for the node's own
        # counters (what the algorithm compares).
        assert max(replica_avg.values()) <= 1.10 * min(replica_avg.values()), replica_avg
        assert max(gauge_avg.values()) <= 1.10 * min(gauge_avg.values()), gauge_avg
        assert served["r1"] > 5 * served["r3"] and served["r2"] > 5 * served["r3"]

        # 2. 10,000 requests, a third of them cut short by their client; one replica overloaded for a while.
        tally: Counter[str] = Counter()

        async def churn() -> float:
            rng = random.Random(5)
            todo = iter(range(10_000))
            started = time.monotonic()

            async def worker() -> None:
                client = Client(sg.proxy_port)
                try:
                    for _ in todo:
                        await one(client, rng)
                finally:
                    client.close()

            async def overload_for_a_while() -> None:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(reps[1].control, overloaded=503)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(reps[1].control, overloaded=0)

            async with asyncio.timeout(50):
                await asyncio.gather(overload_for_a_while(), *(worker() for _ in range(64)))
            return time.monotonic() - started

        async def one(client: Client, rng: random.Random) -> None:
            roll = rng.random()
            try:
                if roll < 0.15:  # hang up after 0-3 chunks
                    await client.chat(chunks=4, pace_ms=2, abort_after=rng.randint(0, 3))
                elif roll < 0.30:  # a short timeout: before the pick, while connecting, mid-stream
                    async with asyncio.timeout(rng.uniform(0.0005, 0.03)):
                        await client.chat(chunks=4, pace_ms=2)
                    tally["completed"] += 1
                    return
                else:
                    res = await client.chat(chunks=3, pace_ms=2, stream=roll < 0.95)
                    ok = res.status == 200 and (res.json() if roll >= 0.95 else res.body.endswith(b"[DONE]\n\n"))
                    tally["completed" if ok else f"status {res.status}"] += 1
                    return
            except Aborted:
                tally["aborted"] += 1
            except TimeoutError:
                tally["timed out"] += 1

        took = run(churn())
        with Gauges(sg, up["id"]) as gauges:
            t_end = time.monotonic()
            while time.monotonic() < t_end + 5 and any(gauges.read().values()):
                time.sleep(0.01)
            settled = time.monotonic() - t_end
            final: dict[str, Any] = gauges.read()
        stats = reps.stats()
        replica_open = {n: s["open"] for n, s in stats.items()}
        overloaded = stats["r2"]["by_status"].get("503", 0)
        print(f"10,000 requests in {took:.1f}s: {dict(tally)}; r2's 503s retried elsewhere: {overloaded}; "
              f"node counters {settled:.2f}s after: {final}; replicas' open: {replica_open}")
        assert overloaded > 0  # the retry path was taken too
        assert sum(tally.values()) == 10_000
        assert tally["completed"] + tally["aborted"] + tally["timed out"] == 10_000, tally
        assert tally["aborted"] > 1000 and tally["timed out"] > 500
        assert set(final) == {r.address for r in reps}
        assert all(v == 0 for v in final.values()), final
        assert all(v == 0 for v in replica_open.values()), replica_open
