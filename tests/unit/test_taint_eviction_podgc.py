"""The taint eviction controller's and the pod garbage collector's pure parts: upstream's
getMinTolerationTime and processPodOnNode decisions, the timed worker queue, and PodGC's choice
of pods (terminated over the threshold in upstream's order, out-of-service, orphans after the
quarantine, unscheduled terminating)."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.controller.podgc.selection import (Quarantine, by_eviction_and_creation, orphaned,
                                                terminated_to_delete, terminating_out_of_service,
                                                unscheduled_terminating)
from kubelab.controller.tainteviction.timedworkers import TimedWorkerQueue
from kubelab.controller.tainteviction.tolerations import FOREVER, decide, min_toleration_time

TAINT = {"key": "k", "effect": "NoExecute"}


def tol(seconds=None, key="k"):
    t = {"key": key, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


@pytest.mark.parametrize("used,expected", [
    ([], 0.0),
    ([tol()], FOREVER),
    ([tol(1), tol(2)], 1.0),
    ([tol(1), tol()], 1.0),
    ([tol(), tol(1)], 1.0),
    ([tol(300), tol(5)], 5.0),
    ([tol(-5), tol(10)], 0.0),
    ([tol(0)], 0.0),
])
def test_min_toleration_time(used, expected):
    assert min_toleration_time(used) == expected


@pytest.mark.parametrize("taints,tolerations,scheduled,action,fire", [
    ([], [tol(5)], None, "cancel", None),
    ([TAINT], [], None, "delete-now", 100.0),
    ([TAINT], [tol(key="other")], None, "delete-now", 100.0),
    ([TAINT], [tol()], None, "cancel", None),
    ([TAINT], [tol(5)], None, "schedule", 105.0),
    ([TAINT], [tol(0)], None, "schedule", 100.0),
    ([TAINT, {"key": "j", "effect": "NoExecute"}], [tol(30), tol(5, key="j")], None, "schedule", 105.0),
    ([TAINT], [tol(5)], 90.0, "keep", None),           # an eviction already scheduled stands
    ([TAINT], [tol(5)], 100.0, "replace", 105.0),
])
def test_process_pod_on_node(taints, tolerations, scheduled, action, fire):
    d = decide(taints, tolerations, 100.0, scheduled, scheduled is not None)
    assert d.action == action
    if fire is not None:
        assert d.fire_at == fire


async def test_timed_worker_queue_runs_once_and_can_be_cancelled():
    ran = []

    async def work(key, fire_at):
        ran.append(key)

    q = TimedWorkerQueue(work, clock=lambda: 1000.0)
    q.add_work("ns/a", 1000.0, 1000.05)
    q.add_work("ns/b", 1000.0, 1000.05)
    q.add_work("ns/a", 1000.0, 1000.0)           # already there: ignored
    assert q.cancel_work("ns/b")
    await asyncio.sleep(0.15)
    assert ran == ["ns/a"]
    q.add_work("ns/a", 1000.0, 1000.0)           # done and kept: not twice
    await asyncio.sleep(0.05)
    assert ran == ["ns/a"]
    assert not q.cancel_work("ns/a")             # nothing left to cancel, the key is forgotten
    q.add_work("ns/a", 1000.0, 1000.0)
    await asyncio.sleep(0.05)
    assert ran == ["ns/a", "ns/a"]
    q.shutdown()


async def test_failed_work_can_be_scheduled_again():
    calls = []

    async def work(key, fire_at):
        calls.append(key)
        raise RuntimeError("boom")

    q = TimedWorkerQueue(work)
    q.add_work("x", 0, 0)
    await asyncio.sleep(0.05)
    assert q.get_worker("x") is None and "x" not in q.workers
    q.add_work("x", 0, 0)
    await asyncio.sleep(0.05)
    assert calls == ["x", "x"]


def pod(name, phase="Running", created="2026-01-01T00:00:00Z", node="n1", deleting=False, reason=None):
    p = {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
         "spec": {"nodeName": node}, "status": {"phase": phase}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if reason:
        p["status"]["reason"] = reason
    return p


def test_terminated_pods_over_the_threshold_go_evicted_first_then_oldest():
    pods = [pod("running", "Running"), pod("pending", "Pending"), pod("unknown", "Unknown"),
            pod("new", "Succeeded", "2026-01-03T00:00:00Z"), pod("old", "Failed", "2026-01-01T00:00:00Z"),
            pod("b-same", "Succeeded", "2026-01-02T00:00:00Z"), pod("a-same", "Succeeded", "2026-01-02T00:00:00Z"),
            pod("evicted", "Failed", "2026-01-05T00:00:00Z", reason="Evicted")]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 2)] == ["evicted", "old", "a-same"]
    assert terminated_to_delete(pods, 5) == []
    assert terminated_to_delete(pods, 0) == []       # 0 disables it
    assert [p["metadata"]["name"] for p in by_eviction_and_creation(pods[3:])][:2] == ["evicted", "old"]


def test_terminating_pods_on_out_of_service_nodes_and_unscheduled_ones():
    oos = {"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service",
                                                            "effect": "NoExecute"}]},
           "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    ready_oos = {**oos, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    pods = [pod("a", deleting=True), pod("b"), pod("c", node="", deleting=True), pod("d", node="")]
    assert [p["metadata"]["name"] for p in terminating_out_of_service(pods, {"n1": oos}.get)] == ["a"]
    assert terminating_out_of_service(pods, {"n1": ready_oos}.get) == []
    assert terminating_out_of_service(pods, {}.get) == []
    assert [p["metadata"]["name"] for p in unscheduled_terminating(pods)] == ["c"]


def test_orphans_wait_out_the_quarantine():
    q = Quarantine(40.0)
    pods = [pod("a", node="gone"), pod("b", node="n1"), pod("c", node="back")]
    q.observe(pods, {"n1"}, 0.0)
    assert q.due({"n1"}, 39.0) == []
    q.observe(pods, {"n1"}, 39.0)                    # seen again: the quarantine still counts from 0
    assert q.due({"n1", "back"}, 40.0) == ["gone"]   # "back" came back and is forgotten
    assert q.due({"n1"}, 100.0) == []
    assert [p["metadata"]["name"] for p in orphaned(pods, {"gone"})] == ["a"]
