"""Kong-style page offsets: base64 (standard alphabet, no padding) of the JSON array of the last pk."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from servegate.schema import errors as _errors

MAX_SIZE = 1000
MAX_TAGS = 5


def encode_offset(pk_values: list[Any]) -> str:
    raw = json.dumps(pk_values, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode().rstrip("=")


def decode_offset(offset: str, pk_len: int) -> list[Any]:
    padded = offset + "=" * (-len(offset) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise _errors.invalid_offset(offset, "bad base64 encoding") from None
    try:
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _errors.invalid_offset(offset, "bad json encoding") from None
    if not isinstance(values, list) or len(values) != pk_len or not all(isinstance(v, str) for v in values):
        # every primary key here is made of strings; another type cannot be compared with them
        raise _errors.invalid_offset(offset, "bad json encoding")
    return values


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise _errors.invalid_size("size must be a number")
    if size != int(size) or not 1 <= size <= MAX_SIZE:
        raise _errors.invalid_size(f"size must be an integer between 1 and {MAX_SIZE}")
    return int(size)
