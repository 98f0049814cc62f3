"""InterPodAffinity, table by table: cases written for this project from upstream's
interpodaffinity filtering_test.go (TestRequiredAffinitySingleNode, TestRequiredAffinityMultipleNodes)
and scoring_test.go (TestPreferredAffinity, TestPreferredAffinityWithHardPodAffinitySymmetricWeight)."""
from __future__ import annotations

import pytest

from kubelab.scheduler.framework import Code, CycleState, NodeInfo
from kubelab.scheduler.plugins.interpodaffinity import (ERR_AFFINITY, ERR_ANTI_AFFINITY, ERR_EXISTING_ANTI_AFFINITY,
                                                        InterPodAffinity)

ZONE = "zone"


def node(name, **labels):
    return {"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


def pod(name, ns="default", labels=None, affinity=None, node_name=None):
    spec = {"containers": [{"name": "c", "image": "i"}]}
    if affinity:
        spec["affinity"] = affinity
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": ns, "uid": f"{ns}-{name}", "labels": labels or {}}, "spec": spec}


def term(key="security", op="In", values=("S1",), topology=ZONE, **extra):
    expr = {"key": key, "operator": op}
    if values is not None:
        expr["values"] = list(values)
    return {"labelSelector": {"matchExpressions": [expr]}, "topologyKey": topology, **extra}


def affinity(required=(), anti=(), preferred=(), preferred_anti=()):
    a = {}
    if required or preferred:
        a["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": list(required),
                            "preferredDuringSchedulingIgnoredDuringExecution": list(preferred)}
    if anti or preferred_anti:
        a["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": list(anti),
                                "preferredDuringSchedulingIgnoredDuringExecution": list(preferred_anti)}
    return a


class Namespaces:
    """The namespace informer's get (pure lookup table)."""

    def __init__(self, labels: dict[str, dict]) -> None:
        self.labels = labels

    def get(self, name):
        return {"metadata": {"name": name, "labels": self.labels.get(name, {})}} if name in self.labels else None


def cluster(nodes_and_pods):
    infos = []
    for n, pods in nodes_and_pods:
        ni = NodeInfo(n)
        for p in pods:
            ni.add_pod(p)
        infos.append(ni)
    return infos


def run_filter(plugin, incoming, infos):
    state = CycleState()
    state["_all_nodes"] = infos
    st, _ = plugin.pre_filter(state, incoming, infos)
    if st.code == Code.SKIP:
        return {n.name: "ok" for n in infos}
    assert st.ok, st
    out = {}
    for n in infos:
        s = plugin.filter(state, incoming, n)
        out[n.name] = "ok" if s.ok else (s.reasons[0], s.code)
    return out


N1 = node("n1", zone="z1", region="r1")
N2 = node("n2", zone="z2", region="r1")
N3 = node("n3", region="r2")              # no zone label
UNRES, UNSCH = Code.UNSCHEDULABLE_AND_UNRESOLVABLE, Code.UNSCHEDULABLE

CASES = [
    ("no required rules, no existing pods: fits everywhere",
     pod("p"), [(N1, [])], {"n1": "ok"}),
    ("affinity In matches the existing pod in the zone",
     pod("p", affinity=affinity([term()])),
     [(N1, [pod("e", labels={"security": "S1"})]), (N2, [])],
     {"n1": "ok", "n2": (ERR_AFFINITY, UNRES)}),
    ("affinity NotIn matches the existing pod",
     pod("p", affinity=affinity([term(op="NotIn", values=("S2",))])),
     [(N1, [pod("e", labels={"security": "S1"})]), (N2, [])],
     {"n1": "ok", "n2": (ERR_AFFINITY, UNRES)}),
    ("affinity does not match a pod of another namespace",
     pod("p", affinity=affinity([term()])),
     [(N1, [pod("e", ns="other", labels={"security": "S1"})])],
     {"n1": (ERR_AFFINITY, UNRES)}),
    ("affinity with namespaces lists the other namespace",
     pod("p", affinity=affinity([term(namespaces=["other"])])),
     [(N1, [pod("e", ns="other", labels={"security": "S1"})])],
     {"n1": "ok"}),
    ("affinity with namespaceSelector selects the other namespace by its labels",
     pod("p", affinity=affinity([term(namespaceSelector={"matchLabels": {"team": "a"}})])),
     [(N1, [pod("e", ns="other", labels={"security": "S1"})]), (N2, [pod("f", ns="third", labels={"security": "S1"})])],
     {"n1": "ok", "n2": (ERR_AFFINITY, UNRES)}),
    ("affinity with an empty namespaceSelector matches every namespace",
     pod("p", affinity=affinity([term(namespaceSelector={})])),
     [(N1, [pod("e", ns="third", labels={"security": "S1"})]), (N2, [])],
     {"n1": "ok", "n2": (ERR_AFFINITY, UNRES)}),
    ("unmatching selector and the pod does not match itself: nowhere",
     pod("p", affinity=affinity([term(values=("S2",))])),
     [(N1, [pod("e", labels={"security": "S1"})])],
     {"n1": (ERR_AFFINITY, UNRES)}),
    ("first pod of a group: it matches its own term and no pod matches anywhere",
     pod("p", labels={"security": "S1"}, affinity=affinity([term()])),
     [(N1, []), (N2, [pod("e", labels={"security": "S9"})]), (N3, [])],
     {"n1": "ok", "n2": "ok", "n3": (ERR_AFFINITY, UNRES)}),
    ("not the first pod once a matching pod exists: only its zone",
     pod("p", labels={"security": "S1"}, affinity=affinity([term()])),
     [(N1, []), (N2, [pod("e", labels={"security": "S1"})])],
     {"n1": (ERR_AFFINITY, UNRES), "n2": "ok"}),
    ("all affinity terms must match the same pod",
     pod("p", affinity=affinity([term(), term(key="app", values=("web",))])),
     [(N1, [pod("e", labels={"security": "S1"})]), (N2, [pod("f", labels={"app": "web"})])],
     {"n1": (ERR_AFFINITY, UNRES), "n2": (ERR_AFFINITY, UNRES)}),
    ("affinity and anti-affinity both satisfied",
     pod("p", affinity=affinity([term()], [term(values=("S2",))])),
     [(N1, [pod("e", labels={"security": "S1"})])],
     {"n1": "ok"}),
    ("anti-affinity: not in the zone of a matching pod, fine elsewhere",
     pod("p", affinity=affinity(anti=[term()])),
     [(N1, [pod("e", labels={"security": "S1"})]), (N2, []), (N3, [])],
     {"n1": (ERR_ANTI_AFFINITY, UNSCH), "n2": "ok", "n3": "ok"}),
    ("anti-affinity by hostname-like key only rejects that node",
     pod("p", affinity=affinity(anti=[term(topology="region")])),
     [(N1, [pod("e", labels={"security": "S1"})]), (N2, []), (N3, [])],
     {"n1": (ERR_ANTI_AFFINITY, UNSCH), "n2": (ERR_ANTI_AFFINITY, UNSCH), "n3": "ok"}),
    ("the existing pod's anti-affinity rejects the incoming pod in its zone",
     pod("p", labels={"security": "S1"}),
     [(N1, [pod("e", affinity=affinity(anti=[term()]))]), (N2, [])],
     {"n1": (ERR_EXISTING_ANTI_AFFINITY, UNSCH), "n2": "ok"}),
    ("the existing pod's anti-affinity does not match: fits",
     pod("p", labels={"security": "S2"}),
     [(N1, [pod("e", affinity=affinity(anti=[term()]))])],
     {"n1": "ok"}),
    ("the existing pod's anti-affinity in another namespace does not select ours",
     pod("p", labels={"security": "S1"}),
     [(N1, [pod("e", ns="other", affinity=affinity(anti=[term()]))])],
     {"n1": "ok"}),
    ("the existing pod's anti-affinity namespaceSelector selects our namespace",
     pod("p", labels={"security": "S1"}),
     [(N1, [pod("e", ns="other", affinity=affinity(anti=[term(namespaceSelector={"matchLabels": {"env": "prod"}})]))])],
     {"n1": (ERR_EXISTING_ANTI_AFFINITY, UNSCH)}),
    ("matchLabelKeys narrows the term to pods with the pod's own value",
     pod("p", labels={"security": "S1", "rev": "2"}, affinity=affinity(anti=[term(matchLabelKeys=["rev"])])),
     [(N1, [pod("e", labels={"security": "S1", "rev": "1"})]), (N2, [pod("f", labels={"security": "S1", "rev": "2"})])],
     {"n1": "ok", "n2": (ERR_ANTI_AFFINITY, UNSCH)}),
]


@pytest.mark.parametrize("name,incoming,layout,want", CASES, ids=[c[0] for c in CASES])
def test_required_affinity(name, incoming, layout, want):
    plugin = InterPodAffinity()
    plugin._namespaces = Namespaces({"default": {"env": "prod"}, "other": {"team": "a"}, "third": {}})
    assert run_filter(plugin, incoming, cluster(layout)) == want


def test_skipped_when_no_pod_has_terms():
    plugin = InterPodAffinity()
    infos = cluster([(N1, [pod("e", labels={"a": "b"})])])
    state = CycleState()
    st, _ = plugin.pre_filter(state, pod("p"), infos)
    assert st.code == Code.SKIP
    assert plugin.pre_score(state, pod("p"), infos).code == Code.SKIP


def test_bad_selector_is_an_error_not_a_traceback():
    bad = pod("p", affinity=affinity([{"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Foo"}]},
                                       "topologyKey": ZONE}]))
    st, _ = InterPodAffinity().pre_filter(CycleState(), bad, cluster([(N1, [])]))
    assert st.code == Code.ERROR and "parsing pod" in st.message()


