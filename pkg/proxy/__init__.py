"""kube-proxy for kubelab (`kubelab-proxy`): Services programmed into the kernel.

servicechange.py     Service / EndpointSlice objects -> service-port and endpoint maps, with change
                     tracking between syncs (upstream's ServiceChangeTracker, EndpointSliceCache)
topology.py          which endpoints a service port uses: Cluster / Local policy, terminating fallback
conntrack.py         flushing stale UDP conntrack entries with the `conntrack` tool
syncrunner.py        the bounded-frequency sync runner (minSyncPeriod, burst, periodic full syncs)
metrics.py           Prometheus metrics with upstream's names (kubeproxy_*)
server.py            /healthz and /metrics HTTP servers
iptables/rules.py    pure rule generation: maps -> iptables-restore text (upstream's chain layout)
iptables/runner.py   the iptables binaries: backend detection (nft or legacy), restore, jump rules
iptables/proxier.py  the iptables proxier: informer events -> partial / full syncs
"""
