"""model-router: one OpenAI-style route for every model; the `model` of the request body picks the backend.

The model is looked up, in this order:

1. `config.models`: explicit entries, model -> backends;
2. `config.aliases`: alias -> model, then that model as in 1, 3 and 4 (the body's `model` is rewritten);
3. the lists the backends gave for `GET /v1/models` (discovery, see `discovery.py`);
4. `config.patterns`: the longest `prefix*` the model starts with (`*` alone matches any model).

A model served by several backends goes to the one with the fewest requests in flight in this worker (counted
from the access phase to the log phase), ties in turn; or in turn (`balancing = round-robin`). An unknown model
gets OpenAI's 404 `model_not_found`, a body without a usable `model` a 400 of the same shape. `GET /v1/models` on
the route answers the merged list. Requests never wait for discovery, except for the first ask of a backend
that is still running when a request names a model nobody knows yet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Final

import orjson

from servegate import KONG_VERSION
from servegate.llm import track_now
from servegate.plugins import body as body_codec
from servegate.plugins import register
from servegate.plugins.base import Context, Lookups, Plugin
from servegate.plugins.model_router import backends
from servegate.plugins.model_router.backends import Backend
from servegate.plugins.model_router.discovery import CATALOGUE, Entry
from servegate.plugins.model_router.schema import CONFIG

log = logging.getLogger("servegate.plugins.model-router")

SHARED_KEY: Final = "model-router"
ENDED: Final = "model-router ended"  # set by the log phase: an access phase still waiting must not count the request
# Requests in flight per backend name in this worker, from access to log (survives configuration changes).
OUTSTANDING: Final[dict[str, int]] = {}
_turn: Final = itertools.count()
_MODELS: Final = "/v1/models"
_BODILESS: Final = ("GET", "HEAD", "DELETE")


def openai_error(message: str, code: str | None, param: str | None = "model",
                 kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class RouterConf:
    """One instance's configuration, bound to the snapshot it was compiled with."""

    def __init__(self, config: Mapping[str, Any], lookups: Lookups, plugin_id: str | None = None) -> None:
        self.plugin_id = plugin_id
        self.backends: dict[str, Backend] = {}
        for name in config.get("backends") or ():
            b = backends.resolve(name, lookups)
            if b is not None:
                self.backends[name] = b
        self.order = tuple(self.backends)
        self.explicit: dict[str, tuple[str, ...]] = {
            model: self._known(names) for model, names in (config.get("models") or {}).items()}
        self.aliases: dict[str, str] = dict(config.get("aliases") or {})
        # Longest prefix first, so the first match is the one that decides.
        self.patterns = sorted(((p[:-1], self._known(names)) for p, names in (config.get("patterns") or {}).items()),
                               key=lambda item: -len(item[0]))
        disc = config.get("discovery") or {}
        self.discovery = disc.get("enabled", True) is not False
        self.timeout = float(disc.get("timeout") or 5)
        self.round_robin = config.get("balancing") == "round-robin"
        self.models_endpoint = config.get("models_endpoint", True) is not False
        self.entries: dict[str, Entry] = {}
        if self.discovery:
            interval = float(disc.get("refresh_interval") or 30)
            for name, b in self.backends.items():
                self.entries[name] = CATALOGUE.entry(name, b.probes, interval, self.timeout)
        self._version = -1
        self._discovered: dict[str, tuple[str, ...]] = {}
        # (backend, request path) -> upstream path
        self.paths: dict[tuple[str, str], str] = {}

    def _known(self, names: Any) -> tuple[str, ...]:
        return tuple(n for n in names or () if n in self.backends)

    # -- lookups ----------------------------------------------------------------------------------------
    def discovered(self) -> dict[str, tuple[str, ...]]:
        """model -> backends that list it (config order), rebuilt only when a list changed."""
        if self._version != CATALOGUE.version:
            version = CATALOGUE.version
            found: dict[str, list[str]] = {}
            for name, e in self.entries.items():
                for model in e.ids:
                    found.setdefault(model, []).append(name)
            self._discovered = {m: tuple(n) for m, n in found.items()}
            self._version = version
        return self._discovered

    def lookup(self, model: str) -> tuple[tuple[str, ...], bool]:
        """(backends, found by discovery) for a model that is not an alias; () when none serves it."""
        names = self.explicit.get(model)
        if names:
            return names, False
        names = self.discovered().get(model) if self.entries else None
        if names:
            return names, True
        for prefix, names in self.patterns:
            if model.startswith(prefix) and names:
                return names, False
        return (), False

    def resolve(self, model: str) -> tuple[str, tuple[str, ...], bool]:
        """(model to send, its backends, found by discovery)."""
        target = self.aliases.get(model)
        if target is not None:
            model = target
        names, discovered = self.lookup(model)
        return model, names, discovered

    def first_pending(self) -> bool:
        """A first ask of this instance's backends still runs (right after start or a configuration change)."""
        return any(e.first_pending is not None for e in self.entries.values())

    async def first_asks(self) -> bool:
        """Wait (up to the discovery timeout) for the first asks of this instance's backends that still run, as
        right after start or a configuration change; True when there were any."""
        pending = [t for e in self.entries.values() if (t := e.first_pending) is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.timeout)
        return bool(pending)

    def pick(self, names: tuple[str, ...]) -> str:
        if len(names) == 1:
            return names[0]
        # A backend whose last ask got no HTTP answer (down; asked again at once after a 502 or 504, see log) is
        # left out while another one serves the model.
        up = tuple(n for n in names if (e := self.entries.get(n)) is None or not e.down)
        names = up or names
        turn = next(_turn)
        if self.round_robin:
            return names[turn % len(names)]
        low = min(OUTSTANDING.get(n, 0) for n in names)
        best = [n for n in names if OUTSTANDING.get(n, 0) == low]
        return best[turn % len(best)]

    # -- GET /v1/models ---------------------------------------------------------------------------------
    def model_cards(self) -> list[dict[str, Any]]:
        """The merged list: explicit entries, then each backend's list in config order, then aliases; one card
        per id, `owned_by` the first backend (in that order) that serves it."""
        cards: dict[str, dict[str, Any]] = {}
        listed = {name: {c["id"]: c for c in e.cards or ()} for name, e in self.entries.items()}

        def add(model: str, owner: str, card: Mapping[str, Any] | None) -> None:
            if model not in cards:
                out = {"id": model, "object": "model", "created": 0}
                if card is not None:
                    out.update(card)
                    out["id"] = model
                    if not isinstance(out.get("created"), int):
                        out["created"] = 0
                out["owned_by"] = owner
                out["object"] = "model"
                cards[model] = out

        for model, names in self.explicit.items():
            if names:
                add(model, names[0], listed.get(names[0], {}).get(model))
        for name, entry_cards in listed.items():
            for model, card in entry_cards.items():
                add(model, name, card)
        for alias, model in self.aliases.items():
            names, _ = self.lookup(model)
            if names:
                add(alias, names[0], cards.get(model) or listed.get(names[0], {}).get(model))
        return list(cards.values())


