"""kubelab-scheduler's InterPodAffinity, PodTopologySpread and DefaultPreemption against the real
apiserver, with hollow nodes running the bound pods: required anti-affinity spreads one pod per
node and leaves the extra one Pending with upstream's FailedScheduling message; required affinity
co-locates; maxSkew 1 over zones balances; taints and CPU requests keep pods off nodes until the
taint goes; a high-priority pod preempts a low-priority one where no
PodDisruptionBudget is violated, is nominated, then bound; and the scheduler's metrics move."""
from __future__ import annotations

import asyncio
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import Client
from kubelab.lab.controlplane import free_port, spawn
from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


class Lab:
    """Four hollow nodes of 1 CPU (two in zone-a, two in zone-b) and a scheduler with a private
    profile; each test has its own namespace."""

    def __init__(self, cp, tmp: Path) -> None:
        self.cp, self.tmp = cp, tmp
        self.uid = uuid.uuid4().hex[:5]
        self.profile = f"plug-sched-{self.uid}"
        self.prefix = f"p{self.uid}"
        self.nodes = [f"{self.prefix}-{i:05d}" for i in range(4)]
        self.port = free_port()
        (tmp / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                        f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {self.profile}\n")
        kc = str(cp.kubeconfig)
        self.procs = [
            spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "4", "--prefix", self.prefix,
                   "--cpu", "1", "--pod-ready-delay", "300ms", "--node-labels", f"plug-test={self.uid}"],
                  tmp / "hollow.log"),
            spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(tmp / "sched.yaml"),
                   "--leader-elect=false", "--secure-port", str(self.port), "--bind-address", "127.0.0.1"],
                  tmp / "sched.log")]

        def registered():
            items = api(cp, lambda c: c.list("v1", "nodes", label_selector=f"plug-test={self.uid}"))["items"]
            return len([n for n in items if (n.get("status") or {}).get("allocatable")]) == 4
        wait(registered, 30, "4 hollow nodes")
        for i, n in enumerate(self.nodes):
            api(cp, lambda c, n=n, i=i: c.patch("v1", "nodes", None, n, {
                "metadata": {"labels": {ZONE: "zone-a" if i < 2 else "zone-b"}}}))
        wait(lambda: "caches synced" in (tmp / "sched.log").read_text(), 30, "the scheduler's caches")

    def namespace(self, name: str) -> str:
        ns = f"{name}-{self.uid}"
        api(self.cp, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": ns}}))
        return ns

    def pod(self, ns: str, name: str, cpu: str = "10m", labels=None, **spec) -> dict:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
                "spec": {"schedulerName": self.profile,
                         "nodeSelector": {"plug-test": self.uid, **spec.pop("nodeSelector", {})},
                         "containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu}}}],
                         **spec}}
        return api(self.cp, lambda c: c.create("v1", "pods", body, ns))

    def pods(self, ns: str) -> dict[str, dict]:
        return {p["metadata"]["name"]: p for p in api(self.cp, lambda c: c.list("v1", "pods", ns))["items"]}

    def bound(self, ns: str, names, timeout: float = 20) -> dict[str, str]:
        def check():
            ps = self.pods(ns)
            got = {n: ps[n]["spec"].get("nodeName") for n in names if n in ps}
            return got if len(got) == len(names) and all(got.values()) else None
        try:
            return wait(check, timeout, f"{names} bound")
        except AssertionError:
            raise AssertionError((self.tmp / "sched.log").read_text()[-3000:]) from None

    def events(self, ns: str, name: str, reason: str) -> list[dict]:
        return [e for e in api(self.cp, lambda c: c.list("v1", "events", ns,
                                                         field_selector=f"involvedObject.name={name}"))["items"]
                if e["reason"] == reason]

    def metrics(self) -> str:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/metrics", context=ctx, timeout=10) as r:
            return r.read().decode()

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in ("sched.log", "hollow.log"):
            text = (self.tmp / log).read_text()
            assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def lab(control_plane, tmp_path_factory):
    lb = Lab(control_plane, tmp_path_factory.mktemp("schedplug"))
    try:
        yield lb
    finally:
        lb.close()


@pytest.fixture
def ns(lab, request):
    name = lab.namespace(request.node.name.split("_")[1][:12].lower())
    yield name
    api(lab.cp, lambda c: c.delete_collection("v1", "pods", name))
    wait(lambda: not lab.pods(name), 20, f"pods of {name} gone")
    api(lab.cp, lambda c: c.delete("v1", "namespaces", None, name))


def sample(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"([^{ ]+)(?:\{(.*)\})? (\S+)$", line)
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def anti(app: str, key: str = HOST) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}


