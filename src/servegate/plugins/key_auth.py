"""key-auth: authenticate a consumer by an API key from a header, query arg or body field (§6.1)."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from servegate import KONG_VERSION
from servegate.plugins import body as body_codec
from servegate.plugins import register
from servegate.plugins.base import Context, Exit, HeaderPreset, Lookups, Plugin
from servegate.schema import checks
from servegate.schema.entities import tags_field, timestamp_field, unique_string_field, uuid_field
from servegate.schema.fields import Entity, Field
from servegate.snapshot.cache import MISS, LookupCache, RowSource, Tag
from servegate.store.migrations import Migration, sql

ERR_NO_KEY = "No API key found in request"
ERR_DUPLICATE = "Duplicate API key found"
ERR_INVALID = "Unauthorized"

H_CONSUMER_ID = "X-Consumer-ID"
H_CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID"
H_CONSUMER_USERNAME = "X-Consumer-Username"
H_CREDENTIAL = "X-Credential-Identifier"
H_ANONYMOUS = "X-Anonymous-Consumer"

CONFIG = Field(
    type="record",
    required=True,
    fields=(
        ("key_names", Field(type="array", required=True, default=["apikey"],
                            elements=Field(type="string", checks=(checks.header_name,)))),
        ("hide_credentials", Field(type="boolean", required=True, default=False)),
        ("anonymous", Field(type="string")),
        ("key_in_header", Field(type="boolean", required=True, default=True)),
        ("key_in_query", Field(type="boolean", required=True, default=True)),
        ("key_in_body", Field(type="boolean", required=True, default=False)),
        ("run_on_preflight", Field(type="boolean", required=True, default=True)),
        ("realm", Field(type="string")),
    ),
)


# ---------------------------------------------------------------------------------------------
# Kong's daos.lua: the credentials entity. Its Admin endpoints (/key-auths, /consumers/{c}/key-auth) are
# generated from admin_name / nested_name like every entity's.

KEYAUTH_CREDENTIALS = Entity(
    name="keyauth_credentials",
    endpoint_key="key",
    cache_key=("key",),
    admin_name="key-auths",
    nested_name="key-auth",
    ttl=True,
    cached=True,
    has_updated_at=False,
    fields=(
        ("id", uuid_field()),
        ("created_at", timestamp_field()),
        ("consumer", Field("foreign", reference="consumers", required=True, on_delete="cascade")),
        # auto: a random key (Kong's random_string) when none is given
        ("key", unique_string_field(auto=True, control_chars=False)),
        ("tags", tags_field()),
    ),
)

# Kong's migrations/: the table as core's 000_base already made it before key-auth owned it, hence
# implied_by (a database that ran core 000_base has it) and IF NOT EXISTS (a fresh bootstrap runs both).
_TABLE_000 = """CREATE TABLE IF NOT EXISTS "keyauth_credentials" (
  "id" {ID} NOT NULL,
  "created_at" {INT},
  "consumer_id" TEXT,
  "key" TEXT,
  "tags" TEXT,
  "cache_key" TEXT,
  "ttl" {REAL},
  CONSTRAINT "keyauth_credentials_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "keyauth_credentials_key_key" UNIQUE ("key"),
  CONSTRAINT "keyauth_credentials_cache_key_key" UNIQUE ("cache_key"),
  CONSTRAINT "keyauth_credentials_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE
)"""
_INDEXES_000 = [
    'CREATE INDEX IF NOT EXISTS "keyauth_credentials_consumer_id_idx" ON "keyauth_credentials" ("consumer_id")',
    'CREATE INDEX IF NOT EXISTS "keyauth_credentials_ttl_idx" ON "keyauth_credentials" ("ttl")',
]

MIGRATIONS = (
    Migration(
        "000_base_key_auth",
        up=sql(
            sqlite=[_TABLE_000.format(ID="TEXT", INT="INTEGER", REAL="REAL"), *_INDEXES_000],
            postgres=[_TABLE_000.format(ID='TEXT COLLATE "C"', INT="BIGINT", REAL="DOUBLE PRECISION"), *_INDEXES_000],
        ),
        implied_by="000_base",
    ),
)


# What a key resolves to, cached per worker: (stored key as bytes, consumer, credential, consumer headers,
# absolute expiry or None); None when it resolves to no consumer (negative entry).
_Known = tuple[bytes, Mapping[str, Any], Mapping[str, Any], HeaderPreset, float | None]
CREDENTIALS = KEYAUTH_CREDENTIALS.name
CONSUMERS = "consumers"
log = logging.getLogger("servegate.plugins.key-auth")


class _Fail(Exception):  # noqa: N818 - internal signal: authentication failed with a 401 message
    def __init__(self, message: str) -> None:
        self.message = message


class KeyAuthConf:
    __slots__ = ("names", "hide", "anonymous", "in_header", "in_query", "in_body",
                 "run_on_preflight", "www_auth", "cache", "source")

    def __init__(self, config: Mapping[str, Any], lookups: Lookups) -> None:
        # (name as configured, header to look up, fallback header with '_' as '-')
        self.names = tuple(
            (n, n.lower(), n.lower().replace("_", "-") if "_" in n else None)
            for n in config.get("key_names") or ("apikey",)
        )
        self.hide = bool(config.get("hide_credentials"))
        self.anonymous: str | None = config.get("anonymous") or None
        self.in_header = config.get("key_in_header", True) is not False
        self.in_query = config.get("key_in_query", True) is not False
        self.in_body = bool(config.get("key_in_body"))
        self.run_on_preflight = config.get("run_on_preflight", True) is not False
        realm = config.get("realm")
        self.www_auth = f'Key realm="{realm}"' if realm is not None else "Key"
        # The worker's key cache (keys -> _Known), shared by every key-auth instance and snapshot: a bounded
        # LRU with negative entries, filled from the store on a miss, invalidated by change events.
        self.cache: LookupCache = lookups.caches.named("key-auth")
        self.source: RowSource = lookups.caches.source


class KeyAuth(Plugin):
    name = "key-auth"
    PRIORITY = 1250
    VERSION = KONG_VERSION
    config_schema = CONFIG
    no_consumer = True
    protocols_default = ("grpc", "grpcs", "http", "https")
    daos = (KEYAUTH_CREDENTIALS,)
    migrations = MIGRATIONS

    def compile(self, row: Mapping[str, Any], lookups: Lookups) -> KeyAuthConf:
        return KeyAuthConf(row.get("config") or {}, lookups)

    def redact_query_args(self, config: Mapping[str, Any]) -> Iterable[str]:
        return [n for n in config.get("key_names") or () if isinstance(n, str)]

    def access(self, ctx: Context, conf: KeyAuthConf) -> Awaitable[None] | None:  # type: ignore[override]
        if not conf.run_on_preflight and ctx.method == "OPTIONS":
            return None
        # Logical OR with another auth plugin that already authenticated the request.
        if conf.anonymous is not None and ctx.credential is not None:
            return None
        if conf.in_body:
            return self._access_with_body(ctx, conf)
        return self._run(ctx, conf, None, None)

    async def _access_with_body(self, ctx: Context, conf: KeyAuthConf) -> None:
        content_type = ctx.header("content-type")
        raw = await ctx.body()
        pending = self._run(ctx, conf, body_codec.decode(content_type, raw), (content_type, raw))
        if pending is not None:
            await pending

    def _run(self, ctx: Context, conf: KeyAuthConf, body: dict[str, Any] | None,
             raw_body: tuple[str | None, bytes] | None) -> Awaitable[None] | None:
        """Synchronous on a cache hit (the common case); an awaitable only when the key must be read."""
        try:
            key = _find_key(ctx, conf, body, raw_body)
            entry = conf.cache.get(key)
            if entry is MISS:
                return self._run_missed(ctx, conf, key)
            _accept(ctx, key, entry)
        except _Fail as fail:
            return _fail(ctx, conf, fail)
        return None

    async def _run_missed(self, ctx: Context, conf: KeyAuthConf, key: str) -> None:
        try:
            entry = await _lookup(conf, key, lambda: _resolve(conf.source, key))
            _accept(ctx, key, entry)
        except _Fail as fail:
            pending = _fail(ctx, conf, fail)
            if pending is not None:
                await pending


def _find_key(ctx: Context, conf: KeyAuthConf, body: dict[str, Any] | None,
              raw_body: tuple[str | None, bytes] | None) -> str:
    headers = ctx.headers
    for name, hname, alt in conf.names:
        v: Any = None
        found_header = None
        if conf.in_header:
            v = headers.get(hname)
            found_header = hname
            if v is None and alt is not None:
                v = headers.get(alt)
                found_header = alt
        if v is None and conf.in_query:
            v = ctx.query().get(name)
        if v is None and body is not None:
            v = body.get(name)
        if isinstance(v, str):
            if conf.hide:
                _hide(ctx, name, found_header if conf.in_header else None, raw_body)
            if not v:
                break
            return v
        if isinstance(v, (list, dict)):
            raise _Fail(ERR_DUPLICATE)
    raise _Fail(ERR_NO_KEY)


def _accept(ctx: Context, key: str, entry: _Known | None) -> None:
    if entry is None:
        raise _Fail(ERR_INVALID)
    key_bytes, consumer, cred, preset, expires = entry
    # The cache is a dict keyed by the presented key: Python's str hash is SipHash keyed with a per-process
    # secret, so how long a probe takes does not depend on how much of a guessed key matches a stored one,
    # and string equality only runs on a full 64-bit keyed-hash match. compare_digest makes the final
    # comparison constant-time as well.
    if not hmac.compare_digest(key_bytes, key.encode()):
        raise _Fail(ERR_INVALID)
    if expires is not None and time.time() >= expires:
        raise _Fail(ERR_INVALID)
    _set_consumer(ctx, consumer, cred, preset)


def _fail(ctx: Context, conf: KeyAuthConf, fail: _Fail) -> Awaitable[None] | None:
    """401, or the anonymous consumer when one is configured."""
    if conf.anonymous is None:
        ctx.exit(401, fail.message, {"WWW-Authenticate": conf.www_auth})
    ref = conf.anonymous
    anon = conf.cache.get(("consumer", ref))
    if anon is MISS:
        return _anonymous_missed(ctx, conf, ref)
    _set_anonymous(ctx, anon)
    return None


async def _anonymous_missed(ctx: Context, conf: KeyAuthConf, ref: str) -> None:
    _set_anonymous(ctx, await _lookup(conf, ("consumer", ref), lambda: _consumer(conf.source, ref)))


def _set_anonymous(ctx: Context, anon: Mapping[str, Any] | None) -> None:
    if anon is None:  # Kong: the configured anonymous consumer does not exist
        ctx.exit(500)
    _set_consumer(ctx, anon, None, _preset(anon, None))


async def _lookup(conf: KeyAuthConf, key: Any, compute: Callable[[], Awaitable[tuple[Any, list[Tag]]]]) -> Any:
    """The cache's value for a missed key; a store that cannot answer fails this request alone (500)."""
    try:
        return await conf.cache.load(key, compute)
    except Exception as e:  # the database is down or refused the read: never cached, never the key in the log
        log.warning("key-auth: lookup failed (%s); answering 500", type(e).__name__)
        raise Exit(500, None, None) from None


