"""The CRI v1 protocol of proto/cri/api.proto and its generated Python (kubelab.cri.api).

Wire compatibility with upstream is checked the way a peer sees it: messages are encoded and
their tags compared with the field numbers of upstream's api.proto (kube-wire.md section B),
bytes as a Go peer would write them are decoded, and the method paths on the wire are listed.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import grpc
import pytest

from kubelab import protogen
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pb_grpc
from kubelab.cri.api import generate


# -- generation ----------------------------------------------------------------------------

def test_regenerating_changes_nothing():
    pytest.importorskip("grpc_tools")
    assert generate.stale_files() == []


def test_check_reports_a_modified_module(tmp_path):
    pytest.importorskip("grpc_tools")
    copy = tmp_path / "api"
    shutil.copytree(generate.PROTOS.out_dir, copy)
    (copy / "api_pb2_grpc.py").write_text((copy / "api_pb2_grpc.py").read_text() + "\n# edited\n")
    protos = protogen.ProtoSet(subdir="cri", package="kubelab.cri.api", out_dir=copy, grpc=True)
    assert protogen.stale_files(protos) == ["api_pb2_grpc.py"]


def test_generated_modules_import_as_part_of_the_package():
    source = Path(pb_grpc.__file__).read_text()
    assert "from kubelab.cri.api import api_pb2 as " in source
    assert "\nfrom cri import" not in source
    assert pb.DESCRIPTOR.package == "runtime.v1"
    assert pb_grpc.cri_dot_api__pb2 is pb


# -- field numbers on the wire ----------------------------------------------------------------

def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """Top-level (field number, wire type, payload) of an encoded message."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wtype = key >> 3, key & 7
        if wtype == 0:
            val, i = _varint(data, i)
        elif wtype == 2:
            n, i = _varint(data, i)
            val, i = data[i:i + n], i + n
        elif wtype == 1:
            val, i = data[i:i + 8], i + 8
        elif wtype == 5:
            val, i = data[i:i + 4], i + 4
        else:
            raise AssertionError(f"unexpected wire type {wtype}")
        out.append((num, wtype, val))
    return out


