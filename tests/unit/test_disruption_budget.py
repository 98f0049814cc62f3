"""PodDisruptionBudget status arithmetic, from upstream's disruption controller cases."""
from __future__ import annotations

import pytest

from kubelab.controller.disruption.budget import BudgetError, build_status, expected_and_desired, sync_failed_status


def pod(name, ready=True, deleting=False):
    p = {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


@pytest.mark.parametrize("spec,npods,scale,want", [
    ({"minAvailable": 2}, 3, None, (3, 2)),            # a number counts the pods, no controller needed
    ({"minAvailable": "50%"}, 3, 4, (4, 2)),
    ({"minAvailable": "51%"}, 3, 4, (4, 3)),           # rounded up
    ({"maxUnavailable": 1}, 3, 4, (4, 3)),
    ({"maxUnavailable": "30%"}, 3, 10, (10, 7)),       # 3 unavailable (rounded up)
    ({"maxUnavailable": 5}, 3, 3, (3, 0)),
    ({}, 2, None, (2, 1)),                              # default minAvailable 1
])
def test_expected_and_desired(spec, npods, scale, want):
    assert expected_and_desired(spec, [pod(str(i)) for i in range(npods)], scale) == want


def test_percentages_and_max_unavailable_need_controllers():
    with pytest.raises(BudgetError, match="found no controllers"):
        expected_and_desired({"maxUnavailable": 1}, [pod("a")], None)
    with pytest.raises(BudgetError):
        expected_and_desired({"minAvailable": "10%"}, [pod("a")], None)


def test_status_counts_healthy_pods_and_recent_disruptions():
    pdb = {"metadata": {"name": "b", "generation": 3}, "spec": {"minAvailable": 2},
           "status": {"disruptedPods": {"a": "2026-01-01T00:00:00Z", "gone": "2026-01-01T00:00:00Z"}}}
    pods = [pod("a"), pod("b"), pod("c"), pod("d", ready=False), pod("e", deleting=True)]
    st = build_status(pdb, pods, None, 1767225600.0 + 30, "T")      # 30 s after the eviction of a
    assert st["disruptedPods"] == {"a": "2026-01-01T00:00:00Z"}     # 'gone' has no pod any more
    assert (st["currentHealthy"], st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (2, 2, 5, 0)
    assert st["observedGeneration"] == 3
    assert st["conditions"][0]["reason"] == "InsufficientPods" and st["conditions"][0]["status"] == "False"
    st = build_status(pdb, pods, None, 1767225600.0 + 300, "T")     # the eviction timed out
    assert "disruptedPods" not in st and st["disruptionsAllowed"] == 1
    assert st["conditions"][0]["reason"] == "SufficientPods"


def test_sync_failed_allows_nothing():
    st = sync_failed_status({"metadata": {"generation": 2}, "status": {"disruptionsAllowed": 4}}, "boom", "T")
    assert st["disruptionsAllowed"] == 0 and st["conditions"][0]["reason"] == "SyncFailed"
