"""Proxy access log: one line per request, buffered and flushed by the worker's periodic sweep.

Never logs headers; query values of credential-like arguments are replaced by "REDACTED". A query name is
compared the way key-auth reads it (percent-decoded, `+` as space) and also in its array forms (`apikey[]`,
`apikey[0]`), case-insensitively: whatever spelling key-auth would accept is never written.

Formats (`proxy_access_log_format`): `text` (the default, one space-separated line) and `json` (one object per
line). The writer is chosen once, when the log is opened: the default format does no extra work per request.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import unquote_plus

# Query argument names whose values are never written (common API key spellings; plugins add theirs).
REDACT_QUERY_ARGS = {"apikey", "api_key", "api-key", "key"}
_FLUSH_AT = 64 * 1024

# client, method, target, status, bytes sent, total ms, upstream ms (None: no upstream response), request id,
# snapshot (for the key names to redact), the request's LLM record (servegate.llm.LLMRecord, or None)
Writer = Callable[[str, str, str, int, int, int, "int | None", str, object, Any], None]
# Characters a model name (client-chosen) must not bring into a text line: controls, space, quote, DEL.
_UNSAFE = {c: "_" for c in [*range(33), 34, 127]}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def llm_fields(rec: Any) -> dict[str, Any]:
    """The access log's view of an LLM record: model, token counts, timings (never the prompt or a key)."""
    out: dict[str, Any] = {
        "model": rec.response_model or rec.request_model,
        "request_model": rec.request_model,
        "operation": rec.operation,
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "total_tokens": rec.total_tokens,
    }
    if rec.cached_tokens is not None:
        out["cached_tokens"] = rec.cached_tokens
    ttft = _ms(rec.ttft())
    if ttft is not None:
        out["ttft_ms"] = ttft
        tpot = rec.tpot()
        if tpot is not None:
            out["tpot_ms"] = round(tpot * 1000, 2)
    out["backend"] = rec.backend
    out["target"] = rec.target
    if rec.estimated:
        out["estimated"] = True
    if rec.aborted:
        out["aborted"] = True
    if rec.error is not None:
        out["error"] = rec.error
    return out


def llm_text(rec: Any) -> str:
    """` key=value` pairs for the text line (a model name cut to 128 characters, unsafe ones replaced)."""
    parts = []
    for k, v in llm_fields(rec).items():
        if v is None or k in ("request_model", "operation", "backend", "total_tokens"):
            continue
        if v is True:
            v = 1
        elif isinstance(v, str):
            v = v[:128].translate(_UNSAFE)
        parts.append(f" {k}={v}")
    return "".join(parts)


def key_names_of(snapshot: object) -> frozenset[str]:
    """Query argument names to redact in a snapshot: the common spellings plus what each plugin row's
    config names (`Plugin.redact_query_args`: key-auth's `key_names`)."""
    from servegate.plugins import get_handler

    names = set(REDACT_QUERY_ARGS)
    rows = getattr(snapshot, "rows", None)  # Snapshot.rows(entity)
    for row in rows("plugins") if callable(rows) else ():
        name = row.get("name")
        handler = get_handler(name) if isinstance(name, str) else None
        if handler is not None:
            names.update(n.lower() for n in handler.redact_query_args(row.get("config") or {}))
    return frozenset(names)


def arg_name(raw: str) -> str:
    """The name a query argument stands for, as compared with key names: percent-decoded (`+` as space, like
    key-auth's query parser), trimmed, lower-cased, without array brackets (`apikey[]`, `apikey[0][x]`)."""
    if "%" in raw or "+" in raw:
        raw = unquote_plus(raw)
    bracket = raw.find("[")
    if bracket >= 0:
        raw = raw[:bracket]
    return raw.strip().lower()


def redact_target(target: str, names: frozenset[str] | set[str] = frozenset(REDACT_QUERY_ARGS)) -> str:
    path, sep, query = target.partition("?")
    if not sep or not query:
        return target
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if not eq:
            continue
        # Only an encoded or bracketed name needs decoding; a plain one is compared as before.
        if (arg_name(name) if "%" in name or "+" in name or "[" in name else name.lower()) in names:
            parts[i] = name + "=REDACTED"
            changed = True
    return path + "?" + "&".join(parts) if changed else target


class AccessLog:
    def __init__(self, where: str, fmt: str = "text") -> None:
        self.enabled = where != "off"
        self._stream: IO[bytes] | None = None
        self._fd: int | None = None
        if not self.enabled:
            pass
        elif where in ("stdout", ""):
            self._stream = sys.stdout.buffer
        elif where == "stderr":
            self._stream = sys.stderr.buffer
        else:
            self._fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._buf: list[str] = []
        self._size = 0
        self._sec = 0
        self._stamp = ""
        self._names_for: object = None
        self._names: frozenset[str] = frozenset(REDACT_QUERY_ARGS)
        # The relay calls `write(...)`; bound once here so that the format costs no test per request.
        self.write: Writer = self.write_json if fmt == "json" else self.write_text

    def names_for(self, snapshot: object) -> frozenset[str]:
        """Names to redact for this snapshot (recomputed only when the snapshot object changes)."""
        if snapshot is not self._names_for:
            self._names_for = snapshot
            self._names = key_names_of(snapshot)
        return self._names

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._sec:
            self._sec = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def write_text(self, client: str, method: str, target: str, status: int, nbytes: int, total_ms: int,
                   upstream_ms: int | None, request_id: str, snapshot: object = None, llm: Any = None) -> None:
        if "?" in target:
            target = redact_target(target, self.names_for(snapshot))
        line = (
            f'{client} - - [{self._timestamp()}] "{method} {target} HTTP/1.1" {status} {nbytes} '
            f'{total_ms} {"-" if upstream_ms is None else upstream_ms} {request_id}'
            f'{"" if llm is None else llm_text(llm)}\n'
        )
        self._buf.append(line)
        self._size += len(line)
        if self._size >= _FLUSH_AT:
            self.flush()

    def write_json(self, client: str, method: str, target: str, status: int, nbytes: int, total_ms: int,
                   upstream_ms: int | None, request_id: str, snapshot: object = None, llm: Any = None) -> None:
        if "?" in target:
            target = redact_target(target, self.names_for(snapshot))
        now_ms = int(time.time() * 1000)
        entry = {
            "started_at": now_ms - total_ms,
            "client_ip": client,
            "request": {"id": request_id, "method": method, "uri": target},
            "response": {"status": status, "size": nbytes},
            "latencies": {"request": total_ms, "proxy": upstream_ms},
        }
        if llm is not None:
            entry["ai"] = llm_fields(llm)
        # ensure_ascii: a target decoded as latin-1 may hold any byte; the line stays plain ASCII.
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        self._buf.append(line)
        self._size += len(line)
        if self._size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = "".join(self._buf).encode("utf-8", "replace")
        self._buf.clear()
        self._size = 0
        try:
            if self._fd is not None:
                os.write(self._fd, data)
            elif self._stream is not None:
                self._stream.write(data)
                self._stream.flush()
        except OSError:
            pass

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
