"""StatefulSet decisions, tables after upstream's stateful_set_control_test: identity and claims,
OrderedReady creation and deletion order, Parallel bursts, partitioned rolling update, status."""
from __future__ import annotations

from kubelab.controller import history as h
from kubelab.controller.statefulset.identity import claims_for, identity_matches, new_pod, storage_matches
from kubelab.controller.statefulset.plan import complete_rolling_update, plan_sync

NOW = 2_000_000_000.0
T0 = "2033-05-18T03:00:00Z"


def sset(replicas=3, policy="OrderedReady", partition=0, strategy="RollingUpdate", start=None, image="a"):
    spec = {"replicas": replicas, "serviceName": "svc", "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {}}],
            "updateStrategy": {"type": strategy}}
    if strategy == "RollingUpdate":
        spec["updateStrategy"]["rollingUpdate"] = {"partition": partition}
    if start is not None:
        spec["ordinals"] = {"start": start}
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 2}, "spec": spec, "status": {}}


def rev(s, n=1):
    return h.new_controller_revision(s, "StatefulSet", {"app": "web"}, h.template_patch(s), n, 0)


def running(s, ord_, revision, ready=True, phase="Running", deleting=False):
    p = new_pod(s, ord_)
    p["metadata"]["labels"]["controller-revision-hash"] = revision
    p["metadata"]["uid"] = f"uid{ord_}"
    p["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                   "lastTransitionTime": T0}]}
    if deleting:
        p["metadata"]["deletionTimestamp"] = T0
    return p


def steps(plan):
    return [(s.verb, s.pod["metadata"]["name"]) for s in plan.steps]


def test_identity_and_claims():
    s = sset()
    p = new_pod(s, 4)
    assert p["metadata"]["name"] == "web-4" and p["spec"]["hostname"] == "web-4" and p["spec"]["subdomain"] == "svc"
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-4",
                                       "apps.kubernetes.io/pod-index": "4"}
    assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-4"}}]
    assert identity_matches(s, p) and storage_matches(s, p)
    c = claims_for(s, 4)[0]
    assert c["metadata"]["name"] == "www-web-4" and c["metadata"]["labels"] == {"app": "web"}
    p["metadata"]["labels"].pop("statefulset.kubernetes.io/pod-name")
    assert not identity_matches(s, p)


def test_ordered_ready_creates_one_at_a_time_after_the_previous_is_ready():
    s = sset()
    r = rev(s)
    n = r["metadata"]["name"]
    assert steps(plan_sync(s, [], r, r, 0, NOW)) == [("create", "web-0")]
    pods = [running(s, 0, n, ready=False)]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == []          # waits for web-0
    pods = [running(s, 0, n)]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == [("create", "web-1")]
    # a failed pod is deleted (and recreated next pass) before anything else
    pods = [running(s, 0, n, phase="Failed"), running(s, 1, n)]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == [("delete", "web-0")]


def test_ordered_ready_scales_down_from_the_highest_and_waits():
    s = sset(replicas=1)
    r = rev(s)
    n = r["metadata"]["name"]
    pods = [running(s, i, n) for i in range(3)]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == [("delete", "web-2")]
    pods[2] = running(s, 2, n, deleting=True)
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == []           # waits for web-2 to go
    # scaling is blocked while another pod is unhealthy
    pods = [running(s, 0, n, ready=False), running(s, 1, n)]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == []


def test_parallel_creates_and_deletes_all_at_once():
    s = sset(replicas=3, policy="Parallel")
    r = rev(s)
    n = r["metadata"]["name"]
    assert steps(plan_sync(s, [], r, r, 0, NOW)) == [("create", "web-0"), ("create", "web-1"), ("create", "web-2")]
    s0 = sset(replicas=0, policy="Parallel")
    pods = [running(s0, i, n, ready=i != 1) for i in range(3)]
    assert steps(plan_sync(s0, pods, r, r, 0, NOW)) == [("delete", "web-2"), ("delete", "web-1"), ("delete", "web-0")]


def test_start_ordinal():
    s = sset(replicas=2, start=5)
    r = rev(s)
    assert steps(plan_sync(s, [], r, r, 0, NOW)) == [("create", "web-5")]
    pods = [running(s, 0, r["metadata"]["name"]), running(s, 5, r["metadata"]["name"])]
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == [("create", "web-6")]
    pods.append(running(s, 6, r["metadata"]["name"]))
    assert steps(plan_sync(s, pods, r, r, 0, NOW)) == [("delete", "web-0")]


def test_partitioned_rolling_update_from_the_highest_ordinal():
    old_s = sset(image="a")
    new_s = sset(image="b", partition=1)
    cur, upd = rev(old_s, 1), rev(new_s, 2)
    cn, un = cur["metadata"]["name"], upd["metadata"]["name"]
    pods = [running(old_s, i, cn) for i in range(3)]
    plan = plan_sync(new_s, pods, cur, upd, 0, NOW)
    assert steps(plan) == [("delete", "web-2")]
    assert plan.status["currentReplicas"] == 2 and plan.status["updatedReplicas"] == 0
    # web-2 recreated at the update revision, not ready yet: wait
    pods[2] = running(new_s, 2, un, ready=False)
    assert steps(plan_sync(new_s, pods, cur, upd, 0, NOW)) == []
    pods[2] = running(new_s, 2, un)
    assert steps(plan_sync(new_s, pods, cur, upd, 0, NOW)) == [("delete", "web-1")]
    pods[1] = running(new_s, 1, un)
    plan = plan_sync(new_s, pods, cur, upd, 0, NOW)
    assert steps(plan) == []                                     # web-0 is below the partition
    assert plan.status["updatedReplicas"] == 2 and plan.status["currentReplicas"] == 1
    # a missing pod below the partition is recreated at the current revision
    plan = plan_sync(new_s, pods[1:], cur, upd, 0, NOW)
    assert steps(plan) == [("create", "web-0")]
    assert plan.steps[0].pod["metadata"]["labels"]["controller-revision-hash"] == cn
    assert plan.steps[0].pod["spec"]["containers"][0]["image"] == "a"


def test_on_delete_never_deletes_for_update():
    old_s, new_s = sset(image="a"), sset(image="b", strategy="OnDelete")
    cur, upd = rev(old_s, 1), rev(new_s, 2)
    pods = [running(old_s, i, cur["metadata"]["name"]) for i in range(3)]
    assert steps(plan_sync(new_s, pods, cur, upd, 0, NOW)) == []


def test_status_and_completed_rollout():
    s = sset()
    r = rev(s)
    n = r["metadata"]["name"]
    pods = [running(s, 0, n), running(s, 1, n, ready=False)]
    st = plan_sync(s, pods, r, r, 4, NOW).status
    assert st == {"observedGeneration": 2, "currentRevision": n, "updateRevision": n, "collisionCount": 4,
                  "replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "currentReplicas": 2,
                  "updatedReplicas": 2}
    st = {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 0,
          "currentRevision": "a", "updateRevision": "b"}
    complete_rolling_update(s, st)
    assert st["currentRevision"] == "b" and st["currentReplicas"] == 3
