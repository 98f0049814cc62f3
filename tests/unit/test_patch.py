"""Table tests for the patch engine (pkg/api/patch.py, pkg/api/patchmeta.py).

Cases are written for this project from the facts of upstream's cases:
k8s.io/apimachinery strategicpatch patch_test.go (server-side StrategicMergePatch),
evanphx/json-patch v4 (the JSON patch / merge patch library the apiserver runs),
RFC 6902 appendix A and RFC 7386 appendix A.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelab.api import patchmeta
from kubelab.api.patch import (
    MAX_JSON_PATCH_OPERATIONS,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    has_strategic_meta,
)

POD = "core/v1.Pod"
DEPLOYMENT = "apps/v1.Deployment"
NODE = "core/v1.Node"
SERVICE = "core/v1.Service"
GENERIC_422 = "the server rejected our request due to an error in our request"


def smp(doc: dict, patch: dict, root: str | None = POD) -> dict:
    """Apply, checking on the way that neither input is mutated."""
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    out = apply_strategic_merge_patch(doc, patch, root)
    assert doc == doc_before and patch == patch_before
    return out


def pod(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def names(items: list) -> list:
    return [i["name"] for i in items]


# ---------------------------------------------------------------------------
# Strategic merge patch: lists merged by key
# ---------------------------------------------------------------------------

def test_containers_merge_by_name_keeps_others_and_position():
    doc = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    out = smp(doc, {"spec": {"containers": [{"name": "b", "image": "y2"}]}})
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "x"}, {"name": "b", "image": "y2"}]
    assert out["metadata"] == {"name": "p"}


def test_new_container_goes_before_server_only_items():
    # Upstream's order normalisation: a patch item unknown to the live list is
    # emitted before the remaining server-only items (the kubectl patch docs show
    # the added redis container first).
    doc = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    out = smp(doc, {"spec": {"containers": [{"name": "c", "image": "z"}]}})
    assert names(out["spec"]["containers"]) == ["c", "a", "b"]


@pytest.mark.parametrize("original,patch,expected", [
    # upstream "preserve the order from the patch in a merging list"
    ([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}],
     [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}, {"name": "2", "workingDir": "x"}],
     [{"name": "3", "image": "c"}, {"name": "1", "image": "a"},
      {"name": "2", "image": "b", "workingDir": "x"}]),
    # upstream "preserve the order from the patch in a merging list 2"
    ([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}],
     [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}],
     [{"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]),
])
def test_merge_list_order_follows_patch(original, patch, expected):
    out = smp(pod(containers=original), {"spec": {"containers": patch}})
    assert out["spec"]["containers"] == expected


def test_env_merges_by_name_inside_merged_container():
    doc = pod(containers=[{"name": "app", "image": "x", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    out = smp(doc, {"spec": {"containers": [{"name": "app", "env": [
        {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}})
    env = out["spec"]["containers"][0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "20", "C": "3"}
    assert out["spec"]["containers"][0]["image"] == "x"


def test_deployment_template_path_reaches_env_and_volume_mounts():
    doc = {"spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {
        "containers": [{"name": "c", "image": "x",
                        "env": [{"name": "A", "value": "1"}],
                        "volumeMounts": [{"name": "v", "mountPath": "/a"}]}]}}}}
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "c",
        "env": [{"name": "B", "value": "2"}],
        "volumeMounts": [{"name": "w", "mountPath": "/a", "readOnly": True}]}]}}}}
    out = smp(doc, patch, DEPLOYMENT)
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in c["env"]} == {"A", "B"}
    # volumeMounts merge on mountPath: same path -> one merged entry
    assert c["volumeMounts"] == [{"name": "w", "mountPath": "/a", "readOnly": True}]
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "a"}


def test_cronjob_path_reaches_containers():
    doc = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}}}
    patch = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "b", "image": "y2"}]}}}}}}
    out = smp(doc, patch, "batch/v1.CronJob")
    containers = out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "a", "image": "x"}, {"name": "b", "image": "y2"}]


def test_container_ports_merge_on_container_port_quirk():
    # The same containerPort with another protocol collapses into one entry: the
    # merge key is containerPort alone (upstream quirk).
    doc = pod(containers=[{"name": "a", "ports": [
        {"containerPort": 53, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}]}])
    out = smp(doc, {"spec": {"containers": [{"name": "a", "ports": [
        {"containerPort": 53, "protocol": "UDP"}]}]}})
    assert out["spec"]["containers"][0]["ports"] == [
        {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80, "protocol": "TCP"}]


def test_service_ports_merge_on_port():
    doc = {"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"},
                              {"port": 443, "name": "https"}]}}
    out = smp(doc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, SERVICE)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "name": "http"},
                                    {"port": 443, "name": "https"}]


def test_volumes_merge_by_name_and_retain_keys():
    doc = pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}])
    patch = {"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"],
                                   "hostPath": {"path": "/x"}}]}}
    out = smp(doc, patch)
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}},
                                      {"name": "w", "emptyDir": {}}]


def test_pod_status_conditions_merge_by_type():
    doc = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}}
    out = smp(doc, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert out["status"]["conditions"] == [{"type": "PodScheduled", "status": "True"},
                                           {"type": "Ready", "status": "True"}]
    assert out["status"]["phase"] == "Pending"


def test_owner_references_merge_by_uid():
    doc = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}
    out = smp(doc, {"metadata": {"ownerReferences": [{"uid": "2", "controller": True}]}})
    assert out["metadata"]["ownerReferences"] == [
        {"uid": "1", "name": "a"}, {"uid": "2", "name": "b", "controller": True}]


def test_node_addresses_merge_on_type_quirk():
    doc = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                    {"type": "Hostname", "address": "n1"}]}}
    out = smp(doc, {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}},
              NODE)
    assert out["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"},
                                          {"type": "Hostname", "address": "n1"}]


@pytest.mark.parametrize("root,doc,patch,path", [
    # no patch strategy upstream: the patch replaces the list
    (POD, pod(tolerations=[{"key": "a", "operator": "Exists"}]),
     {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}, ("spec", "tolerations")),
    (NODE, {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}},
     {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, ("spec", "taints")),
    (POD, pod(containers=[{"name": "a", "args": ["x", "y"]}]),
     {"spec": {"containers": [{"name": "a", "args": ["z"]}]}}, None),
])
def test_lists_without_strategy_are_replaced(root, doc, patch, path):
    out = smp(doc, patch, root)
    if path is None:
        assert out["spec"]["containers"][0]["args"] == ["z"]
    else:
        assert out[path[0]][path[1]] == patch[path[0]][path[1]]


def test_unknown_root_type_replaces_every_list():
    doc = pod(containers=[{"name": "a"}, {"name": "b"}])
    out = smp(doc, {"spec": {"containers": [{"name": "c"}]}, "metadata": {"labels": {"x": "1"}}},
              None)
    assert out["spec"]["containers"] == [{"name": "c"}]
    assert out["metadata"] == {"name": "p", "labels": {"x": "1"}}


# ---------------------------------------------------------------------------
# Primitive merge lists (finalizers, podCIDRs)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("original,patch,expected", [
    (["a", "b"], ["b", "c"], ["a", "b", "c"]),        # union, no duplicates
    (["a", "b"], ["c", "a"], ["c", "a", "b"]),        # patch order kept
    (["1", "2", "3"], ["3", "1"], ["2", "3", "1"]),    # upstream merging int list case
    ([], ["a"], ["a"]),
])
def test_finalizers_merge_as_ordered_set(original, patch, expected):
    out = smp({"metadata": {"finalizers": original}}, {"metadata": {"finalizers": patch}})
    assert out["metadata"]["finalizers"] == expected


def test_pod_cidrs_merge_as_set():
    out = smp({"spec": {"podCIDRs": ["10.244.1.0/24"]}},
              {"spec": {"podCIDRs": ["fd00::/64", "10.244.1.0/24"]}}, NODE)
    assert sorted(out["spec"]["podCIDRs"]) == ["10.244.1.0/24", "fd00::/64"]


def test_delete_from_primitive_list():
    doc = {"metadata": {"finalizers": ["a", "b", "c"]}}
    out = smp(doc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}})
    assert out["metadata"]["finalizers"] == ["a", "c"]


def test_delete_from_primitive_list_absent_list_is_noop():
    out = smp({"metadata": {"name": "n"}},
              {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}})
    assert out == {"metadata": {"name": "n"}}


def test_delete_from_primitive_list_bad_format_is_400():
    with pytest.raises(PatchError) as ei:
        smp({"metadata": {"finalizers": ["a"]}},
            {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})
    assert (ei.value.code, ei.value.reason) == (400, "BadRequest")
    assert ei.value.message == "invalid patch format of primitive list"


# ---------------------------------------------------------------------------
# Directives
# ---------------------------------------------------------------------------

def test_delete_directive_removes_container():
    doc = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    out = smp(doc, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}})
    assert names(out["spec"]["containers"]) == ["a", "c"]


def test_delete_directive_removes_every_duplicate():
    doc = pod(containers=[{"name": "1"}, {"name": "1"}, {"name": "2", "image": "a"}])
    out = smp(doc, {"spec": {"containers": [{"name": "1", "$patch": "delete"}]}})
    assert out["spec"]["containers"] == [{"name": "2", "image": "a"}]


def test_delete_and_add_in_one_patch():
    doc = pod(containers=[{"name": "1"}, {"name": "2", "image": "b"}])
    out = smp(doc, {"spec": {"containers": [{"name": "1", "$patch": "delete"},
                                            {"name": "3"}]}})
    assert sorted(names(out["spec"]["containers"])) == ["2", "3"]
    assert {"name": "2", "image": "b"} in out["spec"]["containers"]


def test_delete_directive_on_absent_list_adds_nothing():
    out = smp(pod(), {"spec": {"containers": [{"name": "x", "$patch": "delete"}]}})
    assert out["spec"]["containers"] == []


def test_delete_directive_on_map_leaves_empty_map():
    doc = pod(securityContext={"runAsUser": 1}, containers=[])
    out = smp(doc, {"spec": {"securityContext": {"$patch": "delete"}}})
    assert out["spec"]["securityContext"] == {}


def test_replace_directive_on_map():
    doc = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    out = smp(doc, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}})
    assert out["metadata"]["labels"] == {"c": "3"}


def test_replace_directive_at_root_replaces_object():
    out = smp({"name": 1, "value": 1}, {"other": "a", "$patch": "replace"}, None)
    assert out == {"other": "a"}


def test_replace_directive_in_list():
    doc = pod(containers=[{"name": "a"}, {"name": "b"}])
    out = smp(doc, {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "z"}]}})
    assert out["spec"]["containers"] == [{"name": "c", "image": "z"}]
    out = smp(doc, {"spec": {"containers": [{"$patch": "replace"}]}})
    assert out["spec"]["containers"] == []


def test_merge_directive_in_list_is_refused():
    with pytest.raises(PatchError) as ei:
        smp(pod(containers=[{"name": "a"}]), {"spec": {"containers": [{"$patch": "merge"}]}})
    assert ei.value.code == 500
    assert ei.value.message == "merging lists cannot yet be specified in the patch"


def test_unknown_directive_in_map_is_refused():
    with pytest.raises(PatchError) as ei:
        smp({"metadata": {"labels": {"a": "1"}}}, {"metadata": {"labels": {"$patch": "bogus"}}})
    assert ei.value.message == "unknown patch type: bogus in map: map[$patch:bogus]"


def test_directive_map_added_where_nothing_was_is_dropped():
    out = smp({"metadata": {"name": "n"}},
              {"metadata": {"labels": {"$patch": "replace", "a": "1"}}})
    assert out == {"metadata": {"name": "n"}}


def test_set_element_order_orders_merged_list():
    doc = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
        "containers": [{"name": "c", "image": "z"}]}}
    out = smp(doc, patch)
    assert out["spec"]["containers"] == [{"name": "b", "image": "y"},
                                         {"name": "a", "image": "x"},
                                         {"name": "c", "image": "z"}]
    assert not any(k.startswith("$") for k in out["spec"])


def test_set_element_order_with_item_missing_from_list():
    # upstream raw case: "$setElementOrder contains item that is not present in
    # the list to be merged"
    doc = pod(containers=[{"name": "1"}, {"name": "3"}])
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}}
    out = smp(doc, patch)
    assert out["spec"]["containers"] == [{"name": "3", "image": "3"},
                                         {"name": "1", "image": "1"}]


def test_set_element_order_server_only_items_keep_live_position():
    doc = pod(containers=[{"name": "a"}, {"name": "s"}, {"name": "b"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
    out = smp(doc, patch)
    # "s" sits before "b" in the live list, so it stays ahead of the ordered items
    assert names(out["spec"]["containers"]) == ["s", "b", "a"]


def test_set_element_order_primitive_list():
    # upstream raw case for an int list, here on finalizers
    out = smp({"metadata": {"finalizers": ["1", "3"]}},
              {"metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}})
    assert out["metadata"]["finalizers"] == ["3", "1"]


def test_set_element_order_mismatch_is_an_error():
    doc = pod(containers=[{"name": "1"}, {"name": "3"}, {"name": "2"}])
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}}
    with pytest.raises(PatchError) as ei:
        smp(doc, patch)
    assert "doesn't match $setElementOrder list" in ei.value.message


def test_set_element_order_malformed():
    with pytest.raises(PatchError) as ei:
        smp(pod(containers=[{"name": "a"}]),
            {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": "x"}})
    assert ei.value.code == 500  # patch list of the wrong type: ErrBadArgType
    with pytest.raises(PatchError) as ei:
        smp(pod(containers=[{"name": "a"}]), {"spec": {"$setElementOrdercontainers": []}})
    assert (ei.value.code, ei.value.message) == (
        400, "invalid patch format of setElementOrder list")


def test_retain_keys_clears_unlisted_fields():
    doc = {"spec": {"strategy": {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}
    out = smp(doc, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
              DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_without_directive_merges():
    # upstream: "retainKeys map can add a field when no retainKeys directive present"
    doc = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    out = smp(doc, {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}}, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}


@pytest.mark.parametrize("patch", [
    {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
    {"spec": {"strategy": {"$retainKeys": "type", "type": "Recreate"}}},
])
def test_retain_keys_bad_format_is_400(patch):
    with pytest.raises(PatchError) as ei:
        smp({"spec": {"strategy": {"type": "RollingUpdate"}}}, patch, DEPLOYMENT)
    assert (ei.value.code, ei.value.reason, ei.value.message) == (
        400, "BadRequest", "invalid patch format of retainKeys")


# ---------------------------------------------------------------------------
# Nulls, new values, errors
# ---------------------------------------------------------------------------

def test_null_deletes_map_key_and_unmatched_null_is_ignored():
    doc = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    out = smp(doc, {"metadata": {"labels": {"a": None, "zz": None}, "annotations": None}})
    assert out == {"metadata": {"labels": {"b": "2"}}}


def test_null_inside_merged_list_element_deletes_field():
    doc = pod(containers=[{"name": "a", "image": "x", "workingDir": "/w"}])
    out = smp(doc, {"spec": {"containers": [{"name": "a", "workingDir": None}]}})
    assert out["spec"]["containers"] == [{"name": "a", "image": "x"}]


def test_new_value_has_nulls_and_directive_keys_removed():
    out = smp(pod(), {"spec": {"securityContext": {"runAsUser": 1, "fsGroup": None},
                               "containers": [{"name": "a", "image": None,
                                               "$setElementOrder/env": [{"name": "E"}],
                                               "env": [{"name": "E", "value": "1"}]}]}})
    assert out["spec"]["securityContext"] == {"runAsUser": 1}
    assert out["spec"]["containers"] == [{"name": "a", "env": [{"name": "E", "value": "1"}]}]


def test_missing_merge_key_is_an_error():
    with pytest.raises(PatchError) as ei:
        smp(pod(containers=[{"name": "a"}]), {"spec": {"containers": [{"image": "z"}]}})
    assert ei.value.code == 500 and ei.value.reason == ""
    assert ei.value.message == "map: map[image:z] does not contain declared merge key: name"


def test_mixed_element_types_are_an_error():
    with pytest.raises(PatchError) as ei:
        smp(pod(containers=[{"name": "a"}]), {"spec": {"containers": ["a"]}})
    assert ei.value.message.startswith("list element types are not identical")


def test_list_of_lists_is_422():
    with pytest.raises(PatchError) as ei:
        smp({"metadata": {"finalizers": [["a"]]}}, {"metadata": {"finalizers": [["b"]]}})
    assert ei.value.code == 422 and ei.value.cause == "lists of lists are not supported"


def test_type_change_replaces_value():
    out = smp({"spec": {"x": {"a": 1}}}, {"spec": {"x": [1, 2]}}, None)
    assert out == {"spec": {"x": [1, 2]}}


def test_patch_not_an_object_is_400():
    with pytest.raises(PatchError) as ei:
        apply_strategic_merge_patch({}, [], POD)  # type: ignore[arg-type]
    assert ei.value.code == 400


def test_to_status_shapes():
    st_ = PatchError("boom", 500, "").to_status()
    assert st_["code"] == 500 and "reason" not in st_ and st_["message"] == "boom"
    st_ = PatchError(GENERIC_422, 422, "Invalid", cause="why").to_status()
    assert st_["details"]["causes"] == [{"type": "UnexpectedServerResponse", "message": "why"}]
    assert st_["kind"] == "Status" and st_["status"] == "Failure"


# ---------------------------------------------------------------------------
# patchmeta
# ---------------------------------------------------------------------------

def test_root_types_and_strategic_meta():
    assert patchmeta.root_type_for("", "Pod") == POD
    assert patchmeta.root_type_for("core", "Pod") == POD
    assert patchmeta.root_type_for("apps", "Deployment") == DEPLOYMENT
    assert patchmeta.root_type_for("example.com", "Widget") is None
    assert has_strategic_meta(POD) and has_strategic_meta("core/v1.ConfigMap")
    assert not has_strategic_meta(None)
    assert not has_strategic_meta("core/v1.PodSpec")  # not a root
    for group, kind in [("", "PodTemplate"), ("", "Node"), ("", "Service"), ("", "Endpoints"),
                        ("", "ConfigMap"), ("", "Secret"), ("", "ServiceAccount"),
                        ("", "Namespace"), ("", "Event"), ("", "LimitRange"),
                        ("", "ResourceQuota"), ("", "PersistentVolume"),
                        ("", "PersistentVolumeClaim"), ("apps", "ReplicaSet"),
                        ("apps", "DaemonSet"), ("apps", "StatefulSet"),
                        ("apps", "ControllerRevision"), ("batch", "Job"), ("batch", "CronJob"),
                        ("discovery.k8s.io", "EndpointSlice"), ("coordination.k8s.io", "Lease"),
                        ("rbac.authorization.k8s.io", "Role"),
                        ("rbac.authorization.k8s.io", "ClusterRole"),
                        ("rbac.authorization.k8s.io", "RoleBinding"),
                        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
                        ("policy", "PodDisruptionBudget"),
                        ("autoscaling", "HorizontalPodAutoscaler"),
                        ("scheduling.k8s.io", "PriorityClass"),
                        ("certificates.k8s.io", "CertificateSigningRequest"),
                        ("events.k8s.io", "Event")]:
        assert has_strategic_meta(patchmeta.root_type_for(group, kind)), (group, kind)


def test_patchmeta_table_is_consistent():
    roots = set(patchmeta.ROOT_TYPES.values())
    for type_name, fields in patchmeta.TYPES.items():
        for field, (child, strategy, key) in fields.items():
            assert child is None or child in patchmeta.TYPES, (type_name, field, child)
            assert strategy in (None, "merge", "retainKeys", "merge,retainKeys", "replace")
            if key is not None:
                assert strategy is not None and "merge" in strategy, (type_name, field)
    assert roots <= set(patchmeta.TYPES)
    for root in roots:
        assert patchmeta.field_meta(root, "metadata")[0] == patchmeta.OBJECT_META, root


@pytest.mark.parametrize("root,path,expected", [
    (DEPLOYMENT, ["spec", "template", "spec", "containers", "env"], ("merge", "name")),
    (DEPLOYMENT, ["spec", "template", "spec", "initContainers", "ports"],
     ("merge", "containerPort")),
    ("batch/v1.CronJob", ["spec", "jobTemplate", "spec", "template", "spec", "volumes"],
     ("merge,retainKeys", "name")),
    ("apps/v1.StatefulSet", ["spec", "template", "metadata", "ownerReferences"],
     ("merge", "uid")),
    (POD, ["spec", "ephemeralContainers", "volumeDevices"], ("merge", "devicePath")),
    (POD, ["spec", "topologySpreadConstraints"], ("merge", "topologyKey")),
    (POD, ["spec", "hostAliases"], ("merge", "ip")),
    (POD, ["spec", "tolerations"], (None, None)),
    (POD, ["status", "podIPs"], ("merge", "ip")),
    (NODE, ["spec", "taints"], (None, None)),
    (NODE, ["status", "conditions"], ("merge", "type")),
    ("core/v1.ServiceAccount", ["secrets"], ("merge", "name")),
    ("policy/v1.PodDisruptionBudget", ["status", "conditions"], ("merge", "type")),
    ("autoscaling/v2.HorizontalPodAutoscaler", ["status", "conditions"], ("merge", "type")),
    ("certificates.k8s.io/v1.CertificateSigningRequest", ["status", "conditions"], (None, None)),
    ("discovery.k8s.io/v1.EndpointSlice", ["endpoints"], (None, None)),
])
def test_patchmeta_paths(root, path, expected):
    t = root  # a path leaving the table ends in (None, None): a plain field
    for field in path[:-1]:
        t = patchmeta.field_meta(t, field)[0]
    _, strategy, key = patchmeta.field_meta(t, path[-1])
    assert (strategy, key) == expected


# ---------------------------------------------------------------------------
# JSON merge patch (RFC 7386 appendix A, json-patch v4)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc,patch,expected", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # json-patch v4: nulls are pruned from a value landing on a non-object
    ({"a": "x"}, {"a": [None, {"b": None, "c": 1}]}, {"a": [{"c": 1}]}),
])
def test_merge_patch_rfc7386(doc, patch, expected):
    before = copy.deepcopy(doc), copy.deepcopy(patch)
    assert apply_merge_patch(doc, patch) == expected
    assert (doc, patch) == before


def test_merge_patch_replaces_lists_wholesale():
    doc = pod(containers=[{"name": "a"}, {"name": "b"}])
    out = apply_merge_patch(doc, {"spec": {"containers": [{"name": "c"}]}})
    assert out["spec"]["containers"] == [{"name": "c"}]


@pytest.mark.parametrize("patch", [None, "x", 5, ["a"]])
def test_merge_patch_not_an_object_is_400(patch):
    with pytest.raises(PatchError) as ei:
        apply_merge_patch({"a": 1}, patch)  # type: ignore[arg-type]
    assert (ei.value.code, ei.value.message) == (400, "Invalid JSON Patch")


# ---------------------------------------------------------------------------
# JSON patch (RFC 6902 appendix A, json-patch v4)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc,ops,expected", [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
     {"foo": "bar", "baz": "qux"}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # escaping on write: "~1" is "/", "~0" is "~"
    ({}, [{"op": "add", "path": "/a~1b", "value": 1}, {"op": "add", "path": "/c~0d", "value": 2}],
     {"a/b": 1, "c~d": 2}),
    # copy, and copy of a subtree is a deep copy
    ({"a": {"b": [1]}}, [{"op": "copy", "from": "/a", "path": "/c"},
                         {"op": "add", "path": "/c/b/-", "value": 2}],
     {"a": {"b": [1]}, "c": {"b": [1, 2]}}),
    # json-patch v4: negative indices count from the end
    ({"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"}], {"a": [1, 2]}),
    # json-patch v4: replace of a missing object member adds it
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], {"a": 1, "b": 2}),
    # test of a missing member against null passes
    ({"a": 1}, [{"op": "test", "path": "/b", "value": None}], {"a": 1}),
    # replace of the whole document
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    # kubectl-style metadata label with an escaped slash
    ({"metadata": {"labels": {"app.kubernetes.io/name": "x", "k": "v"}}},
     [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"}],
     {"metadata": {"labels": {"k": "v"}}}),
])
def test_json_patch_applies(doc, ops, expected):
    before = copy.deepcopy(doc), copy.deepcopy(ops)
    assert apply_json_patch(doc, ops) == expected
    assert (doc, ops) == before


@pytest.mark.parametrize("doc,ops,cause", [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     "testing value /baz failed: test failed"),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
     "testing value /~01 failed: test failed"),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}],
     "testing value /a failed: test failed"),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     'add operation does not apply: doc is missing path: "/baz/bat": missing value'),
    ({"a": {}}, [{"op": "remove", "path": "/a/b"}],
     "error in remove for path: '/a/b': Unable to remove nonexistent key: b: missing value"),
    ({"a": [1]}, [{"op": "remove", "path": "/a/5"}],
     "error in remove for path: '/a/5': Unable to access invalid index: 5: "
     "invalid index referenced"),
    ({"a": [1]}, [{"op": "add", "path": "/a/3", "value": 0}],
     "error in add for path: '/a/3': Unable to access invalid index: 3: "
     "invalid index referenced"),
    ({"a": [1]}, [{"op": "add", "path": "/a/x", "value": 0}],
     "error in add for path: '/a/x': value was not a proper array index: 'x': "
     'strconv.Atoi: parsing "x": invalid syntax'),
    ({"a": [1]}, [{"op": "replace", "path": "/a/1", "value": 0}],
     "replace operation does not apply: doc is missing key: /a/1: missing value"),
    ({"a": 1}, [{"op": "move", "from": "/b", "path": "/c"}],
     "error in move for path: 'b': Unable to remove nonexistent key: b: missing value"),
    ({"a": 1}, [{"op": "add", "path": "", "value": {}}],
     'add operation does not apply: doc is missing path: "": missing value'),
    ({"a": 1}, [{"op": "add", "value": 1}], "add operation failed to decode path: missing value"),
    ({"a": 1}, [{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate"),
    ({"a": 1}, [{"path": "/a"}], "Unexpected kind: unknown"),
    ({"a": 1}, [{"op": "add", "path": "/b", "value": 1}, {"op": "test", "path": "/b", "value": 2}],
     "testing value /b failed: test failed"),
])
def test_json_patch_errors(doc, ops, cause):
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as ei:
        apply_json_patch(doc, ops)
    err = ei.value
    assert (err.code, err.reason, err.message) == (422, "Invalid", GENERIC_422)
    assert err.cause == cause
    assert err.to_status()["details"]["causes"][0]["message"] == cause
    assert doc == before


def test_json_patch_malformed_is_400_and_too_many_ops_413():
    with pytest.raises(PatchError) as ei:
        apply_json_patch({}, {"op": "add"})  # type: ignore[arg-type]
    assert ei.value.code == 400
    with pytest.raises(PatchError) as ei:
        apply_json_patch({}, ["add"])
    assert ei.value.code == 400
    ops = [{"op": "test", "path": "/a", "value": None}] * (MAX_JSON_PATCH_OPERATIONS + 1)
    with pytest.raises(PatchError) as ei:
        apply_json_patch({}, ops)
    assert ei.value.code == 413
    assert ei.value.message == ("The allowed maximum operations in a JSON patch is 10000, "
                                f"got {MAX_JSON_PATCH_OPERATIONS + 1}")


def test_json_patch_added_value_does_not_alias_ops():
    ops = [{"op": "add", "path": "/a", "value": {"b": [1]}}]
    out = apply_json_patch({}, ops)
    out["a"]["b"].append(2)
    assert ops[0]["value"] == {"b": [1]}


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

_keys = st.text(alphabet="abcxyz/~", min_size=1, max_size=4)
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(alphabet="ab", max_size=3)
_nonnull_scalars = st.booleans() | st.integers(-5, 5) | st.text(alphabet="ab", max_size=3)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c,
                                                                                   max_size=3),
                     max_leaves=10)
_docs = st.dictionaries(_keys, _json, max_size=5)
# values without nulls inside lists (where merge patch and strategic merge agree)
_nonnull_json = st.recursive(_nonnull_scalars, lambda c: st.lists(c, max_size=3)
                             | st.dictionaries(_keys, c, max_size=3), max_leaves=8)
_patch_values = st.recursive(_scalars | st.lists(_nonnull_json, max_size=3),
                             lambda c: st.dictionaries(_keys, c, max_size=3), max_leaves=8)
_plain_json = st.recursive(_nonnull_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(_keys, c, max_size=3), max_leaves=8)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_merge_patch_with_empty_patch_is_identity(doc):
    assert apply_merge_patch(doc, {}) == doc


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_strategic_merge_with_empty_patch_is_identity(doc):
    assert apply_strategic_merge_patch(doc, {}, POD) == doc


@settings(max_examples=200, deadline=None)
@given(_docs, _keys, _json)
def test_json_patch_add_then_remove_round_trips(doc, key, value):
    doc.pop(key, None)
    path = "/" + _escape(key)
    added = apply_json_patch(doc, [{"op": "add", "path": path, "value": value}])
    assert added[key] == value
    assert apply_json_patch(added, [{"op": "remove", "path": path}]) == doc
    assert apply_json_patch(doc, [{"op": "add", "path": path, "value": value},
                                  {"op": "test", "path": path, "value": value},
                                  {"op": "remove", "path": path}]) == doc


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _plain_json, max_size=5),
       st.dictionaries(_keys, _patch_values, max_size=5))
def test_strategic_merge_without_schema_agrees_with_merge_patch(doc, patch):
    # With no strategic metadata every list is atomic, so for patches without
    # directives (and without nulls inside lists) both patch types agree.
    assert apply_strategic_merge_patch(doc, patch, None) == apply_merge_patch(doc, patch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4, unique=True),
       st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=4, unique=True))
def test_finalizer_merge_is_ordered_union(original, patch):
    out = smp({"metadata": {"finalizers": original}}, {"metadata": {"finalizers": patch}})
    merged = out["metadata"]["finalizers"]
    assert sorted(merged) == sorted(set(original) | set(patch))
    assert [f for f in merged if f in patch] == patch  # patch order wins
    assert [f for f in merged if f not in patch] == [f for f in original if f not in patch]
