"""The CronJob controller's pure decisions, with cases after upstream's cronjob utils_test.go and
cronjob_controllerv2_test.go: due times, missed starts, startingDeadlineSeconds, Forbid/Replace,
job names and annotations, history limits."""
from __future__ import annotations

import datetime as dt

import pytest

from kubelab.api.batch.cron import load_zone, parse
from kubelab.controller.cronjob.decide import (SCHEDULED_TIMESTAMP, decide, history_to_delete, job_from_template,
                                               job_name, most_recent_schedule_time, next_requeue)

UTC = dt.timezone.utc


def t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


def cj(created="2024-01-01T10:00:00Z", last=None, active=(), policy="Allow", deadline=None, tz=None):
    spec = {"schedule": "0 * * * *", "concurrencyPolicy": policy,
            "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": {"template": {"spec": {}}}}}
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    if tz:
        spec["timeZone"] = tz
    status = {"active": [{"name": n, "uid": n} for n in active]}
    if last:
        status["lastScheduleTime"] = last
    return {"metadata": {"name": "hourly", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": created},
            "spec": spec, "status": status}


HOURLY = parse("0 * * * *")


def test_job_name_is_minutes_since_epoch():
    assert job_name("hourly", t("2024-01-01T11:00:00")) == f"hourly-{1704106800 // 60}"


@pytest.mark.parametrize("now,want,missed", [
    ("2024-01-01T10:30:00", None, "none"),
    ("2024-01-01T11:00:00", "2024-01-01T11:00:00", "few"),
    ("2024-01-01T11:59:00", "2024-01-01T11:00:00", "few"),
    ("2024-01-01T15:10:00", "2024-01-01T15:00:00", "few"),
    ("2024-01-06T10:30:00", "2024-01-06T10:00:00", "many"),      # 120 missed hourly starts
])
def test_most_recent_schedule_time(now, want, missed):
    _, recent, m = most_recent_schedule_time(cj(), t(now), HOURLY, True)
    assert (recent == t(want) if want else recent is None) and m == missed


def test_starting_deadline_bounds_the_missed_count():
    _, recent, m = most_recent_schedule_time(cj(deadline=3600), t("2024-01-06T10:30:00"), HOURLY, True)
    assert recent == t("2024-01-06T10:00:00") and m == "few"


def test_decide_start_and_done():
    d = decide(cj(), t("2024-01-01T11:00:05"), HOURLY)
    assert d.action == "start" and d.scheduled == t("2024-01-01T11:00:00") and not d.too_many_missed
    assert decide(cj(last="2024-01-01T11:00:00Z"), t("2024-01-01T11:00:05"), HOURLY).action == "wait"
    name = job_name("hourly", t("2024-01-01T11:00:00"))
    # already started but the status write lagged: the job is in the active list by name
    assert decide(cj(active=[name]), t("2024-01-01T11:00:05"), HOURLY).action == "done"


def test_decide_too_many_missed_starts_only_the_latest():
    d = decide(cj(), t("2024-01-06T10:30:00"), HOURLY)
    assert d.action == "start" and d.too_many_missed and d.scheduled == t("2024-01-06T10:00:00")


def test_decide_missed_deadline():
    d = decide(cj(deadline=60), t("2024-01-01T11:05:00"), HOURLY)
    assert d.action == "wait"            # the deadline moved earliest past 11:00: nothing due
    d = decide(cj(deadline=200), t("2024-01-01T11:03:00"), HOURLY)
    assert d.action == "start"
    # past the deadline the due time is never started (upstream moves the earliest time to
    # now - startingDeadlineSeconds, so it is simply not due any more)
    d = decide(cj(deadline=200, last="2024-01-01T10:00:00Z"), t("2024-01-01T11:03:21"), HOURLY)
    assert d.action == "wait"


@pytest.mark.parametrize("policy,active,action,replace", [
    ("Allow", ["old"], "start", ()),
    ("Forbid", ["old"], "forbid", ()),
    ("Forbid", [], "start", ()),
    ("Replace", ["old", "older"], "start", ("old", "older")),
    ("Replace", [], "start", ()),
])
def test_concurrency_policy(policy, active, action, replace):
    d = decide(cj(policy=policy, active=active), t("2024-01-01T11:00:05"), HOURLY)
    assert d.action == action and d.replace == replace


def test_next_requeue():
    assert next_requeue(cj(), t("2024-01-01T10:30:00"), HOURLY) == pytest.approx(1800.1)
    assert next_requeue(cj(last="2024-01-01T11:00:00Z"), t("2024-01-01T11:00:05"), HOURLY) == \
        pytest.approx(3595.1)


def test_job_from_template_in_time_zone():
    c = cj(tz="Europe/Berlin")
    job = job_from_template(c, t("2024-07-01T08:00:00"), load_zone("Europe/Berlin"))
    m = job["metadata"]
    assert m["name"] == job_name("hourly", t("2024-07-01T08:00:00"))
    assert m["annotations"][SCHEDULED_TIMESTAMP] == "2024-07-01T10:00:00+02:00"
    assert m["labels"] == {"app": "x"}
    assert m["ownerReferences"][0]["kind"] == "CronJob" and m["ownerReferences"][0]["controller"] is True
    utc = job_from_template(cj(), t("2024-07-01T08:00:00"), UTC)
    assert utc["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2024-07-01T08:00:00Z"


def _job(name, cond, start):
    return {"metadata": {"name": name}, "status": {"startTime": start,
                                                   "conditions": [{"type": cond, "status": "True"}] if cond else []}}


def test_history_limits():
    c = cj()
    c["spec"].update(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1)
    jobs = [_job("s1", "Complete", "2024-01-01T01:00:00Z"), _job("s2", "Complete", "2024-01-01T02:00:00Z"),
            _job("s3", "Complete", "2024-01-01T03:00:00Z"), _job("f1", "Failed", "2024-01-01T01:30:00Z"),
            _job("f2", "Failed", "2024-01-01T02:30:00Z"), _job("run", None, "2024-01-01T00:00:00Z")]
    assert [j["metadata"]["name"] for j in history_to_delete(c, jobs)] == ["s1", "f1"]
    c["spec"]["successfulJobsHistoryLimit"] = 0
    assert [j["metadata"]["name"] for j in history_to_delete(c, jobs)] == ["s1", "s2", "s3", "f1"]
