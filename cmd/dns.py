"""kubelab-dns: flags -> config -> wiring (informers -> zone -> DNS server, forwarder, health) -> run."""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field

from kubelab import logs

log = logging.getLogger("kubelab.dns")


@dataclass
class Config:
    kubeconfig: str | None = None
    cluster_domain: str = "cluster.local"
    bind_address: str = "0.0.0.0"
    port: int = 53
    upstreams: list[str] = field(default_factory=list)
    resolv_conf: str = "/etc/resolv.conf"
    health_port: int = 8080
    metrics_port: int = 9153
    ttl: int = 5
    pods: str = "verified"
    dns_service: str = "kube-system/kube-dns"
    sync_timeout: float = 60.0


def parse(argv: list[str] | None = None) -> Config:
    d = Config()
    p = argparse.ArgumentParser(prog="kubelab-dns", description="The kubelab cluster DNS: Services, endpoints and "
                                "pods of the cluster domain from the API; other names forwarded upstream.")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig of the API server (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
    p.add_argument("--cluster-domain", default=d.cluster_domain)
    p.add_argument("--bind-address", default=d.bind_address, help="address to serve DNS, health and metrics on")
    p.add_argument("--port", type=int, default=d.port, help="DNS port (UDP and TCP)")
    p.add_argument("--upstream", action="append", default=[], metavar="IP[:PORT]",
                   help="upstream server for other names (repeatable or comma-separated); overrides --resolv-conf")
    p.add_argument("--resolv-conf", default=d.resolv_conf,
                   help="where upstream servers come from; local stub resolvers (127.0.0.0/8, ::1) are skipped")
    p.add_argument("--health-port", type=int, default=d.health_port, help="/healthz and /readyz (0: off)")
    p.add_argument("--metrics-port", type=int, default=d.metrics_port, help="Prometheus /metrics (0: off)")
    p.add_argument("--ttl", type=int, default=d.ttl, help="TTL of cluster records, seconds")
    p.add_argument("--pods", choices=("verified", "insecure", "disabled"), default=d.pods,
                   help="pod A records <a-b-c-d>.<ns>.pod.<domain>: only for existing pods, for any name, or none")
    p.add_argument("--dns-service", default=d.dns_service, metavar="NAMESPACE/NAME",
                   help="the Service whose cluster IPs are this server's (ns.dns.<domain>)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    a = p.parse_args(argv)
    if not 0 <= a.port < 65536:
        p.error(f"--port {a.port} out of range")
    if not 0 <= a.ttl <= 3600:
        p.error(f"--ttl {a.ttl} out of range (0-3600)")
    logs.setup("dns", a.verbosity)
    ups = [u.strip() for arg in a.upstream for u in arg.split(",") if u.strip()]
    return Config(kubeconfig=a.kubeconfig, cluster_domain=a.cluster_domain.strip(".") or "cluster.local",
                  bind_address=a.bind_address, port=a.port, upstreams=ups, resolv_conf=a.resolv_conf,
                  health_port=a.health_port, metrics_port=a.metrics_port, ttl=a.ttl, pods=a.pods,
                  dns_service=a.dns_service)


def _client(cfg: Config):
    from kubelab.client.kubeconfig import ConfigError
    from kubelab.client.rest import Client
    if cfg.kubeconfig:
        return Client.from_kubeconfig(cfg.kubeconfig, component="dns")
    try:
        return Client.from_kubeconfig(None, component="dns")
    except ConfigError:
        return Client.in_cluster(component="dns")


async def run(cfg: Config) -> None:
    from prometheus_client import CollectorRegistry

    from kubelab.dns.forward import Forwarder, parse_upstream, upstreams_from_resolv_conf
    from kubelab.dns.records import Zone
    from kubelab.dns.server import DNSServer
    from kubelab.dns.source import ClusterSource
    from kubelab.dns.status import DNSCollector, HTTPEndpoints

    client = _client(cfg)
    if cfg.upstreams:
        upstreams = [parse_upstream(u) for u in cfg.upstreams]
    else:
        own = frozenset() if cfg.bind_address in ("0.0.0.0", "::") else frozenset({cfg.bind_address})
        upstreams = upstreams_from_resolv_conf(cfg.resolv_conf, own=own)
    log.info("upstream servers: %s", ", ".join(map(str, upstreams)) or "none")
    zone = Zone(cfg.cluster_domain, ttl=cfg.ttl, pod_mode=cfg.pods, dns_service=cfg.dns_service)
    forwarder = Forwarder(upstreams)
    server = DNSServer(zone, forwarder, host=cfg.bind_address, port=cfg.port)
    source = ClusterSource(client, zone, on_change=server.apply)
    registry = CollectorRegistry()
    registry.register(DNSCollector(server, forwarder, source))
    http = HTTPEndpoints(cfg.bind_address, cfg.health_port, cfg.metrics_port, lambda: server.ready, registry)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await http.start()
        await source.start()
        synced = asyncio.create_task(source.wait_synced())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if synced in done and synced.result():
            server.ready = True
            log.info("ready: %d answers precomputed", server.precomputed)
            # the zone and its rendered answers live long: keep the cyclic collector from walking
            # them again and again (a full collection over them is a latency spike on the query path)
            gc.collect()
            gc.freeze()
        synced.cancel()
        await stopping
    finally:
        await source.stop()
        await http.stop()
        await server.stop()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    from kubelab.client.kubeconfig import ConfigError as KubeConfigError
    from kubelab.dns.forward import ConfigError
    from kubelab.dns.server import ListenError
    cfg = parse(argv)
    try:
        asyncio.run(run(cfg))
    except (OSError, ConfigError, KubeConfigError, ListenError) as e:
        print(f"kubelab-dns: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
