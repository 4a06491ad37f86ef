"""Endpoints a plugin adds to the Admin API (Kong's `api.lua`) or to the status listener (`status_listen`).

A plugin class lists them in `admin_api` / `status_api`:

    admin_api = (ApiEndpoint("GET", "/my-plugin/stats", stats),
                 ApiEndpoint("POST", "/consumers/{consumers}/key-auth", audit_key_creation))

`path` uses the Admin API's patterns (`{name}` segments, or Kong's `:name`); `GET /endpoints` lists the
generated ones with their parameter names. The handler is `async def handler(ctx, parent)`:

- `ctx` is the Admin request context: `ctx.request` (method, path, headers, body), `ctx.store`,
  `ctx.params` (decoded path parameters), `ctx.query_first(name)`, `ctx.json_body` / `ctx.form_body` (POST,
  PUT and PATCH bodies, already parsed and checked as for any Admin write), `await ctx.changed()` after a
  write (refreshes this process's snapshot);
- `parent` is the endpoint it replaces, when the same method and path already exist (a generated entity
  endpoint or another plugin's): `await parent()` runs it and gives its Response, errors included (404, 409,
  400: Kong's bodies), so a plugin can act before and after it; a database failure is not given back but
  answered by the Admin API as usual; None for a new endpoint;
- it returns a `servegate.admin.http.Response`, or `(status, body)` for a JSON answer; a raised DaoError
  gets Kong's error body, any other error a logged 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Parent = Callable[[], Awaitable[Any]]
ApiHandler = Callable[[Any, Parent | None], Awaitable[Any]]


@dataclass(frozen=True)
class ApiEndpoint:
    method: str
    path: str
    handler: ApiHandler

    @property
    def pattern(self) -> str:
        """`path` in the Admin table's `{name}` form."""
        segments = [f"{{{s[1:]}}}" if s.startswith(":") else s for s in self.path.split("/") if s]
        return "/" + "/".join(segments)
