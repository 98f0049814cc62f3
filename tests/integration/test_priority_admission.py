"""The Priority admission plugin through the real kubectl: the system PriorityClasses exist, a pod
gets spec.priority and preemptionPolicy from its class (or the global default), and an unknown
class or a contradicting priority is refused with upstream's messages."""
from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration

POD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  {extra}
  containers: [{{name: c, image: nginx}}]
"""


def test_priority_from_classes(kubectl, namespace):
    ns = namespace
    out = kubectl("get", "priorityclasses")
    assert "system-node-critical" in out and "2000001000" in out and "system-cluster-critical" in out
    cls = f"batch-{uuid.uuid4().hex[:5]}"
    kubectl("create", "priorityclass", cls, "--value=500", "--preemption-policy=Never")
    kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name="a", extra=f"priorityClassName: {cls}"))
    spec = kubectl.json("get", "pod", "a", "-n", ns)["spec"]
    assert (spec["priority"], spec["preemptionPolicy"]) == (500, "Never")
    kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name="b", extra="priorityClassName: system-cluster-critical"))
    assert kubectl.json("get", "pod", "b", "-n", ns)["spec"]["priority"] == 2000000000
    kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name="c", extra="hostname: c"))
    spec = kubectl.json("get", "pod", "c", "-n", ns)["spec"]
    assert spec["priority"] == 0 and spec["preemptionPolicy"] == "PreemptLowerPriority"

    p = kubectl.run("apply", "-n", ns, "-f", "-", input=POD.format(name="d", extra="priorityClassName: nope"),
                    check=False)
    assert p.returncode != 0 and 'pods "d" is forbidden: no PriorityClass with name nope was found' in p.stderr
    p = kubectl.run("apply", "-n", ns, "-f", "-",
                    input=POD.format(name="e", extra=f"priorityClassName: {cls}\n  priority: 7"), check=False)
    assert ('pods "e" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority '
            'admission controller computed 500 from the given PriorityClass name') in p.stderr
    kubectl("delete", "priorityclass", cls)
