"""PodTopologySpread, table by table: cases written for this project from upstream's
podtopologyspread filtering_test.go (TestSingleConstraint, TestMultipleConstraints, minDomains,
node inclusion policies, matchLabelKeys) and scoring_test.go (TestPodTopologySpreadScore), plus the
system default constraints deduced from a ReplicaSet and a Service."""
from __future__ import annotations

import pytest

from kubelab.scheduler.framework import Code, CycleState, NodeInfo
from kubelab.scheduler.plugins.podtopologyspread import ERR_CONSTRAINTS, ERR_MISSING_LABEL, PodTopologySpread

ZONE, HOST = "zone", "kubernetes.io/hostname"


def node(name, zone=None, taints=None, **labels):
    lb = {HOST: name, **labels}
    if zone:
        lb[ZONE] = zone
    return {"metadata": {"name": name, "labels": lb}, "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


def pod(name, labels=None, constraints=None, ns="default", node_selector=None, owner=None, terminating=False):
    spec = {"containers": [{"name": "c", "image": "i"}]}
    if constraints:
        spec["topologySpreadConstraints"] = constraints
    if node_selector:
        spec["nodeSelector"] = node_selector
    meta = {"name": name, "namespace": ns, "uid": f"{ns}-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "spec": spec}


def spread(key=ZONE, skew=1, when="DoNotSchedule", sel=None, **extra):
    return {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": sel if sel is not None else {"foo": ""}}, **extra}


def placed(n, *names, labels=None, **kw):
    return [pod(x, labels=labels if labels is not None else {"foo": ""}, **kw) for x in names]


A, B = node("node-a", "zone1"), node("node-b", "zone1")
X, Y = node("node-x", "zone2"), node("node-y", "zone2")


def cluster(layout):
    infos = []
    for n, pods in layout:
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
        out[n.name] = "ok" if s.ok else s.reasons[0]
    return out


NO = ERR_CONSTRAINTS
CASES = [
    ("no existing pods", pod("p", {"foo": ""}, [spread()]),
     [(A, []), (B, []), (X, []), (Y, [])], {"node-a": "ok", "node-b": "ok", "node-x": "ok", "node-y": "ok"}),
    ("no existing pods, the incoming pod does not match itself", pod("p", {"bar": ""}, [spread()]),
     [(A, []), (X, [])], {"node-a": "ok", "node-x": "ok"}),
    ("existing pods in a different namespace do not count", pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1", "p-a2", ns="ns1")), (X, [])], {"node-a": "ok", "node-x": "ok"}),
    ("pods spread as 2/2: all nodes fit", pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1")), (B, placed(B, "p-b1")), (X, placed(X, "p-x1")), (Y, placed(Y, "p-y1"))],
     {"node-a": "ok", "node-b": "ok", "node-x": "ok", "node-y": "ok"}),
    ("pods spread as 3/1: only zone2 fits (maxSkew 1)", pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1", "p-a2")), (B, placed(B, "p-b1")), (X, placed(X, "p-x1")), (Y, [])],
     {"node-a": NO, "node-b": NO, "node-x": "ok", "node-y": "ok"}),
    ("maxSkew 2 lets zone1 take one more", pod("p", {"foo": ""}, [spread(skew=2)]),
     [(A, placed(A, "p-a1")), (B, placed(B, "p-b1")), (X, placed(X, "p-x1")), (Y, [])],
     {"node-a": "ok", "node-b": "ok", "node-x": "ok", "node-y": "ok"}),
    ("a node without the key: (missing required label), and it does not count",
     pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1")), (node("node-b"), placed(B, "p-b1", "p-b2")), (X, [])],
     {"node-a": NO, "node-b": ERR_MISSING_LABEL, "node-x": "ok"}),
    ("terminating pods do not count", pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1", "p-a2", terminating=True)), (X, [])], {"node-a": "ok", "node-x": "ok"}),
    ("hostname key spreads per node", pod("p", {"foo": ""}, [spread(key=HOST)]),
     [(A, placed(A, "p-a1")), (B, [])], {"node-a": NO, "node-b": "ok"}),
    ("two constraints: both must hold", pod("p", {"foo": ""}, [spread(), spread(key=HOST)]),
     [(A, placed(A, "p-a1")), (B, []), (X, placed(X, "p-x1", "p-x2")), (Y, [])],
     {"node-a": NO, "node-b": "ok", "node-x": NO, "node-y": NO}),
    ("minDomains 3 with two zones: the global minimum counts as 0",
     pod("p", {"foo": ""}, [spread(minDomains=3)]),
     [(A, placed(A, "p-a1")), (X, placed(X, "p-x1"))], {"node-a": NO, "node-x": NO}),
    ("minDomains 2 with two zones: the real minimum", pod("p", {"foo": ""}, [spread(minDomains=2)]),
     [(A, placed(A, "p-a1")), (X, placed(X, "p-x1"))], {"node-a": "ok", "node-x": "ok"}),
    ("nodeAffinityPolicy Honor: zone2, excluded by the nodeSelector, is no domain",
     pod("p", {"foo": ""}, [spread()], node_selector={"disk": "ssd"}),
     [(node("node-a", "zone1", disk="ssd"), placed(A, "p-a1")), (X, [])], {"node-a": "ok", "node-x": "ok"}),
    ("nodeAffinityPolicy Ignore: the empty zone2 counts",
     pod("p", {"foo": ""}, [spread(nodeAffinityPolicy="Ignore")], node_selector={"disk": "ssd"}),
     [(node("node-a", "zone1", disk="ssd"), placed(A, "p-a1")), (X, [])], {"node-a": NO, "node-x": "ok"}),
    ("nodeTaintsPolicy Honor: an untolerated tainted zone is no domain",
     pod("p", {"foo": ""}, [spread(nodeTaintsPolicy="Honor")]),
     [(A, placed(A, "p-a1")), (node("node-x", "zone2", taints=[{"key": "k", "effect": "NoSchedule"}]), [])],
     {"node-a": "ok", "node-x": "ok"}),
    ("nodeTaintsPolicy Ignore (default): the tainted empty zone counts",
     pod("p", {"foo": ""}, [spread()]),
     [(A, placed(A, "p-a1")), (node("node-x", "zone2", taints=[{"key": "k", "effect": "NoSchedule"}]), [])],
     {"node-a": NO, "node-x": "ok"}),
    ("matchLabelKeys: only pods of the same revision count",
     pod("p", {"foo": "", "rev": "2"}, [spread(matchLabelKeys=["rev"])]),
     [(A, placed(A, "p-a1", "p-a2", labels={"foo": "", "rev": "1"})), (X, [])], {"node-a": "ok", "node-x": "ok"}),
    ("ScheduleAnyway constraints do not filter", pod("p", {"foo": ""}, [spread(when="ScheduleAnyway")]),
     [(A, placed(A, "p-a1", "p-a2")), (X, [])], {"node-a": "ok", "node-x": "ok"}),
]


@pytest.mark.parametrize("name,incoming,layout,want", CASES, ids=[c[0] for c in CASES])
def test_filter(name, incoming, layout, want):
    assert run_filter(PodTopologySpread(), incoming, cluster(layout)) == want


def test_remove_pod_extension_lowers_the_count():
    victim = pod("p-a1", {"foo": ""})
    infos = cluster([(A, [victim]), (X, [])])
    incoming = pod("p", {"foo": ""}, [spread()])
    plugin = PodTopologySpread()
    state = CycleState()
    state["_all_nodes"] = infos
    plugin.pre_filter(state, incoming, infos)
    assert not plugin.filter(state, incoming, infos[0]).ok
    copy = state.clone()
    plugin.remove_pod(copy, incoming, victim, infos[0])
    assert plugin.filter(copy, incoming, infos[0]).ok and not plugin.filter(state, incoming, infos[0]).ok


def scores(plugin, incoming, infos, feasible=None):
    state = CycleState()
    state["_all_nodes"] = infos
    feasible = feasible or infos
    st = plugin.pre_score(state, incoming, feasible)
    if st.code == Code.SKIP:
        return None
    raw = {n.name: plugin.score(state, incoming, n) for n in feasible}
    plugin.normalize_score(state, incoming, raw)
    return raw


def test_score_one_constraint_on_hostname_all_nodes_candidates():
    c = node("node-c", "zone2")
    d = node("node-d", "zone2")
    infos = cluster([(A, placed(A, "a1", "a2")), (B, placed(B, "b1")), (c, []), (d, placed(d, "d1", "d2", "d3"))])
    got = scores(PodTopologySpread(), pod("p", {"foo": ""}, [spread(key=HOST, when="ScheduleAnyway")]), infos)
    assert got == {"node-a": 20, "node-b": 60, "node-c": 100, "node-d": 0}


def test_score_no_existing_pods_everyone_100():
    infos = cluster([(A, []), (B, [])])
    got = scores(PodTopologySpread(), pod("p", {"foo": ""}, [spread(key=HOST, when="ScheduleAnyway")]), infos)
    assert got == {"node-a": 100, "node-b": 100}


def test_score_zone_constraint_counts_pods_on_nodes_that_are_not_candidates():
    infos = cluster([(A, placed(A, "a1")), (B, placed(B, "b1", "b2")), (X, []), (Y, placed(Y, "y1"))])
    feasible = [infos[0], infos[2]]
    got = scores(PodTopologySpread(), pod("p", {"foo": ""}, [spread(when="ScheduleAnyway")]), infos, feasible)
    # zone1 has 3 matching pods, zone2 1: the zone2 node is preferred
    assert got["node-x"] == 100 and got["node-a"] < got["node-x"]


def test_score_nodes_without_the_key_get_zero():
    infos = cluster([(A, placed(A, "a1")), (node("node-n"), [])])
    got = scores(PodTopologySpread(), pod("p", {"foo": ""}, [spread(when="ScheduleAnyway")]), infos)
    assert got == {"node-a": 100, "node-n": 0}


class Lister:
    """What the informers hold (pure lookup table: get by key, list by namespace)."""

    def __init__(self, *objs):
        self.objs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}

    def get(self, key):
        return self.objs.get(key)

    def by_index(self, index, ns):
        return [o for o in self.objs.values() if o["metadata"]["namespace"] == ns]


def with_listers(plugin, **listers):
    plugin._informers = {"services": Lister(), "replicationcontrollers": Lister(), "replicasets": Lister(),
                         "statefulsets": Lister(), **listers}
    return plugin


def test_system_default_constraints_use_the_replicaset_selector():
    rs = {"metadata": {"name": "web", "namespace": "default"},
          "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "controller": True, "uid": "x"}
    plugin = with_listers(PodTopologySpread(), replicasets=Lister(rs))
    incoming = pod("p", {"app": "web"}, owner=owner)
    cs = plugin.constraints(incoming, "ScheduleAnyway")
    assert [(c.topology_key, c.max_skew) for c in cs] == [(HOST, 3), ("topology.kubernetes.io/zone", 5)]
    assert cs[0].selector.matches({"app": "web"}) and not cs[0].selector.matches({"app": "db"})
    assert plugin.constraints(incoming, "DoNotSchedule") == []
    # spread by hostname: the node with fewer of the ReplicaSet's pods scores higher
    infos = cluster([(A, [pod(f"w{i}", {"app": "web"}) for i in range(4)]), (B, [])])
    got = scores(plugin, incoming, infos)
    assert got["node-b"] == 100 and got["node-a"] < 100


def test_system_default_constraints_use_service_selectors_and_skip_pods_nothing_selects():
    svc = {"metadata": {"name": "s", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}
    plugin = with_listers(PodTopologySpread(), services=Lister(svc))
    assert plugin.constraints(pod("p", {"app": "web", "x": "y"}), "ScheduleAnyway")[0].selector.matches(
        {"app": "web"})
    assert plugin.constraints(pod("q", {"app": "db"}), "ScheduleAnyway") == []
    st = plugin.pre_score(CycleState(), pod("q", {"app": "db"}), cluster([(A, [])]))
    assert st.code == Code.SKIP


def test_list_defaulting_uses_the_configured_constraints():
    svc = {"metadata": {"name": "s", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}
    plugin = with_listers(PodTopologySpread([{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}],
                                            "List"), services=Lister(svc))
    infos = cluster([(A, [pod("w1", {"app": "web"})]), (X, [])])
    assert run_filter(plugin, pod("p", {"app": "web"}), infos) == {"node-a": NO, "node-x": "ok"}


def test_bad_selector_is_an_error():
    bad = pod("p", {"foo": ""}, [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                  "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}])
    st, _ = PodTopologySpread().pre_filter(CycleState(), bad, cluster([(A, [])]))
    assert st.code == Code.ERROR
