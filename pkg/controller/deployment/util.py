"""Pure rules of the Deployment controller (upstream's deployment/util): surge and unavailability
bounds, the pod-template hash, revisions, which ReplicaSet is new, proportional scaling, status and
conditions. Everything here works on plain API dicts and is tested by table."""
from __future__ import annotations

import copy
import json
from typing import Any

from kubelab.api.intstr import scaled_value
from kubelab.api.timefmt import parse_time

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# annotations of the Deployment that its ReplicaSets do not copy (upstream's annotationsToSkip)
SKIP_ANNOTATIONS = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}

# Progressing/Available reasons, as upstream
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SAFE = "bcdfghjklmnpqrstvwxz2456789"     # apimachinery's rand.SafeEncodeString alphabet


def replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    v = (obj.get("spec") or {}).get("replicas")
    return 1 if v is None else int(v)


def st(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) against spec.replicas; both zero becomes unavailable 1."""
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: Obj) -> int:
    spec = d.get("spec") or {}
    if ((spec.get("strategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate" or replicas(d) == 0:
        return 0
    _, u = resolve_fenceposts(d)
    return min(u, replicas(d))


def max_surge(d: Obj) -> int:
    if (((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate":
        return 0
    return resolve_fenceposts(d)[0]


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: each character mapped into an alphabet without vowels or look-alikes."""
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in s)


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash: FNV-32a over the template (canonical JSON here, where upstream hashes
    Go's printed struct, so values differ from upstream's) and the collision count, safe-encoded."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += str(int(collision_count)).encode()
    return safe_encode(str(_fnv32a(data)))


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    if t.get("metadata") == {}:
        t.pop("metadata")
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """EqualIgnoreHash: the two pod templates are the same but for the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


def revision(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def created(obj: Obj) -> float:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or 0.0


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (FindNewReplicaSet)."""
    tmpl = (d.get("spec") or {}).get("template") or {}
    same = [rs for rs in rss if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, tmpl)]
    if not same:
        return None
    return min(same, key=lambda rs: (created(rs), rs["metadata"]["name"]))


