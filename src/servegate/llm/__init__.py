"""LLM helpers: OpenAI request parsing, the SSE tap, token usage (reported or estimated) and its record.

`track(ctx)` (a plugin's access phase; `track_now(ctx)` when the body is at hand) attaches an `LLMRecord` as `ctx.llm`; the proxy feeds it the response;
log hooks, the access log and `ctx.serialize()` read it. Nothing here imports the proxy.
"""

from servegate.llm.record import LLMRecord
from servegate.llm.request import estimate_prompt_tokens, operation_of, parse_request
from servegate.llm.track import track, track_now

__all__ = ["LLMRecord", "estimate_prompt_tokens", "operation_of", "parse_request", "track", "track_now"]
