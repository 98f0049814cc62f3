"""Fixtures for tests with real containers and a real network.

The CRI suite runs unchanged against kubelab-cri and against containerd 1.6 (the `cri` fixture is
parametrized over both). Both pull kubelab's test images, built from Debian packages, from a local
docker-registry on loopback, and put pods on one bridge network made by the Debian reference CNI
plugins. Every fixture checks that what it made is gone afterwards.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from e2e.cri_client import CRI, Pods
from kubelab.lab.runtimes import ContainerdProc, KubelabCRIProc

IMAGE_CACHE = Path(os.environ.get("KUBELAB_IMAGE_CACHE", "/var/cache/kubelab/images"))
BRIDGE = "kle2e0"
SUBNET = "10.250.0.0/24"
GATEWAY = "10.250.0.1"
CGROUP_BASE = "kubelab-e2e"      # + "-kubelab-cri" / "-containerd": one cgroup tree per runtime
TEST_IMAGES = {"busybox": "kubelab/busybox:1.35", "nginx": "kubelab/nginx:1.22", "pause": "kubelab/pause:3.9"}


def _mounts_under(*roots: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if any(mp == str(r) or mp.startswith(str(r) + "/") for r in roots):
                out.append(mp)
    return out


def _procs_mentioning(text: str) -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if text in cmd and p.pid != os.getpid():
            out.append(f"{p.pid}: {cmd[:160]}")
    return out


def _cgroup_dirs(base: str) -> list[str]:
    root = Path("/sys/fs/cgroup")
    found = []
    for d in [root / "unified" / base, root / base] + [c / base for c in root.iterdir() if c.is_dir()]:
        if d.is_dir():
            found.append(str(d))
    return sorted(set(found))


def _remove_cgroups(base: str) -> None:
    for d in _cgroup_dirs(base):
        for sub in sorted((p for p in Path(d).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            Path(d).rmdir()
        except OSError:
            pass


@pytest.fixture(scope="session")
def test_images() -> dict[str, Path]:
    """kubelab's test images (busybox, nginx, pause) built from Debian packages, as OCI layout archives."""
    from kubelab.cri.image.build import build
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("busybox", "nginx", "pause"):
        out[name] = asyncio.run(build(name, IMAGE_CACHE / f"{name}.oci.tar", IMAGE_CACHE))
    return out


@pytest.fixture(scope="session")
def registry(test_images):
    """Debian's docker-registry on loopback holding the test images under <host>/kubelab/..."""
    from kubelab.cri.image.reference import parse
    from kubelab.cri.image.registry import RegistryClient
    from e2e.registry import LocalRegistry
    reg = LocalRegistry().start()
    try:
        async def push() -> None:
            client = RegistryClient(insecure={reg.host})
            try:
                for name, ref in TEST_IMAGES.items():
                    await client.push_layout(test_images[name], parse(f"{reg.host}/{ref}"), None)
            finally:
                await client.close()
        asyncio.run(push())
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def cni_net():
    """A CNI config dir with a bridge + host-local + portmap conflist on a test bridge and subnet."""
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-cni-"))
    conf_dir, data_dir = tmp / "net.d", tmp / "ipam"
    conf_dir.mkdir()
    conf = {"cniVersion": "1.0.0", "name": "kubelab-e2e", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(data_dir),
                  "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}
    (conf_dir / "10-kubelab-e2e.conflist").write_text(json.dumps(conf))
    chains_before = _nat_chains()
    try:
        yield {"conf_dir": conf_dir, "data_dir": data_dir, "bin_dir": Path("/usr/lib/cni")}
    finally:
        leftover = [f.name for f in data_dir.glob("*") if f.name[0].isdigit()] if data_dir.exists() else []
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        _remove_nat_chains(_nat_chains() - chains_before)
        shutil.rmtree(tmp)
        assert not leftover, f"CNI IP reservations leaked: {leftover}"


def _nat_chains() -> set[str]:
    out = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return {ln.split()[1] for ln in out.splitlines() if ln.startswith("-N ")}


def _remove_nat_chains(chains: set[str]) -> None:
    if not chains:
        return
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout.splitlines()
    for r in rules:
        parts = r.split()
        if parts[0] == "-A" and ("-j" in parts and parts[parts.index("-j") + 1] in chains):
            subprocess.run(["iptables", "-t", "nat", "-D", *parts[1:]], capture_output=True)
    for c in chains:
        subprocess.run(["iptables", "-t", "nat", "-F", c], capture_output=True)
    for c in chains:
        subprocess.run(["iptables", "-t", "nat", "-X", c], capture_output=True)


def _clean_runtime(cri: CRI) -> None:
    from kubelab.cri.api import api_pb2 as pb
    for s in cri.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        try:
            cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=s.id), timeout=60)
        finally:
            cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=s.id), timeout=60)


