"""The balancer's end-to-end tests: real `servegate start` nodes (SQLite) in front of fake replicas
(replica.py), all over loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import Servegate


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., Servegate]]:
    """`gateway(workers=1)` starts a node (access log off: tens of thousands of requests go through)."""
    started: list[Servegate] = []

    def start(workers: int = 1, **env: str) -> Servegate:
        sg = Servegate(workers=workers, prefix=str(tmp_path / f"node{len(started)}"),
                       extra_env={"SERVEGATE_PROXY_ACCESS_LOG": "off", **env})
        started.append(sg)
        return sg.start()

    yield start
    for sg in started:
        sg.stop()
