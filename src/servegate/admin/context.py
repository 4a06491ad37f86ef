"""Per-request state handed to every Admin handler: store, settings, path params, query and body args."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from servegate.admin.cors import CorsPolicy
from servegate.admin.http import Request
from servegate.admin.responses import Reply, bad_request, empty_reply
from servegate.schema.coerce import TooManyArguments, coerce, decode_form
from servegate.schema.fields import Entity
from servegate.store.outage import StoreUnavailable

log = logging.getLogger("servegate.admin")

MAX_ARGS = 1000
# This node's id (Kong's node_id), one per process: the Admin API and the status listener report the same one
# (`/`, `/upstreams/{u}/health`, the prometheus plugin's kong_node_info).
NODE_ID = str(uuid.uuid4())
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass
class AppState:
    store: Any
    settings: Any
    on_change: Callable[[], Awaitable[None]]
    node_id: str
    counters: dict[str, int] = field(default_factory=dict)
    cors: CorsPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.cors = CorsPolicy.from_settings(self.settings)


@dataclass
class Ctx:
    request: Request
    state: AppState
    params: dict[str, str]
    raw_params: dict[str, str]
    query_pairs: list[tuple[str, str]] = field(default_factory=list)
    body_kind: str = "empty"  # empty | json | form
    json_body: dict[str, Any] | None = None
    form_body: dict[str, Any] | None = None
    # inside transaction(): None outside; else whether a write asked for a refresh
    _batch: bool | None = None

    @property
    def store(self) -> Any:
        return self.state.store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Writes inside (crud.insert/update/...) share one store transaction; the snapshot is refreshed once,
        after it commits (never when it rolls back)."""
        if self._batch is not None:  # nested: the outer one commits and refreshes
            yield
            return
        self._batch = False
        try:
            async with self.store.transaction():
                yield
            refresh = self._batch
        finally:
            self._batch = None
        if refresh:
            await self.changed()

    async def changed(self) -> None:
        if self._batch is not None:
            self._batch = True
            return
        # The write is committed whatever happens here; the workers' version poll will still pick it
        # up, so a failing refresh is logged rather than turned into an error the client would retry.
        try:
            await self.state.on_change()
        except StoreUnavailable as e:  # the database went away just after the commit: one line, no traceback
            log.warning("admin: snapshot refresh after a committed write failed: %s", e.message)
        except Exception:
            log.exception("admin: on_change failed after a committed write")

    # ---- query string

    def query_has(self, name: str) -> bool:
        return any(k == name for k, _ in self.query_pairs)

    def query_first(self, name: str) -> str | None:
        for k, v in self.query_pairs:
            if k == name:
                return v
        return None

    # ---- body

    def body_args(self, entity: Entity, *, plugin_name: str | None = None) -> dict[str, Any]:
        """The request body as entity input: JSON as sent, form fields coerced per schema."""
        if self.body_kind == "json":
            return copy.deepcopy(self.json_body or {})
        if self.body_kind == "form":
            data = copy.deepcopy(self.form_body or {})
            return dict(coerce(entity, data, plugin_name=plugin_name))
        return {}

    def body_plugin_name(self) -> str | None:
        body = self.json_body if self.body_kind == "json" else self.form_body
        name = (body or {}).get("name")
        return name if isinstance(name, str) else None


def parse_query(request: Request) -> list[tuple[str, str]]:
    raw = request.query_string
    if not raw:
        return []
    pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")
    if len(pairs) > MAX_ARGS:
        raise bad_request("Too many arguments")
    return pairs


async def read_body(ctx: Ctx) -> None:
    """Kong's Content-Type gate and body decoding for POST/PUT/PATCH (GET/DELETE bodies are ignored)."""
    request = ctx.request
    ctype = request.headers.get("Content-Type")
    if ctype is None:
        if request.body:
            raise Reply(empty_reply(415))
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media.startswith("application/json"):
        try:
            value = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise bad_request("Cannot parse JSON body") from None
        if not isinstance(value, dict):
            raise bad_request("Cannot parse JSON body")
        ctx.body_kind, ctx.json_body = "json", value
        return
    if media not in _FORM_TYPES:
        raise Reply(empty_reply(415))
    if media == "application/x-www-form-urlencoded":
        text = request.body.decode("utf-8", "replace")
        pairs = parse_qsl(text, keep_blank_values=True) if text else []
        ctx.body_kind, ctx.form_body = "form", _decode_pairs(pairs, {})
        return
    pairs, typed = _read_multipart(request.body, ctype)
    ctx.body_kind, ctx.form_body = "form", _decode_pairs(pairs, typed)


def _decode_pairs(pairs: list[tuple[str, str]], typed: dict[str, Any]) -> dict[str, Any]:
    if len(pairs) + len(typed) > MAX_ARGS:
        raise bad_request("Too many arguments")
    try:
        data = dict(decode_form(pairs, allow_map_keys=True))
    except TooManyArguments:
        raise bad_request("Too many arguments") from None
    # multipart parts sent as application/json keep their JSON value
    data.update(typed)
    return data


def _read_multipart(body: bytes, ctype: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    pairs: list[tuple[str, str]] = []
    typed: dict[str, Any] = {}
    if not body:  # no body at all: no arguments, as for an empty form
        return pairs, typed
    from servegate import multipart  # only on multipart writes, never on the idle path

    try:
        parts = multipart.parse(body, ctype)
    except multipart.MultipartError:
        raise bad_request("Cannot parse multipart body") from None
    for part in parts:
        # Nested multipart parts are not form fields (a file list, by RFC 2388); unnamed ones name nothing.
        if not part.name or part.content_type.startswith("multipart/"):
            continue
        if part.content_type == "application/json":
            try:
                typed[part.name] = orjson.loads(part.data)
            except orjson.JSONDecodeError:
                raise bad_request("Cannot parse JSON body") from None
        else:
            try:
                text = part.data.decode(part.charset or "utf-8", "replace")
            except LookupError:  # unknown charset label
                text = part.data.decode("utf-8", "replace")
            pairs.append((part.name, text))
        if len(pairs) + len(typed) > MAX_ARGS:
            raise bad_request("Too many arguments")
    return pairs, typed
