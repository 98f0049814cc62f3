"""Pure rules of the Deployment controller, tables from upstream's deployment/util tests."""
from __future__ import annotations

import pytest

from kubelab.controller.deployment import util as u


def dep(replicas=10, surge="25%", unavailable="25%", strategy="RollingUpdate", **spec):
    s = {"replicas": replicas, "strategy": {"type": strategy}, **spec}
    if strategy == "RollingUpdate":
        s["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "generation": 1}, "spec": s,
            "status": {}}


def rs(name, replicas, available=0, created="2026-01-01T00:00:00Z", rev=None, ready=None, status_replicas=None,
       annotations=None):
    ann = dict(annotations or {})
    if rev is not None:
        ann[u.REVISION] = str(rev)
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": ann},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "availableReplicas": available, "readyReplicas": available if ready is None else ready}}


@pytest.mark.parametrize("value,total,up,want", [
    (5, 10, True, 5), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 10, True, 0), ("100%", 3, False, 3),
    ("33%", 10, True, 4), ("33%", 10, False, 3),
])
def test_scaled_value(value, total, up, want):
    assert u.scaled_value(value, total, up) == want


def test_scaled_value_refuses_a_string_that_is_not_a_percentage():
    with pytest.raises(ValueError, match="string is not a percentage"):
        u.scaled_value("7", 10, True)


@pytest.mark.parametrize("surge,unavailable,want", [
    ("25%", "25%", (3, 2)), (0, 0, (0, 1)), ("0%", "0%", (0, 1)), (1, 0, (1, 0)), (0, "50%", (0, 5)),
])
def test_resolve_fenceposts(surge, unavailable, want):
    assert u.resolve_fenceposts(dep(10, surge, unavailable)) == want


@pytest.mark.parametrize("d,rss,new,want", [
    (dep(10, 2, 0), [rs("old", 10)], rs("new", 0), 2),         # surge 2 over 10
    (dep(10, 2, 0), [rs("old", 10), rs("new", 2)], rs("new", 2), 2),    # at max total: no more
    (dep(10, 2, 0), [rs("old", 5), rs("new", 5)], rs("new", 5), 7),
    (dep(10, 2, 0), [rs("old", 0), rs("new", 9)], rs("new", 9), 10),    # never above replicas
    (dep(10, strategy="Recreate"), [rs("old", 0)], rs("new", 0), 10),
])
def test_new_rs_new_replicas(d, rss, new, want):
    assert u.new_rs_new_replicas(d, rss, new) == want


def test_template_hash_is_stable_safe_and_moved_by_collisions():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    h = u.template_hash(t)
    assert h == u.template_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert u.template_hash(t, 1) != h and u.template_hash(t, 1) != u.template_hash(t, 2)
    t2 = {**t, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert u.template_hash(t2) != h


def test_equal_ignore_hash():
    a = {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"x": 1}}
    b = {"metadata": {"labels": {"app": "web"}}, "spec": {"x": 1}}
    assert u.equal_ignore_hash(a, b)
    assert not u.equal_ignore_hash(a, {"metadata": {"labels": {"app": "web"}}, "spec": {"x": 2}})
    assert u.equal_ignore_hash({"metadata": {"labels": {"pod-template-hash": "x"}}, "spec": {}}, {"spec": {}})


def test_find_new_rs_takes_the_oldest_match():
    d = dep()
    d["spec"]["template"] = {"spec": {"c": 1}}
    a = rs("a", 1, created="2026-01-02T00:00:00Z")
    a["spec"]["template"] = {"spec": {"c": 1}}
    b = rs("b", 1, created="2026-01-01T00:00:00Z")
    b["spec"]["template"] = {"metadata": {"labels": {"pod-template-hash": "q"}}, "spec": {"c": 1}}
    c = rs("c", 1)
    c["spec"]["template"] = {"spec": {"c": 2}}
    assert u.find_new_rs(d, [a, b, c])["metadata"]["name"] == "b"
    assert u.find_old_rss(b, [a, b, c])[1] == [a, c]


def test_rs_annotations_revision_history_and_skips():
    d = dep(5, 1, 0)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2", u.LAST_APPLIED: "{}", u.REVISION: "9"}
    got = u.rs_annotations(d, rs("x", 0, rev=1), 4)
    assert got[u.REVISION] == "4" and got[u.REVISION_HISTORY] == "1"
    assert got["kubernetes.io/change-cause"] == "v2" and u.LAST_APPLIED not in got
    assert got[u.DESIRED_REPLICAS] == "5" and got[u.MAX_REPLICAS] == "6"
    again = u.rs_annotations(d, {"metadata": {"annotations": got}}, 6)
    assert again[u.REVISION_HISTORY] == "1,4" and again[u.REVISION] == "6"
    assert u.rs_annotations(d, {"metadata": {"annotations": got}}, 3)[u.REVISION] == "4"   # never lowered


