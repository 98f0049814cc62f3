"""The official kubernetes Python client against the apiserver: typed CRUD for every kind,
selectors, pagination, watches across a restart, 410 handling, optimistic concurrency."""
from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

POD_SPEC = {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "x"}}

# (api class, snake name, namespaced, kind, apiVersion, body without metadata)
KINDS = [
    ("CoreV1Api", "config_map", True, "ConfigMap", "v1", {"data": {"a": "b"}}),
    ("CoreV1Api", "secret", True, "Secret", "v1", {"stringData": {"a": "b"}}),
    ("CoreV1Api", "pod", True, "Pod", "v1", {"spec": POD_SPEC}),
    ("CoreV1Api", "service", True, "Service", "v1", {"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}),
    ("CoreV1Api", "endpoints", True, "Endpoints", "v1",
     {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]}),
    ("CoreV1Api", "service_account", True, "ServiceAccount", "v1", {}),
    ("CoreV1Api", "event", True, "Event", "v1",
     {"involvedObject": {"kind": "Pod", "name": "p", "namespace": "NS"}, "reason": "Test", "message": "m",
      "type": "Normal"}),
    ("CoreV1Api", "limit_range", True, "LimitRange", "v1",
     {"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
    ("CoreV1Api", "resource_quota", True, "ResourceQuota", "v1", {"spec": {"hard": {"pods": "10"}}}),
    ("CoreV1Api", "persistent_volume_claim", True, "PersistentVolumeClaim", "v1",
     {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    ("CoreV1Api", "persistent_volume", False, "PersistentVolume", "v1",
     {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"}}}),
    ("CoreV1Api", "node", False, "Node", "v1", {"spec": {"podCIDR": "10.244.9.0/24"}}),
    ("CoreV1Api", "namespace", False, "Namespace", "v1", {}),
    ("AppsV1Api", "deployment", True, "Deployment", "apps/v1", {"spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    ("AppsV1Api", "replica_set", True, "ReplicaSet", "apps/v1", {"spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    ("AppsV1Api", "daemon_set", True, "DaemonSet", "apps/v1", {"spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    ("AppsV1Api", "stateful_set", True, "StatefulSet", "apps/v1",
     {"spec": {"selector": SELECTOR, "template": TEMPLATE, "serviceName": "x"}}),
    ("AppsV1Api", "controller_revision", True, "ControllerRevision", "apps/v1", {"revision": 1, "data": {}}),
    ("BatchV1Api", "job", True, "Job", "batch/v1",
     {"spec": {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}}),
    ("BatchV1Api", "cron_job", True, "CronJob", "batch/v1",
     {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
         **POD_SPEC, "restartPolicy": "OnFailure"}}}}}}),
    ("DiscoveryV1Api", "endpoint_slice", True, "EndpointSlice", "discovery.k8s.io/v1",
     {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}),
    ("CoordinationV1Api", "lease", True, "Lease", "coordination.k8s.io/v1",
     {"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}),
    ("EventsV1Api", "event", True, "Event", "events.k8s.io/v1",
     {"eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Test", "action": "Testing",
      "reportingController": "t", "reportingInstance": "t", "type": "Normal", "note": "hello"}),
    ("RbacAuthorizationV1Api", "role", True, "Role", "rbac.authorization.k8s.io/v1",
     {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    ("RbacAuthorizationV1Api", "role_binding", True, "RoleBinding", "rbac.authorization.k8s.io/v1",
     {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
      "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]}),
    ("RbacAuthorizationV1Api", "cluster_role", False, "ClusterRole", "rbac.authorization.k8s.io/v1",
     {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    ("RbacAuthorizationV1Api", "cluster_role_binding", False, "ClusterRoleBinding", "rbac.authorization.k8s.io/v1",
     {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
      "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]}),
    ("PolicyV1Api", "pod_disruption_budget", True, "PodDisruptionBudget", "policy/v1",
     {"spec": {"minAvailable": 1, "selector": SELECTOR}}),
    ("AutoscalingV2Api", "horizontal_pod_autoscaler", True, "HorizontalPodAutoscaler", "autoscaling/v2",
     {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "maxReplicas": 5}}),
    ("SchedulingV1Api", "priority_class", False, "PriorityClass", "scheduling.k8s.io/v1", {"value": 1000}),
    ("CertificatesV1Api", "certificate_signing_request", False, "CertificateSigningRequest",
     "certificates.k8s.io/v1",
     {"spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "signerName": "example.com/x",
               "usages": ["client auth"]}}),
]


def _api(k8s, cls: str):
    return getattr(client, cls)(k8s)


def _call(api, verb: str, snake: str, namespaced: bool, *args, **kw):
    name = f"{verb}_namespaced_{snake}" if namespaced else f"{verb}_{snake}"
    return getattr(api, name)(*args, **kw)


@pytest.mark.parametrize("cls,snake,namespaced,kind,api_version,body", KINDS, ids=[f"{k[4]}/{k[3]}" for k in KINDS])
def test_typed_crud(k8s, namespace, cls, snake, namespaced, kind, api_version, body):
    api = _api(k8s, cls)
    name = f"t-{uuid.uuid4().hex[:8]}"
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "labels": {"suite": "crud"}},
           **{k: v for k, v in body.items()}}
    if kind == "Event" and api_version == "v1":
        obj["involvedObject"] = dict(obj["involvedObject"], namespace=namespace)
    ns_args = (namespace,) if namespaced else ()
    created = _call(api, "create", snake, namespaced, *ns_args, obj)
    assert created.metadata.name == name and created.metadata.uid
    assert int(created.metadata.resource_version) > 0
    got = _call(api, "read", snake, namespaced, name, *ns_args)
    assert got.metadata.uid == created.metadata.uid
    # update (PUT) with the read resourceVersion
    got.metadata.labels["step"] = "put"
    updated = _call(api, "replace", snake, namespaced, name, *ns_args, got)
    assert updated.metadata.labels["step"] == "put"
    assert int(updated.metadata.resource_version) > int(got.metadata.resource_version)
    # a stale resourceVersion is a 409 Conflict
    with pytest.raises(ApiException) as e:
        _call(api, "replace", snake, namespaced, name, *ns_args, got)
    assert e.value.status == 409 and "the object has been modified" in e.value.body
    patched = _call(api, "patch", snake, namespaced, name, *ns_args, {"metadata": {"annotations": {"p": "1"}}})
    assert patched.metadata.annotations["p"] == "1"
    listed = _call(api, "list", snake, namespaced, *ns_args, label_selector="suite=crud,step=put")
    assert name in [i.metadata.name for i in listed.items]
    _call(api, "delete", snake, namespaced, name, *ns_args)
    if kind == "Namespace":
        # namespaces wait for the namespace controller to empty them: Terminating until then
        ns = _call(api, "read", snake, namespaced, name)
        assert ns.status.phase == "Terminating" and ns.metadata.deletion_timestamp
        return
    with pytest.raises(ApiException) as e:
        _call(api, "read", snake, namespaced, name, *ns_args)
    assert e.value.status == 404


def test_pagination_and_selectors(k8s, namespace):
    core = client.CoreV1Api(k8s)
    for i in range(25):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm-{i:02d}",
                                                                   "labels": {"parity": "even" if i % 2 == 0 else "odd"}}})
    seen, token, pages = [], None, 0
    while True:
        res = core.list_namespaced_config_map(namespace, limit=10, _continue=token)
        pages += 1
        seen += [i.metadata.name for i in res.items]
        token = res.metadata._continue
        if not token:
            break
        assert res.metadata.remaining_item_count == 25 - len(seen)
    assert pages == 3
    assert seen == [f"cm-{i:02d}" for i in range(25)]
    odd = core.list_namespaced_config_map(namespace, label_selector="parity in (odd)")
    assert len(odd.items) == 12
    notodd = core.list_namespaced_config_map(namespace, label_selector="parity,parity!=odd")
    assert len(notodd.items) == 13
    one = core.list_namespaced_config_map(namespace, field_selector="metadata.name=cm-07")
    assert [i.metadata.name for i in one.items] == ["cm-07"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(namespace, label_selector="a in (b")
    assert e.value.status == 400


def test_watch_resumes_across_apiserver_restart(k8s, namespace, control_plane):
    """SIGKILL the apiserver while a client watches: every change is seen exactly once."""
    core = client.CoreV1Api(k8s)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    events: list[tuple[str, str, str]] = []
    errors: list[str] = []
    done = threading.Event()

    def watcher():
        last = rv
        while not done.is_set():
            try:
                w = watch.Watch()
                for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=last,
                                   timeout_seconds=5, _request_timeout=10):
                    o = ev["object"]
                    last = o.metadata.resource_version
                    events.append((ev["type"], o.metadata.name, o.data.get("v") if o.data else None))
            except Exception as e:  # the apiserver is down or restarting: resume from `last`
                errors.append(f"{time.monotonic():.1f} {type(e).__name__}: {str(e)[:200]}")
                time.sleep(0.2)

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    for i in range(10):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"w{i}"}, "data": {"v": str(i)}})
    control_plane.restart_apiserver(kill=True)
    for i in range(10, 20):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"w{i}"}, "data": {"v": str(i)}})
    core.patch_namespaced_config_map("w3", namespace, {"data": {"v": "33"}})
    core.delete_namespaced_config_map("w4", namespace)
    deadline = time.time() + 30
    while time.time() < deadline and len(events) < 22:
        time.sleep(0.2)
    done.set()
    t.join(15)
    added = [e[1] for e in events if e[0] == "ADDED"]
    assert sorted(added) == sorted(f"w{i}" for i in range(20)), (events, errors)
    assert len(added) == 20
    assert [e for e in events if e[0] == "MODIFIED"] == [("MODIFIED", "w3", "33")]
    assert [e[1] for e in events if e[0] == "DELETED"] == ["w4"]


def test_watch_from_compacted_rv_is_410(k8s, namespace, control_plane):
    import asyncio

    from kubelab.storage.etcd import Store
    core = client.CoreV1Api(k8s)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "old"}})
    old_rv = int(first.metadata.resource_version)
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"n{i}"}})

    async def compact():
        s = Store([control_plane.etcd.url])
        rev = await s.revision()
        await s.compact(rev)
        await s.close()
    asyncio.run(compact())
    # an exact list at a compacted revision is 410 (it reads etcd)
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(namespace, resource_version=str(old_rv), resource_version_match="Exact")
    assert e.value.status == 410
    # a restarted apiserver's watch cache starts after the compaction: a watch from before its window
    # answers ERROR 410 Expired, which the client raises (the running cache could still serve it, as upstream's)
    control_plane.restart_apiserver(kill=True)
    w = watch.Watch()
    with pytest.raises(ApiException) as e:
        for _ in w.stream(core.list_namespaced_config_map, namespace, resource_version=str(old_rv),
                          timeout_seconds=5):
            pass
    assert e.value.status == 410
    assert re.search(rf"too old resource version: {old_rv} \(\d+\)", str(e.value.reason) + str(e.value.body))


