"""InterPodAffinity, as upstream's plugin: required pod affinity and anti-affinity as Filter, the
preferred terms (the incoming pod's and the existing pods') as Score.

PreFilter counts, per topology pair (topologyKey, node label value), the existing pods matching
all the incoming pod's required affinity terms, those matching each anti-affinity term, and the
existing pods whose required anti-affinity terms match the incoming pod; Filter then only looks
the node's pairs up. A pod whose affinity terms match no pod anywhere may still go where its
topology keys exist when it matches its own terms (the first pod of a group). Term namespaces:
`namespaces`, or the pod's own namespace when neither it nor `namespaceSelector` is set, plus
the namespaces `namespaceSelector` selects. Nothing is computed when neither the pod nor any
existing pod has such terms, so plain pods cost nothing.

Score (upstream's processExistingPod): +weight for every existing pod matching a preferred
affinity term, -weight for a preferred anti-affinity term, +hardPodAffinityWeight for existing
pods whose required affinity terms match the incoming pod, and +/- the existing pods' preferred
terms that match it, credited to every node sharing the topology pair; then scaled min..max to
0..100.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from kubelab.api.selectors import IN, NOT_IN, LabelSelector, Requirement, SelectorError, label_selector_from_api

from ..framework import MAX_NODE_SCORE, SUCCESS, Code, CycleState, NodeInfo, Status

NAME = "InterPodAffinity"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
DEFAULT_HARD_POD_AFFINITY_WEIGHT = 1

Obj = dict[str, Any]
Pair = tuple[str, str]


@dataclass(frozen=True)
class AffinityTerm:
    """A PodAffinityTerm made ready to match: the selector (with matchLabelKeys and
    mismatchLabelKeys folded in), the namespaces and the namespace selector."""
    selector: LabelSelector
    namespaces: frozenset[str]
    ns_selector: LabelSelector
    topology_key: str
    weight: int = 0

    def matches(self, pod: Obj, ns_labels: Callable[[str], dict]) -> bool:
        m = pod["metadata"]
        ns = m.get("namespace", "")
        if ns in self.namespaces or (not self.ns_selector.matches_nothing and self.ns_selector.matches(ns_labels(ns))):
            return self.selector.matches(m.get("labels") or {})
        return False


def _term(pod: Obj, t: Obj, weight: int = 0) -> AffinityTerm:
    labels = pod["metadata"].get("labels") or {}
    sel = label_selector_from_api(t.get("labelSelector"))
    extra = [Requirement(k, IN, (labels[k],)) for k in t.get("matchLabelKeys") or [] if k in labels] + \
        [Requirement(k, NOT_IN, (labels[k],)) for k in t.get("mismatchLabelKeys") or [] if k in labels]
    if extra:
        sel = sel.add(*extra)
    nss = t.get("namespaces") or []
    ns_sel_raw = t.get("namespaceSelector")
    if not nss and ns_sel_raw is None:
        nss = [pod["metadata"].get("namespace", "")]
    return AffinityTerm(sel, frozenset(nss), label_selector_from_api(ns_sel_raw), t.get("topologyKey") or "", weight)


@dataclass
class PodTerms:
    required_affinity: list[AffinityTerm] = field(default_factory=list)
    required_anti_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_anti_affinity: list[AffinityTerm] = field(default_factory=list)


def pod_terms(pod: Obj) -> PodTerms:
    """The pod's four term lists; SelectorError on a bad selector."""
    a = (pod.get("spec") or {}).get("affinity") or {}
    aff, anti = a.get("podAffinity") or {}, a.get("podAntiAffinity") or {}
    out = PodTerms()
    for src, req, pref in ((aff, out.required_affinity, out.preferred_affinity),
                           (anti, out.required_anti_affinity, out.preferred_anti_affinity)):
        for t in src.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            req.append(_term(pod, t))
        for w in src.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
            if w.get("weight"):
                pref.append(_term(pod, w.get("podAffinityTerm") or {}, int(w["weight"])))
    return out


def _existing_terms(pod: Obj) -> PodTerms:
    try:
        return pod_terms(pod)
    except SelectorError:
        return PodTerms()          # the apiserver validated it; a bad term matches nothing


def matches_all(terms: list[AffinityTerm], pod: Obj, ns_labels: Callable[[str], dict]) -> bool:
    return bool(terms) and all(t.matches(pod, ns_labels) for t in terms)


def _bump(counts: dict[Pair, int], node: Obj, key: str, by: int) -> None:
    v = (node["metadata"].get("labels") or {}).get(key)
    if v is None:
        return
    pair = (key, v)
    n = counts.get(pair, 0) + by
    if n:
        counts[pair] = n
    else:
        counts.pop(pair, None)


