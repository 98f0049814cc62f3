"""Node lifecycle, taint-based eviction and PodGC in kubelab-controller-manager against the real
apiserver, with the scheduler, the ReplicaSet controller and hollow nodes.

A hollow node whose process is SIGKILLed stops renewing its Lease: within the grace period it turns
Ready=Unknown (NodeStatusUnknown), gets the unreachable taints, its pods are marked NotReady and,
tolerating unreachable for 5 s, are evicted about 5 s later (not before) with the DisruptionTarget
condition and recreated by their ReplicaSet on the surviving nodes; restarted, it is Ready again
and untainted. A pod bound to a node that does not exist is garbage collected after the quarantine.
A NoExecute taint a pod does not tolerate deletes it at once; tolerationSeconds delays it; taking
the taint away cancels a pending eviction. Ready=False brings the not-ready taints, pressure
conditions and spec.unschedulable their NoSchedule taints, and they go when the node recovers;
a removed node gets the RemovingNode event."""
from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from kubelab.api.tables import parse_time
from kubelab.api.taints import TAINT_NOT_READY as NOT_READY, TAINT_UNREACHABLE as UNREACHABLE
from kubelab.client.rest import ApiError
from kubelab.lab.controlplane import free_port, spawn
from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def ts(value):
    return parse_time(value).timestamp()


def hollow(kc, prefix, labels, log, keep=False):
    args = [str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "1", "--prefix", prefix,
            "--pod-ready-delay", "300ms", "--node-labels", labels, "--node-lease-renew-interval", "1s"]
    return spawn(args + (["--keep-nodes"] if keep else []), log)


