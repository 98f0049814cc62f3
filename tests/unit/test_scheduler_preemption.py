"""DefaultPreemption, table by table: cases written for this project from upstream's
defaultpreemption tests (TestSelectNodesForPreemption, TestPickOneNodeForPreemption,
TestPodEligibleToPreemptOthers, filterPodsWithPDBViolation), run through the default profile's
real filters on NodeInfo copies."""
from __future__ import annotations

import pytest

from kubelab.scheduler.config import SchedulerConfig, build_profiles
from kubelab.scheduler.framework import Code, CycleState, NodeInfo, Status
from kubelab.scheduler.plugins.defaultpreemption import (MSG_NEVER, MSG_NO_VICTIMS, MSG_NOT_HELPFUL, MSG_TERMINATING,
                                                         Candidate, DefaultPreemption, pick_one_node,
                                                         split_by_pdb_violation)


def node(name, cpu="4", **labels):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}


def pod(name, cpu="1", prio=0, start=None, labels=None, node_name=None, never=False, affinity=None, **status):
    spec = {"priority": prio, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}
    if node_name:
        spec["nodeName"] = node_name
    if never:
        spec["preemptionPolicy"] = "Never"
    if affinity:
        spec["affinity"] = affinity
    st = dict(status)
    if start:
        st["startTime"] = start
    return {"metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels or {}},
            "spec": spec, "status": st}


def pdb(name, labels, allowed, disrupted=()):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {"matchLabels": labels}},
            "status": {"disruptionsAllowed": allowed, "disruptedPods": {d: "2024-01-01T00:00:00Z" for d in disrupted}}}


def framework():
    (fwk,) = build_profiles(SchedulerConfig(), None).values()
    return fwk


def infos(layout):
    out = []
    for n, pods in layout:
        ni = NodeInfo(n)
        for p in pods:
            ni.add_pod(p)
        out.append(ni)
    return out


def dry_run(incoming, layout, pdbs=()):
    """PreFilter and Filter as the scheduler runs them, then the candidates preemption finds."""
    fwk = framework()
    nodes = infos(layout)
    state = CycleState()
    state["_all_nodes"], state["_framework"] = nodes, fwk
    st, _ = fwk.run_pre_filter(state, incoming, nodes)
    assert st.ok
    statuses = {n.name: s for n in nodes if not (s := fwk.run_filter(state, incoming, n)).ok}
    plugin = DefaultPreemption()
    plugin.pdbs = lambda: list(pdbs)
    cands, node_statuses = plugin.find_candidates(fwk, state, incoming, nodes, statuses)
    return {c.node: (sorted(v["metadata"]["name"] for v in c.victims), c.pdb_violations) for c in cands}, \
        {k: s.reasons[0] for k, s in node_statuses.items()}


T1, T2, T3 = "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2024-01-01T00:00:03Z"

CASES = [
    ("a lower-priority pod is evicted to make room",
     pod("p", cpu="2", prio=10), [(node("n1"), [pod("a", cpu="2", prio=1), pod("b", cpu="2", prio=1, start=T1)])],
     (), {"n1": (["a"], 0)}, {}),
    ("equal priority pods are not victims",
     pod("p", cpu="3", prio=1), [(node("n1"), [pod("a", cpu="2", prio=1), pod("b", cpu="2", prio=1)])],
     (), {}, {"n1": MSG_NO_VICTIMS}),
    ("higher-priority victims are reprieved first",
     pod("p", cpu="2", prio=10), [(node("n1"), [pod("lo", cpu="2", prio=1), pod("mid", cpu="2", prio=5)])],
     (), {"n1": (["lo"], 0)}, {}),
    ("of equal priority the later started goes",
     pod("p", cpu="2", prio=10), [(node("n1"), [pod("old", cpu="2", prio=1, start=T1),
                                                pod("new", cpu="2", prio=1, start=T2)])],
     (), {"n1": (["new"], 0)}, {}),
    ("removing every lower-priority pod still does not fit: the filter's reason",
     pod("p", cpu="3", prio=10), [(node("n1"), [pod("hi", cpu="2", prio=20), pod("lo", cpu="1", prio=1)])],
     (), {}, {"n1": "Insufficient cpu"}),
    ("nodes rejected as unresolvable are not tried",
     pod("p", cpu="3", prio=10), [(node("n1", cpu="2"), [pod("lo", cpu="1", prio=1)]),
                                  (node("n2"), [pod("x", cpu="2", prio=1)])],
     (), {"n2": (["x"], 0)}, {}),
    ("a PDB-protected pod is reprieved before the others",
     pod("p", cpu="2", prio=10), [(node("n1"), [pod("guarded", cpu="2", prio=1, labels={"app": "db"}, start=T3),
                                                pod("free", cpu="2", prio=1, start=T1)])],
     (pdb("db", {"app": "db"}, 0),), {"n1": (["free"], 0)}, {}),
    ("a PDB that must be violated is counted",
     pod("p", cpu="4", prio=10), [(node("n1"), [pod("g1", cpu="2", prio=1, labels={"app": "db"}),
                                                pod("g2", cpu="2", prio=1, labels={"app": "db"})])],
     (pdb("db", {"app": "db"}, 1),), {"n1": (["g1", "g2"], 1)}, {}),
    ("anti-affinity: the pod that repels it is the victim",
     pod("p", cpu="1", prio=10, affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}),
     [(node("n1"), [pod("x", cpu="1", prio=1, labels={"app": "x"}), pod("y", cpu="1", prio=1)])],
     (), {"n1": (["x"], 0)}, {}),
]


