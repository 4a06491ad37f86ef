"""Entry point of the `servegate` command.

`servegate start` and `servegate restart` are parsed here, without typer: typer, click and the setup
command's HTTP client cost several MB of RSS in a process that then serves for days without needing them.
Every other command (and `start -h`) goes through the typer app in `commands.py`.
"""

from __future__ import annotations

import os
import sys

from servegate.settings import Settings, SettingsError, load_settings


def settings_from(conf: str | None = None, prefix: str | None = None) -> Settings:
    env = dict(os.environ)
    if prefix:
        env["SERVEGATE_PREFIX"] = prefix
    return load_settings(env, conf)


def stop_running(settings: Settings, *, quiet_if_none: bool = False) -> int:
    """`servegate stop`: SIGTERM the node under the prefix and wait until it is gone. Returns the exit code."""
    from servegate.pidfile import stop_node

    timeout = settings.graceful_timeout + 10
    pid, stopped = stop_node(settings.prefix, timeout)
    if pid is None:
        if quiet_if_none:
            return 0
        print(f"Error: servegate is not running at {settings.prefix}", file=sys.stderr)
        return 1
    if not stopped:
        print(f"Error: servegate (pid {pid}) did not stop within {timeout:g} s", file=sys.stderr)
        return 1
    print(f"servegate stopped (pid {pid})", flush=True)
    return 0


def run_start(conf: str | None, prefix: str | None, *, restart: bool = False) -> int:
    """`servegate start` (and `restart`: stop the running node first). SIGHUP re-reads the same sources."""
    try:
        settings = settings_from(conf, prefix)
    except SettingsError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    if restart:
        code = stop_running(settings, quiet_if_none=True)
        if code:
            return code
    from servegate.node import start as start_node

    return start_node(settings, lambda: settings_from(conf, prefix))


def _plain_start_args(argv: list[str]) -> dict[str, str | None] | None:
    """`start`/`restart` with only --conf/-c and --prefix/-p: its options, else None (anything else, such as
    `start -h`, goes through typer)."""
    if not argv or argv[0] not in ("start", "restart"):
        return None
    opts: dict[str, str | None] = {"conf": None, "prefix": None}
    names = {"--conf": "conf", "-c": "conf", "--prefix": "prefix", "-p": "prefix"}
    i = 1
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if eq and name in ("--conf", "--prefix"):
            opts[names[name]] = value
            i += 1
        elif arg in names and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            opts[names[arg]] = argv[i + 1]
            i += 2
        else:
            return None
    return opts


def main() -> None:
    opts = _plain_start_args(sys.argv[1:])
    if opts is not None:
        sys.exit(run_start(opts["conf"], opts["prefix"], restart=sys.argv[1] == "restart"))
    from servegate.cli.commands import app

    app(prog_name="servegate")
