"""The docs stay in step with the code and the stack: settings tables, .env variables, service names, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from compose_file import ROOT, load_compose, read_env_file

from servegate.settings import SPEC

README = ROOT / "README.md"
USAGE = ROOT / "docs" / "usage.md"
CONFIG = ROOT / "docs" / "configuration.md"
SEEDS = sorted(Path("/work/shared/seeds").glob("*.txt"))


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """Rows of the markdown table whose header row starts with `first_header`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {first_header} |"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip("|").split(" | ")])
            return rows
    raise AssertionError(f"no table headed {first_header!r}")


def unquote(cell: str) -> str:
    return cell.strip().strip("`")


def test_configuration_reference_lists_every_setting_with_its_default() -> None:
    rows = {unquote(r[0]): r for r in table_rows(CONFIG.read_text(), "Setting")}
    assert set(rows) == set(SPEC)
    for name, (default, _parse, _doc) in SPEC.items():
        assert unquote(rows[name][1]) == f"SERVEGATE_{name.upper()}"
        assert unquote(rows[name][2]) == (default or "(empty)"), name


def test_readme_settings_table_matches_the_code() -> None:
    for row in table_rows(README.read_text(), "Setting"):
        names = [unquote(n) for n in row[0].split("/")]
        for name in names:
            assert name in SPEC, f"README lists unknown setting {name}"
        default = unquote(row[1])
        spec_default = SPEC[names[0]][0]
        if default not in ("(empty)", "<prefix>/servegate.db"):
            assert default == spec_default, names[0]
        elif default == "(empty)":
            assert spec_default == "", names[0]


@pytest.mark.parametrize("doc", [README, CONFIG])
def test_stack_variable_tables_match_env_example(doc: Path) -> None:
    env = read_env_file()
    header = "Variable"
    text = doc.read_text()
    if doc == CONFIG:
        text = text[text.index("## The Docker stack's variables") :]
    rows = {unquote(r[0]): unquote(r[1]) for r in table_rows(text, header)}
    for name, value in env.items():
        assert rows.get(name) == value, f"{doc.name}: {name}"


def compose_service_mentions(text: str) -> set[str]:
    return set(re.findall(r"docker compose (?:ps|logs(?: -f)?|restart|exec|run --rm) ([a-z][a-z0-9-]*)", text))


@pytest.mark.parametrize("doc", [README, USAGE, *SEEDS], ids=lambda p: p.name)
def test_docker_compose_commands_name_existing_services(doc: Path) -> None:
    services = set(load_compose({})["services"])
    mentioned = compose_service_mentions(doc.read_text())
    assert mentioned, f"{doc.name} mentions no compose service"
    assert mentioned <= services, mentioned - services


@pytest.mark.parametrize("doc", [README, USAGE, CONFIG], ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_seed_commands_are_kept_in_our_docs() -> None:
    """Each command line of the seed documents appears in our README or usage guide."""
    ours = README.read_text() + USAGE.read_text()
    kept_out = {"git clone <repo-url> && cd kong-serving-docker"}  # our repository has another name
    for seed in SEEDS:
        for line in seed.read_text().splitlines():
            line = line.strip()
            if not re.match(r"^(curl|docker|echo|cp|git) ", line) or line in kept_out:
                continue
            command = line.split("  #")[0].strip()
            assert command in ours, f"{seed.name}: {command}"
