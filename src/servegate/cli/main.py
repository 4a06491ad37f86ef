"""Entry point of the `servegate` command.

`servegate start` is parsed here, without typer: typer, click and the setup command's HTTP client cost
several MB of RSS in a process that then serves for days without needing them. Every other command goes
through the typer app in `commands.py`.
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


def _plain_start_args(argv: list[str]) -> dict[str, str | None] | None:
    """`start` with only --conf/-c and --prefix/-p: its options, else None (anything else goes through typer)."""
    if not argv or argv[0] != "start":
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
        try:
            settings = settings_from(opts["conf"], opts["prefix"])
        except SettingsError as e:
            print(f"Error: {e}", file=sys.stderr)
            sys.exit(1)
        from servegate.node import start as start_node

        sys.exit(start_node(settings))
    from servegate.cli.commands import app

    app()
