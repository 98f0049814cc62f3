"""Scheduler plugins, table by table: cases written for this project from upstream's plugin tests
(the names say which), plus the resource arithmetic, the failure message and the number of nodes
to find."""
from __future__ import annotations

import pytest

from kubelab.api import resources as R
from kubelab.scheduler.framework import Code, CycleState, NodeInfo, Status, default_normalize, fit_error_message
from kubelab.scheduler.plugins.imagelocality import MB, ImageLocality
from kubelab.scheduler.plugins.nodeaffinity import NodeAffinity
from kubelab.scheduler.plugins.nodename import NodeName
from kubelab.scheduler.plugins.nodeports import NodePorts
from kubelab.scheduler.plugins.noderesources import NodeResourcesBalancedAllocation, NodeResourcesFit
from kubelab.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from kubelab.scheduler.plugins.tainttoleration import TaintToleration
from kubelab.scheduler.scheduler import num_feasible_nodes_to_find


def node(name="n1", *, labels=None, taints=None, unschedulable=False, cpu="4", memory="8Gi", pods="110",
         images=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                       "images": [{"names": [n], "sizeBytes": s} for n, s in (images or {}).items()]}}


def pod(name="p", *, cpu=None, memory=None, ports=(), tolerations=None, node_selector=None, affinity=None,
        node_name=None, images=("busybox",), init=(), overhead=None):
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    containers = [{"name": f"c{i}", "image": img, "resources": {"requests": req} if req else {},
                   "ports": [{"containerPort": p, "hostPort": p, "protocol": proto, **({"hostIP": ip} if ip else {})}
                             for p, proto, ip in ports]} for i, img in enumerate(images)]
    spec = {"containers": containers, "initContainers": list(init)}
    for k, v in (("tolerations", tolerations), ("nodeSelector", node_selector), ("affinity", affinity),
                 ("nodeName", node_name), ("overhead", overhead)):
        if v is not None:
            spec[k] = v
    return {"metadata": {"name": name, "namespace": "default", "uid": name}, "spec": spec}


def info(n, *pods):
    ni = NodeInfo(n)
    for p in pods:
        ni.add_pod(p)
    return ni


# -- resources ---------------------------------------------------------------------------------------

def test_pod_requests_with_init_containers_sidecars_and_overhead():
    p = pod(cpu="500m", memory="1Gi", init=[
        {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "100Mi"}}},
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}}},
        {"name": "i2", "resources": {"requests": {"cpu": "1"}}}], overhead={"cpu": "250m"})
    r = R.pod_requests(p)
    # cpu: max(app 500m + sidecar 100m, init i1 2000m, i2 1000m + sidecar 100m) + overhead 250m
    assert r["cpu"] == 2000 + 250
    assert r["memory"] == (1024 + 50) * 1024 * 1024
    assert R.pod_requests(pod()) == {}                      # no requests: nothing asked
    nz = R.pod_requests(pod(), non_zero=True)
    assert nz["cpu"] == R.DEFAULT_MILLI_CPU_REQUEST and nz["memory"] == R.DEFAULT_MEMORY_REQUEST


def test_quantities_round_up_like_upstream():
    assert R.to_int("cpu", "0.5") == 500 and R.to_int("cpu", "1m") == 1 and R.to_int("cpu", "0.0001") == 1
    assert R.to_int("memory", "1Ki") == 1024 and R.to_int("memory", "1.5") == 2


# -- NodeResourcesFit (upstream fit_test.go: "no resources requested always fits", "too many resources fails") --

@pytest.mark.parametrize("existing,new,reasons", [
    ([], pod(), []),
    ([pod("a", cpu="3", memory="1Gi")], pod(cpu="2"), ["Insufficient cpu"]),
    ([pod("a", cpu="1", memory="7Gi")], pod(cpu="1", memory="2Gi"), ["Insufficient memory"]),
    ([pod("a", cpu="3", memory="7Gi")], pod(cpu="2", memory="2Gi"), ["Insufficient cpu", "Insufficient memory"]),
    ([pod("a", cpu="3")], pod(cpu="1"), []),                      # exactly fits
])
def test_resources_fit_filter(existing, new, reasons):
    st = NodeResourcesFit().filter(CycleState(), new, info(node(), *existing))
    assert st.reasons == reasons
    assert st.ok == (not reasons)
    if reasons:
        assert st.code == Code.UNSCHEDULABLE


def test_too_many_pods_and_extended_resources():
    n = node(pods="1")
    assert NodeResourcesFit().filter(CycleState(), pod("b"), info(n, pod("a"))).reasons == ["Too many pods"]
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"requests": {"example.com/gpu": "1"}}
    assert NodeResourcesFit().filter(CycleState(), p, info(node())).reasons == ["Insufficient example.com/gpu"]


