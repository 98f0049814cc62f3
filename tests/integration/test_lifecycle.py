"""Deletion semantics, dry runs, namespaces and Service allocation through the official client."""
from __future__ import annotations

import concurrent.futures
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

POD = {"metadata": {"name": "g"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}


def test_graceful_pod_deletion_waits_for_the_kubelet(k8s, namespace):
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, POD)
    p = core.delete_namespaced_pod("g", namespace)
    assert p.metadata.deletion_timestamp is not None
    assert p.metadata.deletion_grace_period_seconds == 30
    # still there: the kubelet finishes graceful deletion
    assert core.read_namespaced_pod("g", namespace).metadata.deletion_timestamp is not None
    # a shorter grace period shortens it; 0 (what the kubelet sends) removes the pod
    p = core.delete_namespaced_pod("g", namespace, grace_period_seconds=5)
    assert p.metadata.deletion_grace_period_seconds == 5
    core.delete_namespaced_pod("g", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("g", namespace)
    assert e.value.status == 404


def test_finalizers_hold_deletion_until_removed(k8s, namespace):
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", namespace)
    cm = core.read_namespaced_config_map("held", namespace)
    assert cm.metadata.deletion_timestamp is not None
    # no new finalizers may be added while deleting
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": ["example.com/hold", "x/y"]}})
    assert e.value.status == 422
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("held", namespace)
    assert e.value.status == 404


def test_propagation_policies_set_gc_finalizers(k8s, namespace):
    apps = client.AppsV1Api(k8s)
    dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    apps.create_namespaced_deployment(namespace, dep)
    apps.delete_namespaced_deployment("d", namespace, propagation_policy="Foreground")
    d = apps.read_namespaced_deployment("d", namespace)
    assert d.metadata.finalizers == ["foregroundDeletion"] and d.metadata.deletion_timestamp
    apps.create_namespaced_deployment(namespace, {**dep, "metadata": {"name": "o"}})
    apps.delete_namespaced_deployment("o", namespace, propagation_policy="Orphan")
    assert apps.read_namespaced_deployment("o", namespace).metadata.finalizers == ["orphan"]
    apps.create_namespaced_deployment(namespace, {**dep, "metadata": {"name": "b"}})
    apps.delete_namespaced_deployment("b", namespace, propagation_policy="Background")
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("b", namespace)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        apps.delete_namespaced_deployment("d", namespace, propagation_policy="Sideways")
    assert e.value.status == 422


def test_preconditions_and_dry_run(k8s, namespace):
    core = client.CoreV1Api(k8s)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "pc"}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("pc", namespace, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")))
    assert e.value.status == 409
    assert "Precondition failed: UID in precondition: 00000000-0000-0000-0000-000000000000" in e.value.body
    core.delete_namespaced_config_map("pc", namespace, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=cm.metadata.uid, resource_version=cm.metadata.resource_version)))
    dry = core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    assert dry.metadata.uid and dry.metadata.name == "dry"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("dry", namespace)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="Some")
    assert e.value.status == 400


def test_delete_collection_by_label(k8s, namespace):
    core = client.CoreV1Api(k8s)
    for i in range(6):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"c{i}", "labels": {"x": str(i % 2)}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="x=1")
    left = sorted(i.metadata.name for i in core.list_namespaced_config_map(namespace).items)
    assert left == ["c0", "c2", "c4"]


def test_terminating_namespace_refuses_new_content(k8s, namespace):
    core = client.CoreV1Api(k8s)
    core.delete_namespace(namespace)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "late"}})
    assert e.value.status == 403
    body = json.loads(e.value.body)
    assert body["message"] == (f'configmaps "late" is forbidden: unable to create new content in namespace '
                               f'{namespace} because it is being terminated')


