"""Pod helpers the controllers share, as upstream's pkg/api/v1/pod and pkg/util/pod: RFC 3339 time,
finding and updating a pod condition (UpdatePodCondition: lastTransitionTime moves only when the
status changes) and writing a status change as a strategic-merge patch of the status subresource
(PatchPodStatus), with the pod's uid so the patch cannot land on a pod recreated under the same name."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kubelab.client.rest import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DISRUPTION_TARGET = "DisruptionTarget"


def rfc3339(t: float | None = None) -> str:
    """metav1.Time's wire form (seconds precision, UTC) of unix time t (default now)."""
    when = dt.datetime.now(dt.timezone.utc) if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(conditions: list[Obj] | None, ctype: str) -> Obj | None:
    for c in conditions or []:
        if c.get("type") == ctype:
            return c
    return None


def update_pod_condition(status: Obj, condition: Obj, now: str | None = None) -> bool:
    """Upstream's UpdatePodCondition on a status dict (edited in place); True when it changed."""
    cond = dict(condition, lastTransitionTime=now or rfc3339())
    conditions = status.setdefault("conditions", [])
    for i, old in enumerate(conditions):
        if old.get("type") != cond.get("type"):
            continue
        if cond.get("status") == old.get("status"):
            cond["lastTransitionTime"] = old.get("lastTransitionTime")
        equal = all(cond.get(k) == old.get(k) for k in ("status", "reason", "message", "lastProbeTime",
                                                          "lastTransitionTime"))
        conditions[i] = cond
        return not equal
    conditions.append(cond)
    return True


async def patch_pod_status(client: Client, pod: Obj, status: Obj) -> Obj:
    """Write `status` (the fields to change: phase, conditions by type) to the pod's status."""
    m = pod["metadata"]
    body = {"metadata": {"uid": m.get("uid")}, "status": status}
    return await client.patch("v1", "pods", m["namespace"], m["name"], body, "strategic", subresource="status")
