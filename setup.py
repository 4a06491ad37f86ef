"""Build script. The metadata lives in pyproject.toml; this file only adds the compiled relay.

The modules every proxied request runs through are compiled with mypyc (the same typed source, built as C
extensions): measured on a 1-worker node under wrk c64, user CPU per request drops by about a third bare and
by about half with key-auth + rate-limiting (benchmarks/README.md). Everything else stays plain Python.

SERVEGATE_COMPILE=1 compiles (and fails the build if it cannot); 0 never compiles; unset compiles regular
installs when a C compiler works and leaves editable installs pure Python, so that an edited source file is
what runs while developing.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

HOT_MODULES = [
    "src/servegate/proxy/client.py",
    "src/servegate/proxy/exchange.py",
    "src/servegate/proxy/faults.py",
    "src/servegate/proxy/headers.py",
    "src/servegate/proxy/paths.py",
    "src/servegate/proxy/phases.py",
    "src/servegate/proxy/prep.py",
    "src/servegate/proxy/router.py",
    "src/servegate/proxy/router_build.py",
    "src/servegate/proxy/matchers.py",
    "src/servegate/proxy/server.py",
    "src/servegate/proxy/states.py",
    "src/servegate/proxy/upstream.py",
    "src/servegate/proxy/balancer/endpoint.py",
    "src/servegate/proxy/balancer/algorithms.py",
    "src/servegate/proxy/balancer/core.py",
    "src/servegate/proxy/balancer/relay.py",
    "src/servegate/proxy/balancer/keys.py",
    "src/servegate/plugins/base.py",
    "src/servegate/plugins/runner.py",
    "src/servegate/plugins/key_auth.py",
    "src/servegate/plugins/rate_limiting.py",
    "src/servegate/plugins/ratelimit/local.py",
    "src/servegate/plugins/ratelimit/shm.py",
    "src/servegate/plugins/ratelimit/windows.py",
    "src/servegate/snapshot/cache.py",
    # The LLM record's SSE tap: every chunk of a tracked stream goes through it.
    "src/servegate/llm/record.py",
    "src/servegate/llm/sse.py",
    # What every LLM request runs: reading its body (track), routing it by model, counting it (prometheus).
    "src/servegate/llm/request.py",
    "src/servegate/llm/track.py",
    "src/servegate/llm/usage.py",
    "src/servegate/plugins/model_router/__init__.py",
    "src/servegate/plugins/model_router/backends.py",
    "src/servegate/plugins/prometheus/handler.py",
    "src/servegate/plugins/prometheus/record.py",
]


def _ext_modules() -> list:
    mode = os.environ.get("SERVEGATE_COMPILE", "auto")
    if mode == "0" or (mode != "1" and "editable_wheel" in sys.argv):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if mode == "1":
            raise
        return []
    exts = mypycify(HOT_MODULES, opt_level="3", debug_level="0")
    if mode != "1":
        # No working compiler: install the pure-Python package rather than fail.
        for ext in exts:
            ext.optional = True
    return exts


setup(ext_modules=_ext_modules())
