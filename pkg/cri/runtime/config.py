"""Settings of one kubelab-cri instance: every path is a parameter so nodes run side by side."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RuntimeConfig:
    root: Path = Path("/var/lib/kubelab-cri")
    runroot: Path = Path("/run/kubelab-cri")
    listen: str = "/run/kubelab-cri/cri.sock"
    netns_dir: Path | None = None            # default <runroot>/netns
    cni_config_dir: Path = Path("/etc/cni/net.d")
    cni_plugin_dirs: list[Path] = field(default_factory=lambda: [Path("/opt/cni/bin"), Path("/usr/lib/cni")])
    runtime: str = "/usr/sbin/runc"
    conmon: str = "/usr/bin/conmon"
    cgroup_parent: str = "/kubelab-cri"      # for sandboxes the kubelet gives no cgroup parent
    stream_address: str = "127.0.0.1"
    stream_port: int = 0                     # 0: any free port
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)
    insecure_registries: set[str] = field(default_factory=set)
    shm_size: int = 64 * 1024 * 1024

    @property
    def netns_path(self) -> Path:
        return self.netns_dir or self.runroot / "netns"
