"""Shared field shapes (Kong's `typedefs.lua`): the building blocks every entity declaration uses.

Kept apart from the declarations themselves (entities.py, upstreams.py, plugins' daos) so that any of them can
import these without importing each other.
"""

from __future__ import annotations

from typing import Any

from servegate.schema import checks
from servegate.schema.fields import NO_DEFAULT, UNIQUE_MAX_BYTES, Check, Field


def uuid_field() -> Field:
    return Field("string", uuid=True, auto=True)


def timestamp_field() -> Field:
    """Kong's auto_timestamp_s: integer seconds."""
    return Field("integer", auto=True, timestamp=True)


def timestamp_ms_field() -> Field:
    """Kong's auto_timestamp_ms: seconds as a number with a millisecond fraction (targets)."""
    return Field("number", auto=True, timestamp=True)


def unique_string_field(*extra: Check, auto: bool = False, control_chars: bool = True) -> Field:
    """A unique string: bounded so that its index entry fits PostgreSQL's btree on both stores alike."""
    return Field(
        "string", unique=True, auto=auto, len_max=UNIQUE_MAX_BYTES, control_chars=control_chars, checks=extra
    )


def utf8_name_field() -> Field:
    return unique_string_field(checks.utf8_name)


def tags_field() -> Field:
    return Field("set", elements=Field("string", required=True, checks=(checks.tag,)))


def header_name_field() -> Field:
    return Field("string", checks=(checks.header_name,))


def path_field(default: Any = NO_DEFAULT) -> Field:
    """Kong's typedefs.path: starts with `/`, no empty segments, RFC 3986 characters, valid %-escapes."""
    return Field("string", default=default, starts_with="/", checks=(checks.service_path,))


def headers_field() -> Field:
    """Kong's typedefs.headers: header name -> array of values."""
    return Field("map", keys=header_name_field(), values=Field("array", elements=Field("string")))
