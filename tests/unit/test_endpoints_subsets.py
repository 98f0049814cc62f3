"""Endpoints subsets from a Service's pods, as upstream's EndpointController builds them."""
from __future__ import annotations

from kubelab.controller.endpoints.subsets import MAX_CAPACITY, subsets


def svc(ports=({"name": "http", "port": 80, "targetPort": "web"},), publish=False):
    return {"metadata": {"name": "s", "namespace": "ns"},
            "spec": {"ports": list(ports), "publishNotReadyAddresses": publish}}


def pod(name, ip, ready=True, port=("web", 8080), deleting=False, phase="Running"):
    p = {"metadata": {"name": name, "namespace": "ns", "uid": name},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
             {"name": port[0], "containerPort": port[1]}] if port else []}]},
         "status": {"phase": phase, "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def test_ready_and_not_ready_sorted_by_ip():
    subs, truncated = subsets(svc(), [pod("b", "10.0.0.10"), pod("a", "10.0.0.9"), pod("c", "10.0.0.2", ready=False)])
    assert not truncated
    assert subs == [{"addresses": [
        {"ip": "10.0.0.9", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "a"}},
        {"ip": "10.0.0.10", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "b"}}],
        "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n1",
                               "targetRef": {"kind": "Pod", "namespace": "ns", "name": "c", "uid": "c"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


def test_port_sets_make_subsets_and_unresolved_pods_are_left_out():
    subs, _ = subsets(svc(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", port=("web", 9090)),
                              pod("c", "10.0.0.3", port=("other", 1))])
    assert [[a["ip"] for a in s["addresses"]] for s in subs] == [["10.0.0.1"], ["10.0.0.2"]]
    assert [s["ports"][0]["port"] for s in subs] == [8080, 9090]


def test_terminating_finished_and_ipless_pods():
    pods = [pod("a", "10.0.0.1", deleting=True), pod("b", "10.0.0.2", phase="Succeeded"), pod("c", "")]
    assert subsets(svc(), pods) == ([], False)
    subs, _ = subsets(svc(publish=True), pods + [pod("d", "10.0.0.4", ready=False)])
    assert [a["ip"] for a in subs[0]["addresses"]] == ["10.0.0.1", "10.0.0.4"]


def test_over_capacity_is_truncated():
    pods = [pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(MAX_CAPACITY + 5)]
    subs, truncated = subsets(svc(), pods)
    assert truncated and len(subs[0]["addresses"]) == MAX_CAPACITY