def test_remove_and_add_pod_extensions_update_the_counts():
    plugin = InterPodAffinity()
    victim = pod("e", labels={"security": "S1"})
    infos = cluster([(N1, [victim])])
    incoming = pod("p", affinity=affinity(anti=[term()]))
    state = CycleState()
    state["_all_nodes"] = infos
    plugin.pre_filter(state, incoming, infos)
    assert not plugin.filter(state, incoming, infos[0]).ok
    copy = state.clone()
    plugin.remove_pod(copy, incoming, victim, infos[0])
    assert plugin.filter(copy, incoming, infos[0]).ok
    assert not plugin.filter(state, incoming, infos[0]).ok     # the original is untouched
    plugin.add_pod(copy, incoming, victim, infos[0])
    assert not plugin.filter(copy, incoming, infos[0]).ok


def scores(plugin, incoming, infos):
    state = CycleState()
    state["_all_nodes"] = infos
    st = plugin.pre_score(state, incoming, infos)
    if st.code == Code.SKIP:
        return {n.name: 0 for n in infos}
    raw = {n.name: plugin.score(state, incoming, n) for n in infos}
    plugin.normalize_score(state, incoming, raw)
    return raw


def weighted(w, t):
    return {"weight": w, "podAffinityTerm": t}


R1, R2 = node("n1", region="china"), node("n2", region="india")
R3 = node("n3", region="china")


