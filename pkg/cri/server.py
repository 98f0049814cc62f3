"""kubelab-cri's gRPC face: CRI v1 RuntimeService and ImageService on a unix socket.

Each RPC is a thin translation onto RuntimeService / ImageService; every error reaches the client
as a gRPC status with a message (never a dropped connection), and unexpected ones are logged.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable

import grpc

from kubelab import __version__ as KUBELAB_VERSION
from kubelab.cri import errors
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg
from kubelab.cri.image.pull import Puller
from kubelab.cri.image.registry import RegistryClient
from kubelab.cri.image.service import ImageService
from kubelab.cri.image.store import ImageStore
from kubelab.cri.runtime.config import RuntimeConfig
from kubelab.cri.runtime.service import RuntimeService
from kubelab.cri.streaming.server import StreamServer

log = logging.getLogger("kubelab.cri.server")

MAX_MESSAGE = 16 * 1024 * 1024
RUNTIME_NAME = "kubelab-cri"


def rpc(fn: Callable) -> Callable:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except errors.CRIError as e:
            await context.abort(e.code, e.message)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - a status, not a dropped call
            log.exception("%s failed", fn.__name__)
            await context.abort(grpc.StatusCode.UNKNOWN, f"{fn.__name__}: {e}")
    return wrapper


class RuntimeServicer(pbg.RuntimeServiceServicer):
    def __init__(self, rt: RuntimeService, streaming: StreamServer | None = None) -> None:
        self.rt = rt
        self.streaming = streaming
        self.pod_cidr = ""

    def _streams(self) -> StreamServer:
        if self.streaming is None:
            raise errors.Unimplemented("the streaming server is not running")
        return self.streaming

    @rpc
    async def Version(self, req: pb.VersionRequest, ctx: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=KUBELAB_VERSION,
                                  runtime_api_version="v1")

    @rpc
    async def RunPodSandbox(self, req: pb.RunPodSandboxRequest, ctx: Any) -> pb.RunPodSandboxResponse:
        return pb.RunPodSandboxResponse(pod_sandbox_id=await self.rt.run_pod_sandbox(req.config, req.runtime_handler))

    @rpc
    async def StopPodSandbox(self, req: pb.StopPodSandboxRequest, ctx: Any) -> pb.StopPodSandboxResponse:
        await self.rt.stop_pod_sandbox(req.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    @rpc
    async def RemovePodSandbox(self, req: pb.RemovePodSandboxRequest, ctx: Any) -> pb.RemovePodSandboxResponse:
        await self.rt.remove_pod_sandbox(req.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    @rpc
    async def PodSandboxStatus(self, req: pb.PodSandboxStatusRequest, ctx: Any) -> pb.PodSandboxStatusResponse:
        return self.rt.pod_sandbox_status(req.pod_sandbox_id, req.verbose)

    @rpc
    async def ListPodSandbox(self, req: pb.ListPodSandboxRequest, ctx: Any) -> pb.ListPodSandboxResponse:
        f = req.filter if req.HasField("filter") else None
        return pb.ListPodSandboxResponse(items=self.rt.list_pod_sandbox(f))

    @rpc
    async def CreateContainer(self, req: pb.CreateContainerRequest, ctx: Any) -> pb.CreateContainerResponse:
        sc = req.sandbox_config if req.HasField("sandbox_config") else None
        return pb.CreateContainerResponse(container_id=await self.rt.create_container(req.pod_sandbox_id,
                                                                                      req.config, sc))

    @rpc
    async def StartContainer(self, req: pb.StartContainerRequest, ctx: Any) -> pb.StartContainerResponse:
        await self.rt.start_container(req.container_id)
        return pb.StartContainerResponse()

    @rpc
    async def StopContainer(self, req: pb.StopContainerRequest, ctx: Any) -> pb.StopContainerResponse:
        await self.rt.stop_container(req.container_id, req.timeout)
        return pb.StopContainerResponse()

    @rpc
    async def RemoveContainer(self, req: pb.RemoveContainerRequest, ctx: Any) -> pb.RemoveContainerResponse:
        await self.rt.remove_container(req.container_id)
        return pb.RemoveContainerResponse()

    @rpc
    async def ListContainers(self, req: pb.ListContainersRequest, ctx: Any) -> pb.ListContainersResponse:
        f = req.filter if req.HasField("filter") else None
        return pb.ListContainersResponse(containers=self.rt.list_containers(f))

    @rpc
    async def ContainerStatus(self, req: pb.ContainerStatusRequest, ctx: Any) -> pb.ContainerStatusResponse:
        return self.rt.container_status(req.container_id, req.verbose)

    @rpc
    async def UpdateContainerResources(self, req: pb.UpdateContainerResourcesRequest,
                                       ctx: Any) -> pb.UpdateContainerResourcesResponse:
        await self.rt.update_container_resources(req.container_id, req.linux)
        return pb.UpdateContainerResourcesResponse()

    @rpc
    async def ReopenContainerLog(self, req: pb.ReopenContainerLogRequest, ctx: Any) -> pb.ReopenContainerLogResponse:
        await self.rt.reopen_container_log(req.container_id)
        return pb.ReopenContainerLogResponse()

    @rpc
    async def ExecSync(self, req: pb.ExecSyncRequest, ctx: Any) -> pb.ExecSyncResponse:
        out, err, code = await self.rt.exec_sync(req.container_id, req.cmd, req.timeout)
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    @rpc
    async def Exec(self, req: pb.ExecRequest, ctx: Any) -> pb.ExecResponse:
        self.rt.exec_target(req.container_id)          # NotFound / FailedPrecondition (not running)
        return pb.ExecResponse(url=self._streams().get_exec(req))

    @rpc
    async def Attach(self, req: pb.AttachRequest, ctx: Any) -> pb.AttachResponse:
        self.rt.exec_target(req.container_id)
        return pb.AttachResponse(url=self._streams().get_attach(req))

    @rpc
    async def PortForward(self, req: pb.PortForwardRequest, ctx: Any) -> pb.PortForwardResponse:
        self.rt.sandbox_netns(req.pod_sandbox_id)      # NotFound / FailedPrecondition (not ready)
        return pb.PortForwardResponse(url=self._streams().get_port_forward(req))

    @rpc
    async def ContainerStats(self, req: pb.ContainerStatsRequest, ctx: Any) -> pb.ContainerStatsResponse:
        return pb.ContainerStatsResponse(stats=self.rt.container_stats(req.container_id))

    @rpc
    async def ListContainerStats(self, req: pb.ListContainerStatsRequest, ctx: Any) -> pb.ListContainerStatsResponse:
        f = req.filter if req.HasField("filter") else None
        return pb.ListContainerStatsResponse(stats=self.rt.list_container_stats(f))

    @rpc
    async def PodSandboxStats(self, req: pb.PodSandboxStatsRequest, ctx: Any) -> pb.PodSandboxStatsResponse:
        return pb.PodSandboxStatsResponse(stats=self.rt.pod_sandbox_stats(req.pod_sandbox_id))

    @rpc
    async def ListPodSandboxStats(self, req: pb.ListPodSandboxStatsRequest,
                                  ctx: Any) -> pb.ListPodSandboxStatsResponse:
        f = req.filter if req.HasField("filter") else None
        return pb.ListPodSandboxStatsResponse(stats=self.rt.list_pod_sandbox_stats(f))

    @rpc
    async def UpdateRuntimeConfig(self, req: pb.UpdateRuntimeConfigRequest, ctx: Any) -> pb.UpdateRuntimeConfigResponse:
        self.pod_cidr = req.runtime_config.network_config.pod_cidr
        log.info("runtime config: pod CIDR %s", self.pod_cidr)
        return pb.UpdateRuntimeConfigResponse()

    @rpc
    async def Status(self, req: pb.StatusRequest, ctx: Any) -> pb.StatusResponse:
        resp = pb.StatusResponse(status=pb.RuntimeStatus(conditions=self.rt.status()))
        if req.verbose:
            import json
            resp.info["config"] = json.dumps({"root": str(self.rt.cfg.root), "runroot": str(self.rt.cfg.runroot),
                                              "cniConfigDir": str(self.rt.cfg.cni_config_dir),
                                              "runtime": self.rt.cfg.runtime, "podCIDR": self.pod_cidr})
        return resp

    @rpc
    async def CheckpointContainer(self, req: pb.CheckpointContainerRequest, ctx: Any) -> pb.CheckpointContainerResponse:
        raise errors.Unimplemented("method CheckpointContainer not implemented")

    async def GetContainerEvents(self, req: pb.GetEventsRequest, ctx: grpc.aio.ServicerContext):  # type: ignore[override]
        await ctx.abort(grpc.StatusCode.UNIMPLEMENTED, "method GetContainerEvents not implemented")

    @rpc
    async def ListMetricDescriptors(self, req: pb.ListMetricDescriptorsRequest,
                                    ctx: Any) -> pb.ListMetricDescriptorsResponse:
        return pb.ListMetricDescriptorsResponse()

    @rpc
    async def ListPodSandboxMetrics(self, req: pb.ListPodSandboxMetricsRequest,
                                    ctx: Any) -> pb.ListPodSandboxMetricsResponse:
        return pb.ListPodSandboxMetricsResponse()

    @rpc
    async def RuntimeConfig(self, req: pb.RuntimeConfigRequest, ctx: Any) -> pb.RuntimeConfigResponse:
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=pb.CGROUPFS))


class ImageServicer(pbg.ImageServiceServicer):
    def __init__(self, images: ImageService) -> None:
        self.images = images

    @rpc
    async def ListImages(self, req: pb.ListImagesRequest, ctx: Any) -> pb.ListImagesResponse:
        f = req.filter if req.HasField("filter") else None
        return pb.ListImagesResponse(images=self.images.list_images(f))

    @rpc
    async def ImageStatus(self, req: pb.ImageStatusRequest, ctx: Any) -> pb.ImageStatusResponse:
        return self.images.image_status(req.image, req.verbose)

    @rpc
    async def PullImage(self, req: pb.PullImageRequest, ctx: Any) -> pb.PullImageResponse:
        auth = req.auth if req.HasField("auth") else None
        return pb.PullImageResponse(image_ref=await self.images.pull_image(req.image, auth))

    @rpc
    async def RemoveImage(self, req: pb.RemoveImageRequest, ctx: Any) -> pb.RemoveImageResponse:
        self.images.remove_image(req.image)
        return pb.RemoveImageResponse()

    @rpc
    async def ImageFsInfo(self, req: pb.ImageFsInfoRequest, ctx: Any) -> pb.ImageFsInfoResponse:
        return self.images.fs_info()


class CRIServer:
    """Wires the store, the puller, the runtime and the gRPC server for one kubelab-cri instance."""

    def __init__(self, cfg: RuntimeConfig) -> None:
        self.cfg = cfg
        cfg.root.mkdir(parents=True, exist_ok=True)
        cfg.runroot.mkdir(parents=True, exist_ok=True)
        self.store = ImageStore(cfg.root)
        self.registry = RegistryClient(mirrors=cfg.registry_mirrors, insecure=cfg.insecure_registries)
        self.runtime = RuntimeService(cfg, self.store)
        self.images = ImageService(self.store, Puller(self.store, self.registry), self.runtime.image_in_use)
        self.server: grpc.aio.Server | None = None
        self.streaming = StreamServer(self.runtime, cfg.stream_address, cfg.stream_port)

    async def start(self) -> None:
        await self.runtime.recover()
        await self.streaming.start()
        # blobs and snapshots no image refers to (a pull killed midway), older than an hour
        blobs, snaps = self.store.gc()
        if blobs or snaps:
            log.info("image store gc: removed %d blobs and %d snapshots", len(blobs), len(snaps))
        sock = Path(self.cfg.listen)
        sock.parent.mkdir(parents=True, exist_ok=True)
        if sock.exists() or sock.is_symlink():
            sock.unlink()
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                               ("grpc.max_send_message_length", MAX_MESSAGE)])
        pbg.add_RuntimeServiceServicer_to_server(RuntimeServicer(self.runtime, self.streaming), self.server)
        pbg.add_ImageServiceServicer_to_server(ImageServicer(self.images), self.server)
        if self.server.add_insecure_port(f"unix://{sock}") == 0:
            raise OSError(f"cannot listen on {sock}")
        await self.server.start()
        os.chmod(sock, 0o660)
        log.info("serving CRI v1 on unix://%s root=%s runroot=%s", sock, self.cfg.root, self.cfg.runroot)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=2)
        await self.streaming.stop()
        await self.registry.close()
        await self.runtime.close()
