"""Completion indexes of Indexed Jobs, as upstream's indexed_job_utils.go keeps them: the
`batch.kubernetes.io/job-completion-index` annotation of a pod, `.status.completedIndexes` as
ordered intervals written "1,3-5", and the first indexes still pending."""
from __future__ import annotations

from typing import Any, Iterable

Obj = dict[str, Any]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

Intervals = list[tuple[int, int]]       # closed, ordered, non-overlapping, non-adjacent


def pod_index(pod: Obj) -> int | None:
    """The pod's completion index from its annotation; None when absent or not a number >= 0."""
    v = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)
    if not isinstance(v, str) or not v.isdigit():
        return None
    return int(v)


def parse(text: str | None, completions: int) -> Intervals:
    """Intervals from "1,3-5"; malformed parts and indexes >= completions are dropped (as upstream)."""
    out: Intervals = []
    for part in (text or "").split(","):
        lo_s, _, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if hi_s else lo
        except ValueError:
            continue
        if lo < 0 or hi < lo or lo >= completions:
            continue
        out.append((lo, min(hi, completions - 1)))
    return merge(out, [])


def merge(intervals: Intervals, indexes: Iterable[int]) -> Intervals:
    """The union of intervals and single indexes, ordered and coalesced."""
    pts = sorted(list(intervals) + [(i, i) for i in indexes])
    out: Intervals = []
    for lo, hi in pts:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def format(intervals: Intervals) -> str:
    """"1,3-5" (an interval of two is written "1,2" as upstream does)."""
    parts = []
    for lo, hi in intervals:
        if lo == hi:
            parts.append(str(lo))
        elif hi == lo + 1:
            parts.append(f"{lo},{hi}")
        else:
            parts.append(f"{lo}-{hi}")
    return ",".join(parts)


def total(intervals: Intervals) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def has(intervals: Intervals, i: int) -> bool:
    return any(lo <= i <= hi for lo, hi in intervals)


def first_pending(completions: int, succeeded: Intervals, active: Iterable[int], count: int) -> list[int]:
    """The `count` lowest indexes in [0, completions) neither succeeded nor held by an active pod."""
    busy = set(active)
    out: list[int] = []
    for i in range(completions):
        if len(out) >= count:
            break
        if i not in busy and not has(succeeded, i):
            out.append(i)
    return out