def test_least_and_most_allocated_scores():
    # upstream least_allocated_test: node 4000m/10000Mi, pod requesting 3000m/5000Mi, empty node:
    # cpu (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50 -> (25+50)/2 = 37
    n = node(cpu="4", memory="10000Mi")
    p = pod(cpu="3", memory="5000Mi")
    assert NodeResourcesFit("LeastAllocated").score(CycleState(), p, info(n)) == 37
    # most allocated: 75 and 50 -> 62
    assert NodeResourcesFit("MostAllocated").score(CycleState(), p, info(n)) == 62
    with pytest.raises(ValueError, match="unsupported value"):
        NodeResourcesFit("RequestedToCapacityRatioX")


def test_balanced_allocation():
    # upstream balanced_allocation_test: cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5:
    # std = 0.125 -> (1 - 0.125) * 100 = 87
    n = node(cpu="4", memory="10000Mi")
    assert NodeResourcesBalancedAllocation().score(CycleState(), pod(cpu="3", memory="5000Mi"), info(n)) == 87
    assert NodeResourcesBalancedAllocation().score(CycleState(), pod(cpu="2", memory="5000Mi"), info(n)) == 100


# -- TaintToleration (upstream taint_toleration_test.go) -------------------------------------------------

@pytest.mark.parametrize("taints,tolerations,ok", [
    ([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}], [], False),
    ([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}],
     [{"key": "dedicated", "operator": "Equal", "value": "user1", "effect": "NoSchedule"}], True),
    ([{"key": "dedicated", "value": "user2", "effect": "NoSchedule"}],
     [{"key": "dedicated", "operator": "Equal", "value": "user1", "effect": "NoSchedule"}], False),
    ([{"key": "foo", "value": "bar", "effect": "NoSchedule"}], [{"key": "foo", "operator": "Exists",
                                                                  "effect": "NoSchedule"}], True),
    ([{"key": "foo", "value": "bar", "effect": "NoExecute"}], [{"operator": "Exists"}], True),
    ([{"key": "foo", "value": "bar", "effect": "PreferNoSchedule"}], [], True),     # only scored
    ([{"key": "foo", "value": "bar", "effect": "NoSchedule"}],
     [{"key": "foo", "operator": "Equal", "value": "bar", "effect": "PreferNoSchedule"}], False),
])
def test_taint_toleration_filter(taints, tolerations, ok):
    st = TaintToleration().filter(CycleState(), pod(tolerations=tolerations), info(node(taints=taints)))
    assert st.ok == ok
    if not ok:
        t = taints[0]
        assert st.reasons == [f"node(s) had untolerated taint {{{t['key']}: {t['value']}}}"]
        assert st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_taint_toleration_score_prefers_fewer_intolerable_taints():
    pl = TaintToleration()
    p = pod(tolerations=[{"key": "cpu-type", "operator": "Equal", "value": "arm64", "effect": "PreferNoSchedule"}])
    nodes = {"n1": node("n1"), "n2": node("n2", taints=[{"key": "cpu-type", "value": "arm64",
                                                           "effect": "PreferNoSchedule"}]),
             "n3": node("n3", taints=[{"key": "disk-type", "value": "ssd", "effect": "PreferNoSchedule"}])}
    scores = {k: pl.score(CycleState(), p, info(v)) for k, v in nodes.items()}
    pl.normalize_score(CycleState(), p, scores)
    assert scores == {"n1": 100, "n2": 100, "n3": 0}


# -- NodeAffinity (upstream node_affinity_test.go) --------------------------------------------------------

ZONE = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}


@pytest.mark.parametrize("labels,selector,affinity,ok", [
    ({}, None, None, True),
    ({"foo": "bar"}, {"foo": "bar"}, None, True),
    ({"foo": "bar"}, {"foo": "baz"}, None, False),
    ({"zone": "a"}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [ZONE]}}}, True),
    ({"zone": "c"}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [ZONE]}}}, False),
    ({"zone": "c", "gpu": "2"}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [ZONE, {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]}]}}},
     True),                                                     # terms are ORed
    ({"zone": "a"}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]},
                                                    {"key": "zone", "operator": "Exists"}]}]}}}, False),
    ({}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}]}}}, True),
    ({}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}, False),                    # an empty term matches nothing
    ({}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["n1"]}]}]}}}, True),
    ({"gpu": "x"}, None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Lt", "values": ["3"]}]}]}}},
     False),                                                    # Gt/Lt on a non-integer label
])
def test_node_affinity_filter(labels, selector, affinity, ok):
    st = NodeAffinity().filter(CycleState(), pod(node_selector=selector, affinity=affinity), info(node(labels=labels)))
    assert st.ok == ok
    if not ok:
        assert st.reasons == ["node(s) didn't match Pod's node affinity/selector"]


