"""DefaultPreemption (PostFilter), as upstream's plugin and preemption Evaluator: when a pod fits
nowhere, find nodes where deleting lower-priority pods would make it fit, pick one, delete those
pods and nominate the node for the preemptor (.status.nominatedNodeName).

- Eligibility: preemptionPolicy Never never preempts; a pod already nominated to a node where a
  lower-priority pod is still terminating because of preemption waits for it.
- Candidates: nodes whose rejection was not UnschedulableAndUnresolvable. On a copy of each node
  (and a clone of the cycle state, kept current through the PreFilter AddPod/RemovePod extensions)
  every lower-priority pod is removed; if the pod then passes the filters (with the pods
  nominated to the node at its priority or higher counted), as many victims as possible are
  reprieved, most important first, the PodDisruptionBudget-violating ones before the others
  (PDBs' status.disruptionsAllowed, minus the pods already in disruptedPods).
- Dry runs stop after max(minCandidateNodesPercentage (10) % of the nodes, minCandidateNodesAbsolute
  (100)) candidates once one of them violates no PDB.
- Choice, as pickOneNodeForPreemption: fewest PDB violations, then the lowest highest-victim
  priority, the smallest sum of victim priorities, the fewest victims, the latest start time of
  the highest-priority victims; then the first.
- Victims get the DisruptionTarget condition (reason PreemptionByScheduler), are deleted, and get
  a "Preempted" event "Preempted by pod <uid> on node <node>"; lower-priority pods nominated to
  that node lose their nomination.
- Nothing found: "preemption: 0/N nodes are available: ..." with each node's reason ("No
  preemption victims found for incoming pod", "Preemption is not helpful for scheduling", or
  the filter that still fails).
"""
from __future__ import annotations

import logging
import random
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.rest import ApiError, is_not_found

from ..framework import SUCCESS, Code, CycleState, NodeInfo, Status, fit_error_message, pod_key
from ..metrics import metrics
from .prioritysort import pod_priority

log = logging.getLogger(__name__)

NAME = "DefaultPreemption"
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100
MSG_NO_VICTIMS = "No preemption victims found for incoming pod"
MSG_NOT_HELPFUL = "Preemption is not helpful for scheduling"
MSG_NEVER = "not eligible due to preemptionPolicy=Never."
MSG_TERMINATING = "not eligible due to a terminating pod on the nominated node."
REASON_PREEMPTION = "PreemptionByScheduler"
MAX_INT32 = 2 ** 31 - 1

Obj = dict[str, Any]
FAR_FUTURE = "9999-12-31T23:59:59Z"


def start_time(pod: Obj) -> str:
    """GetPodStartTime: .status.startTime; a pod not started yet counts as starting now (latest)."""
    return (pod.get("status") or {}).get("startTime") or FAR_FUTURE


def importance_key(pod: Obj) -> tuple[int, str]:
    """Sort key for MoreImportantPod: higher priority first, then the earlier started."""
    return (-pod_priority(pod), start_time(pod))


def terminating_by_preemption(pod: Obj) -> bool:
    if not pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" and
               c.get("reason") == REASON_PREEMPTION for c in (pod.get("status") or {}).get("conditions") or [])


