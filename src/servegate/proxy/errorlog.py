"""The proxy's error log: upstream failures and unexpected exceptions, one line each, without secrets.

Lines go to the `servegate.proxy` logger (set up with the rest of servegate's logging by `log_level`). They
name the upstream target (host:port), the route and service (name, else id), the client and the request id,
never the request target, headers or body: those may carry an API key. Exceptions are written as their type
and where they were raised (file:line), never their text, which may quote request bytes.

Only error paths call this module: a request that succeeds never does.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

log = logging.getLogger("servegate.proxy")


def exc_brief(exc: BaseException) -> str:
    """`TypeError at key_auth.py:120 in _run`: what was raised and where, without the exception's text."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {os.path.basename(last.filename)}:{last.lineno} in {last.name}"


def exc_frames(exc: BaseException) -> str:
    """The traceback's frames (file, line, function, source line) without the exception's text: for debug."""
    return "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__))).rstrip()


def log_exception(what: str, exc: BaseException) -> None:
    """An unexpected exception: its type and place at `error`, its frames at `debug`."""
    log.error("%s: %s", what, exc_brief(exc))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: traceback (text omitted):\n%s", what, exc_frames(exc))


def _name(row: Any) -> str:
    if not row:
        return "-"
    return str(row.get("name") or row.get("id") or "-")


def os_error(exc: BaseException | None) -> str:
    """` (111: Connection refused)` for an OSError with an errno, like nginx; the type name otherwise."""
    if exc is None:
        return ""
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and errno:
        return f" ({errno}: {os.strerror(errno)})"
    return f" ({type(exc).__name__})"


def upstream(ex: Any, level: int, what: str, during: str, exc: BaseException | None = None, note: str = "") -> None:
    """One upstream failure of exchange `ex`, in nginx's words: `what` failed (`exc`: the OS error) `during`
    ("while connecting to upstream"...); `note` adds what happens next (a retry)."""
    if not log.isEnabledFor(level):
        return
    key = getattr(ex, "key", None)
    target = f"{key[0]}:{key[1]}" if key else "-"
    match = ex.match
    route = _name(match.route) if match is not None else "-"
    log.log(level, "%s%s %s%s, upstream: %s, route: %s, service: %s, client: %s, request_id: %s",
            what, os_error(exc), during, note, target, route, _name(ex.service), ex.client_ip.decode("latin-1"),
            ex.rid)


def loop_exception(loop: Any, context: dict[str, Any]) -> None:
    """Event-loop exception handler: asyncio's default one writes the exception's text (and the reprs of the
    objects involved), which may quote request bytes; this one writes the message and the exception's type."""
    exc = context.get("exception")
    message = context.get("message") or "unhandled exception in event loop"
    if isinstance(exc, BaseException):
        log_exception(message, exc)
    else:
        log.error("%s", message)
