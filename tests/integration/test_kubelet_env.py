"""container_env against the real apiserver: configMap/secret references and envFrom (optional,
prefixes, invalid keys), field and resource references (limits defaulting to the Node's
allocatable), service link variables from real Services, $(VAR) expansion, and upstream's errors."""
from __future__ import annotations

import base64
import uuid

import pytest

from kubelab.client.rest import Client
from kubelab.kubelet.envvars import EnvError, container_env

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(control_plane):
    async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="kenv-test") as c:
        yield c


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def services(c: Client, ns: str) -> list[dict]:
    return (await c.list("v1", "services", ns))["items"] + (await c.list("v1", "services", "default"))["items"]


async def test_environment_resolution(api, namespace):
    c = api
    await c.create("v1", "configmaps", {"metadata": {"name": "cfg"}, "data": {"LEVEL": "debug", "1bad": "x",
                                                                              "GOOD": "g", "URL": "http"}}, namespace)
    await c.create("v1", "secrets", {"metadata": {"name": "sec"}, "data": {"PASSWORD": b64("pw"), "user": b64("y")}},
                   namespace)
    await c.create("v1", "services", {"metadata": {"name": "backend-api"}, "spec": {
        "ports": [{"port": 8080, "name": "http"}], "selector": {"app": "b"}}}, namespace)
    node = f"kenv-{uuid.uuid4().hex[:6]}"
    await c.create("v1", "nodes", {"metadata": {"name": node}})
    try:
        n = await c.get("v1", "nodes", None, node)
        n["status"] = {"allocatable": {"cpu": "4", "memory": "8Gi"}, "capacity": {"cpu": "4", "memory": "8Gi"}}
        await c.update_status("v1", "nodes", n)
        ctr = {"name": "app", "image": "busybox",
               "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}},
               "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"},
                           {"secretRef": {"name": "sec"}, "prefix": "9"},
                           {"configMapRef": {"name": "absent", "optional": True}}],
               "env": [
                   {"name": "LEVEL", "value": "info"},                   # env overrides envFrom
                   {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "GOOD"}}},
                   {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
                   {"name": "OPT_KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
                   {"name": "OPT_CM", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
                   {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                   {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                   {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                   {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                   {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                   {"name": "MEM_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                   {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                   {"name": "LINK", "value": "$(URL)://$(BACKEND_API_SERVICE_HOST):$(BACKEND_API_SERVICE_PORT_HTTP)"},
                   {"name": "ESCAPED", "value": "$$(POD_NAME) $(POD_NAME) $(LATER)"},
                   {"name": "LATER", "value": "l"},
               ]}
        pod = {"metadata": {"name": "web-0", "namespace": namespace, "uid": "u", "labels": {"app": "web"}},
               "spec": {"nodeName": node, "containers": [ctr]}}
        env = await container_env(c, pod, ctr, services=await services(c, namespace), node_name=node,
                                  host_ip="192.168.56.11", pod_ip="10.244.1.7")
        d = dict(env)
        assert len(d) == len(env), "no duplicate names"
        assert d["LEVEL"] == "info" and d["GOOD"] == "g" and d["S_PASSWORD"] == "pw"
        assert d["S_user"] == "y" and "1bad" not in d and not any(k.startswith("9") for k in d)
        assert d["FROM_CM"] == "g" and d["FROM_SECRET"] == "pw"
        assert "OPT_KEY" not in d and "OPT_CM" not in d
        assert (d["POD_NAME"], d["POD_IPS"], d["HOST_IP"], d["NODE"], d["APP"]) == (
            "web-0", "10.244.1.7", "192.168.56.11", node, "web")
        assert (d["CPU_REQ"], d["MEM_LIM"], d["CPU_LIM"]) == ("250", "128", "4")   # unset limit: allocatable
        svc = await c.get("v1", "services", namespace, "backend-api")
        ip = svc["spec"]["clusterIP"]
        assert d["LINK"] == f"http://{ip}:8080"
        assert d["ESCAPED"] == "$(POD_NAME) web-0 $(LATER)"
        assert d["BACKEND_API_PORT_8080_TCP_ADDR"] == ip
        assert d["KUBERNETES_SERVICE_HOST"] and d["KUBERNETES_SERVICE_PORT"] == "443"
        names = [k for k, _ in env]
        assert names.index("LEVEL") < names.index("LATER") < names.index("BACKEND_API_SERVICE_HOST")
        assert env.warnings == [
            ("InvalidEnvironmentVariableNames", f"Keys [1bad] from the EnvFrom configMap {namespace}/cfg were skipped "
                                                "since they are considered invalid environment variable names."),
            ("InvalidEnvironmentVariableNames", f"Keys [9PASSWORD, 9user] from the EnvFrom secret {namespace}/sec were "
                                                "skipped since they are considered invalid environment variable names.")]

        pod["spec"]["enableServiceLinks"] = False
        d = dict(await container_env(c, pod, ctr, services=await services(c, namespace), node_name=node,
                                     host_ip="192.168.56.11", pod_ip="10.244.1.7"))
        assert "BACKEND_API_SERVICE_HOST" not in d and "KUBERNETES_SERVICE_HOST" in d
    finally:
        await c.delete("v1", "nodes", None, node)


@pytest.mark.parametrize("env,env_from,message", [
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}], [], 'configmap "missing" not found'),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}], [], 'secret "missing" not found'),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}], [],
     "couldn't find key k in ConfigMap {ns}/cfg"),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}], [],
     "couldn't find key k in Secret {ns}/sec"),
    ([], [{"configMapRef": {"name": "missing"}}], 'configmap "missing" not found'),
    ([], [{"secretRef": {"name": "missing"}}], 'secret "missing" not found'),
    ([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}], [], "unsupported fieldPath: spec.bogus"),
    ([{"name": "X", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}], [],
     "unsupported pod version: v2"),
])
async def test_environment_errors(api, namespace, env, env_from, message):
    await api.create("v1", "configmaps", {"metadata": {"name": "cfg"}, "data": {"a": "1"}}, namespace)
    await api.create("v1", "secrets", {"metadata": {"name": "sec"}, "data": {"a": b64("1")}}, namespace)
    ctr = {"name": "c", "image": "busybox", "env": env, "envFrom": env_from}
    pod = {"metadata": {"name": "p", "namespace": namespace, "uid": "u"}, "spec": {"containers": [ctr]}}
    with pytest.raises(EnvError) as e:
        await container_env(api, pod, ctr, services=[], node_name="n", host_ip="1.2.3.4", pod_ip="10.0.0.1")
    assert str(e.value) == message.format(ns=namespace)
