"""The user-facing docs (README.md, docs/*.md) stay honest: one admin key, nothing outside the repository, only
settings, variables, plugins and messages that exist, and the OpenAI SDK recipes of docs/usage.md really work.

tests/compose/test_docs_sync.py checks the settings and stack tables against the code and .env.example; this file
covers what a reader copies out of the prose and the examples.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Servegate
from servegate.settings import ALIASES, SPEC
from support import create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
USAGE = ROOT / "docs" / "usage.md"

# The one admin key of every example (the default of .env.example), and the placeholder for "your key".
ADMIN_KEY = "changeme-admin-key-secret"
KEY_PLACEHOLDER = "YOUR_KEY"


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def logical_lines(text: str) -> list[str]:
    """Lines with shell continuations (a trailing backslash) joined, so one command is one line."""
    out: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher level."""
    depth = len(heading.split(" ", 1)[0])
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n") + 1
    fenced = False
    for i in range(start, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        m = re.match(r"(#+) ", lines[i])
        if not fenced and m and len(m.group(1)) <= depth:
            return "".join(lines[start:i])
    return "".join(lines[start:])


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_admin_examples_use_one_key(doc: Path) -> None:
    """A reader who follows the quick start and then copies any admin example must not get a 401."""
    for line in logical_lines(doc.read_text()):
        for m in re.finditer(r"\b(?:KONG|SERVEGATE)_ADMIN_API_KEY=([^\s\\`\"']+)", line):
            assert m.group(1) in (ADMIN_KEY, KEY_PLACEHOLDER), f"{doc_id(doc)}: {line.strip()}"
        if "/admin-api" not in line:
            continue
        for m in re.finditer(r"apikey(?:=|:\s*)([^\s\"'&`)|]+)", line):
            assert m.group(1) in (ADMIN_KEY, KEY_PLACEHOLDER), f"{doc_id(doc)}: {line.strip()}"


def test_the_examples_key_is_the_stack_default() -> None:
    env = (ROOT / ".env.example").read_text()
    assert f"\nKONG_ADMIN_API_KEY={ADMIN_KEY}\n" in env
    readme = (ROOT / "README.md").read_text()
    assert f"KONG_ADMIN_API_KEY={ADMIN_KEY}" in section(readme, "## Quick start without Docker")


def test_readme_quick_start_installs_into_a_virtual_environment() -> None:
    """A system-wide `pip install .` is refused on Debian and Ubuntu (PEP 668, externally-managed-environment)."""
    block = code_blocks(section((ROOT / "README.md").read_text(), "## Quick start without Docker"), "bash")[0]
    lines = [line.strip() for line in block.splitlines()]
    venv = lines.index("python3 -m venv .venv")
    activate = lines.index(". .venv/bin/activate")
    assert venv < activate < lines.index("pip install .") < lines.index("servegate start")


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_no_doc_points_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    outside = re.findall(r"(?:/work/|\bshared/(?:reference|design|seeds)\b)\S*", text)
    assert not outside, f"{doc_id(doc)} points outside the repository: {outside}"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    paths = re.findall(r"`(\.\./[^`\s]+)`", text)
    for target in links + paths:
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc_id(doc)}: {target} is outside the repository"
        assert resolved.exists(), f"{doc_id(doc)}: {target} does not exist"


def _code_that_reads_variables() -> str:
    files = [*(ROOT / "src").rglob("*.py"), ROOT / "setup.py", *(ROOT / "scripts").iterdir(),
             *(ROOT / ".ci").iterdir(), ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / ".env.example",
             ROOT / "tests" / "support.py"]
    return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_variables_named_in_docs_exist(doc: Path) -> None:
    """Each SERVEGATE_*/KONG_* name is a setting (or alias) or is read by the code, the scripts or the stack."""
    code = _code_that_reads_variables()
    for name in sorted(set(re.findall(r"\b((?:SERVEGATE|KONG)_[A-Z][A-Z0-9_]*)\b", doc.read_text()))):
        setting = name.split("_", 1)[1].lower()
        if setting in SPEC or setting in ALIASES:
            continue
        assert re.search(rf"\b{name}\b", code), f"{doc_id(doc)} names {name}, which nothing reads"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_conf_file_lines_in_docs_name_settings(doc: Path) -> None:
    for name in set(re.findall(r"`([a-z][a-z0-9_]*) = [^`]+`", doc.read_text())) - {"name"}:  # `name = value`
        known = name in SPEC or name in ALIASES
        assert known, f"{doc_id(doc)}: `{name} = ...` is not a setting"