def test_preferred_affinity_credits_every_node_of_the_region():
    incoming = pod("p", affinity=affinity(preferred=[weighted(5, term(topology="region"))]))
    infos = cluster([(R1, [pod("e", labels={"security": "S1"})]), (R2, []), (R3, [])])
    assert scores(InterPodAffinity(), incoming, infos) == {"n1": 100, "n2": 0, "n3": 100}


def test_preferred_anti_affinity_and_affinity_weigh_against_each_other():
    incoming = pod("p", affinity=affinity(preferred=[weighted(5, term(topology="region"))],
                                          preferred_anti=[weighted(8, term(key="app", values=("db",),
                                                                           topology="region"))]))
    infos = cluster([(R1, [pod("e", labels={"security": "S1"}), pod("d", labels={"app": "db"})]),
                     (R2, [pod("f", labels={"security": "S1"})]), (node("n4", region="japan"), [])])
    # china 5-8=-3, india 5, japan 0: scaled min..max
    assert scores(InterPodAffinity(), incoming, infos) == {"n1": 0, "n2": 100, "n4": 37}


def test_existing_pods_required_affinity_counts_with_the_hard_weight():
    existing = pod("e", affinity=affinity([term(topology="region")]))
    infos = cluster([(R1, [existing]), (R2, []), (R3, [])])
    incoming = pod("p", labels={"security": "S1"})
    assert scores(InterPodAffinity(hard_pod_affinity_weight=1), incoming, infos) == {"n1": 100, "n2": 0, "n3": 100}
    assert scores(InterPodAffinity(hard_pod_affinity_weight=0), incoming, infos) == {"n1": 0, "n2": 0, "n3": 0}


def test_existing_pods_preferred_anti_affinity_pushes_the_pod_away():
    existing = pod("e", affinity=affinity(preferred_anti=[weighted(10, term(topology="region"))]))
    infos = cluster([(R1, [existing]), (R2, [])])
    incoming = pod("p", labels={"security": "S1"})
    assert scores(InterPodAffinity(), incoming, infos) == {"n1": 0, "n2": 100}
    ignoring = InterPodAffinity(ignore_preferred_terms_of_existing_pods=True)
    assert scores(ignoring, incoming, infos) == {"n1": 0, "n2": 0}
