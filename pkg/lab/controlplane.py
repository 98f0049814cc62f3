"""Starting etcd and the apiserver as processes: used by `kubelab up` and by the test fixtures."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..pki import certs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection((host, port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.args[0]} did not listen on {host}:{port} within {timeout}s")


def spawn(args: list[str], log: Path, *, detach: bool = False, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon with stdout and stderr appended to log (stdin /dev/null); detach: in its own
    session; env: its whole environment (default: this process's)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")
    try:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=detach, cwd=cwd, env=env)
    finally:
        out.close()


def stop(proc_or_pid, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after timeout; for a Popen or a pid."""
    if isinstance(proc_or_pid, subprocess.Popen):
        if proc_or_pid.poll() is None:
            proc_or_pid.terminate()
            try:
                proc_or_pid.wait(timeout)
            except subprocess.TimeoutExpired:
                proc_or_pid.kill()
                proc_or_pid.wait()
        return
    pid = int(proc_or_pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Etcd:
    data_dir: Path
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self, log: Path, *, detach: bool = False, timeout: float = 20.0) -> None:
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [etcd, "--name", "kubelab", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://{self.host}:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://{self.host}:{self.peer_port}",
                "--initial-cluster", f"kubelab=http://{self.host}:{self.peer_port}",
                "--listen-metrics-urls", "", "--log-level", "warn", "--logger", "zap",
                "--quota-backend-bytes", str(4 << 30), "--snapshot-count", "10000"]
        self.proc = spawn(args, log, detach=detach)
        wait_port(self.host, self.client_port, self.proc, timeout, log)


@dataclass
class Pki:
    """CA, the apiserver's serving cert, an admin client cert, the apiserver's kubelet client cert and
    the service account key pair (sa.key signs tokens, sa.pub verifies them, as kubeadm names them)
    under one directory."""
    dir: Path

    def ensure(self, sans: tuple[str, ...]) -> None:
        d = self.dir
        if not (d / "ca.crt").exists():
            ca, ca_key = certs.make_ca()
            certs.write(d / "ca.crt", ca, 0o644)
            certs.write(d / "ca.key", ca_key)
        ca, ca_key = (d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes()
        cert, key = certs.issue(ca, ca_key, "kube-apiserver", sans=sans + ("kubernetes", "kubernetes.default",
                                                                          "kubernetes.default.svc", "localhost"),
                                server=True)
        certs.write(d / "apiserver.crt", cert, 0o644)
        certs.write(d / "apiserver.key", key)
        if not (d / "sa.key").exists():
            key, pub = certs.make_key_pair()
            certs.write(d / "sa.key", key)
            certs.write(d / "sa.pub", pub, 0o644)
        if not (d / "admin.crt").exists():
            cert, key = certs.issue(ca, ca_key, "kubernetes-admin", orgs=("system:masters",), client=True)
            certs.write(d / "admin.crt", cert, 0o644)
            certs.write(d / "admin.key", key)
        if not (d / "apiserver-kubelet-client.crt").exists():     # kubeadm's name and subject
            cert, key = certs.issue(ca, ca_key, "kube-apiserver-kubelet-client", orgs=("kubeadm:cluster-admins",),
                                    client=True)
            certs.write(d / "apiserver-kubelet-client.crt", cert, 0o644)
            certs.write(d / "apiserver-kubelet-client.key", key)

    def kubeconfig(self, server: str, path: Path) -> None:
        d = self.dir
        text = certs.kubeconfig(server, (d / "ca.crt").read_bytes(), (d / "admin.crt").read_bytes(),
                                (d / "admin.key").read_bytes())
        certs.write(path, text.encode())


@dataclass
class APIServerProc:
    etcd_url: str
    port: int
    pki: Pki
    host: str = "127.0.0.1"
    token_file: Path | None = None
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        d = self.pki.dir
        a = [str(Path(sys.executable).parent / "kubelab-apiserver"), "--etcd-servers", self.etcd_url,
             "--bind-address", self.host, "--secure-port", str(self.port), "--advertise-address", self.host,
             "--tls-cert-file", str(d / "apiserver.crt"), "--tls-private-key-file", str(d / "apiserver.key"),
             "--client-ca-file", str(d / "ca.crt"),
             "--kubelet-client-certificate", str(d / "apiserver-kubelet-client.crt"),
             "--kubelet-client-key", str(d / "apiserver-kubelet-client.key"),
             "--service-account-key-file", str(d / "sa.pub"), "--service-account-signing-key-file", str(d / "sa.key")]
        if self.token_file:
            a += ["--token-auth-file", str(self.token_file)]
        return a + list(self.extra)

    def start(self, log: Path, *, detach: bool = False, timeout: float = 30.0) -> None:
        self.proc = spawn(self.args(), log, detach=detach)
        wait_port(self.host, self.port, self.proc, timeout, log)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.pki.dir / "ca.crt"))
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"https://{self.host}:{self.port}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # not yet
                last = e
            time.sleep(0.1)
        raise TimeoutError(f"apiserver not ready within {timeout}s: {last}")
