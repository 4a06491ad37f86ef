"""OpenAI request parsing: the operation a path names, the fields a gateway acts on (model, stream,
stream_options), the usage injection, and the prompt-size estimate used when a backend reports no usage.

Works on the body as parsed once by `Context.json_body()` (a dict); nothing here reads the proxy.
"""

from __future__ import annotations

from typing import Any, Final

# Path tails (after the last `/v1`-style prefix) and the operation names OpenTelemetry's GenAI conventions and
# Kong use for them.
_OPERATIONS: Final = (("/chat/completions", "chat"), ("/completions", "text_completion"), ("/embeddings", "embeddings"))


_OPERATION_OF: Final[dict[str, str]] = {}


def operation_of(path: str) -> str:
    """"chat", "text_completion" or "embeddings" for the OpenAI endpoints, else the path's last segment."""
    op = _OPERATION_OF.get(path)
    if op is None:
        if len(_OPERATION_OF) >= 1024:  # paths come from clients: bounded
            _OPERATION_OF.clear()
        op = _OPERATION_OF[path] = _operation_of(path)
    return op


def _operation_of(path: str) -> str:
    path = path.rstrip("/")
    for tail, name in _OPERATIONS:
        if path.endswith(tail):
            return name
    return path.rsplit("/", 1)[-1]


class RequestInfo:
    """What the gateway reads from an OpenAI request body."""

    __slots__ = ("model", "stream", "usage_requested", "continuous")

    def __init__(self, model: str | None, stream: bool, usage_requested: bool, continuous: bool) -> None:
        self.model = model
        self.stream = stream
        # The client asked for the stream's usage chunk itself (it must then receive it).
        self.usage_requested = usage_requested
        # vLLM/SGLang's continuous_usage_stats: usage on every chunk (the tap then reads it on content events).
        self.continuous = continuous


def parse_request(body: dict[str, Any]) -> RequestInfo:
    model = body.get("model")
    stream = body.get("stream") is True
    opts = body.get("stream_options")
    requested = False
    continuous = False
    if stream and isinstance(opts, dict):
        # vLLM's StreamOptions defaults include_usage to true: an empty object means the client asked.
        requested = bool(opts.get("include_usage", True))
        continuous = opts.get("continuous_usage_stats") is True
    return RequestInfo(model if isinstance(model, str) else None, stream, requested, continuous)


def with_usage(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of `body` asking for the stream's usage chunk, the client's other stream_options kept. Only for a
    streaming request: vLLM and SGLang refuse stream_options when stream is false."""
    out = dict(body)
    opts = body.get("stream_options")
    out["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
    return out


def _text_chars(value: Any) -> tuple[int, int]:
    """(characters of text, token ids) in a prompt-like value: a string, a list of strings, a list of token ids,
    a list of token-id lists, or chat content parts ({"type": "text", "text": ...})."""
    if isinstance(value, str):
        return len(value), 0
    chars = ids = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, int):
                ids += 1  # a token id is one token, exactly
            elif isinstance(item, list):
                c, i = _text_chars(item)
                chars += c
                ids += i
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                chars += len(item["text"])
    return chars, ids


def estimate_prompt_tokens(body: dict[str, Any] | None) -> int:
    """Prompt tokens guessed without a tokenizer: characters / 4 (rounded up) of the prompt's text (chat messages'
    content, completions' prompt, embeddings' input), plus one per token id given as a number."""
    if not isinstance(body, dict):
        return 0
    chars = ids = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                c, i = _text_chars(m.get("content"))
                chars += c
                ids += i
    for key in ("prompt", "input"):
        c, i = _text_chars(body.get(key))
        chars += c
        ids += i
    return (chars + 3) // 4 + ids
