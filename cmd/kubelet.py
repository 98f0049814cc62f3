"""kubelab-kubelet: flags -> KubeletConfig -> Kubelet (node registration, pods through CRI)."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from pathlib import Path

from kubelab import logs
from kubelab.cliflags import add_bool, duration, labels, taint

log = logging.getLogger("kubelab.kubelet")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab-kubelet", description="kubelab's kubelet: the node agent.")
    p.add_argument("--kubeconfig", default="", help="kubeconfig with the API server and the node's credentials")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the hostname)")
    p.add_argument("--node-ip", default="", help="the node's InternalIP (default: the address that routes to the "
                                                 "API server)")
    p.add_argument("--container-runtime-endpoint", default="unix:///run/kubelab-cri/cri.sock",
                   help="the CRI runtime's socket")
    p.add_argument("--root-dir", default="/var/lib/kubelet", help="the kubelet's state directory")
    p.add_argument("--pod-logs-dir", default="/var/log/pods", help="where containers' logs go (podLogsDir)")
    p.add_argument("--pod-manifest-path", default="", help="a directory of static pod manifests")
    p.add_argument("--file-check-frequency", type=duration, default=20.0,
                   help="how often the static pod manifests are read")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for ClusterFirst pods")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", help="the resolver configuration for Default pods")
    p.add_argument("--pod-cidr", default="", help="this node's pod CIDR, when no node IPAM controller assigns one")
    p.add_argument("--cgroup-root", default="/", help="the cgroup the kubepods hierarchy goes under")
    p.add_argument("--node-labels", type=labels, default={}, help="labels to register the node with: k=v,k2=v2")
    p.add_argument("--register-with-taints", type=taint, action="append", default=[],
                   help="a taint to register the node with: key[=value]:Effect (repeatable)")
    p.add_argument("--kube-reserved", type=labels, default={}, help="resources reserved for Kubernetes: cpu=100m,...")
    p.add_argument("--system-reserved", type=labels, default={}, help="resources reserved for the system")
    p.add_argument("--max-pods", type=int, default=110, help="pods this node runs at most")
    p.add_argument("--port", type=int, default=10250, help="the kubelet server's port")
    p.add_argument("--address", default="0.0.0.0", help="the kubelet server's address")
    p.add_argument("--healthz-port", type=int, default=10248, help="the port of the plain-HTTP /healthz (0 disables)")
    p.add_argument("--healthz-bind-address", default="127.0.0.1", help="the address /healthz is served on")
    p.add_argument("--tls-cert-file", default="", help="the server's certificate (default: a self-signed one "
                                                      "in <root-dir>/pki)")
    p.add_argument("--tls-private-key-file", default="", help="its key")
    p.add_argument("--client-ca-file", default="", help="clients (the apiserver) must present a certificate "
                                                        "signed by this CA")
    p.add_argument("--node-status-update-frequency", type=duration, default=10.0,
                   help="how often the node's status is computed")
    p.add_argument("--sync-frequency", type=duration, default=60.0, help="the longest time between two syncs of a pod")
    p.add_argument("--runtime-request-timeout", type=duration, default=120.0, help="timeout of CRI requests")
    p.add_argument("--eviction-hard", default=None,
                   help="hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10%% (default: "
                        "memory.available<100Mi,nodefs.available<10%%,nodefs.inodesFree<5%%,imagefs.available<15%%,"
                        "imagefs.inodesFree<5%%)")
    p.add_argument("--eviction-soft", default="", help="soft eviction thresholds, e.g. memory.available<300Mi")
    p.add_argument("--eviction-soft-grace-period", default="",
                   help="how long each soft threshold must hold before pods are evicted, e.g. memory.available=1m30s")
    p.add_argument("--eviction-minimum-reclaim", default="",
                   help="what an eviction must free beyond its threshold, e.g. memory.available=0Mi,nodefs.available=500Mi")
    p.add_argument("--eviction-max-pod-grace-period", type=int, default=0,
                   help="the longest grace period (seconds) a soft eviction gives a pod")
    add_bool(p, "--kernel-memcg-notification", False,
             "look for memory pressure as soon as the kernel's memory cgroup notifications say a memory "
             "threshold was crossed, not only every 10 s (cgroup v1)")
    p.add_argument("--eviction-pressure-transition-period", type=duration, default=300.0,
                   help="how long a pressure condition stays after its threshold is no longer met")
    p.add_argument("--image-gc-high-threshold", type=int, default=85,
                   help="the percent of the image filesystem in use at which image garbage collection starts")
    p.add_argument("--image-gc-low-threshold", type=int, default=80,
                   help="the percent of the image filesystem in use image garbage collection frees down to")
    p.add_argument("--minimum-image-ttl-duration", type=duration, default=120.0,
                   help="how long an unused image is kept at least after it was first seen")
    p.add_argument("--pod-infra-container-image", default="registry.k8s.io/pause:3.9",
                   help="the runtime's sandbox image, which image garbage collection never removes")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    return p


def _image_gc_policy(a: argparse.Namespace):
    """The image GC flags as an ImageGCPolicy; ValueError with upstream's wording when one is wrong."""
    from kubelab.kubelet.gc import ImageGCPolicy
    errs = []
    for v, field, flag in ((a.image_gc_high_threshold, "imageGCHighThresholdPercent", "--image-gc-high-threshold"),
                           (a.image_gc_low_threshold, "imageGCLowThresholdPercent", "--image-gc-low-threshold")):
        if not 0 <= v <= 100:
            errs.append(f"invalid configuration: {field} ({flag}) {v} must be between 0 and 100, inclusive")
    if a.image_gc_low_threshold >= a.image_gc_high_threshold:
        errs.append(f"invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) "
                    f"{a.image_gc_low_threshold} must be less than imageGCHighThresholdPercent "
                    f"(--image-gc-high-threshold) {a.image_gc_high_threshold}")
    if errs:
        raise ValueError("; ".join(errs))
    return ImageGCPolicy(high_threshold_percent=a.image_gc_high_threshold,
                         low_threshold_percent=a.image_gc_low_threshold, min_age=a.minimum_image_ttl_duration)