def test_anti_affinity_spreads_one_per_node_and_the_extra_pod_waits(lab, ns):
    before = lab.metrics()
    for i in range(4):
        lab.pod(ns, f"web-{i}", labels={"app": "web"}, affinity=anti("web"))
    placed = lab.bound(ns, [f"web-{i}" for i in range(4)])
    assert sorted(placed.values()) == lab.nodes
    lab.pod(ns, "web-4", labels={"app": "web"}, affinity=anti("web"))
    ev = wait(lambda: lab.events(ns, "web-4", "FailedScheduling"), 20, "FailedScheduling for web-4")
    total = len(api(lab.cp, lambda c: c.list("v1", "nodes"))["items"])
    others = total - 4
    parts = ["4 node(s) didn't match pod anti-affinity rules"]
    post = ["4 No preemption victims found for incoming pod"]
    if others:
        parts.append(f"{others} node(s) didn't match Pod's node affinity/selector")
        post.append(f"{others} Preemption is not helpful for scheduling")
    want = (f"0/{total} nodes are available: {', '.join(sorted(parts))}. preemption: 0/{total} nodes are "
            f"available: {', '.join(sorted(post))}..")
    assert ev[0]["message"] == want
    p = lab.pods(ns)["web-4"]
    cond = [c for c in p["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert cond and cond[0]["reason"] == "Unschedulable" and cond[0]["message"] == want
    assert not p["spec"].get("nodeName")
    # one of them goes: the waiting pod takes its node
    gone = "web-2"
    api(lab.cp, lambda c: c.delete("v1", "pods", ns, gone))
    assert lab.bound(ns, ["web-4"])["web-4"] == placed[gone]
    after = lab.metrics()
    for result in ("scheduled", "unschedulable"):
        assert sample(after, "scheduler_schedule_attempts_total", result=result, profile=lab.profile) > \
            sample(before, "scheduler_schedule_attempts_total", result=result, profile=lab.profile)
    assert sample(after, "scheduler_scheduling_attempt_duration_seconds_count", result="scheduled",
                  profile=lab.profile) >= 5
    assert 'scheduler_pending_pods{queue="unschedulable"}' in after


def test_affinity_co_locates_and_topology_spread_balances_zones(lab, ns):
    lab.pod(ns, "db", labels={"app": "db"})
    db_node = lab.bound(ns, ["db"])["db"]
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST}]}}
    for i in range(3):
        lab.pod(ns, f"cache-{i}", labels={"app": "cache"}, affinity=aff)
    assert set(lab.bound(ns, [f"cache-{i}" for i in range(3)]).values()) == {db_node}

    spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "spread"}}}]
    # zone-a already leans (the db and cache pods do not match the selector, so both zones start at 0)
    for i in range(6):
        lab.pod(ns, f"spread-{i}", labels={"app": "spread"}, topologySpreadConstraints=spread)
    placed = lab.bound(ns, [f"spread-{i}" for i in range(6)])
    zone = {n: ("zone-a" if lab.nodes.index(n) < 2 else "zone-b") for n in lab.nodes}
    per_zone = [zone[n] for n in placed.values()]
    assert per_zone.count("zone-a") == 3 and per_zone.count("zone-b") == 3


