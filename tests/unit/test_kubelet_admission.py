"""The kubelet's predicate admission (upstream predicate.go and its tests' wording)."""
from kubelab.kubelet.admission import admit


def node(**over):
    n = {"metadata": {"name": "node1", "labels": {"disk": "ssd", "kubernetes.io/hostname": "node1"}},
         "spec": {}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "3"}}}
    n.update(over)
    return n


def pod(uid, cpu=None, mem=None, **spec):
    res = {"requests": {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}}
    return {"metadata": {"name": uid, "uid": uid, "namespace": "default"},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "resources": res,
                                                            "ports": spec.pop("ports", [])}], **spec}}


def test_resources_in_upstream_words():
    running = [pod("a", cpu="1500m"), pod("b", mem="512Mi")]
    assert admit(pod("c", cpu="500m"), node(), running) is None
    assert admit(pod("c", cpu="600m"), node(), running) == (
        "OutOfcpu", "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000")
    assert admit(pod("c", mem="600Mi"), node(), running) == (
        "OutOfmemory", f"Node didn't have enough resource: memory, requested: {600 << 20}, used: {512 << 20}, "
                       f"capacity: {1 << 30}")
    assert admit(pod("d"), node(), running + [pod("c")]) == (
        "OutOfpods", "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3")
    assert admit(pod("a", cpu="1500m"), node(), running) is None        # itself is not counted twice


def test_selector_ports_and_no_execute_taints():
    assert admit(pod("x", nodeSelector={"disk": "hdd"}), node(), []) == (
        "NodeAffinity", "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector")
    assert admit(pod("x", nodeSelector={"disk": "ssd"}), node(), []) is None
    web = pod("w", ports=[{"containerPort": 80, "hostPort": 8080}])
    assert admit(pod("x", ports=[{"containerPort": 80, "hostPort": 8080}]), node(), [web]) == (
        "NodePorts", "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports")
    tainted = node(spec={"taints": [{"key": "k", "value": "v", "effect": "NoExecute"},
                                    {"key": "soft", "effect": "NoSchedule"}]})
    assert admit(pod("x"), tainted, []) == (
        "TaintToleration", "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate")
    assert admit(pod("x", tolerations=[{"key": "k", "operator": "Exists"}]), tainted, []) is None
    assert admit(pod("x"), tainted, [], static=True) is None
