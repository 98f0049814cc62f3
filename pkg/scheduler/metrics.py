"""kube-scheduler's Prometheus metrics, with upstream's names (subsystem "scheduler"), registered
once per process in the default registry that the scheduler's SecureServer serves on /metrics:

  scheduler_schedule_attempts_total{result,profile}          scheduled | unschedulable | error
  scheduler_scheduling_attempt_duration_seconds{result,profile}
  scheduler_pending_pods{queue}                              active | backoff | unschedulable | gated
  scheduler_preemption_attempts_total
  scheduler_preemption_victims                               victims per preemption
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"
QUEUES = ("active", "backoff", "unschedulable", "gated")
# upstream: metrics.ExponentialBuckets(0.001, 2, 15) and ExponentialBuckets(1, 2, 7)
DURATION_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
VICTIM_BUCKETS = tuple(float(2 ** i) for i in range(7))


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or REGISTRY
        ns = "scheduler"
        self.schedule_attempts = Counter(
            "schedule_attempts", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod "
            "could not be scheduled, while 'error' means an internal scheduler problem.", ["result", "profile"],
            namespace=ns, registry=r)
        self.attempt_duration = Histogram(
            "scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds (scheduling algorithm "
            "+ binding)", ["result", "profile"], namespace=ns, buckets=DURATION_BUCKETS, registry=r)
        self.pending_pods = Gauge(
            "pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; "
            "'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in "
            "unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of "
            "unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            ["queue"], namespace=ns, registry=r)
        self.preemption_attempts = Counter("preemption_attempts", "Total preemption attempts in the cluster till "
                                           "now", namespace=ns, registry=r)
        self.preemption_victims = Histogram("preemption_victims", "Number of selected preemption victims",
                                            namespace=ns, buckets=VICTIM_BUCKETS, registry=r)

    def observe_attempt(self, result: str, profile: str, seconds: float) -> None:
        self.schedule_attempts.labels(result=result, profile=profile).inc()
        self.attempt_duration.labels(result=result, profile=profile).observe(seconds)

    def watch_queue(self, counts: Callable[[], dict[str, int]]) -> None:
        """scheduler_pending_pods reads the queue's counts when scraped (a pod being scheduled is in
        none of the queues, as upstream)."""
        def one(q: str) -> Callable[[], float]:
            return lambda: float(counts().get(q, 0))
        for q in QUEUES:
            self.pending_pods.labels(queue=q).set_function(one(q))


_metrics: SchedulerMetrics | None = None


def metrics() -> SchedulerMetrics:
    """The process's scheduler metrics (registered on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = SchedulerMetrics()
    return _metrics