class _PreFilterState:
    def __init__(self, pod: Obj, terms: PodTerms, ns_labels: Callable[[str], dict]) -> None:
        self.pod, self.terms, self.ns_labels = pod, terms, ns_labels
        self.existing_anti: dict[Pair, int] = {}   # pairs where existing pods' anti-affinity rejects the pod
        self.affinity: dict[Pair, int] = {}        # pairs with pods matching all required affinity terms
        self.anti: dict[Pair, int] = {}            # pairs with pods matching an anti-affinity term

    def clone(self) -> "_PreFilterState":
        c = _PreFilterState(self.pod, self.terms, self.ns_labels)
        c.existing_anti, c.affinity, c.anti = dict(self.existing_anti), dict(self.affinity), dict(self.anti)
        return c

    def update_with(self, other: Obj, node: Obj, by: int) -> None:
        """Upstream's updateWithPod: `other` counted (by=1) or removed (by=-1) on `node`."""
        for t in _existing_terms(other).required_anti_affinity:
            if t.matches(self.pod, self.ns_labels):
                _bump(self.existing_anti, node, t.topology_key, by)
        if matches_all(self.terms.required_affinity, other, self.ns_labels):
            for t in self.terms.required_affinity:
                _bump(self.affinity, node, t.topology_key, by)
        for t in self.terms.required_anti_affinity:
            if t.matches(other, self.ns_labels):
                _bump(self.anti, node, t.topology_key, by)


