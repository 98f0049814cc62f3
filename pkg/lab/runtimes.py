"""Container runtimes as processes, each in a dir of its own: kubelab-cri and containerd 1.6 (the CRI peer).

Used by the e2e test fixtures (the CRI suite runs unchanged against both) and by the pod start
benchmark. Like controlplane.py (etcd, the apiserver), from which they take spawn and stop, these
are synchronous; they may also be called from a running event loop (commands then run in a thread).

    rt = KubelabCRIProc(tmp, {"conf_dir": net_d, "bin_dir": Path("/usr/lib/cni")}, cgroup_parent="/bench")
    rt.start()                          # returns once CRI Version answers on rt.socket
    ...
    rt.stop()                           # SIGTERM, SIGKILL after 15 s

    ctrd = ContainerdProc(tmp, cni_conf_dir=conf_dir, plain_http_registries=["127.0.0.1:5000"])
    ctrd.start()                        # returns once CRI Version answers on ctrd.socket
    ctrd.import_image(Path("pause.tar"))
    ...                                 # CRI clients dial unix://<ctrd.socket>
    ctrd.stop()                         # pods removed through CRI, containerd and its shims killed,
                                        # mounts unmounted, the dir removed; PeerLeak if anything is left

What containerd needs on this machine (Debian 12, cgroup v1 hybrid, PID 1 not systemd, no
negative oom_score_adj allowed):
  - the cgroupfs driver: ``SystemdCgroup = false`` for runc and ``systemd_cgroup = false``;
  - ``restrict_oom_score_adj = true``: the kubelet asks for -998 for sandboxes and -997 for
    guaranteed pods; the clamp makes containerd use its own score (0) instead, else runc fails
    writing oom_score_adj;
  - ``oom_score = 0`` so containerd leaves its own score alone;
  - ``disable_apparmor = true`` (no AppArmor here), the snapshotters that cannot work here
    disabled (aufs, btrfs, zfs, devmapper); overlayfs is the snapshotter;
  - ``netns_mounts_under_state_dir = true`` so pod network namespaces are pinned under the
    peer's state dir, not the host's /var/run/netns, and runc's ``Root`` under the peer's dir
    (its default, /run/containerd/runc, is shared with any other containerd);
  - shim sockets cannot be moved: containerd 1.6 always puts them in /run/containerd/s/
    (named sha256("<address>/k8s.io/<task id>")); a killed shim leaves its socket there, so
    stop() removes the ones of its own tasks, and the dirs if it created them and they are empty.
containerd 1.6 answers ``RuntimeConfig`` (and the newer RPCs) with UNIMPLEMENTED.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import grpc
import psutil

from kubelab.cri.api import api_pb2, api_pb2_grpc
from kubelab.proc import CommandError, Result, run

from .controlplane import spawn, stop

MAX_MESSAGE = 16 * 1024 * 1024  # as the kubelet
CNI_BIN_DIR = Path("/usr/lib/cni")


# -- shared helpers ---------------------------------------------------------------------------

def cri_channel(socket: str | Path) -> grpc.Channel:
    """A new (synchronous) grpc channel to a CRI unix socket, with the kubelet's message limits."""
    return grpc.insecure_channel(f"unix://{socket}", options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)])


def cri_version(socket: str | Path, timeout: float = 2.0) -> api_pb2.VersionResponse:
    """CRI Version as the kubelet asks it; grpc.RpcError when the runtime does not answer."""
    with cri_channel(socket) as ch:
        return api_pb2_grpc.RuntimeServiceStub(ch).Version(api_pb2.VersionRequest(version="0.1.0"),
                                                             timeout=timeout)


def run_sync(args: Sequence[str], timeout: float = 60.0, check: bool = True) -> Result:
    """kubelab.proc.run from synchronous code, also when this thread already runs an event loop."""
    def once() -> Result:
        return asyncio.run(run(args, timeout=timeout, check=check))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return once()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(once).result()