@pytest.fixture(scope="session")
def kubelab_cri(cni_net, registry):
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-cri-"))
    rt = KubelabCRIProc(tmp, cni_net, registry.host, cgroup_parent=f"/{CGROUP_BASE}-kubelab-cri")
    images = {k: f"{registry.host}/{v}" for k, v in TEST_IMAGES.items()}
    client = None
    try:
        rt.start()
        client = CRI("kubelab-cri", rt.socket, images, cgroup_base=f"{CGROUP_BASE}-kubelab-cri")
        client.server = rt  # type: ignore[attr-defined]
        yield client
        _clean_runtime(client)
    finally:
        if client is not None:
            client.close()
        rt.stop()
        log = rt.log.read_text() if rt.log.exists() else ""
        leaks = {"conmon": _procs_mentioning(str(rt.runroot)), "mounts": _mounts_under(rt.root, rt.runroot),
                 "netns": [p.name for p in (rt.runroot / "netns").glob("*")] if (rt.runroot / "netns").exists()
                 else []}
        for mp in reversed(leaks["mounts"]):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for p in leaks["conmon"]:
            try:
                os.kill(int(p.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        base = f"{CGROUP_BASE}-kubelab-cri"
        leaks["cgroups"] = [str(p) for d in _cgroup_dirs(base) for p in Path(d).iterdir() if p.is_dir()]
        _remove_cgroups(base)
        assert not any(leaks.values()), f"kubelab-cri left behind: {leaks}"
        assert "Traceback" not in log, f"kubelab-cri logged a traceback:\n{log[-4000:]}"


@pytest.fixture(scope="session")
def containerd_cri(cni_net, registry, test_images):
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-containerd-"))
    ctrd = ContainerdProc(tmp, cni_conf_dir=cni_net["conf_dir"], cni_bin_dir=cni_net["bin_dir"],
                          sandbox_image="localhost/kubelab/pause:3.9", plain_http_registries=[registry.host])
    client = None
    try:
        ctrd.start()
        ctrd.import_image(test_images["pause"])
        images = {k: f"{registry.host}/{v}" for k, v in TEST_IMAGES.items()}
        client = CRI("containerd", ctrd.socket, images, cgroup_base=f"{CGROUP_BASE}-containerd")
        yield client
        _clean_runtime(client)
    finally:
        if client is not None:
            client.close()
        ctrd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        # containerd leaves pod cgroups to the kubelet, which removes them; here the test does
        _remove_cgroups(f"{CGROUP_BASE}-containerd")


@pytest.fixture(scope="session", params=["kubelab-cri", "containerd"])
def cri(request) -> CRI:
    """The CRI under test: the suite runs once against each runtime."""
    return request.getfixturevalue("kubelab_cri" if request.param == "kubelab-cri" else "containerd_cri")


@pytest.fixture
def pods(cri, tmp_path):
    p = Pods(cri, tmp_path / "logs")
    yield p
    p.cleanup()