async def _resolve(source: RowSource, key: str) -> tuple[_Known | None, list[Tag]]:
    """Read what `key` resolves to; the tags name every row it was built from (and the key itself, so that
    creating it drops a negative entry)."""
    tags: list[Tag] = [(CREDENTIALS, "key", key)]
    cred = await source.find(CREDENTIALS, "key", key)
    if cred is None:
        return None, tags
    tags.append((CREDENTIALS, "id", cred["id"]))
    ref = cred.get("consumer")
    consumer_id = ref.get("id") if isinstance(ref, Mapping) else ref
    if not isinstance(consumer_id, str):
        return None, tags
    tags.append((CONSUMERS, "id", consumer_id))
    consumer = await source.find(CONSUMERS, "id", consumer_id)
    ttl = cred.get("ttl")
    if consumer is None or ttl == 0:
        return None, tags
    expires = time.time() + float(ttl) if ttl is not None else None
    return (str(cred.get("key", "")).encode(), consumer, cred, _preset(consumer, cred), expires), tags


async def _consumer(source: RowSource, ref: str) -> tuple[Mapping[str, Any] | None, list[Tag]]:
    """The consumer `ref` names, by id or else by username (Kong's anonymous)."""
    tags: list[Tag] = [(CONSUMERS, "id", ref), (CONSUMERS, "username", ref)]
    consumer = await source.find(CONSUMERS, "id", ref) or await source.find(CONSUMERS, "username", ref)
    if consumer is not None:
        tags.append((CONSUMERS, "id", consumer["id"]))
    return consumer, tags