class InterPodAffinity:
    name = NAME

    def __init__(self, hard_pod_affinity_weight: int = DEFAULT_HARD_POD_AFFINITY_WEIGHT,
                 ignore_preferred_terms_of_existing_pods: bool = False) -> None:
        if not 0 <= hard_pod_affinity_weight <= 100:
            raise ValueError(f"hardPodAffinityWeight: Invalid value: {hard_pod_affinity_weight}: "
                             "not in valid range [0-100]")
        self.hard_weight = hard_pod_affinity_weight
        self.ignore_existing = ignore_preferred_terms_of_existing_pods
        self._namespaces: Any = None

    def bind_handle(self, handle: Any) -> None:
        """The scheduler's informers: namespace labels for namespaceSelector."""
        self._namespaces = handle.informer("v1", "namespaces")

    def ns_labels(self, ns: str) -> dict:
        if self._namespaces is None:
            return {}
        obj = self._namespaces.get(ns)
        return (obj or {}).get("metadata", {}).get("labels") or {}

    # -- Filter ------------------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> tuple[Status, None]:
        all_nodes = state.get("_all_nodes", nodes)
        with_anti = [n for n in all_nodes if n.pods_with_required_anti_affinity]
        if not has_terms(pod) and not with_anti:
            return Status(Code.SKIP), None
        try:
            terms = pod_terms(pod)
        except SelectorError as e:
            return Status.error(f"parsing pod: {e}"), None
        if not terms.required_affinity and not terms.required_anti_affinity and not with_anti:
            return Status(Code.SKIP), None
        cache: dict[str, dict] = {}

        def ns_labels(ns: str) -> dict:
            if ns not in cache:
                cache[ns] = self.ns_labels(ns)
            return cache[ns]
        s = _PreFilterState(pod, terms, ns_labels)
        for n in with_anti:
            for other in n.pods_with_required_anti_affinity.values():
                for t in _existing_terms(other).required_anti_affinity:
                    if t.matches(pod, ns_labels):
                        _bump(s.existing_anti, n.node, t.topology_key, 1)
        if terms.required_affinity or terms.required_anti_affinity:
            for n in all_nodes:
                for other in n.pods.values():
                    if terms.required_affinity and matches_all(terms.required_affinity, other, ns_labels):
                        for t in terms.required_affinity:
                            _bump(s.affinity, n.node, t.topology_key, 1)
                    for t in terms.required_anti_affinity:
                        if t.matches(other, ns_labels):
                            _bump(s.anti, n.node, t.topology_key, 1)
        state[NAME] = s
        return SUCCESS, None

    def add_pod(self, state: CycleState, pod: Obj, other: Obj, node: NodeInfo) -> None:
        s = state.get(NAME)
        if s is not None:
            s.update_with(other, node.node, 1)

    def remove_pod(self, state: CycleState, pod: Obj, other: Obj, node: NodeInfo) -> None:
        s = state.get(NAME)
        if s is not None:
            s.update_with(other, node.node, -1)

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        s: _PreFilterState | None = state.get(NAME)
        if s is None:
            return SUCCESS
        labels = node.node["metadata"].get("labels") or {}
        if not _satisfies_affinity(s, labels):
            return Status.unschedulable(ERR_AFFINITY, unresolvable=True)
        if s.anti:
            for t in s.terms.required_anti_affinity:
                v = labels.get(t.topology_key)
                if v is not None and s.anti.get((t.topology_key, v), 0) > 0:
                    return Status.unschedulable(ERR_ANTI_AFFINITY)
        if s.existing_anti:
            for k, v in labels.items():
                if s.existing_anti.get((k, v), 0) > 0:
                    return Status.unschedulable(ERR_EXISTING_ANTI_AFFINITY)
        return SUCCESS

    # -- Score -------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Obj, nodes: list[NodeInfo]) -> Status:
        a = (pod.get("spec") or {}).get("affinity") or {}
        has_pref = bool(((a.get("podAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution")) or
                        ((a.get("podAntiAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution")))
        if self.ignore_existing and not has_pref:
            return Status(Code.SKIP)
        all_nodes = state.get("_all_nodes", nodes)
        if not has_pref:
            all_nodes = [n for n in all_nodes if n.pods_with_affinity]
            if not all_nodes:
                return Status(Code.SKIP)
        try:
            terms = pod_terms(pod)
        except SelectorError as e:
            return Status.error(f"parsing pod: {e}")
        pod_ns_labels = self.ns_labels(pod["metadata"].get("namespace", ""))
        scores: dict[str, dict[str, int]] = {}     # topologyKey -> value -> score

        def credit(t: AffinityTerm, target: Obj, ns_labels: Callable[[str], dict], node: Obj, w: int) -> None:
            if t.matches(target, ns_labels):
                v = (node["metadata"].get("labels") or {}).get(t.topology_key)
                if v is not None:
                    d = scores.setdefault(t.topology_key, {})
                    d[v] = d.get(v, 0) + w
        cache: dict[str, dict] = {}

        def ns_labels(ns: str) -> dict:
            if ns not in cache:
                cache[ns] = self.ns_labels(ns)
            return cache[ns]

        def incoming_ns(ns: str) -> dict:
            return pod_ns_labels
        for n in all_nodes:
            if not (n.node["metadata"].get("labels")):
                continue
            for other in (n.pods if has_pref else n.pods_with_affinity).values():
                for t in terms.preferred_affinity:
                    credit(t, other, ns_labels, n.node, t.weight)
                for t in terms.preferred_anti_affinity:
                    credit(t, other, ns_labels, n.node, -t.weight)
                if not _has_pod_affinity(other):
                    continue
                ot = _existing_terms(other)
                if self.hard_weight > 0:
                    for t in ot.required_affinity:
                        credit(t, pod, incoming_ns, n.node, self.hard_weight)
                for t in ot.preferred_affinity:
                    credit(t, pod, incoming_ns, n.node, t.weight)
                for t in ot.preferred_anti_affinity:
                    credit(t, pod, incoming_ns, n.node, -t.weight)
        if not scores:
            return Status(Code.SKIP)
        state[NAME + "/score"] = scores
        return SUCCESS

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        scores = state.get(NAME + "/score") or {}
        labels = node.node["metadata"].get("labels") or {}
        return sum(vals.get(labels[k], 0) for k, vals in scores.items() if k in labels)

    def normalize_score(self, state: CycleState, pod: Obj, scores: dict[str, int]) -> None:
        if not scores:
            return
        lo, hi = min(scores.values()), max(scores.values())
        for k, v in scores.items():
            scores[k] = int(MAX_NODE_SCORE * (v - lo) / (hi - lo)) if hi > lo else 0


def has_terms(pod: Obj) -> bool:
    return _has_pod_affinity(pod)


def _has_pod_affinity(pod: Obj) -> bool:
    a = (pod.get("spec") or {}).get("affinity") or {}
    return bool(a.get("podAffinity") or a.get("podAntiAffinity"))


def _satisfies_affinity(s: _PreFilterState, labels: dict) -> bool:
    """Upstream's satisfyPodAffinity, with the first-pod-of-a-group rule."""
    terms = s.terms.required_affinity
    if not terms:
        return True
    pods_exist = True
    for t in terms:
        v = labels.get(t.topology_key)
        if v is None:
            return False              # the node lacks the topology key
        if s.affinity.get((t.topology_key, v), 0) <= 0:
            pods_exist = False
    if pods_exist:
        return True
    # no pod matches anywhere and the pod matches its own terms: it may start the group
    return not s.affinity and matches_all(terms, s.pod, s.ns_labels)
