"""Test plugin `test-llm` (loaded by tests/proxy/run_proxy.py through "imports"): calls servegate.llm.track(ctx)
in its access phase (X-LLM-Backend: a name it sets as the record's backend, and "vllm" as provider) and, in its
log phase, appends one JSON line to its config's `log_file` with the record's fields and `ctx.serialize()`.
X-Track: 0 on a request skips track()."""

from __future__ import annotations

import json
from typing import Any

from servegate.llm import LLMRecord, track
from servegate.plugins import register
from servegate.plugins.base import Context, Plugin
from servegate.schema.fields import Field

FIELDS = ("operation", "request_model", "response_model", "stream", "usage_requested", "injected",
          "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "estimated", "events",
          "backend", "target", "status", "aborted", "done")


def record_fields(rec: LLMRecord) -> dict[str, Any]:
    out = {k: getattr(rec, k) for k in FIELDS}
    out.update(ttft=rec.ttft(), tpot=rec.tpot(), duration=rec.duration(), kong=rec.as_kong_ai())
    return out


class TrackLLM(Plugin):
    name = "test-llm"
    PRIORITY = 750
    VERSION = "0.0.0"
    config_schema = Field(type="record", fields=(("log_file", Field(type="string")),))

    async def access(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        if ctx.header("x-track") == "0":
            return
        first = await track(ctx, plugin_id="p-1")
        again = await track(ctx)
        assert first is again
        if first is not None and ctx.header("x-llm-backend"):
            first.backend = ctx.header("x-llm-backend")  # a router naming the backend it chose
            first.provider = "vllm"

    def log(self, ctx: Context, conf: Any) -> None:  # type: ignore[override]
        rec = ctx.llm
        line = {"llm": record_fields(rec) if rec is not None else None, "serialized": ctx.serialize()}
        with open(conf["log_file"], "a") as f:
            f.write(json.dumps(line) + "\n")


register(TrackLLM)
