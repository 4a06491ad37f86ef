"""HTTP client for the Admin API under test: raw (already encoded) paths, JSON or form bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL


@dataclass
class Resp:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class Admin:
    """A client for the Admin API under test; paths are sent exactly as written (already encoded)."""

    base: str
    session: aiohttp.ClientSession
    store: Any
    changes: list[int] = field(default_factory=list)
    # set to make the on_change callback raise (after recording the change)
    hooks: dict[str, bool] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Any = None,
        multipart: dict[str, Any] | None = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Resp:
        hdrs = dict(headers or {})
        body: Any = data
        if json is not None:
            body = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        elif multipart is not None:
            writer = aiohttp.MultipartWriter("form-data")
            for name, value in multipart.items():
                if isinstance(value, dict | list):
                    part = writer.append_json(value)
                else:
                    part = writer.append(str(value), {"Content-Type": "text/plain"})
                part.set_content_disposition("form-data", name=name)
            body = writer
        elif form is not None:
            body = urlencode(form, doseq=True) if not isinstance(form, str) else form
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        url = URL(self.base + path, encoded=True)
        # Never let the client invent a Content-Type: the gate's behaviour depends on it.
        skip = (
            () if "Content-Type" in hdrs or isinstance(body, aiohttp.MultipartWriter) else ("Content-Type",)
        )
        async with self.session.request(method, url, data=body, headers=hdrs, skip_auto_headers=skip) as r:
            raw = await r.read()
            return Resp(r.status, r.headers, raw)

    async def get(self, path: str, **kw: Any) -> Resp:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Resp:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Resp:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Resp:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Resp:
        return await self.request("DELETE", path, **kw)

    async def ok(self, method: str, path: str, status: int, **kw: Any) -> Any:
        """Request and assert the status; returns the JSON body."""
        r = await self.request(method, path, **kw)
        assert r.status == status, (method, path, r.status, r.body)
        return r.json
