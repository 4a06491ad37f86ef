"""The compose end-to-end test runs only when asked: SERVEGATE_COMPOSE_E2E=1 (scripts/compose-e2e and .ci/run
set it). It needs root and a Docker engine it may install and start, and takes minutes, so a plain
`bash scripts/test` run skips it."""

from __future__ import annotations

import os

import phases
import pytest

ENABLED = os.environ.get("SERVEGATE_COMPOSE_E2E") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="compose end-to-end test: run scripts/compose-e2e (or SERVEGATE_COMPOSE_E2E=1)")
    for item in items:
        if "compose_e2e" in item.nodeid:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if phases.TIMES or phases.NOTES:
        terminalreporter.section("compose end-to-end: phases")
        for line in phases.report():
            terminalreporter.write_line(line)
