"""The decisions of one StatefulSet sync as a pure plan (upstream updateStatefulSet with
processReplica, processCondemned and the RollingUpdate loop; the controller executes the steps).

Pods are split into replicas (ordinals start..start+replicas-1, missing ones made from the current
or update revision) and condemned (ordinals out of range, highest first). With OrderedReady
(monotonic) the walk stops at the first thing to wait for: a pod to create (one per pass, only
when every lower ordinal is Running, Ready and available), a pod that is not yet healthy or is
terminating, a condemned pod to delete (one per pass, highest first, only while every replica is
healthy; an unhealthy condemned pod may go only if it is the first unhealthy one). Parallel
(burst) does all creations and deletions at once. Scaling takes precedence over updates. Then
RollingUpdate deletes the highest-ordinal pod at or above the partition that is not at the update
revision, one at a time, waiting for each to come back healthy; OnDelete does nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubelab.controller.history import apply_revision
from kubelab.controller.replicaset.pods import is_available

from .identity import (end_ordinal, identity_matches, in_ordinal_range, new_pod, ordinal, pod_revision, replicas,
                       set_revision, start_ordinal, storage_matches)

Obj = dict[str, Any]


def is_created(pod: Obj) -> bool:
    return bool((pod.get("status") or {}).get("phase"))


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in st.get("conditions") or [])


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


@dataclass
class Step:
    verb: str          # create | delete | update | claims (create the missing PVCs of a pending pod)
    pod: Obj
    stage: str         # replicas | condemned | update: steps of a stage may run at once when bursting


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    monotonic: bool = True


def _new_versioned_pod(current_set: Obj, update_set: Obj, current_name: str, update_name: str, ord_: int) -> Obj:
    """Upstream newVersionedStatefulSetPod: below the partition (or, without one, below
    status.currentReplicas) a new pod is made at the current revision, else at the update one."""
    us = (current_set.get("spec") or {}).get("updateStrategy") or {}
    ru = us.get("rollingUpdate")
    current_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
    if (us.get("type", "RollingUpdate") == "RollingUpdate" and ru is None and ord_ < current_replicas) or \
            (ru is not None and ord_ < start_ordinal(current_set) + int(ru.get("partition") or 0)):
        return set_revision(new_pod(current_set, ord_), current_name)
    return set_revision(new_pod(update_set, ord_), update_name)


def replica_status(pods: list[Obj], min_ready: int, current_name: str, update_name: str, now: float) -> Obj:
    """Upstream computeReplicaStatus over replicas and condemned pods."""
    st = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0, "updatedReplicas": 0}
    for p in pods:
        if is_created(p):
            st["replicas"] += 1
        if is_running_and_ready(p):
            st["readyReplicas"] += 1
            if is_available(p, min_ready, now):
                st["availableReplicas"] += 1
        if is_created(p) and not is_terminating(p):
            rev = pod_revision(p)
            if rev == current_name:
                st["currentReplicas"] += 1
            if rev == update_name:
                st["updatedReplicas"] += 1
    return st


def plan_sync(sset: Obj, pods: list[Obj], current: Obj, update: Obj, collision_count: int,
              now: float | None = None) -> Plan:
    """What this pass does, in order, and the status it reports."""
    now = time.time() if now is None else now
    spec = sset.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
    current_set, update_set = apply_revision(sset, current), apply_revision(sset, update)
    plan = Plan(monotonic=spec.get("podManagementPolicy", "OrderedReady") != "Parallel")
    plan.status = {"observedGeneration": sset["metadata"].get("generation", 0), "currentRevision": current_name,
                   "updateRevision": update_name, "collisionCount": collision_count}

    start, n = start_ordinal(sset), max(0, replicas(sset))
    reps: list[Obj | None] = [None] * n
    condemned: list[Obj] = []
    for p in pods:
        if in_ordinal_range(p, sset):
            reps[ordinal(p) - start] = p
        elif ordinal(p) >= 0:
            condemned.append(p)
    for ord_ in range(start, end_ordinal(sset) + 1):
        if reps[ord_ - start] is None:
            reps[ord_ - start] = _new_versioned_pod(current_set, update_set, current_name, update_name, ord_)
    replicas_: list[Obj] = [p for p in reps if p is not None]
    condemned.sort(key=ordinal, reverse=True)
    first_unhealthy = next((p for p in replicas_ if not is_healthy(p)), None)
    if first_unhealthy is None:
        first_unhealthy = next((p for p in reversed(condemned) if not is_healthy(p)), None)
    plan.status.update(replica_status(replicas_ + condemned, min_ready, current_name, update_name, now))
    if sset["metadata"].get("deletionTimestamp"):
        return plan
    mono = plan.monotonic

    for p in replicas_:
        if is_finished(p):
            if not is_terminating(p):
                plan.steps.append(Step("delete", p, "replicas"))
            if mono:
                return plan
            continue
        if not is_created(p):
            plan.steps.append(Step("create", p, "replicas"))
            if mono:
                return plan
            continue
        if (p.get("status") or {}).get("phase") == "Pending":
            plan.steps.append(Step("claims", p, "replicas"))
        if mono and (is_terminating(p) or not is_running_and_ready(p) or not is_available(p, min_ready, now)):
            return plan
        if not (identity_matches(update_set, p) and storage_matches(update_set, p)):
            plan.steps.append(Step("update", p, "replicas"))

    for p in condemned:
        if is_terminating(p):
            if mono:
                return plan
            continue
        if mono and p is not first_unhealthy and \
                (not is_running_and_ready(p) or not is_available(p, min_ready, now)):
            return plan
        plan.steps.append(Step("delete", p, "condemned"))
        if mono:
            return plan

    us = spec.get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") == "OnDelete":
        return plan
    partition = int((us.get("rollingUpdate") or {}).get("partition") or 0)
    for target in range(len(replicas_) - 1, partition - 1, -1):
        p = replicas_[target]
        if pod_revision(p) != update_name and not is_terminating(p):
            plan.steps.append(Step("delete", p, "update"))
            plan.status["currentReplicas"] -= 1
            return plan
        if not is_healthy(p):
            return plan
    return plan


def complete_rolling_update(sset: Obj, status: Obj) -> None:
    """Upstream completeRollingUpdate: once every replica is updated and ready, the update
    revision becomes the current one."""
    us = (sset.get("spec") or {}).get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") == "RollingUpdate" and status["updatedReplicas"] == status["replicas"] \
            and status["readyReplicas"] == status["replicas"]:
        status["currentReplicas"] = status["updatedReplicas"]
        status["currentRevision"] = status["updateRevision"]
