"""Node-pressure eviction on a one-node lab with real containers.

Memory: the node's pods may use 600Mi (--system-reserved holds back the rest of the machine), so
with the hard threshold memory.available<100Mi (which adds allocatableMemory.available<100Mi on
the kubepods cgroup) a BestEffort pod holding 560Mi puts the node under memory pressure. The
kubelet reports MemoryPressure, the node controller taints the node, the hog (and only the hog) is
evicted with upstream's status and message, a new BestEffort pod is refused while the condition
holds (a Burstable one is not), and the condition clears after the pressure transition period.
With --kernel-memcg-notification (cgroup v1) the kernel's threshold event on the kubepods cgroup
starts the eviction manager's pass as the hog crosses the level.

Disk: an emptyDir past its sizeLimit and a container past its ephemeral-storage limit are evicted
at once. Then, the kubelet's root directory being a 300Mi filesystem with nodefs.available<40%, a
pod filling its emptyDir with 200Mi is evicted for ephemeral-storage, its volume freed, every new
pod refused under DiskPressure, and the condition clears."""
from __future__ import annotations

import json
import re
import subprocess

import psutil
import pytest

from kubelab.api.resources import to_int
from kubelab.cri.runtime import cgroups
from kubelab.lab.cluster import LabCluster
from e2e.labkubectl import kjson, kubectl, wait_phase
from polling import wait

pytestmark = pytest.mark.e2e

Mi = 1024 * 1024


@pytest.fixture
def lab(test_images):
    reserved = psutil.virtual_memory().total - 600 * Mi
    cluster = LabCluster({"busybox": test_images["busybox"]}, nodes=1, kubelets=True,
                         kubelet_args=("--system-reserved", f"memory={reserved}",
                                       "--eviction-hard", "memory.available<100Mi",
                                       "--eviction-pressure-transition-period", "25s",
                                       "--kernel-memcg-notification"))
    cluster.up()
    try:
        yield cluster
    finally:
        problems = cluster.down()
        assert not problems, problems


@pytest.fixture
def k(lab, tmp_path_factory):
    return kubectl(lab, tmp_path_factory.mktemp("kube-cache"))


@pytest.fixture
def disk_lab(test_images, tmp_path):
    """A lab whose kubelet keeps its root directory (nodefs: pods' volumes) on a 300Mi tmpfs."""
    from kubelab.lab.runtimes import mountpoints_under
    root = tmp_path / "kubelet-root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(root)], check=True)
    try:
        cluster = LabCluster({"busybox": test_images["busybox"]}, nodes=1, kubelets=True,
                             kubelet_args=("--root-dir", str(root), "--eviction-hard", "nodefs.available<40%",
                                           "--eviction-pressure-transition-period", "20s"))
        cluster.up()
        try:
            yield cluster, root
        finally:
            problems = cluster.down()
            assert not problems, problems
    finally:
        for mp in mountpoints_under(root):          # deepest first: what the kubelet left, then the root
            subprocess.run(["umount", mp], capture_output=True)
        assert not mountpoints_under(root)


def pod_yaml(name: str, image: str, command: str, resources: str = "{}", node: str = "") -> str:
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  {f"nodeName: {node}" if node else ""}
  containers:
  - name: {name}
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, {json.dumps(command)}]
    resources: {resources}
