"""The containerd CRI peer helper (kubelab.lab.runtimes.ContainerdProc): it starts isolated in its own dir,
answers CRI, imports images with ctr, pulls from a plain-HTTP registry, and stop() leaves no
process, mount, socket, dir or pod cgroup behind, also after containerd was SIGKILLed with a pod
running."""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg
from kubelab.lab.runtimes import (SHIM_SOCKET_ROOT, ContainerdError, ContainerdProc, PeerLeak, cmdline,
                                  mountpoints_under, run_sync, running)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/containerd"),
                       reason="needs root and Debian's containerd"),
]

PAUSE = "localhost/kubelab/pause:3.9"
BRIDGE = "kl-ctrd-t0"
SUBNET = "10.250.77.0/24"
CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- a tiny image made of the host's sleep binary and its libraries ----------------------------

def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _sleep_layer() -> bytes:
    """An uncompressed layer tar holding /usr/bin/sleep and the shared objects ldd lists for it."""
    out = run_sync(["ldd", "/usr/bin/sleep"]).text
    files = {"/usr/bin/sleep"} | {w for line in out.splitlines() for w in line.split()
                                  if w.startswith("/") and os.path.exists(w)}
    dirs = {"/".join(Path(f).parts[1:i]) for f in files for i in range(2, len(Path(f).parts))}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for f in sorted(files):
            _add_bytes(tar, f.lstrip("/"), Path(os.path.realpath(f)).read_bytes(), 0o755)
    return buf.getvalue()


