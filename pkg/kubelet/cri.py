"""The kubelet's CRI client: the RuntimeService and ImageService of --container-runtime-endpoint over
grpc.aio, requests built from the dicts of runtimespec.py, and what a pod holds in the runtime read
back into actions.PodRuntime (upstream's kuberuntime GetPodStatus)."""
from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg

from .actions import ContainerState, PodRuntime, SandboxState
from .runtimespec import CONTAINER_HASH, CONTAINER_NAME, KUBELET_MANAGED, POD_UID

Obj = dict[str, Any]

CONTAINER_STATES = {pb.CONTAINER_CREATED: "created", pb.CONTAINER_RUNNING: "running",
                    pb.CONTAINER_EXITED: "exited", pb.CONTAINER_UNKNOWN: "unknown"}


def _secs(ns: int) -> float:
    return ns / 1e9 if ns else 0.0


def rpc_message(e: BaseException) -> str:
    """A CRI call's failure as the kubelet words it (Go's gRPC status text)."""
    if isinstance(e, grpc.aio.AioRpcError):
        return f"rpc error: code = {e.code().name.title().replace('_', '')} desc = {e.details()}"
    return str(e)


def _ips(network: Any) -> tuple[str, list[str]]:
    """A PodSandboxNetworkStatus as (the pod IP, every pod IP)."""
    return network.ip, ([network.ip] + [x.ip for x in network.additional_ips] if network.ip else [])


def _container_state(c: Any, full: Any, sandbox_id: str) -> ContainerState:
    """A container's labels and annotations (from its listing or its status) with its full status."""
    return ContainerState(
        id=c.id, name=c.labels.get(CONTAINER_NAME, c.metadata.name), attempt=c.metadata.attempt,
        state=CONTAINER_STATES.get(full.state, "unknown"), created_at=_secs(full.created_at),
        started_at=_secs(full.started_at), finished_at=_secs(full.finished_at), exit_code=full.exit_code,
        reason=full.reason, message=full.message, image=full.image.image, image_ref=full.image_ref,
        hash=c.annotations.get(CONTAINER_HASH, ""), sandbox_id=sandbox_id)


