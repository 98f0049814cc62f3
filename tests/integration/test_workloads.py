"""The DaemonSet and StatefulSet controllers in kubelab-controller-manager against the real
apiserver, with the real scheduler and hollow nodes running their pods: a DaemonSet covers exactly
the untainted nodes (a tolerating one all of them), rolls out an image change and back with
`kubectl rollout status/history/undo`; a StatefulSet starts its pods 0,1,2 each after the previous
is Ready, keeps PVCs named <template>-<set>-<ordinal>, updates only the pods at or above the
partition, and scales down 2,1,0 (orders seen by a watch)."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.lab.controlplane import free_port, spawn
from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class Cluster:
    """controller-manager (daemonset, statefulset), a scheduler profile and hollow nodes, private
    to one test."""

    def __init__(self, cp, tmp: Path, nodes: int) -> None:
        self.cp, self.tmp = cp, tmp
        self.uid = uuid.uuid4().hex[:5]
        self.ns, self.profile = f"wl-{self.uid}", f"wl-sched-{self.uid}"
        self.prefix = f"w{self.uid}"
        self.node_names = [f"{self.prefix}-{i:05d}" for i in range(nodes)]
        (tmp / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                        f"kind: KubeSchedulerConfiguration\nprofiles:\n"
                                        f"- schedulerName: {self.profile}\n")
        kc = str(cp.kubeconfig)
        self.procs = [
            spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers",
                   "daemonset,statefulset", "--leader-elect-resource-name", f"kcm-{self.uid}", "--secure-port", "0"],
                  tmp / "cm.log"),
            spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(tmp / "sched.yaml"),
                   "--leader-elect=false", "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                  tmp / "sched.log"),
            spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", str(nodes), "--prefix",
                   self.prefix, "--pod-ready-delay", "300ms", "--node-labels", f"wl-test={self.uid}"],
                  tmp / "hollow.log")]
        api(cp, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": self.ns}}))

    def pod_spec(self, image: str = "nginx:1") -> dict:
        return {"schedulerName": self.profile, "nodeSelector": {"wl-test": self.uid},
                "containers": [{"name": "c", "image": image, "resources": {"requests": {"cpu": "10m"}}}]}

    def pods(self, selector: str) -> list[dict]:
        return [p for p in api(self.cp, lambda c: c.list("v1", "pods", self.ns, label_selector=selector))["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        async def remove(c: Client) -> None:       # hollow-nodes removes its nodes when stopped; make sure
            for n in self.node_names:
                try:
                    await c.delete("v1", "nodes", None, n)
                except ApiError as e:
                    if not is_not_found(e):
                        raise
        api(self.cp, remove)
        for log in ("cm.log", "sched.log", "hollow.log"):
            text = (self.tmp / log).read_text()
            assert "Traceback" not in text, text[-3000:]


@pytest.fixture
def cluster(control_plane, tmp_path):
    cl = Cluster(control_plane, tmp_path, 4)
    wait(lambda: len([n for n in api(control_plane, lambda c: c.list("v1", "nodes"))["items"]
                      if n["metadata"]["name"] in cl.node_names]) == 4, 20, "4 hollow nodes")
    try:
        yield cl
    finally:
        cl.stop()


def test_daemonset_covers_untainted_nodes_and_rolls_out(cluster, kubectl):
    cl, cp = cluster, cluster.cp
    tainted = cl.node_names[3]
    api(cp, lambda c: c.patch("v1", "nodes", None, tainted,
                              {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}))

    def ds(name, tolerations=None, image="nginx:1"):
        spec = cl.pod_spec(image)
        if tolerations:
            spec["tolerations"] = tolerations
        return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": cl.ns},
                "spec": {"selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}

    def status(name):
        return api(cp, lambda c: c.get("apps/v1", "daemonsets", cl.ns, name)).get("status") or {}

    api(cp, lambda c: c.create("apps/v1", "daemonsets", ds("agent"), cl.ns))
    api(cp, lambda c: c.create("apps/v1", "daemonsets",
                               ds("tolerant", [{"key": "dedicated", "operator": "Exists"}]), cl.ns))
    wait(lambda: status("agent").get("numberAvailable") == 3, 40, "agent available on 3 nodes")
    wait(lambda: status("tolerant").get("numberAvailable") == 4, 40, "tolerant available on 4 nodes")
    st = status("agent")
    assert st["desiredNumberScheduled"] == 3 and st["currentNumberScheduled"] == 3
    assert st["numberMisscheduled"] == 0 and st["updatedNumberScheduled"] == 3 and st.get("numberUnavailable", 0) == 0
    agent = cl.pods("app=agent")
    assert sorted(p["spec"]["nodeName"] for p in agent) == sorted(cl.node_names[:3])
    assert sorted(p["spec"]["nodeName"] for p in cl.pods("app=tolerant")) == sorted(cl.node_names)
    time.sleep(1)
    assert len(cl.pods("app=agent")) == 3, "more daemon pods than nodes"
    p0 = agent[0]
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"} in p0["spec"]["tolerations"]
    terms = p0["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [p0["spec"]["nodeName"]]}]}]
    hash1 = p0["metadata"]["labels"]["controller-revision-hash"]
    revs = api(cp, lambda c: c.list("apps/v1", "controllerrevisions", cl.ns, label_selector="app=agent"))["items"]
    assert [(r["metadata"]["name"], r["revision"]) for r in revs] == [(f"agent-{hash1}", 1)]
    assert revs[0]["data"]["spec"]["template"]["$patch"] == "replace"

    # untainting the node brings a pod there
    api(cp, lambda c: c.patch("v1", "nodes", None, tainted, {"spec": {"taints": None}}))
    wait(lambda: status("agent").get("numberAvailable") == 4, 30, "agent on the untainted 4th node")

    # an image update rolls out; rollout status waits for it
    kubectl("-n", cl.ns, "set", "image", "daemonset/agent", "c=nginx:2")
    out = kubectl("-n", cl.ns, "rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
    assert 'daemon set "agent" successfully rolled out' in out
    assert {c["image"] for p in cl.pods("app=agent") for c in p["spec"]["containers"]} == {"nginx:2"}
    assert len(cl.pods("app=agent")) == 4
    hist = kubectl("-n", cl.ns, "rollout", "history", "daemonset/agent")
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"], hist

    # undo goes back to revision 1's template, which becomes revision 3
    kubectl("-n", cl.ns, "rollout", "undo", "daemonset/agent")
    kubectl("-n", cl.ns, "rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
    wait(lambda: {c["image"] for p in cl.pods("app=agent") for c in p["spec"]["containers"]} == {"nginx:1"}
         and len(cl.pods("app=agent")) == 4, 30, "pods back on nginx:1")
    revs = api(cp, lambda c: c.list("apps/v1", "controllerrevisions", cl.ns, label_selector="app=agent"))["items"]
    assert sorted(r["revision"] for r in revs) == [2, 3]
    assert {r["metadata"]["name"]: r["revision"] for r in revs}[f"agent-{hash1}"] == 3
    events = api(cp, lambda c: c.list("v1", "events", cl.ns, field_selector="involvedObject.name=agent"))["items"]
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= {e["reason"] for e in events}


def test_statefulset_orders_pods_and_partitions_updates(cluster, kubectl):
    cl, cp = cluster, cluster.cp
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": cl.ns},
           "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": cl.pod_spec()},
                    "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                              "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": cl.ns},
           "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}

    api(cp, lambda c: c.create("v1", "services", svc, cl.ns))
    events: list[tuple[str, str]] = []
    stop_watch = _watch_pods_in_thread(cp, cl.ns, events)
    try:
        api(cp, lambda c: c.create("apps/v1", "statefulsets", sts, cl.ns))
        wait(lambda: (api(cp, lambda c: c.get("apps/v1", "statefulsets", cl.ns, "web")).get("status") or {})
             .get("readyReplicas") == 3, 40, "3 ready replicas")
        up = list(events)
        assert [e for e in up if e[0] == "add"] == [("add", "web-0"), ("add", "web-1"), ("add", "web-2")], up
        for prev, nxt in (("web-0", "web-1"), ("web-1", "web-2")):
            assert up.index(("ready", prev)) < up.index(("add", nxt)), f"{nxt} created before {prev} was Ready: {up}"
        pods = {p["metadata"]["name"]: p for p in cl.pods("app=web")}
        assert set(pods) == {"web-0", "web-1", "web-2"}
        p1 = pods["web-1"]
        assert p1["spec"]["hostname"] == "web-1" and p1["spec"]["subdomain"] == "web"
        assert p1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-1"
        assert p1["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
        assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}} in p1["spec"]["volumes"]
        pvcs = api(cp, lambda c: c.list("v1", "persistentvolumeclaims", cl.ns))["items"]
        assert sorted(p["metadata"]["name"] for p in pvcs) == ["www-web-0", "www-web-1", "www-web-2"]
        st = api(cp, lambda c: c.get("apps/v1", "statefulsets", cl.ns, "web"))["status"]
        rev1 = st["currentRevision"]
        assert st["updateRevision"] == rev1 and st["currentReplicas"] == 3 and st["updatedReplicas"] == 3
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods.values()} == {rev1}
        events_ = api(cp, lambda c: c.list("v1", "events", cl.ns, field_selector="involvedObject.name=web"))["items"]
        msgs = {e["message"] for e in events_}
        assert "create Pod web-0 in StatefulSet web successful" in msgs
        assert "create Claim www-web-0 Pod web-0 in StatefulSet web success" in msgs

        # partition=2: only web-2 moves to the new template
        api(cp, lambda c: c.patch("apps/v1", "statefulsets", cl.ns, "web", {"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}, "strategic"))
        out = kubectl("-n", cl.ns, "rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
        assert "partitioned roll out complete" in out, out
        st = api(cp, lambda c: c.get("apps/v1", "statefulsets", cl.ns, "web"))["status"]
        assert st["updateRevision"] != rev1 and st["currentRevision"] == rev1
        assert st["updatedReplicas"] == 1 and st["currentReplicas"] == 2 and st["readyReplicas"] == 3
        pods = {p["metadata"]["name"]: p for p in cl.pods("app=web")}
        images = {n: p["spec"]["containers"][0]["image"] for n, p in pods.items()}
        assert images == {"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:2"}
        assert pods["web-2"]["metadata"]["labels"]["controller-revision-hash"] == st["updateRevision"]
        hist = kubectl("-n", cl.ns, "rollout", "history", "statefulset/web")
        assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"], hist

        # scale to 0: deleted 2, 1, 0; the claims stay
        mark = len(events)
        api(cp, lambda c: c.patch("apps/v1", "statefulsets", cl.ns, "web", {"spec": {"replicas": 0}}))
        wait(lambda: not cl.pods("app=web") and ("del", "web-0") in events[mark:], 40, "all pods deleted")
        down = [e for e in events[mark:] if e[0] == "del"]
        assert down == [("del", "web-2"), ("del", "web-1"), ("del", "web-0")], events[mark:]
        pvcs = api(cp, lambda c: c.list("v1", "persistentvolumeclaims", cl.ns))["items"]
        assert len(pvcs) == 3
    finally:
        stop_watch()


def _watch_pods_in_thread(cp, ns: str, events: list) -> Callable[[], None]:
    """Record ("add"|"ready"|"del", pod name) from a pod watch in a thread; returns a stopper."""
    import threading
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def watch() -> None:
        async with Client.from_kubeconfig(str(cp.kubeconfig), component="workloads-watch") as c:
            rv = (await c.list("v1", "pods", ns))["metadata"]["resourceVersion"]
            ready: set[str] = set()
            started.set()
            while True:          # a watch the server ends is resumed from the last resourceVersion
                async with c.watch("v1", "pods", ns, resource_version=rv) as w:
                    async for etype, pod in w:
                        if etype == "BOOKMARK":
                            rv = pod["metadata"].get("resourceVersion", rv)
                            continue
                        if etype not in ("ADDED", "MODIFIED", "DELETED"):       # ERROR: list and watch again
                            events.append(("watch-error", str(pod.get("message"))))
                            rv = (await c.list("v1", "pods", ns))["metadata"]["resourceVersion"]
                            break
                        name = pod["metadata"]["name"]
                        rv = pod["metadata"].get("resourceVersion", rv)
                        if etype == "ADDED":
                            events.append(("add", name))
                        if etype == "DELETED":
                            events.append(("del", name))
                            ready.discard(name)
                        elif name not in ready and any(x.get("type") == "Ready" and x.get("status") == "True"
                                                       for x in (pod.get("status") or {}).get("conditions") or []):
                            ready.add(name)
                            events.append(("ready", name))

    task_box: list = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        t = loop.create_task(watch())
        task_box.append(t)
        try:
            loop.run_until_complete(t)
        except asyncio.CancelledError:
            pass
        except Exception as e:          # shows up as a missing event in the test's assertion
            events.append(("error", repr(e)))
        finally:
            loop.close()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    started.wait(10)

    def stop() -> None:
        if task_box and not loop.is_closed():
            loop.call_soon_threadsafe(task_box[0].cancel)
        th.join(10)
    return stop
