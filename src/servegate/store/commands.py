"""`servegate migrations <cmd>`: runs a migration command and returns (exit code, lines to print).

Messages and exit codes follow `kong migrations` (list: 3 needs bootstrap, 4 pending finish,
5 new migrations available, 0 up to date), with the command name `servegate`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .migrations import MigrationRun

if TYPE_CHECKING:
    from . import Store

NEEDS_BOOTSTRAP = [
    "Database needs bootstrapping or is older than Kong 1.0.",
    "",
    "To start a new installation from scratch, run 'servegate migrations bootstrap'.",
]
NOT_A_TTY = "not a tty: invoke 'reset' non-interactively with the --yes flag"
COMMANDS = ("bootstrap", "up", "finish", "list", "status", "reset")


def _plural(n: int) -> str:
    return "migration" if n == 1 else "migrations"


def _run_lines(store: Store, run: MigrationRun) -> list[str]:
    db = store.backend.description
    lines: list[str] = []
    current = None
    for subsystem, name, state in run.ran:
        if subsystem != current:  # Kong announces each subsystem as it starts migrating it
            current = subsystem
            lines.append(f"migrating {subsystem} on database '{db}'...")
        lines.append(f"{subsystem} migrated up to: {name} ({state})")
    n = len(run.ran)
    executed = sum(1 for _, _, s in run.ran if s == "executed")
    pending = n - executed
    lines.append(f"{n} {_plural(n)} processed")
    if executed:
        lines.append(f"{executed} executed")
    if pending:
        lines.append(f"{pending} pending")
    return lines


def _listed(groups: dict[str, list[str]]) -> list[str]:
    """`kong migrations list`'s lines: one per subsystem, its name right-aligned to the longest one."""
    width = max((len(s) for s in groups), default=0)
    return [f"{s:>{width}}: " + ", ".join(names) for s, names in groups.items()]


async def migrations_cli(
    store: Store, command: str, *, yes: bool = False, force: bool = False
) -> tuple[int, list[str]]:
    """Run one migrations command against a connected store.

    `reset` needs yes=True: the CLI asks "Are you sure? This operation is irreversible." on a TTY
    and passes yes=True once confirmed.
    """
    if command not in COMMANDS:
        return 1, [f"unknown migrations command '{command}'"]
    st = await store.state()

    if command == "bootstrap":
        lines: list[str] = []
        if st.bootstrapped and not force:
            return 0, ["Database already bootstrapped"]
        if st.bootstrapped and force:
            await store.reset()
            lines += ["Resetting database...", "Database successfully reset"]
        run = await store.bootstrap()
        if run.already:  # another node bootstrapped it meanwhile
            return 0, [*lines, "Database already bootstrapped"]
        return 0, [*lines, "Bootstrapping database...", *_run_lines(store, run), "Database is up-to-date"]

    if command == "up":
        if not st.bootstrapped:
            return 1, ["Cannot run migrations: " + NEEDS_BOOTSTRAP[0], *NEEDS_BOOTSTRAP[1:]]
        if st.pending and not force:
            return 1, ["Database has pending migrations; run 'servegate migrations finish'"]
        if not st.new:
            return 0, ["Database is already up-to-date"]
        run = await store.up()
        lines = _run_lines(store, run)
        if any(s == "pending" for _, _, s in run.ran):
            lines += ["", "Database has pending migrations; run 'servegate migrations finish' when ready"]
        return 0, lines

    if command == "finish":
        if not st.bootstrapped:
            return 1, ["Cannot run migrations: " + NEEDS_BOOTSTRAP[0], *NEEDS_BOOTSTRAP[1:]]
        if not st.pending:
            if st.new:
                return 0, ["", "New migrations available; run 'servegate migrations up' to proceed"]
            return 0, ["No pending migrations to finish"]
        run = await store.finish()
        lines = _run_lines(store, run)
        if st.new:
            lines += ["", "New migrations available; run 'servegate migrations up' to proceed"]
        return 0, lines

    if command == "list":
        if not st.bootstrapped:
            return 3, list(NEEDS_BOOTSTRAP)
        lines = []
        for title, status in (
            ("Executed migrations:", "executed"),
            ("Pending migrations:", "pending"),
            ("New migrations available:", "new"),
        ):
            groups = st.by_subsystem(status)
            if groups:
                if lines:
                    lines.append("")
                lines += [title, *_listed(groups)]
        if st.new:
            return 5, [*lines, "", "Run 'servegate migrations up' to proceed"]
        if st.pending:
            return 4, [*lines, "", "Run 'servegate migrations finish' when ready"]
        return 0, lines

    if command == "status":
        return 0, [json.dumps(st.to_json())]

    # reset
    if not yes:
        return 1, [NOT_A_TTY]
    if not st.bootstrapped:
        return 1, ["Database not bootstrapped, nothing to reset"]
    await store.reset()
    return 0, ["Resetting database...", "Database successfully reset"]
