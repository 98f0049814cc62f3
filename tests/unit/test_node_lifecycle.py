"""The node lifecycle controller's pure parts: node health (tryUpdateNodeHealth), the taints it
wants (doNoScheduleTaintingPass, processTaintBaseEviction), zone states and tainting rates
(ComputeZoneState, setLimiterInZone) and the rate-limited timed queue; the shared taint helpers."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.api.taints import matching_tolerations, taint_set_diff, tolerates
from kubelab.cmd.controller_manager import parse
from kubelab.controller.nodelifecycle.health import NodeHealth, try_update_node_health
from kubelab.controller.nodelifecycle.taints import (MARK_REACHABLE, QUEUE, SWAP_TO_NOT_READY, SWAP_TO_UNREACHABLE,
                                                     no_execute_action, no_execute_taint_for, no_schedule_taint_diff)
from kubelab.controller.nodelifecycle.zones import (STATE_FULL_DISRUPTION, STATE_NORMAL, STATE_PARTIAL_DISRUPTION,
                                                    EvictionRates, RateLimitedTimedQueue, compute_zone_state)
from kubelab.controller.nodeutil import with_taints_swapped, zone_key
from kubelab.controller.podutil import rfc3339, update_pod_condition

T0 = 1_800_000_000.0          # a whole second
GRACE, STARTUP = 40.0, 60.0


def node(ready="True", heartbeat=T0, transition=T0, pressure="False", created=T0 - 100, conditions=True):
    conds = []
    if conditions:
        conds = [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "ok",
                  "lastHeartbeatTime": rfc3339(heartbeat), "lastTransitionTime": rfc3339(transition)}]
        conds += [{"type": t, "status": pressure, "reason": "Fine", "message": "fine",
                   "lastHeartbeatTime": rfc3339(heartbeat), "lastTransitionTime": rfc3339(transition)}
                  for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
        conds.append({"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
                      "lastHeartbeatTime": rfc3339(heartbeat), "lastTransitionTime": rfc3339(transition)})
    return {"metadata": {"name": "n1", "uid": "u1", "creationTimestamp": rfc3339(created)},
            "spec": {}, "status": {"conditions": conds}}


def lease(renew):
    return {"metadata": {"name": "n1"}, "spec": {"renewTime": rfc3339(renew).replace("Z", ".000000Z")}}


def cond(status, ctype):
    return next(c for c in status["conditions"] if c["type"] == ctype)


# -- health ------------------------------------------------------------------------------------------

def test_a_node_first_seen_gets_the_whole_grace_period():
    r = try_update_node_health(node(heartbeat=T0 - 1000), None, None, T0, GRACE, STARTUP)
    assert r.health.probe_timestamp == T0 and r.new_status is None and r.grace_period == GRACE
    assert r.observed_ready["status"] == "True" and r.current_ready["status"] == "True"


@pytest.mark.parametrize("elapsed,unknown", [(39, False), (40, False), (41, True)])
def test_no_heartbeat_and_no_lease_for_the_grace_period_makes_ready_unknown(elapsed, unknown):
    n = node()
    first = try_update_node_health(n, None, lease(T0), T0, GRACE, STARTUP)
    r = try_update_node_health(n, first.health, lease(T0), T0 + elapsed, GRACE, STARTUP)
    assert (r.new_status is not None) == unknown
    if not unknown:
        return
    ready = cond(r.new_status, "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert ready["lastHeartbeatTime"] == rfc3339(T0)                     # kept
    assert ready["lastTransitionTime"] == rfc3339(T0 + elapsed)          # now
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert cond(r.new_status, t)["status"] == "Unknown"
    assert cond(r.new_status, "NetworkUnavailable")["status"] == "False"  # managed elsewhere
    assert r.observed_ready["status"] == "True" and r.current_ready["status"] == "Unknown"
    assert r.health_after_write.ready_transition_timestamp == T0 + elapsed
    assert cond(n["status"], "Ready")["status"] == "True"                 # the cached node is not touched


def test_a_renewed_lease_keeps_a_node_healthy_without_heartbeats():
    n = node()
    h = try_update_node_health(n, None, lease(T0), T0, GRACE, STARTUP).health
    h = try_update_node_health(n, h, lease(T0 + 30), T0 + 30, GRACE, STARTUP).health
    assert h.probe_timestamp == T0 + 30
    r = try_update_node_health(n, h, lease(T0 + 30), T0 + 60, GRACE, STARTUP)
    assert r.new_status is None
    assert try_update_node_health(n, h, lease(T0 + 30), T0 + 71, GRACE, STARTUP).new_status is not None


def test_a_new_heartbeat_is_a_sign_of_life_and_a_new_transition_is_remembered():
    h = try_update_node_health(node(), None, None, T0, GRACE, STARTUP).health
    same = try_update_node_health(node(heartbeat=T0 + 10), h, None, T0 + 10, GRACE, STARTUP).health
    assert same.probe_timestamp == T0 + 10 and same.ready_transition_timestamp == T0
    moved = try_update_node_health(node(ready="False", heartbeat=T0 + 20, transition=T0 + 20), same, None, T0 + 20,
                                   GRACE, STARTUP).health
    assert moved.probe_timestamp == T0 + 20 and moved.ready_transition_timestamp == T0 + 20


def test_an_unknown_node_is_not_written_again():
    n = node(ready="Unknown", pressure="Unknown")
    h = NodeHealth(n["status"], T0 - 100, T0 - 100)
    r = try_update_node_health(n, h, None, T0, GRACE, STARTUP)
    assert r.new_status is None and r.current_ready["status"] == "Unknown"


@pytest.mark.parametrize("since_creation,unknown", [(59, False), (61, True)])
def test_a_node_that_never_posted_status_gets_the_startup_grace_from_its_creation(since_creation, unknown):
    n = node(conditions=False, created=T0)
    r = try_update_node_health(n, None, None, T0 + since_creation, GRACE, STARTUP)
    assert r.grace_period == STARTUP and r.observed_ready["status"] == "Unknown"
    assert (r.new_status is not None) == unknown
    assert (r.current_ready is not None) == unknown
    if unknown:
        for t in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            c = cond(r.new_status, t)
            assert c["status"] == "Unknown" and c["reason"] == "NodeStatusNeverUpdated"
            assert c["message"] == "Kubelet never posted node status."
            assert c["lastHeartbeatTime"] == rfc3339(T0)


# -- taints --------------------------------------------------------------------------------------------

NS = "NoSchedule"


@pytest.mark.parametrize("conditions,unschedulable,taints,add,remove", [
    ({"Ready": "True"}, False, [], [], []),
    ({"Ready": "False"}, False, [], [("node.kubernetes.io/not-ready", NS)], []),
    ({"Ready": "Unknown"}, False, [("node.kubernetes.io/not-ready", NS)],
     [("node.kubernetes.io/unreachable", NS)], [("node.kubernetes.io/not-ready", NS)]),
    ({"Ready": "True", "MemoryPressure": "True", "DiskPressure": "True", "PIDPressure": "True"}, False, [],
     [("node.kubernetes.io/memory-pressure", NS), ("node.kubernetes.io/disk-pressure", NS),
      ("node.kubernetes.io/pid-pressure", NS)], []),
    ({"Ready": "True", "NetworkUnavailable": "True"}, False, [], [("node.kubernetes.io/network-unavailable", NS)], []),
    ({"Ready": "True"}, True, [], [("node.kubernetes.io/unschedulable", NS)], []),
    ({"Ready": "True"}, False, [("node.kubernetes.io/unschedulable", NS)], [],
     [("node.kubernetes.io/unschedulable", NS)]),
    # taints the controller does not own stay; NoExecute ones are not this pass's business
    ({"Ready": "True"}, False, [("dedicated", NS), ("node.kubernetes.io/unreachable", "NoExecute")], [], []),
])
def test_no_schedule_taints_follow_conditions_and_unschedulable(conditions, unschedulable, taints, add, remove):
    n = {"metadata": {"name": "n"}, "spec": {"unschedulable": unschedulable,
                                             "taints": [{"key": k, "effect": e} for k, e in taints]},
         "status": {"conditions": [{"type": t, "status": s} for t, s in conditions.items()]}}
    got_add, got_remove = no_schedule_taint_diff(n)
    assert [(t["key"], t["effect"]) for t in got_add] == add
    assert [(t["key"], t["effect"]) for t in got_remove] == remove


UNREACH = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
NOTREADY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}


@pytest.mark.parametrize("status,taints,action", [
    ("False", [], QUEUE), ("False", [UNREACH], SWAP_TO_NOT_READY), ("False", [NOTREADY], QUEUE),
    ("Unknown", [], QUEUE), ("Unknown", [NOTREADY], SWAP_TO_UNREACHABLE), ("Unknown", [UNREACH], QUEUE),
    ("True", [UNREACH], MARK_REACHABLE), ("True", [], MARK_REACHABLE),
])
def test_no_execute_action(status, taints, action):
    assert no_execute_action(status, taints) == action


def test_no_execute_taints_are_mutually_exclusive():
    assert no_execute_taint_for("False") == (NOTREADY, UNREACH)
    assert no_execute_taint_for("Unknown") == (UNREACH, NOTREADY)
    assert no_execute_taint_for("True") is None


def test_swapping_taints_adds_with_time_removes_and_leaves_others():
    other = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    got = with_taints_swapped([other, NOTREADY], [UNREACH], [NOTREADY], "2027-01-01T00:00:00Z")
    assert got == [other, {**UNREACH, "timeAdded": "2027-01-01T00:00:00Z"}]
    assert with_taints_swapped([other, UNREACH], [UNREACH], [NOTREADY], "x") is None


def test_zone_key():
    assert zone_key({"metadata": {"labels": {}}}) == ""
    assert zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "a",
                                             "topology.kubernetes.io/region": "r"}}}) == "r:\x00:a"
    assert zone_key({"metadata": {"labels": {"failure-domain.beta.kubernetes.io/zone": "b"}}}) == ":\x00:b"


def test_tolerations_match_taints_as_upstream():
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert tolerates({"key": "k", "value": "v", "effect": "NoExecute"}, taint)     # "" operator is Equal
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)
    other = {"key": "o", "effect": "NoExecute"}
    t1, t2 = {"key": "k", "operator": "Exists"}, {"operator": "Exists", "tolerationSeconds": 5}
    assert matching_tolerations([taint, other], [t1, t2]) == (True, [t1, t2])
    assert matching_tolerations([taint, other], [t1]) == (False, [])
    assert matching_tolerations([], []) == (True, [])
    assert matching_tolerations([taint], []) == (False, [])
    assert taint_set_diff([UNREACH], [NOTREADY, UNREACH]) == ([], [NOTREADY])


# -- zones and rates -----------------------------------------------------------------------------------

def c(s):
    return {"type": "Ready", "status": s}


@pytest.mark.parametrize("conds,not_ready,state", [
    ([], 0, STATE_NORMAL),
    ([c("True"), c("True")], 0, STATE_NORMAL),
    ([c("False")], 1, STATE_FULL_DISRUPTION),
    ([c("Unknown"), None], 2, STATE_FULL_DISRUPTION),          # no condition counts as not ready
    ([c("True"), c("False"), c("False")], 2, STATE_NORMAL),      # two never make a partial disruption
    ([c("True"), c("False"), c("False"), c("Unknown")], 3, STATE_PARTIAL_DISRUPTION),
    ([c("True")] * 2 + [c("False")] * 3, 3, STATE_PARTIAL_DISRUPTION),   # 0.6
    ([c("True")] * 3 + [c("False")] * 3, 3, STATE_NORMAL),               # 0.5 < 0.55
])
def test_compute_zone_state(conds, not_ready, state):
    assert compute_zone_state(conds, 0.55) == (not_ready, state)


@pytest.mark.parametrize("state,size,qps", [
    (STATE_NORMAL, 3, 0.1), (STATE_FULL_DISRUPTION, 3, 0.1),
    (STATE_PARTIAL_DISRUPTION, 50, 0.0), (STATE_PARTIAL_DISRUPTION, 51, 0.01),
])
def test_tainting_rate_per_zone_state(state, size, qps):
    assert EvictionRates(0.1, 0.01, 50).for_state(state, size) == qps


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_limited_timed_queue_takes_one_node_per_token():
    clock = Clock()
    q = RateLimitedTimedQueue(0.1, clock=clock)
    assert q.add("a", "u") and q.add("b", "u") and not q.add("a", "u")
    done = []

    async def fn(v):
        done.append(v.value)
        return True, 0.0

    asyncio.run(q.try_process(fn))
    assert done == ["a"]                          # burst 1
    clock.t += 5
    asyncio.run(q.try_process(fn))
    assert done == ["a"]
    clock.t += 5                                  # 0.1 qps: one more after 10 s
    asyncio.run(q.try_process(fn))
    assert done == ["a", "b"]
    assert not q.add("a", "u"), "a processed value stays in the set until removed"
    assert q.remove("a") and q.add("a", "u")


def test_a_failed_attempt_is_retried_after_its_wait_and_a_zero_rate_stops_everything():
    clock = Clock()
    q = RateLimitedTimedQueue(10.0, clock=clock)
    q.add("a", "u")
    results = [(False, 1.0), (True, 0.0)]
    seen = []

    async def fn(v):
        seen.append(clock.t)
        return results.pop(0)

    asyncio.run(q.try_process(fn))
    clock.t += 0.5
    asyncio.run(q.try_process(fn))
    assert len(seen) == 1                         # not due yet
    clock.t += 1.0
    asyncio.run(q.try_process(fn))
    assert len(seen) == 2 and q.queued() == []
    q.swap_limiter(0)
    q.remove("a")
    q.add("a", "u")
    clock.t += 100
    asyncio.run(q.try_process(fn))
    assert len(seen) == 2 and q.queued() == ["a"]


def test_update_pod_condition_moves_the_transition_time_only_on_a_status_change():
    st = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t0"}]}
    assert update_pod_condition(st, {"type": "Ready", "status": "False"}, now="t1")
    assert st["conditions"] == [{"type": "Ready", "status": "False", "lastTransitionTime": "t1"}]
    assert not update_pod_condition(st, {"type": "Ready", "status": "False"}, now="t2")
    assert st["conditions"][0]["lastTransitionTime"] == "t1"
    assert update_pod_condition(st, {"type": "DisruptionTarget", "status": "True", "reason": "R"}, now="t3")
    assert st["conditions"][1] == {"type": "DisruptionTarget", "status": "True", "reason": "R",
                                   "lastTransitionTime": "t3"}


# -- flags ---------------------------------------------------------------------------------------------

def test_controller_manager_flags_default_as_upstream():
    _, o, specs = parse([])
    assert (o.node_monitor_period, o.node_monitor_grace_period, o.node_startup_grace_period) == (5.0, 40.0, 60.0)
    assert (o.node_eviction_rate, o.secondary_node_eviction_rate) == (0.1, 0.01)
    assert (o.large_cluster_size_threshold, o.unhealthy_zone_threshold) == (50, 0.55)
    assert o.terminated_pod_gc_threshold == 12500
    names = {s.name for s in specs}
    assert {"node-lifecycle-controller", "taint-eviction-controller", "pod-garbage-collector-controller"} <= names
    _, o, specs = parse(["--node-monitor-grace-period", "8s", "--node-monitor-period", "500ms",
                         "--controllers", "nodelifecycle,podgc,taint-eviction-controller"])
    assert (o.node_monitor_grace_period, o.node_monitor_period) == (8.0, 0.5)
    assert len(specs) == 3


@pytest.mark.parametrize("argv", [["--node-monitor-grace-period", "8x"], ["--node-monitor-period", "0s"],
                                  ["--unhealthy-zone-threshold", "1.5"], ["--node-eviction-rate", "-1"]])
def test_bad_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
