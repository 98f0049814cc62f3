"""The HorizontalPodAutoscaler controller against the real apiserver, driven with `kubectl
autoscale`: a target below minReplicas is scaled up and one above maxReplicas down through its
scale subresource (SuccessfulRescale events, status, conditions); with no resource metrics for
its pods (metrics.k8s.io comes from kubelets; hollow nodes have none) ScalingActive turns False
with upstream's FailedGetResourceMetric reason and the replica count is left alone."""
from __future__ import annotations


import pytest
from polling import wait

pytestmark = pytest.mark.integration


def test_hpa_bounds_and_missing_metrics(kubectl, namespace, hollow_cluster):
    ns = namespace
    with hollow_cluster("replicaset,deployment,horizontalpodautoscaling", nodes=2,
                        cm_args=("--horizontal-pod-autoscaler-sync-period", "1s")) as cl:
        kubectl("create", "deployment", "web", "--image=nginx", "--replicas=1", "-n", ns)
        kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p",
                '{"spec":{"template":{"spec":{"schedulerName":"%s","nodeSelector":{"test":"%s"},'
                '"containers":[{"name":"nginx","image":"nginx","resources":{"requests":{"cpu":"100m"}}}]}}}}'
                % (cl.scheduler_name, cl.node_selector["test"]))
        kubectl("autoscale", "deployment", "web", "--min=3", "--max=5", "--cpu-percent=50", "-n", ns)

        def replicas():
            return kubectl.json("get", "deployment", "web", "-n", ns)["spec"]["replicas"]
        wait(lambda: replicas() == 3, 30, "scaled up to minReplicas")
        hpa = wait(lambda: (lambda h: h if (h.get("status") or {}).get("lastScaleTime") else None)(
            kubectl.json("get", "hpa", "web", "-n", ns)), 30, "status with lastScaleTime")
        ev = kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")
        assert "SuccessfulRescale" in ev and "New size: 3; reason: Current number of replicas below " \
                                              "Spec.MinReplicas" in ev

        # no metrics for pods on hollow nodes (no kubelet): ScalingActive False, nothing scaled
        def inactive():
            h = kubectl.json("get", "hpa", "web", "-n", ns)
            c = {x["type"]: x for x in (h.get("status") or {}).get("conditions") or []}.get("ScalingActive")
            return c if c and c["status"] == "False" else None
        cond = wait(inactive, 30, "ScalingActive False")
        assert cond["reason"] == "FailedGetResourceMetric"
        assert cond["message"] == ("the HPA was unable to compute the replica count: unable to get metrics "
                                   "for resource cpu: no metrics returned from resource metrics API")
        assert replicas() == 3
        assert "FailedGetResourceMetric" in kubectl("describe", "hpa", "web", "-n", ns)

        # above maxReplicas: scaled down to it
        kubectl("scale", "deployment", "web", "--replicas=9", "-n", ns)
        wait(lambda: replicas() == 5, 30, "scaled down to maxReplicas")
        st = kubectl.json("get", "hpa", "web", "-n", ns)["status"]
        assert st["desiredReplicas"] == 5
        assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
