"""The pod garbage collector's Prometheus metrics, upstream's names and reason labels."""
from __future__ import annotations

from prometheus_client import Counter

DELETING_PODS = Counter("pod_gc_collector_force_delete_pods_total",
                        "Number of pods that are being forcefully deleted since the Pod GC Controller started.",
                        ["namespace", "reason"])
DELETING_POD_ERRORS = Counter("pod_gc_collector_force_delete_pod_errors_total",
                              "Number of errors encountered when forcefully deleting the pods since the Pod GC "
                              "Controller started.", ["namespace", "reason"])

REASON_TERMINATED = "terminated"
REASON_OUT_OF_SERVICE = "out-of-service"
REASON_ORPHANED = "orphaned"
REASON_UNSCHEDULED = "unscheduled"
