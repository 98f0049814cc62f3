"""The kubelet's pure rules: QoS and cgroup naming, DNS configuration per dnsPolicy, CRI configs,
the pod actions (computePodActions) with restart policies and backoff, and the pod phase, after
upstream's kuberuntime_manager_test, qos_test, dns_test and kubelet_pods_test cases."""
from __future__ import annotations

from pathlib import Path

import pytest

from kubelab.kubelet import actions as A
from kubelab.kubelet import podstatus as S
from kubelab.kubelet import runtimespec as R


def pod(containers=("c",), init=(), policy="Always", uid="u1", **spec):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": {"restartPolicy": policy, "containers": [{"name": n, "image": "img"} for n in containers],
                     "initContainers": [{"name": n, "image": "img"} for n in init], **spec}}


def res(req=None, lim=None):
    return {"name": "c", "image": "i", "resources": {k: v for k, v in (("requests", req), ("limits", lim)) if v}}


@pytest.mark.parametrize("containers,want", [
    ([res()], "BestEffort"),
    ([res({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], "Guaranteed"),
    ([res(None, {"cpu": "1", "memory": "1Gi"})], "Guaranteed"),          # requests default to limits
    ([res({"cpu": "1"})], "Burstable"),
    ([res({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "1Gi"})], "Burstable"),
])
def test_qos(containers, want):
    p = {"metadata": {"uid": "u"}, "spec": {"containers": containers}}
    assert R.qos_class(p) == want
    parent = R.pod_cgroup_parent(p, "/lab")
    assert parent == ("/lab/kubepods/podu" if want == "Guaranteed" else f"/lab/kubepods/{want.lower()}/podu")


HOST = (["192.0.2.53"], ["corp.example"], ["timeout:2"])


@pytest.mark.parametrize("spec,want", [
    ({}, {"servers": ["10.96.0.10"], "searches": ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local",
                                                  "corp.example"], "options": ["ndots:5"]}),
    ({"hostNetwork": True}, {"servers": ["192.0.2.53"], "searches": ["corp.example"], "options": ["timeout:2"]}),
    ({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"},
     {"servers": ["10.96.0.10"], "searches": ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local",
                                              "corp.example"], "options": ["ndots:5"]}),
    ({"dnsPolicy": "Default"}, {"servers": ["192.0.2.53"], "searches": ["corp.example"], "options": ["timeout:2"]}),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.b"],
                                         "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
     {"servers": ["1.1.1.1"], "searches": ["a.b"], "options": ["ndots:2", "edns0"]}),
])
def test_dns_policies(spec, want):
    p = {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}
    assert R.dns_config(p, ["10.96.0.10"], "cluster.local", HOST) == want


def test_sandbox_and_container_configs():
    p = pod(hostname="web-0", hostNetwork=False)
    p["spec"]["containers"][0].update(command=["nginx"], args=["-g", "daemon off;"], ports=[
        {"containerPort": 80, "hostPort": 8080}], resources={"limits": {"cpu": "500m", "memory": "64Mi"}})
    sb = R.sandbox_config(p, attempt=2, pod_logs_dir=Path("/logs"), cgroup_root="/", cluster_dns=["10.96.0.10"],
                          cluster_domain="cluster.local", host_dns=HOST)
    assert sb["metadata"] == {"name": "p", "namespace": "ns", "uid": "u1", "attempt": 2}
    assert sb["hostname"] == "web-0" and sb["logDirectory"] == "/logs/ns_p_u1"
    assert sb["portMappings"] == [{"protocol": 0, "containerPort": 80, "hostPort": 8080, "hostIp": ""}]
    assert sb["labels"][R.POD_UID] == "u1" and sb["linux"]["cgroupParent"] == "/kubepods/podu1"
    cc = R.container_config(p, p["spec"]["containers"][0], attempt=1, image_ref="sha256:x", env=[("A", "1")])
    assert cc["command"] == ["nginx"] and cc["args"] == ["-g", "daemon off;"] and cc["logPath"] == "c/1.log"
    assert cc["envs"] == [{"key": "A", "value": "1"}]
    assert cc["linux"]["resources"] == {"cpuShares": 512, "cpuPeriod": 100000, "cpuQuota": 50000,
                                        "memoryLimitInBytes": 64 * 2**20}
    assert cc["annotations"][R.CONTAINER_HASH] == R.container_hash(p["spec"]["containers"][0])


@pytest.mark.parametrize("image,policy", [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
                                          ("reg:5000/nginx", "Always"), ("nginx@sha256:ab", "IfNotPresent")])
def test_image_pull_policy_defaults(image, policy):
    assert R.image_pull_policy({"image": image}) == policy


def running(name, attempt=0, sid="s1", **kw):
    return A.ContainerState(id=f"{name}-{attempt}", name=name, attempt=attempt, state="running", sandbox_id=sid,
                            hash=kw.pop("hash", ""), **kw)


def exited(name, code, attempt=0, sid="s1", finished=100.0):
    return A.ContainerState(id=f"{name}-{attempt}", name=name, attempt=attempt, state="exited", exit_code=code,
                            sandbox_id=sid, started_at=finished - 1, finished_at=finished)


def rt(*containers, ready=True, attempt=0):
    return A.PodRuntime([A.SandboxState("s1", attempt, ready, 1.0, "10.0.0.2")], list(containers))


