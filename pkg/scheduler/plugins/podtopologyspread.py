"""PodTopologySpread, as upstream's plugin: topologySpreadConstraints with whenUnsatisfiable
DoNotSchedule as Filter and ScheduleAnyway as Score.

A constraint counts the pods its labelSelector (plus matchLabelKeys taken from the incoming pod)
selects in the pod's namespace, per value of its topologyKey, over the nodes that have every
constraint's key and pass its nodeAffinityPolicy (Honor by default: the pod's nodeSelector and
required node affinity) and nodeTaintsPolicy (Ignore by default). Filter: a node fits when
count(node's domain) + (1 if the pod matches itself) - min over domains <= maxSkew, where the
minimum is 0 while fewer than minDomains domains exist; a node without the key is rejected as
"... (missing required label)".

A pod without constraints gets the default ones (upstream's defaultingType System: hostname
maxSkew 3 and zone maxSkew 5, both ScheduleAnyway) with the selector of the Services,
ReplicationController, ReplicaSet or StatefulSet that select or own it; nothing when none does.

Score (upstream's): a node's score is sum over constraints of count * log(domains + 2) +
maxSkew - 1 (hostname counts per node); fewer is better, scaled as
100 * (max + min - score) / max; nodes lacking a key score 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubelab.api.selectors import IN, LabelSelector, Requirement, SelectorError, label_selector_from_api, \
    selector_from_set

from ..framework import MAX_NODE_SCORE, SUCCESS, Code, CycleState, NodeInfo, Status
from kubelab.api.nodeaffinity import required_matches
from .tainttoleration import untolerated

NAME = "PodTopologySpread"
ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
ERR_MISSING_LABEL = ERR_CONSTRAINTS + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
HONOR, IGNORE = "Honor", "Ignore"
SYSTEM, LIST = "System", "List"
SYSTEM_DEFAULT_CONSTRAINTS: list[dict] = [
    {"topologyKey": HOSTNAME, "whenUnsatisfiable": SCHEDULE_ANYWAY, "maxSkew": 3},
    {"topologyKey": ZONE, "whenUnsatisfiable": SCHEDULE_ANYWAY, "maxSkew": 5},
]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: LabelSelector
    min_domains: int = 1
    node_affinity_policy: str = HONOR
    node_taints_policy: str = IGNORE

    def includes(self, pod: Obj, node: Obj) -> bool:
        """matchNodeInclusionPolicies: does this node count for the constraint?"""
        if self.node_affinity_policy == HONOR and not required_matches(pod, node):
            return False
        if self.node_taints_policy == HONOR and untolerated((node.get("spec") or {}).get("taints") or [],
                                                            (pod.get("spec") or {}).get("tolerations") or [],
                                                            ("NoSchedule", "NoExecute")) is not None:
            return False
        return True


def constraints_of(raw: list[Obj], pod_labels: dict, action: str) -> list[Constraint]:
    """Upstream's filterTopologySpreadConstraints: those with `action`, matchLabelKeys folded in."""
    out = []
    for c in raw:
        if c.get("whenUnsatisfiable", DO_NOT_SCHEDULE) != action:
            continue
        sel = label_selector_from_api(c.get("labelSelector"))
        extra = [Requirement(k, IN, (pod_labels[k],)) for k in c.get("matchLabelKeys") or [] if k in pod_labels]
        if extra:
            sel = sel.add(*extra)
        out.append(Constraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "", sel,
                              int(c["minDomains"]) if c.get("minDomains") is not None else 1,
                              c.get("nodeAffinityPolicy") or HONOR, c.get("nodeTaintsPolicy") or IGNORE))
    return out


def count_matching(pods: Any, selector: LabelSelector, ns: str) -> int:
    """countPodsMatchSelector: pods of `ns`, not terminating, that the selector selects."""
    if selector.empty:
        return 0
    n = 0
    for p in pods:
        m = p["metadata"]
        if m.get("deletionTimestamp") or m.get("namespace", "") != ns:
            continue
        if selector.matches(m.get("labels") or {}):
            n += 1
    return n


def has_all_keys(labels: dict, constraints: list[Constraint]) -> bool:
    return all(c.topology_key in labels for c in constraints)


class _PreFilterState:
    def __init__(self, constraints: list[Constraint]) -> None:
        self.constraints = constraints
        self.counts: list[dict[str, int]] = [{} for _ in constraints]   # per constraint: domain -> pods
        self.minimum: list[int] = [0] * len(constraints)

    def clone(self) -> "_PreFilterState":
        c = _PreFilterState(self.constraints)
        c.counts, c.minimum = [dict(d) for d in self.counts], list(self.minimum)
        return c

    def recompute(self, i: int) -> None:
        self.minimum[i] = min(self.counts[i].values(), default=0)

    def update_with(self, other: Obj, pod: Obj, node: Obj, by: int) -> None:
        """Upstream's updateWithPod (preemption's dry runs)."""
        if other["metadata"].get("namespace") != pod["metadata"].get("namespace"):
            return
        labels = node["metadata"].get("labels") or {}
        if not has_all_keys(labels, self.constraints):
            return
        other_labels = other["metadata"].get("labels") or {}
        for i, c in enumerate(self.constraints):
            if not c.selector.matches(other_labels) or not c.includes(pod, node):
                continue
            v = labels[c.topology_key]
            self.counts[i][v] = self.counts[i].get(v, 0) + by
            self.recompute(i)


