"""A small synchronous CRI client for the tests, with builders for the configs the kubelet sends."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg

MAX_MESSAGE = 16 * 1024 * 1024


class CRI:
    """Both CRI services over one unix-socket channel, as the kubelet holds them."""

    def __init__(self, name: str, socket: str, images: dict[str, str], cgroup_base: str = "") -> None:
        self.name = name
        self.cgroup_base = cgroup_base  # pods' cgroup parents go under /<cgroup_base>/
        self.socket = socket
        self.images = images            # short name -> reference to pull for this runtime
        self.channel = grpc.insecure_channel(f"unix://{socket}", options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)])
        self.rt = pbg.RuntimeServiceStub(self.channel)
        self.img = pbg.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __repr__(self) -> str:
        return f"CRI({self.name})"

    # -- images
    def pull(self, short: str) -> str:
        return self.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=self.images[short])),
                                  timeout=300).image_ref

    # -- containers
    def status(self, cid: str) -> pb.ContainerStatus:
        return self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status

    def wait_state(self, cid: str, state: int, timeout: float = 20) -> pb.ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.state == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {cid[:12]} is {pb.ContainerState.Name(st.state)}, "
                                     f"wanted {pb.ContainerState.Name(state)}")
            time.sleep(0.05)


@dataclass
class Pods:
    """Makes sandboxes and containers for one test and removes every sandbox it made afterwards."""
    cri: CRI
    log_root: Path
    made: list[str] = field(default_factory=list)

    def sandbox_config(self, name: str = "", *, hostname: str = "", ports: list[tuple[int, int]] = (),
                       labels: dict | None = None, dns: pb.DNSConfig | None = None,
                       host_network: bool = False, sysctls: dict | None = None,
                       pid: int = pb.CONTAINER) -> pb.PodSandboxConfig:
        name = name or f"pod-{uuid.uuid4().hex[:8]}"
        uid = str(uuid.uuid4())
        logdir = self.log_root / f"cri-test_{name}_{uid}"
        c = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="cri-test", uid=uid, attempt=0),
            hostname=hostname or name, log_directory=str(logdir),
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "cri-test",
                    "io.kubernetes.pod.uid": uid, **(labels or {})},
            annotations={"kubelab.test/owner": "e2e"})
        c.linux.cgroup_parent = f"/{self.cri.cgroup_base or 'kubelab-e2e'}/pod{uid}"
        for host, ctr in ports:
            c.port_mappings.append(pb.PortMapping(protocol=pb.TCP, container_port=ctr, host_port=host))
        if dns is not None:
            c.dns_config.CopyFrom(dns)
        # as the kubelet sends it: CONTAINER unless shareProcessNamespace (POD) or hostPID (NODE)
        c.linux.security_context.namespace_options.pid = pid
        if host_network:
            c.linux.security_context.namespace_options.network = pb.NODE
        for k, v in (sysctls or {}).items():
            c.linux.sysctls[k] = v
        return c

    def run_sandbox(self, config: pb.PodSandboxConfig | None = None, **kw) -> tuple[str, pb.PodSandboxConfig]:
        config = config or self.sandbox_config(**kw)
        sid = self.cri.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        self.made.append(sid)
        return sid, config

    def container_config(self, name: str, image: str, command: list[str] = (), args: list[str] = (),
                         *, env: dict | None = None, working_dir: str = "", memory: int = 0,
                         run_as_user: int | None = None, attempt: int = 0, pid: int = pb.CONTAINER) -> pb.ContainerConfig:
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=attempt),
                               image=pb.ImageSpec(image=self.cri.images[image]), command=command, args=args,
                               working_dir=working_dir, log_path=f"{name}/{attempt}.log",
                               labels={"io.kubernetes.container.name": name})
        for k, v in (env or {}).items():
            c.envs.append(pb.KeyValue(key=k, value=v))
        if memory:
            c.linux.resources.memory_limit_in_bytes = memory
        c.linux.security_context.namespace_options.pid = pid
        if run_as_user is not None:
            c.linux.security_context.run_as_user.value = run_as_user
        return c

    def create(self, sid: str, sconfig: pb.PodSandboxConfig, cconfig: pb.ContainerConfig) -> str:
        return self.cri.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cconfig, sandbox_config=sconfig), timeout=60).container_id

    def start(self, sid: str, sconfig: pb.PodSandboxConfig, cconfig: pb.ContainerConfig) -> str:
        cid = self.create(sid, sconfig, cconfig)
        self.cri.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        return cid

    def log_file(self, sconfig: pb.PodSandboxConfig, cconfig: pb.ContainerConfig) -> Path:
        return Path(sconfig.log_directory) / cconfig.log_path

    def cleanup(self) -> None:
        for sid in self.made:
            try:
                self.cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
            except grpc.RpcError:
                pass
            self.cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
