"""Wall-clock time of each phase of the compose end-to-end run, and notes, printed at the end of the session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

TIMES: list[tuple[str, float]] = []
NOTES: list[str] = []


@contextmanager
def timed(phase: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMES.append((phase, time.monotonic() - start))


def report() -> list[str]:
    lines = [f"{seconds:8.1f}s  {phase}" for phase, seconds in TIMES]
    return lines + [f"note: {n}" for n in NOTES]
