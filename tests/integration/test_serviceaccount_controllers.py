"""The serviceaccount and root-ca-certificate-publisher controllers in kubelab-controller-manager:
every namespace gets the "default" ServiceAccount and the kube-root-ca.crt ConfigMap, both put back
when deleted or changed."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import is_not_found
from kubelab.lab.controlplane import spawn
from polling import api

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def get(cp, resource, ns, name):
    async def go(c):
        try:
            return await c.get("v1", resource, ns, name)
        except Exception as e:
            if is_not_found(e):
                return None
            raise
    return api(cp, go)


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_default_service_account_and_root_ca(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns = f"sa-{uid}"
    ca_file = control_plane.api.pki.dir / "ca.crt"
    ca = ca_file.read_text()
    cm = spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", str(control_plane.kubeconfig),
                "--controllers", "serviceaccount,root-ca-cert-publisher", "--root-ca-file", str(ca_file),
                "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp_path / "cm.log")
    try:
        # a namespace that existed before the controllers started
        wait(lambda: get(control_plane, "serviceaccounts", "default", "default"), 15, "default/default SA")
        api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": ns}}))
        wait(lambda: get(control_plane, "serviceaccounts", ns, "default"), 15, "the default SA")
        got = wait(lambda: get(control_plane, "configmaps", ns, "kube-root-ca.crt"), 15, "kube-root-ca.crt")
        assert got["data"] == {"ca.crt": ca}
        assert "kube-apiserver" in got["metadata"]["annotations"]["kubernetes.io/description"]
        # deleted or changed: put back
        api(control_plane, lambda c: c.delete("v1", "serviceaccounts", ns, "default"))
        api(control_plane, lambda c: c.patch("v1", "configmaps", ns, "kube-root-ca.crt", {"data": {"ca.crt": "x"}}))
        wait(lambda: (get(control_plane, "serviceaccounts", ns, "default") or {}).get("metadata", {}).get("uid")
             not in (None,), 15, "the SA recreated")
        wait(lambda: (get(control_plane, "configmaps", ns, "kube-root-ca.crt") or {}).get("data") == {"ca.crt": ca},
             15, "the CA restored")
    finally:
        cm.send_signal(signal.SIGTERM)
        try:
            cm.wait(30)
        except subprocess.TimeoutExpired:
            cm.kill()
            cm.wait()
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    assert cm.returncode == 0
    assert "Traceback" not in (tmp_path / "cm.log").read_text()
