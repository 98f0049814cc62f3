"""The node lifecycle controller's Prometheus metrics, upstream's names (subsystem node_collector)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

ZONE_HEALTH = Gauge("node_collector_zone_health", "Gauge measuring percentage of healthy nodes per zone.", ["zone"])
ZONE_SIZE = Gauge("node_collector_zone_size", "Gauge measuring number of registered Nodes per zones.", ["zone"])
UNHEALTHY_NODES = Gauge("node_collector_unhealthy_nodes_in_zone",
                        "Gauge measuring number of not Ready Nodes per zones.", ["zone"])
EVICTIONS = Counter("node_collector_evictions_total",
                    "Number of Node evictions that happened since current instance of NodeController started.",
                    ["zone"])


def zone_label(zone: str) -> str:
    """The zone key as a label value: "region:zone" (upstream's key has a NUL byte in the middle)."""
    return zone.replace(":\x00:", ":")