# message.field=number, from upstream api.proto as summarised in kube-wire.md section B
UPSTREAM_FIELDS = """
VersionRequest.version=1 VersionResponse.runtime_name=2 VersionResponse.runtime_version=3
VersionResponse.runtime_api_version=4 RunPodSandboxRequest.config=1 RunPodSandboxRequest.runtime_handler=2
RunPodSandboxResponse.pod_sandbox_id=1
PodSandboxConfig.metadata=1 PodSandboxConfig.hostname=2 PodSandboxConfig.log_directory=3
PodSandboxConfig.dns_config=4 PodSandboxConfig.port_mappings=5 PodSandboxConfig.labels=6
PodSandboxConfig.annotations=7 PodSandboxConfig.linux=8 PodSandboxConfig.windows=9
PodSandboxMetadata.name=1 PodSandboxMetadata.uid=2 PodSandboxMetadata.namespace=3 PodSandboxMetadata.attempt=4
DNSConfig.servers=1 DNSConfig.searches=2 DNSConfig.options=3
PortMapping.protocol=1 PortMapping.container_port=2 PortMapping.host_port=3 PortMapping.host_ip=4
LinuxPodSandboxConfig.cgroup_parent=1 LinuxPodSandboxConfig.security_context=2 LinuxPodSandboxConfig.sysctls=3
LinuxPodSandboxConfig.overhead=4 LinuxPodSandboxConfig.resources=5
LinuxSandboxSecurityContext.namespace_options=1 LinuxSandboxSecurityContext.selinux_options=2
LinuxSandboxSecurityContext.run_as_user=3 LinuxSandboxSecurityContext.readonly_rootfs=4
LinuxSandboxSecurityContext.supplemental_groups=5 LinuxSandboxSecurityContext.privileged=6
LinuxSandboxSecurityContext.seccomp_profile_path=7 LinuxSandboxSecurityContext.run_as_group=8
LinuxSandboxSecurityContext.seccomp=9 LinuxSandboxSecurityContext.apparmor=10
LinuxSandboxSecurityContext.supplemental_groups_policy=11
NamespaceOption.network=1 NamespaceOption.pid=2 NamespaceOption.ipc=3 NamespaceOption.target_id=4
NamespaceOption.userns_options=5 Int64Value.value=1
SecurityProfile.profile_type=1 SecurityProfile.localhost_ref=2
StopPodSandboxRequest.pod_sandbox_id=1 RemovePodSandboxRequest.pod_sandbox_id=1
PodSandboxStatusRequest.pod_sandbox_id=1 PodSandboxStatusRequest.verbose=2
PodSandboxStatusResponse.status=1 PodSandboxStatusResponse.info=2
PodSandboxStatusResponse.containers_statuses=3 PodSandboxStatusResponse.timestamp=4
PodSandboxStatus.id=1 PodSandboxStatus.metadata=2 PodSandboxStatus.state=3 PodSandboxStatus.created_at=4
PodSandboxStatus.network=5 PodSandboxStatus.linux=6 PodSandboxStatus.labels=7 PodSandboxStatus.annotations=8
PodSandboxStatus.runtime_handler=9
PodSandboxNetworkStatus.ip=1 PodSandboxNetworkStatus.additional_ips=2 PodIP.ip=1
LinuxPodSandboxStatus.namespaces=1 Namespace.options=2
ListPodSandboxRequest.filter=1 ListPodSandboxResponse.items=1
PodSandboxFilter.id=1 PodSandboxFilter.state=2 PodSandboxFilter.label_selector=3 PodSandboxStateValue.state=1
PodSandbox.id=1 PodSandbox.metadata=2 PodSandbox.state=3 PodSandbox.created_at=4 PodSandbox.labels=5
PodSandbox.annotations=6 PodSandbox.runtime_handler=7
CreateContainerRequest.pod_sandbox_id=1 CreateContainerRequest.config=2 CreateContainerRequest.sandbox_config=3
CreateContainerResponse.container_id=1
ContainerConfig.metadata=1 ContainerConfig.image=2 ContainerConfig.command=3 ContainerConfig.args=4
ContainerConfig.working_dir=5 ContainerConfig.envs=6 ContainerConfig.mounts=7 ContainerConfig.devices=8
ContainerConfig.labels=9 ContainerConfig.annotations=10 ContainerConfig.log_path=11 ContainerConfig.stdin=12
ContainerConfig.stdin_once=13 ContainerConfig.tty=14 ContainerConfig.linux=15 ContainerConfig.windows=16
ContainerConfig.CDI_devices=17 ContainerConfig.stop_signal=18
ContainerMetadata.name=1 ContainerMetadata.attempt=2 KeyValue.key=1 KeyValue.value=2
Mount.container_path=1 Mount.host_path=2 Mount.readonly=3 Mount.selinux_relabel=4 Mount.propagation=5
Mount.uidMappings=6 Mount.gidMappings=7 Mount.recursive_read_only=8 Mount.image=9 Mount.image_sub_path=10
Device.container_path=1 Device.host_path=2 Device.permissions=3
LinuxContainerConfig.resources=1 LinuxContainerConfig.security_context=2
LinuxContainerResources.cpu_period=1 LinuxContainerResources.cpu_quota=2 LinuxContainerResources.cpu_shares=3
LinuxContainerResources.memory_limit_in_bytes=4 LinuxContainerResources.oom_score_adj=5
LinuxContainerResources.cpuset_cpus=6 LinuxContainerResources.cpuset_mems=7
LinuxContainerResources.hugepage_limits=8 LinuxContainerResources.unified=9
LinuxContainerResources.memory_swap_limit_in_bytes=10
LinuxContainerSecurityContext.capabilities=1 LinuxContainerSecurityContext.privileged=2
LinuxContainerSecurityContext.namespace_options=3 LinuxContainerSecurityContext.selinux_options=4
LinuxContainerSecurityContext.run_as_user=5 LinuxContainerSecurityContext.run_as_username=6
LinuxContainerSecurityContext.readonly_rootfs=7 LinuxContainerSecurityContext.supplemental_groups=8
LinuxContainerSecurityContext.apparmor_profile=9 LinuxContainerSecurityContext.seccomp_profile_path=10
LinuxContainerSecurityContext.no_new_privs=11 LinuxContainerSecurityContext.run_as_group=12
LinuxContainerSecurityContext.masked_paths=13 LinuxContainerSecurityContext.readonly_paths=14
LinuxContainerSecurityContext.seccomp=15 LinuxContainerSecurityContext.apparmor=16
LinuxContainerSecurityContext.supplemental_groups_policy=17
Capability.add_capabilities=1 Capability.drop_capabilities=2 Capability.add_ambient_capabilities=3
StartContainerRequest.container_id=1 StopContainerRequest.container_id=1 StopContainerRequest.timeout=2
RemoveContainerRequest.container_id=1 ListContainersRequest.filter=1 ListContainersResponse.containers=1
ContainerFilter.id=1 ContainerFilter.state=2 ContainerFilter.pod_sandbox_id=3 ContainerFilter.label_selector=4
ContainerStateValue.state=1
Container.id=1 Container.pod_sandbox_id=2 Container.metadata=3 Container.image=4 Container.image_ref=5
Container.state=6 Container.created_at=7 Container.labels=8 Container.annotations=9 Container.image_id=10
ContainerStatusRequest.container_id=1 ContainerStatusRequest.verbose=2
ContainerStatusResponse.status=1 ContainerStatusResponse.info=2
ContainerStatus.id=1 ContainerStatus.metadata=2 ContainerStatus.state=3 ContainerStatus.created_at=4
ContainerStatus.started_at=5 ContainerStatus.finished_at=6 ContainerStatus.exit_code=7 ContainerStatus.image=8
ContainerStatus.image_ref=9 ContainerStatus.reason=10 ContainerStatus.message=11 ContainerStatus.labels=12
ContainerStatus.annotations=13 ContainerStatus.mounts=14 ContainerStatus.log_path=15 ContainerStatus.resources=16
ContainerStatus.image_id=17 ContainerStatus.user=18 ContainerStatus.stop_signal=19
ExecSyncRequest.container_id=1 ExecSyncRequest.cmd=2 ExecSyncRequest.timeout=3
ExecSyncResponse.stdout=1 ExecSyncResponse.stderr=2 ExecSyncResponse.exit_code=3
ExecRequest.container_id=1 ExecRequest.cmd=2 ExecRequest.tty=3 ExecRequest.stdin=4 ExecRequest.stdout=5
ExecRequest.stderr=6 ExecResponse.url=1
AttachRequest.container_id=1 AttachRequest.stdin=2 AttachRequest.tty=3 AttachRequest.stdout=4
AttachRequest.stderr=5 AttachResponse.url=1
PortForwardRequest.pod_sandbox_id=1 PortForwardRequest.port=2 PortForwardResponse.url=1
ContainerStatsRequest.container_id=1 ContainerStatsResponse.stats=1
ContainerStats.attributes=1 ContainerStats.cpu=2 ContainerStats.memory=3 ContainerStats.writable_layer=4
ContainerAttributes.id=1 ContainerAttributes.metadata=2 ContainerAttributes.labels=3 ContainerAttributes.annotations=4
CpuUsage.timestamp=1 CpuUsage.usage_core_nano_seconds=2 CpuUsage.usage_nano_cores=3
MemoryUsage.timestamp=1 MemoryUsage.working_set_bytes=2 MemoryUsage.available_bytes=3 MemoryUsage.usage_bytes=4
MemoryUsage.rss_bytes=5 MemoryUsage.page_faults=6 MemoryUsage.major_page_faults=7
FilesystemUsage.timestamp=1 FilesystemUsage.fs_id=2 FilesystemUsage.used_bytes=3 FilesystemUsage.inodes_used=4
UInt64Value.value=1
StatusRequest.verbose=1 StatusResponse.status=1 StatusResponse.info=2 RuntimeStatus.conditions=1
RuntimeCondition.type=1 RuntimeCondition.status=2 RuntimeCondition.reason=3 RuntimeCondition.message=4
PullImageRequest.image=1 PullImageRequest.auth=2 PullImageRequest.sandbox_config=3 PullImageResponse.image_ref=1
ImageSpec.image=1 ImageSpec.annotations=2
AuthConfig.username=1 AuthConfig.password=2 AuthConfig.auth=3 AuthConfig.server_address=4
AuthConfig.identity_token=5 AuthConfig.registry_token=6
ImageStatusRequest.image=1 ImageStatusRequest.verbose=2 ImageStatusResponse.image=1 ImageStatusResponse.info=2
ListImagesRequest.filter=1 ImageFilter.image=1 ListImagesResponse.images=1
Image.id=1 Image.repo_tags=2 Image.repo_digests=3 Image.size=4 Image.uid=5 Image.username=6 Image.spec=7
Image.pinned=8
RemoveImageRequest.image=1 ImageFsInfoResponse.image_filesystems=1 ImageFsInfoResponse.container_filesystems=2
UpdateRuntimeConfigRequest.runtime_config=1 RuntimeConfig.network_config=1 NetworkConfig.pod_cidr=1
RuntimeConfigResponse.linux=1 LinuxRuntimeConfiguration.cgroup_driver=1
"""


