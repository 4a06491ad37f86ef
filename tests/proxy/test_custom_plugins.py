"""Custom plugins through a real `servegate start`: written outside the repository (a temp dir on PYTHONPATH),
enabled with the `plugins` setting, found by the module naming rule or a `servegate.plugins` entry point."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from proxy_support import Backend

from helpers import Servegate

# Upper-cases the content of an OpenAI SSE stream (event by event, across chunk boundaries), marks the
# response with a header and records the bytes sent to the client in a file.
SHOUT = '''
import json
from servegate.plugins import register
from servegate.plugins.base import Plugin
from servegate.schema.fields import Field


class Shout(Plugin):
    name = "shout"
    PRIORITY = 10
    VERSION = "1.0.0"
    config_schema = Field(type="record", fields=(("file", Field(type="string", required=True)),))

    def header_filter(self, ctx, conf):
        ctx.downstream_headers["X-Shout"] = "on"

    def body_filter(self, ctx, conf, chunk, eof):
        if ctx.shared is None:
            ctx.shared = {"buf": b""}
        buf = ctx.shared["buf"] + chunk
        events = buf.split(b"\\n\\n")
        ctx.shared["buf"] = b"" if eof else events.pop()
        out = []
        for ev in events:
            if ev.startswith(b"data: {"):
                data = json.loads(ev[6:])
                for choice in data.get("choices", []):
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        delta["content"] = delta["content"].upper()
                ev = b"data: " + json.dumps(data).encode()
            if ev:
                out.append(ev + b"\\n\\n")
        return b"".join(out)

    def log(self, ctx, conf):
        with open(conf["file"], "a") as f:
            f.write(f"{ctx.response_size}\\n")


register(Shout)
'''

TAGGER = '''
from servegate.plugins import register
from servegate.plugins.base import Plugin
from servegate.schema.fields import Field


class Tagger(Plugin):
    name = "tag-it"
    PRIORITY = 5
    VERSION = "0.1.0"
    config_schema = Field(type="record", fields=())

    async def header_filter(self, ctx, conf):
        ctx.downstream_headers["X-Tagged"] = "yes"


register(Tagger)
'''


def plugin_dir() -> Path:
    """A directory outside the repository holding a plain module and an 'installed' distribution."""
    d = Path(tempfile.mkdtemp(prefix="servegate-plugins-"))
    (d / "servegate_plugin_shout.py").write_text(SHOUT)
    (d / "acme_plugins").mkdir()
    (d / "acme_plugins" / "__init__.py").write_text("")
    (d / "acme_plugins" / "tagger.py").write_text(TAGGER)
    dist = d / "acme_plugins-0.1.dist-info"  # what `pip install` leaves: metadata with the entry point
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[servegate.plugins]\ntag-it = acme_plugins.tagger\n")
    return d


def node(plugins: str, pythonpath: Path | None = None) -> Servegate:
    env = {"SERVEGATE_PLUGINS": plugins}
    if pythonpath is not None:  # added to the path the tests run with (the compiled pass sets one)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), os.environ.get("PYTHONPATH")) if p)
    return Servegate(extra_env=env)


def raw_stream(port: int) -> tuple[bytes, int]:
    body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return buf, len(buf)


def test_external_plugin_phases_through_servegate(backend: Backend, tmp_path: Path) -> None:
    record = tmp_path / "bytes.txt"
    with node("bundled,shout,tag-it", plugin_dir()) as sg:
        assert sg.admin("GET", "/plugins/enabled") == (
            200, {"enabled_plugins": ["key-auth", "model-router", "prometheus", "rate-limiting", "shout", "tag-it"]})
        status, svc = sg.admin("POST", "/services", {"name": "llm", "url": backend.url})
        assert status == 201
        assert sg.admin("POST", "/services/llm/routes", {"paths": ["/v1"], "strip_path": False})[0] == 201
        assert sg.admin("POST", "/plugins", {"name": "shout", "config": {"file": str(record)}})[0] == 201
        assert sg.admin("POST", "/plugins", {"name": "tag-it"})[0] == 201
        time.sleep(0.3)
        client = openai.OpenAI(base_url=sg.proxy_url + "/v1", api_key="sk-test", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert raw.headers["x-shout"] == "on" and raw.headers["x-tagged"] == "yes"
        assert "content-length" not in raw.headers
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert text == "TOK0 TOK1 TOK2 TOK3 TOK4 "
        wire, n = raw_stream(sg.proxy_port)
        assert b'"content": "TOK4 "' in wire and wire.endswith(b"0\r\n\r\n")
        time.sleep(0.3)
        counts = [int(x) for x in record.read_text().split()]
        assert len(counts) == 2 and counts[1] == n and counts[0] > 0


def test_plugins_off_and_unlisted_plugins(tmp_path: Path) -> None:
    with node("off") as sg:
        assert sg.admin("GET", "/plugins/enabled") == (200, {"enabled_plugins": []})
        status, body = sg.admin("POST", "/plugins", {"name": "key-auth"})
        assert status == 400
        assert body["fields"]["name"] == "plugin 'key-auth' not enabled; add it to the 'plugins' configuration property"
    with node("rate-limiting,shout", plugin_dir()) as sg:
        assert sg.admin("GET", "/plugins/enabled")[1] == {"enabled_plugins": ["rate-limiting", "shout"]}
        status, body = sg.admin("POST", "/plugins", {"name": "tag-it"})
        assert status == 400 and "plugin 'tag-it' not enabled" in body["fields"]["name"]


@pytest.mark.parametrize(("entry", "source", "words"), [
    ("broken", "raise RuntimeError('no model file')",
     "plugin 'broken': cannot import module servegate_plugin_broken: RuntimeError: no model file"),
    ("missing", None, "plugin 'missing': cannot import module servegate_plugin_missing: ModuleNotFoundError"),
    ("quiet", "x = 1", "plugin 'quiet': module servegate_plugin_quiet registered no plugin named 'quiet'"),
])
def test_plugin_that_cannot_load_stops_start_up(tmp_path: Path, entry: str, source: str | None, words: str) -> None:
    if source is not None:
        (tmp_path / f"servegate_plugin_{entry}.py").write_text(textwrap.dedent(source))
    sg = node(f"bundled,{entry}", tmp_path)
    sg.prefix = str(tmp_path / "prefix")
    env: dict[str, Any] = sg.env()
    p = subprocess.run([sys.executable, "-m", "servegate", "start"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1
    lines = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("Error:")]) == 1
    assert any(words in line for line in lines), lines
    assert "Traceback" not in p.stderr
