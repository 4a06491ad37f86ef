"""A plugin that fails on purpose, quoting the request's API key in its exception text (loaded by run_proxy.py
through the config's "imports"): the proxy must answer 500 and log the failure without that text."""

from __future__ import annotations

from typing import Any

from servegate.plugins import register
from servegate.plugins.base import Context, Plugin
from servegate.schema.fields import Field


class Failing(Plugin):
    name = "test-failing"
    PRIORITY = 5000
    VERSION = "0.0.0"
    config_schema = Field(type="record", fields=(("mode", Field(type="string", default="sync")),))

    def access(self, ctx: Context, conf: Any) -> Any:  # type: ignore[override]
        key = ctx.query().get("apikey") or ctx.headers.get("apikey")
        if conf.get("mode") == "async":
            return self._later(key)
        raise ValueError(f"cannot use key {key}")

    async def _later(self, key: Any) -> None:
        raise KeyError(f"cannot use key {key}")


register(Failing)
