"""A pod's status from what the runtime holds (pure; upstream's kubelet_pods.go
generateAPIPodStatus / convertToAPIContainerStatuses / getPhase and the status manager's
conditions): phase, conditions, container statuses with state, lastState, restartCount, ready,
started, image and IDs, pod and host IPs, QoS class and start time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelab.api.patch import prune_nulls
from kubelab.api.timefmt import rfc3339

from .actions import ContainerState, PodRuntime
from .runtimespec import qos_class

Obj = dict[str, Any]


@dataclass
class Waiting:
    """Why containers wait, as the sync found it: name -> (reason, message)."""
    reasons: dict[str, tuple[str, str]] = field(default_factory=dict)


def _state(c: ContainerState, runtime: str) -> Obj:
    if c.state == "running":
        return {"running": {"startedAt": rfc3339(c.started_at)}}
    if c.state == "exited":
        t: Obj = {"exitCode": c.exit_code, "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                  "startedAt": rfc3339(c.started_at) if c.started_at else None,
                  "finishedAt": rfc3339(c.finished_at) if c.finished_at else None,
                  "containerID": f"{runtime}://{c.id}"}
        if c.message:
            t["message"] = c.message
        return {"terminated": t}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_statuses(specs: list[Obj], rt: PodRuntime, sandbox_id: str, waiting: Waiting, ready: dict[str, bool],
                       started: dict[str, bool], runtime: str, *, init: bool = False) -> list[Obj]:
    out = []
    for spec in specs:
        name = spec["name"]
        cur = rt.latest(name)
        prev = rt.previous(name)
        st: Obj = {"name": name, "image": spec.get("image", ""), "imageID": "", "ready": False,
                   "restartCount": cur.attempt if cur else 0, "started": False}
        if name in waiting.reasons and (cur is None or cur.state != "running"):
            reason, msg = waiting.reasons[name]
            st["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
            if cur is not None and cur.state == "exited":
                st["lastState"] = _state(cur, runtime)
        elif cur is None:
            st["state"] = {"waiting": {"reason": "PodInitializing" if not init and waiting.reasons.get("") else
                                       "ContainerCreating"}}
        else:
            st["state"] = _state(cur, runtime)
            st["containerID"] = f"{runtime}://{cur.id}"
            st["imageID"] = cur.image_ref
            if prev is not None:
                st["lastState"] = _state(prev, runtime)
            if cur.state == "running":
                st["started"] = started.get(name, True)
                st["ready"] = ready.get(name, True) and st["started"] and not init
            elif init and cur.state == "exited" and cur.exit_code == 0:
                st["ready"] = True
        st.setdefault("lastState", {})
        out.append(st)
    return out


def phase(pod: Obj, init_st: list[Obj], app_st: list[Obj]) -> str:
    """getPhase: Pending while init containers run or containers wait; Running while any runs (or
    all stopped with restartPolicy Always); Succeeded or Failed when all stopped for good."""
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    for s in init_st:
        term = (s.get("state") or {}).get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term and policy == "Never":
            return "Failed"
        last = (s.get("lastState") or {}).get("terminated")
        if policy == "Never" and last and last.get("exitCode"):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in app_st:
        state = s.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            last = (s.get("lastState") or {}).get("terminated")
            if last:
                stopped += 1
                if last.get("exitCode") == 0:
                    succeeded += 1
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _cond(ctype: str, ok: bool, old: dict[str, Obj], now: str, reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    c: Obj = {"type": ctype, "status": status,
              "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status
              and prev.get("lastTransitionTime") else now}
    if not ok and reason:
        c["reason"] = reason
        if message:
            c["message"] = message
    return c


def pod_status(pod: Obj, rt: PodRuntime, *, waiting: Waiting, ready: dict[str, bool], started: dict[str, bool],
               runtime: str, host_ips: list[str], start_time: str, now: str, final: bool = False) -> Obj:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    sb = rt.sandboxes[0] if rt.sandboxes else None
    sandbox_id = sb.id if sb else ""
    inits = list(spec.get("initContainers") or [])
    init_st = container_statuses(inits, rt, sandbox_id, waiting, ready, started, runtime, init=True)
    init_done = all(((s.get("state") or {}).get("terminated") or {}).get("exitCode") == 0 for s in init_st)
    w = waiting if init_done else Waiting({**waiting.reasons, "": ("PodInitializing", "")})
    app_st = container_statuses(list(spec.get("containers") or []), rt, sandbox_id, w, ready, started, runtime)
    ph = old.get("phase") if old.get("phase") in ("Succeeded", "Failed") else phase(pod, init_st, app_st)
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    unready = [s["name"] for s in app_st if not s["ready"]]
    not_init = [s["name"] for s in init_st if ((s.get("state") or {}).get("terminated") or {}).get("exitCode") != 0]
    terminal = ph in ("Succeeded", "Failed")
    conds = [_cond("PodReadyToStartContainers", bool(sb and sb.ready) and not final, old_conds, now),
             _cond("Initialized", not not_init or terminal and not inits, old_conds, now, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(not_init)}]"),
             _cond("Ready", not unready and not terminal, old_conds, now,
                   "PodCompleted" if terminal else "ContainersNotReady",
                   "" if terminal else f"containers with unready status: [{' '.join(unready)}]"),
             _cond("ContainersReady", not unready and not terminal, old_conds, now,
                   "PodCompleted" if terminal else "ContainersNotReady",
                   "" if terminal else f"containers with unready status: [{' '.join(unready)}]")]
    if terminal and not not_init:
        conds[1]["status"] = "True"
        conds[1].pop("reason", None)
        conds[1].pop("message", None)
    for kept in ("PodScheduled", "DisruptionTarget"):      # set by the scheduler, or by an eviction
        if kept in old_conds:
            conds.append(old_conds[kept])
    st: Obj = {"phase": ph, "conditions": conds, "hostIP": host_ips[0] if host_ips else "",
               "hostIPs": [{"ip": ip} for ip in host_ips], "qosClass": qos_class(pod), "startTime": start_time,
               "containerStatuses": app_st}
    if inits:
        st["initContainerStatuses"] = init_st
    ips = (sb.ips or ([sb.ip] if sb.ip else [])) if sb else []
    if spec.get("hostNetwork"):
        ips = list(host_ips)
    if not ips and old.get("podIP"):
        ips = [old["podIP"]]
    if ips:
        st["podIP"] = ips[0]
        st["podIPs"] = [{"ip": ip} for ip in ips]
    # as the status merge patch stores it (nulls dropped, e.g. a kept condition's lastProbeTime), so
    # that comparing it with the pod's status finds no change where there is none (upstream compares
    # Go structs, where null and absent are the same zero value)
    return prune_nulls(st)