"""


def test_memory_pressure_evicts_the_hog_and_refuses_best_effort_pods(lab, k):
    image = lab.image_refs[0]["busybox"]
    node = kjson(k, "get", "node", "node1")
    # allocatable keeps the hard threshold back: 600Mi for pods less 100Mi
    assert to_int("memory", node["status"]["allocatable"]["memory"]) == 500 * Mi
    k("apply", "-f", "-", input=pod_yaml("bystander", image, "sleep 100000") + "---\n" +
      pod_yaml("guaranteed", image, "sleep 100000", "{limits: {memory: 64Mi, cpu: 100m}}"))
    for name in ("bystander", "guaranteed"):
        wait(lambda: kjson(k, "get", "pod", name)["status"].get("phase") == "Running", 60, f"{name} Running")

    if cgroups.version() == 1:      # the kubelet watches the kubepods cgroup's usage before the hog starts
        wait(lambda: "setting notification threshold allocatableMemory.available" in
             (lab.tmp / "node1" / "kubelet.log").read_text(), 30, "the memory threshold notifier set")
    # dd holds its 560Mi buffer while blocked writing into sleep's pipe
    k("apply", "-f", "-", input=pod_yaml("hog", image, "dd if=/dev/zero bs=560M count=1 | sleep 100000"))
    seen = {"condition": False, "taint": False}

    def evicted():
        n = kjson(k, "get", "node", "node1")
        if any(c["type"] == "MemoryPressure" and c["status"] == "True" for c in n["status"]["conditions"]):
            seen["condition"] = True
        if any(t["key"] == "node.kubernetes.io/memory-pressure" for t in n["spec"].get("taints") or []):
            seen["taint"] = True
        st = kjson(k, "get", "pod", "hog")["status"]
        return st if st.get("phase") == "Failed" else None
    st = wait(evicted, 90, "the hog evicted")
    assert st["reason"] == "Evicted"
    assert re.fullmatch(r"The node was low on resource: memory\. Threshold quantity: 100Mi, available: -?\d+\w*\. "
                        r"Container hog was using \d+\w*, request is 0, has larger consumption of memory\. ",
                        st["message"]), st["message"]
    assert {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}.items() <= \
        next(c for c in st["conditions"] if c["type"] == "DisruptionTarget").items()
    assert seen["condition"], "MemoryPressure was never reported"
    if cgroups.version() == 1:      # the kernel said so as the hog crossed the level, before the 10 s round
        log = (lab.tmp / "node1" / "kubelet.log").read_text()
        assert "eviction manager: hard allocatable memory eviction threshold crossed" in log, log[-3000:]
    events = kjson(k, "get", "events", "--field-selector", "involvedObject.name=hog,reason=Evicted")["items"]
    assert events and events[0]["type"] == "Warning" and events[0]["message"] == st["message"]
    for name in ("bystander", "guaranteed"):
        p = kjson(k, "get", "pod", name)["status"]
        assert p["phase"] == "Running" and p["containerStatuses"][0]["restartCount"] == 0, (name, p)

    # while the condition holds, a BestEffort pod bound to the node is refused; a Burstable one runs
    n = kjson(k, "get", "node", "node1")
    assert any(c["type"] == "MemoryPressure" and c["status"] == "True" for c in n["status"]["conditions"])
    k("apply", "-f", "-", input=pod_yaml("late-be", image, "sleep 100000", node="node1") + "---\n" +
      pod_yaml("late-burstable", image, "sleep 100000", "{requests: {memory: 16Mi}}", node="node1"))
    st = wait_phase(k, "late-be", "Failed", 30, "the BestEffort pod refused")
    assert (st["reason"], st["message"]) == ("Evicted", "Pod was rejected: The node had condition: [MemoryPressure]. ")
    assert not st.get("containerStatuses") or all("running" not in c.get("state", {}) for c in st["containerStatuses"])
    wait(lambda: kjson(k, "get", "pod", "late-burstable")["status"].get("phase") == "Running", 60,
         "the Burstable pod Running under memory pressure")
    assert seen["taint"] or any(t["key"] == "node.kubernetes.io/memory-pressure"
                                for t in kjson(k, "get", "node", "node1")["spec"].get("taints") or [])

    # the condition and the taint go once the transition period has passed without pressure
    wait(lambda: all(c["status"] == "False" for c in kjson(k, "get", "node", "node1")["status"]["conditions"]
                     if c["type"] == "MemoryPressure"), 60, "MemoryPressure cleared")
    k("delete", "pod", "--all", "--grace-period=1")


def test_disk_pressure_evicts_the_pod_filling_its_empty_dir(disk_lab, tmp_path_factory):
    lab, root = disk_lab
    k = kubectl(lab, tmp_path_factory.mktemp("kube-cache"))
    image = lab.image_refs[0]["busybox"]
    # first the limits, with no node pressure: an emptyDir past its sizeLimit, a container's root
    # filesystem past its ephemeral-storage limit (two containers), a pod past its containers' sum
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: capped}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: capped
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "dd if=/dev/zero of=/data/blob bs=1M count=20; sleep 100000"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, emptyDir: {{sizeLimit: 10Mi}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: rootfs-hog}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "dd if=/dev/zero of=/blob bs=1M count=20; sleep 100000"]
    resources: {{limits: {{ephemeral-storage: 10Mi}}}}
  - name: idle
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
    resources: {{limits: {{ephemeral-storage: 100Mi}}}}
---
""" + pod_yaml("pod-over", image, "dd if=/dev/zero of=/blob bs=1M count=20; sleep 100000",
               "{limits: {ephemeral-storage: 10Mi}}"))
    for name, msg in (("capped", 'Usage of EmptyDir volume "data" exceeds the limit "10Mi". '),
                      ("rootfs-hog", 'Container writer exceeded its local ephemeral storage limit "10Mi". '),
                      ("pod-over", "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ")):
        st = wait_phase(k, name, "Failed", 60, f"{name} evicted")
        assert (st["reason"], st["message"]) == ("Evicted", msg)
    assert all(c["status"] == "False" for c in kjson(k, "get", "node", "node1")["status"]["conditions"]
               if c["type"] == "DiskPressure")

    k("apply", "-f", "-", input=pod_yaml("bystander", image, "sleep 100000") + f"""---
apiVersion: v1
kind: Pod
metadata: {{name: filler}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: filler
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 3; dd if=/dev/zero of=/data/blob bs=1M count=200; sleep 100000"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, emptyDir: {{}}}}]
""")
    seen = {"condition": False}

    def evicted():
        n = kjson(k, "get", "node", "node1")
        if any(c["type"] == "DiskPressure" and c["status"] == "True" for c in n["status"]["conditions"]):
            seen["condition"] = True
        st = kjson(k, "get", "pod", "filler")["status"]
        return st if st.get("phase") == "Failed" else None
    st = wait(evicted, 90, "the filler evicted")
    uid = kjson(k, "get", "pod", "filler")["metadata"]["uid"]
    assert st["reason"] == "Evicted" and st["message"].startswith(
        "The node was low on resource: ephemeral-storage. Threshold quantity: 120Mi, available: "), st["message"]
    assert seen["condition"], "DiskPressure was never reported"
    assert kjson(k, "get", "pod", "bystander")["status"]["phase"] == "Running"
    # the evicted pod's emptyDir is gone, so the space is back
    wait(lambda: not (root / "pods" / uid / "volumes").exists(), 30, "the evicted pod's volumes removed")
    # under DiskPressure every (non-critical) pod is refused, Burstable too
    assert any(c["type"] == "DiskPressure" and c["status"] == "True"
               for c in kjson(k, "get", "node", "node1")["status"]["conditions"])
    k("apply", "-f", "-", input=pod_yaml("late", image, "sleep 1", "{requests: {memory: 16Mi}}", node="node1"))
    st = wait_phase(k, "late", "Failed", 30, "the pod refused")
    assert st["message"] == "Pod was rejected: The node had condition: [DiskPressure]. "
    wait(lambda: all(c["status"] == "False" for c in kjson(k, "get", "node", "node1")["status"]["conditions"]
                     if c["type"] == "DiskPressure"), 60, "DiskPressure cleared")
    k("delete", "pod", "--all", "--grace-period=1")
    wait(lambda: not list((root / "pods").glob("*/volumes/*/*")), 30, "all pod volumes torn down")