def test_dead_node_is_tainted_its_pods_evicted_and_recreated(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns, profile = f"nl-{uid}", f"nl-sched-{uid}"
    labels = f"nl-test={uid},topology.kubernetes.io/zone=z-{uid}"     # a zone of our own
    dead, alive = f"b{uid}-00000", [f"a{uid}-00000", f"c{uid}-00000"]
    (tmp_path / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                         f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {profile}\n")
    kc = str(control_plane.kubeconfig)
    tol = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
           for k in (UNREACHABLE, NOT_READY)]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": ns},
          "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"schedulerName": profile, "nodeSelector": {"nl-test": uid},
                                         "tolerations": tol,
                                         "containers": [{"name": "c", "image": "nginx",
                                                         "resources": {"requests": {"cpu": "2"}}}]}}}}
    procs: list[subprocess.Popen] = []
    restarted = None

    def pods():
        return api(control_plane, lambda c: c.list("v1", "pods", ns))["items"]

    def node(name):
        return api(control_plane, lambda c: c.get("v1", "nodes", None, name))

    try:
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))
        # bound to a node that never existed: podgc deletes it after the 40 s quarantine
        api(control_plane, lambda c: c.create("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": ns},
            "spec": {"nodeName": f"ghost-{uid}", "containers": [{"name": "c", "image": "nginx"}]}}, ns))
        killed = hollow(kc, f"b{uid}", labels, tmp_path / "hollow-b.log", keep=True)
        procs += [hollow(kc, f"a{uid}", labels, tmp_path / "hollow-a.log"),
                  hollow(kc, f"c{uid}", labels, tmp_path / "hollow-c.log"), killed]
        wait(lambda: all(cond(node(n), "Ready") for n in [dead, *alive]) if _exist(control_plane, [dead, *alive])
             else None, 30, "3 hollow nodes registered")
        cm_started = time.monotonic()
        procs += [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers",
                         "nodelifecycle,taint-eviction-controller,podgc,replicaset",
                         "--node-monitor-grace-period", "8s", "--node-monitor-period", "1s",
                         "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp_path / "cm.log"),
                  spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(tmp_path / "sched.yaml"),
                         "--leader-elect=false", "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                        tmp_path / "sched.log")]
        api(control_plane, lambda c: c.create("apps/v1", "replicasets", rs, ns))
        wait(lambda: sum(1 for p in pods() if (cond(p, "Ready") or {}).get("status") == "True") == 6, 60,
             "6 ready pods")
        on_dead = {p["metadata"]["name"] for p in pods() if p["spec"].get("nodeName") == dead}
        assert on_dead, "the scheduler put no pod on the node that will die"
        before = cond(node(dead), "Ready")
        assert before["status"] == "True"
        assert not [t for t in node(dead)["spec"].get("taints") or [] if t["key"] in (UNREACHABLE, NOT_READY)]

        killed.send_signal(signal.SIGKILL)
        killed.wait()
        t_kill = time.monotonic()
        ready = wait(lambda: (lambda c: c if c["status"] == "Unknown" else None)(cond(node(dead), "Ready")), 20,
                     "Ready=Unknown")
        t_unknown = time.monotonic() - t_kill
        # the last renewal was up to 1 s before the kill; one monitor period, a poll and a loaded host on top
        assert 6.0 <= t_unknown <= 8 + 1 + 1 + 4, t_unknown
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."
        assert ready["lastHeartbeatTime"] == before["lastHeartbeatTime"]
        assert ts(ready["lastTransitionTime"]) > ts(before["lastTransitionTime"])
        n = node(dead)
        for ctype in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            assert cond(n, ctype)["status"] == "Unknown" and cond(n, ctype)["reason"] == "NodeStatusUnknown"
        taint = wait(lambda: next((t for t in node(dead)["spec"].get("taints") or []
                                   if t["key"] == UNREACHABLE and t["effect"] == "NoExecute"), None), 5,
                     "the unreachable NoExecute taint")
        t_taint = time.monotonic()
        assert taint.get("timeAdded")
        wait(lambda: any(t["key"] == UNREACHABLE and t["effect"] == "NoSchedule"
                         for t in node(dead)["spec"].get("taints") or []), 5, "the unreachable NoSchedule taint")
        # MarkPodsNotReady
        wait(lambda: all((cond(p, "Ready") or {}).get("status") == "False" for p in pods()
                         if p["metadata"]["name"] in on_dead), 5, "pods on the dead node NotReady")
        # not evicted before tolerationSeconds
        while time.monotonic() < t_taint + 3.0:
            assert not [p for p in pods() if p["metadata"]["name"] in on_dead
                        and p["metadata"].get("deletionTimestamp")], "evicted before tolerationSeconds"
            time.sleep(0.3)
        evicted = wait(lambda: (lambda ps: ps if len(ps) == len(on_dead) else None)(
            [p for p in pods() if p["metadata"]["name"] in on_dead and p["metadata"].get("deletionTimestamp")]),
            10, "pods on the dead node evicted")
        for p in evicted:
            dt = cond(p, "DisruptionTarget")
            assert dt and dt["status"] == "True" and dt["reason"] == "DeletionByTaintManager", p["status"]
            assert dt["message"] == "Taint manager: deleting due to NoExecute taint"
            assert 4 <= ts(dt["lastTransitionTime"]) - ts(taint["timeAdded"]) <= 10
        # the ReplicaSet recreates them on the surviving nodes
        wait(lambda: (lambda live: len(live) == 6 and {p["spec"].get("nodeName") for p in live} <= set(alive)
                      and all((cond(p, "Ready") or {}).get("status") == "True" for p in live))(
            [p for p in pods() if p["metadata"]["name"] != "orphan" and not p["metadata"].get("deletionTimestamp")]),
            30, "6 ready replicas on the surviving nodes")
        events = api(control_plane, lambda c: c.list("v1", "events", ns,
                                                     field_selector="reason=TaintManagerEviction"))["items"]
        assert {e["message"] for e in events} >= {f"Marking for deletion Pod {ns}/{n}" for n in on_dead}
        node_events = api(control_plane, lambda c: c.list("v1", "events", "default",
                                                          field_selector=f"involvedObject.name={dead}"))["items"]
        got = {(e["reason"], e["message"]) for e in node_events}
        assert ("NodeNotReady", f"Node {dead} status is now: NodeNotReady") in got
        assert ("RegisteredNode", f"Node {dead} event: Registered Node {dead} in Controller") in got
        assert all(e["source"]["component"] == "node-controller" for e in node_events
                   if e["reason"] in ("NodeNotReady", "RegisteredNode"))

        # the node comes back: Ready again, its taints go away
        restarted = hollow(kc, f"b{uid}", labels, tmp_path / "hollow-b2.log")
        procs.append(restarted)
        wait(lambda: (lambda n: (cond(n, "Ready") or {}).get("status") == "True" and not [
            t for t in n["spec"].get("taints") or [] if t["key"] in (UNREACHABLE, NOT_READY)])(node(dead)), 20,
             "Ready again and untainted")

        # podgc: the orphan outlived the first passes (quarantine), then goes
        wait(lambda: "orphan" not in {p["metadata"]["name"] for p in pods()},
             max(5.0, cm_started + 70 - time.monotonic()),
             "the orphaned pod garbage collected")
        assert time.monotonic() - cm_started >= 38, "the orphan was deleted before the quarantine"
    finally:
        stop_all(procs)
        for name in (dead,):
            for av, res, nsp in (("v1", "nodes", None), ("coordination.k8s.io/v1", "leases", "kube-node-lease")):
                try:
                    api(control_plane, lambda c: c.delete(av, res, nsp, name))
                except ApiError:
                    pass
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    for log in ("cm.log", "sched.log", "hollow-a.log", "hollow-b.log", "hollow-b2.log"):
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text, text[-3000:]


def metrics(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def _exist(cp, names):
    have = {n["metadata"]["name"] for n in api(cp, lambda c: c.list("v1", "nodes"))["items"]}
    return set(names) <= have


def test_noexecute_taint_evicts_untolerating_pods_at_once_and_tolerating_ones_later(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns, name, key = f"te-{uid}", f"t{uid}-00000", f"kubelab.dev/evict-{uid}"
    kc = str(control_plane.kubeconfig)

    def pod(pname, tolerations):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pname, "namespace": ns},
                "spec": {"nodeName": name, "tolerations": tolerations,
                         "containers": [{"name": "c", "image": "nginx"}]}}

    def pods():
        return {p["metadata"]["name"]: p for p in api(control_plane, lambda c: c.list("v1", "pods", ns))["items"]}

    def deleting(pname):
        p = pods().get(pname)
        return p is None or bool(p["metadata"].get("deletionTimestamp"))

    def set_taints(taints):
        api(control_plane, lambda c: c.patch("v1", "nodes", None, name, {"spec": {"taints": taints}}))

    # the node lifecycle controller runs with its defaults and reports them
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers",
                    "taint-eviction-controller,nodelifecycle", "--leader-elect-resource-name", f"kcm-{uid}",
                    "--secure-port", "0"], tmp_path / "cm.log"),
             hollow(kc, f"t{uid}", f"te-test={uid},topology.kubernetes.io/zone=z-{uid}", tmp_path / "hollow.log")]
    try:
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))
        wait(lambda: _exist(control_plane, [name]), 30, "the hollow node")
        specs = {"none": [], "forever": [{"key": key, "operator": "Exists", "effect": "NoExecute"}],
                 "three": [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}],
                 "ten": [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}
        for pname, tols in specs.items():
            api(control_plane, lambda c, p=pod(pname, tols): c.create("v1", "pods", p, ns))
        wait(lambda: (lambda ps: len(ps) == 4 and all(p["status"].get("phase") == "Running" for p in ps.values()))(
            pods()), 30, "4 running pods")
        wait(lambda: "node-monitor-grace-period=40s" in (tmp_path / "cm.log").read_text(), 10,
             "the default grace period reported")

        set_taints([{"key": key, "value": "x", "effect": "NoExecute"}])
        t0 = time.monotonic()
        wait(lambda: deleting("none"), 3, "the pod without a toleration deleted at once", interval=0.1)
        assert time.monotonic() - t0 < 3
        while time.monotonic() < t0 + 2.0:
            assert not deleting("three"), "evicted before its tolerationSeconds"
            time.sleep(0.2)
        wait(lambda: deleting("three"), 5, "the pod tolerating 3 s deleted")
        assert time.monotonic() - t0 >= 2.8
        events = {e["involvedObject"]["name"]: e["message"] for e in api(
            control_plane, lambda c: c.list("v1", "events", ns, field_selector="reason=TaintManagerEviction"))["items"]}
        assert events.get("none") == f"Marking for deletion Pod {ns}/none"
        assert events.get("three") == f"Marking for deletion Pod {ns}/three"

        # the taint goes away: the pending eviction of "ten" is cancelled, "forever" never goes
        set_taints([])
        wait(lambda: any(e["involvedObject"]["name"] == "ten" and e["message"] == f"Cancelling deletion of Pod {ns}/ten"
                         for e in api(control_plane, lambda c: c.list("v1", "events", ns))["items"]), 5,
             "the cancellation event")
        while time.monotonic() < t0 + 11.5:
            time.sleep(0.5)
        left = pods()
        assert not deleting("ten") and not deleting("forever"), left.keys()
    finally:
        stop_all(procs)
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    for log in ("cm.log", "hollow.log"):
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text, text[-3000:]


