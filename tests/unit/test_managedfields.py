"""Server-side apply field management (pkg/api/managedfields.py).

Expected fieldsV1 documents are written by hand from upstream's documented shapes
(kubernetes.io server-side-apply page, managedFields of objects created with
`kubectl apply --server-side` / `kubectl create`), conflict messages from
k8s.io/apimachinery managedfields/internal conflict.go and conflict_test.go, and list
ordering from sigs.k8s.io/structured-merge-diff typed/merge_test.go.
"""

from __future__ import annotations

import copy
import json

import pytest

from kubelab.api.managedfields import (
    ApplyConflict,
    Conflict,
    FieldManagerError,
    apply,
    fields_v1,
    parse_fields_v1,
    path_string,
    serialize_fields_v1,
    update,
)

DEPLOY = "apps/v1.Deployment"
CM = "core/v1.ConfigMap"
SVC = "core/v1.Service"
T0, T1, T2, T3 = ("2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z",
                  "2024-05-01T10:03:00Z")


def deployment(replicas: int | None = 3, image: str = "nginx:1.14.2", labels: bool = True) -> dict:
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx-deployment"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    if labels:
        d["metadata"]["labels"] = {"app": "nginx"}
    if replicas is not None:
        d["spec"]["replicas"] = replicas
    return d


def ssa(live, applied, manager="kubectl", root=DEPLOY, force=False, now=T1, api_version="apps/v1", **kw):
    live_before, applied_before = copy.deepcopy(live), copy.deepcopy(applied)
    out = apply(live, applied, manager=manager, api_version=api_version, root_type=root, force=force, now=now, **kw)
    assert live == live_before and applied == applied_before, "apply mutated its input"
    return out


def put(old, new, manager="kube-controller-manager", root=DEPLOY, now=T2, api_version="apps/v1", **kw):
    old_before, new_before = copy.deepcopy(old), copy.deepcopy(new)
    out = update(old, new, manager=manager, api_version=api_version, root_type=root, now=now, **kw)
    assert old == old_before and new == new_before, "update mutated its input"
    return out


def entry(obj: dict, manager: str, operation: str | None = None) -> dict:
    found = [e for e in obj["metadata"].get("managedFields", [])
             if e["manager"] == manager and (operation is None or e["operation"] == operation)]
    assert len(found) == 1, obj["metadata"].get("managedFields")
    return found[0]


def managers(obj: dict) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def owned(obj: dict, manager: str, operation: str | None = None) -> set[str]:
    return {path_string(p) for p in parse_fields_v1(entry(obj, manager, operation)["fieldsV1"])}


# What `kubectl apply --server-side` records for the Deployment above: containers keyed by
# name, ports by containerPort+protocol (protocol's schema default fills the key), the
# atomic label selector owned as a whole, '.' only on list items.
DEPLOYMENT_FIELDS = {
    "f:metadata": {"f:labels": {"f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    'k:{"name":"nginx"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}},
                        },
                    },
                },
            },
        },
    },
}


# ---------------------------------------------------------------------------
# create through apply


def test_create_via_apply_records_upstream_fields_v1():
    out = ssa(None, deployment(), now=T0)
    assert out["spec"] == deployment()["spec"]
    assert out["metadata"]["labels"] == {"app": "nginx"}
    [e] = out["metadata"]["managedFields"]
    assert e == {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
                 "fieldsType": "FieldsV1", "fieldsV1": DEPLOYMENT_FIELDS}
    # key order of the entry and of fieldsV1 is upstream's ('.' first, then sorted elements)
    assert list(e) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    item = e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert list(item) == [".", "f:image", "f:name", "f:ports"]
    assert json.dumps(e["fieldsV1"]) == json.dumps(DEPLOYMENT_FIELDS)


