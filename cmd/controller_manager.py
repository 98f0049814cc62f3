"""kubelab-controller-manager: flags -> ControllerOptions -> leader election -> the selected controllers."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys

from kubelab import logs
from kubelab.cliflags import add_bool, add_leader_election, duration, leader_election_config

log = logging.getLogger("kubelab.controller-manager")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab-controller-manager",
                                description="kubelab's kube-controller-manager: the cluster's control loops.")
    p.add_argument("--kubeconfig", default="", help="kubeconfig with the API server and credentials")
    p.add_argument("--controllers", default="*",
                   help="comma-separated controllers to enable: '*' all on by default, 'foo' enables foo, "
                        "'-foo' disables foo")
    add_bool(p, "--allocate-node-cidrs", False, "allocate pod CIDRs to nodes from --cluster-cidr")
    p.add_argument("--cluster-cidr", default="", help="CIDR range of the pods (comma-separated for dual stack)")
    p.add_argument("--node-cidr-mask-size", type=int, default=0, help="mask size of a node's pod CIDR (single stack)")
    p.add_argument("--node-cidr-mask-size-ipv4", type=int, default=0, help="mask size of a node's IPv4 pod CIDR")
    p.add_argument("--node-cidr-mask-size-ipv6", type=int, default=0, help="mask size of a node's IPv6 pod CIDR")
    p.add_argument("--service-cluster-ip-range", default="",
                   help="CIDR of the Services' cluster IPs (kept out of the node CIDRs)")
    p.add_argument("--root-ca-file", default="", help="the cluster CA, published as kube-root-ca.crt in every namespace")
    p.add_argument("--concurrent-replicaset-syncs", type=int, default=5,
                   help="ReplicaSets synced at once")
    p.add_argument("--concurrent-deployment-syncs", type=int, default=5, help="Deployments synced at once")
    p.add_argument("--concurrent-endpoint-syncs", type=int, default=5, help="Services whose Endpoints are synced at once")
    p.add_argument("--concurrent-resource-quota-syncs", type=int, default=5, help="ResourceQuotas recounted at once")
    p.add_argument("--resource-quota-sync-period", type=duration, default=300.0,
                   help="how often every quota is recounted in full")
    p.add_argument("--horizontal-pod-autoscaler-sync-period", type=duration, default=15.0,
                   help="how often every HorizontalPodAutoscaler is looked at")
    p.add_argument("--cluster-signing-cert-file", default="",
                   help="PEM CA certificate the CSR signer issues cluster-scoped certificates with")
    p.add_argument("--cluster-signing-key-file", default="", help="its PEM private key")
    p.add_argument("--cluster-signing-duration", type=duration, default=365 * 86400.0,
                   help="the longest validity of a signed certificate (default 8760h0m0s)")
    p.add_argument("--concurrent-gc-syncs", type=int, default=20, help="garbage collector workers")
    p.add_argument("--concurrent-namespace-syncs", type=int, default=10, help="namespaces emptied at once")
    p.add_argument("--concurrent-daemonset-syncs", type=int, default=2, help="DaemonSets synced at once")
    p.add_argument("--concurrent-statefulset-syncs", type=int, default=5, help="StatefulSets synced at once")
    p.add_argument("--concurrent-job-syncs", type=int, default=5, help="Jobs synced at once")
    p.add_argument("--concurrent-cron-job-syncs", type=int, default=5, help="CronJobs synced at once")
    p.add_argument("--concurrent-ttl-after-finished-syncs", type=int, default=5,
                   help="TTL-after-finished workers (finished Jobs deleted at once)")
    p.add_argument("--node-monitor-period", type=duration, default=5.0,
                   help="how often the node lifecycle controller checks the nodes' health")
    p.add_argument("--node-monitor-grace-period", type=duration, default=40.0,
                   help="how long a node may go without a heartbeat or lease renewal before it is marked unhealthy")
    p.add_argument("--node-startup-grace-period", type=duration, default=60.0,
                   help="how long a starting node may be unresponsive before it is marked unhealthy")
    p.add_argument("--node-eviction-rate", type=float, default=0.1,
                   help="nodes per second tainted for eviction in a healthy zone")
    p.add_argument("--secondary-node-eviction-rate", type=float, default=0.01,
                   help="nodes per second tainted for eviction in an unhealthy zone (0 in small clusters)")
    p.add_argument("--large-cluster-size-threshold", type=int, default=50,
                   help="zones above this many nodes are large: their unhealthy-zone eviction rate is not 0")
    p.add_argument("--unhealthy-zone-threshold", type=float, default=0.55,
                   help="share of not-ready nodes (at least 3) that makes a zone unhealthy")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                   help="terminated pods kept before the pod garbage collector deletes them (0: never)")
    add_leader_election(p, "kube-controller-manager")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the HTTPS health and metrics server")
    p.add_argument("--secure-port", type=int, default=10257, help="its port (0: no server)")
    p.add_argument("--cert-dir", default="", help="where its self-signed certificate goes (default: a temp dir)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    return p


def _read_ca(p: argparse.ArgumentParser, path: str) -> str:
    if not path:
        return ""
    try:
        text = open(path).read()
    except OSError as e:
        p.error(f"--root-ca-file: cannot read {path}: {e.strerror}")
    if "-----BEGIN CERTIFICATE-----" not in text:
        p.error(f"--root-ca-file: {path} holds no PEM certificate")
    return text


def _signing(p: argparse.ArgumentParser, cert: str, key: str, dur: float) -> dict:
    if bool(cert) != bool(key):
        p.error("--cluster-signing-cert-file and --cluster-signing-key-file must be given together")
    if not cert:
        return {"cluster_signing_duration": dur}
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        cert_pem, key_pem = open(cert, "rb").read(), open(key, "rb").read()
    except OSError as e:
        p.error(f"cannot read the cluster signing certificate or key: {e.strerror}: {e.filename}")
    try:
        x509.load_pem_x509_certificate(cert_pem)
        serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as e:
        p.error(f"invalid cluster signing certificate or key: {e}")
    return {"cluster_signing_cert_pem": cert_pem, "cluster_signing_key_pem": key_pem,
            "cluster_signing_duration": dur}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, object, list]:
    from kubelab.controller.manager import ControllerOptions, SelectionError, select
    p = build_parser()
    a = p.parse_args(argv)
    cidrs = [c.strip() for c in a.cluster_cidr.split(",") if c.strip()]
    for c in cidrs:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--cluster-cidr: invalid CIDR {c!r}")
    svc = [c.strip() for c in a.service_cluster_ip_range.split(",") if c.strip()]
    for c in svc:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--service-cluster-ip-range: invalid CIDR {c!r}")
    if a.node_cidr_mask_size and (a.node_cidr_mask_size_ipv4 or a.node_cidr_mask_size_ipv6):
        p.error("usage of --node-cidr-mask-size is not allowed with --node-cidr-mask-size-ipv4 or "
                "--node-cidr-mask-size-ipv6")
    for flag in ("node_monitor_period", "node_monitor_grace_period", "node_startup_grace_period"):
        if getattr(a, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be positive")
    for flag in ("node_eviction_rate", "secondary_node_eviction_rate", "large_cluster_size_threshold"):
        if getattr(a, flag) < 0:
            p.error(f"--{flag.replace('_', '-')} must not be negative")
    if not 0 <= a.unhealthy_zone_threshold <= 1:
        p.error("--unhealthy-zone-threshold must be within 0-1")
    if a.allocate_node_cidrs and not cidrs:
        p.error("--allocate-node-cidrs needs --cluster-cidr")
    v4 = a.node_cidr_mask_size_ipv4 or a.node_cidr_mask_size or 24
    v6 = a.node_cidr_mask_size_ipv6 or a.node_cidr_mask_size or 64
    opts = ControllerOptions(allocate_node_cidrs=a.allocate_node_cidrs, cluster_cidrs=cidrs,
                             node_cidr_mask_size_ipv4=v4, node_cidr_mask_size_ipv6=v6, service_cidrs=svc,
                             concurrent_replicaset_syncs=max(1, a.concurrent_replicaset_syncs),
                             concurrent_deployment_syncs=max(1, a.concurrent_deployment_syncs),
                             concurrent_gc_syncs=max(1, a.concurrent_gc_syncs),
                             concurrent_resource_quota_syncs=max(1, a.concurrent_resource_quota_syncs),
                             resource_quota_sync_period=max(1.0, a.resource_quota_sync_period),
                             horizontal_pod_autoscaler_sync_period=max(0.1, a.horizontal_pod_autoscaler_sync_period),
                             concurrent_endpoint_syncs=max(1, a.concurrent_endpoint_syncs),
                             concurrent_namespace_syncs=max(1, a.concurrent_namespace_syncs),
                             concurrent_daemonset_syncs=max(1, a.concurrent_daemonset_syncs),
                             concurrent_statefulset_syncs=max(1, a.concurrent_statefulset_syncs),
                             concurrent_job_syncs=max(1, a.concurrent_job_syncs),
                             concurrent_cron_job_syncs=max(1, a.concurrent_cron_job_syncs),
                             concurrent_ttl_after_finished_syncs=max(1, a.concurrent_ttl_after_finished_syncs),
                             node_monitor_period=a.node_monitor_period,
                             node_monitor_grace_period=a.node_monitor_grace_period,
                             node_startup_grace_period=a.node_startup_grace_period,
                             node_eviction_rate=a.node_eviction_rate,
                             secondary_node_eviction_rate=a.secondary_node_eviction_rate,
                             large_cluster_size_threshold=a.large_cluster_size_threshold,
                             unhealthy_zone_threshold=a.unhealthy_zone_threshold,
                             terminated_pod_gc_threshold=a.terminated_pod_gc_threshold,
                             root_ca_pem=_read_ca(p, a.root_ca_file),
                             **_signing(p, a.cluster_signing_cert_file, a.cluster_signing_key_file,
                                        a.cluster_signing_duration))
    if a.allocate_node_cidrs:
        from kubelab.controller.nodeipam.cidrset import CIDRSet, CIDRSetError
        for c in cidrs:
            try:
                CIDRSet(c, v6 if ":" in c else v4)
            except CIDRSetError as e:
                p.error(f"--cluster-cidr {c}: {e}")
    try:
        specs = select([c.strip() for c in a.controllers.split(",") if c.strip()])
    except SelectionError as e:
        p.error(f"--controllers: {e}")
    return a, opts, specs


async def run(a: argparse.Namespace, opts, specs) -> int:
    from kubelab.client.informer import SharedInformerFactory
    from kubelab.client.leaderelection import run_until_stopped
    from kubelab.client.rest import Client
    from kubelab.controller.manager import ControllerContext, run_controllers

    client = Client.from_kubeconfig(a.kubeconfig or None, component="kube-controller-manager")
    leading = asyncio.Event()
    srv = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost = False

    async def lead() -> None:
        leading.set()
        log.info("running controllers=%s", ",".join(s.name for s in specs))
        await run_controllers(ControllerContext(client, SharedInformerFactory(client), opts), specs)

    try:
        if a.secure_port:
            from kubelab.client.healthz import SecureServer
            srv = SecureServer("kube-controller-manager", a.bind_address, a.secure_port, a.cert_dir, leading.is_set,
                               "not leading or informers not synced")
            await srv.start()
        lost = await run_until_stopped(client, leader_election_config(a), lead, stop)
    finally:
        if srv is not None:
            await srv.stop()
        await client.close()
    if lost:
        log.error("leaderelection lost")
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    from kubelab.client.kubeconfig import ConfigError
    a, opts, specs = parse(argv)
    logs.setup("controller-manager", a.verbosity)
    try:
        rc = asyncio.run(run(a, opts, specs))
    except (OSError, ConfigError, ValueError) as e:
        print(f"kubelab-controller-manager: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