@pytest.mark.parametrize("name,incoming,layout,pdbs,want,why", CASES, ids=[c[0] for c in CASES])
def test_select_victims(name, incoming, layout, pdbs, want, why):
    got, statuses = dry_run(incoming, layout, pdbs)
    assert got == want
    for n, reason in why.items():
        assert statuses[n] == reason
    for n, r in statuses.items():
        if n not in why and n not in want:
            assert r in (MSG_NOT_HELPFUL, MSG_NO_VICTIMS) or r.startswith("Insufficient")


def test_pdb_violation_split_spends_the_budget_and_skips_disrupted_pods():
    pods = [pod(n, labels={"app": "db"}) for n in ("a", "b", "c")] + [pod("nolabels")]
    violating, ok = split_by_pdb_violation(pods, [pdb("db", {"app": "db"}, 1, disrupted=("b",))])
    assert [p["metadata"]["name"] for p in violating] == ["c"]
    assert [p["metadata"]["name"] for p in ok] == ["a", "b", "nolabels"]
    other_ns = dict(pdb("db", {"app": "db"}, 0), metadata={"name": "db", "namespace": "x"})
    assert split_by_pdb_violation(pods, [other_ns])[0] == []


def cand(node_name, *victims, violations=0):
    return Candidate(node_name, list(victims), violations)


@pytest.mark.parametrize("name,cands,want", [
    ("a node needing no victims wins at once", [cand("n1", pod("a", prio=1)), cand("n2")], "n2"),
    ("fewest PDB violations", [cand("n1", pod("a", prio=1), violations=1), cand("n2", pod("b", prio=5), pod("c", prio=5))],
     "n2"),
    ("lowest highest-victim priority", [cand("n1", pod("a", prio=3)), cand("n2", pod("b", prio=1), pod("c", prio=2))],
     "n2"),
    ("smallest priority sum", [cand("n1", pod("a", prio=2), pod("b", prio=2)), cand("n2", pod("c", prio=2), pod("d", prio=1))],
     "n2"),
    ("latest start of the highest-priority victims",
     [cand("n1", pod("a", prio=1, start=T1)), cand("n2", pod("b", prio=1, start=T3)), cand("n3", pod("c", prio=1, start=T2))],
     "n2"),
    ("all equal: the first", [cand("n1", pod("a", prio=1, start=T1)), cand("n2", pod("b", prio=1, start=T1))], "n1"),
])
def test_pick_one_node(name, cands, want):
    assert pick_one_node(cands).node == want


def test_eligibility():
    plugin = DefaultPreemption()
    dying = pod("dying", prio=1, conditions=[{"type": "DisruptionTarget", "status": "True",
                                              "reason": "PreemptionByScheduler"}])
    dying["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    n1 = infos([(node("n1"), [dying])])[0]
    assert plugin.eligible(pod("p", never=True), {}, {}) == (False, MSG_NEVER)
    assert plugin.eligible(pod("p", prio=10), {"n1": n1}, {}) == (True, "")
    waiting = pod("p", prio=10, nominatedNodeName="n1")
    assert plugin.eligible(waiting, {"n1": n1}, {}) == (False, MSG_TERMINATING)
    unresolvable = {"n1": Status.unschedulable("x", unresolvable=True)}
    assert plugin.eligible(waiting, {"n1": n1}, unresolvable) == (True, "")


def test_nominated_pods_of_higher_priority_count_in_filter():
    fwk = framework()
    n1 = infos([(node("n1", cpu="2"), [])])[0]
    fwk.nominated = lambda name: [pod("nominated", cpu="2", prio=100)] if name == "n1" else []
    state = CycleState()
    state["_all_nodes"] = [n1]
    low = pod("low", cpu="1", prio=5)
    fwk.run_pre_filter(state, low, [n1])
    st = fwk.run_filter_with_nominated(state, low, n1)
    assert st.code == Code.UNSCHEDULABLE and st.reasons == ["Insufficient cpu"]
    high = pod("high", cpu="1", prio=200)         # a lower-priority nomination does not hold it back
    state2 = CycleState()
    fwk.run_pre_filter(state2, high, [n1])
    assert fwk.run_filter_with_nominated(state2, high, n1).ok
