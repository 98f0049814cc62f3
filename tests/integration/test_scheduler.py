"""kubelab-scheduler as a process against the real apiserver: pods bound where the plugins say,
upstream's FailedScheduling message and PodScheduled condition for a pod that fits nowhere, a new
node bringing it in, host port conflicts, a second profile from a KubeSchedulerConfiguration, and
two schedulers under leader election (SIGKILL the leader: the other takes over)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kubelab.client.rest import is_not_found
from kubelab.lab.controlplane import free_port, spawn
from polling import api

pytestmark = pytest.mark.integration

SCHED = str(Path(sys.executable).parent / "kubelab-scheduler")


class Env:
    def __init__(self, cp, tmp: Path) -> None:
        self.cp, self.tmp = cp, tmp
        self.uid = uuid.uuid4().hex[:5]
        self.ns = f"sched-{self.uid}"
        self.profile = f"test-scheduler-{self.uid}"
        self.nodes: list[str] = []
        self.procs: list[subprocess.Popen] = []
        (tmp / "config.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "profiles": [{"schedulerName": self.profile},
                         {"schedulerName": f"{self.profile}-packer",
                          "pluginConfig": [{"name": "NodeResourcesFit",
                                            "args": {"scoringStrategy": {"type": "MostAllocated"}}}]}]}))

    def scheduler(self, *extra: str) -> subprocess.Popen:
        log = self.tmp / f"scheduler-{len(self.procs)}.log"
        p = spawn([SCHED, "--kubeconfig", str(self.cp.kubeconfig), "--config", str(self.tmp / "config.yaml"),
                   "--secure-port", str(free_port()), "--bind-address", "127.0.0.1",
                   "--leader-elect-resource-name", f"sched-{self.uid}", "--leader-elect-lease-duration", "4s",
                   "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "0.5s", *extra], log)
        p.log = log
        self.procs.append(p)
        return p

    def node(self, name: str, cpu: str, *, taints=None, labels=None) -> None:
        full = f"{name}-{self.uid}"

        async def go(c):
            await c.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": full, "labels": {"test": self.uid, **(labels or {})}},
                                           "spec": {"taints": taints or []}})
            await c.patch("v1", "nodes", None, full, {"status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}, subresource="status")
        api(self.cp, go)
        self.nodes.append(full)

    def pod(self, name: str, cpu: str = "100m", scheduler: str | None = None, **spec) -> None:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": self.ns},
                "spec": {"schedulerName": scheduler or self.profile,
                         "nodeSelector": {"test": self.uid, **spec.pop("nodeSelector", {})},
                         "containers": [{"name": "c", "image": "busybox",
                                         "resources": {"requests": {"cpu": cpu}},
                                         **spec.pop("container", {})}], **spec}}
        api(self.cp, lambda c: c.create("v1", "pods", body, self.ns))

    def wait_bound(self, name: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            p = api(self.cp, lambda c: c.get("v1", "pods", self.ns, name))
            if p["spec"].get("nodeName"):
                return p["spec"]["nodeName"].rsplit("-", 1)[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not bound: {p.get('status')}; "
                                     + "".join(pr.log.read_text()[-1500:] for pr in self.procs))
            time.sleep(0.1)

    def events(self, name: str) -> list[dict]:
        return api(self.cp, lambda c: c.list("v1", "events", self.ns,
                                             field_selector=f"involvedObject.name={name}"))["items"]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

        async def go(c):
            for n in self.nodes:
                try:
                    await c.delete("v1", "nodes", None, n)
                except Exception as e:
                    if not is_not_found(e):
                        raise
            try:
                await c.delete("v1", "namespaces", None, self.ns)
            except Exception:
                pass
        api(self.cp, go)
        for p in self.procs:
            assert "Traceback" not in p.log.read_text(), p.log.read_text()[-3000:]


@pytest.fixture
def env(control_plane, tmp_path):
    e = Env(control_plane, tmp_path)
    api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": e.ns}}))
    try:
        yield e
    finally:
        e.close()


def test_pods_land_where_the_plugins_say(env):
    env.node("big", "4")
    env.node("small", "1")
    env.node("gpu", "8", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
             labels={"kind": "gpu"})
    env.scheduler()
    env.pod("needs-2", cpu="2")
    assert env.wait_bound("needs-2") == "big"
    env.pod("tolerant", cpu="2", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                               "effect": "NoSchedule"}], nodeSelector={"kind": "gpu"})
    assert env.wait_bound("tolerant") == "gpu"
    ev = [e for e in env.events("needs-2") if e["reason"] == "Scheduled"]
    assert ev and ev[0]["message"] == f"Successfully assigned {env.ns}/needs-2 to big-{env.uid}"
    assert ev[0]["source"]["component"] == "default-scheduler"

    # fits nowhere: upstream's message, event and condition
    env.pod("needs-8", cpu="8")
    deadline = time.monotonic() + 15
    while not [e for e in env.events("needs-8") if e["reason"] == "FailedScheduling"]:
        assert time.monotonic() < deadline, "no FailedScheduling event"
        time.sleep(0.1)
    total = len(api(env.cp, lambda c: c.list("v1", "nodes"))["items"])
    others = total - 3
    parts = ["1 node(s) had untolerated taint {dedicated: gpu}", "2 Insufficient cpu"]
    post = ["2 No preemption victims found for incoming pod", f"{total - 2} Preemption is not helpful for scheduling"]
    if others:
        parts.append(f"{others} node(s) didn't match Pod's node affinity/selector")
    # DefaultPreemption's PostFilter adds why preemption cannot help either (upstream's FitError text)
    want = (f"0/{total} nodes are available: {', '.join(sorted(parts))}. "
            f"preemption: 0/{total} nodes are available: {', '.join(sorted(post))}..")
    ev = [e for e in env.events("needs-8") if e["reason"] == "FailedScheduling"]
    assert ev[0]["message"] == want and ev[0]["type"] == "Warning"
    p = api(env.cp, lambda c: c.get("v1", "pods", env.ns, "needs-8"))
    cond = [c for c in p["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert cond and cond[0]["status"] == "False" and cond[0]["reason"] == "Unschedulable"
    assert cond[0]["message"] == want
    # a node that fits comes: the pod is moved out of the unschedulable pods and bound
    t0 = time.monotonic()
    env.node("huge", "16")
    assert env.wait_bound("needs-8") == "huge"
    assert time.monotonic() - t0 < 5


def test_host_ports_and_the_assumed_pods_count(env):
    env.node("only", "2")
    env.scheduler()
    port = {"container": {"ports": [{"containerPort": 80, "hostPort": 8080}]}}
    env.pod("web-1", **dict(port))
    assert env.wait_bound("web-1") == "only"
    env.pod("web-2", **dict(port))
    deadline = time.monotonic() + 15
    while not [e for e in env.events("web-2") if e["reason"] == "FailedScheduling"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    msg = [e for e in env.events("web-2") if e["reason"] == "FailedScheduling"][0]["message"]
    assert "1 node(s) didn't have free ports for the requested pod ports" in msg
    # ten pods of 150m on a 2-CPU node, created together: the assumed pods are counted, so exactly
    # 13 fit (2000m / 150m) with web-1's 100m ... the rest wait
    for i in range(14):
        env.pod(f"fill-{i}", cpu="150m")
    time.sleep(4)
    pods = api(env.cp, lambda c: c.list("v1", "pods", env.ns))["items"]
    bound = [p for p in pods if p["metadata"]["name"].startswith("fill-") and p["spec"].get("nodeName")]
    assert len(bound) == (2000 - 100) // 150


def test_second_profile_packs_pods(env):
    env.node("a", "4")
    env.node("b", "4")
    env.scheduler()
    # MostAllocated: once a node has a pod, the next one goes to the same node
    env.pod("first", cpu="1", scheduler=f"{env.profile}-packer")
    first = env.wait_bound("first")
    for i in range(3):
        env.pod(f"more-{i}", cpu="500m", scheduler=f"{env.profile}-packer")
        assert env.wait_bound(f"more-{i}") == first


def test_leader_failover(env):
    env.node("n", "8")
    a = env.scheduler()
    time.sleep(1.5)
    b = env.scheduler()
    lease = f"sched-{env.uid}"

    def holder():
        return api(env.cp, lambda c: c.get("coordination.k8s.io/v1", "leases", "kube-system", lease))["spec"].get(
            "holderIdentity")
    deadline = time.monotonic() + 10
    while not holder():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    env.pod("before", cpu="100m")
    assert env.wait_bound("before") == "n"
    first = holder()
    leader = a if "scheduling profiles" in a.log.read_text() else b
    leader.kill()
    leader.wait()
    t0 = time.monotonic()
    env.pod("after", cpu="100m")
    assert env.wait_bound("after", timeout=20) == "n"
    took = time.monotonic() - t0
    assert holder() != first
    assert took < 4 + 3, f"takeover took {took:.1f}s (lease 4s)"
