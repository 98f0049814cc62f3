"""Pod re-creation backoff after failures, as upstream's backoff_utils.go: failures since the last
success, the time of the last failure, and a delay of 10 s doubling per further failure, capped at
upstream's MaxJobPodFailureBackOff (10 minutes in job_controller.go)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelab.api.tables import parse_time

Obj = dict[str, Any]

DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 600.0


@dataclass(frozen=True)
class BackoffRecord:
    failures_after_last_success: int = 0
    last_failure_time: float | None = None


def delay(failures: int, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """The backoff before the next pod after `failures` failures in a row (0 when none)."""
    if failures <= 0:
        return 0.0
    d = base
    for _ in range(1, failures):
        d *= 2
        if d > cap:
            return cap
    return d


def remaining(record: BackoffRecord, now: float, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """Seconds left before pods may be created again."""
    if record.failures_after_last_success == 0 or record.last_failure_time is None:
        return 0.0
    d = delay(record.failures_after_last_success, base, cap)
    elapsed = now - record.last_failure_time
    return 0.0 if d < elapsed else d - elapsed


def finish_time(pod: Obj, now: float) -> float:
    """When a pod finished: its last container's finishedAt, else its deletion or Ready transition."""
    st = pod.get("status") or {}
    latest: float | None = None
    for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
        t = parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t.timestamp() > latest):
            latest = t.timestamp()
    if latest is not None:
        return latest
    t = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
    if t is not None:
        return t.timestamp()
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "False":
            t = parse_time(c.get("lastTransitionTime"))
            if t is not None:
                return t.timestamp()
    return now


def new_record(old: BackoffRecord, succeeded: list[Obj], failed: list[Obj], now: float) -> BackoffRecord:
    """The record after newly counted pods (upstream's newBackoffRecord)."""
    if not succeeded:
        if not failed:
            return old
        last = max(finish_time(p, now) for p in failed)
        if old.last_failure_time is not None:
            last = max(last, old.last_failure_time)
        return BackoffRecord(old.failures_after_last_success + len(failed), last)
    if not failed:
        return BackoffRecord(0, None)
    last_success = max(finish_time(p, now) for p in succeeded)
    after = [finish_time(p, now) for p in failed if finish_time(p, now) >= last_success]
    if not after:
        return BackoffRecord(0, None)
    return BackoffRecord(len(after), max(after))
