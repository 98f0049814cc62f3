"""Pure parts of the Job controller: completed-index intervals (upstream indexed_job_utils_test.go
cases), the pod failure backoff (backoff_utils_test.go), the pods a Job creates and which pods
count as failed."""
from __future__ import annotations

import pytest

from kubelab.controller.job import indexes
from kubelab.controller.job.backoff import BackoffRecord, delay, new_record, remaining
from kubelab.controller.job.pods import (TRACKING_FINALIZER, active_for_removal, is_active, is_failed,
                                         pod_from_template)


@pytest.mark.parametrize("text,completions,want", [
    ("", 5, ""),
    ("1", 5, "1"),
    ("1,2", 5, "1,2"),
    ("1-3", 5, "1-3"),
    ("0,1,2,3", 5, "0-3"),
    ("1,3-5,6", 10, "1,3-6"),
    ("3-5,1", 10, "1,3-5"),
    ("1-2,2-4", 10, "1-4"),
    ("0-4,8-12", 10, "0-4,8,9"),        # clipped to completions
    ("a,1,-3,5-x,2", 10, "1,2"),         # malformed parts dropped
    ("12", 10, ""),
])
def test_parse_and_format(text, completions, want):
    assert indexes.format(indexes.parse(text, completions)) == want


@pytest.mark.parametrize("prev,new,want,total", [
    ("", [], "", 0),
    ("", [0, 2, 3, 4, 7], "0,2-4,7", 5),
    ("1,3", [2], "1-3", 3),
    ("1-3", [0, 4], "0-4", 5),
    ("5,6", [8], "5,6,8", 3),
])
def test_merge(prev, new, want, total):
    got = indexes.merge(indexes.parse(prev, 100), new)
    assert indexes.format(got) == want and indexes.total(got) == total


def test_first_pending():
    succeeded = indexes.parse("0,2", 6)
    assert indexes.first_pending(6, succeeded, [1], 2) == [3, 4]
    assert indexes.first_pending(6, succeeded, [1, 3, 4, 5], 3) == []
    assert indexes.first_pending(3, [], [], 10) == [0, 1, 2]


def test_pod_index():
    assert indexes.pod_index({"metadata": {"annotations": {indexes.COMPLETION_INDEX: "3"}}}) == 3
    assert indexes.pod_index({"metadata": {"annotations": {indexes.COMPLETION_INDEX: "-1"}}}) is None
    assert indexes.pod_index({"metadata": {}}) is None


@pytest.mark.parametrize("failures,want", [(0, 0), (1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (20, 600)])
def test_backoff_delay(failures, want):
    assert delay(failures) == want


def test_backoff_remaining():
    assert remaining(BackoffRecord(), 1000) == 0
    assert remaining(BackoffRecord(1, 995.0), 1000) == 5
    assert remaining(BackoffRecord(2, 995.0), 1000) == 15
    assert remaining(BackoffRecord(2, 900.0), 1000) == 0


def _pod(phase, finished=None, uid="u"):
    cs = [{"name": "c", "state": {"terminated": {"finishedAt": finished}}}] if finished else []
    return {"metadata": {"uid": uid}, "status": {"phase": phase, "containerStatuses": cs}}


def test_new_backoff_record():
    r = new_record(BackoffRecord(), [], [_pod("Failed", "2024-01-01T00:00:10Z")], 0)
    assert r == BackoffRecord(1, 1704067210.0)
    r = new_record(r, [], [_pod("Failed", "2024-01-01T00:00:05Z")], 0)
    assert r.failures_after_last_success == 2 and r.last_failure_time == 1704067210.0
    assert new_record(r, [_pod("Succeeded", "2024-01-01T00:00:20Z")], [], 0) == BackoffRecord()
    r = new_record(r, [_pod("Succeeded", "2024-01-01T00:00:20Z")],
                   [_pod("Failed", "2024-01-01T00:00:15Z"), _pod("Failed", "2024-01-01T00:00:30Z")], 0)
    assert r == BackoffRecord(1, 1704067230.0)


JOB = {"apiVersion": "batch/v1", "kind": "Job",
       "metadata": {"name": "pi", "namespace": "ns", "uid": "job-uid"},
       "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed",
                "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                             "spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox"}]}}}}


def test_pod_from_template_indexed():
    p = pod_from_template(JOB, 2)
    m = p["metadata"]
    assert m["generateName"] == "pi-2-"
    assert m["finalizers"] == [TRACKING_FINALIZER]
    assert m["annotations"][indexes.COMPLETION_INDEX] == "2" and m["labels"][indexes.COMPLETION_INDEX] == "2"
    assert m["labels"]["batch.kubernetes.io/controller-uid"] == "job-uid"
    assert m["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid",
                                     "controller": True, "blockOwnerDeletion": True}]
    assert p["spec"]["hostname"] == "pi-2"
    assert p["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    assert "env" not in JOB["spec"]["template"]["spec"]["containers"][0], "the template was modified"


def test_pod_from_template_non_indexed():
    job = {**JOB, "spec": {**JOB["spec"], "completionMode": "NonIndexed"}}
    p = pod_from_template(job)
    assert p["metadata"]["generateName"] == "pi-" and "hostname" not in p["spec"]
    assert "annotations" not in p["metadata"]


def test_failed_and_active():
    deleted = {"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}
    assert is_failed(deleted, JOB) and not is_active(deleted)
    only_failed = {**JOB, "spec": {**JOB["spec"], "podReplacementPolicy": "Failed"}}
    assert not is_failed(deleted, only_failed)
    done = {"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}}
    assert not is_failed(done, JOB)
    assert is_failed({"metadata": {}, "status": {"phase": "Failed"}}, JOB)


def test_active_for_removal_indexed_duplicates_first():
    def pod(name, ix):
        return {"metadata": {"name": name, "annotations": {indexes.COMPLETION_INDEX: str(ix)},
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"nodeName": "n"}, "status": {"phase": "Running"}}
    pods = [pod("a", 0), pod("b", 0), pod("c", 1), pod("d", 7)]
    out = active_for_removal(JOB, pods, 0, indexes.parse("1", 3))
    assert sorted(p["metadata"]["name"] for p in out) in (["a", "c", "d"], ["b", "c", "d"])


def _failed(codes, conditions=()):
    return {"metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": [{"type": t, "status": "True"} for t in conditions],
                       "containerStatuses": [{"name": n, "state": {"terminated": {"exitCode": c}}}
                                             for n, c in codes]}}


POLICY = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
]}


@pytest.mark.parametrize("pod,want", [
    (_failed([("main", 42)]),
     ("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0", True, "FailJob")),
    (_failed([("side", 42)]), (None, True, "Count")),                 # another container: NotIn 1,2
    (_failed([("main", 1)], ["DisruptionTarget"]), (None, False, "Ignore")),
    (_failed([("main", 1)]), (None, False, "Ignore")),
    (_failed([("main", 2)]), (None, True, None)),                     # no rule: counted
    (_failed([("main", 0)]), (None, True, None)),                     # exit code 0 never matches
])
def test_pod_failure_policy(pod, want):
    from kubelab.controller.job.failurepolicy import match
    assert match(POLICY, pod) == want
    assert match(None, pod) == (None, True, None)


def test_failure_policy_means_only_failed_pods_fail():
    job = {**JOB, "spec": {**JOB["spec"], "podFailurePolicy": POLICY}}
    deleted = {"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}
    assert not is_failed(deleted, job)
