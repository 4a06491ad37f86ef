"""In-process cost of the LLM layer's per-request work, without sockets: what the proxy does for one non-streamed
chat completion on a route with model-router + prometheus (ai_metrics), as in the harness's servegate-1w+llm.

A steadier A/B than the load loop (whose noise on these machines is ±10-15 %) for a change to the plugin layer; the
load loop (profile.sh) and the harness still decide. Run it against the compiled build to measure what ships:

    PYTHONPATH=.build/compiled .venv/bin/python benchmarks/llm_hooks.py
"""

from __future__ import annotations

import time
from typing import Any

from servegate.plugins import handlers
from servegate.plugins.base import Context, Lookups
from servegate.plugins.runner import Bound, Plan, _Slot

BODY = b'{"model":"fake","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
ANSWER = (b'{"id":"chatcmpl-bench000000000000000","object":"chat.completion","created":1700000000,"model":"fake",'
          b'"system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":'
          b'"Hello from the benchmark backend, a short answer."},"logprobs":null,"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}')
SERVICE = {"id": "s1", "name": "bench", "protocol": "http", "host": "127.0.0.1", "port": 19500, "path": None,
           "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000, "retries": 5}
ROUTE = {"id": "r1", "name": "r", "paths": ["/v1"], "strip_path": False}


def plan() -> Plan:
    h = handlers()
    lookups = Lookups(indexes={"services": {"name": {"bench": SERVICE}, "id": {"s1": SERVICE}},
                               "upstreams": {"name": {}, "id": {}}, "targets": {"upstream": {}}})
    router, prom = h["model-router"], h["prometheus"]
    rconf = router.compile({"id": "p1", "config": {"backends": ["bench"], "models": {"fake": ["bench"]},
                                                  "discovery": {"enabled": False}}}, lookups)
    pconf = prom.compile({"id": "p2", "config": {"ai_metrics": True}}, lookups)
    # PRIORITY order, as the plan builder sorts them: model-router (770) then prometheus (13)
    return Plan([_Slot(Bound(router, rconf, None, "p1"), None, True),
                 _Slot(Bound(prom, pconf, None, "p2"), None, True)], reads_body=True)


def one(p: Plan, headers: dict[str, Any]) -> None:
    ctx = Context("POST", "/v1/chat/completions", "", headers, "127.0.0.1", route=ROUTE, service=SERVICE,
                  request_id="x", body=BODY)
    p.access(ctx)
    rec = ctx.llm
    assert rec is not None
    rec.head(200, "bench", "127.0.0.1:19500", None)
    rec.feed(ANSWER, False)
    rec.status = 200
    rec.finish(False)
    ctx.response_status = 200
    ctx.latencies = {"request": 1, "proxy": 1, "kong": 0}
    p.log(ctx)


def main() -> None:
    p = plan()
    headers = {"content-type": "application/json", "host": "127.0.0.1"}
    n = 50_000
    for _ in range(n // 10):
        one(p, headers)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            one(p, headers)
        best = min(best, (time.perf_counter() - t0) / n)
    print(f"plugin layer per request (model-router + prometheus ai_metrics, JSON answer): {best * 1e6:.2f} us")


if __name__ == "__main__":
    main()
