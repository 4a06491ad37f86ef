"""Schema-test fixtures: throw-away plugin schemas registered only for the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from schema_cases import (
    AUTH,
    AUTH_CONFIG,
    LIMIT,
    LIMIT_CONFIG,
    NOROUTE,
    NOROUTE_CONFIG,
    NOSERVICE,
    one_window,
)

from servegate.schema.entities import HTTP_PROTOCOLS
from servegate.schema.plugins import register_plugin, unregister_plugin


@pytest.fixture
def test_plugins() -> Iterator[None]:
    register_plugin(
        AUTH,
        priority=1250,
        version="1.0.0",
        config=AUTH_CONFIG,
        no_consumer=True,
        protocols_default=HTTP_PROTOCOLS,
    )
    register_plugin(LIMIT, priority=910, version="1.0.0", config=LIMIT_CONFIG, entity_checks=(one_window,))
    register_plugin(NOROUTE, priority=1, version="1.0.0", config=NOROUTE_CONFIG, no_route=True)
    register_plugin(NOSERVICE, priority=1, version="1.0.0", config=NOROUTE_CONFIG, no_service=True)
    try:
        yield
    finally:
        for name in (AUTH, LIMIT, NOROUTE, NOSERVICE):
            unregister_plugin(name)