def find_old_rss(new_rs: Obj | None, rss: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(old ReplicaSets with pods, all old ReplicaSets)."""
    uid = new_rs["metadata"]["uid"] if new_rs else None
    old = [rs for rs in rss if rs["metadata"]["uid"] != uid]
    return [rs for rs in old if replicas(rs) > 0], old


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many replicas the new ReplicaSet should have now (NewRSNewReplicas)."""
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    if strategy != "RollingUpdate":
        return replicas(d)
    surge, _ = resolve_fenceposts(d)
    current = sum(replicas(rs) for rs in all_rss)
    max_total = replicas(d) + surge
    have = replicas(new_rs)
    if current >= max_total:
        return have
    scale_up = min(max_total - current, replicas(d) - have)
    return have + max(0, scale_up)


def new_revision(old_rss: list[Obj]) -> int:
    return max((revision(rs) for rs in old_rss), default=0) + 1


def rs_annotations(d: Obj, rs: Obj | None, new_rev: int) -> dict[str, str]:
    """The annotations a new (or found) ReplicaSet should carry: the Deployment's own (minus the skip
    list), the revision (and the history of revisions it had), desired and max replicas."""
    out = dict(((rs or {}).get("metadata") or {}).get("annotations") or {})
    for k, v in (((d.get("metadata") or {}).get("annotations")) or {}).items():
        if k not in SKIP_ANNOTATIONS:
            out[k] = v
    old_rev = out.get(REVISION)
    if old_rev is None or int(old_rev or 0) < new_rev:
        if old_rev:
            hist = [h for h in (out.get(REVISION_HISTORY) or "").split(",") if h]
            out[REVISION_HISTORY] = ",".join(hist + [old_rev])
        out[REVISION] = str(new_rev)
    out[DESIRED_REPLICAS] = str(replicas(d))
    out[MAX_REPLICAS] = str(replicas(d) + max_surge(d))
    return out


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    try:
        desired = int(((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)))
    except (TypeError, ValueError):
        return False
    return replicas(rs) == replicas(d) and desired == replicas(d) and st(rs, "availableReplicas") == replicas(d)


def is_scaling_event(d: Obj, active: list[Obj]) -> bool:
    """Some active ReplicaSet was sized for a different spec.replicas."""
    for rs in active:
        v = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
        if v is not None and v != str(replicas(d)):
            return True
    return False


def proportional_sizes(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> dict[str, int]:
    """Target spec.replicas per ReplicaSet name for a scaling event (upstream's scale()): one active
    ReplicaSet takes the whole size; else additions or removals are spread in proportion to each
    ReplicaSet's size, the rest going to the largest (scaling up) or taken from it."""
    all_rss = ([new_rs] if new_rs else []) + old_rss
    active = [rs for rs in all_rss if replicas(rs) > 0]
    if len(active) <= 1:
        target = active[0] if active else (new_rs or (max(old_rss, key=created) if old_rss else None))
        return {target["metadata"]["name"]: replicas(d)} if target is not None else {}
    if is_saturated(d, new_rs):
        return {rs["metadata"]["name"]: 0 for rs in old_rss if replicas(rs) > 0}
    if replicas(d) <= 0:
        return {}
    allowed = replicas(d) + max_surge(d)
    to_add = allowed - sum(replicas(rs) for rs in all_rss)
    if to_add == 0:
        return {}
    # bigger first when growing, smaller first when shrinking; newer breaks ties (upstream's sort)
    if to_add > 0:
        order = sorted(active, key=lambda rs: (-replicas(rs), -created(rs)))
    else:
        order = sorted(active, key=lambda rs: (replicas(rs), -created(rs)))
    sizes = {}
    added = 0
    for rs in order:
        try:
            annotated = int((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, ""))
        except ValueError:
            annotated = 0
        if annotated:
            share = round(replicas(rs) * allowed / annotated) - replicas(rs)
        else:
            share = 0
        share = min(share, to_add - added) if to_add > 0 else max(share, to_add - added)
        sizes[rs["metadata"]["name"]] = replicas(rs) + share
        added += share
    if order and added != to_add:
        first = order[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


def get_condition(status: Obj, ctype: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason changes nothing; same status keeps the
    transition time."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = dict(cond, lastTransitionTime=cur.get("lastTransitionTime"))
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def condition(ctype: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def calculate_status(d: Obj, new_rs: Obj | None, all_rss: list[Obj], now: str) -> Obj:
    """The Deployment's status from its ReplicaSets (calculateStatus), Available condition included."""
    old = d.get("status") or {}
    available = sum(st(rs, "availableReplicas") for rs in all_rss)
    status: Obj = {"observedGeneration": int(d["metadata"].get("generation") or 0),
                   "replicas": sum(st(rs, "replicas") for rs in all_rss),
                   "updatedReplicas": st(new_rs, "replicas") if new_rs else 0,
                   "readyReplicas": sum(st(rs, "readyReplicas") for rs in all_rss),
                   "availableReplicas": available,
                   "unavailableReplicas": max(0, replicas(d) - available),
                   "conditions": copy.deepcopy(old.get("conditions") or [])}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                        now))
    else:
        set_condition(status, condition("Available", "False", MIN_UNAVAILABLE,
                                        "Deployment does not have minimum availability.", now))
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    return (status.get("updatedReplicas", 0) == replicas(d) and status.get("replicas", 0) == replicas(d)
            and status.get("availableReplicas", 0) == replicas(d)
            and status.get("observedGeneration", 0) >= int(d["metadata"].get("generation") or 0))


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}
    return (new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new.get("replicas", 0) - new.get("updatedReplicas", 0)
            < old.get("replicas", 0) - old.get("updatedReplicas", 0)
            or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or new.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def progress_deadline(d: Obj) -> int | None:
    v = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return None if v is None else int(v)


def deployment_timed_out(d: Obj, status: Obj, now: float) -> bool:
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    cond = get_condition(status, "Progressing")
    if cond is None:
        return False
    if cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + deadline < now


def rollout_progress(d: Obj, new_rs: Obj | None, status: Obj, now_text: str, now: float) -> float | None:
    """syncRolloutStatus's Progressing condition update (in place); returns seconds after which to look
    again for the progress deadline, or None."""
    deadline = progress_deadline(d)
    cur = get_condition(status, "Progressing")
    complete = status.get("replicas") == status.get("updatedReplicas") and cur is not None and \
        cur.get("reason") == NEW_RS_AVAILABLE
    if deadline is None or complete:
        return None
    rs_name = new_rs["metadata"]["name"] if new_rs else None
    if deployment_complete(d, status):
        msg = f'ReplicaSet "{rs_name}" has successfully progressed.' if rs_name else \
            "Deployment has successfully progressed."
        set_condition(status, condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now_text))
        return None
    if deployment_progressing(d, status):
        msg = f'ReplicaSet "{rs_name}" is progressing.' if rs_name else "Deployment is progressing."
        cond = condition("Progressing", "True", RS_UPDATED, msg, now_text)
        if cur is not None and cur.get("status") == "True":
            cond["lastTransitionTime"] = cur.get("lastTransitionTime")
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Progressing"] + [cond]
    elif deployment_timed_out(d, status, now):
        msg = f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name else \
            f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
        set_condition(status, condition("Progressing", "False", TIMED_OUT, msg, now_text))
        return None
    cur = get_condition(status, "Progressing")
    if cur is None or cur.get("reason") in (TIMED_OUT, NEW_RS_AVAILABLE):
        return None
    since = parse_time(cur.get("lastUpdateTime")) or now
    return max(1.0, since + deadline - now + 1)


def rss_to_clean(d: Obj, old_rss: list[Obj]) -> list[Obj]:
    """Old ReplicaSets beyond revisionHistoryLimit (default 10) that can go: no pods left, not being
    deleted; lowest revision first (cleanupDeployment)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    cands = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
    extra = len(cands) - limit
    if extra <= 0:
        return []
    cands.sort(key=lambda rs: (revision(rs), created(rs)))
    return [rs for rs in cands[:extra] if replicas(rs) == 0 and st(rs, "replicas") == 0
            and int(rs["metadata"].get("generation") or 0) <= st(rs, "observedGeneration")]
