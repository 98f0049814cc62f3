"""Which endpoints a service port uses on this node (upstream's CategorizeEndpoints).

"Usable" means Ready; when a policy has no Ready endpoints it falls back to endpoints that are
Serving and Terminating (independently for Cluster and Local). Topology hints are not used.
"""
from __future__ import annotations

from dataclasses import dataclass

from .servicechange import Endpoint, ServicePort


@dataclass(slots=True)
class Categorized:
    cluster: list[Endpoint]         # endpoints for Cluster traffic policy ([] if never used)
    local: list[Endpoint]           # endpoints for Local traffic policy ([] if never used)
    reachable: list[Endpoint]       # union of both: every endpoint that gets a KUBE-SEP chain
    has_any: bool                   # the service has usable endpoints anywhere in the cluster


def categorize_endpoints(endpoints: list[Endpoint], svc: ServicePort) -> Categorized:
    cluster: list[Endpoint] = []
    local: list[Endpoint] = []
    has_any = False
    uses_cluster = svc.uses_cluster_endpoints
    if uses_cluster:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:
            cluster = [e for e in endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return Categorized(cluster, [], cluster, has_any)
    local_ready = local_term = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.is_local
        elif e.serving and e.terminating:
            has_any = True
            local_term = local_term or e.is_local
    use_terminating = False
    if local_ready:
        local = [e for e in endpoints if e.is_local and e.ready]
    elif local_term:
        use_terminating = True
        local = [e for e in endpoints if e.is_local and e.serving and e.terminating]
    if not uses_cluster:
        return Categorized([], local, local, has_any)
    if not use_terminating:
        # cluster holds every Ready endpoint, so it already contains the Ready local ones
        return Categorized(cluster, local, cluster, has_any)
    merged = {e.string: e for e in cluster}
    for e in local:
        merged[e.string] = e
    return Categorized(cluster, local, [merged[k] for k in sorted(merged)], has_any)