def _set_one(msg, field: str) -> None:
    """Give ``field`` of ``msg`` a non-default value so it is encoded."""
    fd = msg.DESCRIPTOR.fields_by_name[field]
    value = getattr(msg, field)
    is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
    if is_map:
        value["k"] = "v"  # every CRI map is map<string, string>
    elif fd.is_repeated:
        if fd.message_type is not None:
            value.add()
        else:
            value.append({fd.TYPE_STRING: "x", fd.TYPE_BYTES: b"x"}.get(fd.type, 1))
    elif fd.message_type is not None:
        value.SetInParent()
    elif fd.enum_type is not None:
        setattr(msg, field, fd.enum_type.values[-1].number)
    else:
        setattr(msg, field, {fd.TYPE_STRING: "x", fd.TYPE_BYTES: b"x", fd.TYPE_BOOL: True}.get(fd.type, 7))


@pytest.mark.parametrize("spec", UPSTREAM_FIELDS.split())
def test_field_is_encoded_with_the_upstream_number(spec):
    path, number = spec.split("=")
    message, field = path.split(".")
    msg = getattr(pb, message)()
    _set_one(msg, field)
    fields = _fields(msg.SerializeToString())
    assert fields, spec
    assert {num for num, _, _ in fields} == {int(number)}, spec


