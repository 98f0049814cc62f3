"""What the taint eviction controller does with one pod on a node with NoExecute taints, pure
(upstream's processPodOnNode and getMinTolerationTime).

A pod that does not tolerate every NoExecute taint is deleted at once. Otherwise the tolerations
it uses (the first matching one per taint) decide: any with tolerationSeconds <= 0 means now; the
smallest positive tolerationSeconds is how long the pod may stay, counted from when its eviction
was first scheduled (an existing earlier deadline is kept); none with tolerationSeconds means it
stays forever (any scheduled eviction is cancelled). As upstream, an eviction already scheduled is
kept as it is when the taints change."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelab.api.taints import NO_EXECUTE, matching_tolerations

Obj = dict[str, Any]

FOREVER = -1.0


def no_execute_taints(taints: list[Obj] | None) -> list[Obj]:
    return [t for t in taints or [] if t.get("effect") == NO_EXECUTE]


def min_toleration_time(used: list[Obj]) -> float:
    """Upstream's getMinTolerationTime in seconds: 0 without tolerations, FOREVER (-1) when none
    limits the time."""
    if not used:
        return 0.0
    least: int | None = None
    for t in used:
        secs = t.get("tolerationSeconds")
        if secs is None:
            continue
        secs = int(secs)
        if secs <= 0:
            return 0.0
        if least is None or secs < least:
            least = secs
    return FOREVER if least is None else float(least)


@dataclass(frozen=True)
class Decision:
    action: str       # "cancel", "delete-now", "schedule", "keep" (the scheduled one) or "replace" it
    created_at: float = 0.0
    fire_at: float = 0.0


def decide(taints: list[Obj], tolerations: list[Obj], now: float,
           scheduled_created_at: float | None = None, scheduled: bool = False) -> Decision:
    """processPodOnNode for NoExecute `taints`: scheduled tells whether an eviction is already
    scheduled for the pod and scheduled_created_at when it was."""
    if not taints:
        return Decision("cancel")
    ok, used = matching_tolerations(taints, tolerations)
    if not ok:
        return Decision("delete-now", now, now)
    wait = min_toleration_time(used)
    if wait < 0:
        return Decision("cancel")
    if scheduled and scheduled_created_at is not None:
        if scheduled_created_at + wait < now + wait:
            return Decision("keep")                  # the eviction already scheduled stands
        return Decision("replace", scheduled_created_at, now + wait)
    return Decision("schedule", now, now + wait)
