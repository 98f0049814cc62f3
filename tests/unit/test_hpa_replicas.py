"""The HorizontalPodAutoscaler's replica calculation and behavior, cases after upstream's
replica_calculator_test.go and horizontal_test.go."""
from __future__ import annotations

import pytest

from kubelab.controller.podautoscaler import replicas as rc


def pod(name, cpu="1000m", ready=True, phase="Running", deleting=False):
    p = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
         "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


@pytest.mark.parametrize("usage,target,want", [
    ([300, 500, 700], 30, 5),              # 50% against 30%: scale up
    ([100, 300, 500, 250, 250], 50, 3),    # 28% against 50%: scale down
    ([1010, 1030, 1020], 100, 3),          # 102%: within the 10% tolerance
])
def test_utilization(usage, target, want):
    pods = [pod(f"p{i}") for i in range(len(usage))]
    n, util, _ = rc.resource_replicas(len(pods), pods, {f"p{i}": u for i, u in enumerate(usage)}, "cpu",
                                      target_utilization=target)
    assert n == want
    assert util == int(sum(usage) * 100 / (1000 * len(usage)))


def test_missing_pods_count_as_full_usage_when_scaling_down():
    pods = [pod(n) for n in "abcd"]
    n, _, _ = rc.resource_replicas(4, pods, {"a": 100, "b": 100, "c": 100}, "cpu", target_utilization=50)
    assert n == 3          # d assumed at its request: 1300/4000 = 32.5% -> ceil(0.65 * 4)


def test_unready_pods_count_as_idle_when_scaling_up():
    pods = [pod("a"), pod("b", ready=False)]
    n, _, _ = rc.resource_replicas(2, pods, {"a": 900, "b": 100}, "cpu", target_utilization=50)
    assert n == 2          # 900/2000 = 45%: within tolerance of 50%, no change


def test_ignored_and_failed_pods_and_errors():
    pods = [pod("a"), pod("b", deleting=True), pod("c", phase="Failed")]
    n, _, _ = rc.resource_replicas(3, pods, {"a": 1000, "b": 5000, "c": 5000}, "cpu", target_utilization=50)
    assert n == 2
    with pytest.raises(rc.MetricsError, match="no pods returned by selector"):
        rc.resource_replicas(1, [], {}, "cpu", target_utilization=50)
    no_req = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]},
              "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    with pytest.raises(rc.MetricsError, match="missing request for cpu in container c of Pod x"):
        rc.resource_replicas(1, [no_req], {"x": 5}, "cpu", target_utilization=50)


def test_average_value():
    pods = [pod(f"p{i}") for i in range(4)]
    n, avg, _ = rc.resource_replicas(4, pods, {f"p{i}": 2 * 2**30 for i in range(4)}, "memory",
                                     target_average=2**30)
    assert n == 8 and avg == 2 * 2**30


def test_stabilization_window_holds_scale_down():
    rec, hist = rc.stabilize(3, 2, [(900.0, 5)], 1000.0, up_window=0, down_window=300)
    assert rec == 3 and hist[-1] == (1000.0, 2)
    rec, _ = rc.stabilize(3, 2, [(600.0, 5)], 1000.0, up_window=0, down_window=300)    # out of the window
    assert rec == 2
    rec, _ = rc.stabilize(3, 8, [(990.0, 4)], 1000.0, up_window=60, down_window=300)
    assert rec == 4        # scale up stabilized to the lowest recent recommendation


def test_policies():
    up, down = rc.behavior({"spec": {}})
    assert rc.scale_limit(10, 100, up, [], 1000.0, True) == 20                  # max(10+4, 10*2)
    assert rc.scale_limit(2, 100, up, [], 1000.0, True) == 6                    # max(2+4, 2*2)
    assert rc.scale_limit(20, 100, up, [(995.0, 10)], 1000.0, True) == 20       # already doubled in the period
    assert rc.scale_limit(10, 1, down, [], 1000.0, False) == 1
    slow = {"selectPolicy": "Min", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60},
                                                {"type": "Percent", "value": 50, "periodSeconds": 60}]}
    assert rc.scale_limit(10, 1, slow, [], 1000.0, False) == 9
    assert rc.scale_limit(10, 1, {"selectPolicy": "Disabled"}, [], 1000.0, False) == 10


def test_bounds():
    assert rc.within_bounds(0, 1, 5)[:2] == (1, "TooFewReplicas")
    assert rc.within_bounds(9, 1, 5)[:2] == (5, "TooManyReplicas")
    assert rc.within_bounds(3, 1, 5)[:2] == (3, "DesiredWithinRange")