def test_50_concurrent_writers_exact_count(k8s, namespace):
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "counter"}, "data": {"n": "0"}})
    per_writer = 4
    conflicts = [0]
    lock = threading.Lock()

    def writer():
        api = client.CoreV1Api(k8s)
        for _ in range(per_writer):
            while True:
                cm = api.read_namespaced_config_map("counter", namespace)
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    api.replace_namespaced_config_map("counter", namespace, cm)
                    break
                except ApiException as e:
                    assert e.status == 409, e
                    with lock:
                        conflicts[0] += 1
    threads = [threading.Thread(target=writer) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    final = core.read_namespaced_config_map("counter", namespace)
    assert final.data["n"] == str(50 * per_writer)
    assert conflicts[0] > 0  # the race was real


def test_restarted_apiserver_replays_history_to_resuming_watches(k8s, namespace, control_plane):
    """A watch resumed from before the new apiserver's start gets exactly the changes since (no 410)."""
    core = client.CoreV1Api(k8s)
    rv = core.create_namespaced_config_map(namespace, {"metadata": {"name": "h0"}}).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "h1"}})
    core.patch_namespaced_config_map("h0", namespace, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("h1", namespace)
    control_plane.restart_apiserver(kill=True)
    seen = []
    for ev in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                   timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "h1"), ("MODIFIED", "h0"), ("DELETED", "h1")]