def _plugin_fields() -> dict[str, set[str]]:
    """Config field names of every bundled plugin."""
    from servegate.plugins import load_all
    from servegate.schema.plugins import get_plugin

    out = {}
    for name in load_all():
        schema = get_plugin(name)
        assert schema is not None, name
        out[name] = {f for f, _ in schema.config.fields or ()}
    return out


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_plugin_examples_use_bundled_plugins_and_fields(doc: Path) -> None:
    """No example enables a plugin servegate does not have, or sets a config field the plugin lacks."""
    bundled = _plugin_fields()
    for line in logical_lines(doc.read_text()):
        if "/plugins" not in line:
            continue
        names = re.findall(r"\bname=([\w-]+)", line)
        for name in names:
            assert name in bundled, f"{doc_id(doc)}: no bundled plugin {name!r}: {line.strip()}"
        # a PATCH by plugin id names no plugin: any bundled plugin's field will do
        known = set().union(*(bundled[n] for n in (names or bundled)))
        for field in re.findall(r"\bconfig\.([a-z_]+)", line):
            assert field in known, f"{doc_id(doc)}: no plugin field {field!r}: {line.strip()}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_streaming_curl_examples_do_not_buffer(doc: Path) -> None:
    for block in code_blocks(doc.read_text(), "bash"):
        for command in re.split(r"\n(?=curl )", block):
            if command.startswith("curl ") and re.search(r'"stream":\s*true', command):
                assert re.match(r"curl (-N|--no-buffer) ", command), f"{doc_id(doc)}: {command.splitlines()[0]}"


def test_proxy_error_table_matches_the_code() -> None:
    table = section(USAGE.read_text(), "### A 502 Bad Gateway or a 503 Service Unavailable")
    rows = re.findall(r"^\| `(\d{3})` \| `([^`]+)` \|", table, flags=re.M)
    assert {status for status, _ in rows} >= {"502", "503", "504"}
    proxy_code = "\n".join(p.read_text() for p in (ROOT / "src" / "servegate" / "proxy").glob("*.py"))
    from servegate.proxy.errors import MESSAGES

    for status, message in rows:
        assert MESSAGES.get(int(status)) == message or f'"{message}"' in proxy_code, (status, message)


# --- The OpenAI SDK recipes of docs/usage.md, run against a real node and the proxy tests' fake backend.

FAKE_BACKEND = ROOT / "tests" / "proxy" / "fake_openai.py"


@pytest.fixture
def fake_backend() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, str(FAKE_BACKEND), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["sqlite", "postgres"])
def node(request: pytest.FixtureRequest) -> Iterator[Servegate]:
    if request.param == "sqlite":
        with Servegate(database="sqlite") as sg:
            yield sg
        return
    name, dsn = create_pg_database("servegate_docs")
    try:
        with Servegate(database="postgres", pg_dsn=dsn) as sg:
            yield sg
    finally:
        drop_pg_database(name)


def _sdk_block(marker: str) -> str:
    section_text = section(USAGE.read_text(), "## Using the OpenAI Python SDK")
    return next(b for b in code_blocks(section_text, "python") if marker in b)


def _list_models(client_code: str, base_url: str) -> tuple[int, object]:
    import openai

    scope: dict[str, object] = {}
    exec(client_code.replace("http://localhost:8000", base_url), scope)  # noqa: S102 - the doc's own snippet
    client = scope["client"]
    assert isinstance(client, openai.OpenAI)
    client = client.with_options(max_retries=0)
    try:
        page = client.models.with_raw_response.list()
        return page.http_response.status_code, [m.id for m in page.parse().data]
    except openai.APIStatusError as e:
        return e.status_code, e.body


def test_openai_sdk_recipes_from_the_usage_guide(node: Servegate, fake_backend: int) -> None:
    assert node.admin("POST", "/services", {"name": "vllm-service", "url": f"http://127.0.0.1:{fake_backend}"})[0] == 201
    assert node.admin("POST", "/services/vllm-service/routes", {"name": "vllm-route", "paths": ["/v1/vllm"]})[0] == 201
    status, plugin = node.admin("POST", "/services/vllm-service/plugins", {"name": "key-auth"})
    assert status == 201
    assert node.admin("POST", "/consumers", {"username": "my-app"})[0] == 201
    assert node.admin("POST", "/consumers/my-app/key-auth", {"key": "my-app-secret-key"})[0] == 201

    # The SDK sends api_key as "Authorization: Bearer ...", which default key-auth does not read ...
    api_key_only = 'from openai import OpenAI\nclient = OpenAI(base_url="http://localhost:8000/v1/vllm/v1", api_key="{}")\n'
    status, body = _list_models(api_key_only.format("my-app-secret-key"), node.proxy_url)
    assert (status, body["message"]) == (401, "No API key found in request")  # type: ignore[index]
    # ... so the guide adds the apikey header.
    assert _list_models("from openai import OpenAI\n" + _sdk_block("default_headers"), node.proxy_url) == (
        200, ["fake-model"])

    # The Bearer recipe: key_names gains authorization, the credential holds the whole header value.
    status, _ = node.admin("PATCH", f"/plugins/{plugin['id']}", {"config": {"key_names": ["apikey", "authorization"]}})
    assert status == 200
    assert node.admin("POST", "/consumers/my-app/key-auth", {"key": "Bearer my-app-secret-key"})[0] == 201
    assert _list_models(api_key_only.format("my-app-secret-key"), node.proxy_url) == (200, ["fake-model"])
    assert _list_models(api_key_only.format("another-key"), node.proxy_url)[0] == 401