def test_generation_and_status_subresource(k8s, namespace):
    apps = client.AppsV1Api(k8s)
    dep = {"metadata": {"name": "gen"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    d = apps.create_namespaced_deployment(namespace, dep)
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1  # metadata is not spec
    d = apps.patch_namespaced_deployment_status("gen", namespace, {"status": {"replicas": 3, "observedGeneration": 1}})
    assert d.status.replicas == 3 and d.metadata.generation == 1
    # status cannot be written through the main resource, nor spec through /status
    d = apps.patch_namespaced_deployment("gen", namespace, {"spec": {"replicas": 4}, "status": {"replicas": 9}})
    assert d.spec.replicas == 4 and d.status.replicas == 3 and d.metadata.generation == 2
    d = apps.patch_namespaced_deployment_status("gen", namespace, {"spec": {"replicas": 7}})
    assert d.spec.replicas == 4
    # selectors are immutable
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("gen", namespace, {"spec": {"selector": {"matchLabels": {"a": "c"}}}})
    assert e.value.status == 422 and "field is immutable" in e.value.body


def test_service_ips_unique_under_concurrency_and_released(k8s, namespace):
    core = client.CoreV1Api(k8s)

    def make(i):
        return core.create_namespaced_service(namespace, {"metadata": {"name": f"s{i}"}, "spec": {
            "type": "NodePort", "ports": [{"port": 80}]}})
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        svcs = list(ex.map(make, range(40)))
    ips = [s.spec.cluster_ip for s in svcs]
    ports = [s.spec.ports[0].node_port for s in svcs]
    assert len(set(ips)) == 40 and len(set(ports)) == 40
    assert all(30000 <= p <= 32767 for p in ports)
    # a taken IP or port is refused with the field named
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(namespace, {"metadata": {"name": "dup"}, "spec": {
            "clusterIP": ips[0], "ports": [{"port": 80}]}})
    assert e.value.status == 422
    assert "spec.clusterIPs" in e.value.body and "provided IP is already allocated" in e.value.body
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(namespace, {"metadata": {"name": "out"}, "spec": {
            "clusterIP": "192.168.1.1", "ports": [{"port": 80}]}})
    assert e.value.status == 422 and "The range of valid IPs is 10.96.0.0/12" in e.value.body
    # a failed create leaks nothing, and deletion releases: the same IP and port can be taken again
    core.delete_namespaced_service("s0", namespace)
    again = core.create_namespaced_service(namespace, {"metadata": {"name": "again"}, "spec": {
        "type": "NodePort", "clusterIP": ips[0], "ports": [{"port": 80, "nodePort": ports[0]}]}})
    assert again.spec.cluster_ip == ips[0] and again.spec.ports[0].node_port == ports[0]
    # clusterIP is immutable
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_service("again", namespace, {"spec": {"clusterIP": ips[1]}})
    assert e.value.status == 422


def test_unknown_fields_per_field_validation(k8s, namespace, kubectl):
    bad = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\nspec:\n  replicaz: 3\n  selector:\n"
           "    matchLabels: {a: b}\n  template:\n    metadata:\n      labels: {a: b}\n    spec:\n      containers:\n"
           "      - name: c\n        image: busybox\n        imagee: x\n")
    r = kubectl.run("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert r.returncode == 1
    assert 'strict decoding error: unknown field "spec.replicaz", unknown field ' \
           '"spec.template.spec.containers[0].imagee"' in r.stderr, r.stderr
    # Warn: created, the unknown fields dropped, a Warning header for each
    api = client.ApiClient(k8s.configuration)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"a": "b"}, "dataa": {}}
    resp = api.call_api(*api.param_serialize("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                             query_params=[("fieldValidation", "Warn")], body=body,
                                             header_params={"Content-Type": "application/json",
                                                            "Accept": "application/json"}))
    resp.read()
    assert resp.status == 201
    assert resp.getheader("Warning") == '299 - "unknown field \\"dataa\\""'
    assert "dataa" not in json.loads(resp.data)
    # Ignore: dropped silently
    core = client.CoreV1Api(k8s)
    cm = core.read_namespaced_config_map("w", namespace)
    assert cm.data == {"a": "b"}


