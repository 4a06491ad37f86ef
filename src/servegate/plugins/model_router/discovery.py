"""The model catalogue of one worker: what each backend's `GET /v1/models` said last.

Nothing here runs on a request's path. The worker's `init_worker` activates the catalogue: every backend is
asked at once, then a one-second tick asks each one again when it is due (`refresh_interval` after its last
answer; at most 5 s after a failure, so a backend that was down at start is picked up soon after it comes up).
A compile that brings a new backend, or a new address for one, asks it at once; so does a 404 for a model the
backend listed, or a 502 or 504 from it (`Catalogue.kick`, at most once a second per backend).

A backend that cannot be asked (connection refused, timeout, a status other than 200, a body that is not an
OpenAI model list) keeps the last list it gave: its models stay routed, and the request finds out. Entries
live as long as a compiled configuration refers to them (weak references): a backend no configuration names
any more is no longer asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import weakref
from collections.abc import Callable
from typing import Any

import httptools
import orjson

from servegate.plugins.model_router.backends import Probe

log = logging.getLogger("servegate.plugins.model-router")

RETRY_S = 5.0  # a failing backend is asked again this soon, whatever its refresh_interval
KICK_MIN_S = 1.0  # a 404 asks a backend again at most this often
TICK_S = 1.0
MAX_BODY = 8 * 1024 * 1024
MAX_MODELS = 10_000


class DiscoveryError(Exception):
    """Why a backend's list could not be read (the message names the kind of failure, never a body).
    `unreachable`: no HTTP answer at all (refused, timed out, closed), as opposed to an answer without a list."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class _Response:
    """httptools callbacks collecting one response."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.done = False

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_BODY:
            raise DiscoveryError(f"model list over {MAX_BODY} bytes")
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.done = True


async def fetch(probe: Probe, timeout: float) -> list[dict[str, Any]]:
    """The model cards `probe` answers (dicts with a string `id`), or DiscoveryError."""
    ctx: ssl.SSLContext | None = None
    if probe.scheme == "https":
        ctx = ssl.create_default_context()
        if not probe.tls_verify:  # as the proxy: Kong verifies upstream certificates only with tls_verify
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    writer = None
    resp = _Response()
    parser = httptools.HttpResponseParser(resp)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                probe.host, probe.port, ssl=ctx, server_hostname=probe.host if ctx else None)
            writer.write((f"GET {probe.path} HTTP/1.1\r\nHost: {probe.host_header}\r\nAccept: application/json\r\n"
                          "User-Agent: servegate-model-router\r\nConnection: close\r\n\r\n").encode("latin-1"))
            while not resp.done:
                data = await reader.read(65536)
                if not data:
                    break  # a close-delimited body ends here
                parser.feed_data(data)
    except TimeoutError:
        raise DiscoveryError(f"no answer within {timeout:g} s", not resp.headers_done) from None
    except OSError as e:
        raise DiscoveryError(f"connection failed ({type(e).__name__})", not resp.headers_done) from None
    except httptools.HttpParserError as e:
        cause = e.__context__ if isinstance(e.__context__, DiscoveryError) else None
        raise cause or DiscoveryError("not an HTTP response") from None
    finally:
        if writer is not None:
            writer.close()
    if not resp.headers_done:
        raise DiscoveryError("connection closed before a response", True)
    status = parser.get_status_code()
    if status != 200:
        raise DiscoveryError(f"HTTP {status}")
    return cards(b"".join(resp.body))


def cards(raw: bytes) -> list[dict[str, Any]]:
    """The cards of an OpenAI model list body (`{"object": "list", "data": [{"id": ...}, ...]}`)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DiscoveryError("not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise DiscoveryError("not an OpenAI model list")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for card in data[:MAX_MODELS]:
        if isinstance(card, dict) and isinstance(card.get("id"), str) and card["id"] and card["id"] not in seen:
            seen.add(card["id"])
            out.append(card)
    return out


class Entry:
    """One backend's discovered state in this worker."""

    __slots__ = ("name", "probes", "interval", "timeout", "cards", "ids", "attempts", "failing", "down", "due",
                 "task", "kicked", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name
        self.probes: tuple[Probe, ...] = ()
        self.interval = 30.0
        self.timeout = 5.0
        # The last good list (None: never had one) and its ids.
        self.cards: tuple[dict[str, Any], ...] | None = None
        self.ids: frozenset[str] = frozenset()
        self.attempts = 0  # completed asks
        self.failing = False
        # The last ask got no HTTP answer from any target: the backend is left out of the backends sharing a model.
        self.down = False
        self.due = 0.0
        self.task: asyncio.Task[None] | None = None
        self.kicked = 0.0

    @property
    def first_pending(self) -> asyncio.Task[None] | None:
        """The first ask of this backend while it runs (a request for an unknown model may wait for it)."""
        task = self.task
        return task if self.attempts == 0 and task is not None and not task.done() else None

    async def refresh(self, on_change: Callable[[], None]) -> None:
        error: DiscoveryError | None = None
        found: list[dict[str, Any]] | None = None
        answered = False
        for probe in self.probes:
            try:
                found = await fetch(probe, self.timeout)
                break
            except DiscoveryError as e:
                error = e
                answered = answered or not e.unreachable
        self.attempts += 1
        self.down = found is None and not answered and bool(self.probes)
        now = time.monotonic()
        if found is None:
            self.due = now + min(self.interval, RETRY_S)
            if not self.failing:
                kept = f"keeping its last list ({len(self.ids)} models)" if self.cards is not None else "no list yet"
                log.warning("model-router: cannot read the models of backend %s (%s); %s", self.name,
                            error or "no target to ask", kept)
            self.failing = True
            return
        self.due = now + self.interval
        self.failing = False
        ids = frozenset(c["id"] for c in found)
        changed = self.cards is None or ids != self.ids
        self.cards, self.ids = tuple(found), ids
        if changed:
            log.info("model-router: backend %s serves %d model(s)", self.name, len(ids))
            on_change()


class Catalogue:
    """The entries of this worker by backend name, and the timer that keeps them fresh."""

    def __init__(self) -> None:
        self.entries: weakref.WeakValueDictionary[str, Entry] = weakref.WeakValueDictionary()
        self.active = False
        # Bumped whenever a list changes: compiled configurations rebuild their model map when it moved.
        self.version = 0
        self.timer: Any = None

    def entry(self, name: str, probes: tuple[Probe, ...], interval: float, timeout: float) -> Entry:
        """The entry of backend `name` (created, or updated with this compile's settings); asked at once when it is
        new or its addresses changed and the catalogue runs."""
        e = self.entries.get(name)
        if e is None:
            e = self.entries[name] = Entry(name)
        e.interval, e.timeout = float(interval), float(timeout)
        if e.probes != probes:
            e.probes = probes
            e.due = 0.0
            if self.active:
                self.kick(e)
        return e

    def _changed(self) -> None:
        self.version += 1

    def kick(self, e: Entry, *, debounce: bool = False) -> None:
        """Ask `e` now unless an ask runs; with `debounce`, not sooner than KICK_MIN_S after the last one started
        (the tick asks it then)."""
        if not self.active or (e.task is not None and not e.task.done()):
            return
        now = time.monotonic()
        if debounce and now - e.kicked < KICK_MIN_S:
            e.due = min(e.due, e.kicked + KICK_MIN_S)
            return
        e.kicked = now
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to ask with
            e.task = asyncio.get_running_loop().create_task(e.refresh(self._changed), name=f"models of {e.name}")

    def tick(self) -> None:
        now = time.monotonic()
        for e in list(self.entries.values()):
            if now >= e.due:
                self.kick(e)

    def start(self, worker: Any) -> None:
        self.active = True
        self.tick()
        self.timer = worker.every(TICK_S, self.tick, name="model-router discovery")

    async def stop(self) -> None:
        self.active = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        tasks = [e.task for e in list(self.entries.values()) if e.task is not None and not e.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


CATALOGUE = Catalogue()