def _model_of(ctx: Context) -> tuple[str, dict[str, Any] | None]:
    """The request's model and its parsed JSON body (None for a form body); a 400 when there is none. The body is
    at hand (ctx.body_ready())."""
    body = ctx.json_body_now()
    parsed: dict[str, Any] | None = body if isinstance(body, dict) else None
    if body is None and "form" in (ctx.header("content-type") or ""):
        # multipart/form-data (audio transcriptions) or urlencoded: routed, never rewritten
        body = body_codec.decode(ctx.header("content-type"), ctx.body_now())
    if not isinstance(body, dict):
        ctx.respond(400, openai_error("The request body must be a JSON object with a `model` field.",
                                      "missing_model"))
    model = body.get("model")
    if model is None:
        ctx.respond(400, openai_error("you must provide a model parameter", "missing_model"))
    if not isinstance(model, str) or not model:
        ctx.respond(400, openai_error("Invalid value for 'model': expected a non-empty string.", "missing_model"))
    return model, parsed


class ModelRouter(Plugin):
    name = "model-router"
    # After authentication (key-auth 1250) and rate limiting (910), as Kong's ai-proxy (770).
    PRIORITY = 770
    VERSION = KONG_VERSION
    config_schema = CONFIG
    protocols_default = ("http", "https")
    # compile() reads services, upstreams and targets: their changes recompile the instances.
    binds = ("services", "upstreams", "targets")
    reads_body = True

    def compile(self, row: Mapping[str, Any], lookups: Lookups) -> RouterConf:
        return RouterConf(row.get("config") or {}, lookups, row.get("id"))

    def access(self, ctx: Context, conf: RouterConf) -> Awaitable[None] | None:  # type: ignore[override]
        # Synchronous when the body is at hand (the proxy defers this phase until a small body is in: reads_body)
        # and the model is known; a coroutine only to wait for the body or a backend's first discovery.
        rel = backends.strip_route_prefix(ctx.route, ctx.path)
        if ctx.method == "GET" and rel.startswith(_MODELS):
            if not conf.models_endpoint:
                return None  # answered by the route's service, as without the plugin
            return _models_endpoint(ctx, conf, rel)
        if not ctx.body_ready():
            return _route_after_body(ctx, conf, rel)
        return _route(ctx, conf, rel)

    def log(self, ctx: Context, conf: RouterConf) -> None:  # type: ignore[override]
        if ctx.shared is None:
            ctx.shared = {}
        ctx.shared[ENDED] = True
        routed = ctx.shared.get(SHARED_KEY)
        if routed is None:
            return
        name, entry, discovered = routed
        OUTSTANDING[name] = max(0, OUTSTANDING.get(name, 0) - 1)
        status = ctx.response_status
        if entry is not None and ((status == 404 and discovered) or status in (502, 504)):
            # A 404 for a model the backend listed: its list may have changed. A 502 or 504: it may be down, and
            # then left out of the backends that share a model until it answers again. Ask it again at once.
            CATALOGUE.kick(entry, debounce=True)

    def init_worker(self, worker: Any) -> None:  # type: ignore[override]
        CATALOGUE.start(worker)

    async def shutdown_worker(self, worker: Any) -> None:  # type: ignore[override]
        await CATALOGUE.stop()