def test_spot_checks_byte_for_byte():
    # ContainerConfig.log_path=11: key (11<<3)|2 = 0x5a
    assert pb.ContainerConfig(log_path="0.log").SerializeToString() == b"\x5a\x050.log"
    # ContainerStatus.reason=10: key 0x52
    assert pb.ContainerStatus(reason="OOMKilled").SerializeToString() == b"\x52\x09OOMKilled"
    # PodSandboxConfig.linux=8 holding cgroup_parent=1
    assert pb.PodSandboxConfig(linux=pb.LinuxPodSandboxConfig(cgroup_parent="/p")).SerializeToString() == \
        b"\x42\x04\x0a\x02/p"
    # LinuxContainerResources.memory_limit_in_bytes=4, a varint
    assert pb.LinuxContainerResources(memory_limit_in_bytes=300).SerializeToString() == b"\x20\xac\x02"
    # StopContainerRequest.timeout=2 (int64 varint)
    assert pb.StopContainerRequest(container_id="c", timeout=30).SerializeToString() == b"\x0a\x01c\x10\x1e"
    # ImageStatusResponse.image=1: an empty Image is still present on the wire
    assert pb.ImageStatusResponse(image=pb.Image()).SerializeToString() == b"\x0a\x00"
    assert pb.ImageStatusResponse().SerializeToString() == b""
    # RuntimeConfigResponse.linux=1 { cgroup_driver=1: CGROUPFS=1 }
    resp = pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=pb.CGROUPFS))
    assert resp.SerializeToString() == b"\x0a\x02\x08\x01"
    # negative oom_score_adj is a 10-byte two's complement varint (int64, not sint64)
    raw = pb.LinuxContainerResources(oom_score_adj=-997).SerializeToString()
    assert raw[0] == 0x28 and len(raw) == 11


