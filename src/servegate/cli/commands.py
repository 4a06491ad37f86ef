"""The `servegate` commands (typer): start, health, version, migrations, setup. `main.py` is the entry point."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated, Any

import typer

from servegate import KONG_VERSION, __version__
from servegate.cli.main import settings_from
from servegate.settings import Settings, SettingsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="servegate: a Kong-compatible LLM gateway.")
migrations_app = typer.Typer(no_args_is_help=True, help="Manage the database schema.")
app.add_typer(migrations_app, name="migrations")

ConfOpt = Annotated[str | None, typer.Option("--conf", "-c", help="Configuration file.")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", "-p", help="Override the prefix directory.")]


def _settings(conf: str | None = None, prefix: str | None = None) -> Settings:
    try:
        return settings_from(conf, prefix)
    except SettingsError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def start(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Start servegate in the foreground (stops on SIGTERM / SIGINT)."""
    from servegate.node import start as start_node

    raise typer.Exit(start_node(_settings(conf, prefix)))


@app.command()
def health(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Exit 0 if servegate is running under the prefix."""
    from servegate.node import pid_file

    settings = _settings(conf, prefix)
    try:
        pid = int(pid_file(settings).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        typer.echo(f"Error: servegate is not running at {settings.prefix}", err=True)
        raise typer.Exit(1) from None
    typer.echo("servegate.......running")
    typer.echo(f"servegate is healthy at {settings.prefix}")


@app.command()
def version(all_: Annotated[bool, typer.Option("--all", "-a", help="Show the Kong API version too.")] = False) -> None:
    """Print the version."""
    typer.echo(f"servegate {__version__}")
    if all_:
        typer.echo(f"kong-compatible admin API: {KONG_VERSION}")
        typer.echo(f"python: {sys.version.split()[0]}")


def _migrate(command: str, conf: str | None, prefix: str | None, **opts: Any) -> None:
    from servegate.store import migrations_cli, open_store

    settings = _settings(conf, prefix)

    async def run() -> tuple[int, list[str]]:
        store = open_store(settings)
        try:
            await store.connect()
        except Exception as e:  # driver-specific connection errors
            return 1, [f"Error: cannot connect to the {settings.database} database: {e}"]
        try:
            return await migrations_cli(store, command, **opts)
        finally:
            await store.close()

    code, lines = asyncio.run(run())
    for line in lines:
        typer.echo(line)
    raise typer.Exit(code)


@migrations_app.command()
def bootstrap(conf: ConfOpt = None, prefix: PrefixOpt = None,
              force: Annotated[bool, typer.Option("--force", "-f", help="Reset first.")] = False) -> None:
    """Create the schema and run every migration."""
    _migrate("bootstrap", conf, prefix, force=force)


@migrations_app.command()
def up(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Run new migrations."""
    _migrate("up", conf, prefix)


@migrations_app.command()
def finish(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Run pending migration teardowns."""
    _migrate("finish", conf, prefix)


@migrations_app.command("list")
def list_(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """List migrations (exit 3: needs bootstrap, 4: pending finish, 5: new migrations)."""
    _migrate("list", conf, prefix)


@migrations_app.command()
def reset(conf: ConfOpt = None, prefix: PrefixOpt = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Drop everything servegate stored."""
    if not yes:
        if not sys.stdin.isatty():
            typer.echo("Error: not a tty: invoke 'reset' non-interactively with the --yes flag", err=True)
            raise typer.Exit(1)
        if not typer.confirm("Are you sure? This operation is irreversible."):
            typer.echo("cancelled")
            raise typer.Exit(0)
    _migrate("reset", conf, prefix, yes=True)


def _register_setup() -> None:
    try:
        from servegate.cli.setup import setup as setup_command
    except ImportError:
        return
    app.command(name="setup", help="Create the seed stack's services, routes, key-auth and admin consumer.")(
        setup_command
    )


_register_setup()