def test_body_limits_and_malformed_bodies(control_plane, namespace):
    import ssl

    import urllib3
    d = control_plane.api.pki.dir
    ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
    ctx.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
    http = urllib3.HTTPSConnectionPool("127.0.0.1", control_plane.api.port, ssl_context=ctx, retries=False)
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    big = json.dumps({"metadata": {"name": "big"}, "data": {"a": "x" * (4 << 20)}}).encode()
    r = http.urlopen("POST", url, body=big, headers={"Content-Type": "application/json"})
    st = json.loads(r.data)
    assert r.status == 413 and st["reason"] == "RequestEntityTooLarge" and st["kind"] == "Status"
    r = http.urlopen("POST", url, body=b'{"metadata": {"name": ', headers={"Content-Type": "application/json"})
    assert r.status == 400 and json.loads(r.data)["reason"] == "BadRequest"
    r = http.urlopen("POST", url, body=b"metadata: [unclosed", headers={"Content-Type": "application/yaml"})
    assert r.status == 400 and "error converting YAML to JSON" in json.loads(r.data)["message"]
    r = http.urlopen("POST", url, body=b"k8s\x00\x0a\x02junk", headers={
        "Content-Type": "application/vnd.kubernetes.protobuf"})
    assert r.status == 400
    r = http.urlopen("POST", url, body=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fromyaml}\n",
                     headers={"Content-Type": "application/yaml"})
    assert r.status == 201
    # unauthenticated requests are refused; a bad token too
    plain = urllib3.HTTPSConnectionPool("127.0.0.1", control_plane.api.port,
                                        ssl_context=ssl.create_default_context(cafile=str(d / "ca.crt")),
                                        retries=False)
    assert plain.urlopen("GET", "/api/v1/namespaces").status == 401
    assert plain.urlopen("GET", "/readyz").status == 200
    r = plain.urlopen("GET", "/api/v1/namespaces", headers={"Authorization": f"Bearer {control_plane.token}"})
    assert r.status == 200
    assert plain.urlopen("GET", "/api/v1/namespaces", headers={"Authorization": "Bearer nope"}).status == 401
    http.close()
    plain.close()


def test_events_are_one_resource_in_both_groups(k8s, namespace):
    ev1 = client.EventsV1Api(k8s)
    core = client.CoreV1Api(k8s)
    ev1.create_namespaced_event(namespace, {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "both"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Pulled", "action": "Pulling", "type": "Normal",
        "reportingController": "kubelab/kubelet", "reportingInstance": "n1", "note": "pulled the image",
        "regarding": {"kind": "Pod", "name": "p", "namespace": namespace}})
    c = core.read_namespaced_event("both", namespace)
    assert c.message == "pulled the image" and c.involved_object.name == "p"
    assert c.reporting_component == "kubelab/kubelet"
    core.patch_namespaced_event("both", namespace, {"message": "pulled it again"})
    e = ev1.read_namespaced_event("both", namespace)
    assert e.note == "pulled it again" and e.regarding.kind == "Pod" and e.api_version == "events.k8s.io/v1"
    listed = ev1.list_namespaced_event(namespace, field_selector="involvedObject.name=p")
    assert [i.metadata.name for i in listed.items] == ["both"]


def test_metrics_are_served_with_bounded_labels(control_plane, k8s, namespace):
    import ssl

    import urllib3
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "metric-probe-name"}})
    core.read_namespaced_config_map("metric-probe-name", namespace)
    d = control_plane.api.pki.dir
    ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
    ctx.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
    http = urllib3.HTTPSConnectionPool("127.0.0.1", control_plane.api.port, ssl_context=ctx, retries=False)
    text = http.urlopen("GET", "/metrics").data.decode()
    http.close()
    assert 'apiserver_request_total{code="201",resource="configmaps",verb="POST"}' in text
    assert 'apiserver_request_duration_seconds_bucket{le="0.005",resource="configmaps",verb="GET"}' in text
    assert "metric-probe-name" not in text and namespace not in text


def test_system_namespaces_and_kubernetes_service_are_kept(k8s):
    import time
    core = client.CoreV1Api(k8s)
    for ns in ("default", "kube-system", "kube-public"):
        with pytest.raises(ApiException) as e:
            core.delete_namespace(ns)
        assert e.value.status == 403
        assert json.loads(e.value.body)["message"] == \
            f'namespaces "{ns}" is forbidden: this namespace may not be deleted'
    core.delete_namespaced_service("kubernetes", "default")
    deadline = time.time() + 15
    svc = None
    while time.time() < deadline and svc is None:
        try:
            svc = core.read_namespaced_service("kubernetes", "default")
        except ApiException as e:
            assert e.status == 404
            time.sleep(0.5)
    assert svc is not None and svc.spec.cluster_ip == "10.96.0.1"
