"""The ReplicaSet controller's pure parts: pods from the template, upstream's deletion ranking,
slow-start batches, availability and expectations."""
from __future__ import annotations

from kubelab.controller.replicaset.controller import EXPECTATIONS_TIMEOUT, Expectations
from kubelab.controller.replicaset.pods import (controller_ref, deletion_order, is_active, is_available,
                                                pod_from_template, slow_start_batches)

RS = {"metadata": {"name": "web-5d4", "namespace": "default", "uid": "u-1"},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
               "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d4"},
                                         "annotations": {"a": "b"}},
                            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}


def pod(name, *, node="", phase="Pending", ready_at=None, restarts=0, created="2026-01-01T00:00:00Z", deleting=False):
    conds = [{"type": "Ready", "status": "True" if ready_at else "False", "lastTransitionTime": ready_at}]
    p = {"metadata": {"name": name, "creationTimestamp": created},
         "spec": {"nodeName": node}, "status": {"phase": phase, "conditions": conds,
                                                "containerStatuses": [{"restartCount": restarts}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def test_pod_from_template():
    p = pod_from_template(RS)
    assert p["metadata"]["generateName"] == "web-5d4-" and p["metadata"]["namespace"] == "default"
    assert p["metadata"]["labels"] == {"app": "web", "pod-template-hash": "5d4"}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert controller_ref(p) == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4", "uid": "u-1",
                                 "controller": True, "blockOwnerDeletion": True}
    assert p["spec"]["containers"][0]["image"] == "nginx"


def test_deletion_ranking_as_upstream():
    pods = [pod("running-ready-old", node="n1", phase="Running", ready_at="2026-01-01T00:00:10Z"),
            pod("unassigned", phase="Pending"),
            pod("pending-on-node", node="n1", phase="Pending"),
            pod("running-not-ready", node="n1", phase="Running"),
            pod("running-ready-new", node="n1", phase="Running", ready_at="2026-01-01T00:05:00Z"),
            pod("unknown", node="n1", phase="Unknown"),
            pod("crashy", node="n1", phase="Running", ready_at="2026-01-01T00:00:10Z", restarts=5),
            pod("crowded", node="n2", phase="Running", ready_at="2026-01-01T00:00:10Z")]
    order = [p["metadata"]["name"] for p in deletion_order(pods, {"n1": 1, "n2": 3})]
    assert order == ["unassigned", "pending-on-node", "unknown", "running-not-ready", "crowded",
                     "running-ready-new", "crashy", "running-ready-old"]


def test_newer_pods_go_first_when_all_else_is_equal():
    pods = [pod("old", created="2026-01-01T00:00:00Z"), pod("new", created="2026-01-02T00:00:00Z")]
    assert [p["metadata"]["name"] for p in deletion_order(pods)] == ["new", "old"]


def test_slow_start_batches():
    assert slow_start_batches(0) == []
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert sum(slow_start_batches(500)) == 500 and slow_start_batches(500)[:4] == [1, 2, 4, 8]


def test_activity_and_availability():
    assert is_active(pod("a")) and not is_active(pod("b", deleting=True)) and not is_active(pod("c", phase="Failed"))
    p = pod("r", phase="Running", ready_at="2026-01-01T00:00:00Z")
    t = 1767225600.0        # 2026-01-01T00:00:00Z
    assert is_available(p, 0, t) and not is_available(p, 10, t + 5) and is_available(p, 10, t + 10)
    assert not is_available(pod("n"), 0, t)


def test_expectations():
    now = [100.0]
    e = Expectations(clock=lambda: now[0])
    assert e.satisfied("k")
    e.expect("k", 3, 0)
    assert not e.satisfied("k")
    e.lower("k", adds=2)
    assert not e.satisfied("k")
    e.lower("k", adds=1)
    assert e.satisfied("k")
    e.expect("k", 0, 2)
    now[0] += EXPECTATIONS_TIMEOUT + 1          # lost events: give up waiting after 5 minutes
    assert e.satisfied("k")