def test_node_affinity_preferred_score():
    aff = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "preference": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}},
        {"weight": 4, "preference": {"matchExpressions": [{"key": "key", "operator": "In", "values": ["value"]}]}},
        {"weight": 5, "preference": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]},
                                                          {"key": "key", "operator": "In", "values": ["value"]}]}}]}}
    pl, p = NodeAffinity(), pod(affinity=aff)
    nodes = {"n1": node("n1", labels={"foo": "bar"}), "n2": node("n2", labels={"key": "value"}),
             "n3": node("n3", labels={"foo": "bar", "key": "value"})}
    scores = {k: pl.score(CycleState(), p, info(v)) for k, v in nodes.items()}
    assert scores == {"n1": 2, "n2": 4, "n3": 11}
    pl.normalize_score(CycleState(), p, scores)
    assert scores == {"n1": 18, "n2": 36, "n3": 100}


# -- NodePorts (upstream node_ports_test.go) ----------------------------------------------------------------

@pytest.mark.parametrize("used,want,ok", [
    ([], [(8080, "TCP", None)], True),
    ([(8080, "TCP", None)], [(8080, "TCP", None)], False),
    ([(8080, "TCP", "127.0.0.1")], [(8080, "UDP", "127.0.0.1")], True),             # other protocol
    ([(8080, "TCP", "127.0.0.1")], [(8080, "TCP", "127.0.0.2")], True),             # other host IP
    ([(8080, "TCP", "127.0.0.1")], [(8080, "TCP", None)], False),                   # 0.0.0.0 wants all
    ([(8080, "TCP", None)], [(8080, "TCP", "127.0.0.1")], False),                   # taken on all
    ([(8001, "TCP", None)], [(8080, "TCP", None)], True),
])
def test_node_ports(used, want, ok):
    st = NodePorts().filter(CycleState(), pod("b", ports=want), info(node(), pod("a", ports=used)))
    assert st.ok == ok
    if not ok:
        assert st.reasons == ["node(s) didn't have free ports for the requested pod ports"]


# -- NodeName, NodeUnschedulable ------------------------------------------------------------------------------

def test_node_name_and_unschedulable():
    assert NodeName().filter(CycleState(), pod(node_name="n1"), info(node("n1"))).ok
    st = NodeName().filter(CycleState(), pod(node_name="n2"), info(node("n1")))
    assert st.reasons == ["node(s) didn't match the requested node name"]
    st = NodeUnschedulable().filter(CycleState(), pod(), info(node(unschedulable=True)))
    assert st.reasons == ["node(s) were unschedulable"] and st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert NodeUnschedulable().filter(CycleState(), pod(tolerations=tol), info(node(unschedulable=True))).ok


# -- ImageLocality (upstream image_locality_test.go) ---------------------------------------------------------------

def test_image_locality_prefers_nodes_with_big_images():
    pl = ImageLocality()
    nodes = [info(node("n1", images={"gcr.io/40:latest": 40 * MB, "gcr.io/300:latest": 300 * MB})),
             info(node("n2", images={"gcr.io/250:latest": 250 * MB})),
             info(node("n3"))]
    p = pod(images=("gcr.io/40", "gcr.io/300"))
    state = CycleState()
    pl.pre_score(state, p, nodes)
    scores = [pl.score(state, p, n) for n in nodes]
    # n1: (40MB + 300MB) * 1/3 spread = 113.3MB -> 100 * (113.3 - 23) / (2000 - 23) = 4
    assert scores == [4, 0, 0]


# -- the framework's pieces ----------------------------------------------------------------------------------------

def test_fit_error_message_counts_and_sorts_reasons():
    sts = [Status.unschedulable("Insufficient cpu"),
           Status.unschedulable("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
           Status.unschedulable("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
           Status.unschedulable("Insufficient cpu", "Insufficient memory")]
    assert fit_error_message(4, sts) == ("0/4 nodes are available: 1 Insufficient memory, 2 Insufficient cpu, "
                                         "2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.")


def test_default_normalize():
    s = {"a": 0, "b": 5, "c": 10}
    default_normalize(s)
    assert s == {"a": 0, "b": 50, "c": 100}
    s = {"a": 0, "b": 5, "c": 10}
    default_normalize(s, reverse=True)
    assert s == {"a": 100, "b": 50, "c": 0}
    s = {"a": 0}
    default_normalize(s, reverse=True)
    assert s == {"a": 100}


@pytest.mark.parametrize("nodes,pct,want", [(10, 0, 10), (99, 0, 99), (100, 0, 100), (1000, 0, 420),
                                            (5000, 0, 500), (6000, 0, 300), (1000, 30, 300), (1000, 1, 100),
                                            (1000, 100, 1000)])
def test_number_of_nodes_to_find(nodes, pct, want):
    # adaptive: 1000 nodes -> 50 - 8 = 42%; 5000 -> 50 - 40 = 10%; 6000 -> max(2%, 5%) = 5%
    assert num_feasible_nodes_to_find(nodes, pct) == want
