"""The EndpointSlice controller in kubelab-controller-manager against the real apiserver, with
hollow nodes giving the pods IPs and readiness: slices follow pods (ready, named ports, hostnames),
150 endpoints make two slices, a placeholder stays when no pod matches, slices of a deleted Service
go, and kube-proxy's informer labels are there."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def test_slices_follow_pods(control_plane, tmp_path):
    from kubelab.lab.controlplane import spawn
    uid = uuid.uuid4().hex[:5]
    ns, prefix = f"eps-{uid}", f"e{uid}"
    kc = str(control_plane.kubeconfig)
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers", "endpointslice",
                    "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp_path / "cm.log"),
             spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "2", "--prefix", prefix,
                    "--pod-ready-delay", "100ms"], tmp_path / "hollow.log")]

    def slices(svc="web"):
        return api(control_plane, lambda c: c.list("discovery.k8s.io/v1", "endpointslices", ns,
                                                   label_selector=f"kubernetes.io/service-name={svc}"))["items"]

    def eps(svc="web"):
        return sorted((e for s in slices(svc) for e in s.get("endpoints") or []), key=lambda e: e["targetRef"]["name"])

    async def make_pods(c, names, hostname=False):
        for i, n in enumerate(names):
            await c.create("v1", "pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": n, "namespace": ns, "labels": {"app": "web"}},
                "spec": {"nodeName": f"{prefix}-{i % 2:05d}", **({"hostname": n, "subdomain": "web"} if hostname else {}),
                         "containers": [{"name": "c", "image": "nginx",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}, ns)
    try:
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))
        wait(lambda: len(api(control_plane, lambda c: c.list("v1", "nodes"))["items"]) >= 2, 20, "hollow nodes")
        svc = api(control_plane, lambda c: c.create("v1", "services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}, ns))
        # no pods: a placeholder slice, no endpoints
        placeholder = wait(lambda: slices(), 15, "placeholder slice")
        assert len(placeholder) == 1 and not placeholder[0].get("endpoints")
        labels = placeholder[0]["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        ref = placeholder[0]["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "Service" and ref["uid"] == svc["metadata"]["uid"] and ref["controller"]

        api(control_plane, lambda c: make_pods(c, ["w0", "w1", "w2"], hostname=True))
        got = wait(lambda: (lambda e: e if len(e) == 3 and all(x["conditions"]["ready"] for x in e) else None)(eps()),
                   20, "3 ready endpoints")
        s = slices()
        assert len(s) == 1 and s[0]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
        assert [e["hostname"] for e in got] == ["w0", "w1", "w2"]
        assert {e["nodeName"] for e in got} == {f"{prefix}-00000", f"{prefix}-00001"}
        pods = {p["metadata"]["name"]: p for p in api(control_plane, lambda c: c.list("v1", "pods", ns))["items"]}
        assert [e["addresses"][0] for e in got] == [pods[n]["status"]["podIP"] for n in ("w0", "w1", "w2")]

        # a pod deleted leaves; 150 endpoints make two slices (100 + 50)
        api(control_plane, lambda c: c.delete("v1", "pods", ns, "w1"))
        wait(lambda: [e["targetRef"]["name"] for e in eps()] == ["w0", "w2"], 15, "w1 gone")
        api(control_plane, lambda c: make_pods(c, [f"m{i:03d}" for i in range(148)]))
        wait(lambda: sorted(len(x.get("endpoints") or []) for x in slices()) == [50, 100] and
             all(e["conditions"]["ready"] for e in eps()), 60, "150 endpoints in 2 slices")

        # the Service goes: so do its slices
        api(control_plane, lambda c: c.delete("v1", "services", ns, "web"))
        wait(lambda: slices() == [], 15, "slices deleted")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    for log in ("cm.log", "hollow.log"):
        assert "Traceback" not in (tmp_path / log).read_text(), (tmp_path / log).read_text()[-3000:]