def test_new_pod_creates_a_sandbox_then_the_first_init_container():
    a = A.compute(pod(init=("i1", "i2")), A.PodRuntime(), A.Backoff())
    assert a.create_sandbox and a.attempt == 0 and a.next_init["name"] == "i1" and not a.kill_pod


def test_init_containers_run_in_order():
    p = pod(init=("i1", "i2"))
    assert A.compute(p, rt(running("i1")), A.Backoff()).next_init is None          # wait for i1
    assert A.compute(p, rt(exited("i1", 0)), A.Backoff()).next_init["name"] == "i2"
    a = A.compute(p, rt(exited("i1", 0), exited("i2", 0)), A.Backoff())
    assert [c["name"] for c in a.start] == ["c"]
    assert A.compute(pod(init=("i1",), policy="Never"), rt(exited("i1", 1)), A.Backoff()).done


@pytest.mark.parametrize("policy,code,restart", [("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False),
                                                 ("OnFailure", 2, True), ("Never", 1, False)])
def test_restart_policy(policy, code, restart):
    a = A.compute(pod(policy=policy), rt(exited("c", code)), A.Backoff(clock=lambda: 1000.0))
    assert bool(a.start) == restart


def test_crash_loop_backoff_doubles_and_resets():
    clock = [105.0]
    b = A.Backoff(clock=lambda: clock[0])
    b.next("u1/c", 100.0, 1.0)                       # first restart: 10 s from finish
    a = A.compute(pod(), rt(exited("c", 1, finished=100.0)), b)
    assert a.start == [] and a.backoff["c"].startswith("back-off 10s restarting failed container=c pod=p_ns(u1)")
    b.next("u1/c", 150.0, 1.0)
    assert b.delay("u1/c") == 20.0
    b.next("u1/c", 190.0, 700.0)                     # ran 10+ minutes: back to 10 s
    assert b.delay("u1/c") == 10.0


def test_changed_spec_and_liveness_failure_restart_the_container():
    p = pod()
    a = A.compute(p, rt(running("c", hash="old")), A.Backoff())
    assert list(a.kill) == ["c-0"] and a.start[0]["name"] == "c"
    h = R.container_hash(p["spec"]["containers"][0])
    assert not A.compute(p, rt(running("c", hash=h)), A.Backoff()).kill
    a = A.compute(p, rt(running("c", hash=h)), A.Backoff(), liveness_failed={"c"})
    assert "failed liveness probe" in a.kill["c-0"]


def test_dead_sandbox_is_replaced_unless_never_and_done():
    a = A.compute(pod(), rt(running("c"), ready=False, attempt=3), A.Backoff())
    assert a.create_sandbox and a.kill_pod and a.attempt == 4
    assert A.compute(pod(policy="Never"), rt(exited("c", 0), ready=False), A.Backoff()).done


def status(p, runtime, waiting=None):
    return S.pod_status(p, runtime, waiting=waiting or S.Waiting(), ready={}, started={}, runtime="kubelab-cri",
                        host_ips=["192.168.56.11"], start_time="T0", now="T1")


def test_status_running_and_ready():
    st = status(pod(), rt(running("c", started_at=50.0)))
    assert st["phase"] == "Running" and st["podIP"] == "10.0.0.2" and st["hostIP"] == "192.168.56.11"
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["containerID"] == "kubelab-cri://c-0" and "running" in cs["state"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


@pytest.mark.parametrize("policy,code,phase", [("Never", 0, "Succeeded"), ("Never", 1, "Failed"),
                                               ("OnFailure", 0, "Succeeded"), ("Always", 1, "Running")])
def test_phase_after_exit(policy, code, phase):
    assert status(pod(policy=policy), rt(exited("c", code)))["phase"] == phase


def test_waiting_reasons_and_last_state():
    w = S.Waiting({"c": ("CrashLoopBackOff", "back-off 10s ...")})
    st = status(pod(), A.PodRuntime([A.SandboxState("s1", 0, True, 1.0, "10.0.0.2")],
                                    [exited("c", 3, attempt=1)]), w)
    cs = st["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["ContainersReady"]["message"] == "containers with unready status: [c]"
    st = status(pod(init=("i1",)), rt(running("i1")))
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert {c["type"]: c for c in st["conditions"]}["Initialized"]["message"] == \
        "containers with incomplete status: [i1]"


def test_status_is_what_its_merge_patch_stores_so_a_resync_writes_nothing():
    from kubelab.api.patch import apply_merge_patch
    p = pod()
    # the binding's PodScheduled condition carries lastProbeTime: null, as upstream's does
    p["status"] = {"conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                   "lastTransitionTime": "T0"}]}
    runtime = A.PodRuntime([A.SandboxState("s1", 0, True, 1.0, "10.0.0.2", ["10.0.0.2"])],
                           [exited("c", 1, attempt=0), running("c", attempt=1, started_at=50.0)])
    st = status(p, runtime)
    stored = apply_merge_patch(p, {"status": st})["status"]
    assert stored == st
    assert {c["type"]: c for c in st["conditions"]}["PodScheduled"] == {
        "type": "PodScheduled", "status": "True", "lastTransitionTime": "T0"}
    p["status"] = stored
    assert status(p, runtime) == stored          # the next sync finds nothing to write