def test_decodes_bytes_as_a_go_peer_writes_them():
    # ContainerStatusResponse{status{id:"abc", state:EXITED, exit_code:137, reason:"OOMKilled"}}
    status = b"\x0a\x03abc" + b"\x18\x02" + b"\x38\x89\x01" + b"\x52\x09OOMKilled"
    resp = pb.ContainerStatusResponse.FromString(b"\x0a" + bytes([len(status)]) + status)
    assert resp.status.id == "abc"
    assert resp.status.state == pb.CONTAINER_EXITED
    assert resp.status.exit_code == 137
    assert resp.status.reason == "OOMKilled"
    # StatusResponse{status{conditions{type:"RuntimeReady", status:true}}}
    cond = b"\x0a\x0cRuntimeReady\x10\x01"
    rs = b"\x0a" + bytes([len(cond)]) + cond
    st = pb.StatusResponse.FromString(b"\x0a" + bytes([len(rs)]) + rs)
    assert [(c.type, c.status) for c in st.status.conditions] == [("RuntimeReady", True)]


def test_enums_have_upstream_values():
    assert (pb.SANDBOX_READY, pb.SANDBOX_NOTREADY) == (0, 1)
    assert (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING, pb.CONTAINER_EXITED, pb.CONTAINER_UNKNOWN) == (0, 1, 2, 3)
    assert (pb.TCP, pb.UDP, pb.SCTP) == (0, 1, 2)
    assert (pb.PROPAGATION_PRIVATE, pb.PROPAGATION_HOST_TO_CONTAINER, pb.PROPAGATION_BIDIRECTIONAL) == (0, 1, 2)
    assert (pb.POD, pb.CONTAINER, pb.NODE, pb.TARGET) == (0, 1, 2, 3)
    assert (pb.SYSTEMD, pb.CGROUPFS) == (0, 1)
    assert (pb.SecurityProfile.RuntimeDefault, pb.SecurityProfile.Unconfined,
            pb.SecurityProfile.Localhost) == (0, 1, 2)
    assert (pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
            pb.CONTAINER_DELETED_EVENT) == (0, 1, 2, 3)
    assert (pb.RUNTIME_DEFAULT, pb.SIGKILL, pb.SIGTERM, pb.SIGRTMAX) == (0, 13, 23, 65)


# -- services ---------------------------------------------------------------------------------

