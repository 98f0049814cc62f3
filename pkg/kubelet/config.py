"""The kubelet's configuration (upstream's flags and KubeletConfiguration fields it uses)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubelab.kubelet.eviction import EvictionConfig
from kubelab.kubelet.gc import ImageGCPolicy


@dataclass
class KubeletConfig:
    node_name: str
    node_ip: str
    container_runtime_endpoint: str            # unix:///path/to/cri.sock
    root_dir: Path = Path("/var/lib/kubelet")
    pod_logs_dir: Path = Path("/var/log/pods")
    pod_manifest_path: Path | None = None
    file_check_frequency: float = 20.0
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")
    cgroup_root: str = "/"
    pod_cidr: str = ""                               # standalone mode: no node IPAM controller
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[dict] = field(default_factory=list)
    kube_reserved: dict[str, str] = field(default_factory=dict)
    system_reserved: dict[str, str] = field(default_factory=dict)
    max_pods: int = 110
    port: int = 10250
    address: str = "0.0.0.0"
    healthz_port: int = 10248                       # 0: not served
    healthz_bind_address: str = "127.0.0.1"
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    node_lease_duration_seconds: int = 40
    sync_frequency: float = 60.0
    pleg_relist_period: float = 1.0
    runtime_request_timeout: float = 120.0
    eviction: EvictionConfig = field(default_factory=EvictionConfig)
    image_gc: ImageGCPolicy = field(default_factory=ImageGCPolicy)
    pod_infra_container_image: str = "registry.k8s.io/pause:3.9"
    container_gc_period: float = 60.0
    image_gc_period: float = 300.0
