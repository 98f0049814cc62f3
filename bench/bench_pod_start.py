"""Pod start latency: kubelab-cri against containerd 1.6's CRI and against raw `runc run -d`.

Pod start = RunPodSandbox + CreateContainer + StartContainer of one busybox container running
`sleep 3600`, the image already present, as the kubelet calls them (each RPC timed on its own).
BENCH_PODS pods (default 30) per runtime, one at a time, after one warm-up pod per runtime that is
not counted; each pod is stopped and removed (not timed) before the next one starts. The runtimes
take turns pod by pod (the order rotates every round), so a change in the machine's load during the
run falls on all of them alike.

Both CRI runtimes run on this machine in the same run with the same CNI config list (the reference
bridge + host-local + portmap plugins from /usr/lib/cni, on a bench bridge and subnet) and the same
images, built from Debian packages (kubelab.cri.image.build) and imported before timing: busybox
into kubelab-cri's root (import_archive), busybox and pause (containerd's sandbox image) with
`ctr images import`. The baseline is raw runc: `runc run -d` of the OCI config.json kubelab-cri
generated for its warm-up container, with its namespaces made fresh (no paths), a new cgroupsPath
per run, the sandbox's bind-mounted files copied, over a plain unpacked rootfs of the same image and
with stdio on /dev/null: no network, no log, no runtime daemon.

The floor, also timed in the same run, is what any CRI runtime built from the parts the issue names
has to exec for such a pod, with no daemon around it: the CNI ADD of the same config list (the
plugins exec'd in order, as libcni does, into a namespace made beforehand), conmon running `runc
create` of the same spec joined to that namespace, and `runc start`. Its ratio to raw runc shows
how much of the 2x the mandated parts leave to the runtime itself.

Targets: kubelab-cri p50 and p99 <= 1.0x containerd's, and <= 2x raw runc's.
Environment: BENCH_PODS (30); BENCH_QUIET_WAIT, BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S as
in bench/harness.py; BENCH_PYSPY=DIR samples kubelab-cri with py-spy (if installed) into DIR/pod_start.txt.
Everything made here (pods, runc containers, processes, mounts, the bridge, NAT chains, cgroups, the
temp dir) is removed, also on errors, Ctrl-C and SIGTERM.
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psutil

import harness
from harness import figure, log, print_figure, summarize
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg
from kubelab.lab.controlplane import stop
from kubelab.lab.runtimes import (CNI_BIN_DIR, RUNC, ContainerdProc, KubelabCRIProc, PeerLeak, cmdline, cri_channel,
                                  mountpoints_under, run_sync)

NAME = "pod_start"
PODS = int(os.environ.get("BENCH_PODS", "30"))
IMAGE_CACHE = Path(os.environ.get("KUBELAB_IMAGE_CACHE", "/var/cache/kubelab/images"))
BRIDGE = "klbench0"
SUBNET = "10.251.0.0/24"
GATEWAY = "10.251.0.1"
CGROUP_BASE = "kubelab-bench"          # + "-kubelab-cri", "-containerd", "-runc": one tree per runtime
CGROUP_ROOT = Path("/sys/fs/cgroup")
COMMAND = ["sleep", "3600"]
RUNTIMES = ("kubelab-cri", "containerd", "runc", "floor")
RPCS = ("RunPodSandbox", "CreateContainer", "StartContainer")
FLOOR_STEPS = ("CNI ADD", "conmon + runc create", "runc start")
RPC_TIMEOUT = 60


class BenchError(Exception):
    """Something the benchmark needs did not work; one line saying what."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- CRI ------------------------------------------------------------------------------------


class CRIPods:
    """Starts pods the way the kubelet does, through one CRI runtime, and removes them."""

    def __init__(self, name: str, socket: str, image: str, log_root: Path) -> None:
        self.name = name
        self.image = image
        self.log_root = log_root
        self.cgroup_base = f"{CGROUP_BASE}-{name}"
        self.channel = cri_channel(socket)
        self.rt = pbg.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _sandbox_config(self, pod: str) -> pb.PodSandboxConfig:
        uid = str(uuid.uuid4())
        c = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=pod, namespace="bench", uid=uid, attempt=0), hostname=pod,
            log_directory=str(self.log_root / f"bench_{pod}_{uid}"),
            labels={"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "bench",
                    "io.kubernetes.pod.uid": uid})
        c.linux.cgroup_parent = f"/{self.cgroup_base}/pod{uid}"
        ns = c.linux.security_context.namespace_options
        ns.network, ns.pid, ns.ipc = pb.POD, pb.CONTAINER, pb.POD
        return c

    def _container_config(self) -> pb.ContainerConfig:
        return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app", attempt=0),
                                  image=pb.ImageSpec(image=self.image), command=COMMAND, log_path="app/0.log",
                                  labels={"io.kubernetes.container.name": "app"})

    def start(self, pod: str) -> tuple[str, str, dict[str, float]]:
        """Run one pod; return (sandbox id, container id, seconds per RPC)."""
        sconfig, cconfig = self._sandbox_config(pod), self._container_config()
        t0 = time.perf_counter()
        sid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sconfig), timeout=RPC_TIMEOUT).pod_sandbox_id
        t1 = time.perf_counter()
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cconfig,
                                                                sandbox_config=sconfig),
                                      timeout=RPC_TIMEOUT).container_id
        t2 = time.perf_counter()
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=RPC_TIMEOUT)
        t3 = time.perf_counter()
        return sid, cid, {"RunPodSandbox": t1 - t0, "CreateContainer": t2 - t1, "StartContainer": t3 - t2}

    def running(self, cid: str) -> bool:
        st = self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=RPC_TIMEOUT).status
        return st.state == pb.CONTAINER_RUNNING

    def remove(self, sid: str) -> None:
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=RPC_TIMEOUT)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=RPC_TIMEOUT)

    def remove_all(self) -> None:
        for s in self.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=RPC_TIMEOUT).items:
            self.remove(s.id)