def test_configmap_example_from_the_docs():
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
          "data": {"key": "some value"}}
    out = ssa(None, cm, root=CM, api_version="v1", now=T0)
    assert out["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}


def test_service_ports_keyed_by_port_and_protocol():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "a"},
                    "ports": [{"port": 53, "protocol": "UDP", "name": "dns"}, {"port": 53, "name": "dns-tcp"}]}}
    out = ssa(None, svc, root=SVC, api_version="v1")
    assert entry(out, "kubectl")["fieldsV1"] == {"f:spec": {
        "f:ports": {
            'k:{"port":53,"protocol":"TCP"}': {".": {}, "f:name": {}, "f:port": {}},
            'k:{"port":53,"protocol":"UDP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}},
        },
        "f:selector": {},  # +mapType=atomic
    }}


# ---------------------------------------------------------------------------
# re-applying


def test_reapply_without_a_field_removes_it():
    live = ssa(None, deployment(), now=T0)
    out = ssa(live, deployment(replicas=None, labels=False), now=T1)
    assert "replicas" not in out["spec"]
    assert "labels" not in out["metadata"]
    assert ".spec.replicas" not in owned(out, "kubectl")
    assert ".metadata.labels.app" not in owned(out, "kubectl")
    assert entry(out, "kubectl")["time"] == T1


def test_reapply_removes_list_items_no_longer_applied():
    live = ssa(None, deployment(), now=T0)
    d = deployment()
    d["spec"]["template"]["spec"]["containers"] = [{"name": "sidecar", "image": "busybox"}]
    out = ssa(live, d)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "sidecar", "image": "busybox"}]
    assert entry(out, "kubectl")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}}}
    d2 = deployment()
    d2["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    out2 = ssa(ssa(None, deployment(), now=T0), d2)
    assert out2["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]


def test_field_dropped_by_one_applier_survives_while_another_owns_it():
    live = ssa(None, deployment(), now=T0)
    shared = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
                        "spec": {"replicas": 3}}, manager="handover", now=T1)
    out = ssa(shared, deployment(replicas=None), now=T2)
    assert out["spec"]["replicas"] == 3
    assert owned(out, "handover") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(out, "kubectl")
    # once the last owner lets go, the field goes too and the empty entry disappears
    gone = ssa(out, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"}},
               manager="handover", now=T3)
    assert "replicas" not in gone["spec"]
    assert managers(gone) == [("kubectl", "Apply")]


def test_noop_apply_keeps_object_and_time():
    live = ssa(None, deployment(), now=T0)
    again = ssa(live, deployment(), now=T3)
    assert again == live


# ---------------------------------------------------------------------------
# conflicts


def test_conflict_with_another_applier():
    live = ssa(None, deployment(replicas=3), now=T0)
    with pytest.raises(ApplyConflict) as ei:
        ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
                   "spec": {"replicas": 5}}, manager="hpa")
    e = ei.value
    assert e.conflicts == [("kubectl", ".spec.replicas")]
    assert e.message() == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert str(e) == e.message()
    assert e.causes() == [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"',
                           "field": ".spec.replicas"}]
    st = e.to_status()
    assert (st["code"], st["reason"], st["status"]) == (409, "Conflict", "Failure")
    assert st["details"]["causes"] == e.causes()


def test_conflict_with_an_updater_names_its_api_version():
    created = put(None, deployment(), manager="kubectl-client-side-apply", now=T0)
    with pytest.raises(ApplyConflict) as ei:
        ssa(created, deployment(replicas=2), manager="kubectl")
    assert ei.value.message() == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                                  'using apps/v1: .spec.replicas')


def test_plural_conflict_message_groups_by_sorted_manager():
    live = ssa(None, deployment(), now=T0)
    live = put(live, {**live, "metadata": {**live["metadata"], "annotations": {"a": "1"}}}, manager="zz-editor")
    d = deployment(replicas=7, image="nginx:2")
    d["metadata"]["annotations"] = {"a": "2"}
    with pytest.raises(ApplyConflict) as ei:
        ssa(live, d, manager="aa-applier")
    assert ei.value.message() == (
        "Apply failed with 3 conflicts: conflicts with \"kubectl\":\n"
        "- .spec.replicas\n"
        "- .spec.template.spec.containers[name=\"nginx\"].image\n"
        "conflicts with \"zz-editor\" using apps/v1:\n"
        "- .metadata.annotations.a")
    assert [c["field"] for c in ei.value.causes()] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image', ".metadata.annotations.a"]