def mountpoints_under(base: Path) -> list[str]:
    """Mount points at or below ``base`` (from /proc/self/mountinfo), deepest first."""
    prefix = str(base).rstrip("/") + "/"
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            mnt = mnt.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
            if mnt == str(base) or mnt.startswith(prefix):
                found.add(mnt)
    return sorted(found, key=lambda m: (m.count("/"), m), reverse=True)


def cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def running(p: psutil.Process) -> bool:
    """Alive and not a zombie."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- kubelab-cri ------------------------------------------------------------------------------

class KubelabCRIProc:
    """A kubelab-cri process with its root, runroot, socket and log under ``tmp``.

    ``cni`` names the CNI config dir and plugin dir ({"conf_dir": ..., "bin_dir": ...});
    ``registry_host`` is a registry reached over plain HTTP; sandboxes the caller gives no cgroup
    parent go under ``cgroup_parent``; ``detach`` starts it in a session of its own, so a Ctrl-C
    in the terminal reaches only the caller (which can then remove its pods through CRI before
    stopping it). start() may be called again after kill() (a restart)."""

    def __init__(self, tmp: Path, cni: Mapping[str, Path], registry_host: str | None = None, *,
                 cgroup_parent: str = "/kubelab-cri", extra_args: Sequence[str] = (), detach: bool = False,
                 prefix: Sequence[str] = ()) -> None:
        self.tmp = Path(tmp)
        self.root, self.runroot = self.tmp / "root", self.tmp / "run"
        self.socket = str(self.tmp / "run" / "cri.sock")
        self.log = self.tmp / "kubelab-cri.log"
        self.args = [str(Path(sys.executable).parent / "kubelab-cri"), "--listen", self.socket,
                     "--root", str(self.root), "--runroot", str(self.runroot),
                     "--cni-config-dir", str(cni["conf_dir"]), "--cni-plugin-dir", str(cni["bin_dir"]),
                     "--cgroup-parent", cgroup_parent]
        if registry_host:
            self.args += ["--insecure-registry", registry_host]
        self.args += list(extra_args)
        # e.g. ["nsenter", "--net=/run/netns/kubelab-node1"] for a lab node (nsenter execs, so the
        # process started is kubelab-cri itself)
        self.args = list(prefix) + self.args
        self.detach = detach
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        """Start kubelab-cri and wait until CRI Version answers (RuntimeError with its log's tail if not)."""
        self.proc = spawn(self.args, self.log, detach=self.detach)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelab-cri exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if os.path.exists(self.socket):
                try:
                    cri_version(self.socket)
                    return
                except grpc.RpcError:  # not up yet
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubelab-cri did not answer in {timeout}s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash: its containers keep running under conmon."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM (kubelab-cri leaves its containers running), SIGKILL after 15 s."""
        if self.proc is not None:
            stop(self.proc, 15)


# -- containerd -------------------------------------------------------------------------------

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
RUNC = "/usr/sbin/runc"
NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin uses
DEFAULT_SANDBOX_IMAGE = "localhost/kubelab/pause:3.9"
# containerd 1.6 puts every shim's socket under here, whatever its state dir (a constant in its source)
SHIM_SOCKET_ROOT = Path("/run/containerd")
# Plugins that cannot load (or must not run) on this machine; skipping them keeps the log quiet.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


class ContainerdError(Exception):
    """containerd could not be started or a ctr command failed."""


class PeerLeak(AssertionError):
    """stop() found processes, mounts, sockets or files of the peer still present."""


def _toml_str(value: str | Path) -> str:
    s = str(value)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(base: Path, address: Path, *, cni_conf_dir: Path, cni_bin_dir: Path = CNI_BIN_DIR,
                  sandbox_image: str = DEFAULT_SANDBOX_IMAGE, runc: str = RUNC,
                  mirrors: dict[str, list[str]] | None = None, log_level: str = "info") -> str:
    """containerd's config.toml (version 2) keeping every path of the peer under ``base``.

    ``mirrors`` maps a registry host ("127.0.0.1:5000") to endpoint URLs ("http://127.0.0.1:5000"):
    how containerd 1.6 is told to pull from a registry over plain HTTP."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f"root = {_toml_str(base / 'root')}",
        f"state = {_toml_str(base / 'state')}",
        f"temp = {_toml_str(base / 'tmp')}",
        'plugin_dir = ""',
        "oom_score = 0",
        "disabled_plugins = [" + ", ".join(_toml_str(p) for p in DISABLED_PLUGINS) + "]",
        "",
        "[grpc]",
        f"  address = {_toml_str(address)}",
        "  uid = 0",
        "  gid = 0",
        f"  max_recv_message_size = {MAX_MESSAGE}",
        f"  max_send_message_size = {MAX_MESSAGE}",
        "",
        "[ttrpc]",
        f"  address = {_toml_str(str(address) + '.ttrpc')}",
        "",
        "[debug]",
        '  address = ""',
        f"  level = {_toml_str(log_level)}",
        "",
        "[metrics]",
        '  address = ""',
        "",
        f"[{cri}]",
        f"  sandbox_image = {_toml_str(sandbox_image)}",
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        "  disable_apparmor = true",
        "  enable_selinux = false",
        "  systemd_cgroup = false",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "",
        f"[{cri}.cni]",
        f"  bin_dir = {_toml_str(cni_bin_dir)}",
        f"  conf_dir = {_toml_str(cni_conf_dir)}",
        "",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        "",
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"[{cri}.containerd.runtimes.runc.options]",
        f"  BinaryName = {_toml_str(runc)}",
        f"  Root = {_toml_str(base / 'runc')}",
        "  SystemdCgroup = false",
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_toml_str(base / 'opt')}",
        "",
    ]
    for host, endpoints in (mirrors or {}).items():
        lines += [f"[{cri}.registry.mirrors.{_toml_str(host)}]",
                  "  endpoint = [" + ", ".join(_toml_str(e) for e in endpoints) + "]", ""]
    return "\n".join(lines)


class ContainerdProc:
    """One containerd with its CRI plugin, all its state under ``base`` (a new temp dir if None)."""

    def __init__(self, base: Path | None = None, *, cni_conf_dir: Path, cni_bin_dir: Path = CNI_BIN_DIR,
                 sandbox_image: str = DEFAULT_SANDBOX_IMAGE, plain_http_registries: Iterable[str] = (),
                 mirrors: dict[str, list[str]] | None = None, log_path: Path | None = None,
                 log_level: str = "info", prefix: Sequence[str] = ()) -> None:
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="kubelab-ctrd-"))
        self.prefix = list(prefix)      # e.g. nsenter into a lab node's network namespace
        self.address = self.base / "containerd.sock"
        # unix socket paths hold at most 107 bytes, and the ttrpc socket adds ".ttrpc"
        if len(str(self.address)) > 100:
            raise ContainerdError(f"socket path too long for a unix socket: {self.address}")
        self.config_path = self.base / "config.toml"
        self.log_path = Path(log_path) if log_path else self.base / "containerd.log"
        self.runc_root = self.base / "runc" / NAMESPACE  # the shim adds the namespace to Root
        self.cni_conf_dir = Path(cni_conf_dir)
        self.cni_bin_dir = Path(cni_bin_dir)
        self.sandbox_image = sandbox_image
        self.mirrors = {host: [f"http://{host}"] for host in plain_http_registries}
        self.mirrors.update(mirrors or {})
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self._shim_procs: set[psutil.Process] = set()
        self._container_procs: set[psutil.Process] = set()
        self._task_ids: set[str] = set()
        self._made_socket_root = False

    @property
    def socket(self) -> str:
        """Path of the CRI (and containerd API) socket."""
        return str(self.address)

    @property
    def endpoint(self) -> str:
        """The CRI endpoint as the kubelet's --container-runtime-endpoint spells it."""
        return f"unix://{self.address}"

    def channel(self) -> grpc.Channel:
        """A new (synchronous) grpc channel to the peer; the caller closes it."""
        return cri_channel(self.address)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> api_pb2.VersionResponse:
        """Write the config, start containerd and wait until CRI Version answers; return it."""
        if self.proc is not None:
            raise ContainerdError("this containerd peer was already started")
        self._made_socket_root = not SHIM_SOCKET_ROOT.exists()
        for d in ("root", "state", "tmp", "opt", "runc"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(
            self.base, self.address, cni_conf_dir=self.cni_conf_dir, cni_bin_dir=self.cni_bin_dir,
            sandbox_image=self.sandbox_image, mirrors=self.mirrors, log_level=self.log_level))
        self.proc = spawn(self.prefix + [CONTAINERD, "--config", str(self.config_path)], self.log_path, detach=True,
                          cwd=self.base, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                              "TMPDIR": str(self.base / "tmp")})
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerdError(f"containerd exited with status {self.proc.returncode} while starting: "
                                      f"{self.log_tail(1)}")
            if self.address.exists():
                try:
                    return cri_version(self.address)
                except grpc.RpcError as e:
                    last_error = f"{e.code().name}: {e.details()}"
            time.sleep(0.05)
        self._terminate_daemon()  # never leave a half-started daemon behind
        raise ContainerdError(f"containerd did not answer CRI Version on {self.address} within {timeout:g}s "
                              f"({last_error}); last log line: {self.log_tail(1)}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ctr(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``ctr -a <socket> -n k8s.io ARGS``; return its stdout (ContainerdError on failure)."""
        try:
            return run_sync([CTR, "-a", str(self.address), "-n", NAMESPACE, *args], timeout=timeout).text
        except CommandError as e:
            raise ContainerdError(str(e)) from None

    def import_image(self, tar_path: Path, base_name: str | None = None) -> list[str]:
        """Import an image archive (OCI layout or docker save tar) into the CRI's namespace with
        ``ctr images import --all-platforms``; return the names it imported. ``base_name`` names
        OCI entries whose ref annotation is only a tag."""
        args = ["images", "import", "--all-platforms"]
        if base_name:
            args += ["--base-name", base_name]
        out = self.ctr(*args, str(tar_path))
        # ctr 1.6 prints "unpacking <name> (sha256:...)...done" per image
        return [line.split()[1] for line in out.splitlines()
                if line.startswith("unpacking ") and len(line.split()) >= 2]

    def stop(self) -> None:
        """Remove the peer and everything it made; raise PeerLeak if something is left.

        While containerd runs, its pods are stopped and removed through CRI (CNI DEL runs, the
        shims end cleanly). Then containerd is terminated, any container runc still knows is
        force-deleted, any shim started for this address is killed, the sockets of its shims
        are removed, every mount under the peer's dir is unmounted and the dir is removed."""
        self._remember_tasks()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._remove_all_pods()
            except grpc.RpcError:
                pass  # the forceful steps below still clean up
            self._terminate_daemon()
        self._delete_runc_containers()
        self._kill_shims()
        self._wait_gone(self._shim_procs | self._container_procs, 10)
        self._remove_shim_sockets()
        self._unmount_all()
        if self.base.exists():
            shutil.rmtree(self.base)
        self._verify_gone()

    # -- tasks and shims ---------------------------------------------------------------------

    def shim_socket(self, task_id: str) -> Path:
        """Where containerd 1.6 puts the socket of the shim of task ``task_id`` of this peer."""
        digest = hashlib.sha256(f"{self.address}/{NAMESPACE}/{task_id}".encode()).hexdigest()
        return SHIM_SOCKET_ROOT / "s" / digest

    def shims(self) -> list[psutil.Process]:
        """The running shims started by this peer (their command line names its address)."""
        found = []
        for p in psutil.process_iter():
            cmd = cmdline(p)
            if cmd and os.path.basename(cmd[0]).startswith("containerd-shim") and str(self.address) in cmd:
                found.append(p)
        return found

    def _remember_tasks(self) -> None:
        """Note this peer's shims, their container processes and task IDs while they can be seen."""
        for shim in self.shims():
            self._shim_procs.add(shim)
            try:
                self._container_procs.update(shim.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
            cmd = cmdline(shim)
            if "-id" in cmd[:-1]:
                self._task_ids.add(cmd[cmd.index("-id") + 1])
        for d in (self.base / "state" / "io.containerd.runtime.v2.task" / NAMESPACE, self.runc_root):
            if d.is_dir():
                self._task_ids.update(p.name for p in d.iterdir())

    # -- stop steps --------------------------------------------------------------------------

    def _remove_all_pods(self) -> None:
        with self.channel() as ch:
            rt = api_pb2_grpc.RuntimeServiceStub(ch)
            for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items:
                rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)
                rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)

    def _terminate_daemon(self) -> None:
        if self.proc is not None:
            stop(self.proc, 10)

    def _delete_runc_containers(self) -> None:
        if not self.runc_root.is_dir():
            return
        res = run_sync([RUNC, "--root", str(self.runc_root), "list", "--format", "json"], check=False)
        try:
            containers = json.loads(res.stdout or b"null") or []
        except ValueError:
            containers = []
        for c in containers:
            if c.get("pid"):
                try:
                    self._container_procs.add(psutil.Process(int(c["pid"])))
                except psutil.NoSuchProcess:
                    pass
            run_sync([RUNC, "--root", str(self.runc_root), "delete", "--force", c["id"]], check=False)

    def _kill_shims(self) -> None:
        self._remember_tasks()
        for p in list(self._container_procs) + list(self._shim_procs):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass

    @staticmethod
    def _wait_gone(procs: set[psutil.Process], timeout: float) -> None:
        """Wait until the processes have exited and been reaped (shims are reparented to PID 1
        once their starter exits, so their zombies go when PID 1 reaps them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.is_running() for p in procs):
            time.sleep(0.05)

    def _remove_shim_sockets(self) -> None:
        """A shim removes its socket when it exits cleanly; a killed one leaves it behind."""
        for task_id in self._task_ids:
            self.shim_socket(task_id).unlink(missing_ok=True)
        if self._made_socket_root:
            for d in (SHIM_SOCKET_ROOT / "s", SHIM_SOCKET_ROOT):
                try:
                    d.rmdir()  # only when empty: another containerd may be using it
                except OSError:
                    break

    def _unmount_all(self) -> None:
        for _ in range(10):  # mounts can be stacked; a few passes unmount them all
            mounts = mountpoints_under(self.base)
            if not mounts:
                return
            for m in mounts:
                if run_sync(["umount", m], check=False).returncode != 0:
                    run_sync(["umount", "-l", m], check=False)

    def _verify_gone(self) -> None:
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            problems.append(f"containerd pid {self.proc.pid} still running")
        shims = sorted({p.pid for p in self.shims()} | {p.pid for p in self._shim_procs if running(p)})
        if shims:
            problems.append(f"shims still running: {shims}")
        alive = sorted(p.pid for p in self._container_procs if running(p))
        if alive:
            problems.append(f"container processes still running: {alive}")
        others = [p.pid for p in psutil.process_iter() if str(self.base) in " ".join(cmdline(p))]
        if others:
            problems.append(f"processes still mention {self.base}: {others}")
        mounts = mountpoints_under(self.base)
        if mounts:
            problems.append(f"still mounted: {mounts}")
        sockets = [str(self.shim_socket(t)) for t in sorted(self._task_ids) if self.shim_socket(t).exists()]
        if sockets:
            problems.append(f"shim sockets left: {sockets}")
        if self.base.exists():
            problems.append(f"{self.base} still exists")
        if problems:
            raise PeerLeak("containerd peer left: " + "; ".join(problems))
