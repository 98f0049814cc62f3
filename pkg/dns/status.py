"""kubelab-dns's HTTP side: /healthz, /readyz (once the informers have synced) and Prometheus /metrics.

The counters live as plain integers in the server, forwarder and source (the query path cannot
afford a metrics library call per query); a collector reads them at scrape time.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelab.client.healthz import health_app, metrics_app

from .forward import Forwarder
from .server import DNSServer, ListenError, describe_os_error, rcode_counts
from .source import ClusterSource

log = logging.getLogger(__name__)


class DNSCollector(Collector):
    """kubelab_dns_* metrics from the live objects."""

    def __init__(self, server: DNSServer, forwarder: Forwarder, source: ClusterSource | None) -> None:
        self.server = server
        self.forwarder = forwarder
        self.source = source

    def collect(self) -> Iterable:
        s, f = self.server, self.forwarder
        req = CounterMetricFamily("kubelab_dns_requests", "DNS queries received", labels=["proto"])
        req.add_metric(["udp"], s.udp_queries)
        req.add_metric(["tcp"], s.tcp_queries)
        yield req
        resp = CounterMetricFamily("kubelab_dns_responses", "DNS responses sent, by rcode", labels=["rcode"])
        for rcode, n in sorted(rcode_counts(s).items()):
            resp.add_metric([rcode], n)
        yield resp
        fast = CounterMetricFamily("kubelab_dns_precomputed_answers", "answers served from pre-rendered entries")
        fast.add_metric([], sum(s.fast_rcodes))
        yield fast
        yield CounterMetricFamily("kubelab_dns_truncated_responses", "UDP responses sent with TC set",
                                  value=s.truncated)
        yield CounterMetricFamily("kubelab_dns_udp_send_dropped", "UDP replies dropped: send buffer full",
                                  value=s.udp_send_dropped)
        yield GaugeMetricFamily("kubelab_dns_precomputed_entries", "pre-rendered answers held", value=s.precomputed)
        yield CounterMetricFamily("kubelab_dns_renders", "answers (re)rendered after zone changes", value=s.renders)
        st = f.stats
        yield CounterMetricFamily("kubelab_dns_forward_requests", "questions for the upstream servers",
                                  value=st["requests"])
        yield CounterMetricFamily("kubelab_dns_forward_cache_hits", "forwarded questions answered from the cache",
                                  value=st["cache_hits"])
        yield CounterMetricFamily("kubelab_dns_forward_cache_misses", "forwarded questions not in the cache",
                                  value=st["cache_misses"])
        yield CounterMetricFamily("kubelab_dns_forward_upstream_queries", "queries sent to upstream servers",
                                  value=st["upstream_queries"])
        yield CounterMetricFamily("kubelab_dns_forward_upstream_failures",
                                  "upstream queries that timed out, failed or were refused",
                                  value=st["upstream_failures"])
        yield GaugeMetricFamily("kubelab_dns_forward_cache_entries", "answers in the forward cache", value=len(f))
        z = GaugeMetricFamily("kubelab_dns_zone_objects", "objects the zone is built from", labels=["kind"])
        for kind, n in s.zone.stats().items():
            z.add_metric([kind], n)
        yield z
        if self.source is not None:
            yield GaugeMetricFamily("kubelab_dns_synced", "1 once the informers have synced",
                                    value=1 if self.source.synced else 0)
            yield CounterMetricFamily("kubelab_dns_zone_commits", "batches of zone updates applied",
                                      value=self.source.commits)


class HTTPEndpoints:
    """Health and metrics listeners; one listener when both ports are the same; 0 turns one off."""

    def __init__(self, host: str, health_port: int, metrics_port: int, ready: Callable[[], bool],
                 registry: CollectorRegistry) -> None:
        self.host = host
        self.health_port = health_port
        self.metrics_port = metrics_port
        self.ready = ready
        self.registry = registry
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        apps: list[tuple[int, web.Application]] = []
        if self.health_port and self.health_port == self.metrics_port:
            apps.append((self.health_port, metrics_app(self.registry, health_app(self.ready))))
        else:
            if self.health_port:
                apps.append((self.health_port, health_app(self.ready)))
            if self.metrics_port:
                apps.append((self.metrics_port, metrics_app(self.registry)))
        for port, app in apps:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port)
            try:
                await site.start()
            except OSError as e:
                await runner.cleanup()
                await self.stop()
                raise ListenError(f"cannot listen on {self.host}:{port}/tcp: {describe_os_error(e)}") from None
            self._runners.append(runner)

    async def stop(self) -> None:
        for r in self._runners:
            await r.cleanup()
        self._runners = []
