"""The apiserver's kubelet-facing subresources against the real apiserver, where no kubelet is
needed: upstream's errors for pods without a node, container choice, PodLogOptions validation,
nodes without a usable address, and metrics.k8s.io discovery and empty lists. The paths through
a real kubelet server are tested in tests/e2e/test_kubelet_server.py."""
from __future__ import annotations

import json
import uuid


def _pod(kubectl, ns: str, name: str, containers: list[str], node: str = "") -> None:
    spec = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod",
                                                    "metadata": {"name": name, "namespace": ns}, "spec": spec}))


def _raw_error(kubectl, path: str) -> str:
    p = kubectl.run("get", "--raw", path, check=False)
    assert p.returncode != 0, p.stdout
    return p.stderr


def test_pod_subresources_errors(kubectl, namespace):
    ns = namespace
    _pod(kubectl, ns, "one", ["c"])
    _pod(kubectl, ns, "two", ["a", "b"])
    base = f"/api/v1/namespaces/{ns}/pods"
    assert 'container "c" in pod "one" is waiting to start: ContainerCreating' in _raw_error(kubectl, f"{base}/one/log")
    assert "a container name must be specified for pod two, choose one of: [a b]" in \
        _raw_error(kubectl, f"{base}/two/log")
    assert "container x is not valid for pod two" in _raw_error(kubectl, f"{base}/two/log?container=x")
    err = _raw_error(kubectl, f"{base}/one/log?limitBytes=0&sinceSeconds=0")
    assert 'PodLogOptions "one" is invalid' in err and "limitBytes: Invalid value: 0: must be greater than 0" in err \
        and "sinceSeconds: Invalid value: 0: must be greater than 0" in err, err
    p = kubectl.run("exec", "one", "-n", ns, "--", "true", check=False)
    assert p.returncode != 0
    p = kubectl.run("logs", "nope", "-n", ns, check=False)
    assert 'pods "nope" not found' in p.stderr


def test_pod_on_a_node_without_a_kubelet_address(kubectl, namespace):
    node = f"noaddr-{uuid.uuid4().hex[:6]}"
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
    try:
        _pod(kubectl, namespace, "p", ["c"], node=node)
        err = _raw_error(kubectl, f"/api/v1/namespaces/{namespace}/pods/p/log")
        assert "no preferred addresses found; known addresses: []" in err, err
        err = _raw_error(kubectl, f"/api/v1/nodes/{node}/proxy/healthz")
        assert "no preferred addresses found" in err, err
        assert 'nodes "missing-node" not found' in _raw_error(kubectl, "/api/v1/nodes/missing-node/proxy/healthz")
    finally:
        kubectl.run("delete", "pod", "p", "-n", namespace, "--force", "--grace-period=0", check=False)
        kubectl.run("delete", "node", node, check=False)


def test_metrics_api_is_discovered_and_lists_what_kubelets_report(kubectl, namespace):
    groups = json.loads(kubectl("get", "--raw", "/apis"))
    assert any(g["name"] == "metrics.k8s.io" and g["preferredVersion"]["version"] == "v1beta1"
               for g in groups["groups"])
    rl = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1"))
    kinds = {r["name"]: (r["kind"], r["namespaced"], sorted(r["verbs"])) for r in rl["resources"]}
    assert kinds == {"nodes": ("NodeMetrics", False, ["get", "list"]), "pods": ("PodMetrics", True, ["get", "list"])}
    lst = json.loads(kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"))
    assert lst == {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": []}
    err = _raw_error(kubectl, f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/nope")
    assert 'pods.metrics.k8s.io "nope" not found' in err, err
    p = kubectl.run("top", "pod", "-n", namespace, check=False)
    assert "No resources found" in p.stderr + p.stdout, (p.stdout, p.stderr)
