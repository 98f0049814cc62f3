"""ResourceQuota accounting (kubelab.api.quota), from upstream's evaluator cases."""
from __future__ import annotations

from kubelab.api import quota


def pod(name="p", requests=None, limits=None, phase="Running", deadline=None, pc=None, init=None):
    spec = {"containers": [{"name": "c", "resources": {k: v for k, v in (("requests", requests), ("limits", limits))
                                                        if v}}]}
    if init:
        spec["initContainers"] = init
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if pc:
        spec["priorityClassName"] = pc
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}


def q(hard, scopes=None, selector=None, used=None):
    spec = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    if selector:
        spec["scopeSelector"] = {"matchExpressions": selector}
    return {"metadata": {"name": "q"}, "spec": spec, "status": {"hard": hard, "used": used or {}}}


def test_pod_usage_with_init_containers():
    p = pod(requests={"cpu": "250m", "memory": "64Mi"}, limits={"cpu": "1", "memory": "128Mi"},
            init=[{"name": "i", "resources": {"requests": {"cpu": "500m"}}}])
    u = quota.usage("pods", "", p)
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == 500 and u["cpu"] == 500           # the init container's larger request
    assert u["requests.memory"] == 64 * 2**20 and u["limits.cpu"] == 1000 and u["limits.memory"] == 128 * 2**20
    assert quota.usage("pods", "", pod(phase="Succeeded")) == {}


def test_other_resources():
    assert quota.usage("services", "", {"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}) == \
        {"services": 1, "count/services": 1, "services.nodeports": 2}
    lb = quota.usage("services", "", {"spec": {"type": "LoadBalancer", "ports": [{"port": 1}]}})
    assert lb["services.loadbalancers"] == 1
    pvc = quota.usage("persistentvolumeclaims", "", {"spec": {"storageClassName": "fast",
                                                              "resources": {"requests": {"storage": "1Gi"}}}})
    assert pvc["requests.storage"] == 2**30 and pvc["fast.storageclass.storage.k8s.io/requests.storage"] == 2**30
    assert quota.usage("deployments", "apps", {}) == {"count/deployments.apps": 1}


def test_scopes():
    be, burst = pod(), pod(requests={"cpu": "1"})
    assert quota.quota_matches(q({"pods": "1"}, ["BestEffort"]), "pods", "", be)
    assert not quota.quota_matches(q({"pods": "1"}, ["BestEffort"]), "pods", "", burst)
    assert quota.quota_matches(q({"pods": "1"}, ["NotBestEffort", "NotTerminating"]), "pods", "", burst)
    assert quota.quota_matches(q({"pods": "1"}, ["Terminating"]), "pods", "", pod(deadline=30))
    assert not quota.quota_matches(q({"services": "1"}, ["BestEffort"]), "services", "", {})
    sel = [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]
    assert quota.quota_matches(q({"pods": "1"}, selector=sel), "pods", "", pod(pc="high"))
    assert not quota.quota_matches(q({"pods": "1"}, selector=sel), "pods", "", pod(pc="low"))


def test_totals_render_and_exceeded_message():
    quo = q({"pods": "3", "requests.cpu": "1", "limits.memory": "1Gi"})
    pods = [("pods", "", pod(str(i), requests={"cpu": "300m"}, limits={"memory": "256Mi"})) for i in range(2)]
    used = quota.rendered(quota.totals(quo, pods))
    assert used == {"limits.memory": "512Mi", "pods": "2", "requests.cpu": "600m"}
    quo["status"]["used"] = used
    assert quota.exceeded(quo, {"pods": 1, "requests.cpu": 300, "limits.memory": 256 * 2**20}) is None
    assert quota.exceeded(quo, {"pods": 1, "requests.cpu": 500}) == \
        "exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"


def test_must_specify():
    quo = q({"limits.cpu": "2", "requests.memory": "1Gi", "pods": "10"})
    assert quota.missing_limits(quo, pod(requests={"memory": "1Mi"})) == "limits.cpu for: c"
    assert quota.missing_limits(quo, pod(requests={"memory": "1Mi"}, limits={"cpu": "1"})) is None
