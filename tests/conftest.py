"""Fixtures: a real etcd, a real apiserver process, kubeconfig, the real kubectl, the official client.

Everything started here is stopped here, and the session fails loudly if a process, a listening
port or a temp dir outlives it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from kubelab.lab.controlplane import APIServerProc, Etcd, Pki, free_port, stop

VENV_BIN = Path(sys.executable).parent
KUBECTL = str(VENV_BIN / "kubectl")


@dataclass
class ControlPlane:
    tmp: Path
    etcd: Etcd
    api: APIServerProc
    kubeconfig: Path
    token: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api.port}"

    def restart_apiserver(self, kill: bool = True) -> None:
        if kill:
            self.api.proc.kill()
            self.api.proc.wait()
        else:
            stop(self.api.proc)
        self.api.start(self.tmp / "apiserver.log")


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="session")
def control_plane():
    before = _children()
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-test-"))
    etcd = Etcd(tmp / "etcd", free_port(), free_port())
    etcd.start(tmp / "etcd.log")
    pki = Pki(tmp / "pki")
    pki.ensure(("127.0.0.1",))
    token = "kubelab-test-token"
    (tmp / "tokens.csv").write_text(f'{token},test-user,1000,"devs,testers"\n')
    # as upstream's integration test servers: no serviceaccount controller runs here to create the
    # "default" ServiceAccount of fresh namespaces, so the ServiceAccount admission plugin is off
    # (`sa_control_plane` serves the same etcd with it on)
    api = APIServerProc(etcd.url, free_port(), pki, token_file=tmp / "tokens.csv",
                        extra=("--disable-admission-plugins=ServiceAccount",))
    cp = ControlPlane(tmp, etcd, api, tmp / "admin.kubeconfig", token)
    try:
        api.start(tmp / "apiserver.log")
        pki.kubeconfig(cp.url, cp.kubeconfig)
        yield cp
    finally:
        if api.proc:
            stop(api.proc)
        if etcd.proc:
            stop(etcd.proc)
        log = (tmp / "apiserver.log").read_text() if (tmp / "apiserver.log").exists() else ""
        shutil.rmtree(tmp)
    leaked = _children() - before
    assert not leaked, f"processes leaked by the control plane fixture: {leaked}"
    assert not tmp.exists(), f"temp dir leaked: {tmp}"
    for port in (etcd.client_port, api.port):
        conns = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                 and c.status == psutil.CONN_LISTEN]
        assert not conns, f"port {port} still listening after teardown"
    assert "Traceback" not in log or "internal error" in log, "apiserver logged an unexpected traceback"


@pytest.fixture(scope="module")
def sa_control_plane(control_plane):
    """A second apiserver on the session's etcd and PKI with upstream's default admission plugins
    (ServiceAccount included: pods need their service account and get the token volume), and
    tokens of at most 48 hours."""
    tmp = control_plane.tmp
    api = APIServerProc(control_plane.etcd.url, free_port(), control_plane.api.pki, token_file=tmp / "tokens.csv",
                        extra=("--service-account-max-token-expiration=48h",))
    name = f"sa-apiserver-{api.port}"
    cp = ControlPlane(tmp, control_plane.etcd, api, tmp / f"{name}.kubeconfig", control_plane.token)
    try:
        api.start(tmp / f"{name}.log")
        api.pki.kubeconfig(cp.url, cp.kubeconfig)
        yield cp
    finally:
        if api.proc:
            stop(api.proc)
        log = (tmp / f"{name}.log").read_text() if (tmp / f"{name}.log").exists() else ""
        for f in (cp.kubeconfig, tmp / f"{name}.log"):
            f.unlink(missing_ok=True)
    assert "Traceback" not in log or "internal error" in log, "apiserver logged an unexpected traceback"


@dataclass
class Kubectl:
    kubeconfig: Path
    cache: Path

    def run(self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]
        e = dict(os.environ, **(env or {}))
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, env=e, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def popen(self, *args: str) -> subprocess.Popen:
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))


@pytest.fixture
def kubectl(control_plane, tmp_path) -> Kubectl:
    """The real kubectl with a fresh discovery cache."""
    return Kubectl(control_plane.kubeconfig, tmp_path / "kube-cache")


@pytest.fixture
def k8s(control_plane):
    """The official kubernetes Python client, configured from the lab's kubeconfig."""
    from kubernetes import client, config
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(control_plane.kubeconfig), client_configuration=cfg)
    api = client.ApiClient(cfg)
    yield api
    api.close()


@pytest.fixture
def namespace(kubectl, request) -> str:
    """A fresh namespace per test (namespaces are not deleted: that needs the namespace controller)."""
    import re
    import uuid
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    kubectl("create", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
    return name
