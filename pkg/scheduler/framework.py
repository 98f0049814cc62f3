"""The scheduling framework: statuses, per-cycle state, node infos, plugins and the profile that
runs them at upstream's extension points (PreFilter, Filter, PostFilter, PreScore, Score,
NormalizeScore, Reserve, Permit, PreBind, Bind).

A plugin is an object with a `name` and any of the extension point methods below; a profile lists
which plugins run at which point (with score weights). Filter and score methods are synchronous
(they run for every node); Bind is a coroutine (it talks to the API).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol

from kubelab.api import resources as R
from .plugins.prioritysort import pod_priority     # the priority rule lives with PrioritySort

Obj = dict[str, Any]

MAX_NODE_SCORE = 100


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3    # preemption cannot help on this node
    WAIT = 4
    SKIP = 5


@dataclass
class Status:
    code: Code = Code.SUCCESS
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, unresolvable: bool = False) -> "Status":
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE, list(reasons))

    @classmethod
    def error(cls, reason: str) -> "Status":
        return cls(Code.ERROR, [reason])

    @property
    def ok(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    def message(self) -> str:
        return ", ".join(self.reasons)


SUCCESS = Status()


class CycleState(dict):
    """Data plugins keep for one scheduling cycle (PreFilter computes, Filter/Score read).

    clone() copies each value that has a clone() method (PreFilter states that the
    AddPod/RemovePod extensions change during preemption's dry runs) and shares the rest."""

    def clone(self) -> "CycleState":
        c = CycleState()
        for k, v in self.items():
            c[k] = v.clone() if hasattr(v, "clone") else (set(v) if isinstance(v, set) else v)
        return c


def has_affinity(pod: Obj) -> bool:
    """The pod has pod affinity or anti-affinity terms (upstream's PodsWithAffinity)."""
    a = (pod.get("spec") or {}).get("affinity") or {}
    return bool(a.get("podAffinity") or a.get("podAntiAffinity"))


def has_required_anti_affinity(pod: Obj) -> bool:
    a = ((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}
    return bool(a.get("requiredDuringSchedulingIgnoredDuringExecution"))


def pod_key(pod: Obj) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def pod_uid(pod: Obj) -> str:
    return pod["metadata"].get("uid") or pod_key(pod)


class NodeInfo:
    """A node and the pods on it (bound or assumed), with what they request."""

    def __init__(self, node: Obj | None = None) -> None:
        self.node: Obj | None = None
        self._name = ""                                # the node's name, read per node per plugin
        self.pods: dict[str, Obj] = {}
        self._acct: dict[str, tuple[dict[str, int], dict[str, int], list]] = {}   # uid -> what it added
        self.requested: dict[str, int] = {}            # sum of pod requests
        self.non_zero_requested: dict[str, int] = {}   # with the scoring defaults for unset CPU/memory
        self.used_ports: dict[tuple[str, int], set[str]] = {}     # (protocol, port) -> host IPs
        self.allocatable: dict[str, int] = {}
        self.images: dict[str, int] = {}               # image name -> size
        self.pods_with_affinity: dict[str, Obj] = {}   # uid -> pod with pod (anti-)affinity terms
        self.pods_with_required_anti_affinity: dict[str, Obj] = {}
        self.taints: list[Obj] = []                     # spec.taints, read per node per plugin
        self.unschedulable = False
        self.generation = 0
        if node is not None:
            self.set_node(node)

    @property
    def name(self) -> str:
        return self._name

    def set_node(self, node: Obj) -> None:
        self.node = node
        self._name = node["metadata"]["name"]
        spec = node.get("spec") or {}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = R.node_allocatable(node)
        self.images = {}
        for img in (node.get("status") or {}).get("images") or []:
            for n in img.get("names") or []:
                self.images[n] = int(img.get("sizeBytes") or 0)
        self.generation += 1

    def add_pod(self, pod: Obj) -> None:
        uid = pod_uid(pod)
        if uid in self.pods:
            self.remove_pod(self.pods[uid])
        self.pods[uid] = pod
        if has_affinity(pod):
            self.pods_with_affinity[uid] = pod
            if has_required_anti_affinity(pod):
                self.pods_with_required_anti_affinity[uid] = pod
        acct = (R.pod_requests(pod), R.pod_requests(pod, non_zero=True), R.pod_host_ports(pod))
        self._acct[uid] = acct
        self._account(acct, 1)

    def replace_pod(self, pod: Obj) -> None:
        """A newer copy of a pod already counted here (its requests cannot have changed)."""
        uid = pod_uid(pod)
        self.pods[uid] = pod
        if uid in self.pods_with_affinity:
            self.pods_with_affinity[uid] = pod
        if uid in self.pods_with_required_anti_affinity:
            self.pods_with_required_anti_affinity[uid] = pod

    def remove_pod(self, pod: Obj) -> bool:
        uid = pod_uid(pod)
        if self.pods.pop(uid, None) is None:
            return False
        self.pods_with_affinity.pop(uid, None)
        self.pods_with_required_anti_affinity.pop(uid, None)
        self._account(self._acct.pop(uid), -1)
        return True

    def _account(self, acct: tuple[dict[str, int], dict[str, int], list], sign: int) -> None:
        req, nz, ports = acct
        for k, v in req.items():
            self.requested[k] = self.requested.get(k, 0) + sign * v
        for k, v in nz.items():
            if k in (R.CPU, R.MEMORY):
                self.non_zero_requested[k] = self.non_zero_requested.get(k, 0) + sign * v
        for ip, proto, port in ports:
            ips = self.used_ports.setdefault((proto, port), set())
            if sign > 0:
                ips.add(ip)
            else:
                ips.discard(ip)
                if not ips:
                    del self.used_ports[(proto, port)]
        self.generation += 1

    def clone(self) -> "NodeInfo":
        n = NodeInfo()
        n.node, n.allocatable, n.images, n._name = self.node, self.allocatable, self.images, self._name
        n.taints, n.unschedulable = self.taints, self.unschedulable
        n.pods, n._acct = dict(self.pods), dict(self._acct)
        n.requested, n.non_zero_requested = dict(self.requested), dict(self.non_zero_requested)
        n.used_ports = {k: set(v) for k, v in self.used_ports.items()}
        n.pods_with_affinity = dict(self.pods_with_affinity)
        n.pods_with_required_anti_affinity = dict(self.pods_with_required_anti_affinity)
        n.generation = self.generation
        return n


class Plugin(Protocol):
    name: str


@dataclass
class PreFilterResult:
    """Node names a PreFilter plugin narrows the search to (None: all)."""
    node_names: set[str] | None = None


@dataclass
class ProfilePlugins:
    queue_sort: Plugin | None = None
    pre_filter: list[Plugin] = field(default_factory=list)
    filter: list[Plugin] = field(default_factory=list)
    post_filter: list[Plugin] = field(default_factory=list)
    pre_score: list[Plugin] = field(default_factory=list)
    score: list[tuple[Plugin, int]] = field(default_factory=list)      # (plugin, weight)
    reserve: list[Plugin] = field(default_factory=list)
    permit: list[Plugin] = field(default_factory=list)
    pre_bind: list[Plugin] = field(default_factory=list)
    bind: list[Plugin] = field(default_factory=list)


class Framework:
    """One profile (schedulerName) and its plugins."""

    def __init__(self, name: str, plugins: ProfilePlugins, percentage_of_nodes_to_score: int = 0) -> None:
        self.name = name
        self.plugins = plugins
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        # node name -> pods nominated to it (set by the scheduler; upstream's PodNominator)
        self.nominated: Callable[[str], list[Obj]] = lambda node_name: []

    def instances(self) -> list[Any]:
        """Every distinct plugin object of the profile."""
        pp = self.plugins
        seen: dict[int, Any] = {}
        for p in ([pp.queue_sort] if pp.queue_sort else []) + pp.pre_filter + pp.filter + pp.post_filter + \
                pp.pre_score + [p for p, _ in pp.score] + pp.reserve + pp.permit + pp.pre_bind + pp.bind:
            seen.setdefault(id(p), p)
        return list(seen.values())

    def less(self, a: Any, b: Any) -> bool:
        qs = self.plugins.queue_sort
        return qs.less(a, b) if qs is not None else a.timestamp < b.timestamp

    def run_pre_filter(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> tuple[Status, PreFilterResult]:
        result = PreFilterResult()
        for p in self.plugins.pre_filter:
            st, r = p.pre_filter(state, pod, nodes)
            if st.code == Code.SKIP:
                state.setdefault("_skip_filter", set()).add(p.name)
                continue
            if not st.ok:
                st.plugin = st.plugin or p.name
                return st, result
            if r is not None and r.node_names is not None:
                result.node_names = r.node_names if result.node_names is None else result.node_names & r.node_names
                if not result.node_names:
                    return Status.unschedulable(f"node(s) didn't satisfy plugin(s) [{p.name}]", unresolvable=True), result
        return SUCCESS, result

    def run_filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        filters = state.get("_filters")
        if filters is None:             # once per cycle: the filters PreFilter did not skip
            skip = state.get("_skip_filter", ())
            filters = state["_filters"] = [p for p in self.plugins.filter if p.name not in skip]
        for p in filters:
            st = p.filter(state, pod, node)
            if st is SUCCESS or st.code == Code.SUCCESS:
                continue
            st.plugin = st.plugin or p.name
            return st
        return SUCCESS

    def run_pre_filter_add_pod(self, state: CycleState, pod: Obj, to_add: Obj, node: NodeInfo) -> None:
        """PreFilterExtensions.AddPod: `to_add` now counts on `node` (state is a clone)."""
        skip = state.get("_skip_filter", ())
        for p in self.plugins.pre_filter:
            if p.name not in skip and hasattr(p, "add_pod"):
                p.add_pod(state, pod, to_add, node)

    def run_pre_filter_remove_pod(self, state: CycleState, pod: Obj, to_remove: Obj, node: NodeInfo) -> None:
        """PreFilterExtensions.RemovePod: `to_remove` no longer counts on `node`."""
        skip = state.get("_skip_filter", ())
        for p in self.plugins.pre_filter:
            if p.name not in skip and hasattr(p, "remove_pod"):
                p.remove_pod(state, pod, to_remove, node)

    def run_filter_with_nominated(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        """Upstream's RunFilterPluginsWithNominatedPods: the pod must fit both with the pods
        nominated to this node at its priority or higher counted, and without them."""
        prio, uid = pod_priority(pod), pod_uid(pod)
        nominated = [p for p in self.nominated(node.name) if pod_priority(p) >= prio and pod_uid(p) != uid]
        if not nominated:
            return self.run_filter(state, pod, node)
        st2, node2 = state.clone(), node.clone()
        for p in nominated:
            node2.add_pod(p)
            self.run_pre_filter_add_pod(st2, pod, p, node2)
        st = self.run_filter(st2, pod, node2)
        if not st.ok:
            return st
        return self.run_filter(state, pod, node)

    async def run_post_filter(self, state: CycleState, pod: Obj, statuses: dict[str, Status]) -> tuple[str, Status]:
        """PostFilter plugins in order until one succeeds: (nominated node name, status)."""
        last = Status.unschedulable()
        for p in self.plugins.post_filter:
            node_name, st = await p.post_filter(state, pod, statuses)
            if st.ok:
                return node_name, st
            if st.code == Code.ERROR:
                st.plugin = st.plugin or p.name
                return "", st
            last = st
            last.plugin = last.plugin or p.name
        return "", last

    def run_pre_score(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> Status:
        for p in self.plugins.pre_score:
            st = p.pre_score(state, pod, nodes)
            if st.code == Code.SKIP:
                state.setdefault("_skip_score", set()).add(p.name)
                continue
            if not st.ok:
                return st
        return SUCCESS

    def run_score(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> dict[str, int]:
        """Each node's weighted total over the score plugins (each normalized to 0..100)."""
        names = [n._name for n in nodes]
        totals = [0] * len(nodes)
        skip = state.get("_skip_score", ())
        top = MAX_NODE_SCORE
        for p, weight in self.plugins.score:
            if p.name in skip:
                continue
            score = p.score
            vals = [score(state, pod, n) for n in nodes]
            normalize = getattr(p, "normalize_score", None)
            if normalize is not None:
                scores = dict(zip(names, vals))
                normalize(state, pod, scores)
                vals = [scores[name] for name in names]
            totals = [t + (top if s > top else s if s > 0 else 0) * weight for t, s in zip(totals, vals)]
        return dict(zip(names, totals))

    def run_reserve(self, state: CycleState, pod: Obj, node_name: str) -> Status:
        for i, p in enumerate(self.plugins.reserve):
            st = p.reserve(state, pod, node_name)
            if not st.ok:
                for q in reversed(self.plugins.reserve[:i + 1]):
                    q.unreserve(state, pod, node_name)
                return st
        return SUCCESS

    def run_unreserve(self, state: CycleState, pod: Obj, node_name: str) -> None:
        for p in reversed(self.plugins.reserve):
            p.unreserve(state, pod, node_name)

    def run_permit(self, state: CycleState, pod: Obj, node_name: str) -> Status:
        for p in self.plugins.permit:
            st = p.permit(state, pod, node_name)
            if not st.ok:
                return st
        return SUCCESS

    async def run_bind(self, state: CycleState, pod: Obj, node_name: str) -> Status:
        for p in self.plugins.pre_bind:
            st = await p.pre_bind(state, pod, node_name)
            if not st.ok:
                return st
        for p in self.plugins.bind:
            st = await p.bind(state, pod, node_name)
            if st.code == Code.SKIP:
                continue
            return st
        return Status.error("no bind plugin bound the pod")


def default_normalize(scores: dict[str, int], reverse: bool = False) -> None:
    """Scale to 0..100 by the highest score (upstream's DefaultNormalizeScore); reverse flips."""
    top = max(scores.values(), default=0)
    if top == 0:
        if reverse:
            for k in scores:
                scores[k] = MAX_NODE_SCORE
        return
    for k, v in scores.items():
        s = MAX_NODE_SCORE * v // top
        scores[k] = MAX_NODE_SCORE - s if reverse else s


def fit_error_message(total_nodes: int, statuses: Iterable[Status], pre_filter_msg: str = "") -> str:
    """Upstream's FitError text: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
    untolerated taint {k: v}." (reasons counted over nodes and sorted)."""
    if pre_filter_msg:
        return f"0/{total_nodes} nodes are available: {pre_filter_msg}."
    counts: dict[str, int] = {}
    for st in statuses:
        for r in st.reasons:
            counts[r] = counts.get(r, 0) + 1
    parts = sorted(f"{n} {r}" for r, n in counts.items())
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."


BindFunc = Callable[[Obj, str], Awaitable[None]]
