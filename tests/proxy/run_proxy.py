"""Run the proxy data plane alone, as a real process, for the proxy tests.

`python run_proxy.py CONFIG.json` where CONFIG holds `{"settings": {name: value}, "rows": {"services": [...],
"routes": [...], "plugins": [...], ...}}`. Settings use kong.conf names (as SERVEGATE_<NAME> env values).
Prints `READY <port> <port>...` once listening; SIGTERM stops gracefully (graceful_timeout).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
from types import SimpleNamespace
from typing import Any

from servegate.node import setup_logging
from servegate.plugins import load_all
from servegate.proxy.server import ProxyServer
from servegate.settings import load_settings


def build(rows: dict[str, list[dict[str, Any]]]) -> Any:
    from servegate.snapshot import build_snapshot

    return build_snapshot(rows, 1, with_plugins=bool(rows.get("plugins")))


async def main(path: str) -> None:
    with open(path) as f:
        conf = json.load(f)
    env = {f"SERVEGATE_{k.upper()}": str(v) for k, v in conf.get("settings", {}).items()}
    for module in conf.get("imports", []):  # extra plugins written for a test
        importlib.import_module(module)
    settings = load_settings(env=env, conf_path=None)
    load_all(settings.plugins)  # as `servegate start` does: only the plugins the setting names
    setup_logging(settings.log_level)  # as `servegate start` does: the error log goes to stdout
    holder = SimpleNamespace(current=build(conf.get("rows", {})))
    proxy = ProxyServer(settings, holder)
    await proxy.start()
    print("READY", *proxy.ports, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await proxy.stop(settings.graceful_timeout_s)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
