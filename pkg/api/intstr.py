"""IntOrString values as apimachinery reads them (maxSurge, maxUnavailable, minAvailable...)."""
from __future__ import annotations

import math


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """GetScaledValueFromIntOrPercent: an int as is, "N%" of total rounded up or down; a string
    that is not a percentage is an error, as upstream."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value {value!r}: want an integer or a percentage")
    if isinstance(value, int):
        return value
    s = str(value)
    if not s.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {s!r}")
    try:
        pct = int(s[:-1])
    except ValueError:
        raise ValueError(f"invalid value {s!r}: not a percentage") from None
    v = pct * total / 100
    return int(math.ceil(v)) if round_up else int(math.floor(v))