def test_proportional_scaling_spreads_by_size():
    d = dep(20, 3, 2)   # was 10 (max 13), now 20 (max 23)
    new = rs("new", 6, annotations={u.MAX_REPLICAS: "13", u.DESIRED_REPLICAS: "10"}, created="2026-01-02T00:00:00Z")
    old = rs("old", 7, annotations={u.MAX_REPLICAS: "13", u.DESIRED_REPLICAS: "10"})
    sizes = u.proportional_sizes(d, new, [old])
    assert sum(sizes.values()) == 23
    assert sizes["old"] > 7 and sizes["new"] > 6
    # one active ReplicaSet takes the whole size
    assert u.proportional_sizes(dep(4), rs("new", 2), [rs("old", 0)]) == {"new": 4}
    # scaling down
    d = dep(5, 0, 1)
    sizes = u.proportional_sizes(d, rs("new", 5, annotations={u.MAX_REPLICAS: "10"}, created="2026-01-02T00:00:00Z"),
                                 [rs("old", 5, annotations={u.MAX_REPLICAS: "10"})])
    assert sum(sizes.values()) == 5


def test_is_scaling_event():
    d = dep(5)
    assert u.is_scaling_event(d, [rs("a", 3, annotations={u.DESIRED_REPLICAS: "3"})])
    assert not u.is_scaling_event(d, [rs("a", 3, annotations={u.DESIRED_REPLICAS: "5"})])
    assert not u.is_scaling_event(d, [rs("a", 3)])


def test_status_and_available_condition():
    d = dep(10, 2, 2)
    st = u.calculate_status(d, rs("new", 4, available=4), [rs("new", 4, available=4), rs("old", 6, available=5)],
                            "2026-01-01T00:00:00Z")
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"], st["unavailableReplicas"]) == (10, 4, 9, 1)
    cond = u.get_condition(st, "Available")
    assert cond["status"] == "True" and cond["reason"] == "MinimumReplicasAvailable"
    st = u.calculate_status(d, None, [rs("old", 10, available=7)], "2026-01-01T00:00:00Z")
    assert u.get_condition(st, "Available")["reason"] == "MinimumReplicasUnavailable"


def test_progress_conditions():
    d = dep(2, 1, 0, progressDeadlineSeconds=600)
    new = rs("web-abc", 2, available=2)
    st = u.calculate_status(d, new, [new], "2026-01-01T00:00:00Z")
    assert u.rollout_progress(d, new, st, "2026-01-01T00:00:00Z", 0) is None
    cond = u.get_condition(st, "Progressing")
    assert cond["reason"] == "NewReplicaSetAvailable" and cond["message"] == \
        'ReplicaSet "web-abc" has successfully progressed.'
    # progressing: requeued for the deadline
    d["status"] = {"updatedReplicas": 0}
    partial = rs("web-abc", 1, available=1)
    st = u.calculate_status(d, partial, [partial, rs("old", 1, available=1)], "2026-01-01T00:00:00Z")
    again = u.rollout_progress(d, partial, st, "2026-01-01T00:00:00Z", 1767225600.0)
    assert u.get_condition(st, "Progressing")["reason"] == "ReplicaSetUpdated" and 590 < again <= 601
    # no progress past the deadline: ProgressDeadlineExceeded
    d["status"] = st
    st2 = u.calculate_status(d, partial, [partial, rs("old", 1, available=1)], "2026-01-01T00:20:00Z")
    u.rollout_progress(d, partial, st2, "2026-01-01T00:20:00Z", 1767225600.0 + 1200)
    cond = u.get_condition(st2, "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert cond["message"] == 'ReplicaSet "web-abc" has timed out progressing.'


def test_revision_history_cleanup():
    d = dep(revisionHistoryLimit=2)
    old = [rs(f"r{i}", 0, rev=i, status_replicas=0) for i in range(1, 6)]
    old[1]["spec"]["replicas"] = 1     # r2 still has a pod: skipped, not replaced by a newer one
    assert [x["metadata"]["name"] for x in u.rss_to_clean(d, old)] == ["r1", "r3"]
    assert u.rss_to_clean(dep(), old) == []