def wait_network_ready(pods: CRIPods, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        conds = {c.type: c for c in pods.rt.Status(pb.StatusRequest(), timeout=RPC_TIMEOUT).status.conditions}
        net = conds.get("NetworkReady")
        if net is not None and net.status:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{pods.name}: network not ready after {timeout:g}s: {net.message if net else '?'}")
        time.sleep(0.05)


# --- raw runc -------------------------------------------------------------------------------


def raw_runc_spec(spec: dict, rootfs: Path, files: Path, sandbox_dirs: tuple[Path, ...]) -> dict:
    """kubelab-cri's OCI spec for one of its containers, made to run on its own: fresh namespaces
    (no paths), rootfs = a plain dir, the sandbox's files (hostname, hosts, resolv.conf) copied into
    files/ and its /dev/shm a tmpfs of its own, no terminal."""
    s = copy.deepcopy(spec)
    s["root"] = {"path": str(rootfs), "readonly": bool((spec.get("root") or {}).get("readonly"))}
    s["process"]["terminal"] = False
    for ns in s["linux"].get("namespaces", []):
        ns.pop("path", None)
    files.mkdir(parents=True, exist_ok=True)
    mounts = []
    for m in s.get("mounts", []):
        src = m.get("source", "")
        if src and any(src == str(d) or src.startswith(str(d) + "/") for d in sandbox_dirs):
            if os.path.isdir(src):
                m = {"destination": m["destination"], "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
            else:
                copy_to = files / m["destination"].strip("/").replace("/", "_")
                shutil.copyfile(src, copy_to)
                m = dict(m, source=str(copy_to))
        mounts.append(m)
    s["mounts"] = mounts
    return s


class RawRunc:
    """`runc run -d` of one spec over one rootfs, each run with its own id, bundle and cgroup."""

    def __init__(self, base: Path, spec: dict) -> None:
        self.base = base
        self.state = base / "state"
        self.spec = spec
        self.state.mkdir(parents=True, exist_ok=True)
        self.cgroup_base = f"{CGROUP_BASE}-runc"

    def start(self, name: str) -> tuple[str, float]:
        cid = f"{name}-{uuid.uuid4().hex[:8]}"
        bundle = self.base / "bundles" / cid
        bundle.mkdir(parents=True)
        spec = dict(self.spec, linux=dict(self.spec["linux"], cgroupsPath=f"/{self.cgroup_base}/{cid}"))
        (bundle / "config.json").write_text(json.dumps(spec))
        log_file = bundle / "runc.log"
        args = [RUNC, "--root", str(self.state), "--log", str(log_file), "--log-format", "json",
                "run", "-d", "--bundle", str(bundle), cid]
        # Not kubelab.proc.run: a detached container keeps the stdio runc was given, so pipes would
        # never reach EOF; it gets /dev/null (as the brief for this figure says) and runc's errors go
        # to its --log file.
        t0 = time.perf_counter()
        rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
        took = time.perf_counter() - t0
        if rc != 0:
            raise BenchError(f"runc run -d {cid}: exit status {rc}: {_runc_log_error(log_file)}")
        return cid, took

    def running(self, cid: str) -> bool:
        res = run_sync([RUNC, "--root", str(self.state), "state", cid], check=False)
        return res.returncode == 0 and json.loads(res.stdout).get("status") == "running"

    def remove(self, cid: str) -> None:
        run_sync([RUNC, "--root", str(self.state), "delete", "--force", cid], timeout=30)
        shutil.rmtree(self.base / "bundles" / cid, ignore_errors=True)

    def remove_all(self) -> None:
        if not self.state.is_dir():
            return
        res = run_sync([RUNC, "--root", str(self.state), "list", "--format", "json"], check=False)
        for c in json.loads(res.stdout or b"null") or []:
            run_sync([RUNC, "--root", str(self.state), "delete", "--force", c["id"]], check=False, timeout=30)


class FloorPods:
    """The floor: what a runtime made of these parts must exec per pod, timed without a daemon.

    Per pod, untimed: a network namespace pinned by a bind mount (as kubelab-cri and CRI-O do) and a
    bundle (raw runc's spec joined to that namespace). Timed: CNI ADD of the bench's config list
    (kubelab.cri.runtime.cni execs the plugins in order with the previous result), conmon with
    `runc create` until conmon reports the container's pid on its sync pipe, and `runc start`.
    Removal (untimed): runc delete, CNI DEL, the namespace unpinned."""

    def __init__(self, base: Path, spec: dict, conf_dir: Path) -> None:
        from kubelab.cri.runtime.cni import CNI
        self.base = base
        self.state = base / "state"
        self.exits = base / "exits"
        for d in (self.state, self.exits, base / "netns", base / "cni-cache"):
            d.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.cni = CNI(conf_dir, [CNI_BIN_DIR], base / "cni-cache")
        self.conmon = shutil.which("conmon") or "/usr/bin/conmon"
        self.cgroup_base = f"{CGROUP_BASE}-floor"
        self.netns: dict[str, Path] = {}

    def start(self, name: str) -> tuple[str, dict[str, float]]:
        from kubelab.cri.runtime import namespaces
        cid = f"{name}-{uuid.uuid4().hex[:8]}"
        bundle = self.base / "bundles" / cid
        (bundle / "persist").mkdir(parents=True)
        netns = self.base / "netns" / cid
        asyncio.run(namespaces.pin({"net": netns}))
        self.netns[cid] = netns
        linux = dict(self.spec["linux"], cgroupsPath=f"/{self.cgroup_base}/{cid}",
                     namespaces=[dict(n, path=str(netns)) if n["type"] == "network" else n
                                 for n in self.spec["linux"]["namespaces"]])
        (bundle / "config.json").write_text(json.dumps(dict(self.spec, linux=linux)))
        steps = {"CNI ADD": asyncio.run(self._timed_add(cid, netns, name))}
        args = [self.conmon, "--api-version", "--cid", cid, "--cuuid", cid, "--name", cid, "--runtime", RUNC,
                "--bundle", str(bundle), "--container-pidfile", str(bundle / "pidfile"),
                "--conmon-pidfile", str(bundle / "persist" / "conmon.pid"), "--log-path",
                f"k8s-file:{bundle / 'ctr.log'}", "--exit-dir", str(self.exits), "--persist-dir",
                str(bundle / "persist"), "--socket-dir-path", str(bundle), "--full-attach", "--syslog",
                "--log-level", "info", "--runtime-arg", f"--root={self.state}"]
        r, w = os.pipe()
        try:
            t0 = time.perf_counter()
            rc = subprocess.run(args, env=dict(os.environ, _OCI_SYNCPIPE=str(w)), pass_fds=(w,),
                                cwd=str(bundle / "persist"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=RPC_TIMEOUT).returncode
            os.close(w)
            w = -1
            line = os.read(r, 4096)
            steps["conmon + runc create"] = time.perf_counter() - t0
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if rc != 0 or b'"data": -' in line or not line:
            raise BenchError(f"floor: conmon could not create {cid}: exit {rc}, {line[:300]!r}")
        t0 = time.perf_counter()
        res = run_sync([RUNC, "--root", str(self.state), "start", cid], check=False, timeout=RPC_TIMEOUT)
        steps["runc start"] = time.perf_counter() - t0
        if res.returncode != 0:
            raise BenchError(f"floor: runc start {cid}: {res.stderr.decode(errors='replace').strip()[-300:]}")
        return cid, steps

    async def _timed_add(self, cid: str, netns: Path, name: str) -> float:
        t0 = time.perf_counter()
        await self.cni.add(cid, netns, "eth0", {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "bench",
                                                "K8S_POD_NAME": name, "K8S_POD_INFRA_CONTAINER_ID": cid})
        return time.perf_counter() - t0

    def running(self, cid: str) -> bool:
        res = run_sync([RUNC, "--root", str(self.state), "state", cid], check=False)
        return res.returncode == 0 and json.loads(res.stdout).get("status") == "running"

    def remove(self, cid: str) -> None:
        from kubelab.cri.runtime import namespaces
        run_sync([RUNC, "--root", str(self.state), "delete", "--force", cid], check=False, timeout=30)
        netns = self.netns.pop(cid, None)
        if netns is not None:
            asyncio.run(self.cni.delete(cid, netns, "eth0"))
            asyncio.run(namespaces.unpin([netns]))
        (self.exits / cid).unlink(missing_ok=True)
        shutil.rmtree(self.base / "bundles" / cid, ignore_errors=True)

    def remove_all(self) -> None:
        if self.state.is_dir():
            res = run_sync([RUNC, "--root", str(self.state), "list", "--format", "json"], check=False)
            for c in json.loads(res.stdout or b"null") or []:
                run_sync([RUNC, "--root", str(self.state), "delete", "--force", c["id"]], check=False, timeout=30)
        for cid in list(self.netns):
            self.remove(cid)


def _runc_log_error(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") in ("error", "fatal"):
            return rec.get("msg", line)
    return lines[-1] if lines else "no log"


def unpack_image(store, name: str, dest: Path) -> None:
    """The image's layers unpacked in order into a plain dir."""
    from kubelab.cri.image.unpack import unpack_layer
    image = store.get(name)
    if image is None:
        raise BenchError(f"{name}: not in kubelab-cri's image store")
    dest.mkdir(parents=True)
    for digest in image.layers:
        unpack_layer(store.content.path(digest), dest)


# --- host state: CNI network, NAT chains, cgroups -------------------------------------------


def write_conflist(conf_dir: Path, data_dir: Path) -> None:
    conf_dir.mkdir(parents=True)
    conf = {"cniVersion": "1.0.0", "name": "kubelab-bench", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(data_dir),
                  "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}
    (conf_dir / "10-kubelab-bench.conflist").write_text(json.dumps(conf))


def nat_chains() -> set[str]:
    out = run_sync(["iptables", "-w", "-t", "nat", "-S"], check=False).text
    return {ln.split()[1] for ln in out.splitlines() if ln.startswith("-N ")}


def remove_nat_chains(chains: set[str]) -> None:
    """Remove the given NAT chains and the rules that jump to them."""
    if not chains:
        return
    for rule in run_sync(["iptables", "-w", "-t", "nat", "-S"], check=False).text.splitlines():
        parts = rule.split()
        if parts and parts[0] == "-A" and "-j" in parts[:-1] and parts[parts.index("-j") + 1] in chains:
            run_sync(["iptables", "-w", "-t", "nat", "-D", *parts[1:]], check=False)
    for c in chains:
        run_sync(["iptables", "-w", "-t", "nat", "-F", c], check=False)
    for c in chains:
        run_sync(["iptables", "-w", "-t", "nat", "-X", c], check=False)


def cgroup_dirs(name: str) -> list[Path]:
    """/sys/fs/cgroup/<controller>/<name> (and unified/<name>) that exist."""
    return sorted({h / name for h in CGROUP_ROOT.iterdir() if (h / name).is_dir()})


def remove_cgroup_tree(name: str) -> None:
    for d in cgroup_dirs(name):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# --- load and CPU ----------------------------------------------------------------------------


def _cpu(p: psutil.Process, children: bool = True) -> float:
    t = p.cpu_times()
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class OtherLoad:
    """CPU used by processes that are not this benchmark's, read between pods (never while one is
    timed). Ours: this process and its descendants, and every process whose command line names the
    benchmark's temp dir (conmon, containerd's shims), with their descendants. Kernel threads are
    left out (their work here is mostly ours: network namespace cleanup, mounts). A long-lived
    process's reaped children count with it (less what was already counted for a child seen
    alive); PID 1's do not (it reaps our daemonized conmon and shims)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = str(tmp)
        self.last: dict[tuple[int, float], float] = {}
        self.parents: dict[tuple[int, float], int] = {}
        self.names: dict[tuple[int, float], str] = {}
        self.other = 0.0
        self.by_process: dict[str, float] = {}

    def _ours(self, procs: list[psutil.Process]) -> set[int]:
        roots = {os.getpid()} | {p.pid for p in procs if self.tmp in " ".join(cmdline(p))}
        ours = set(roots)
        children: dict[int, list[int]] = {}
        for p in procs:
            try:
                children.setdefault(p.ppid(), []).append(p.pid)
            except psutil.Error:
                pass
        stack = list(roots)
        while stack:
            for c in children.get(stack.pop(), []):
                if c not in ours:
                    ours.add(c)
                    stack.append(c)
        return ours

    def sample(self) -> None:
        procs = list(psutil.process_iter())
        ours = self._ours(procs)
        now: dict[tuple[int, float], float] = {}
        parents: dict[tuple[int, float], int] = {}
        for p in procs:
            try:
                ppid = p.ppid()
                if p.pid in ours or p.pid == 2 or ppid == 2:
                    continue
                key = (p.pid, p.create_time())
                now[key] = _cpu(p, children=p.pid != 1)
                parents[key] = ppid
                if key not in self.names:
                    self.names[key] = f"{p.name()}[{p.pid}]"
            except psutil.Error:
                continue
        # a process seen alive and reaped since: the children time of its nearest ancestor still
        # alive now holds it again (a chain like bash -> timeout -> pytest can end in one interval)
        reaped: dict[int, float] = {}
        gone = {k[0]: k for k in self.last if k not in now}
        for k in gone.values():
            parent = self.parents[k]
            for _ in range(64):
                if parent not in gone:
                    break
                parent = self.parents[gone[parent]]
            reaped[parent] = reaped.get(parent, 0.0) + self.last[k]
        for k, v in now.items():
            d = v - self.last.get(k, v) - reaped.get(k[0], 0.0)
            if d > 0:
                self.other += d
                self.by_process[self.names[k]] = self.by_process.get(self.names[k], 0.0) + d
        self.last, self.parents = now, parents
        self.names = {k: n for k, n in self.names.items() if k in now}

    def top(self, n: int = 5) -> dict[str, float]:
        """The other processes that used the most CPU, in seconds."""
        return {k: round(v, 3) for k, v in sorted(self.by_process.items(), key=lambda kv: -kv[1])[:n]}


# --- one run ---------------------------------------------------------------------------------


class Bench:
    """Everything one run makes, so that close() can remove it whatever happened."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="kubelab-bench-pod-start-"))
        self.kc: KubelabCRIProc | None = None
        self.ctrd: ContainerdProc | None = None
        self.raw: RawRunc | None = None
        self.floor: FloorPods | None = None
        self.clients: dict[str, CRIPods] = {}
        self.chains_before = nat_chains()
        self.bridge_existed = link_exists(BRIDGE)
        self.spy: subprocess.Popen | None = None
        self.problems: list[str] = []

    def setup(self) -> dict[str, str]:
        """Build and import the images, start both runtimes; return the image names."""
        from kubelab.cri.image.archive import import_archive
        from kubelab.cri.image.build import build
        from kubelab.cri.image.store import ImageStore
        if self.bridge_existed:
            raise BenchError(f"a link named {BRIDGE} already exists: is another pod start benchmark running?")
        IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        tars = {n: asyncio.run(build(n, self.tmp / "images" / f"{n}.oci.tar", IMAGE_CACHE))
                for n in ("busybox", "pause")}
        conf_dir, data_dir = self.tmp / "net.d", self.tmp / "ipam"
        write_conflist(conf_dir, data_dir)
        self.conf_dir = conf_dir
        cni = {"conf_dir": conf_dir, "bin_dir": CNI_BIN_DIR}

        self.kc = KubelabCRIProc(self.tmp / "kubelab-cri", cni, cgroup_parent=f"/{CGROUP_BASE}-kubelab-cri",
                                 detach=True)  # a Ctrl-C reaches only this process, which removes the pods
        store = ImageStore(self.kc.root)
        busybox = asyncio.run(import_archive(store, tars["busybox"]))[0].repo_tags[0]
        unpack_image(store, busybox, self.tmp / "runc" / "rootfs")
        self.kc.start()

        self.ctrd = ContainerdProc(self.tmp / "containerd", cni_conf_dir=conf_dir, cni_bin_dir=CNI_BIN_DIR,
                                   sandbox_image="localhost/kubelab/pause:3.9")
        self.ctrd.start()
        pause_names = self.ctrd.import_image(tars["pause"])
        if self.ctrd.sandbox_image not in pause_names:
            raise BenchError(f"ctr imported {pause_names}, not the sandbox image {self.ctrd.sandbox_image}")
        if busybox not in self.ctrd.import_image(tars["busybox"]):
            raise BenchError(f"ctr did not import {busybox}")

        logs = self.tmp / "logs"
        self.clients = {"kubelab-cri": CRIPods("kubelab-cri", self.kc.socket, busybox, logs),
                        "containerd": CRIPods("containerd", self.ctrd.socket, busybox, logs)}
        for c in self.clients.values():
            wait_network_ready(c)
        self._start_profiler()
        return {"busybox": busybox, "pause": self.ctrd.sandbox_image}

    def _start_profiler(self) -> None:
        out = os.environ.get("BENCH_PYSPY")
        if not out or self.kc is None or self.kc.proc is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("BENCH_PYSPY is set but py-spy is not installed; not profiling")
            return
        Path(out).mkdir(parents=True, exist_ok=True)
        self.spy = subprocess.Popen([spy, "record", "--pid", str(self.kc.proc.pid), "--rate", "200", "--format",
                                     "raw", "--nonblocking", "--output", str(Path(out) / f"{NAME}.txt")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def warm_up_and_template(self) -> None:
        """One pod per CRI runtime, not counted; kubelab-cri's container spec becomes raw runc's."""
        assert self.kc is not None
        kc = self.clients["kubelab-cri"]
        sid, cid, _ = kc.start("warmup-kubelab-cri")
        spec = json.loads((self.kc.runroot / "containers" / cid / "bundle" / "config.json").read_text())
        self.raw = RawRunc(self.tmp / "runc", raw_runc_spec(
            spec, self.tmp / "runc" / "rootfs", self.tmp / "runc" / "files",
            (self.kc.runroot, self.kc.root)))
        if not kc.running(cid):
            raise BenchError("kubelab-cri's warm-up container is not running")
        kc.remove(sid)
        ct = self.clients["containerd"]
        sid, cid, _ = ct.start("warmup-containerd")
        if not ct.running(cid):
            raise BenchError("containerd's warm-up container is not running")
        ct.remove(sid)
        rid, _ = self.raw.start("warmup")
        if not self.raw.running(rid):
            raise BenchError("the raw runc warm-up container is not running")
        self.raw.remove(rid)
        self.floor = FloorPods(self.tmp / "floor", self.raw.spec, self.conf_dir)
        fid, _ = self.floor.start("warmup")
        if not self.floor.running(fid):
            raise BenchError("the floor's warm-up container is not running")
        self.floor.remove(fid)

    def measure(self, pods: int, load: OtherLoad) -> tuple[dict[str, list[dict]], float, dict[str, float]]:
        """pods pods per runtime, taking turns; per pod the seconds of each step (and, for
        kubelab-cri, its CPU seconds). Returns the samples, the measured wall time and the CPU
        seconds the daemons (with the children they reaped) and this process used meanwhile."""
        assert self.raw is not None and self.floor is not None and self.kc is not None and self.kc.proc is not None
        assert self.ctrd is not None and self.ctrd.proc is not None
        kc_proc, ctrd_proc, me = (psutil.Process(self.kc.proc.pid), psutil.Process(self.ctrd.proc.pid),
                                  psutil.Process())
        samples: dict[str, list[dict]] = {r: [] for r in RUNTIMES}
        load.sample()
        cpu0 = {"kubelab-cri": _cpu(kc_proc), "containerd": _cpu(ctrd_proc), "bench": _cpu(me, children=False),
                "other": load.other}
        busy0, reaped0 = _machine_busy(), _cpu(me) - _cpu(me, children=False)
        t_begin = time.perf_counter()
        for i in range(pods):
            k = i % len(RUNTIMES)
            for rt in RUNTIMES[k:] + RUNTIMES[:k]:
                pod = f"{rt}-{i:03d}"
                if rt == "runc":
                    cid, took = self.raw.start(pod)
                    samples[rt].append({"total": took})
                    self.raw.remove(cid)
                    continue
                if rt == "floor":
                    cid, steps = self.floor.start(pod)
                    samples[rt].append({"total": sum(steps.values()), **steps})
                    self.floor.remove(cid)
                    continue
                client = self.clients[rt]
                before = kc_proc.cpu_times()
                sid, cid, steps = client.start(pod)
                after = kc_proc.cpu_times()
                rec: dict[str, Any] = {"total": sum(steps.values()), **steps}
                if rt == "kubelab-cri":
                    rec["cpu_self"] = (after.user + after.system) - (before.user + before.system)
                    rec["cpu_children"] = ((after.children_user + after.children_system)
                                           - (before.children_user + before.children_system))
                samples[rt].append(rec)
                client.remove(sid)
            load.sample()
            if (i + 1) % 10 == 0:
                log(f"{i + 1}/{pods} pods per runtime")
        measured = time.perf_counter() - t_begin
        cpu1 = {"kubelab-cri": _cpu(kc_proc), "containerd": _cpu(ctrd_proc), "bench": _cpu(me, children=False),
                "other": load.other}
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        # never more than the machine was busy beyond what is surely ours (sampling can overcount)
        ours = cpu["kubelab-cri"] + cpu["containerd"] + cpu["bench"] + (_cpu(me) - _cpu(me, children=False) - reaped0)
        cpu["other"] = max(0.0, min(cpu["other"], _machine_busy() - busy0 - ours))
        return samples, measured, {k: round(v, 3) for k, v in cpu.items()}

    def versions(self) -> dict[str, str]:
        def first_line(args: list[str]) -> str:
            res = run_sync(args, check=False)
            return (res.text.strip().splitlines() or ["unknown"])[0]
        return {"runc": first_line([RUNC, "--version"]), "conmon": first_line(["/usr/bin/conmon", "--version"]),
                "containerd": first_line(["/usr/bin/containerd", "--version"]), "cni plugins": _cni_version()}

    def close(self) -> None:
        """Remove everything, in order; note what could not be removed in self.problems."""
        for name, c in self.clients.items():
            proc_alive = (self.kc and self.kc.proc and self.kc.proc.poll() is None) if name == "kubelab-cri" \
                else (self.ctrd and self.ctrd.proc and self.ctrd.proc.poll() is None)
            if proc_alive:
                try:
                    c.remove_all()
                except grpc.RpcError as e:
                    self.problems.append(f"{name}: removing pods: {e.code().name}: {e.details()}")
            c.close()
        if self.raw is not None:
            self.raw.remove_all()
        if self.floor is not None:
            try:
                self.floor.remove_all()
            except Exception as e:  # noqa: BLE001 - note it, go on removing the rest
                self.problems.append(f"floor: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        if self.spy is not None:
            if self.kc is not None and self.kc.proc is not None:
                self.kc.stop()
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                stop(self.spy)
        if self.kc is not None:
            self.kc.stop()
            self._mop_up_kubelab_cri()
        if self.ctrd is not None:
            try:
                self.ctrd.stop()
            except PeerLeak as e:
                self.problems.append(str(e))
        if link_exists(BRIDGE) and not self.bridge_existed:
            run_sync(["ip", "link", "del", BRIDGE], check=False)
        remove_nat_chains(nat_chains() - self.chains_before)
        for rt in RUNTIMES:
            remove_cgroup_tree(f"{CGROUP_BASE}-{rt}")
        for m in mountpoints_under(self.tmp):
            run_sync(["umount", "-l", m], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._verify_gone()

    def _mop_up_kubelab_cri(self) -> None:
        """What a stopped kubelab-cri leaves running on purpose (conmon keeps its containers) or
        after a failure: containers killed, mounts unmounted."""
        assert self.kc is not None
        leftover = [p for p in psutil.process_iter() if str(self.kc.runroot) in " ".join(cmdline(p))]
        runc_root = self.kc.runroot / "runc"
        if runc_root.is_dir():
            res = run_sync([RUNC, "--root", str(runc_root), "list", "--format", "json"], check=False)
            for c in json.loads(res.stdout or b"null") or []:
                self.problems.append(f"kubelab-cri left container {c['id'][:13]} behind")
                run_sync([RUNC, "--root", str(runc_root), "delete", "--force", c["id"]], check=False)
        for p in leftover:
            self.problems.append(f"kubelab-cri left process {p.pid} behind")
            try:
                p.kill()
            except psutil.Error:
                pass
        for m in mountpoints_under(self.kc.tmp):
            self.problems.append(f"kubelab-cri left {m} mounted")
            run_sync(["umount", "-l", m], check=False)

    def _verify_gone(self) -> None:
        if self.tmp.exists():
            self.problems.append(f"{self.tmp} still exists")
        procs = [p.pid for p in psutil.process_iter() if str(self.tmp) in " ".join(cmdline(p))]
        if procs:
            self.problems.append(f"processes still mention {self.tmp}: {procs}")
        if link_exists(BRIDGE) and not self.bridge_existed:
            self.problems.append(f"link {BRIDGE} still exists")
        chains = nat_chains() - self.chains_before
        if chains:
            self.problems.append(f"NAT chains left: {sorted(chains)}")
        cgs = [str(d) for rt in RUNTIMES for d in cgroup_dirs(f"{CGROUP_BASE}-{rt}")]
        if cgs:
            self.problems.append(f"cgroups left: {cgs}")


def _cni_version() -> str:
    res = run_sync([str(CNI_BIN_DIR / "bridge")], check=False)
    text = (res.stderr or res.stdout).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "unknown"


def run_once(pods: int, quiet_wait: float | None) -> dict:
    quiet = harness.wait_quiet(quiet_wait)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    bench = Bench()
    try:
        load = OtherLoad(bench.tmp)
        log("building and importing images, starting kubelab-cri and containerd")
        images = bench.setup()
        bench.warm_up_and_template()
        log(f"timing {pods} pods per runtime, one at a time")
        samples, measured, cpu = bench.measure(pods, load)
        versions = bench.versions()
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup runs to its end
        try:
            bench.close()
        finally:
            signal.signal(signal.SIGINT, old)
        if bench.problems:
            log("cleanup: " + "; ".join(bench.problems))
    wall = time.perf_counter() - t0
    result = summarise(samples, measured, cpu, pods)
    result.update({
        "images": images, "versions": versions, "cleanup_problems": bench.problems, "other_top_s": load.top(),
        "wall_total_s": round(wall, 1), "loadavg_before": [round(x, 2) for x in load_before], "quiet_wait": quiet,
        "benchmark": NAME, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": harness.machine_info(),
    })
    return result


def summarise(samples: dict[str, list[dict]], measured: float, cpu: dict[str, float], pods: int) -> dict:
    total = {rt: summarize(s["total"] for s in samples[rt]) for rt in RUNTIMES}
    other = cpu["other"] / measured if measured > 0 else None
    k, c, r, fl = total["kubelab-cri"], total["containerd"], total["runc"], total["floor"]
    g = f"{pods} pods per runtime, one at a time, image present"
    note = "RunPodSandbox + CreateContainer + StartContainer"
    figures = [
        figure("kubelab-cri pod start p50", k["p50"], "s", peer_name="containerd p50", peer_value=c["p50"],
               target="<= 1.0x containerd", target_value=c["p50"], higher_is_better=False, group=g, note=note,
               other_cores=other),
        figure("kubelab-cri pod start p99", k["p99"], "s", peer_name="containerd p99", peer_value=c["p99"],
               target="<= 1.0x containerd", target_value=c["p99"], higher_is_better=False, group=g, note=note,
               other_cores=other),
        figure("kubelab-cri pod start p50 vs raw runc", k["p50"], "s", peer_name="runc run -d p50",
               peer_value=r["p50"], target="<= 2x runc run -d", target_value=2 * r["p50"], higher_is_better=False,
               group=g, other_cores=other),
        figure("kubelab-cri pod start p99 vs raw runc", k["p99"], "s", peer_name="runc run -d p99",
               peer_value=r["p99"], target="<= 2x runc run -d", target_value=2 * r["p99"], higher_is_better=False,
               group=g, other_cores=other),
        figure("floor p50 vs raw runc", fl["p50"], "s", peer_name="runc run -d p50", peer_value=r["p50"], group=g,
               note="CNI ADD + conmon/runc create + runc start, no daemon; for scale, no target", other_cores=other),
        figure("kubelab-cri pod start p50 vs the floor", k["p50"], "s", peer_name="floor p50", peer_value=fl["p50"],
               group=g, note="the runtime's own share; for scale, no target", other_cores=other),
        figure("containerd pod start p50 vs raw runc", c["p50"], "s", peer_name="runc run -d p50",
               peer_value=r["p50"], group=g, note="for scale, no target", other_cores=other),
        figure("containerd pod start p99 vs raw runc", c["p99"], "s", peer_name="runc run -d p99",
               peer_value=r["p99"], group=g, note="for scale, no target", other_cores=other),
    ]
    latency = {"kubelab-cri pod start": k, "containerd pod start": c, "runc run -d": r, "floor": fl}
    for rt in ("kubelab-cri", "containerd"):
        for rpc in RPCS:
            latency[f"{rt} {rpc}"] = summarize(s[rpc] for s in samples[rt])
    for step in FLOOR_STEPS:
        latency[f"floor {step}"] = summarize(s[step] for s in samples["floor"])
    kc = samples["kubelab-cri"]
    cpu_per_pod = {"self": summarize(s["cpu_self"] for s in kc), "children": summarize(s["cpu_children"] for s in kc)}
    return {
        "title": "Pod start latency: kubelab-cri, containerd 1.6, raw runc",
        "description": (f"Pod start = RunPodSandbox + CreateContainer + StartContainer of one busybox container "
                        f"running `{' '.join(COMMAND)}` with the image present, {pods} pods per runtime, one at a "
                        f"time (each removed, untimed, before the next), after one uncounted warm-up pod per "
                        f"runtime; the runtimes take turns pod by pod. kubelab-cri and containerd 1.6 run side by "
                        f"side with the same CNI config list (reference bridge + host-local + portmap plugins on "
                        f"a bench bridge and subnet) and the same images built from Debian packages. The baseline is "
                        f"raw `runc run -d` of the OCI spec kubelab-cri generated for its warm-up container, with "
                        f"fresh namespaces and its own cgroup, over a plain unpacked rootfs, stdio on /dev/null "
                        f"(no network, no log, no daemon). The floor is what a runtime made of these parts must exec "
                        f"per pod, timed without a daemon: CNI ADD of the same config list, conmon with runc "
                        f"create of the same spec, runc start."),
        "params": {"pods": pods, "command": COMMAND, "bridge": BRIDGE, "subnet": SUBNET},
        "figures": figures,
        "latency": latency,
        "kubelab_cri_cpu_per_pod_s": cpu_per_pod,
        "samples": samples,
        "measured_s": round(measured, 2),
        "cpu_total_s": cpu,
        "other_cores": None if other is None else round(other, 3),
    }


def _timed_run(quiet_wait: float | None) -> dict:
    result = run_once(PODS, quiet_wait=quiet_wait)
    for f in result["figures"]:
        print_figure(f)
    return result


def main() -> int:
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = harness.best_of_attempts(NAME, _timed_run)
    except KeyboardInterrupt:
        print(f"bench {NAME}: interrupted; everything it started is removed", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # exit as killed by SIGINT (130), so make stops too
        return 130
    except (BenchError, RuntimeError, OSError, grpc.RpcError) as e:
        msg = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.RpcError) else str(e).splitlines()[0]
        print(f"bench {NAME}: {msg}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
    lat = result["latency"]
    print("per RPC p50: " + "; ".join(
        f"{rt} " + ", ".join(f"{rpc} {harness.fmt(lat[f'{rt} {rpc}']['p50'], 's')}" for rpc in RPCS)
        for rt in ("kubelab-cri", "containerd")), flush=True)
    print("floor p50: " + ", ".join(f"{step} {harness.fmt(lat[f'floor {step}']['p50'], 's')}" for step in FLOOR_STEPS),
          flush=True)
    if result["cleanup_problems"]:
        print(f"bench {NAME}: cleanup: " + "; ".join(result["cleanup_problems"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
