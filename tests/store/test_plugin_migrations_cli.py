"""`servegate migrations` runs the migrations of the plugins the `plugins` setting loads (a custom plugin
module outside the repository, on PYTHONPATH)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = textwrap.dedent('''
    from servegate.plugins import register
    from servegate.plugins.base import Plugin
    from servegate.schema.fields import Field
    from servegate.store import Migration, sql

    _DDL = 'CREATE TABLE IF NOT EXISTS "sgtest_things" ("id" TEXT NOT NULL PRIMARY KEY)'


    class Things(Plugin):
        name = "sgtest-things"
        PRIORITY = 1
        VERSION = "1.0.0"
        config_schema = Field("record", fields=())
        migrations = (Migration("000_base_sgtest_things", up=sql(sqlite=[_DDL], postgres=[_DDL]),
                                tables=("sgtest_things",)),)


    register(Things)
''')


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servegate", "migrations", *args], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_migrations_commands_run_the_configured_plugins_migrations(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "servegate_plugin_sgtest_things.py").write_text(PLUGIN)
    prefix = str(tmp_path / "prefix")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mods"), "SERVEGATE_PLUGINS": "bundled,sgtest-things",
           "SERVEGATE_DATABASE": "sqlite"}
    r = _cli("bootstrap", "-p", prefix, env=env)
    assert r.returncode == 0, r.stderr
    assert "sgtest-things migrated up to: 000_base_sgtest_things (executed)" in r.stdout.splitlines()
    r = _cli("list", "-p", prefix, env=env)
    assert r.returncode == 0 and r.stdout.splitlines() == [
        "Executed migrations:",
        "         core: 000_base, 001_config_changes, 002_upstreams_targets",
        "     key-auth: 000_base_key_auth",
        "sgtest-things: 000_base_sgtest_things",
    ]
    r = _cli("reset", "--yes", "-p", prefix, env=env)
    assert r.returncode == 0, r.stderr
    # a plugin that cannot load: one line, exit 1
    bad = {**env, "SERVEGATE_PLUGINS": "bundled,sgtest-missing"}
    r = _cli("list", "-p", prefix, env=bad)
    assert r.returncode == 1 and r.stdout.startswith("Error: plugin 'sgtest-missing': cannot import module")