def _hide(ctx: Context, name: str, header: str | None, raw_body: tuple[str | None, bytes] | None) -> None:
    """hide_credentials: strip the key from header, query (order kept) and body."""
    ctx.clear_upstream_header(header or name)
    query = ctx.query()
    if name in query:
        rest = dict(query)
        del rest[name]
        ctx.set_query(rest)
    if raw_body is not None:
        stripped = body_codec.remove_field(raw_body[0], raw_body[1], name)
        if stripped is not None:
            ctx.set_body(stripped)


def _preset(consumer: Mapping[str, Any], credential: Mapping[str, Any] | None) -> HeaderPreset:
    """The upstream headers that identify `consumer` (None value: removed from the client's request)."""
    return HeaderPreset([
        (H_CONSUMER_ID, consumer["id"]),
        (H_CONSUMER_CUSTOM_ID, consumer.get("custom_id") or None),
        (H_CONSUMER_USERNAME, consumer.get("username") or None),
        (H_CREDENTIAL, credential["id"] if credential is not None else None),
        (H_ANONYMOUS, None if credential is not None else "true"),
    ])


def _set_consumer(ctx: Context, consumer: Mapping[str, Any], credential: Mapping[str, Any] | None,
                  preset: HeaderPreset) -> None:
    ctx.consumer = consumer
    ctx.credential = credential
    ctx.apply_upstream_preset(preset)


register(KeyAuth)
