"""The ReplicaSet controller in kubelab-controller-manager against the real apiserver, with the
scheduler and hollow nodes making its pods Running and Ready: exactly .spec.replicas pods (no
double creation), replaced when deleted, scaled down in upstream's order (unscheduled first),
orphans adopted, status counts, and the events."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.lab.controlplane import free_port, spawn
from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def test_replicaset_keeps_its_replicas(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns, profile = f"rs-{uid}", f"rs-sched-{uid}"
    (tmp_path / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                         f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {profile}\n")
    kc = str(control_plane.kubeconfig)
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers", "replicaset",
                    "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp_path / "cm.log"),
             spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(tmp_path / "sched.yaml"),
                    "--leader-elect=false", "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                   tmp_path / "sched.log"),
             spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "5", "--prefix", f"r{uid}",
                    "--pod-ready-delay", "300ms", "--node-labels", f"rs-test={uid}"], tmp_path / "hollow.log")]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": ns},
          "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"schedulerName": profile, "nodeSelector": {"rs-test": uid},
                                         "containers": [{"name": "c", "image": "nginx",
                                                         "resources": {"requests": {"cpu": "100m"}}}]}}}}

    def pods(all_=False):
        items = api(control_plane, lambda c: c.list("v1", "pods", ns))["items"]
        return items if all_ else [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def status():
        return api(control_plane, lambda c: c.get("apps/v1", "replicasets", ns, "web")).get("status") or {}
    try:
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))
        # an orphan that matches is adopted and counts as one of the ten
        api(control_plane, lambda c: c.create("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": ns,
                                                            "labels": {"app": "web"}},
            "spec": {"schedulerName": profile, "nodeSelector": {"rs-test": uid},
                     "containers": [{"name": "c", "image": "nginx"}]}}, ns))
        created = api(control_plane, lambda c: c.create("apps/v1", "replicasets", rs, ns))
        st = wait(lambda: (lambda s: s if s.get("readyReplicas") == 10 and s.get("availableReplicas") == 10
                           else None)(status()), 60, "10 ready replicas")
        assert st["replicas"] == 10 and st["fullyLabeledReplicas"] == 10
        assert st["observedGeneration"] == created["metadata"]["generation"]
        ps = pods()
        assert len(ps) == 10
        assert all(any(r.get("controller") and r["uid"] == created["metadata"]["uid"]
                       for r in p["metadata"]["ownerReferences"]) for p in ps)
        assert "orphan" in {p["metadata"]["name"] for p in ps}
        time.sleep(1.5)
        assert len(pods(all_=True)) == 10, "more pods than replicas were created"

        # deleted pods are replaced
        victims = [p["metadata"]["name"] for p in ps[:3]]
        for v in victims:
            api(control_plane, lambda c, v=v: c.delete("v1", "pods", ns, v))
        wait(lambda: len(pods()) == 10 and not set(victims) & {p["metadata"]["name"] for p in pods()}, 30,
             "3 replacements")
        wait(lambda: status().get("readyReplicas") == 10, 30, "10 ready again")

        # scale down to 4: unscheduled pods would go first; here all run, so 6 go and 4 stay
        api(control_plane, lambda c: c.patch("apps/v1", "replicasets", ns, "web", {"spec": {"replicas": 4}}))
        wait(lambda: len(pods(all_=True)) == 4, 30, "scaled to 4")
        wait(lambda: status().get("replicas") == 4 and status().get("readyReplicas") == 4, 30, "status at 4")
        events = api(control_plane, lambda c: c.list("v1", "events", ns,
                                                     field_selector="involvedObject.name=web"))["items"]
        reasons = {e["reason"] for e in events}
        assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
        assert any(e["message"].startswith("Created pod: web-") for e in events)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    for log in ("cm.log", "sched.log", "hollow.log"):
        assert "Traceback" not in (tmp_path / log).read_text(), (tmp_path / log).read_text()[-3000:]
