"""batch/v1 kinds: Job and CronJob."""
from __future__ import annotations

import re

from .. import validation as v
from ..apps import default_template, validate_selector_and_template
from ..core import pods
from ..registry import Kind
from . import cron


def _default_job(job: dict) -> None:
    spec = job.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False) if spec.get("manualSelector") is not None else None
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    default_template(job)


def _job_create(job: dict) -> None:
    """Generated selector and labels, as upstream's job strategy does (unless manualSelector)."""
    spec = job.get("spec") or {}
    uid = job["metadata"]["uid"]
    name = job["metadata"].get("name", "")
    if not spec.get("manualSelector"):
        labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                  "controller-uid": uid, "job-name": name}
        tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    job["status"] = {}


def _validate_job(job: dict) -> list:
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec", "")]
    errs: list = []
    if spec.get("selector") is not None or spec.get("manualSelector"):
        errs += validate_selector_and_template(job)
    else:
        tpl = spec.get("template")
        if not isinstance(tpl, dict):
            errs.append(v.required("spec.template", ""))
        else:
            errs += pods.validate_pod_spec(tpl.get("spec"), "spec.template.spec")
    rp = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        errs.append(v.not_supported("spec.template.spec.restartPolicy", rp or "", ["OnFailure", "Never"]))
    for name in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        val = spec.get(name)
        if val is not None and (not isinstance(val, int) or val < 0):
            errs.append(v.invalid(f"spec.{name}", val, "must be greater than or equal to 0"))
    cm = spec.get("completionMode")
    if cm is not None and cm not in ("NonIndexed", "Indexed"):
        errs.append(v.not_supported("spec.completionMode", cm, ["NonIndexed", "Indexed"]))
    if cm == "Indexed" and spec.get("completions") is None:
        errs.append(v.required("spec.completions", "when completion mode is Indexed"))
    return errs


def _validate_job_update(new: dict, old: dict) -> list:
    errs = _validate_job(new)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if ns.get("selector") != os_.get("selector"):
        errs.append(v.invalid("spec.selector", ns.get("selector"), "field is immutable"))
    if ns.get("template") != os_.get("template") and not ns.get("suspend"):
        errs.append(v.invalid("spec.template", ns.get("template"), "field is immutable"))
    if ns.get("completionMode") != os_.get("completionMode"):
        errs.append(v.invalid("spec.completionMode", ns.get("completionMode"), "field is immutable"))
    return errs


def _default_cronjob(cj: dict) -> None:
    spec = cj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict):
        _default_job(jt)


_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def _validate_schedule(sched: str) -> list:
    """upstream validateScheduleFormat: robfig's parse error; no TZ in the schedule."""
    errs = []
    try:
        cron.parse(sched)
    except cron.CronError as e:
        errs.append(v.invalid("spec.schedule", sched, str(e)))
    if "TZ" in sched:
        errs.append(v.invalid("spec.schedule", sched, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return errs


def _validate_time_zone(tz: object) -> list:
    """upstream validateTimeZone."""
    if tz is None:
        return []
    if not isinstance(tz, str) or not tz:
        return [v.invalid("spec.timeZone", tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [v.invalid("spec.timeZone", tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [v.invalid("spec.timeZone", tz,
                          "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")]
    try:
        cron.load_zone(tz)
    except cron.CronError as e:
        return [v.invalid("spec.timeZone", tz, str(e))]
    return []


def _validate_cronjob(cj: dict) -> list:
    spec = cj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec", "")]
    errs = []
    name = (cj.get("metadata") or {}).get("name") or ""
    if len(name) > 52:           # <name>-<11 digits> must stay a DNS-1035 label
        errs.append(v.invalid("metadata.name", name, "must be no more than 52 characters"))
    sched = spec.get("schedule")
    if not sched:
        errs.append(v.required("spec.schedule", ""))
    elif not isinstance(sched, str):
        errs.append(v.invalid("spec.schedule", sched, "unparseable schedule"))
    else:
        errs += _validate_schedule(sched)
    if "timeZone" in spec:
        errs += _validate_time_zone(spec["timeZone"])
    for name in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        val = spec.get(name)
        if val is not None and (not isinstance(val, int) or val < 0):
            errs.append(v.invalid(f"spec.{name}", val, "must be greater than or equal to 0"))
    cp = spec.get("concurrencyPolicy", "Allow")
    if cp not in ("Allow", "Forbid", "Replace"):
        errs.append(v.not_supported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        errs.append(v.required("spec.jobTemplate", ""))
    else:
        for e in _validate_job({"spec": jt.get("spec")}):
            e.field = "spec.jobTemplate." + e.field
            errs.append(e)
    return errs


KINDS = [
    Kind("batch", "v1", "Job", "jobs", categories=("all",), subresources=("status",), defaults=_default_job,
         validate=_validate_job, validate_update=_validate_job_update, prepare_create=_job_create),
    Kind("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=("all",), subresources=("status",),
         defaults=_default_cronjob, validate=_validate_cronjob),
]
