"""The API's two time formats, one place: metav1.Time ("2026-12-07T08:00:00Z", whole seconds, UTC)
and metav1.MicroTime ("2026-12-07T08:00:00.123456Z"), written from and read to POSIX seconds."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any


def rfc3339(t: float | None = None) -> str:
    """metav1.Time for POSIX time `t` (now when None), truncated to the second."""
    return dt.datetime.fromtimestamp(int(time.time() if t is None else t), dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """metav1.Time now."""
    return rfc3339()


def rfc3339_after(seconds: float) -> str:
    """metav1.Time `seconds` from now."""
    return rfc3339(time.time() + seconds)


def micro_time(t: float | dt.datetime | None = None) -> str:
    """metav1.MicroTime for POSIX time or datetime `t` (now when None)."""
    if t is None:
        d = dt.datetime.now(dt.timezone.utc)
    elif isinstance(t, dt.datetime):
        d = t.astimezone(dt.timezone.utc)
    else:
        d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: Any) -> float | None:
    """POSIX seconds of a Time or MicroTime string (any RFC 3339 offset); None when empty or invalid."""
    if not s:
        return None
    try:
        d = dt.datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()
