"""kube-proxy's Prometheus metrics, with upstream's names (subsystem "kubeproxy").

Each proxier has its own registry, so several can live in one process (tests, benchmarks).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# upstream: metrics.ExponentialBuckets(0.001, 2, 15)
SYNC_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
# upstream network programming latency buckets: 0.25 s .. ~15 min, finer at the low end
PROGRAMMING_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                       23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45,
                       46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 120, 180, 240, 300, 360, 420,
                       480, 540, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700, 3000)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ns = "kubeproxy"
        self.sync_duration = Histogram("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
                                       namespace=ns, buckets=SYNC_BUCKETS, registry=r)
        self.sync_full_duration = Histogram("sync_full_proxy_rules_duration_seconds",
                                            "SyncProxyRules latency in seconds for full resyncs",
                                            namespace=ns, buckets=SYNC_BUCKETS, registry=r)
        self.sync_partial_duration = Histogram("sync_partial_proxy_rules_duration_seconds",
                                               "SyncProxyRules latency in seconds for partial resyncs",
                                               namespace=ns, buckets=SYNC_BUCKETS, registry=r)
        self.last_timestamp = Gauge("sync_proxy_rules_last_timestamp_seconds",
                                    "The last time proxy rules were successfully synced", namespace=ns, registry=r)
        self.last_queued_timestamp = Gauge("sync_proxy_rules_last_queued_timestamp_seconds",
                                           "The last time a sync of proxy rules was queued", namespace=ns,
                                           registry=r)
        self.network_programming = Histogram("network_programming_duration_seconds",
                                             "In Cluster Network Programming Latency in seconds", namespace=ns,
                                             buckets=PROGRAMMING_BUCKETS, registry=r)
        self.endpoint_changes_pending = Gauge("sync_proxy_rules_endpoint_changes_pending",
                                              "Pending proxy rules Endpoint changes", namespace=ns, registry=r)
        self.endpoint_changes_total = Counter("sync_proxy_rules_endpoint_changes",
                                              "Cumulative proxy rules Endpoint changes", namespace=ns, registry=r)
        self.service_changes_pending = Gauge("sync_proxy_rules_service_changes_pending",
                                             "Pending proxy rules Service changes", namespace=ns, registry=r)
        self.service_changes_total = Counter("sync_proxy_rules_service_changes",
                                             "Cumulative proxy rules Service changes", namespace=ns, registry=r)
        self.iptables_rules_total = Gauge("sync_proxy_rules_iptables_total",
                                          "Total number of iptables rules owned by kube-proxy", ["table"],
                                          namespace=ns, registry=r)
        self.iptables_rules_last = Gauge("sync_proxy_rules_iptables_last",
                                         "Number of iptables rules written by kube-proxy in last sync", ["table"],
                                         namespace=ns, registry=r)
        self.restore_failures = Counter("sync_proxy_rules_iptables_restore_failures",
                                        "Cumulative proxy iptables restore failures", namespace=ns, registry=r)
        self.partial_restore_failures = Counter("sync_proxy_rules_iptables_partial_restore_failures",
                                                "Cumulative proxy iptables partial restore failures",
                                                namespace=ns, registry=r)
        self.no_local_endpoints = Gauge("sync_proxy_rules_no_local_endpoints_total",
                                        "Number of services with a Local traffic policy and no endpoints",
                                        ["traffic_policy"], namespace=ns, registry=r)
