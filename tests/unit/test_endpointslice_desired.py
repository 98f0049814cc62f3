"""The EndpointSlice controller's pure part: endpoints from pods, conditions, named ports,
hostnames, grouping by port set and slices of at most 100."""
from __future__ import annotations

from kubelab.controller.endpointslice.desired import chunks, desired_groups, endpoint, port_key, slice_ports

SVC = {"metadata": {"name": "web", "namespace": "d"},
       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                       {"name": "metrics", "port": 9090, "targetPort": 9100}]}}


def pod(name, ip, *, ready=True, port=8080, deleting=False, phase="Running", node="n1", hostname=None):
    p = {"metadata": {"name": name, "namespace": "d", "uid": f"u-{name}"},
         "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
         "status": {"phase": phase, "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if hostname:
        p["spec"].update(hostname=hostname, subdomain="web")
    return p


def test_endpoint_conditions_and_fields():
    e = endpoint(SVC, pod("a", "10.244.0.5", hostname="a0"), {"n1": "zone-a"})
    assert e == {"addresses": ["10.244.0.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
                 "targetRef": {"kind": "Pod", "namespace": "d", "name": "a", "uid": "u-a"}, "hostname": "a0",
                 "nodeName": "n1", "zone": "zone-a"}
    e = endpoint(SVC, pod("b", "10.244.0.6", deleting=True), {})
    assert e["conditions"] == {"ready": False, "serving": True, "terminating": True}
    e = endpoint(SVC, pod("c", "10.244.0.7", ready=False), {})
    assert e["conditions"] == {"ready": False, "serving": False, "terminating": False}
    publish = dict(SVC, spec=dict(SVC["spec"], publishNotReadyAddresses=True))
    assert endpoint(publish, pod("c", "10.244.0.7", ready=False), {})["conditions"]["ready"] is True


def test_groups_by_resolved_ports_and_skips_pods_without_ip_or_finished():
    pods = [pod("a", "10.244.0.10"), pod("b", "10.244.0.9"), pod("c", "10.244.0.11", port=8081),
            pod("d", None), pod("e", "10.244.0.12", phase="Succeeded")]
    groups = desired_groups(SVC, pods, {})
    assert set(groups) == {(("http", "TCP", 8080), ("metrics", "TCP", 9100)),
                           (("http", "TCP", 8081), ("metrics", "TCP", 9100))}
    first = groups[(("http", "TCP", 8080), ("metrics", "TCP", 9100))]
    assert [e["addresses"][0] for e in first] == ["10.244.0.9", "10.244.0.10"]        # sorted by address
    ports = slice_ports((("http", "TCP", 8080), ("metrics", "TCP", 9100)))
    assert port_key({"ports": ports}) == (("http", "TCP", 8080), ("metrics", "TCP", 9100))


def test_named_port_missing_on_a_pod_leaves_that_port_out():
    p = pod("a", "10.244.0.5")
    p["spec"]["containers"][0]["ports"] = []
    assert list(desired_groups(SVC, [p], {})) == [(("metrics", "TCP", 9100),)]


def test_at_most_100_endpoints_per_slice():
    eps = [{"addresses": [f"10.0.{i // 250}.{i % 250}"]} for i in range(250)]
    assert [len(c) for c in chunks(eps)] == [100, 100, 50]
    assert chunks([]) == [[]]
