"""Pure helpers of the Job controller over pod dicts: the pod a Job creates (labels, controller
reference, tracking finalizer, completion index, hostname, JOB_COMPLETION_INDEX), and how upstream
classifies pods (active, failed, ready, terminating) and picks the active pods to remove."""
from __future__ import annotations

import copy
from typing import Any

from kubelab.controller.replicaset.pods import controller_ref, deletion_order, ready_since

from . import indexes

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_NAME = 63


def owner_ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "uid": m["uid"], "controller": True,
            "blockOwnerDeletion": True}


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_active(pod: Obj) -> bool:
    """Upstream's FilterActivePods: not Succeeded/Failed and not being deleted."""
    return phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_failed(pod: Obj, job: Obj) -> bool:
    """upstream isPodFailed: Failed, or (podReplacementPolicy TerminatingOrFailed and no
    podFailurePolicy) deleted and not Succeeded, so that deleted pods count as failures."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase(pod) != "Succeeded"


def only_replace_failed(job: Obj) -> bool:
    """upstream onlyReplaceFailedPods: podReplacementPolicy Failed, or a podFailurePolicy."""
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp")) and phase(pod) not in ("Succeeded", "Failed")


def is_ready(pod: Obj) -> bool:
    return ready_since(pod) is not None


def owned_by(pod: Obj, uid: str) -> bool:
    ref = controller_ref(pod)
    return ref is not None and ref.get("uid") == uid


def _index_name(base: str, index: int) -> str:
    suffix = f"-{index}"
    return base[:MAX_NAME - len(suffix)] + suffix


def pod_from_template(job: Obj, index: int | None = None) -> Obj:
    """A new pod of the Job (upstream's GetPodFromTemplate plus the Job's additions)."""
    name = job["metadata"]["name"]
    tmpl = (job.get("spec") or {}).get("template") or {}
    tm = tmpl.get("metadata") or {}
    labels = dict(tm.get("labels") or {})
    annotations = dict(tm.get("annotations") or {})
    spec = copy.deepcopy(tmpl.get("spec") or {})
    finalizers = list(tm.get("finalizers") or [])
    if TRACKING_FINALIZER not in finalizers:
        finalizers.append(TRACKING_FINALIZER)
    generate = f"{name}-"
    if index is not None:
        annotations[indexes.COMPLETION_INDEX] = str(index)
        labels[indexes.COMPLETION_INDEX] = str(index)
        generate = _index_name(name, index) + "-"
        if not spec.get("hostname"):
            spec["hostname"] = _index_name(name, index)
        ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{indexes.COMPLETION_INDEX}']"}}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                env = c.setdefault("env", [])
                if not any(e.get("name") == INDEX_ENV for e in env):
                    env.append({"name": INDEX_ENV, "valueFrom": ref})
    meta: Obj = {"generateName": generate, "namespace": job["metadata"]["namespace"], "labels": labels,
                 "ownerReferences": [owner_ref(job)], "finalizers": finalizers}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def active_for_removal(job: Obj, active: list[Obj], at_least: int, succeeded: indexes.Intervals) -> list[Obj]:
    """Upstream's activePodsForRemoval: for Indexed Jobs, pods with a bad, out of range, completed
    or duplicated index first; then at least `at_least` pods in deletion ranking order."""
    first: list[Obj] = []
    rest = active
    if is_indexed(job):
        completions = int((job.get("spec") or {}).get("completions") or 0)
        seen: set[int] = set()
        rest = []
        for p in deletion_order(active)[::-1]:          # keep the best-ranked pod of each index
            ix = indexes.pod_index(p)
            if ix is None or ix >= completions or indexes.has(succeeded, ix) or ix in seen:
                first.append(p)
            else:
                seen.add(ix)
                rest.append(p)
    if len(first) >= at_least:
        return first
    return first + deletion_order(rest)[:at_least - len(first)]
