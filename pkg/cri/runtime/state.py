"""Sandbox and container records, and their persistence under the runtime's root dir.

Each record is one JSON file written atomically (tmp + rename), so a SIGKILL at any moment leaves
either the old or the new record; at start the runtime reloads them all and asks runc and conmon's
exit files what happened to the processes meanwhile.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubelab.cri.api import api_pb2 as pb

# CRI enum values
SANDBOX_READY, SANDBOX_NOTREADY = pb.SANDBOX_READY, pb.SANDBOX_NOTREADY
CREATED, RUNNING, EXITED, UNKNOWN = (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING, pb.CONTAINER_EXITED,
                                     pb.CONTAINER_UNKNOWN)


def _b64(msg: Any) -> str:
    return base64.b64encode(msg.SerializeToString()).decode()


def _unb64(cls: type, s: str) -> Any:
    m = cls()
    m.ParseFromString(base64.b64decode(s))
    return m


def write_json_atomic(path: Path, data: dict) -> None:
    """Write by rename, so a killed runtime leaves the old record or the new one. No fsync: only a
    power loss could tear a record, and that also ends every container the record describes (a
    record that does not parse is dropped at load, as one that was never finished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dataclass
class Sandbox:
    id: str
    config_b64: str
    created_at: int
    state: int = SANDBOX_READY
    netns: str = ""                 # pinned netns path; "" for host network
    uts: str = ""
    ipc: str = ""
    shm: str = ""                   # tmpfs mounted for /dev/shm ("" when the host's is used)
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    cni_result: dict | None = None
    cgroup_parent: str = ""
    cgroup_created: bool = False    # the runtime made the parent cgroup and removes it with the sandbox
    runtime_handler: str = ""
    pid_holder: int = 0             # init of the pod's shared PID namespace (pid NamespaceMode POD)
    pid_holder_started: float = 0.0
    dir: str = ""                   # per-sandbox volatile dir (hostname, hosts, resolv.conf, shm, uts, ipc)

    @property
    def config(self) -> pb.PodSandboxConfig:
        c = getattr(self, "_config", None)
        if c is None:
            c = _unb64(pb.PodSandboxConfig, self.config_b64)
            object.__setattr__(self, "_config", c)
        return c

    @classmethod
    def new(cls, id: str, config: pb.PodSandboxConfig, created_at: int, **kw: Any) -> "Sandbox":
        return cls(id=id, config_b64=_b64(config), created_at=created_at, **kw)

    @property
    def name_key(self) -> str:
        m = self.config.metadata
        return f"{m.name}_{m.namespace}_{m.uid}_{m.attempt}"

    @property
    def host_network(self) -> bool:
        return self.config.linux.security_context.namespace_options.network == pb.NODE


@dataclass
class Container:
    id: str
    sandbox_id: str
    config_b64: str
    created_at: int
    image_id: str                   # sha256:<config digest hex>
    image_name: str                 # what the kubelet asked for
    image_ref: str                  # repo digest when known, else the image id
    bundle: str
    rootfs: str                     # overlay mount point
    upper: str                      # container dir holding upper/ and work/
    log_path: str
    cgroups_path: str
    persist_dir: str
    state: int = CREATED
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    stop_signal: str = "SIGTERM"

    @property
    def config(self) -> pb.ContainerConfig:
        c = getattr(self, "_config", None)
        if c is None:
            c = _unb64(pb.ContainerConfig, self.config_b64)
            object.__setattr__(self, "_config", c)
        return c

    def set_config(self, config: pb.ContainerConfig) -> None:
        self.config_b64 = _b64(config)
        object.__setattr__(self, "_config", None)

    @classmethod
    def new(cls, id: str, sandbox_id: str, config: pb.ContainerConfig, created_at: int, **kw: Any) -> "Container":
        return cls(id=id, sandbox_id=sandbox_id, config_b64=_b64(config), created_at=created_at, **kw)


class Records:
    """The runtime's records on disk: root/sandboxes/<id>/meta.json and root/containers/<id>/meta.json."""

    def __init__(self, root: Path) -> None:
        self.sandbox_dir = root / "sandboxes"
        self.container_dir = root / "containers"
        self.sandbox_dir.mkdir(parents=True, exist_ok=True)
        self.container_dir.mkdir(parents=True, exist_ok=True)

    def save_sandbox(self, s: Sandbox) -> None:
        write_json_atomic(self.sandbox_dir / s.id / "meta.json", asdict(s))

    def save_container(self, c: Container) -> None:
        write_json_atomic(self.container_dir / c.id / "meta.json", asdict(c))

    def drop_sandbox(self, id: str) -> None:
        shutil.rmtree(self.sandbox_dir / id, ignore_errors=True)

    def drop_container(self, id: str) -> None:
        shutil.rmtree(self.container_dir / id, ignore_errors=True)

    def container_home(self, id: str) -> Path:
        return self.container_dir / id

    def load(self) -> tuple[list[Sandbox], list[Container]]:
        sandboxes, containers = [], []
        for d, cls, out in ((self.sandbox_dir, Sandbox, sandboxes), (self.container_dir, Container, containers)):
            for sub in sorted(d.iterdir()):
                meta = sub / "meta.json"
                try:
                    data = json.loads(meta.read_text())
                except (OSError, ValueError):
                    # never finished creating (killed before the first save): nothing to recover
                    shutil.rmtree(sub, ignore_errors=True)
                    continue
                known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
                out.append(cls(**known))
        return sandboxes, containers
