"""The Prometheus text format (version 0.0.4), written the way prometheus_client's `generate_latest` writes it.

Byte for byte the same output as `generate_latest` over the equivalent metric families (label names sorted,
numbers as Go prints them, `# HELP` then `# TYPE` per family, histogram buckets then `_count` and `_sum`), with
one difference on purpose: a counter keeps the name it is declared with, as Kong names them (`kong_bandwidth_bytes`
is a counter without `_total`; prometheus_client would append it). It is also faster: label strings are built
once per series, not per sample object (tests/plugins/prometheus compares both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from servegate.plugins.prometheus.families import HISTOGRAM, Family

CONTENT_TYPE = "text/plain; charset=UTF-8"


def number(value: float) -> str:
    """A sample value as prometheus_client (and Go) writes it: `1.0`, `0.25`, `+Inf`, and an exponent from
    10 million up (`1.2345678e+07`), where Python's repr would still write every digit."""
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        digits = (s[:dot] + s[dot + 1:]).rstrip("0")
        mantissa = digits[0] + "." + digits[1:] if len(digits) > 1 else digits[0]
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def bound(value: float) -> str:
    """A bucket bound for `le`, as Kong writes it: `25`, `0.005` (no trailing `.0`)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


class _Layout:
    """A family's label names in output order (sorted), with where `le` goes for a histogram."""

    __slots__ = ("order", "le_at", "les", "names")

    def __init__(self, family: Family) -> None:
        names = list(family.labels)
        self.order = sorted(range(len(names)), key=lambda i: names[i])
        self.names = [names[i] for i in self.order]
        self.le_at = sum(1 for n in names if n < "le")
        self.les = [bound(b) for b in family.buckets] + ["+Inf"]

    def pairs(self, labels: tuple[str, ...]) -> list[str]:
        return [f'{name}="{_escape(labels[i])}"' for name, i in zip(self.names, self.order, strict=True)]


_layouts: dict[str, _Layout] = {}


def _layout(family: Family) -> _Layout:
    got = _layouts.get(family.name)
    if got is None:
        got = _layouts[family.name] = _Layout(family)
    return got


def render(families: Iterable[tuple[Family, dict[tuple[str, ...], Any]]]) -> bytes:
    """The text exposition of `families` (each with its series: label values -> cell), families without
    series left out (as Kong leaves out a family nothing was recorded for)."""
    out: list[str] = []
    for family, series in families:
        if not series:
            continue
        name = family.name
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.kind}\n")
        lay = _layout(family)
        if family.kind == HISTOGRAM:
            _histogram(out, name, lay, series)
            continue
        for labels in sorted(series):
            pairs = lay.pairs(labels)
            if pairs:
                out.append(f"{name}{{{','.join(pairs)}}} {number(series[labels])}\n")
            else:
                out.append(f"{name} {number(series[labels])}\n")
    return "".join(out).encode()


def _histogram(out: list[str], name: str, lay: _Layout, series: dict[tuple[str, ...], Any]) -> None:
    les = lay.les
    at = lay.le_at
    for labels in sorted(series):
        cell = series[labels]
        pairs = lay.pairs(labels)
        head = ",".join(pairs[:at])
        tail = ",".join(pairs[at:])
        before = f"{name}_bucket{{{head}," if head else f"{name}_bucket{{"
        after = f",{tail}}} " if tail else "} "
        total = 0
        for i, le in enumerate(les):
            total += cell[i]
            out.append(f'{before}le="{le}"{after}{number(total)}\n')
        plain = ",".join(pairs)
        braces = f"{{{plain}}}" if plain else ""
        out.append(f"{name}_count{braces} {number(total)}\n{name}_sum{braces} {number(cell[-1])}\n")