def test_conflict_message_matches_upstream_conflict_test():
    one = ApplyConflict([Conflict("foo", ".spec.replicas", "Update", "v1", "scale")])
    assert one.message() == ('Apply failed with 1 conflict: conflict with "foo" with subresource "scale" '
                             'using v1: .spec.replicas')
    two = ApplyConflict([Conflict("foo", ".spec.replicas", "Update", "v1"), Conflict("bar", ".metadata.labels.app")])
    assert two.message() == ('Apply failed with 2 conflicts: conflicts with "bar":\n- .metadata.labels.app\n'
                             'conflicts with "foo" using v1:\n- .spec.replicas')
    assert two.causes()[1] == {"reason": "FieldManagerConflict", "message": 'conflict with "bar"',
                               "field": ".metadata.labels.app"}


def test_force_takes_ownership():
    live = ssa(None, deployment(replicas=3), now=T0)
    out = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
                     "spec": {"replicas": 5}}, manager="hpa", force=True, now=T1)
    assert out["spec"]["replicas"] == 5
    assert owned(out, "hpa") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(out, "kubectl")
    # the previous owner now conflicts in turn
    with pytest.raises(ApplyConflict) as ei:
        ssa(out, deployment(replicas=3))
    assert ei.value.conflicts == [("hpa", ".spec.replicas")]


def test_equal_values_share_ownership_without_conflict():
    live = ssa(None, deployment(replicas=3), now=T0)
    out = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
                     "spec": {"replicas": 3}}, manager="other", now=T1)
    assert out["spec"] == live["spec"]
    assert ".spec.replicas" in owned(out, "kubectl")
    assert owned(out, "other") == {".spec.replicas"}
    # a no-op for the object: the new entry has no time, as upstream
    assert "time" not in entry(out, "other")
    with pytest.raises(ApplyConflict) as ei:
        ssa(out, deployment(replicas=4))
    assert ei.value.conflicts == [("other", ".spec.replicas")]


def test_explicit_null_conflicts_then_removes():
    live = ssa(None, deployment(replicas=3), now=T0)
    null = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
            "spec": {"replicas": None}}
    with pytest.raises(ApplyConflict):
        ssa(live, null, manager="other")
    out = ssa(live, null, manager="other", force=True)
    assert "replicas" not in out["spec"]
    assert owned(out, "other") == {".spec.replicas"}


# ---------------------------------------------------------------------------
# update


def test_update_after_apply_moves_changed_fields_and_next_apply_conflicts():
    live = ssa(None, deployment(replicas=3), now=T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 10
    out = put(live, scaled, manager="kubectl-scale", now=T1)
    assert out["spec"]["replicas"] == 10
    e = entry(out, "kubectl-scale")
    assert e == {"manager": "kubectl-scale", "operation": "Update", "apiVersion": "apps/v1", "time": T1,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    assert ".spec.replicas" not in owned(out, "kubectl")
    assert managers(out) == [("kubectl", "Apply"), ("kubectl-scale", "Update")]
    with pytest.raises(ApplyConflict) as ei:
        ssa(out, deployment(replicas=3))
    assert ei.value.message() == ('Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: '
                                  '.spec.replicas')
    # re-applying the value now live shares the field instead
    shared = ssa(out, deployment(replicas=10), now=T2)
    assert ".spec.replicas" in owned(shared, "kubectl")


def test_update_on_create_owns_everything_with_upstream_markers():
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "test-cm", "namespace": "default", "uid": "u1", "labels": {"test-label": "test"}},
          "data": {"key": "some value"}}
    out = put(None, cm, manager="kubectl-create", root=CM, api_version="v1", now=T0)
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:key": {}}, "f:metadata": {"f:labels": {".": {}, "f:test-label": {}}}},
    }]
    d = put(None, deployment(), manager="kubectl-create", now=T0)
    # spec/template are Go non-pointer structs (present in the empty object), containers is
    # never omitted: no '.' on them; what was really added (maps, lists, items) gets one.
    assert entry(d, "kubectl-create")["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                }}},
            },
        },
    }


