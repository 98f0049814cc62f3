"""kubelab-cri's own guarantees beyond the shared CRI suite: restart safety, nothing left after
RemovePodSandbox, hostile layers refused, bad requests answered with a status."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import grpc
import psutil
import pytest

from kubelab.cri.api import api_pb2 as pb
from e2e.cri_client import Pods

pytestmark = pytest.mark.e2e


@pytest.fixture
def kpods(kubelab_cri, tmp_path):
    kubelab_cri.pull("busybox")
    p = Pods(kubelab_cri, tmp_path / "logs")
    yield p
    p.cleanup()


def _info(cri, cid: str) -> dict:
    return json.loads(cri.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True)).info["info"])


def _sandbox_info(cri, sid: str) -> dict:
    return json.loads(cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)).info["info"])


def test_sigkill_and_restart_adopts_running_containers(kubelab_cri, kpods):
    cri = kubelab_cri
    running = []
    for i in range(5):
        sid, sconfig = kpods.run_sandbox()
        for name in ("a", "b"):
            cid = kpods.start(sid, sconfig, kpods.container_config(name, "busybox", ["sleep", "3600"]))
            running.append((sid, cid))
    sid, sconfig = kpods.run_sandbox()
    doomed = kpods.start(sid, sconfig, kpods.container_config("doomed", "busybox", [
        "sh", "-c", "trap 'exit 5' TERM; while :; do sleep 0.1; done"]))
    before = {cid: (cri.status(cid).started_at, _info(cri, cid)["pid"]) for _, cid in running}
    ips = {s: cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=s)).status.network.ip
           for s, _ in running}
    doomed_pid = _info(cri, doomed)["pid"]
    time.sleep(0.3)   # let the trap be installed

    cri.server.kill()                         # SIGKILL kubelab-cri with 11 containers running
    os.kill(doomed_pid, signal.SIGTERM)       # one exits while the runtime is down
    for _, cid in running:
        assert psutil.pid_exists(before[cid][1]), "a container died with the runtime"
    time.sleep(0.5)
    cri.server.start()

    for sid, cid in running:
        st = cri.status(cid)
        assert st.id == cid and st.state == pb.CONTAINER_RUNNING
        assert (st.started_at, _info(cri, cid)["pid"]) == before[cid], "container was restarted"
        st_s = cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st_s.state == pb.SANDBOX_READY and st_s.network.ip == ips[sid]
    st = cri.wait_state(doomed, pb.CONTAINER_EXITED, timeout=10)
    assert st.exit_code == 5
    # and the adopted ones still work
    out = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=running[0][1], cmd=["echo", "alive"], timeout=10))
    assert out.stdout == b"alive\n"


def test_remove_pod_sandbox_leaves_nothing(kubelab_cri, kpods, cni_net):
    cri = kubelab_cri
    sid, sconfig = kpods.run_sandbox()
    c1 = kpods.start(sid, sconfig, kpods.container_config("web", "busybox", ["sleep", "3600"]))
    c2 = kpods.create(sid, sconfig, kpods.container_config("side", "busybox", ["sleep", "3600"]))
    sinfo = _sandbox_info(cri, sid)
    cinfo = {c: _info(cri, c) for c in (c1, c2)}
    ip = cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
    ipam = Path(cni_net["data_dir"]) / "kubelab-e2e" / ip
    assert ipam.exists() or (Path(cni_net["data_dir"]) / ip).exists()
    assert Path(sinfo["netNamespace"]).exists()
    cgroup_dirs = [Path("/sys/fs/cgroup/memory") / cinfo[c]["cgroupsPath"].lstrip("/") for c in (c1, c2)]
    assert cgroup_dirs[0].is_dir()

    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    kpods.made.remove(sid)

    mounts = Path("/proc/self/mountinfo").read_text()
    for c in (c1, c2):
        assert c not in mounts, f"mount of container {c[:12]} left"
    assert sid not in mounts
    for p in (sinfo["netNamespace"], sinfo["uts"], sinfo["ipc"], sinfo["shm"]):
        assert not Path(p).exists(), p
    assert not ipam.exists() and not (Path(cni_net["data_dir"]) / ip).exists(), "CNI IP reservation left"
    for d in cgroup_dirs + [Path("/sys/fs/cgroup/memory") / sinfo["cgroupParent"].lstrip("/")]:
        assert not d.exists(), f"cgroup left: {d}"
    conmons = [p for p in psutil.process_iter(["cmdline"]) if any(c in " ".join(p.info["cmdline"] or [])
                                                                  for c in (c1, c2))]
    assert not conmons, conmons
    root = cri.server.root
    assert not (root / "sandboxes" / sid).exists() and not (root / "containers" / c1).exists()


def evil_layout(dest: Path, entry: str) -> Path:
    """An OCI layout whose one layer holds a file at a path climbing out of the root."""
    import gzip
    import io
    import tarfile
    from e2e.registry import sha256, write_layout
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"owned\n"
        ti = tarfile.TarInfo(entry)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    diff = buf.getvalue()
    layer = gzip.compress(diff, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(diff)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha256(layer), "size": len(layer)}]}).encode()
    return write_layout(dest, {sha256(layer): layer, sha256(config): config, sha256(manifest): manifest},
                        [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(manifest),
                          "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"}}])


def test_layer_with_parent_paths_is_refused(kubelab_cri, registry, tmp_path):
    from kubelab.cri.image.reference import parse
    from kubelab.cri.image.registry import RegistryClient
    layout = evil_layout(tmp_path / "evil", "../../../../tmp/kubelab-evil")

    async def push() -> None:
        client = RegistryClient(insecure={registry.host})
        try:
            await client.push_layout(layout, parse(f"{registry.host}/kubelab/evil:1"), None)
        finally:
            await client.close()
    asyncio.run(push())
    ref = f"{registry.host}/kubelab/evil:1"
    with pytest.raises(grpc.RpcError) as e:
        kubelab_cri.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=60)
    assert "../../../../tmp/kubelab-evil" in e.value.details() and "escapes" in e.value.details()
    assert not Path("/tmp/kubelab-evil").exists()
    assert not kubelab_cri.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image")
    assert kubelab_cri.pull("busybox").startswith("sha256:")     # the store still works


def test_bad_requests_get_a_status(kubelab_cri, kpods):
    cri = kubelab_cri
    with pytest.raises(grpc.RpcError) as e:
        cri.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in e.value.details()
    sid, sconfig = kpods.run_sandbox()
    with pytest.raises(grpc.RpcError) as e:
        cri.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=pb.ContainerConfig()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        cri.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image="UPPER/Case::bad")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        cri.rt.ExecSync(pb.ExecSyncRequest(container_id="0" * 64, cmd=["true"]))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert cri.rt.Version(pb.VersionRequest()).runtime_api_version == "v1"


def test_remove_image_in_use_is_refused(kubelab_cri, kpods):
    cri = kubelab_cri
    sid, sconfig = kpods.run_sandbox()
    cid = kpods.create(sid, sconfig, kpods.container_config("user", "busybox", ["sleep", "3600"]))
    ref = cri.images["busybox"]
    with pytest.raises(grpc.RpcError) as e:
        cri.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert cid in e.value.details() and "in use" in e.value.details()
    assert cri.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image")
    cri.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    cri.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    assert not cri.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image")
    cri.pull("busybox")
