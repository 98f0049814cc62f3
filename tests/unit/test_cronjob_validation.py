"""CronJob validation with upstream's messages (pkg/apis/batch/validation): the schedule parsed as
robfig/cron does, no TZ= in it, an explicit IANA timeZone, non-negative limits, a name that leaves
room for the scheduled time suffix."""
from __future__ import annotations

import pytest

from kubelab.api.batch import KINDS

CRONJOB = next(k for k in KINDS if k.kind == "CronJob")


def cronjob(**spec):
    base = {"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                                                           "containers": [{"name": "c", "image": "busybox"}]}}}}}
    base.update(spec)
    return {"metadata": {"name": "cj", "namespace": "default"}, "spec": base}


def messages(obj):
    return [e.message() for e in CRONJOB.validate(obj)]


@pytest.mark.parametrize("spec", [
    {}, {"schedule": "@hourly"}, {"schedule": "0 9 * jan-mar MON-FRI"}, {"timeZone": "Europe/Berlin"},
    {"timeZone": "America/Argentina/Buenos_Aires"}, {"timeZone": "Etc/GMT+5"}, {"startingDeadlineSeconds": 0},
])
def test_valid(spec):
    assert messages(cronjob(**spec)) == []


@pytest.mark.parametrize("spec,want", [
    ({"schedule": "61 * * * *"},
     'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
    ({"schedule": "* * * *"},
     'spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4: * * * *'),
    ({"schedule": "@fortnightly"},
     'spec.schedule: Invalid value: "@fortnightly": unrecognized descriptor: @fortnightly'),
    ({"schedule": "TZ=UTC 0 * * * *"},
     'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone '
     'field instead'),
    ({"timeZone": "Mars/Olympus_Mons"},
     'spec.timeZone: Invalid value: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons'),
    ({"timeZone": "../../etc/passwd"},
     'spec.timeZone: Invalid value: "../../etc/passwd": unknown time zone ../../etc/passwd'),
    ({"timeZone": ""}, 'spec.timeZone: Invalid value: "": timeZone must be nil or non-empty string'),
    ({"timeZone": "Local"}, 'spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as '
                            'defined in https://www.iana.org/time-zones'),
    ({"startingDeadlineSeconds": -1},
     "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"),
    ({"successfulJobsHistoryLimit": -1},
     "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0"),
])
def test_invalid(spec, want):
    assert want in messages(cronjob(**spec))


def test_name_leaves_room_for_the_job_suffix():
    obj = cronjob()
    obj["metadata"]["name"] = "x" * 53
    assert f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters' in messages(obj)
