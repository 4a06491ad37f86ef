"""Token usage from OpenAI response JSON: the `usage` object of a response or of a stream's usage chunk, and a
completion estimate from a response's text when a backend reports none."""

from __future__ import annotations

from typing import Any, Final

import orjson

from servegate.llm.sse import object_at, string_at, value_at

_loads: Final = orjson.loads  # bound once: compiled, a module attribute is looked up on every use


class Usage:
    __slots__ = ("prompt", "completion", "total", "cached")

    def __init__(self, prompt: int, completion: int, total: int, cached: int | None) -> None:
        self.prompt = prompt
        self.completion = completion
        self.total = total
        self.cached = cached


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def usage_of(obj: Any) -> Usage | None:
    """The `usage` of a response object (chat, completion, embeddings, or a stream chunk), None when absent."""
    return usage_from(obj.get("usage") if isinstance(obj, dict) else None)


def usage_from(u: Any) -> Usage | None:
    """A parsed `usage` object, None when it reports nothing."""
    if not isinstance(u, dict):
        return None
    prompt = _int(u.get("prompt_tokens"))
    completion = _int(u.get("completion_tokens"))
    total = _int(u.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None  # an empty usage object (Ollama's completions stream): nothing reported
    prompt = prompt or 0
    completion = completion or 0  # embeddings report no completion tokens
    details = u.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(prompt, completion, total if total is not None else prompt + completion, cached)


def completion_chars(obj: Any) -> int:
    """Characters of generated text in a non-streaming response (message content, reasoning, legacy text)."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    n = 0
    if isinstance(choices, list):
        for c in choices:
            if not isinstance(c, dict):
                continue
            msg = c.get("message")
            if isinstance(msg, dict):
                for key in ("content", "reasoning_content", "reasoning"):
                    v = msg.get(key)
                    if isinstance(v, str):
                        n += len(v)
            text = c.get("text")
            if isinstance(text, str):
                n += len(text)
    return n


def model_of(obj: Any) -> str | None:
    m = obj.get("model") if isinstance(obj, dict) else None
    return m if isinstance(m, str) else None


def parse_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def usage_in_tail(tail: bytes) -> Usage | None:
    """The last `"usage": {...}` object in the tail of a JSON body too large to keep whole."""
    i = tail.rfind(b'"usage":')
    if i < 0:
        return None
    v = value_at(tail, b'"usage":', i, len(tail))
    if v < 0 or tail[v] != 123:
        return None
    end = object_at(tail, v, len(tail))
    return usage_of({"usage": parse_body(tail[v:end])}) if end > 0 else None


def last_usage(body: bytes) -> Usage | None:
    """The usage of a whole JSON response whose last member is `usage` (every engine's order): only that object is
    parsed. None when the body does not end so (the caller then parses it all)."""
    i = body.rfind(b'"usage":')
    if i < 0:
        return None
    end = len(body) - 1  # the body's own closing brace: between the two, the usage object only
    while end > i:
        c = body[end]
        if c != 32 and c != 10 and c != 13 and c != 9:  # JSON's white space
            break
        end -= 1
    if end <= i or body[end] != 125:  # }
        return None
    try:
        return usage_from(_loads(body[i + 8 : end]))
    except orjson.JSONDecodeError:
        return None


def model_in_head(head: bytes) -> str | None:
    """The response's `model` from the start of a JSON body: its first `"model"` key, the top-level one, which
    every engine writes before the choices. (The key's pattern cannot match inside a JSON string, where quotes
    are escaped.)"""
    i = head.find(b'"model":"')  # compact JSON, as every engine writes it: one search
    if i < 0:
        return string_at(head, b'"model":', 0, len(head))
    v = i + 9
    end = head.find(b'"', v)
    if end < 0:
        return None
    name = head[v:end].decode("utf-8", "replace")
    return None if "\\" in name else name  # (bytes' `in` costs a caught TypeError per call on 3.11)
