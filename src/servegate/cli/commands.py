"""The `servegate` commands (typer): start, stop, restart, reload, check, prepare, health, version, migrations,
setup. `main.py` is the entry point (and runs `start`/`restart` without importing this module)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Annotated, Any

import typer

from servegate import KONG_VERSION, __version__
from servegate.cli.main import run_start, settings_from, stop_running
from servegate.settings import Settings, SettingsError

# Plain (click-style) help: rich's boxes and typer's `<str>` type labels read worse than a metavar like PATH.
HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP,
                  help="servegate: a Kong-compatible LLM gateway.")
migrations_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, context_settings=HELP,
                             help="Manage the database schema.")
app.add_typer(migrations_app, name="migrations")

ConfOpt = Annotated[str | None, typer.Option("--conf", "-c", metavar="PATH", help="Configuration file.")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", "-p", metavar="PATH",
                                               help="Override the prefix directory.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"servegate {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version_: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, metavar="",
                                           help="Print the version and exit.")] = False,
) -> None:
    """servegate: a Kong-compatible LLM gateway."""


def _settings(conf: str | None = None, prefix: str | None = None) -> Settings:
    try:
        return settings_from(conf, prefix)
    except SettingsError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1) from None


def _not_running(settings: Settings) -> typer.Exit:
    typer.echo(f"Error: servegate is not running at {settings.prefix}", err=True)
    return typer.Exit(1)


@app.command()
def start(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Start servegate in the foreground.

    SIGTERM or SIGINT stops it (in-flight requests get graceful_timeout), SIGHUP reloads it.
    """
    raise typer.Exit(run_start(conf, prefix))


@app.command()
def stop(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Stop the running node and wait for it.

    Sends SIGTERM to the node whose pid file is under the prefix and waits until it has exited (up to
    graceful_timeout + 10 s). Exit 1 when none runs.
    """
    raise typer.Exit(stop_running(_settings(conf, prefix)))


@app.command()
def restart(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Stop the running node (if any), then start.

    The new node runs in the foreground, like `start`.
    """
    raise typer.Exit(run_start(conf, prefix, restart=True))


@app.command()
def reload(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Re-read the settings without dropping connections.

    Checks the settings, then sends SIGHUP to the running node: it re-reads its configuration file and
    opens new proxy listeners with it; open connections and streams finish on the old ones. A bad setting is
    reported here and the node is left alone.
    """
    from servegate.pidfile import signal_node

    settings = _settings(conf, prefix)
    pid = signal_node(settings.prefix, signal.SIGHUP)
    if pid is None:
        raise _not_running(settings)
    typer.echo(f"servegate reloading (pid {pid})")


@app.command()
def check(
    conf_file: Annotated[str | None, typer.Argument(metavar="CONF", show_default=False, hidden=True)] = None,
    conf: ConfOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Validate the settings without starting.

    CONF (or -c) is the configuration file; the environment is read as `start` reads it.
    """
    path = conf_file or conf
    settings = _settings(path, prefix)
    if settings.ssl_cert and settings.ssl_cert_key:
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(settings.ssl_cert, settings.ssl_cert_key)
        except (OSError, ssl.SSLError) as e:
            typer.echo(f"Error: invalid ssl_cert ({settings.ssl_cert}): {e.strerror or e}", err=True)
            raise typer.Exit(1) from None
    shown = path or os.environ.get("SERVEGATE_CONF") or os.environ.get("KONG_CONF")
    typer.echo(f"configuration at {shown or 'the environment (no conf file)'} is valid")


@app.command()
def prepare(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Create the prefix and its files without starting.

    The prefix directory, the default TLS certificate (when a listener has `ssl`) and the rate-limiting
    counter file.
    """
    from servegate.node import prepare_prefix

    settings = _settings(conf, prefix)
    try:
        prepare_prefix(settings)
    except OSError as e:
        typer.echo(f"Error: cannot prepare {settings.prefix}: {e.strerror or e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"prefix prepared at {settings.prefix}")


@app.command()
def health(conf: ConfOpt = None, prefix: PrefixOpt = None) -> None:
    """Exit 0 if a node runs under the prefix, else 1."""
    from servegate.pidfile import running_pid

    settings = _settings(conf, prefix)
    if running_pid(settings.prefix) is None:
        raise _not_running(settings)
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
    from servegate.plugins import PluginLoadError, load_all
    from servegate.store import migrations_cli, open_store

    settings = _settings(conf, prefix)
    try:
        load_all(settings.plugins)  # the configured plugins' migrations are part of the schema (Kong does so)
    except PluginLoadError as e:
        typer.echo(f"Error: {e}")
        raise typer.Exit(1) from None

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
    app.command(name="setup", help="Create the seed stack's services, routes, key-auth and admin consumer.",
                short_help="Configure the stack's services, routes and admin key.")(
        setup_command
    )


_register_setup()
