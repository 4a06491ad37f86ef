"""A test-only plugin using every node hook; registered by run_node.py in the node under test, never bundled.

It records into files under $NODETEST_DIR (one line per event, appended: O_APPEND keeps lines whole across
processes): `init <worker> <pid>`, `shutdown <worker> <pid>`, `tick <worker> <pid> <time>` (every 0.1 s),
`once <worker> <pid>` (0.05 s after init), `nodewide <worker> <pid>` (every 0.1 s, worker 0 only).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from servegate.plugins import Plugin, register
from servegate.plugins.api import ApiEndpoint
from servegate.plugins.node import Worker, shared
from servegate.schema.fields import Field

_me: dict[str, Any] = {}


def record(line: str) -> None:
    with open(os.path.join(os.environ["NODETEST_DIR"], "events.log"), "a") as f:
        f.write(line + "\n")


async def hello(ctx: Any, parent: Any) -> Any:
    assert parent is None
    consumers = await ctx.store.all("consumers")
    return 200, {"hello": ctx.query_first("name") or "world", "consumers": len(consumers)}


async def guarded_key_create(ctx: Any, parent: Any) -> Any:
    """Wraps the generated POST /consumers/{consumers}/key-auth: refuses one key before, marks the answer after."""
    body = ctx.json_body or ctx.form_body or {}
    if body.get("key") == "refused-by-nodetest":
        return 400, {"message": "nodetest refuses this key"}
    resp = await parent()
    resp.headers["X-Nodetest-Wrapped"] = str(resp.status)
    return resp


async def counters(ctx: Any, parent: Any) -> Any:
    return 200, {
        "requests": shared.counter("nodetest_requests").value(),
        "init": shared.counter("nodetest_init").value(),
        "items": [list(item) for item in shared.items()],
    }


class NodeTest(Plugin):
    name = "nodetest"
    PRIORITY = 7
    VERSION = "0.1.0"
    config_schema = Field(type="record", required=True, fields=())
    admin_api = (
        ApiEndpoint("GET", "/nodetest/hello", hello),
        ApiEndpoint("POST", "/consumers/:consumers/key-auth", guarded_key_create),
    )
    status_api = (ApiEndpoint("GET", "/nodetest/counters", counters),)

    def init_worker(self, worker: Worker) -> None:
        if os.environ.get("NODETEST_FAIL_INIT"):
            raise RuntimeError("nodetest was told to fail")
        _me["worker"] = worker.id
        _me["requests"] = worker.counter("nodetest_requests")
        worker.counter("nodetest_init").add((worker.id + 1) * 10)
        record(f"init {worker.id} {os.getpid()}")
        worker.every(0.1, lambda: record(f"tick {worker.id} {os.getpid()} {time.time():.3f}"), name="nodetest tick")
        worker.after(0.05, lambda: record(f"once {worker.id} {os.getpid()}"))
        worker.every(0.1, lambda: record(f"nodewide {worker.id} {os.getpid()}"), node_wide=True)

    async def shutdown_worker(self, worker: Worker) -> None:
        await asyncio.sleep(0)
        record(f"shutdown {worker.id} {os.getpid()}")

    def access(self, ctx: Any, conf: Any) -> None:
        counter = _me["requests"]
        counter.add()
        ctx.exit(200, "nodetest", {"X-Nodetest-Worker": str(_me["worker"]),
                                   "X-Nodetest-Total": str(int(counter.value()))})


register(NodeTest)
