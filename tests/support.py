"""Test utilities shared by every area: free ports, throw-away PostgreSQL databases.

Imported by name (`from support import free_port`); conftest.py files are not importable by name when
several test folders have one.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from urllib.parse import urlsplit, urlunsplit

PG_DSN = os.environ.get("SERVEGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# Ports handed out by free_port() are taken from below the kernel's ephemeral range (32768-60999 by default):
# a port the kernel picked for bind(0) and then released can be picked again at once as the local port of any
# outgoing loopback connection, and the node that meant to listen on it then fails with "address already in use"
# (seen in CI). Ports are not handed out twice by one test process.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(1000):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def _with_db(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


def _admin_exec(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_pg_database(prefix: str = "servegate_test") -> tuple[str, str]:
    """Create a uniquely named database; returns (name, dsn)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    return name, _with_db(PG_DSN, name)


def drop_pg_database(name: str) -> None:
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