class RuntimeClient:
    def __init__(self, endpoint: str, timeout: float = 120.0) -> None:
        target = endpoint if endpoint.startswith("unix://") else f"unix://{endpoint}"
        self.channel = grpc.aio.insecure_channel(target)
        self.rt = pbg.RuntimeServiceStub(self.channel)
        self.img = pbg.ImageServiceStub(self.channel)
        self.timeout = timeout
        # What does not change while a runtime object keeps its state: a ready sandbox's IPs, and a
        # container's full status as long as ListContainers reports the same state for it (fields
        # change only with created -> running -> exited). pod_runtime reuses them instead of calling
        # PodSandboxStatus and ContainerStatus for every object on every sync; an entry goes when
        # the PLEG's relist (managed_sandboxes, managed_containers) no longer has its object.
        self._sandbox_ips: dict[str, tuple[str, list[str]]] = {}          # id -> (ip, ips)
        self._container_status: dict[str, tuple[int, Any]] = {}           # id -> (list state, status)

    async def close(self) -> None:
        await self.channel.close()

    # -- runtime ----------------------------------------------------------------------------------

    async def version(self) -> str:
        v = await self.rt.Version(pb.VersionRequest(version="v1"), timeout=10)
        return f"{v.runtime_name}://{v.runtime_version}"

    async def runtime_name(self) -> str:
        return (await self.rt.Version(pb.VersionRequest(version="v1"), timeout=10)).runtime_name

    async def status(self) -> tuple[bool, str]:
        """(ready, why not) from RuntimeReady and NetworkReady, worded as the kubelet reports it."""
        st = await self.rt.Status(pb.StatusRequest(), timeout=10)
        for c in st.status.conditions:
            if not c.status:
                if c.type == "NetworkReady":
                    return False, (f"container runtime network not ready: NetworkReady=false reason:{c.reason} "
                                   f"message:{c.message}")
                return False, f"container runtime is down: {c.type}=false reason:{c.reason} message:{c.message}"
        return True, ""

    async def run_sandbox(self, config: Obj) -> str:
        cfg = json_format.ParseDict(config, pb.PodSandboxConfig())
        r = await self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=self.timeout)
        return r.pod_sandbox_id

    async def stop_sandbox(self, sid: str) -> None:
        await self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=self.timeout)

    async def remove_sandbox(self, sid: str) -> None:
        await self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=self.timeout)

    async def create_container(self, sid: str, config: Obj, sandbox_config: Obj) -> str:
        req = pb.CreateContainerRequest(pod_sandbox_id=sid, config=json_format.ParseDict(config, pb.ContainerConfig()),
                                        sandbox_config=json_format.ParseDict(sandbox_config, pb.PodSandboxConfig()))
        return (await self.rt.CreateContainer(req, timeout=self.timeout)).container_id

    async def start_container(self, cid: str) -> None:
        await self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=self.timeout)

    async def remove_container(self, cid: str) -> None:
        await self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=self.timeout)

    async def all_containers(self) -> list[Any]:
        """Every container the runtime holds, the kubelet's or not."""
        return list((await self.rt.ListContainers(pb.ListContainersRequest(), timeout=30)).containers)

    async def stop_container(self, cid: str, grace: int) -> None:
        await self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=grace),
                                    timeout=grace + self.timeout)

    async def exec_sync(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        r = await self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=int(max(1, timeout))),
                                   timeout=timeout + 10)
        return r.exit_code, r.stdout, r.stderr

    async def managed_sandboxes(self) -> list[Any]:
        r = await self.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
            label_selector={KUBELET_MANAGED: "true"})), timeout=30)
        items = list(r.items)
        ids = {s.id for s in items}
        for sid in [k for k in self._sandbox_ips if k not in ids]:
            del self._sandbox_ips[sid]
        return items

    async def managed_containers(self) -> list[Any]:
        r = await self.rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
            label_selector={KUBELET_MANAGED: "true"})), timeout=30)
        items = list(r.containers)
        ids = {c.id for c in items}
        for cid in [k for k in self._container_status if k not in ids]:
            del self._container_status[cid]
        return items

    async def pod_runtime(self, uid: str) -> PodRuntime:
        """Every sandbox and container the runtime holds for the pod (statuses included)."""
        sbs = (await self.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
            label_selector={POD_UID: uid})), timeout=30)).items
        out = PodRuntime()
        for s in sorted(sbs, key=lambda s: (s.metadata.attempt, s.created_at), reverse=True):
            st = SandboxState(s.id, s.metadata.attempt, s.state == pb.SANDBOX_READY, _secs(s.created_at))
            if st.ready and not out.sandboxes:
                await self._fill_network(st)
            out.sandboxes.append(st)
        cs = (await self.rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
            label_selector={POD_UID: uid})), timeout=30)).containers
        for c in cs:
            known_c = self._container_status.get(c.id)
            if known_c is not None and known_c[0] == c.state:
                full = known_c[1]
            else:
                full = await self._read_container(c.id, c.state)
                if full is None:
                    continue
            out.containers.append(_container_state(c, full, c.pod_sandbox_id))
        return out

    async def sandbox_state(self, sid: str, attempt: int) -> SandboxState:
        """The sandbox this kubelet just ran, from one PodSandboxStatus (what pod_runtime would
        list for it, without listing the pod's other objects again)."""
        full = (await self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=30)).status
        st = SandboxState(sid, attempt, full.state == pb.SANDBOX_READY, _secs(full.created_at))
        if st.ready:
            st.ip, st.ips = _ips(full.network)
            self._sandbox_ips[sid] = (st.ip, list(st.ips))
        return st

    async def container_state(self, cid: str, sandbox_id: str) -> ContainerState | None:
        """A container this kubelet just created in sandbox_id, from one ContainerStatus; None if
        the runtime no longer has it."""
        full = await self._read_container(cid, None)
        return _container_state(full, full, sandbox_id) if full is not None else None

    async def _fill_network(self, st: SandboxState) -> None:
        known = self._sandbox_ips.get(st.id)
        if known is not None:
            st.ip, st.ips = known[0], list(known[1])
            return
        try:
            full = await self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=st.id), timeout=30)
        except grpc.aio.AioRpcError:
            st.ready = False
            return
        st.ip, st.ips = _ips(full.status.network)
        self._sandbox_ips[st.id] = (st.ip, list(st.ips))

    async def _read_container(self, cid: str, listed_state: int | None) -> Any:
        """ContainerStatus, kept while the container's listed state stays what it was (None: gone)."""
        try:
            full = (await self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30)).status
        except grpc.aio.AioRpcError:
            self._container_status.pop(cid, None)
            return None
        if full.state != pb.CONTAINER_UNKNOWN and (listed_state is None or full.state == listed_state):
            self._container_status[cid] = (full.state, full)
        return full

    # -- images -----------------------------------------------------------------------------------

    async def image_present(self, image: str) -> str | None:
        r = await self.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=image)), timeout=30)
        return r.image.id if r.HasField("image") and r.image.id else None

    async def pull(self, image: str) -> str:
        r = await self.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)), timeout=self.timeout * 5)
        return r.image_ref

    async def list_images(self) -> list[Any]:
        return list((await self.img.ListImages(pb.ListImagesRequest(), timeout=30)).images)

    async def images(self) -> list[Obj]:
        """The images as the Node's status.images lists them."""
        return [{"names": list(i.repo_tags) + list(i.repo_digests), "sizeBytes": int(i.size)}
                for i in await self.list_images()]

    async def remove_image(self, image: str) -> None:
        await self.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image)), timeout=self.timeout)
