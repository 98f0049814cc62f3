"""kubelab-cri instances side by side (one per lab node), NetworkReady before and after a CNI config
appears, and PullImage with registry credentials through CRI."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc
import pytest

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.runtime import cgroups
from kubelab.lab.runtimes import KubelabCRIProc
from e2e.cri_client import CRI, Pods
from e2e.registry import USERS, LocalRegistry

pytestmark = pytest.mark.e2e

BRIDGE_B, SUBNET_B = "kle2e1", "10.251.0.0/24"


def _conflist(data_dir: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": "kubelab-e2e-b", "plugins": [
        {"type": "bridge", "bridge": BRIDGE_B, "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": SUBNET_B}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}}]}


def _network_ready(cri: CRI) -> pb.RuntimeCondition:
    conds = cri.rt.Status(pb.StatusRequest()).status.conditions
    return next(c for c in conds if c.type == "NetworkReady")


def test_second_instance_side_by_side_and_network_ready(kubelab_cri, registry, tmp_path):
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-cri-b-"))
    conf_dir, data_dir = tmp / "net.d", tmp / "ipam"
    conf_dir.mkdir()
    other = KubelabCRIProc(tmp / "node-b", {"conf_dir": conf_dir, "bin_dir": Path("/usr/lib/cni")}, registry.host,
                           cgroup_parent="/kubelab-e2e-node-b")
    b = None
    pods_a = Pods(kubelab_cri, tmp_path / "logs-a")
    pods_b = None
    try:
        other.start()
        b = CRI("kubelab-cri", other.socket, kubelab_cri.images, cgroup_base="kubelab-e2e-node-b")
        pods_b = Pods(b, tmp_path / "logs-b")
        # no CNI config yet: not network-ready, and pods with pod networking are refused cleanly
        cond = _network_ready(b)
        assert cond.status is False and cond.reason == "NetworkPluginNotReady"
        assert "no network config found" in cond.message and str(conf_dir) in cond.message
        with pytest.raises(grpc.RpcError) as e:
            pods_b.run_sandbox()
        assert "cni" in e.value.details().lower()
        assert not b.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items
        # host-network pods need no CNI
        sid_host, _ = pods_b.run_sandbox(host_network=True)
        assert b.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid_host)).status.state == \
            pb.SANDBOX_READY

        (conf_dir / "10-b.conflist").write_text(json.dumps(_conflist(data_dir)))
        assert _network_ready(b).status is True
        kubelab_cri.pull("busybox")
        b.pull("busybox")
        sid_a, sc_a = pods_a.run_sandbox()
        sid_b, sc_b = pods_b.run_sandbox()
        ca = pods_a.start(sid_a, sc_a, pods_a.container_config("a", "busybox", ["sleep", "3600"]))
        cb = pods_b.start(sid_b, sc_b, pods_b.container_config("b", "busybox", ["sleep", "3600"]))
        ip_a = kubelab_cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid_a)).status.network.ip
        ip_b = b.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid_b)).status.network.ip
        assert ipaddress.ip_address(ip_b) in ipaddress.ip_network(SUBNET_B)
        assert ipaddress.ip_address(ip_a) not in ipaddress.ip_network(SUBNET_B)
        # each instance sees only its own pods and containers
        assert {s.id for s in b.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items} == {sid_host, sid_b}
        assert sid_b not in {s.id for s in kubelab_cri.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items}
        assert [c.id for c in b.rt.ListContainers(pb.ListContainersRequest()).containers] == [cb]
        assert kubelab_cri.status(ca).state == b.status(cb).state == pb.CONTAINER_RUNNING
    finally:
        pods_a.cleanup()
        if pods_b is not None:
            pods_b.cleanup()
        if b is not None:
            b.close()
        other.stop()
        subprocess.run(["ip", "link", "del", BRIDGE_B], capture_output=True)
        base = Path("/sys/fs/cgroup/memory/kubelab-e2e-node-b")
        pod_cgroups = [p.name for p in base.iterdir() if p.is_dir()] if base.exists() else []
        cgroups.remove("/kubelab-e2e-node-b")
        left = [p.name for p in data_dir.glob("*") if p.name[0].isdigit()] if data_dir.exists() else []
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"IP reservations left: {left}"
        assert not pod_cgroups, f"pod cgroups left: {pod_cgroups}"


def test_pull_with_credentials_through_cri(kubelab_cri, test_images):
    with LocalRegistry(token_auth=True) as reg:
        asyncio.run(reg.push(test_images["busybox"], "private/busybox:1"))
        ref = f"{reg.host}/private/busybox:1"
        user, password = next(iter(USERS.items()))
        with pytest.raises(grpc.RpcError) as e:
            kubelab_cri.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=60)
        assert ref in e.value.details() and ("unauthorized" in e.value.details().lower()
                                             or "denied" in e.value.details().lower())
        with pytest.raises(grpc.RpcError):
            kubelab_cri.img.PullImage(pb.PullImageRequest(
                image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(username=user, password="wrong")), timeout=60)
        image_ref = kubelab_cri.img.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(username=user, password=password)), timeout=60).image_ref
        st = kubelab_cri.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        assert st.image.id == image_ref and ref in st.image.repo_tags
        kubelab_cri.img.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
