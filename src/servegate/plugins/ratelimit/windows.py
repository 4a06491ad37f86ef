"""Rate-limit windows: calendar-aligned in UTC (second, minute :00, hour, day 00:00, month 1st, year Jan 1)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

PERIODS: tuple[str, ...] = ("second", "minute", "hour", "day", "month", "year")

# Window length in seconds as Kong counts it (a month is 30 days, a year 365 days): used for
# RateLimit-Reset and counter expiry.
EXPIRATION: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 2592000,
    "year": 31536000,
}

TITLE: dict[str, str] = {p: p.capitalize() for p in PERIODS}

_FIXED = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# Month/year starts change at most once a day: cache them per UTC day.
_cal_cache: tuple[int, int, int] = (-1, 0, 0)


def _calendar_starts(now: int) -> tuple[int, int]:
    global _cal_cache
    day = now // 86400
    if _cal_cache[0] != day:
        d = datetime.fromtimestamp(now, UTC)
        month = calendar.timegm((d.year, d.month, 1, 0, 0, 0))
        year = calendar.timegm((d.year, 1, 1, 0, 0, 0))
        _cal_cache = (day, month, year)
    return _cal_cache[1], _cal_cache[2]


def window_start(period: str, now: int) -> int:
    """Start (epoch seconds) of the window of `period` containing `now` (integer seconds)."""
    n = _FIXED.get(period)
    if n is not None:
        return now - now % n
    month, year = _calendar_starts(now)
    return month if period == "month" else year


def reset_seconds(period: str, now: int, start: int) -> int:
    """RateLimit-Reset for a window: max(1, window length - elapsed)."""
    return max(1, EXPIRATION[period] - (now - start))