async def _route_after_body(ctx: Context, conf: RouterConf, rel: str) -> None:
    await ctx.body()
    pending = _route(ctx, conf, rel)
    if pending is not None:
        await pending


def _route(ctx: Context, conf: RouterConf, rel: str) -> Awaitable[None] | None:
    """Route by the body's model; a coroutine when a backend's first discovery must be awaited first."""
    if ctx.method in _BODILESS and not ctx.body_now():
        # No model to route by: what OpenAI answers for a path it does not serve.
        ctx.respond(404, openai_error(f"Invalid URL ({ctx.method} {ctx.path[:256]})", None, None))
    asked, body = _model_of(ctx)
    model, names, discovered = conf.resolve(asked)
    if not names and conf.first_pending():
        return _route_after_discovery(ctx, conf, rel, asked, body)
    _routed(ctx, conf, rel, asked, body, model, names, discovered)
    return None


async def _route_after_discovery(ctx: Context, conf: RouterConf, rel: str, asked: str,
                                 body: dict[str, Any] | None) -> None:
    await conf.first_asks()  # the answer of a backend's first ask may know the model
    if ctx.shared is not None and ENDED in ctx.shared:
        return  # the client left meanwhile: the log phase has run already
    model, names, discovered = conf.resolve(asked)
    _routed(ctx, conf, rel, asked, body, model, names, discovered)


def _routed(ctx: Context, conf: RouterConf, rel: str, asked: str, body: dict[str, Any] | None, model: str,
            names: tuple[str, ...], discovered: bool) -> None:
    if not names:
        ctx.respond(404, openai_error(f"The model `{asked[:256]}` does not exist.", "model_not_found"))
    if model != asked and body is not None:
        body["model"] = model  # the parsed body is shared: a later set_body (usage tracking) keeps this
        ctx.set_body(orjson.dumps(body))
    name = conf.pick(names)
    b = conf.backends[name]
    _send(ctx, conf, b, rel)
    OUTSTANDING[name] = OUTSTANDING.get(name, 0) + 1
    if ctx.shared is None:
        ctx.shared = {}
    ctx.shared[SHARED_KEY] = (name, conf.entries.get(name), discovered)
    # Token usage of every routed request (servegate.llm): the proxy feeds the record the response.
    record = track_now(ctx, conf.plugin_id)
    if record is not None:
        record.backend = name


async def _models_endpoint(ctx: Context, conf: RouterConf, rel: str) -> None:
    """GET /v1/models (the merged list) and GET /v1/models/{id} (one card); other paths are not ours."""
    await conf.first_asks()
    if rel == _MODELS or rel == _MODELS + "/":
        ctx.respond(200, {"object": "list", "data": conf.model_cards()})
    if rel.startswith(_MODELS + "/"):
        wanted = rel[len(_MODELS) + 1:]
        for card in conf.model_cards():
            if card["id"] == wanted:
                ctx.respond(200, card)
        ctx.respond(404, openai_error(f"The model `{wanted[:256]}` does not exist.", "model_not_found"))
    # GET /v1/models<something else>: routed by the body's model like any request
    await _route_after_body(ctx, conf, rel)


def _send(ctx: Context, conf: RouterConf, b: Backend, rel: str) -> None:
    """set_upstream or set_target, set_scheme, set_path, set_timeouts, set_retries: what Backend holds was
    checked when it was compiled, so its values are assigned as those calls would (no per-request checks)."""
    key = (b.name, rel)
    path = conf.paths.get(key)
    if path is None:
        if len(conf.paths) >= 1024:  # paths come from clients: bounded
            conf.paths.clear()
        path = conf.paths[key] = b.path_for(rel)
    if b.upstream is not None:
        err = ctx.set_upstream(b.upstream)
        if err is not None:  # deleted since this configuration was compiled
            ctx.respond(503, openai_error(f"backend {b.name} is not available: {err}", "backend_unavailable",
                                          None, "server_error"))
    else:
        ctx.upstream_target = b.target
    if b.scheme is not None:
        ctx.upstream_scheme = b.scheme
    ctx.upstream_path = path
    if b.timeouts is not None:
        ctx.upstream_timeouts = b.timeouts
    if b.retries is not None:
        ctx.upstream_retries = b.retries


register(ModelRouter)