def test_large_list_is_streamed_whole(k8s, namespace):
    """A LIST above the streaming chunk size arrives complete and in key order."""
    core = client.CoreV1Api(k8s)
    for i in range(620):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"b{i:04d}"}, "data": {"i": str(i)}})
    res = core.list_namespaced_config_map(namespace)
    assert [i.metadata.name for i in res.items] == [f"b{i:04d}" for i in range(620)]
    assert res.items[619].data == {"i": "619"}
    zero = core.list_namespaced_config_map(namespace, resource_version="0")
    assert len(zero.items) == 620


def test_paged_list_is_a_consistent_snapshot(k8s, namespace):
    """Pages come from one revision: objects created or deleted while paging do not show up or vanish."""
    core = client.CoreV1Api(k8s)
    for i in range(12):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"s{i:02d}"}})
    first = core.list_namespaced_config_map(namespace, limit=5)
    assert [i.metadata.name for i in first.items] == [f"s{i:02d}" for i in range(5)]
    assert first.metadata.remaining_item_count == 7
    core.delete_namespaced_config_map("s08", namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "s99"}})
    names = [i.metadata.name for i in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(namespace, limit=5, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
    assert names == [f"s{i:02d}" for i in range(12)]
    # a new list sees the changes
    now = [i.metadata.name for i in core.list_namespaced_config_map(namespace, limit=500).items]
    assert "s08" not in now and "s99" in now
