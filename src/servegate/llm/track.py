"""`track(ctx)`: an LLM-aware plugin's access-phase call that makes the proxy record a request's token usage."""

from __future__ import annotations

import orjson

from servegate.llm.record import LLMRecord
from servegate.llm.request import operation_of, parse_request, with_usage
from servegate.plugins.base import Context


async def track(ctx: Context, plugin_id: str | None = None) -> LLMRecord | None:
    """Attach an `LLMRecord` to the request as `ctx.llm` (idempotent: the one already attached is returned).

    Reads the body once (`ctx.json_body()`); None, and nothing attached, when it is not a JSON object (a GET such
    as /v1/models). For a streaming request whose client did not ask for usage, asks the backend for it
    (`stream_options.include_usage`, the client's other fields kept) and marks the record `injected`: the
    proxy then removes that usage chunk before the client sees it. `plugin_id` goes to Kong's `meta.plugin_id`.
    """
    if ctx.llm is None and not ctx.body_ready():
        await ctx.body()
    return track_now(ctx, plugin_id)


def track_now(ctx: Context, plugin_id: str | None = None) -> LLMRecord | None:
    """`track(ctx)` for a hook that has the body at hand (`ctx.body_ready()`): no await."""
    rec: LLMRecord | None = ctx.llm
    if rec is not None:
        return rec
    body = ctx.json_body_now()
    if not isinstance(body, dict):
        return None
    info = parse_request(body)
    injected = info.stream and not info.usage_requested
    if injected:
        # Re-encoded only here: every other request goes upstream as the client sent it.
        ctx.set_body(orjson.dumps(with_usage(body)))
    rec = LLMRecord(operation_of(ctx.path), info.model, stream=info.stream, usage_requested=info.usage_requested,
                    injected=injected, continuous=info.continuous, request=body, plugin_id=plugin_id)
    ctx.llm = rec
    return rec