def test_update_takes_fields_from_other_updaters_and_drops_empty_entries():
    live = put(None, deployment(), manager="creator", now=T0)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 1
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    out = put(live, new, manager="editor", now=T1)
    assert owned(out, "editor") == {".spec.replicas", '.spec.template.spec.containers[name="nginx"].image'}
    assert ".spec.replicas" not in owned(out, "creator")
    # identical PUT: nothing changes, the entry and its time stay
    again = put(out, copy.deepcopy(out), manager="editor", now=T3)
    assert entry(again, "editor")["time"] == T1
    # the creator loses its last fields -> its entry goes
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"}, "spec": {}}
    only = put(None, bare | {"spec": {"paused": True}}, manager="creator", now=T0)
    flipped = put(only, {**only, "spec": {"paused": False}}, manager="editor", now=T1)
    assert managers(flipped) == [("editor", "Update")]


def test_update_entries_are_per_api_version_and_sorted():
    live = ssa(None, deployment(), now=T2)
    a = put(live, {**live, "metadata": {**live["metadata"], "annotations": {"x": "1"}}}, manager="ctl",
            api_version="apps/v1", now=T1)
    b = put(a, {**a, "metadata": {**a["metadata"], "annotations": {"x": "1", "y": "2"}}}, manager="ctl",
            api_version="apps/v1beta2", now=T0)
    mf = b["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"], e["apiVersion"], e["time"]) for e in mf] == [
        ("kubectl", "Apply", "apps/v1", T2),
        ("ctl", "Update", "apps/v1beta2", T0),  # Apply first, then by time
        ("ctl", "Update", "apps/v1", T1),
    ]


def test_subresource_entries_are_distinct():
    live = ssa(None, deployment(), now=T0)
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 3}
    out = put(live, new, manager="kube-controller-manager", subresource="status", now=T1)
    e = entry(out, "kube-controller-manager")
    assert e["subresource"] == "status" and list(e)[-1] == "subresource"
    # status is a non-pointer struct of the Go type: only its field was added
    assert e["fieldsV1"] == {"f:status": {"f:replicas": {}}}
    # a status update never takes spec, even if the body changed it
    new2 = copy.deepcopy(out)
    new2["spec"]["replicas"] = 9
    new2["status"]["replicas"] = 4
    out2 = put(out, new2, manager="kube-controller-manager", subresource="status", now=T2)
    assert ".spec.replicas" in owned(out2, "kubectl")
    with pytest.raises(ApplyConflict) as ei:
        ssa(out2, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
                   "status": {"replicas": 1}}, manager="other", subresource="status")
    assert ei.value.message() == ('Apply failed with 1 conflict: conflict with "kube-controller-manager" with '
                                  'subresource "status" using apps/v1: .status.replicas')


def test_ignore_status_leaves_status_alone():
    live = ssa(None, deployment(), now=T0)
    live["status"] = {"replicas": 3}
    d = deployment()
    d["status"] = {"replicas": 99}
    out = ssa(live, d, ignore_status=True)
    assert out["status"] == {"replicas": 3}
    assert not any(p.startswith(".status") for p in owned(out, "kubectl"))


def test_update_honours_and_resets_managed_fields_in_the_body():
    live = ssa(None, deployment(), now=T0)
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{}]
    new["spec"]["replicas"] = 4
    out = put(live, new, manager="resetter", now=T1)
    assert managers(out) == [("resetter", "Update")]
    assert owned(out, "resetter") == {".spec.replicas"}
    # without managedFields in the body the live ones are kept
    new2 = copy.deepcopy(live)
    del new2["metadata"]["managedFields"]
    new2["spec"]["paused"] = True
    out2 = put(live, new2, manager="pauser", now=T1)
    assert managers(out2) == [("kubectl", "Apply"), ("pauser", "Update")]


