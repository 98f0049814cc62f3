"""DaemonSet decisions, tables after upstream's daemon_controller_test and update_test: node
eligibility (nodeSelector, affinity, taints vs tolerations incl. the default ones), pods per node,
rolling-update selection under maxUnavailable / maxSurge, status counts."""
from __future__ import annotations

import pytest

from kubelab.controller.daemon.eligibility import (add_daemon_tolerations, replace_node_name_affinity, should_run,
                                                   target_node_name)
from kubelab.controller.daemon.update import (daemon_status, pods_should_be_on_node, rolling_update, scaled_value,
                                              surge_and_unavailable)

NOW = 2_000_000_000.0
T0 = "2033-05-18T03:00:00Z"       # well before NOW


def node(name="n1", labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def ds(spec=None, tmpl_meta=None, strategy=None):
    return {"metadata": {"name": "d", "namespace": "ns", "uid": "u"},
            "spec": {"template": {"metadata": tmpl_meta or {}, "spec": spec or {}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}}


def taint(key, effect, value=""):
    return {"key": key, "value": value, "effect": effect}


@pytest.mark.parametrize("n,spec,want", [
    (node(), {}, (True, True)),
    (node(labels={"a": "b"}), {"nodeSelector": {"a": "b"}}, (True, True)),
    (node(labels={"a": "c"}), {"nodeSelector": {"a": "b"}}, (False, False)),
    (node(), {"nodeName": "other"}, (False, False)),
    (node(labels={"zone": "z1"}), {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}},
     (True, True)),
    (node(labels={"zone": "z2"}), {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}},
     (False, False)),
    # NoSchedule taint: no new pod, an existing one keeps running
    (node(taints=[taint("dedicated", "NoSchedule", "db")]), {}, (False, True)),
    # NoExecute taint: neither
    (node(taints=[taint("dedicated", "NoExecute", "db")]), {}, (False, False)),
    (node(taints=[taint("dedicated", "NoSchedule", "db")]),
     {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}, (True, True)),
    (node(taints=[taint("dedicated", "NoSchedule", "db")]),
     {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web"}]}, (False, True)),
    (node(taints=[taint("x", "PreferNoSchedule")]), {}, (True, True)),
    # the default tolerations cover node conditions and cordoned nodes
    (node(taints=[taint("node.kubernetes.io/unschedulable", "NoSchedule")]), {}, (True, True)),
    (node(taints=[taint("node.kubernetes.io/not-ready", "NoExecute")]), {}, (True, True)),
    (node(taints=[taint("node.kubernetes.io/memory-pressure", "NoSchedule")]), {}, (True, True)),
    (node(taints=[taint("node.kubernetes.io/network-unavailable", "NoSchedule")]), {}, (False, True)),
    (node(taints=[taint("node.kubernetes.io/network-unavailable", "NoSchedule")]), {"hostNetwork": True},
     (True, True)),
])
def test_node_should_run_daemon_pod(n, spec, want):
    assert should_run(n, ds(spec)) == want


def test_default_tolerations_added_once_and_in_upstream_order():
    spec = add_daemon_tolerations({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                                    "effect": "NoExecute"}, {"key": "mine", "operator": "Exists"}]})
    keys = [t["key"] for t in spec["tolerations"]]
    assert keys == ["node.kubernetes.io/not-ready", "mine", "node.kubernetes.io/unreachable",
                    "node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                    "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable"]
    assert all("tolerationSeconds" not in t for t in spec["tolerations"])


def test_node_name_affinity_pins_and_is_read_back():
    aff = replace_node_name_affinity({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}]}}, "n7")
    na = aff["nodeAffinity"]
    assert na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]
    assert na["preferredDuringSchedulingIgnoredDuringExecution"] == [{"weight": 1}]
    assert target_node_name({"spec": {"affinity": aff}}) == "n7"
    assert target_node_name({"spec": {"nodeName": "n2", "affinity": aff}}) == "n2"
    assert target_node_name({"spec": {}}) is None


