"""The cron parser and next-time computation of the CronJob controller, with cases from
robfig/cron v3's parser_test.go and spec_test.go (the library upstream uses), DST included."""
from __future__ import annotations

import datetime as dt

import pytest

from kubelab.api.batch.cron import CronError, load_zone, parse

UTC = dt.timezone.utc


def at(s: str, tz: str = "UTC") -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=load_zone(tz))


@pytest.mark.parametrize("spec,after,want", [
    ("* * * * *", "2024-01-01T10:00:00", "2024-01-01T10:01:00"),
    ("* * * * *", "2024-01-01T10:00:30", "2024-01-01T10:01:00"),
    ("0 * * * *", "2024-01-01T10:00:00", "2024-01-01T11:00:00"),
    ("*/15 * * * *", "2024-01-01T10:07:00", "2024-01-01T10:15:00"),
    ("5-20/5 * * * *", "2024-01-01T10:20:00", "2024-01-01T11:05:00"),
    ("10/20 * * * *", "2024-01-01T10:31:00", "2024-01-01T10:50:00"),
    ("0 0 1 1 *", "2024-06-01T00:00:00", "2025-01-01T00:00:00"),
    ("@yearly", "2024-06-01T00:00:00", "2025-01-01T00:00:00"),
    ("@annually", "2024-06-01T00:00:00", "2025-01-01T00:00:00"),
    ("@monthly", "2024-01-31T12:00:00", "2024-02-01T00:00:00"),
    ("@weekly", "2024-01-03T12:00:00", "2024-01-07T00:00:00"),     # Sunday
    ("@daily", "2024-02-28T12:00:00", "2024-02-29T00:00:00"),
    ("@midnight", "2024-12-31T23:59:00", "2025-01-01T00:00:00"),
    ("@hourly", "2024-01-01T10:59:59", "2024-01-01T11:00:00"),
    ("0 9 * jan,MAR *", "2024-01-31T10:00:00", "2024-03-01T09:00:00"),
    ("0 9 * * MON-fri", "2024-01-05T10:00:00", "2024-01-08T09:00:00"),   # Fri -> Mon
    ("0 0 29 2 *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),
    # both day fields restricted: either matches; one is a star: both must
    ("0 0 1,15 * 1", "2024-01-01T00:00:00", "2024-01-08T00:00:00"),
    ("0 0 13 * 5", "2024-01-01T00:00:00", "2024-01-05T00:00:00"),
    ("0 0 * * 5", "2024-01-01T00:00:00", "2024-01-05T00:00:00"),
    ("0 0 ? * 0", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),
    ("0 0 */2 * 1", "2024-01-02T00:00:00", "2024-01-03T00:00:00"),      # */2 is no star: OR
])
def test_next(spec, after, want):
    assert parse(spec).next(at(after)) == at(want)


def test_never_matching_schedule_gives_none():
    assert parse("0 0 30 2 *").next(at("2024-01-01T00:00:00")) is None


def test_every():
    s = parse("@every 1h30m")
    assert s.next(at("2024-01-01T10:00:00.5")) == at("2024-01-01T11:30:00")


@pytest.mark.parametrize("tz,spec,after,want", [
    # spring forward (2024-03-10 02:00 EST -> 03:00 EDT): 02:30 does not exist that day
    ("America/New_York", "30 2 * * *", "2024-03-09T03:00:00", "2024-03-11T02:30:00"),
    ("America/New_York", "0 * * * *", "2024-03-10T01:00:00", "2024-03-10T03:00:00"),
    ("America/New_York", "0 3 * * *", "2024-03-10T00:00:00", "2024-03-10T03:00:00"),
    # fall back: 01:30 happens twice and fires twice (robfig's behaviour), in absolute time
    ("America/New_York", "30 1 * * *", "2024-11-03T00:00:00", "2024-11-03T05:30:00+00:00"),
    ("America/New_York", "30 1 * * *", "2024-11-03T05:30:00+00:00", "2024-11-03T06:30:00+00:00"),
    ("America/New_York", "30 1 * * *", "2024-11-03T06:30:00+00:00", "2024-11-04T06:30:00+00:00"),
    ("Europe/Berlin", "0 9 * * *", "2024-06-01T12:00:00", "2024-06-02T09:00:00"),
    ("Asia/Kolkata", "0 0 * * *", "2024-06-01T12:00:00", "2024-06-02T00:00:00"),
])
def test_next_in_time_zone(tz, spec, after, want):
    s = parse(spec, tz)
    a = dt.datetime.fromisoformat(after)
    a = a if a.tzinfo else a.replace(tzinfo=load_zone(tz))
    w = dt.datetime.fromisoformat(want)
    w = w if w.tzinfo else w.replace(tzinfo=load_zone(tz))
    got = s.next(a)
    assert got == w.astimezone(UTC)


def test_tz_prefix_in_spec():
    s = parse("TZ=Asia/Tokyo 0 9 * * *")
    assert s.next(at("2024-01-01T00:00:00")) == at("2024-01-02T00:00:00")   # 09:00 JST = 00:00Z
    assert parse("CRON_TZ=UTC 0 9 * * *").next(at("2024-01-01T00:00:00")) == at("2024-01-01T09:00:00")


@pytest.mark.parametrize("spec,msg", [
    ("", "empty spec string"),
    ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
    ("* * * * * *", "expected exactly 5 fields, found 6"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* 24 * * *", "end of range (24) above maximum (23): 24"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("* * * 13 *", "end of range (13) above maximum (12): 13"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/2/3 * * * *", "too many slashes: */2/3"),
    ("a * * * *", "failed to parse int from a"),
    ("* * * foo *", "failed to parse int from foo"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("TZ=Mars/Olympus 0 0 * * *", "provided bad location Mars/Olympus"),
])
def test_parse_errors(spec, msg):
    with pytest.raises(CronError) as e:
        parse(spec)
    assert msg in str(e.value)


def test_unknown_time_zone():
    with pytest.raises(CronError, match="unknown time zone Not/AZone"):
        parse("* * * * *", "Not/AZone")
    with pytest.raises(CronError):
        load_zone("../etc/passwd")
