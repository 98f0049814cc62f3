"""`kubelab hollow-nodes` with the scheduler: fake nodes register with capacity and Leases, pods
the scheduler binds to them become Running and Ready, spread over the nodes; graceful deletion is
completed; annotated pods finish as Succeeded or Failed; the nodes go when the process stops."""
from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import is_not_found
from kubelab.lab.controlplane import free_port, spawn
from polling import api

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_hollow_nodes_run_scheduled_pods(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    prefix, ns, profile = f"h{uid}", f"hollow-{uid}", f"hollow-sched-{uid}"
    (tmp_path / "sched.yaml").write_text(
        f"apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
        f"profiles:\n- schedulerName: {profile}\n")
    hollow = spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", str(control_plane.kubeconfig),
                    "--count", "20", "--prefix", prefix, "--cpu", "4", "--pod-ready-delay", "200ms",
                    "--node-lease-renew-interval", "2s", "--node-labels", f"hollow-test={uid}"],
                   tmp_path / "hollow.log")
    sched = spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", str(control_plane.kubeconfig), "--config",
                   str(tmp_path / "sched.yaml"), "--leader-elect=false", "--secure-port", str(free_port()),
                   "--bind-address", "127.0.0.1"], tmp_path / "sched.log")
    try:
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))

        def nodes():
            return api(control_plane, lambda c: c.list("v1", "nodes", label_selector=f"hollow-test={uid}"))["items"]
        got = wait(lambda: len(nodes()) == 20 and nodes(), 30, "20 hollow nodes")
        n0 = got[0]
        assert n0["status"]["allocatable"]["cpu"] == "4"
        assert [c for c in n0["status"]["conditions"] if c["type"] == "Ready"][0]["status"] == "True"
        lease = wait(lambda: _lease(control_plane, n0["metadata"]["name"]), 10, "a node lease")
        assert lease["spec"]["holderIdentity"] == n0["metadata"]["name"]
        first_renew = lease["spec"]["renewTime"]
        wait(lambda: _lease(control_plane, n0["metadata"]["name"])["spec"]["renewTime"] != first_renew, 10,
             "the lease renewed")

        async def make(c):
            for i in range(60):
                ann = {}
                if i == 0:
                    ann = {"hollow.kubelab.dev/exit-after": "500ms", "hollow.kubelab.dev/exit-code": "0"}
                elif i == 1:
                    ann = {"hollow.kubelab.dev/exit-after": "500ms", "hollow.kubelab.dev/exit-code": "3"}
                await c.create("v1", "pods", {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"p{i:02d}", "namespace": ns, "annotations": ann},
                    "spec": {"schedulerName": profile, "nodeSelector": {"hollow-test": uid},
                             "containers": [{"name": "c", "image": "busybox",
                                             "resources": {"requests": {"cpu": "500m"}}}]}}, ns)
        t0 = time.monotonic()
        api(control_plane, make)

        def pods():
            return api(control_plane, lambda c: c.list("v1", "pods", ns))["items"]
        wait(lambda: sum(1 for p in pods() if p["status"].get("phase") == "Running") >= 58, 60, "58 pods Running")
        took = time.monotonic() - t0
        ps = pods()
        running = [p for p in ps if p["status"].get("phase") == "Running"]
        ready = [p for p in running if any(c["type"] == "Ready" and c["status"] == "True"
                                           for c in p["status"]["conditions"])]
        assert len(ready) == len(running)
        assert all(p["status"]["podIP"] and p["status"]["containerStatuses"][0]["ready"] for p in running)
        per_node = collections.Counter(p["spec"]["nodeName"] for p in ps)
        assert len(per_node) >= 15 and max(per_node.values()) <= 5, per_node     # spread by the scores
        phases = {p["metadata"]["name"]: p["status"].get("phase") for p in wait(
            lambda: (lambda ps: ps if {x["status"].get("phase") for x in ps if x["metadata"]["name"] in
                                       ("p00", "p01")} == {"Succeeded", "Failed"} else None)(pods()), 10,
            "annotated pods finished")}
        assert phases["p00"] == "Succeeded" and phases["p01"] == "Failed"
        print(f"\n60 pods scheduled and running on 20 hollow nodes in {took:.1f}s")
        # graceful deletion is completed by the hollow kubelet
        api(control_plane, lambda c: c.delete("v1", "pods", ns, "p10"))
        wait(lambda: "p10" not in {p["metadata"]["name"] for p in pods()}, 10, "p10 deleted")
    finally:
        for p in (sched, hollow):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    assert hollow.returncode == 0 and sched.returncode == 0
    assert api(control_plane, lambda c: c.list("v1", "nodes", label_selector=f"hollow-test={uid}"))["items"] == []
    for log in ("hollow.log", "sched.log"):
        assert "Traceback" not in (tmp_path / log).read_text(), (tmp_path / log).read_text()[-3000:]


def _lease(cp, name):
    async def go(c):
        try:
            return await c.get("coordination.k8s.io/v1", "leases", "kube-node-lease", name)
        except Exception as e:
            if is_not_found(e):
                return None
            raise
    return api(cp, go)