def test_taints_follow_conditions_and_unschedulable(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    name = f"x{uid}-00000"
    kc = str(control_plane.kubeconfig)
    port = free_port()
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers", "nodelifecycle",
                    "--node-monitor-period", "1s", "--leader-elect-resource-name", f"kcm-{uid}",
                    "--secure-port", str(port), "--bind-address", "127.0.0.1"], tmp_path / "cm.log"),
             spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "2", "--prefix", f"x{uid}",
                    "--node-labels", f"topology.kubernetes.io/zone=z-{uid}", "--node-lease-renew-interval", "1s"],
                   tmp_path / "hollow.log")]

    def taints():
        n = api(control_plane, lambda c: c.get("v1", "nodes", None, name))
        return {(t["key"], t["effect"]): t for t in n["spec"].get("taints") or []}

    def set_conditions(**statuses):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conds = [{"type": t, "status": s, "reason": "Test", "message": "set by the test", "lastHeartbeatTime": now,
                  "lastTransitionTime": now} for t, s in statuses.items()]
        api(control_plane, lambda c: c.patch("v1", "nodes", None, name, {"status": {"conditions": conds}},
                                             "strategic", subresource="status"))

    try:
        wait(lambda: _exist(control_plane, [name, f"x{uid}-00001"]), 30, "the hollow nodes")
        wait(lambda: "node lifecycle controller:" in (tmp_path / "cm.log").read_text(), 20, "the controller running")
        # both nodes seen first: with only this one seen, NotReady, the controller would be in full
        # disruption mode, and leaving it drains the zone's token bucket (10 s at 0.1/s, as upstream)
        wait(lambda: all(f"controller observed a new node {n}" in (tmp_path / "cm.log").read_text()
                         for n in (name, f"x{uid}-00001")), 20, "the controller observing both nodes")
        set_conditions(Ready="False")
        got = wait(lambda: (lambda t: t if {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")} <= t.keys()
                            else None)(taints()), 10, "the not-ready taints")
        assert got[(NOT_READY, "NoExecute")].get("timeAdded")
        assert (UNREACHABLE, "NoExecute") not in got
        set_conditions(Ready="True", MemoryPressure="True")
        wait(lambda: (lambda t: (NOT_READY, "NoExecute") not in t and (NOT_READY, "NoSchedule") not in t
                      and ("node.kubernetes.io/memory-pressure", "NoSchedule") in t)(taints()), 10,
             "Ready again: not-ready taints gone, memory-pressure taint there")
        api(control_plane, lambda c: c.patch("v1", "nodes", None, name, {"spec": {"unschedulable": True}}))
        wait(lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") in taints(), 10, "the unschedulable taint")
        set_conditions(MemoryPressure="False")
        api(control_plane, lambda c: c.patch("v1", "nodes", None, name, {"spec": {"unschedulable": False}}))
        wait(lambda: not taints(), 10, "no taints left")
        zone = f'zone=":z-{uid}"'
        wait(lambda: (lambda m: f"node_collector_zone_size{{{zone}}} 2.0" in m
                      and f"node_collector_unhealthy_nodes_in_zone{{{zone}}} 0.0" in m)(metrics(port)), 10,
             "the zone metrics")
        stop_all(procs[1:])            # the hollow process removes its nodes
        wait(lambda: any(e["reason"] == "RemovingNode" and e["message"] == f"Node {name} event: Removing Node {name} "
                         "from Controller" for e in api(control_plane, lambda c: c.list(
                             "v1", "events", "default", field_selector=f"involvedObject.name={name}"))["items"]),
             10, "the RemovingNode event")
    finally:
        stop_all(procs)
    for log in ("cm.log", "hollow.log"):
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text, text[-3000:]
