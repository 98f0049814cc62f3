"""README command 1's CLI: `kubelab up` gives a working apiserver and kubectl setup; `down` leaves nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from kubelab.lab.controlplane import free_port

KUBELAB = str(Path(sys.executable).parent / "kubelab")
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def test_up_status_down(tmp_path):
    state = tmp_path / "lab"
    api_port, etcd_port = free_port(), free_port()
    while etcd_port + 1 == api_port:
        etcd_port = free_port()
    up = subprocess.run([KUBELAB, "--state-dir", str(state), "up", "--nodes", "0", "--apiserver-port", str(api_port),
                         "--etcd-port", str(etcd_port)], capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert f"https://127.0.0.1:{api_port}" in up.stdout
        assert "default           Active" in up.stdout
        assert f"export KUBECONFIG={state / 'admin.kubeconfig'}" in up.stdout
        out = subprocess.run([KUBECTL, "--kubeconfig", str(state / "admin.kubeconfig"), "--cache-dir",
                              str(tmp_path / "cache"), "get", "svc", "kubernetes", "-n", "default", "-o", "name"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "service/kubernetes", out.stderr
        st = subprocess.run([KUBELAB, "--state-dir", str(state), "status"], capture_output=True, text=True)
        assert st.stdout.split("\n")[:2] == ["etcd: running", "apiserver: running"]
        again = subprocess.run([KUBELAB, "--state-dir", str(state), "up", "--nodes", "0", "--apiserver-port", str(api_port),
                                "--etcd-port", str(etcd_port)], capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert again.stderr.strip().startswith("kubelab: a lab is already running")
        assert "Traceback" not in again.stderr
    finally:
        down = subprocess.run([KUBELAB, "--state-dir", str(state), "down"], capture_output=True, text=True,
                              timeout=60)
    assert down.stdout.strip() == "kubelab is down"
    assert not state.exists()
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"])
            if p.info["cmdline"] and str(state) in " ".join(p.info["cmdline"])]
    assert left == []
    st = subprocess.run([KUBELAB, "--state-dir", str(state), "status"], capture_output=True, text=True)
    assert st.returncode == 1 and st.stdout.strip() == "no lab"
