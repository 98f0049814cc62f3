"""The namespace controller's condition messages and transitions, as upstream words them."""
from __future__ import annotations

from kubelab.controller.namespace.controller import CONDITION_TYPES, merge_conditions, remaining_messages


def test_remaining_messages():
    got = remaining_messages({"pods.": 3, "widgets.example.com": 1}, {"example.com/hold": 2})
    assert got["NamespaceContentRemaining"] == \
        "Some resources are remaining: pods. has 3 resource instances, widgets.example.com has 1 resource instances"
    assert got["NamespaceFinalizersRemaining"] == \
        "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances"
    assert remaining_messages({}, {}) == {}


def test_conditions_keep_transition_times_while_unchanged():
    first = merge_conditions([], {"NamespaceContentRemaining": "x"}, "T1")
    assert [c["type"] for c in first] == list(CONDITION_TYPES)
    by = {c["type"]: c for c in first}
    assert by["NamespaceContentRemaining"]["status"] == "True"
    assert by["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert by["NamespaceDeletionDiscoveryFailure"] == {
        "type": "NamespaceDeletionDiscoveryFailure", "status": "False", "reason": "ResourcesDiscovered",
        "message": "All resources successfully discovered", "lastTransitionTime": "T1"}
    second = {c["type"]: c for c in merge_conditions(first, {}, "T2")}
    assert second["NamespaceContentRemaining"]["status"] == "False"
    assert second["NamespaceContentRemaining"]["lastTransitionTime"] == "T2"
    assert second["NamespaceDeletionDiscoveryFailure"]["lastTransitionTime"] == "T1"
