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


def redact_target(target: str) -> str:
    path, sep, query = target.partition("?")
    if not sep or not query:
        return target
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and name.lower() in REDACT_QUERY_ARGS:
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

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._sec:
            self._sec = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def write(self, client: str, method: str, target: str, status: int, nbytes: int, total_ms: int,
              upstream_ms: int | None, request_id: str) -> None:
        line = (
            f'{client} - - [{self._timestamp()}] "{method} {redact_target(target)} HTTP/1.1" {status} {nbytes} '
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
