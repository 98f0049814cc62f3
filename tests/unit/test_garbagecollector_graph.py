"""The garbage collector's graph bookkeeping and attemptToDelete decisions (upstream's cases)."""
from __future__ import annotations

from kubelab.controller.garbagecollector.graph import Graph, decide, node_from


def obj(uid, owners=(), deleting=False, finalizers=(), name=None):
    m = {"uid": uid, "name": name or uid, "namespace": "ns",
         "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": o if isinstance(o, str) else o[0],
                              "uid": o if isinstance(o, str) else o[0],
                              "blockOwnerDeletion": False if isinstance(o, str) else o[1]} for o in owners]}
    if deleting:
        m["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if finalizers:
        m["finalizers"] = list(finalizers)
    return node_from({"metadata": m}, "v1", "ConfigMap", "configmaps")


def test_dependent_of_an_absent_owner_is_work():
    g = Graph()
    assert g.upsert(obj("d", ["o"])) == [("delete", "d")]
    assert g.upsert(obj("o")) == []
    assert g.upsert(obj("d2", ["o"])) == []                 # the owner is there: nothing to do
    assert sorted(g.remove("o")) == [("delete", "d"), ("delete", "d2")]


def test_foreground_owner_enqueues_dependents_and_itself():
    g = Graph()
    g.upsert(obj("o"))
    g.upsert(obj("a", [("o", True)]))
    g.upsert(obj("b", ["o"]))
    work = g.upsert(obj("o", deleting=True, finalizers=["foregroundDeletion"]))
    assert set(work) == {("delete", "a"), ("delete", "b"), ("dependents", "o")}
    assert [n.uid for n in g.blocking_dependents("o")] == ["a"]
    # a blocking dependent going away looks at the owner again
    assert g.remove("a") == [("dependents", "o")]
    assert g.blocking_dependents("o") == []
    # dropping the reference does too
    g.upsert(obj("c", [("o", True)]))
    assert ("dependents", "o") in g.upsert(obj("c"))


def test_orphan_finalizer_is_orphan_work():
    g = Graph()
    g.upsert(obj("o"))
    assert g.upsert(obj("o", deleting=True, finalizers=["orphan"])) == [("orphan", "o")]


def test_decide_table():
    ref = lambda uid, block=False: {"uid": uid, "blockOwnerDeletion": block}   # noqa: E731
    # all owners gone: delete, Background unless the dependent carries a policy finalizer
    assert decide([(ref("a"), "dangling")], False, []) == ("delete", "Background")
    assert decide([(ref("a"), "dangling")], False, ["orphan"]) == ("delete", "Orphan")
    assert decide([(ref("a"), "dangling")], True, ["foregroundDeletion"]) == ("delete", "Foreground")
    # a solid owner keeps it; dangling references are dropped
    assert decide([(ref("a"), "solid")], False, []) == ("keep", None)
    assert decide([(ref("a"), "solid"), (ref("b"), "dangling")], False, []) == ("patch", [ref("a")])
    # a solid owner and one waiting for dependents: the waiting one is no longer blocked
    assert decide([(ref("a"), "solid"), (ref("b", True), "waiting")], False, []) == \
        ("patch", [ref("a"), {"uid": "b", "blockOwnerDeletion": False}])
    # only a waiting owner: delete; in the foreground when it has dependents of its own
    assert decide([(ref("b", True), "waiting")], False, []) == ("delete", "Background")
    assert decide([(ref("b", True), "waiting")], True, []) == ("delete", "Foreground")