def pod(name, hash_="new", ready=True, phase="Running", created=T0, deleting=False, node_name="n1"):
    p = {"metadata": {"name": name, "labels": {"controller-revision-hash": hash_}, "creationTimestamp": created},
         "spec": {"nodeName": node_name},
         "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                    "lastTransitionTime": T0}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = T0
    return p


def names(ps):
    return [p["metadata"]["name"] for p in ps]


def test_pods_should_be_on_node():
    d = pods_should_be_on_node(True, True, None, "new", False)
    assert d.create and not d.delete
    d = pods_should_be_on_node(False, False, [pod("a"), pod("b", deleting=True)], "new", False)
    assert names(d.delete) == ["a"]
    d = pods_should_be_on_node(True, True, [pod("a", phase="Failed"), pod("b", phase="Succeeded")], "new", False)
    assert names(d.failed) == ["a"] and names(d.delete) == ["b"] and not d.create
    # no surge: keep the oldest
    d = pods_should_be_on_node(True, True, [pod("young", created="2033-05-18T04:00:00Z"), pod("old")], "new", False)
    assert names(d.delete) == ["young"]
    # surge: keep the oldest new and the oldest old
    d = pods_should_be_on_node(True, True, [pod("o1", "old"), pod("o2", "old", created="2033-05-18T04:00:00Z"),
                                            pod("n1", "new"), pod("n2", "new", created="2033-05-18T05:00:00Z")],
                               "new", True)
    assert sorted(names(d.delete)) == ["n2", "o2"]


def test_scaled_value_and_budgets():
    assert scaled_value("25%", 10, True) == 3 and scaled_value("25%", 10, False) == 2 and scaled_value(2, 10, True) == 2
    with pytest.raises(ValueError):
        scaled_value("abc", 10, True)
    assert surge_and_unavailable(ds(strategy={"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}), 4) == (0, 1)
    assert surge_and_unavailable(ds(strategy={"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}}), 3) == (2, 0)


def test_rolling_update_max_unavailable():
    nodes = {f"n{i}": [pod(f"p{i}", "old", node_name=f"n{i}")] for i in range(4)}
    victims, create = rolling_update(nodes, "new", 0, 1, 0, NOW)
    assert names(victims) == ["p0"] and create == []
    # an unavailable new pod uses the budget up
    nodes["n0"] = [pod("fresh", "new", ready=False, node_name="n0")]
    assert rolling_update(nodes, "new", 0, 1, 0, NOW) == ([], [])
    # an unavailable old pod is always replaceable
    nodes["n1"] = [pod("sick", "old", ready=False, node_name="n1")]
    victims, _ = rolling_update(nodes, "new", 0, 1, 0, NOW)
    assert names(victims) == ["sick"]
    # a node with no pod counts as unavailable
    v, _ = rolling_update({"a": None, "b": [pod("pb", "old")]}, "new", 0, 1, 0, NOW)
    assert v == []
    # minReadySeconds: ready but not yet available does not count as available
    v, _ = rolling_update({"a": [pod("pa", "old")]}, "new", 0, 1, 10**10, NOW)
    assert names(v) == ["pa"]


def test_rolling_update_max_surge():
    nodes = {f"n{i}": [pod(f"p{i}", "old", node_name=f"n{i}")] for i in range(3)}
    victims, create = rolling_update(nodes, "new", 1, 0, 0, NOW)
    assert victims == [] and create == ["n0"]
    # the surge pod is not ready yet: no more surge, the old one stays
    nodes["n0"].append(pod("s0", "new", ready=False, node_name="n0"))
    assert rolling_update(nodes, "new", 1, 0, 0, NOW) == ([], [])
    # once it is available the old pod goes and the next node surges
    nodes["n0"][1] = pod("s0", "new", node_name="n0")
    victims, create = rolling_update(nodes, "new", 1, 0, 0, NOW)
    assert names(victims) == ["p0"] and create == ["n1"]


def test_daemon_status_counts():
    elig = {"a": (True, True), "b": (True, True), "c": (True, True), "d": (False, True)}
    node_pods = {"a": [pod("pa")], "b": [pod("pb", "old", ready=False)], "d": [pod("pd")]}
    st = daemon_status(elig, node_pods, "new", 0, NOW)
    assert st == {"desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberMisscheduled": 1,
                  "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 2}