class PodTopologySpread:
    name = NAME

    def __init__(self, default_constraints: list[Obj] | None = None, defaulting_type: str = SYSTEM) -> None:
        if defaulting_type not in (SYSTEM, LIST):
            raise ValueError(f"defaultingType: Unsupported value: {defaulting_type!r}: supported values: "
                             f"\"List\", \"System\"")
        if defaulting_type == SYSTEM and default_constraints:
            raise ValueError("defaultConstraints: Invalid value: when .defaultingType is \"System\", "
                             ".defaultConstraints must be empty")
        for i, c in enumerate(default_constraints or []):
            if c.get("labelSelector") is not None:
                raise ValueError(f"defaultConstraints[{i}].labelSelector: Forbidden: constraint must not define "
                                 "a selector, as they deduced for each pod")
            if c.get("whenUnsatisfiable") not in (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY):
                raise ValueError(f"defaultConstraints[{i}].whenUnsatisfiable: Unsupported value: "
                                 f"{c.get('whenUnsatisfiable')!r}")
            skew = c.get("maxSkew")
            if not c.get("topologyKey") or not isinstance(skew, int) or isinstance(skew, bool) or skew <= 0:
                raise ValueError(f"defaultConstraints[{i}]: Invalid value: a topologyKey and an integer maxSkew "
                                 f"> 0 are required")
        try:
            for action in (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY):
                constraints_of(default_constraints or [], {}, action)
        except (TypeError, ValueError) as e:
            raise ValueError(f"defaultConstraints: Invalid value: {e}") from None
        self.system_defaulted = defaulting_type == SYSTEM
        self.default_constraints = SYSTEM_DEFAULT_CONSTRAINTS if self.system_defaulted else \
            list(default_constraints or [])
        self._informers: dict[str, Any] = {}

    def bind_handle(self, handle: Any) -> None:
        """The scheduler's informers: what selects or owns a pod (for the default constraints)."""
        if self.default_constraints:
            for av, res in (("v1", "services"), ("v1", "replicationcontrollers"), ("apps/v1", "replicasets"),
                            ("apps/v1", "statefulsets")):
                self._informers[res] = handle.informer(av, res)

    # -- the pod's constraints ---------------------------------------------------------------------

    def default_selector(self, pod: Obj) -> LabelSelector:
        """Upstream's helper.DefaultSelector: the selectors of the Services selecting the pod,
        and of its controlling ReplicationController, ReplicaSet or StatefulSet, ANDed."""
        m = pod["metadata"]
        ns, labels = m.get("namespace", ""), m.get("labels") or {}
        merged: dict[str, str] = {}
        svcs = self._informers.get("services")
        if svcs is not None:
            for s in svcs.by_index("namespace", ns):
                sel = (s.get("spec") or {}).get("selector")
                if sel and selector_from_set(sel).matches(labels):
                    merged.update(sel)
        owner = next((r for r in m.get("ownerReferences") or [] if r.get("controller")), None)
        if owner is None:
            return selector_from_set(merged)
        kind, group = owner.get("kind"), (owner.get("apiVersion") or "").rpartition("/")[0]
        key = f"{ns}/{owner.get('name')}"
        if kind == "ReplicationController" and group == "" and "replicationcontrollers" in self._informers:
            rc = self._informers["replicationcontrollers"].get(key)
            if rc is not None:
                merged.update((rc.get("spec") or {}).get("selector") or {})
            return selector_from_set(merged)
        res = {"ReplicaSet": "replicasets", "StatefulSet": "statefulsets"}.get(kind or "")
        sel = selector_from_set(merged)
        if group == "apps" and res in self._informers:
            obj = self._informers[res].get(key)
            if obj is not None:
                try:
                    other = label_selector_from_api((obj.get("spec") or {}).get("selector"))
                except SelectorError:
                    return sel
                if not other.matches_nothing:
                    sel = sel.add(*other.requirements)
        return sel

    def constraints(self, pod: Obj, action: str) -> list[Constraint]:
        """The pod's own constraints with `action`, else the default ones (with the selector
        deduced from what selects the pod). SelectorError on a bad selector."""
        labels = pod["metadata"].get("labels") or {}
        raw = (pod.get("spec") or {}).get("topologySpreadConstraints") or []
        if raw:
            return constraints_of(raw, labels, action)
        cs = constraints_of(self.default_constraints, labels, action)
        if not cs:
            return []
        sel = self.default_selector(pod)
        if sel.empty:
            return []
        return [Constraint(c.max_skew, c.topology_key, sel, c.min_domains, c.node_affinity_policy,
                           c.node_taints_policy) for c in cs]

    # -- Filter ------------------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> tuple[Status, None]:
        try:
            cs = self.constraints(pod, DO_NOT_SCHEDULE)
        except (TypeError, ValueError) as e:       # SelectorError is a ValueError
            return Status.error(f"obtaining pod's hard topology spread constraints: {e}"), None
        if not cs:
            return Status(Code.SKIP), None
        s = _PreFilterState(cs)
        ns = pod["metadata"].get("namespace", "")
        for n in state.get("_all_nodes", nodes):
            labels = n.node["metadata"].get("labels") or {}
            if not has_all_keys(labels, cs):
                continue
            for i, c in enumerate(cs):
                if not c.includes(pod, n.node):
                    continue
                v = labels[c.topology_key]
                s.counts[i][v] = s.counts[i].get(v, 0) + count_matching(n.pods.values(), c.selector, ns)
        for i in range(len(cs)):
            s.recompute(i)
        state[NAME] = s
        return SUCCESS, None

    def add_pod(self, state: CycleState, pod: Obj, other: Obj, node: NodeInfo) -> None:
        s = state.get(NAME)
        if s is not None:
            s.update_with(other, pod, node.node, 1)

    def remove_pod(self, state: CycleState, pod: Obj, other: Obj, node: NodeInfo) -> None:
        s = state.get(NAME)
        if s is not None:
            s.update_with(other, pod, node.node, -1)

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        s: _PreFilterState | None = state.get(NAME)
        if s is None:
            return SUCCESS
        labels = node.node["metadata"].get("labels") or {}
        pod_labels = pod["metadata"].get("labels") or {}
        for i, c in enumerate(s.constraints):
            v = labels.get(c.topology_key)
            if v is None:
                return Status.unschedulable(ERR_MISSING_LABEL, unresolvable=True)
            minimum = s.minimum[i] if len(s.counts[i]) >= c.min_domains else 0
            self_match = 1 if c.selector.matches(pod_labels) else 0
            if s.counts[i].get(v, 0) + self_match - minimum > c.max_skew:
                return Status.unschedulable(ERR_CONSTRAINTS)
        return SUCCESS

    # -- Score -------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> Status:
        try:
            cs = self.constraints(pod, SCHEDULE_ANYWAY)
        except (TypeError, ValueError) as e:
            return Status.error(f"obtaining pod's soft topology spread constraints: {e}")
        if not cs:
            return Status(Code.SKIP)
        require_all = bool((pod.get("spec") or {}).get("topologySpreadConstraints")) or not self.system_defaulted
        ignored: set[str] = set()
        pair_counts: dict[tuple[str, str], int] = {}
        sizes = [0] * len(cs)
        for n in nodes:
            labels = n.node["metadata"].get("labels") or {}
            if require_all and not has_all_keys(labels, cs):
                ignored.add(n.name)
                continue
            for i, c in enumerate(cs):
                if c.topology_key == HOSTNAME:
                    continue
                pair = (c.topology_key, labels.get(c.topology_key, ""))
                if pair not in pair_counts:
                    pair_counts[pair] = 0
                    sizes[i] += 1
        weights = []
        for i, c in enumerate(cs):
            size = len(nodes) - len(ignored) if c.topology_key == HOSTNAME else sizes[i]
            weights.append(math.log(size + 2))
        ns = pod["metadata"].get("namespace", "")
        for n in state.get("_all_nodes", nodes):
            labels = n.node["metadata"].get("labels") or {}
            if require_all and not has_all_keys(labels, cs):
                continue
            for c in cs:
                if not c.includes(pod, n.node):
                    continue
                pair = (c.topology_key, labels.get(c.topology_key, ""))
                if pair in pair_counts:
                    pair_counts[pair] += count_matching(n.pods.values(), c.selector, ns)
        state[NAME + "/score"] = (cs, ignored, pair_counts, weights)
        return SUCCESS

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        cs, ignored, pair_counts, weights = state[NAME + "/score"]
        if node.name in ignored:
            return 0
        labels = node.node["metadata"].get("labels") or {}
        ns = pod["metadata"].get("namespace", "")
        total = 0.0
        for i, c in enumerate(cs):
            v = labels.get(c.topology_key)
            if v is None:
                continue
            if c.topology_key == HOSTNAME:
                cnt = count_matching(node.pods.values(), c.selector, ns)
            else:
                cnt = pair_counts.get((c.topology_key, v), 0)
            total += cnt * weights[i] + (c.max_skew - 1)
        return int(math.floor(total + 0.5))        # Go's math.Round (half away from zero)

    def normalize_score(self, state: CycleState, pod: Obj, scores: dict[str, int]) -> None:
        _, ignored, _, _ = state[NAME + "/score"]
        kept = [v for k, v in scores.items() if k not in ignored]
        lo, hi = min(kept, default=0), max(kept, default=0)
        for k, v in scores.items():
            if k in ignored:
                scores[k] = 0
            elif hi == 0:
                scores[k] = MAX_NODE_SCORE
            else:
                scores[k] = MAX_NODE_SCORE * (hi + lo - v) // hi
