"""README command 1 as a user runs it: `kubelab up` brings up the control plane and two nodes with
real containers, deploys nginx and shows it answering on its ClusterIP, on a NodePort and by its
DNS name from inside a pod; `kubelab down` then leaves no process, namespace, link, route, mount,
cgroup or state behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from kubelab.lab.controlplane import free_port
from kubelab.lab.nodes import LabNetwork, Node

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


@pytest.mark.timeout(900)
def test_kubelab_up_shows_nginx_and_down_leaves_nothing(test_images, tmp_path):
    # test_images: the images are built (and cached) before the lab is timed
    state = tmp_path / "lab"
    api_port, etcd_port = free_port(), free_port()
    while etcd_port + 1 == api_port:
        etcd_port = free_port()
    # its own session, so that if it hangs the whole process group is killed before `down` runs
    out_file = tmp_path / "up.out"
    with open(out_file, "w") as f:
        proc = subprocess.Popen([str(BIN / "kubelab"), "--state-dir", str(state), "up", "--apiserver-port",
                                 str(api_port), "--etcd-port", str(etcd_port)], stdout=f, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        proc.wait(600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    up = subprocess.CompletedProcess(proc.args, proc.returncode, out_file.read_text(), "")
    try:
        assert up.returncode == 0, up.stdout
        assert "Traceback" not in up.stdout
        out = up.stdout
        assert "node/node1   Ready" in out and "node/node2   Ready" in out
        assert out.count("Running") >= 4            # three nginx replicas and the client pod
        for where in ("(ClusterIP, from node1)", "(NodePort, from this host)", "(DNS, from the client pod)"):
            line = out.split(where, 1)[1].splitlines()[1]
            assert "Welcome to nginx!" in line, out
        assert f"export KUBECONFIG={state / 'admin.kubeconfig'}" in out
        nodes = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(state / "admin.kubeconfig"), "--cache-dir",
                                str(tmp_path / "cache"), "get", "deployment", "nginx", "-o",
                                "jsonpath={.status.availableReplicas}"], capture_output=True, text=True, timeout=30)
        assert nodes.stdout == "3"
        again = subprocess.run([str(BIN / "kubelab"), "--state-dir", str(state), "up"], capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 1 and again.stderr.startswith("kubelab: a lab is already running")
    finally:
        down = subprocess.run([str(BIN / "kubelab"), "--state-dir", str(state), "down"], capture_output=True,
                              text=True, timeout=300)
    assert down.returncode == 0 and down.stdout.strip() == "kubelab is down", down.stderr
    assert not state.exists()
    assert LabNetwork([Node("node1", 1), Node("node2", 2)]).leftovers() == {}
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and str(state) in " ".join(p.info["cmdline"])]
    assert left == []
    with open("/proc/self/mountinfo") as f:
        assert str(state) not in f.read()
    cg = [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith("kubelab-lab-")] \
        if os.path.isdir("/sys/fs/cgroup/memory") else []
    assert cg == []
