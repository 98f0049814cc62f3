"""kubelab-proxy: flags -> ProxierConfig -> iptables proxier + informers + health/metrics servers."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys

from kubelab import logs
from kubelab.cliflags import boolean, duration

log = logging.getLogger("kubelab.proxy")

parse_duration = duration     # Go durations in seconds, for argparse
_bool = boolean


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab-proxy", description="kubelab's kube-proxy: Services in iptables.")
    p.add_argument("--kubeconfig", default="", help="kubeconfig with the API server and credentials "
                                                    "(default: in-cluster, then $KUBECONFIG / ~/.kube/config)")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the hostname)")
    p.add_argument("--proxy-mode", default="iptables",
                   help="iptables or ipvs (ipvs falls back to iptables, loudly, where the kernel lacks IP_VS)")
    p.add_argument("--ipvs-scheduler", default="rr", help="IPVS scheduler: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, "
                                                          "sed, nq, mh")
    p.add_argument("--ipvs-min-sync-period", type=parse_duration, default=1.0,
                   help="IPVS mode: minimum interval between syncs")
    p.add_argument("--ipvs-sync-period", type=parse_duration, default=30.0,
                   help="IPVS mode: interval of full syncs")
    p.add_argument("--ipvs-exclude-cidrs", default="",
                   help="comma-separated CIDRs whose IPVS virtual servers kube-proxy leaves alone")
    p.add_argument("--cluster-cidr", default="", help="the pods' CIDR: traffic from outside it to a "
                                                      "ClusterIP is masqueraded")
    p.add_argument("--masquerade-all", type=_bool, nargs="?", const=True, default=False,
                   help="SNAT all traffic sent via Service cluster IPs")
    p.add_argument("--iptables-masquerade-bit", type=int, default=14, help="fwmark bit for SNAT (0-31)")
    p.add_argument("--iptables-min-sync-period", type=parse_duration, default=1.0,
                   help="minimum interval between syncs (e.g. 1s, 500ms)")
    p.add_argument("--iptables-sync-period", type=parse_duration, default=30.0,
                   help="interval of full syncs, which also repair rules changed by hand (e.g. 30s)")
    p.add_argument("--iptables-localhost-nodeports", type=_bool, nargs="?", const=True, default=True,
                   help="accept NodePort connections on 127.0.0.1 (sets route_localnet)")
    p.add_argument("--nodeport-addresses", default="",
                   help="comma-separated CIDRs (or 'primary') whose local addresses accept NodePorts "
                        "(default: all)")
    p.add_argument("--bind-address", default="0.0.0.0", help="this node's IP (0.0.0.0: from the Node object)")
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256", help="IP:port for /healthz ('' disables)")
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10249", help="IP:port for /metrics ('' disables)")
    p.add_argument("--cleanup", action="store_true", help="remove kube-proxy's rules and chains, then exit")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    return p


def _check_cidrs(p: argparse.ArgumentParser, a: argparse.Namespace) -> tuple[str | None, tuple[str, ...]]:
    cluster = None
    for c in filter(None, (x.strip() for x in a.cluster_cidr.split(","))):
        try:
            net = ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--cluster-cidr: invalid CIDR {c!r}")
        if net.version == 4 and cluster is None:
            cluster = str(net)
    addrs = []
    for c in filter(None, (x.strip() for x in a.nodeport_addresses.split(","))):
        if c != "primary":
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                p.error(f"--nodeport-addresses: invalid CIDR {c!r}")
        addrs.append(c)
    if not 0 <= a.iptables_masquerade_bit <= 31:
        p.error("--iptables-masquerade-bit must be within 0-31")
    return cluster, tuple(addrs)


async def _node_ip(client, hostname: str, bind_address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(bind_address)
        if not ip.is_unspecified and ip.version == 4:
            return str(ip)
    except ValueError:
        pass
    try:
        node = await client.get("v1", "nodes", None, hostname)
    except Exception as e:   # no Node object (yet): LB source ranges just won't allow the node itself
        log.info("cannot read Node %s for its IP: %s", hostname, e)
        return None
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP" and ":" not in str(a.get("address")):
            return a["address"]
    return None


async def run(a: argparse.Namespace, cluster_cidr: str | None, nodeport_addresses: tuple[str, ...]) -> int:
    from kubelab.client.informer import SharedInformerFactory
    from kubelab.client.rest import Client
    from kubelab.proxy.iptables.proxier import (Proxier, ProxierConfig, cleanup_leftovers, register_informers,
                                                wait_synced)
    from kubelab.proxy.iptables.rules import RuleConfig
    from kubelab.proxy.iptables.runner import IPTables
    from kubelab.proxy.server import HealthServer, split_host_port

    ipt = await IPTables.detect()
    log.info("using iptables backend=%s", ipt.backend)
    if a.cleanup:     # both modes' leftovers, as upstream's --cleanup
        from kubelab.proxy.ipvs import state as ipvs_state
        from kubelab.proxy.ipvs.proxier import cleanup_leftovers as cleanup_ipvs
        # the modes share chain names and refer to each other's chains: their chains go together
        ok = await cleanup_leftovers(ipt, ipvs_state.JUMP_RULES, {"nat": ipvs_state.NAT_CHAINS,
                                                                   "filter": ipvs_state.FILTER_CHAINS})
        ok = await cleanup_ipvs(ipt) and ok     # virtual servers, kube-ipvs0, ipsets
        return 0 if ok else 1

    if a.kubeconfig:
        client = Client.from_kubeconfig(a.kubeconfig, component="kube-proxy")
    else:
        try:
            client = Client.in_cluster(component="kube-proxy")
        except Exception:
            client = Client.from_kubeconfig(None, component="kube-proxy")
    hostname = (a.hostname_override or socket.gethostname()).strip().lower()
    servers = []
    tasks: list[asyncio.Task] = []
    factory = SharedInformerFactory(client)
    try:
        node_ip = await _node_ip(client, hostname, a.bind_address)
        rules = RuleConfig(masquerade_bit=a.iptables_masquerade_bit, masquerade_all=a.masquerade_all,
                           cluster_cidr=cluster_cidr, node_ip=node_ip,
                           localhost_nodeports=a.iptables_localhost_nodeports)
        if not cluster_cidr and not a.masquerade_all:
            log.warning("neither --cluster-cidr nor --masquerade-all is set: traffic from outside the cluster "
                        "to ClusterIPs is not masqueraded")
        mode = "iptables"
        if a.proxy_mode == "ipvs":
            from kubelab.proxy.ipvs.kernel import IPVSUnavailable, check_available, ensure_dummy
            try:
                await asyncio.to_thread(check_available, a.ipvs_scheduler)
                await asyncio.to_thread(ensure_dummy, set())
                mode = "ipvs"
            except IPVSUnavailable as e:
                log.error("CANNOT USE THE IPVS PROXIER: %s. FALLING BACK TO iptables MODE", e)
                print(f"kubelab-proxy: cannot use the IPVS proxier: {e}; falling back to iptables", file=sys.stderr)
        if mode == "ipvs":
            from kubelab.proxy.ipvs.proxier import IPVSProxier, IPVSProxierConfig, LinuxKernel
            from kubelab.proxy.ipvs.state import IPVSConfig
            icfg = IPVSProxierConfig(
                hostname=hostname, ipvs=IPVSConfig(scheduler=a.ipvs_scheduler, masquerade_bit=a.iptables_masquerade_bit,
                                                   masquerade_all=a.masquerade_all, cluster_cidr=cluster_cidr,
                                                   node_ip=node_ip),
                min_sync_period=a.ipvs_min_sync_period, sync_period=a.ipvs_sync_period or 30.0,
                nodeport_addresses=nodeport_addresses,
                exclude_cidrs=tuple(c.strip() for c in a.ipvs_exclude_cidrs.split(",") if c.strip()))
            proxier = IPVSProxier(ipt, LinuxKernel(), icfg)
            cfg = icfg
        else:
            cfg = ProxierConfig(hostname=hostname, rules=rules, min_sync_period=a.iptables_min_sync_period,
                                sync_period=a.iptables_sync_period or 30.0, nodeport_addresses=nodeport_addresses)
            proxier = Proxier(ipt, cfg)
        await proxier.prepare()
        if a.healthz_bind_address:
            h, port = split_host_port(a.healthz_bind_address, 10256)
            servers.append(HealthServer(h, port, proxier.healthy, lambda: proxier.last_updated))
        if a.metrics_bind_address:
            h, port = split_host_port(a.metrics_bind_address, 10249)
            servers.append(HealthServer(h, port, proxier.healthy, lambda: proxier.last_updated,
                                        registry=proxier.metrics.registry, proxy_mode=mode))
        for s in servers:
            await s.start()
        informers = register_informers(factory, proxier)
        factory.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(proxier.run(), name="sync-loop"),
                 asyncio.create_task(wait_synced(informers, proxier), name="wait-synced")]
        log.info("kube-proxy started node=%s mode=%s backend=%s minSyncPeriod=%gs syncPeriod=%gs",
                 hostname, mode, ipt.backend, cfg.min_sync_period, cfg.sync_period)
        await stop.wait()
        log.info("shutting down")
        return 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await factory.shutdown()
        for s in servers:
            await s.stop()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    a = p.parse_args(argv)
    logs.setup("proxy", a.verbosity)
    a.proxy_mode = (a.proxy_mode or "iptables").lower()
    if a.proxy_mode not in ("iptables", "ipvs"):
        p.error(f"--proxy-mode: invalid value {a.proxy_mode!r}: must be iptables, ipvs or blank "
                "(blank means iptables)")
    from kubelab.proxy.ipvs.state import SCHEDULERS
    if a.ipvs_scheduler not in SCHEDULERS:
        p.error(f"--ipvs-scheduler: invalid value {a.ipvs_scheduler!r}: must be one of {', '.join(SCHEDULERS)}")
    for c in filter(None, (x.strip() for x in a.ipvs_exclude_cidrs.split(","))):
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--ipvs-exclude-cidrs: invalid CIDR {c!r}")
    cluster_cidr, nodeport_addresses = _check_cidrs(p, a)
    try:
        rc = asyncio.run(run(a, cluster_cidr, nodeport_addresses))
    except KeyboardInterrupt:
        rc = 130
    except Exception as e:   # errors are for people: one line
        from kubelab.client.kubeconfig import ConfigError
        from kubelab.proxy.iptables.runner import IPTablesError
        if isinstance(e, (ConfigError, IPTablesError, OSError)):
            print(f"kubelab-proxy: {e}", file=sys.stderr)
            rc = 1
        else:
            raise
    sys.exit(rc)


if __name__ == "__main__":
    main()