def test_update_managers_are_capped_at_ten():
    obj = put(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k0": "v"}},
              manager="m00", root=CM, api_version="v1", now="2024-05-01T10:00:00Z")
    for i in range(1, 12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = put(obj, new, manager=f"m{i:02d}", root=CM, api_version="v1", now=f"2024-05-01T10:{i:02d}:00Z")
    names = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(names) == 10
    assert names[0] == "ancient-changes" and "m00" not in names and "m01" not in names and "m02" not in names
    assert owned(obj, "ancient-changes") == {".data.k0", ".data.k1", ".data.k2", ".data"}


# ---------------------------------------------------------------------------
# sets, atomic lists, custom resources


def test_finalizers_are_a_set():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a.io/x"]}}
    live = ssa(None, cm, root=CM, api_version="v1", manager="one", now=T0)
    assert entry(live, "one")["fieldsV1"] == {"f:metadata": {"f:finalizers": {'v:"a.io/x"': {}}}}
    both = ssa(live, {**cm, "metadata": {"name": "c", "finalizers": ["b.io/y"]}}, root=CM, api_version="v1",
               manager="two")
    assert both["metadata"]["finalizers"] == ["a.io/x", "b.io/y"]
    assert owned(both, "two") == {'.metadata.finalizers[="b.io/y"]'}
    dropped = ssa(both, {**cm, "metadata": {"name": "c"}}, root=CM, api_version="v1", manager="one")
    assert dropped["metadata"]["finalizers"] == ["b.io/y"]


@pytest.mark.parametrize("live,applied,want", [
    # typed/merge_test.go "struct grab bag" set cases
    ("a b c", "a b", "a b c"),
    ("a b", "b a", "b a"),
    ("a b c g f", "c d e f", "a b c g d e f"),
    ("c d e f", "a c e", "a c d e f"),
    ("a b c d", "d e f a", "b c d e f a"),
    ("a b c d e f g h i j", "1 b 2 h 3 e 4 k l", "a 1 b c d f g 2 h i j 3 e 4 k l"),
])
def test_set_merge_order_matches_structured_merge_diff(live, applied, want):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": live.split()}}
    out = ssa(cm, {**cm, "metadata": {"name": "c", "finalizers": applied.split()}}, root=CM, api_version="v1")
    assert out["metadata"]["finalizers"] == want.split()


def test_associative_list_merge_keeps_other_items_and_order():
    live = ssa(None, deployment(), now=T0)
    extra = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
             "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}}
    out = ssa(live, extra, manager="injector")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx", "sidecar"]
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    # kubectl re-applies its own container only: the injector's stays
    again = ssa(out, deployment(image="nginx:1.25"), now=T2)
    assert [(c["name"], c["image"]) for c in again["spec"]["template"]["spec"]["containers"]] == [
        ("nginx", "nginx:1.25"), ("sidecar", "busybox")]


def test_other_lists_are_atomic():
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    live = ssa(None, d, now=T0)
    assert ".spec.template.spec.containers[name=\"nginx\"].args" in owned(live, "kubectl")
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"},
             "spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["c"]}]}}}}
    with pytest.raises(ApplyConflict) as ei:
        ssa(live, other, manager="other")
    assert ei.value.conflicts == [("kubectl", '.spec.template.spec.containers[name="nginx"].args')]
    forced = ssa(live, other, manager="other", force=True)
    assert forced["spec"]["template"]["spec"]["containers"][0]["args"] == ["c"]


def test_custom_resource_lists_are_atomic():
    cr = {"apiVersion": "example.com/v1", "kind": "Foo",
          "metadata": {"name": "foo", "finalizers": ["x"]},
          "spec": {"items": [{"name": "a", "v": 1}], "data": {"key1": "val1"}}}
    live = ssa(None, cr, root=None, api_version="example.com/v1", manager="manager-one", now=T0)
    assert entry(live, "manager-one")["fieldsV1"] == {
        "f:metadata": {"f:finalizers": {'v:"x"': {}}},
        "f:spec": {"f:data": {"f:key1": {}}, "f:items": {}},
    }
    other = {"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "foo"},
             "spec": {"items": [{"name": "b"}], "data": {"key2": "val2"}}}
    with pytest.raises(ApplyConflict) as ei:
        ssa(live, other, root=None, api_version="example.com/v1", manager="manager-two")
    assert ei.value.conflicts == [("manager-one", ".spec.items")]
    out = ssa(live, other, root=None, api_version="example.com/v1", manager="manager-two", force=True)
    assert out["spec"] == {"items": [{"name": "b"}], "data": {"key1": "val1", "key2": "val2"}}
    created = put(None, cr, root=None, api_version="example.com/v1", manager="creator", now=T0)
    # unstructured: nothing pre-exists, so spec itself was added
    assert entry(created, "creator")["fieldsV1"]["f:spec"] == {
        ".": {}, "f:data": {".": {}, "f:key1": {}}, "f:items": {}}


# ---------------------------------------------------------------------------
# errors, helpers


def test_bad_applied_configurations():
    d = deployment()
    d["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(FieldManagerError, match="metadata.managedFields must be nil"):
        ssa(None, d)
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http"}]
    with pytest.raises(FieldManagerError, match='omits key field "containerPort"'):
        ssa(None, d)
    d = deployment()
    d["spec"]["template"]["spec"]["containers"].append({"name": "nginx", "image": "x"})
    with pytest.raises(FieldManagerError, match="duplicate entries"):
        ssa(None, d)


def test_fields_v1_round_trip():
    fv = fields_v1(deployment(), DEPLOY)
    assert fv == DEPLOYMENT_FIELDS
    paths = parse_fields_v1(fv)
    assert {path_string(p) for p in paths} == {
        ".metadata.labels.app", ".spec.replicas", ".spec.selector", ".spec.template.metadata.labels.app",
        '.spec.template.spec.containers[name="nginx"]',
        '.spec.template.spec.containers[name="nginx"].image',
        '.spec.template.spec.containers[name="nginx"].name',
        '.spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"]',
        '.spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].containerPort',
    }
    assert serialize_fields_v1(paths) == fv
    odd = {"f:a": {".": {}, "f:b": {}}, "f:l": {"i:0": {}, "i:10": {}, "i:2": {}},
           "f:s": {'v:"x"': {}, "v:1": {}, "v:true": {}}, "f:k": {'k:{"b":2,"a":1}': {}}}
    back = serialize_fields_v1(parse_fields_v1(odd))
    assert list(back) == ["f:a", "f:k", "f:l", "f:s"]
    assert list(back["f:l"]) == ["i:0", "i:2", "i:10"]
    assert list(back["f:s"]) == ["v:1", 'v:"x"', "v:true"]  # numbers < strings < bools
    assert back["f:k"] == {'k:{"a":1,"b":2}': {}}  # key fields sorted, compact
    assert {path_string(p) for p in parse_fields_v1(odd)} >= {".a", ".a.b", ".l[10]", '.s[="x"]', ".k[a=1,b=2]"}


# ---------------------------------------------------------------------------
# upstream integration cases (test/integration/apiserver/apply/apply_test.go)


def test_upstream_apply_managed_fields_case():
    """TestApplyManagedFields: an applier, then an updater adding and changing data."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
          "data": {"key": "value"}}
    live = ssa(None, cm, manager="apply_test", root=CM, api_version="v1", now=T0)
    p1 = copy.deepcopy(live)
    p1["data"]["new-key"] = "value"
    live = put(live, p1, manager="updater", root=CM, api_version="v1", now=T1)
    p2 = copy.deepcopy(live)
    p2["data"]["key"] = "new value"
    live = put(live, p2, manager="updater", root=CM, api_version="v1", now=T2)
    assert live["data"] == {"key": "new value", "new-key": "value"}
    assert live["metadata"]["managedFields"] == [
        {"manager": "apply_test", "operation": "Apply", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}}},
        {"manager": "updater", "operation": "Update", "apiVersion": "v1", "time": T2, "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:key": {}, "f:new-key": {}}}},
    ]


def test_upstream_apply_removes_empty_managed_fields_case():
    """TestApplyRemovesEmptyManagedFields: applying only name/namespace tracks nothing."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "namespace": "default"}}
    once = ssa(None, cm, manager="apply_test", root=CM, api_version="v1")
    twice = ssa(once, cm, manager="apply_test", root=CM, api_version="v1")
    assert "managedFields" not in once["metadata"] and "managedFields" not in twice["metadata"]


def test_upstream_apply_to_object_created_with_bad_managed_fields():
    """TestApplyConvertsManagedFieldsVersion: undecodable managedFields in a create body are
    ignored; a later apply adds the applier's entry."""
    d = deployment(replicas=None)
    d["metadata"]["managedFields"] = [{"manager": "sidecar_controller", "operation": "Apply",
                                       "apiVersion": "extensions/v1beta1",
                                       "fieldsV1": {"f:metadata": {"f:labels": {"f:sidecar_version": {}}}}}]
    created = put(None, d, manager="kubectl-create", now=T0)
    assert managers(created) == [("kubectl-create", "Update")]
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "nginx-deployment", "labels": {"sidecar_version": "release"}},
               "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "sidecar:latest"}]}}}}
    out = ssa(created, sidecar, manager="sidecar_controller", now=T1)
    assert len(out["metadata"]["managedFields"]) == 2
    assert json.dumps(entry(out, "sidecar_controller")["fieldsV1"], separators=(",", ":")) == (
        '{"f:metadata":{"f:labels":{"f:sidecar_version":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":'
        '{"k:{\\"name\\":\\"sidecar\\"}":{".":{},"f:image":{},"f:name":{}}}}}}}')
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx", "sidecar"]


def test_empty_list_clears_and_subresources_ignore_body_managed_fields():
    """TestClearManagedFieldsWithUpdateEmptyList and
    TestApplyDoesNotChangeManagedFieldsViaSubresources."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "labels": {"test-label": "test"}},
          "data": {"key": "value"}}
    live = ssa(None, cm, manager="apply_test", root=CM, api_version="v1", now=T0)
    cleared = put(live, {**cm, "metadata": {**cm["metadata"], "managedFields": []}}, root=CM, api_version="v1")
    assert "managedFields" not in cleared["metadata"]
    assert cleared["metadata"]["labels"] == {"test-label": "test"}

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "just-a-pod"},
           "spec": {"containers": [{"name": "test-container-a", "image": "test-image-one"}]}}
    live = ssa(None, pod, manager="apply_test", root="core/v1.Pod", api_version="v1", now=T0)
    forged = copy.deepcopy(live)
    forged["metadata"]["managedFields"] = [{
        "manager": "testing", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:containers": {'k:{"name":"testing"}': {".": {}, "f:image": {}, "f:name": {}}}}}}]
    forged["status"] = {"conditions": [{"type": "MyStatus", "status": "true"}]}
    out = put(live, forged, manager="update_managedfields_test", root="core/v1.Pod", api_version="v1",
              subresource="status", now=T1)
    mf = out["metadata"]["managedFields"]
    assert len(mf) == 2 and mf[0] == live["metadata"]["managedFields"][0]
    assert mf[1]["manager"] == "update_managedfields_test"
    assert mf[1]["fieldsV1"] == {"f:status": {"f:conditions": {
        ".": {}, 'k:{"type":"MyStatus"}': {".": {}, "f:status": {}, "f:type": {}}}}}