def test_taints_and_resources_on_hollow_nodes(lab, ns):
    tainted = lab.nodes[3]
    taint = {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
    api(lab.cp, lambda c: c.patch("v1", "nodes", None, tainted, {"spec": {"taints": [taint]}}))
    try:
        lab.pod(ns, "big", cpu="1500m")
        lab.pod(ns, "intolerant", nodeSelector={HOST: tainted})
        lab.pod(ns, "tolerant", nodeSelector={HOST: tainted},
                tolerations=[{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}])
        assert lab.bound(ns, ["tolerant"])["tolerant"] == tainted
        big = wait(lambda: lab.events(ns, "big", "FailedScheduling"), 20, "FailedScheduling for big")[0]["message"]
        assert "3 Insufficient cpu" in big and "1 node(s) had untolerated taint {dedicated: batch}" in big
        msg = wait(lambda: lab.events(ns, "intolerant", "FailedScheduling"), 20, "FailedScheduling")[0]["message"]
        assert "1 node(s) had untolerated taint {dedicated: batch}" in msg
        assert not lab.pods(ns)["intolerant"]["spec"].get("nodeName")
    finally:
        api(lab.cp, lambda c: c.patch("v1", "nodes", None, tainted, {"spec": {"taints": []}}))
    # the taint gone, the node update brings the waiting pod in
    assert lab.bound(ns, ["intolerant"])["intolerant"] == tainted


def test_preemption_respects_pdbs_nominates_then_binds(lab, ns):
    for name, value, policy in (("low", 100, "PreemptLowerPriority"), ("high", 1000, "PreemptLowerPriority"),
                                ("polite", 1000, "Never")):
        pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
              "metadata": {"name": f"{name}-{lab.uid}"}, "value": value, "preemptionPolicy": policy}
        api(lab.cp, lambda c, pc=pc: c.create("scheduling.k8s.io/v1", "priorityclasses", pc))
    a0, a1 = lab.nodes[0], lab.nodes[1]
    # the budget first (its status as the disruption controller, not run here, would write it), so
    # the scheduler's PDB informer has it before the pods it guards are even bound
    pdb = api(lab.cp, lambda c: c.create("policy/v1", "poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard", "namespace": ns},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}}, ns))
    api(lab.cp, lambda c: c.patch("policy/v1", "poddisruptionbudgets", ns, "guard", {"status": {
        "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2,
        "observedGeneration": pdb["metadata"].get("generation", 1)}}, subresource="status"))
    # the Priority admission plugin fills spec.priority from the class
    low = {"priorityClassName": f"low-{lab.uid}"}
    for node, app in ((a0, "guarded"), (a1, "free")):
        for i in range(2):
            lab.pod(ns, f"{app}-{i}", cpu="500m", labels={"app": app},
                    nodeSelector={HOST: node}, **low)
    lab.bound(ns, ["guarded-0", "guarded-1", "free-0", "free-1"])
    before = lab.metrics()

    seen: list[tuple[str, dict]] = []

    async def preempt(c):
        rv = (await c.list("v1", "pods", ns))["metadata"]["resourceVersion"]
        async with c.watch("v1", "pods", ns, resource_version=rv, timeout_seconds=60) as w:
            await c.create("v1", "pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vip", "namespace": ns},
                "spec": {"schedulerName": lab.profile, "priorityClassName": f"high-{lab.uid}", "priority": 1000,
                         "nodeSelector": {"plug-test": lab.uid, ZONE: "zone-a"},
                         "containers": [{"name": "c", "image": "pause",
                                         "resources": {"requests": {"cpu": "500m"}}}]}}, ns)
            async for etype, obj in w:
                if etype not in ("ADDED", "MODIFIED", "DELETED"):
                    continue            # BOOKMARKs carry only a resourceVersion
                seen.append((etype, obj))
                if obj["metadata"]["name"] == "vip" and obj["spec"].get("nodeName"):
                    return
    asyncio.run(asyncio.wait_for(_with_client(lab.cp, preempt), 60))
    vip_states = [o for _, o in seen if o["metadata"]["name"] == "vip"]
    nominated = [o["status"].get("nominatedNodeName") for o in vip_states if o["status"].get("nominatedNodeName")]
    assert nominated and nominated[0] == a1, [o.get("status") for o in vip_states]
    assert vip_states[-1]["spec"]["nodeName"] == a1
    victims = {o["metadata"]["name"] for e, o in seen if e == "DELETED"}
    assert len(victims) == 1 and victims <= {"free-0", "free-1"}
    (victim,) = victims
    marks = [c for _, o in seen if o["metadata"]["name"] == victim for c in o["status"].get("conditions") or []
             if c["type"] == "DisruptionTarget"]
    assert marks and marks[0]["status"] == "True" and marks[0]["reason"] == "PreemptionByScheduler"
    assert marks[0]["message"] == f"{lab.profile}: preempting to accommodate a higher priority pod"
    assert {"guarded-0", "guarded-1"} <= set(lab.pods(ns))
    vip_uid = vip_states[-1]["metadata"]["uid"]
    ev = wait(lambda: lab.events(ns, victim, "Preempted"), 10, "the Preempted event")
    assert ev[0]["message"] == f"Preempted by pod {vip_uid} on node {a1}"

    after = lab.metrics()
    assert sample(after, "scheduler_preemption_attempts_total") > sample(before, "scheduler_preemption_attempts_total")
    assert sample(after, "scheduler_preemption_victims_count") > sample(before, "scheduler_preemption_victims_count")
    assert sample(after, "scheduler_preemption_victims_sum") - sample(before, "scheduler_preemption_victims_sum") == 1

    # preemptionPolicy Never: it waits instead
    lab.pod(ns, "polite", cpu="500m", nodeSelector={ZONE: "zone-a"}, priorityClassName=f"polite-{lab.uid}")
    polite = api(lab.cp, lambda c: c.get("v1", "pods", ns, "polite"))["spec"]
    assert (polite["priority"], polite["preemptionPolicy"]) == (1000, "Never")
    ev = wait(lambda: lab.events(ns, "polite", "FailedScheduling"), 20, "FailedScheduling for polite")
    assert ev[0]["message"].endswith(" preemption: not eligible due to preemptionPolicy=Never..")
    assert len(lab.pods(ns)) == 5


async def _with_client(cp, fn):
    async with Client.from_kubeconfig(str(cp.kubeconfig), component="schedplug-test") as c:
        return await fn(c)