def split_by_pdb_violation(pods: list[Obj], pdbs: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Upstream's filterPodsWithPDBViolation: (violating, non-violating), order kept. Each PDB's
    disruptionsAllowed is spent by the pods it selects (not already in its disruptedPods)."""
    allowed = [int((p.get("status") or {}).get("disruptionsAllowed") or 0) for p in pdbs]
    selectors = []
    for p in pdbs:
        try:
            selectors.append(label_selector_from_api((p.get("spec") or {}).get("selector")))
        except SelectorError:
            selectors.append(None)
    violating, ok = [], []
    for pod in pods:
        m = pod["metadata"]
        labels = m.get("labels") or {}
        violated = False
        if labels:
            for i, pdb in enumerate(pdbs):
                sel = selectors[i]
                if pdb["metadata"].get("namespace") != m.get("namespace") or sel is None or sel.empty or \
                        not sel.matches(labels):
                    continue
                if m["name"] in ((pdb.get("status") or {}).get("disruptedPods") or {}):
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else ok).append(pod)
    return violating, ok


class Candidate:
    def __init__(self, node: str, victims: list[Obj], pdb_violations: int) -> None:
        self.node, self.victims, self.pdb_violations = node, victims, pdb_violations


def pick_one_node(candidates: list[Candidate]) -> Candidate | None:
    """Upstream's pickOneNodeForPreemption with its default score functions, in order."""
    if not candidates:
        return None
    for c in candidates:
        if not c.victims:
            return c

    def highest(c: Candidate) -> int:
        return max(pod_priority(v) for v in c.victims)

    def earliest_of_highest(c: Candidate) -> str:
        top = highest(c)
        return min(start_time(v) for v in c.victims if pod_priority(v) == top)
    rules = (lambda c: -c.pdb_violations, lambda c: -highest(c),
             lambda c: -sum(pod_priority(v) + MAX_INT32 + 1 for v in c.victims), lambda c: -len(c.victims),
             earliest_of_highest)
    left = candidates
    for rule in rules:
        best = max(rule(c) for c in left)
        left = [c for c in left if rule(c) == best]
        if len(left) == 1:
            break
    return left[0]


class DefaultPreemption:
    name = NAME

    def __init__(self, client: Any = None, rng: random.Random | None = None, *,
                 min_candidate_percentage: int = MIN_CANDIDATE_NODES_PERCENTAGE,
                 min_candidate_absolute: int = MIN_CANDIDATE_NODES_ABSOLUTE) -> None:
        self.client = client
        self.min_pct, self.min_abs = min_candidate_percentage, min_candidate_absolute
        self.rng = rng or random.Random()
        self.recorder: Any = None
        self._pdbs: Any = None
        self._handle: Any = None

    def bind_handle(self, handle: Any) -> None:
        """The scheduler: its recorder, PDB informer and nominated pods."""
        self._handle = handle
        self.recorder = getattr(handle, "recorder", None)
        self._pdbs = handle.informer("policy/v1", "poddisruptionbudgets")

    def pdbs(self) -> list[Obj]:
        return self._pdbs.list() if self._pdbs is not None else []

    # -- eligibility and dry runs -------------------------------------------------------------------

    def eligible(self, pod: Obj, nodes: dict[str, NodeInfo], statuses: dict[str, Status]) -> tuple[bool, str]:
        if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return False, MSG_NEVER
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            st = statuses.get(nominated)
            if st is not None and st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return True, ""
            info = nodes.get(nominated)
            if info is not None:
                prio = pod_priority(pod)
                if any(pod_priority(p) < prio and terminating_by_preemption(p) for p in info.pods.values()):
                    return False, MSG_TERMINATING
        return True, ""

    def select_victims(self, fwk: Any, state: CycleState, pod: Obj, node: NodeInfo,
                       pdbs: list[Obj]) -> tuple[list[Obj], int, Status]:
        """Upstream's selectVictimsOnNode, on copies of the node and the cycle state."""
        st, info = state.clone(), node.clone()
        prio = pod_priority(pod)
        potential = [p for p in info.pods.values() if pod_priority(p) < prio]
        if not potential:
            return [], 0, Status.unschedulable(MSG_NO_VICTIMS, unresolvable=True)
        for p in potential:
            info.remove_pod(p)
            fwk.run_pre_filter_remove_pod(st, pod, p, info)
        s = fwk.run_filter_with_nominated(st, pod, info)
        if not s.ok:
            return [], 0, s
        potential.sort(key=importance_key)
        violating, non_violating = split_by_pdb_violation(potential, pdbs)
        victims: list[Obj] = []
        violations = 0
        for group, counts in ((violating, True), (non_violating, False)):
            for p in group:
                info.add_pod(p)
                fwk.run_pre_filter_add_pod(st, pod, p, info)
                if fwk.run_filter_with_nominated(st, pod, info).ok:
                    continue                     # reprieved
                info.remove_pod(p)
                fwk.run_pre_filter_remove_pod(st, pod, p, info)
                victims.append(p)
                if counts:
                    violations += 1
        return victims, violations, SUCCESS

    def find_candidates(self, fwk: Any, state: CycleState, pod: Obj, nodes: list[NodeInfo],
                        statuses: dict[str, Status]) -> tuple[list[Candidate], dict[str, Status]]:
        potential = [n for n in nodes if n.name in statuses and statuses[n.name].code == Code.UNSCHEDULABLE]
        out = {n.name: Status.unschedulable(MSG_NOT_HELPFUL, unresolvable=True) for n in nodes
               if n.name not in statuses or statuses[n.name].code != Code.UNSCHEDULABLE}
        if not potential:
            return [], out
        want = min(len(potential), max(len(potential) * self.min_pct // 100, self.min_abs))
        pdbs = self.pdbs()
        offset = self.rng.randrange(len(potential))
        good: list[Candidate] = []
        violating: list[Candidate] = []
        for i in range(len(potential)):
            node = potential[(offset + i) % len(potential)]
            victims, violations, st = self.select_victims(fwk, state, pod, node, pdbs)
            if st.ok and victims:
                (violating if violations else good).append(Candidate(node.name, victims, violations))
                if good and len(good) + len(violating) >= want:
                    break
                continue
            if st.ok:
                st = Status.error(f"expected at least one victim pod on node {node.name!r}")
            out[node.name] = st
        return good + violating, out

    # -- PostFilter --------------------------------------------------------------------------------

    async def post_filter(self, state: CycleState, pod: Obj, statuses: dict[str, Status]) -> tuple[str, Status]:
        metrics().preemption_attempts.inc()
        fwk = state["_framework"]
        nodes: list[NodeInfo] = state["_all_nodes"]
        ok, msg = self.eligible(pod, {n.name: n for n in nodes}, statuses)
        if not ok:
            return "", Status.unschedulable("preemption: " + msg)
        candidates, node_statuses = self.find_candidates(fwk, state, pod, nodes, statuses)
        errors = [s for s in node_statuses.values() if s.code == Code.ERROR]
        if errors and not candidates:
            return "", Status.error("preemption: " + errors[0].message())
        best = pick_one_node(candidates)
        if best is None:
            return "", Status.unschedulable("preemption: " + fit_error_message(len(node_statuses),
                                                                               node_statuses.values()))
        st = await self.prepare(pod, best)
        if not st.ok:
            return "", st
        return best.node, SUCCESS

    async def prepare(self, pod: Obj, c: Candidate) -> Status:
        """Upstream's prepareCandidate: mark, delete and report each victim; clear the nominations of
        lower-priority pods on the node."""
        scheduler_name = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
        uid = pod["metadata"].get("uid", "")
        for v in c.victims:
            m = v["metadata"]
            ns, name = m.get("namespace"), m["name"]
            cond = {"type": "DisruptionTarget", "status": "True", "reason": REASON_PREEMPTION,
                    "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
                    "lastTransitionTime": now_rfc3339()}
            try:
                await self.client.patch("v1", "pods", ns, name, {"status": {"conditions": [cond]}}, "strategic",
                                        subresource="status")
                await self.client.delete("v1", "pods", ns, name)
            except ApiError as e:
                if not is_not_found(e):
                    return Status.error(f"preempting {ns}/{name}: {e}")
            log.info("preemptor pod=%s preempted victim pod=%s node=%s", pod_key(pod), f"{ns}/{name}", c.node)
            if self.recorder is not None:
                self.recorder.event(v, "Normal", "Preempted", f"Preempted by pod {uid} on node {c.node}")
        metrics().preemption_victims.observe(len(c.victims))
        if self._handle is not None:
            prio = pod_priority(pod)
            for other in list(self._handle.nominated_pods(c.node)):
                if pod_priority(other) < prio and other["metadata"].get("uid") != uid:
                    await self._handle.clear_nomination(other)
        return SUCCESS
