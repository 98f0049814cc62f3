"""Cron schedules as upstream reads them (robfig/cron v3's ParseStandard), for the CronJob
validation (spec.schedule, spec.timeZone) and the CronJob controller.

Five fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists `a,b`, ranges
`a-b`, steps `*/n`, `a-b/n` and `a/n` (a to the maximum), month names jan-dec and day names sun-sat
(any case); the descriptors @yearly/@annually, @monthly, @weekly, @daily/@midnight, @hourly and
`@every <duration>`; a `TZ=` or `CRON_TZ=` prefix. As robfig, when both day fields are restricted a
day matches either of them; when one of them is `*` (or `?`) both must match.

`Schedule.next(t)` is the first activation strictly after t (in UTC), computed on wall-clock
fields in the schedule's time zone: a time that does not exist on a spring-forward day is skipped, a time that
occurs twice on a fall-back day fires twice (robfig's behaviour). None when nothing matches within
five years (e.g. "0 0 30 2 *"). Error messages are robfig's, which upstream puts in its events.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kubelab.api.duration import parse_duration

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)

MONTHS = {n: i + 1 for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                         "nov", "dec"))}
DAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

# field: (minimum, maximum, names)
FIELDS = ((0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTHS), (0, 6, DAYS))

DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class CronError(ValueError):
    """An unparseable schedule or an unknown time zone."""


def load_zone(name: str) -> dt.tzinfo:
    """An IANA time zone ("" and "UTC" are UTC, "Local" the host's); CronError when unknown."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return dt.datetime.now().astimezone().tzinfo or UTC
    try:
        if name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name}") from None


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]
    dom_star: bool
    dow_star: bool
    tz: dt.tzinfo = UTC
    every: float = 0.0          # seconds, for "@every"

    def day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.doms
        dow = (t.isoweekday() % 7) in self.dows
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after `after` (an aware datetime), in UTC (an ambiguous
        wall time with fold=1 never compares equal across zones in Python, so UTC it is)."""
        if self.every:
            return after.astimezone(UTC).replace(microsecond=0) + dt.timedelta(seconds=self.every)
        tz = self.tz
        u = after.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
        t = u.astimezone(tz)
        limit = t.year + 5
        while t.year <= limit:
            if t.month not in self.months:
                y, m = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = _local(y, m, 1, tz)
                continue
            if not self.day_matches(t):
                t = _local_next_day(t, tz)
                continue
            if t.hour not in self.hours:
                t = _add(t, dt.timedelta(minutes=60 - t.minute))
                continue
            if t.minute not in self.minutes:
                later = min((m for m in self.minutes if m > t.minute), default=60)
                t = _add(t, dt.timedelta(minutes=later - t.minute))
                continue
            return t.astimezone(UTC)
        return None


def _add(t: dt.datetime, d: dt.timedelta) -> dt.datetime:
    """Absolute-time addition (aware datetimes add on the wall clock in Python)."""
    return (t.astimezone(UTC) + d).astimezone(t.tzinfo)


def _local(y: int, m: int, d: int, tz: dt.tzinfo) -> dt.datetime:
    """Midnight of a date in `tz`, moved forward when a DST gap swallows it."""
    return dt.datetime(y, m, d, tzinfo=tz).astimezone(UTC).astimezone(tz)


def _local_next_day(t: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    d = t.date() + dt.timedelta(days=1)
    return _local(d.year, d.month, d.day, tz)


def _number(text: str, names: dict[str, int] | None, expr: str) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    return _int(text, expr)


def _int(text: str, expr: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise CronError(f"failed to parse int from {text}: strconv.Atoi: parsing {text!r}: invalid syntax") \
            from None
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {expr}")
    return n


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None) -> tuple[frozenset[int], bool]:
    """A field's values and whether it is a star (robfig's starBit)."""
    values: set[int] = set()
    star = False
    for expr in text.split(","):
        range_step = expr.split("/")
        low_high = range_step[0].split("-")
        extra = False
        if low_high[0] in ("*", "?"):
            start, end, extra = lo, hi, True
        else:
            start = _number(low_high[0], names, expr)
            if len(low_high) == 1:
                end = start
            elif len(low_high) == 2:
                end = _number(low_high[1], names, expr)
            else:
                raise CronError(f"too many hyphens: {expr}")
        if len(range_step) == 1:
            step = 1
        elif len(range_step) == 2:
            step = _int(range_step[1], expr)
            if len(low_high) == 1:
                end = hi
            if step > 1:
                extra = False
        else:
            raise CronError(f"too many slashes: {expr}")
        if start < lo:
            raise CronError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
        if end > hi:
            raise CronError(f"end of range ({end}) above maximum ({hi}): {expr}")
        if start > end:
            raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
        if step == 0:
            raise CronError(f"step of range should be a positive number: {expr}")
        values.update(range(start, end + 1, step))
        star = star or extra
    return frozenset(values), star


def parse(spec: str, time_zone: str | None = None) -> Schedule:
    """Parse a standard cron spec; `time_zone` (spec.timeZone) applies unless the spec names one."""
    s = spec.strip()
    if not s:
        raise CronError("empty spec string")
    tz = load_zone(time_zone) if time_zone is not None else UTC
    if s.startswith("TZ=") or s.startswith("CRON_TZ="):
        head, _, rest = s.partition(" ")
        name = head.split("=", 1)[1]
        try:
            tz = load_zone(name)
        except CronError as e:
            raise CronError(f"provided bad location {name}: {e}") from None
        s = rest.strip()
    if s.startswith("@"):
        if s.startswith("@every "):
            try:
                seconds = parse_duration(s[len("@every "):])
            except ValueError as e:
                raise CronError(f"failed to parse duration {s}: {e}") from None
            if seconds <= 0:
                raise CronError(f"failed to parse duration {s}: must be positive")
            every = max(1.0, float(int(seconds)))
            allv = frozenset()
            return Schedule(allv, allv, allv, allv, allv, True, True, tz, every)
        if s not in DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {s}")
        s = DESCRIPTORS[s]
    parts = s.split()
    if len(parts) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(parts)}: {s}")
    (minutes, _), (hours, _), (doms, dom_star), (months, _), (dows, dow_star) = (
        _field(p, lo, hi, names) for p, (lo, hi, names) in zip(parts, FIELDS))
    return Schedule(minutes, hours, doms, months, dows, dom_star, dow_star, tz)