def _eviction_config(a: argparse.Namespace):
    """The eviction flags as an EvictionConfig; ValueError with upstream's wording when one is wrong."""
    from kubelab.kubelet.eviction import DEFAULT_HARD, EvictionConfig, parse_pairs, parse_thresholds
    hard = DEFAULT_HARD if a.eviction_hard is None else parse_pairs(a.eviction_hard, "<")
    grace = {}
    for sig, text in parse_pairs(a.eviction_soft_grace_period, "=").items():
        try:
            grace[sig] = duration(text)
        except (argparse.ArgumentTypeError, ValueError) as e:
            raise ValueError(f"--eviction-soft-grace-period: {sig}: {e}") from None
    thresholds = parse_thresholds(hard, parse_pairs(a.eviction_soft, "<"), grace,
                                  parse_pairs(a.eviction_minimum_reclaim, "="))
    if a.eviction_max_pod_grace_period < 0:
        raise ValueError("--eviction-max-pod-grace-period must not be negative")
    return EvictionConfig(thresholds=thresholds, pressure_transition_period=a.eviction_pressure_transition_period,
                          max_pod_grace_period=a.eviction_max_pod_grace_period,
                          kernel_memcg_notification=a.kernel_memcg_notification)


def _route_ip(server: str) -> str:
    """The local address the kernel would use to reach the API server."""
    from urllib.parse import urlparse
    u = urlparse(server)
    host = u.hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, u.port or 443))
        return s.getsockname()[0]


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logs.setup("kubelet", a.verbosity)
    from kubelab.client.rest import Client
    from kubelab.kubelet.config import KubeletConfig
    from kubelab.kubelet.kubelet import Kubelet
    if a.max_pods < 1:
        p.error("--max-pods must be at least 1")
    if not 0 <= a.healthz_port <= 65535:
        p.error(f"--healthz-port: {a.healthz_port} is not a valid port number")
    dns = [x.strip() for x in a.cluster_dns.split(",") if x.strip()]
    try:
        eviction = _eviction_config(a)
        image_gc = _image_gc_policy(a)
    except ValueError as e:
        p.error(str(e))
    if a.pod_cidr:
        try:
            ipaddress.ip_network(a.pod_cidr)
        except ValueError:
            p.error(f"--pod-cidr: invalid CIDR {a.pod_cidr!r}")
    if bool(a.tls_cert_file) != bool(a.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file go together")
    for ip in dns + ([a.node_ip] if a.node_ip else []):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            p.error(f"invalid IP address {ip!r}")
    try:
        # eight requests in flight at most: each extra TLS connection to the apiserver costs ~300 KiB
        client = Client.from_kubeconfig(a.kubeconfig or None, component="kubelet", max_inflight=8)
    except Exception as e:
        p.error(f"--kubeconfig: {e}")
    node_ip = a.node_ip or _route_ip(client.config.server)
    cfg = KubeletConfig(node_name=(a.hostname_override or socket.gethostname()).lower(), node_ip=node_ip,
                        container_runtime_endpoint=a.container_runtime_endpoint, root_dir=Path(a.root_dir),
                        pod_logs_dir=Path(a.pod_logs_dir),
                        pod_manifest_path=Path(a.pod_manifest_path) if a.pod_manifest_path else None,
                        file_check_frequency=a.file_check_frequency,
                        cluster_dns=dns, cluster_domain=a.cluster_domain, resolv_conf=Path(a.resolv_conf),
                        cgroup_root=a.cgroup_root, pod_cidr=a.pod_cidr, node_labels=a.node_labels, register_with_taints=a.register_with_taints,
                        kube_reserved=a.kube_reserved, system_reserved=a.system_reserved, max_pods=a.max_pods,
                        port=a.port, address=a.address, healthz_port=a.healthz_port,
                        healthz_bind_address=a.healthz_bind_address,
                        tls_cert_file=Path(a.tls_cert_file) if a.tls_cert_file else None,
                        tls_private_key_file=Path(a.tls_private_key_file) if a.tls_private_key_file else None,
                        client_ca_file=Path(a.client_ca_file) if a.client_ca_file else None, node_status_update_frequency=a.node_status_update_frequency,
                        sync_frequency=a.sync_frequency, runtime_request_timeout=a.runtime_request_timeout,
                        eviction=eviction, image_gc=image_gc, pod_infra_container_image=a.pod_infra_container_image)

    async def run() -> int:
        kubelet = Kubelet(cfg, client)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await kubelet.run()
        except asyncio.CancelledError:
            log.info("stopping")
        finally:
            await client.close()
        return 0
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except Exception as e:           # one line, never a traceback
        print(f"kubelab-kubelet: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