def _oci_archive(name: str, dest: Path) -> Path:
    """An OCI image layout tar with one image named ``name`` whose entrypoint is `sleep infinity`."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = blob(_sleep_layer())
    config = blob(json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": ["/usr/bin/sleep", "infinity"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }).encode())
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                       "platform": {"architecture": arch, "os": "linux"},
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
    }).encode()
    with tarfile.open(dest, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(tar, "index.json", index)
        for digest, data in blobs.items():
            _add_bytes(tar, "blobs/sha256/" + digest.split(":", 1)[1], data)
    return dest


@pytest.fixture
def pause_tar(tmp_path) -> Path:
    return _oci_archive(PAUSE, tmp_path / "pause.tar")


@pytest.fixture
def cgroup_parent():
    """A cgroup parent for the test's pods; containerd leaves it (the kubelet's job), the test removes it."""
    name = "kubelab-ctrd-" + uuid.uuid4().hex[:8]
    yield name
    _remove_cgroup_tree(name)
    assert not _cgroup_dirs(name)


@pytest.fixture
def peer(tmp_path):
    """A peer whose cleanup is the thing under test; the fixture only mops up after a failure."""
    c = ContainerdProc(cni_conf_dir=tmp_path / "net.d", sandbox_image=PAUSE)
    yield c
    if c.base.exists() or (c.proc and c.proc.poll() is None):
        try:
            c.stop()
        except PeerLeak:
            pass
    run_sync(["ip", "link", "del", BRIDGE], check=False)


# -- helpers ----------------------------------------------------------------------------------

def _conditions(resp: pb.StatusResponse) -> dict[str, bool]:
    return {c.type: c.status for c in resp.status.conditions}


def _sandbox_config(name: str, cgroup_parent: str, host_network: bool) -> pb.PodSandboxConfig:
    uid = uuid.uuid4().hex
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname="" if host_network else name,  # as the kubelet: no hostname in the node's UTS ns
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.uid": uid},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/" + cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(
                network=pb.NODE if host_network else pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
    )


def _cgroup_dirs(name: str) -> list[Path]:
    """Directories named ``name`` at the top of each cgroup hierarchy."""
    return [hier / name for hier in CGROUP_ROOT.iterdir() if (hier / name).is_dir()]


def _remove_cgroup_tree(name: str) -> None:
    for d in _cgroup_dirs(name):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            sub.rmdir()
        d.rmdir()


def _sandbox_procs(shims: list[psutil.Process]) -> list[psutil.Process]:
    """The sandbox processes under the shims, once they run the image's `sleep infinity`
    (RunPodSandbox may return while the process is still in `runc init`)."""
    procs: list[psutil.Process] = []
    for _ in range(100):
        procs = [c for s in shims for c in s.children()]
        if procs and all(cmdline(p)[:2] == ["/usr/bin/sleep", "infinity"] for p in procs):
            return procs
        time.sleep(0.05)
    raise AssertionError(f"no sandbox process runs sleep: {[cmdline(p) for p in procs]}")


def _bridge_conflist(data_dir: Path) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "kl-ctrd-test",
        "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]],
                              "dataDir": str(data_dir)}}],
    })


def _assert_socket_root_removed() -> None:
    """The peer made /run/containerd/s, so it removes it, unless another containerd uses it now."""
    sockets = SHIM_SOCKET_ROOT / "s"
    assert not sockets.exists() or any(sockets.iterdir()), f"{sockets} left behind empty"


def _pod_cgroups_left(parent: str) -> list[Path]:
    return [p for d in _cgroup_dirs(parent) for p in d.iterdir() if p.is_dir()]


# -- tests ------------------------------------------------------------------------------------

def test_peer_answers_cri_and_stop_removes_a_running_pod(peer, pause_tar, cgroup_parent, tmp_path):
    socket_root_existed = SHIM_SOCKET_ROOT.exists()
    version = peer.start()
    assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
    assert Path(peer.socket).is_socket() and Path(peer.socket).parent == peer.base

    with peer.channel() as ch:
        rt, img = pbg.RuntimeServiceStub(ch), pbg.ImageServiceStub(ch)
        assert rt.Version(pb.VersionRequest(version="0.1.0")).runtime_name == "containerd"

        conds = _conditions(rt.Status(pb.StatusRequest()))
        assert conds["RuntimeReady"] is True
        assert conds["NetworkReady"] is False  # its own, empty, conf dir: not /etc/cni/net.d

        (tmp_path / "net.d" / "10-test.conflist").write_text(_bridge_conflist(tmp_path / "ipam"))
        for _ in range(100):  # containerd watches the conf dir
            if _conditions(rt.Status(pb.StatusRequest()))["NetworkReady"]:
                break
            time.sleep(0.05)
        assert _conditions(rt.Status(pb.StatusRequest()))["NetworkReady"] is True

        assert peer.import_image(pause_tar) == [PAUSE]
        image = img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=PAUSE))).image
        assert PAUSE in image.repo_tags and image.id.startswith("sha256:")

        pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(
            config=_sandbox_config("peer-test", cgroup_parent, host_network=False)), timeout=60)
        st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.pod_sandbox_id, verbose=True))
        assert st.status.state == pb.SANDBOX_READY
        assert st.status.network.ip.startswith("10.250.77.")
        spec = json.loads(st.info["info"])["runtimeSpec"]
        assert spec["process"]["oomScoreAdj"] == 0  # the sandbox's -998, clamped by restrict_oom_score_adj

    # the pod's pieces all live under the peer's dir
    mounts = mountpoints_under(peer.base)
    assert any("/netns/" in m for m in mounts), mounts  # netns_mounts_under_state_dir
    assert any(m.endswith("/rootfs") for m in mounts), mounts
    shims = peer.shims()
    assert len(shims) == 1
    socket = peer.shim_socket(pod.pod_sandbox_id)
    assert socket.exists()
    sandbox = _sandbox_procs(shims)
    assert _pod_cgroups_left(cgroup_parent)
    assert (peer.runc_root / pod.pod_sandbox_id).is_dir()

    peer.stop()

    assert not peer.base.exists()
    assert not mountpoints_under(peer.base)
    assert not any(s.is_running() for s in shims)
    assert not any(running(p) for p in sandbox)
    assert not socket.exists()
    assert peer.proc.poll() is not None
    if not socket_root_existed:
        _assert_socket_root_removed()
    assert not _pod_cgroups_left(cgroup_parent)  # the pod cgroup went with the pod
    assert not list((tmp_path / "ipam" / "kl-ctrd-test").glob("10.*"))  # CNI DEL released the IP


def test_stop_after_containerd_was_killed_with_a_pod_running(peer, pause_tar, cgroup_parent):
    socket_root_existed = SHIM_SOCKET_ROOT.exists()
    peer.start()
    peer.import_image(pause_tar)
    with peer.channel() as ch:
        pod = pbg.RuntimeServiceStub(ch).RunPodSandbox(pb.RunPodSandboxRequest(
            config=_sandbox_config("peer-kill", cgroup_parent, host_network=True)), timeout=60)
    shims = peer.shims()
    assert len(shims) == 1
    sandbox = _sandbox_procs(shims)
    socket = peer.shim_socket(pod.pod_sandbox_id)
    assert socket.exists()

    peer.proc.kill()
    peer.proc.wait()
    assert all(s.is_running() for s in shims)  # shims outlive containerd by design

    peer.stop()  # raises PeerLeak if anything is left

    assert not any(s.is_running() for s in shims)
    assert not any(running(p) for p in sandbox)
    assert not peer.base.exists()
    assert not socket.exists()  # a killed shim leaves its socket; stop() removes it
    if not socket_root_existed:
        _assert_socket_root_removed()
    assert not _pod_cgroups_left(cgroup_parent)  # runc delete --force removed it


def test_pulls_through_cri_from_a_plain_http_registry(tmp_path, pause_tar):
    from e2e.registry import LocalRegistry

    with LocalRegistry() as registry:
        peer = ContainerdProc(cni_conf_dir=tmp_path / "net.d", plain_http_registries=[registry.host])
        try:
            peer.start()
            peer.import_image(pause_tar)
            ref = f"{registry.host}/kubelab/sleep:1"
            peer.ctr("images", "tag", PAUSE, ref)
            peer.ctr("images", "push", "--plain-http", ref)
            peer.ctr("images", "rm", PAUSE, ref)
            with peer.channel() as ch:
                img = pbg.ImageServiceStub(ch)
                assert not img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image")
                image_ref = img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=60).image_ref
                image = img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image
                assert image.id == image_ref and ref in image.repo_tags
        finally:
            peer.stop()
    assert not peer.base.exists()


def test_start_failure_is_one_clear_line_and_leaves_nothing(tmp_path):
    peer = ContainerdProc(cni_conf_dir=tmp_path / "net.d", log_level="no-such-level")
    try:
        with pytest.raises(ContainerdError) as err:
            peer.start(timeout=10)
        message = str(err.value)
        assert "exited with status" in message and "no-such-level" in message
        assert "\n" not in message.strip()
    finally:
        peer.stop()
    assert not peer.base.exists()
