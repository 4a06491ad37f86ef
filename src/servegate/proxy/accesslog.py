"""Proxy access log: one line per request, buffered and flushed by the worker's periodic sweep.

Never logs headers; query values of credential-like arguments are replaced by "REDACTED".
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

# Query argument names whose values are never written (key-auth key_names default, plus common spellings).
REDACT_QUERY_ARGS = {"apikey", "api_key", "api-key", "key"}
_FLUSH_AT = 64 * 1024


def key_names_of(snapshot: object) -> frozenset[str]:
    """Query argument names configured as API key names (key-auth `key_names`) in a snapshot."""
    names = set(REDACT_QUERY_ARGS)
    rows = getattr(snapshot, "rows", None)
    for row in (rows.get("plugins") or ()) if rows is not None else ():
        conf = row.get("config") or {}
        for n in conf.get("key_names") or ():
            if isinstance(n, str):
                names.add(n.lower())
    return frozenset(names)


def redact_target(target: str, names: frozenset[str] | set[str] = frozenset(REDACT_QUERY_ARGS)) -> str:
    path, sep, query = target.partition("?")
    if not sep or not query:
        return target
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and name.lower() in names:
            parts[i] = name + "=REDACTED"
            changed = True
    return path + "?" + "&".join(parts) if changed else target


class AccessLog:
    def __init__(self, where: str) -> None:
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

    def write(self, client: str, method: str, target: str, status: int, nbytes: int, total_ms: int,
              upstream_ms: int | None, request_id: str, snapshot: object = None) -> None:
        if "?" in target:
            target = redact_target(target, self.names_for(snapshot))
        line = (
            f'{client} - - [{self._timestamp()}] "{method} {target} HTTP/1.1" {status} {nbytes} '
            f'{total_ms} {"-" if upstream_ms is None else upstream_ms} {request_id}\n'
        )
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
