"""The kubelet's container and image garbage collection (kubelab.kubelet.gc) against real runtimes:
kubelab-cri and containerd, through CRI, with real exited containers, sandboxes and images."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.cri.api import api_pb2 as pb
from kubelab.kubelet.cri import RuntimeClient
from kubelab.kubelet.gc import ContainerGC, ImageGC, ImageGCError, ImageGCPolicy
from kubelab.kubelet.runtimespec import KUBELET_MANAGED, POD_UID

pytestmark = pytest.mark.usefixtures("cri")
SANDBOX_IMAGE = "localhost/kubelab/pause:3.9"       # containerd's, as tests/e2e/conftest.py configures it


def _runtime(cri) -> RuntimeClient:
    """The kubelet's CRI client, as the kubelet hands it to its garbage collectors."""
    return RuntimeClient(f"unix://{cri.socket}")


def _managed(pods, sconfig: pb.PodSandboxConfig) -> pb.PodSandboxConfig:
    sconfig.labels[KUBELET_MANAGED] = "true"
    return sconfig


def _container(pods, sconfig, name: str, attempt: int, command: list[str]) -> pb.ContainerConfig:
    c = pods.container_config(name, "busybox", command, attempt=attempt)
    c.labels[POD_UID] = sconfig.metadata.uid
    c.labels[KUBELET_MANAGED] = "true"
    return c


def _ids(cri, uid: str) -> dict[str, int]:
    cs = cri.rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        label_selector={POD_UID: uid}))).containers
    return {c.id: c.metadata.attempt for c in cs}


def test_dead_containers_beyond_the_newest_go_and_a_gone_pods_all_go(cri, pods):
    cri.pull("busybox")
    old_sid, old_cfg = pods.run_sandbox(_managed(pods, pods.sandbox_config("gc")))
    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=old_sid), timeout=60)   # a replaced sandbox
    cfg = pods.sandbox_config("gc")
    cfg.metadata.uid = old_cfg.metadata.uid
    cfg.labels[POD_UID] = old_cfg.metadata.uid
    cfg.metadata.attempt = 1
    sid, sconfig = pods.run_sandbox(_managed(pods, cfg))
    uid = sconfig.metadata.uid
    dead = []
    for attempt in range(3):
        cid = pods.start(sid, sconfig, _container(pods, sconfig, "app", attempt, ["true"]))
        cri.wait_state(cid, pb.CONTAINER_EXITED)
        dead.append(cid)
    running = pods.start(sid, sconfig, _container(pods, sconfig, "app", 3, ["sleep", "300"]))
    cri.wait_state(running, pb.CONTAINER_RUNNING)
    state = {"pod": "active"}

    async def collect():
        rc = _runtime(cri)
        try:
            return await ContainerGC(rc, lambda u: state["pod"] if u == uid else "gone").collect()
        finally:
            await rc.close()
    st = asyncio.run(collect())
    # the newest dead instance stays (lastState, logs --previous); the stopped, empty older sandbox goes
    assert _ids(cri, uid) == {dead[2]: 2, running: 3}
    assert (st.containers, st.sandboxes, st.errors) == (2, 1, [])
    left = {s.id for s in cri.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    assert sid in left and old_sid not in left
    state["pod"] = "gone"
    st = asyncio.run(collect())
    assert _ids(cri, uid) == {running: 3}                  # a running container is never collected
    assert (st.containers, st.errors) == (1, [])


def test_unused_images_go_by_the_thresholds_and_used_ones_stay(cri, pods):
    busybox, nginx = cri.pull("busybox"), cri.pull("nginx")
    sid, sconfig = pods.run_sandbox(_managed(pods, pods.sandbox_config("imggc")))
    cid = pods.start(sid, sconfig, _container(pods, sconfig, "app", 0, ["sleep", "300"]))
    cri.wait_state(cid, pb.CONTAINER_RUNNING)
    usage = {"capacityBytes": 1000, "availableBytes": 500}      # 50% used

    async def image_fs():
        return dict(usage)

    async def run(policy: ImageGCPolicy, fn: str):
        rc = _runtime(cri)
        try:
            gc = ImageGC(rc, image_fs, policy, keep=(SANDBOX_IMAGE,))
            return await getattr(gc, fn)()
        finally:
            await rc.close()

    def present(ref: str) -> bool:
        r = cri.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        return r.HasField("image") and bool(r.image.id)
    try:
        assert asyncio.run(run(ImageGCPolicy(85, 80, 0.0), "collect")).images == 0     # below the high threshold
        assert present(nginx)
        assert asyncio.run(run(ImageGCPolicy(85, 80, 3600.0), "delete_unused")).images == 0  # too young
        usage["availableBytes"] = 100                                                     # 90% used
        with pytest.raises(ImageGCError, match="Failed to garbage collect required amount of images"):
            asyncio.run(run(ImageGCPolicy(85, 80, 3600.0), "collect"))
        st = asyncio.run(run(ImageGCPolicy(85, 80, 0.0), "delete_unused"))
        assert not present(nginx) and present(busybox) and st.errors == []
        assert st.images >= 1 and st.bytes_freed > 0
        if cri.name == "containerd":        # its pause containers are not listed: kept as the sandbox image
            assert present(SANDBOX_IMAGE)
            sid2, _ = pods.run_sandbox(pods.sandbox_config("after-gc"))
            assert sid2
    finally:
        cri.pull("nginx")                                   # what the other tests of the session expect
