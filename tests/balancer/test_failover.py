"""A replica dies, one is overloaded, none is left: what clients of a balanced service see.

- 3 replicas under steady streamed load (2 workers, so health is shared across the node): one is SIGKILLed.
  With passive checks, only requests in flight on it at the kill fail; every later request goes elsewhere (a
  connect failure is retried on another target). With active checks it returns to rotation within the
  configured interval after it restarts, and /upstreams/{u}/health says HEALTHY again.
- An overloaded replica (503 or 429 before any token) is retried elsewhere, bounded by the service's retries,
  and counted by the passive checks; `retry_on_overload=false` passes its answer through.
- No healthy target: Kong's 503 `failure to get a peer from the ring-balancer`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from lb_support import (
    NO_PEER,
    Client,
    Load,
    burst,
    configure,
    healthchecks,
    run,
    start_replicas,
    upstream_health,
    wait_routed,
)

INTERVAL = 0.5  # healthchecks.active.unhealthy.interval (s)
# On top of the interval: the checker's tick (interval / 4), the probe, and the few picks each worker's
# round-robin takes to come back to the returning target (measured up to ~0.67 s in all, mostly < 0.45 s).
MARGIN = 0.5


def wait_for(pred: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if pred():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_killed_replica_fails_only_its_in_flight_requests_and_returns_after_restart(gateway):
    with start_replicas(3) as reps:
        sg = gateway(workers=2)
        configure(sg, reps, retries=5, healthchecks=healthchecks(passive=True, active_interval=INTERVAL))
        wait_routed(sg)
        victim = reps[1]
        out: dict[str, Any] = {}

        async def scenario() -> Load:
            # 9 clients, streams of 10 tokens 20 ms apart (~200 ms): about 3 requests in flight per replica
            load = Load(sg.proxy_port, 9, chunks=10, pace_ms=20).start()
            await asyncio.sleep(1.5)
            out["open_before_kill"] = (await asyncio.to_thread(victim.stats))["open"]
            t_kill = out["t_kill"] = time.monotonic()
            victim.kill()
            in_flight = load.in_flight(t_kill)
            # Those that may have been on the victim: its head came from it, or no head yet (could be anywhere)
            out["exposed"] = [r for r in in_flight if r.replica in (victim.name, None)]
            out["in_flight"] = len(in_flight)
            await asyncio.sleep(2.0)
            out["health_down"] = await asyncio.to_thread(upstream_health, sg)
            out["served_while_down"] = Counter(r.replica for r in load.records if r.t0 > t_kill + 0.2 and r.ok)
            t_spawn = time.monotonic()
            await asyncio.to_thread(victim.start)
            t_up = out["t_up"] = time.monotonic()
            out["spawn_s"] = t_up - t_spawn
            deadline = t_up + 5
            while time.monotonic() < deadline:
                back = [r.t_head for r in load.records if r.replica == victim.name and r.t_head > t_up]
                if back:
                    out["back_after"] = min(back) - t_up
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.5)
            await load.stop()
            return load

        load = run(scenario())
        failed = load.failed()
        t_kill = out["t_kill"]
        after_restart = Counter(r.replica for r in load.records if r.t_head > out["t_up"] and r.ok)
        print(f"\nrequests {len(load.records)}, in flight at the kill {out['in_flight']} (on the victim or not "
              f"yet answered: {len(out['exposed'])}; victim's own open count just before: "
              f"{out['open_before_kill']}), failed {len(failed)}: {[r.error for r in failed]}")
        print(f"while down: {dict(out['served_while_down'])}; restart took {out['spawn_s']:.2f}s, back in rotation "
              f"{out.get('back_after', float('nan')):.3f}s after listening; served after: {dict(after_restart)}")
        # Only requests already in flight on the victim fail: none sent after the kill, none on another replica
        assert all(r.t0 < t_kill and r.replica in (victim.name, None) for r in failed), [
            (r.t0 - t_kill, r.replica, r.error) for r in failed]
        assert len(failed) <= len(out["exposed"])
        assert len(load.records) > 100
        health = out["health_down"]
        assert health[victim.address] == "UNHEALTHY", health
        assert all(health[r.address] == "HEALTHY" for r in reps if r is not victim), health
        assert victim.name not in out["served_while_down"]
        assert "back_after" in out, "the restarted replica got no traffic within 5 s"
        assert out["back_after"] <= INTERVAL + MARGIN
        assert after_restart[victim.name] > 0
        health = upstream_health(sg)
        assert all(health[r.address] == "HEALTHY" for r in reps), health


def test_overloaded_replica_is_retried_elsewhere_bounded_by_retries_and_counted(gateway):
    with start_replicas(3, extra={1: ["--overloaded", "503"]}) as reps:
        r1, r2, r3 = reps
        sg = gateway()
        configure(sg, reps, retries=2)
        wait_routed(sg)

        # 1. One replica answers 503 before any token: every request still succeeds, on the others.
        reps.reset()
        res = run(burst(sg.proxy_port, 300, 6, chunks=3))
        stats = reps.stats()
        print(f"\n503 from r2, retried: clients saw {Counter((x.status, x.replica) for x in res)}, "
              f"r2 answered {stats['r2']['by_status']}")
        assert all(x.status == 200 and x.replica in ("r1", "r3") for x in res)
        assert stats["r2"]["by_status"].get("503", 0) >= 50  # about a third of the first tries
        assert stats["r1"]["served"] + stats["r3"]["served"] == 300

        # 2. All overloaded: each request is tried 1 + retries times, on distinct targets, then the 503 passes.
        for r in reps:
            r.control(overloaded=503)
        reps.reset()
        res = run(burst(sg.proxy_port, 30, 3, chunks=3))
        stats = reps.stats()
        assert all(x.status == 503 for x in res), Counter(x.status for x in res)
        assert [stats[n]["by_status"].get("503", 0) for n in ("r1", "r2", "r3")] == [30, 30, 30], stats
        r1.control(overloaded=0)
        r3.control(overloaded=0)

        # 3. retry_on_overload=false: the 503 reaches the client.
        status, body = sg.admin("PATCH", "/upstreams/llm-pool", {"retry_on_overload": False})
        assert status == 200 and body["retry_on_overload"] is False, body
        wait_for(lambda: any(x.status == 503 for x in run(burst(sg.proxy_port, 12, 3))), 5, "a 503 passed")
        res = run(burst(sg.proxy_port, 60, 3))
        seen = Counter((x.status, x.replica) for x in res)
        assert set(seen) == {(503, "r2"), (200, "r1"), (200, "r3")}, seen

        # 4. Passive checks count an overload answer (429 here): r2 is out after its first one.
        r2.control(overloaded=429)
        status, body = sg.admin("PATCH", "/upstreams/llm-pool", {"retry_on_overload": True,
                                                                 "healthchecks": healthchecks(passive=True)})
        assert status == 200, body
        wait_for(lambda: run(burst(sg.proxy_port, 6, 3)) is not None and
                 upstream_health(sg).get(r2.address) == "UNHEALTHY", 5, "r2 marked unhealthy")
        reps.reset()
        res = run(burst(sg.proxy_port, 200, 4))
        stats = reps.stats()
        assert all(x.status == 200 for x in res)
        assert stats["r2"]["requests"] == 0, stats["r2"]
        health = upstream_health(sg)
        assert health == {r1.address: "HEALTHY", r2.address: "UNHEALTHY", r3.address: "HEALTHY"}, health


def test_no_healthy_target_is_kongs_503(gateway):
    with start_replicas(2) as reps:
        sg = gateway()
        configure(sg, reps, healthchecks=healthchecks(passive=True))
        wait_routed(sg)

        # An upstream without targets
        assert sg.admin("POST", "/upstreams", {"name": "empty-pool"})[0] == 201
        assert sg.admin("PUT", "/services/empty", {"host": "empty-pool"})[0] == 200
        assert sg.admin("PUT", "/routes/empty", {"paths": ["/empty"], "service": {"name": "empty"}})[0] == 200

        async def one(path: str) -> Any:
            c = Client(sg.proxy_port)
            try:
                return await c.request("POST", path, b'{"stream": false}')
            finally:
                c.close()

        wait_for(lambda: run(one("/empty/v1/chat/completions")).status == 503, 5, "/empty routed")
        res = run(one("/empty/v1/chat/completions"))
        assert res.status == 503 and res.json()["message"] == NO_PEER, res.body

        # Every target set unhealthy through the Admin API, then one back
        for r in reps:
            status, body = sg.admin("PUT", f"/upstreams/llm-pool/targets/{r.address}/unhealthy")
            assert status == 204, body
        res = run(one("/lb/v1/chat/completions"))
        assert res.status == 503 and res.json()["message"] == NO_PEER, res.body
        assert sg.admin("PUT", f"/upstreams/llm-pool/targets/{reps[0].address}/healthy")[0] == 204
        res = run(one("/lb/v1/chat/completions"))
        assert res.status == 200 and res.replica == "r1"
        assert sg.admin("PUT", f"/upstreams/llm-pool/targets/{reps[1].address}/healthy")[0] == 204

        # Every replica dead: the first request tries each (each connect failure takes one out), then no peer
        for r in reps:
            r.kill()
        res = run(one("/lb/v1/chat/completions"))
        assert res.status == 503 and res.json()["message"] == NO_PEER, res.body
        res = run(one("/lb/v1/chat/completions"))
        assert res.status == 503 and res.json()["message"] == NO_PEER, res.body
        assert set(upstream_health(sg).values()) == {"UNHEALTHY"}


def test_active_checks_run_without_traffic_in_a_multi_worker_node(gateway):
    """Kong probes targets whether or not requests come: a node that proxied nothing still finds a target
    down, and up again, and shows it in /upstreams/{u}/health."""
    with start_replicas(2) as reps:
        sg = gateway(workers=2)
        hc = healthchecks(active_interval=INTERVAL)
        hc["active"]["healthy"]["interval"] = INTERVAL
        reps[1].kill()
        configure(sg, reps, healthchecks=hc)
        took = wait_for(lambda: upstream_health(sg).get(reps[1].address) == "UNHEALTHY", 5, "found down")
        assert upstream_health(sg)[reps[0].address] == "HEALTHY"
        reps[1].start()
        back = wait_for(lambda: upstream_health(sg).get(reps[1].address) == "HEALTHY", 5, "found up")
        print(f"\nno traffic: down seen after {took:.2f}s, back after {back:.2f}s")
        assert back <= INTERVAL + MARGIN