RUNTIME_METHODS = {
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "ListPodSandbox",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ListContainers",
    "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog", "ExecSync", "Exec", "Attach",
    "PortForward", "ContainerStats", "ListContainerStats", "PodSandboxStats", "ListPodSandboxStats",
    "UpdateRuntimeConfig", "Status", "CheckpointContainer", "GetContainerEvents", "ListMetricDescriptors",
    "ListPodSandboxMetrics", "RuntimeConfig", "UpdatePodSandboxResources",
    # CRIListStreaming (Kubernetes 1.36, optional for runtimes)
    "StreamPodSandboxes", "StreamContainers", "StreamContainerStats", "StreamPodSandboxStats",
    "StreamPodSandboxMetrics",
}
IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo", "StreamImages"}
SERVER_STREAMING = {"GetContainerEvents", "StreamPodSandboxes", "StreamContainers", "StreamContainerStats",
                    "StreamPodSandboxStats", "StreamPodSandboxMetrics", "StreamImages"}


class _RecordingChannel:
    """Stands in for a grpc channel and records the method paths a stub registers."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def _record(self, kind: str):
        def register(path, request_serializer=None, response_deserializer=None, **_):
            self.paths[path] = kind
            return object()
        return register

    def __getattr__(self, kind: str):
        if kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            return self._record(kind)
        raise AttributeError(kind)


def test_well_known_paths():
    channel = _RecordingChannel()
    pb_grpc.RuntimeServiceStub(channel)
    pb_grpc.ImageServiceStub(channel)
    for path in ("/runtime.v1.RuntimeService/Version", "/runtime.v1.RuntimeService/Status",
                 "/runtime.v1.RuntimeService/RuntimeConfig", "/runtime.v1.ImageService/PullImage"):
        assert channel.paths[path] == "unary_unary"
    assert channel.paths["/runtime.v1.RuntimeService/GetContainerEvents"] == "unary_stream"


@pytest.mark.parametrize("stub, service, methods", [
    (pb_grpc.RuntimeServiceStub, "RuntimeService", RUNTIME_METHODS),
    (pb_grpc.ImageServiceStub, "ImageService", IMAGE_METHODS),
])
def test_method_paths_on_the_wire(stub, service, methods):
    channel = _RecordingChannel()
    stub(channel)
    expected = {f"/runtime.v1.{service}/{m}": ("unary_stream" if m in SERVER_STREAMING else "unary_unary")
                for m in methods}
    assert channel.paths == expected
    desc = pb.DESCRIPTOR.services_by_name[service]
    assert desc.full_name == f"runtime.v1.{service}"
    assert {m.name for m in desc.methods} == methods


# -- a real grpc.aio round trip over a unix socket ----------------------------------------------

class _Runtime(pb_grpc.RuntimeServiceServicer):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def Version(self, request, context):
        self.seen.append(request.version)
        return pb.VersionResponse(version="0.1.0", runtime_name="kubelab-test", runtime_version="0.0.1",
                                  runtime_api_version="v1")

    async def GetContainerEvents(self, request, context):
        for kind in (pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT):
            yield pb.ContainerEventResponse(container_id="c1", container_event_type=kind, created_at=1)


async def test_round_trip_over_a_unix_socket():
    with tempfile.TemporaryDirectory(prefix="kubelab-cri-proto-") as tmp:
        sock = Path(tmp) / "cri.sock"
        servicer = _Runtime()
        server = grpc.aio.server()
        pb_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
        pb_grpc.add_ImageServiceServicer_to_server(pb_grpc.ImageServiceServicer(), server)
        assert server.add_insecure_port(f"unix://{sock}") == 1
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock}") as channel:
                rt = pb_grpc.RuntimeServiceStub(channel)
                resp = await rt.Version(pb.VersionRequest(version="0.1.0"), timeout=5)
                assert (resp.runtime_name, resp.runtime_api_version) == ("kubelab-test", "v1")
                assert servicer.seen == ["0.1.0"]

                events = [e async for e in rt.GetContainerEvents(pb.GetEventsRequest(), timeout=5)]
                assert [e.container_event_type for e in events] == [pb.CONTAINER_CREATED_EVENT,
                                                                     pb.CONTAINER_STARTED_EVENT]

                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await rt.Status(pb.StatusRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.ImageServiceStub(channel).ImageFsInfo(pb.ImageFsInfoRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(None)
