"""Which build the suite runs against: scripts/test's compiled pass must really import the compiled modules."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "setup.py"


def _hot_modules() -> list[str]:
    paths = re.findall(r'"src/(servegate/[\w/]+)\.py"', SETUP.read_text())
    return [p.replace("/", ".") for p in paths]


def test_hot_module_list_names_real_modules() -> None:
    mods = _hot_modules()
    assert "servegate.proxy.exchange" in mods and len(mods) >= 10
    for name in mods:
        importlib.import_module(name)


@pytest.mark.skipif(os.environ.get("SERVEGATE_EXPECT_COMPILED") != "1", reason="pure-Python pass")
def test_compiled_build_is_the_one_imported() -> None:
    for name in _hot_modules():
        path = importlib.import_module(name).__file__ or ""
        assert path.endswith(".so"), f"{name} imported from {path}"
