"""The RuntimeService's logic: pod sandboxes and containers over pinned namespaces, CNI, conmon and runc.

A sandbox has no infra container: its network, UTS and IPC namespaces are pinned by bind mounts (as
CRI-O's pinns does), its /dev/shm is a tmpfs, and its hostname, hosts and resolv.conf files live in
its volatile dir. Containers are created by conmon (which runs `runc create` and holds their stdio,
writing the CRI log) when CreateContainer is called, and started with `runc start`. State is kept in
records under the root dir; on restart they are reloaded and reconciled with runc and conmon's exit
files, so running containers are adopted untouched.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from kubelab import mounts, proc
from kubelab.cri import errors
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.image.store import ImageStore
from kubelab.cri.fsutil import disk_usage
from kubelab.cri.runtime import cgroups, namespaces, pidns, spec as ocispec
from kubelab.cri.runtime.cni import CNI, CNIError
from kubelab.cri.runtime.config import RuntimeConfig
from kubelab.cri.runtime.conmon import Conmon
from kubelab.cri.runtime.runc import Runc
from kubelab.cri.runtime.state import (CREATED, EXITED, RUNNING, SANDBOX_NOTREADY, SANDBOX_READY, UNKNOWN,
                                       Container, Records, Sandbox)

log = logging.getLogger("kubelab.cri.runtime")

STATE_NAMES = {CREATED: "CONTAINER_CREATED", RUNNING: "CONTAINER_RUNNING", EXITED: "CONTAINER_EXITED",
               UNKNOWN: "CONTAINER_UNKNOWN"}


def now_ns() -> int:
    return time.time_ns()


@dataclass
class ExecTarget:
    """What the streaming server needs to run a process in, or attach to, a running container."""
    id: str
    bundle: Path
    process: dict           # the container's OCI process: an exec gets its user, env, cwd, capabilities
    runc: Runc
    tty: bool               # the container has a terminal
    stdin: bool             # the container has a stdin (conmon holds it open for attach)
    stdin_once: bool


class RuntimeService:
    def __init__(self, cfg: RuntimeConfig, images: ImageStore) -> None:
        self.cfg = cfg
        self.images = images
        self.records = Records(cfg.root)
        self.run_dir = cfg.runroot
        for d in (cfg.runroot / "sandboxes", cfg.runroot / "containers", cfg.runroot / "exits",
                  cfg.netns_path):
            d.mkdir(parents=True, exist_ok=True)
        self.runc = Runc(cfg.runtime, cfg.runroot / "runc")
        self.conmon = Conmon(cfg.conmon, self.runc, cfg.runroot / "exits")
        self.cni = CNI(cfg.cni_config_dir, list(cfg.cni_plugin_dirs), cfg.root / "cni-results")
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self.names: dict[str, str] = {}          # reserved names (sandboxes and containers) -> id
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # ---------------------------------------------------------------- lookup helpers

    def _sandbox(self, id: str) -> Sandbox:
        s = self.sandboxes.get(id) or self._by_prefix(self.sandboxes, id)
        if s is None:
            raise errors.NotFound(f"an error occurred when try to find sandbox {id!r}: not found")
        return s

    def _container(self, id: str) -> Container:
        c = self.containers.get(id) or self._by_prefix(self.containers, id)
        if c is None:
            raise errors.NotFound(f"an error occurred when try to find container {id!r}: not found")
        return c

    @staticmethod
    def _by_prefix(table: dict, prefix: str):
        if not prefix:
            return None
        found = [v for k, v in table.items() if k.startswith(prefix)]
        return found[0] if len(found) == 1 else None

    def _reserve(self, name: str, id: str, what: str) -> None:
        owner = self.names.get(name)
        if owner is not None and owner != id:
            raise errors.AlreadyExists(f"failed to reserve {what} name {name!r}: name {name!r} is reserved for {owner!r}")
        self.names[name] = id

    def _release(self, name: str, id: str) -> None:
        if self.names.get(name) == id:
            del self.names[name]

    @staticmethod
    def _container_name(c_meta: pb.ContainerMetadata, s_meta: pb.PodSandboxMetadata) -> str:
        return f"{c_meta.name}_{s_meta.name}_{s_meta.namespace}_{s_meta.uid}_{c_meta.attempt}"

    # ---------------------------------------------------------------- recovery

    async def recover(self) -> None:
        """Reload every record, adopt running containers, learn what exited meanwhile, and remove
        leftovers of creations that a crash interrupted."""
        sandboxes, containers = self.records.load()
        for s in sandboxes:
            self.sandboxes[s.id] = s
            self.names[s.name_key] = s.id
            if s.state == SANDBOX_READY and ((s.netns and not namespaces.is_pinned(Path(s.netns))) or
                                             (s.pid_holder and not pidns.alive(s.pid_holder, s.pid_holder_started))):
                s.state = SANDBOX_NOTREADY      # the host rebooted, or the pod's PID 1 died
                self.records.save_sandbox(s)
        known = set()
        for c in containers:
            if c.sandbox_id not in self.sandboxes:
                log.warning("dropping container %s of a sandbox that no longer exists", c.id)
                await self._destroy_container(c)
                continue
            self.containers[c.id] = c
            known.add(c.id)
            self.names[self._container_name(c.config.metadata, self.sandboxes[c.sandbox_id].config.metadata)] = c.id
            await self._reconcile(c)
        for st in await self.runc.list():
            if st.get("id") not in known:
                log.info("removing runc container %s left by an interrupted create", st.get("id"))
                await self.runc.delete(st["id"], force=True)
        cdir = self.cfg.runroot / "containers"
        for sub in cdir.iterdir():
            if sub.name not in known:
                await self._unmount_quiet(sub / "bundle" / "rootfs")
                shutil.rmtree(sub, ignore_errors=True)
        log.info("recovered sandboxes=%d containers=%d", len(self.sandboxes), len(self.containers))

    async def _reconcile(self, c: Container) -> None:
        if c.state in (EXITED,):
            return
        rootfs = Path(c.rootfs)
        if not os.path.ismount(rootfs):
            try:
                image = self.images.get(c.image_id)
                if image is None:
                    raise RuntimeError("image is gone")
                lowers = await self.images.snapshots.ensure(image.layers, image.diff_ids)
                await self.images.snapshots.mount_overlay(lowers, Path(c.upper) / "upper", Path(c.upper) / "work",
                                                          rootfs)
            except Exception as e:  # noqa: BLE001 - recorded on the container
                log.warning("container %s: cannot remount its rootfs: %s", c.id, e)
        self._refresh(c)
        if c.state in (CREATED, RUNNING):
            st = await self.runc.state(c.id)
            if st is None or st.get("status") == "stopped":
                self._refresh(c)
                if c.state != EXITED:
                    c.state, c.reason = EXITED, "Unknown"
                    c.exit_code = c.exit_code or 255
                    c.message = "the container's process disappeared while the runtime was down"
                    c.finished_at = c.finished_at or now_ns()
                    self.records.save_container(c)

    # ---------------------------------------------------------------- sandboxes

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str) -> str:
        if runtime_handler not in ("", "runc"):
            raise errors.CRIError(f"failed to get sandbox runtime: no runtime for {runtime_handler!r} is configured")
        m = config.metadata
        if not m.name or not m.namespace or not m.uid:
            raise errors.InvalidArgument("sandbox config must include metadata with name, namespace and uid")
        id = secrets.token_hex(32)
        s = Sandbox.new(id, config, now_ns(), runtime_handler=runtime_handler)
        self._reserve(s.name_key, id, "sandbox")
        try:
            async with self._locks[id]:
                await self._setup_sandbox(s)
        except BaseException:
            await self._teardown_sandbox(s, remove=True)
            self._release(s.name_key, id)
            raise
        return id

    async def _setup_sandbox(self, s: Sandbox) -> None:
        config = s.config
        ns_opts = config.linux.security_context.namespace_options
        sdir = self.cfg.runroot / "sandboxes" / s.id
        sdir.mkdir(parents=True)
        s.dir = str(sdir)
        pins: dict[str, Path] = {}     # one dir per kind, as CRI-O's /var/run/{netns,utsns,ipcns}: each
        if not s.host_network:          # is checked for mount propagation once, not per sandbox
            pins["net"] = self.cfg.netns_path / f"cni-{uuid.uuid4()}"
            pins["uts"] = self.cfg.runroot / "utsns" / s.id
        if ns_opts.ipc != pb.NODE:
            pins["ipc"] = self.cfg.runroot / "ipcns" / s.id
        if pins:
            await namespaces.pin(pins, hostname=config.hostname or None)
            s.netns = str(pins.get("net", ""))
            s.uts = str(pins.get("uts", ""))
            s.ipc = str(pins.get("ipc", ""))
        # files the containers get bind-mounted
        hostname = config.hostname if not s.host_network else os.uname().nodename
        (sdir / "hostname").write_text((hostname or os.uname().nodename) + "\n")
        (sdir / "resolv.conf").write_text(self._resolv_conf(config.dns_config))
        shutil.copyfile("/etc/hosts", sdir / "hosts")
        if ns_opts.ipc != pb.NODE:
            shm = sdir / "shm"
            shm.mkdir()
            mounts.mount("shm", str(shm), "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
                         f"mode=1777,size={self.cfg.shm_size}")
            s.shm = str(shm)
        s.cgroup_parent = config.linux.cgroup_parent or f"{self.cfg.cgroup_parent.rstrip('/')}/pod{config.metadata.uid}"
        s.cgroup_created = cgroups.ensure(s.cgroup_parent)
        if ns_opts.pid == pb.POD:
            s.pid_holder = await pidns.start(cgroups.procs_files(s.cgroup_parent))
            s.pid_holder_started = pidns.start_time(s.pid_holder)
        if s.netns:
            await self._apply_sysctls(s)
            if not self.cni.ready()[0]:
                raise errors.CRIError(f"failed to setup network for sandbox {s.id!r}: {self.cni.ready()[1]}")
            try:
                result = await self.cni.add(s.id, s.netns, "eth0", self._cni_args(s), self._cni_capabilities(config))
            except CNIError as e:
                raise errors.CRIError(f"failed to setup network for sandbox {s.id!r}: {e}") from None
            s.cni_result = result
            s.ip, s.additional_ips = self._ips(result)
        elif config.linux.sysctls:
            await self._apply_sysctls(s)
        s.state = SANDBOX_READY
        self.sandboxes[s.id] = s
        self.records.save_sandbox(s)
        log.info("sandbox %s ready pod=%s/%s ip=%s", s.id[:13], config.metadata.namespace, config.metadata.name, s.ip)

    @staticmethod
    def _resolv_conf(dns: pb.DNSConfig) -> str:
        if not (dns.servers or dns.searches or dns.options):
            try:
                return Path("/etc/resolv.conf").read_text()
            except OSError:
                return ""
        lines = [f"search {' '.join(dns.searches)}"] if dns.searches else []
        lines += [f"nameserver {ns}" for ns in dns.servers]
        if dns.options:
            lines.append(f"options {' '.join(dns.options)}")
        return "\n".join(lines) + "\n"

    async def _apply_sysctls(self, s: Sandbox) -> None:
        sysctls = dict(s.config.linux.sysctls)
        if not sysctls:
            return
        args = ["nsenter"]
        if s.netns:
            args.append(f"--net={s.netns}")
        if s.ipc:
            args.append(f"--ipc={s.ipc}")
        args += ["sysctl", "-q", "-w"] + [f"{k}={v}" for k, v in sorted(sysctls.items())]
        try:
            await proc.run(args, timeout=10)
        except proc.CommandError as e:
            raise errors.InvalidArgument(f"failed to set sandbox sysctls {sysctls}: {e}") from None

    @staticmethod
    def _cni_args(s: Sandbox) -> dict[str, str]:
        m = s.config.metadata
        return {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": m.namespace, "K8S_POD_NAME": m.name,
                "K8S_POD_INFRA_CONTAINER_ID": s.id, "K8S_POD_UID": m.uid}

    @staticmethod
    def _cni_capabilities(config: pb.PodSandboxConfig) -> dict:
        caps: dict = {}
        ports = [{"hostPort": p.host_port, "containerPort": p.container_port,
                  "protocol": pb.Protocol.Name(p.protocol).lower(), "hostIP": p.host_ip}
                 for p in config.port_mappings if p.host_port > 0]
        if ports:
            caps["portMappings"] = ports
        d = config.dns_config
        if d.servers or d.searches or d.options:
            caps["dns"] = {"servers": list(d.servers), "searches": list(d.searches), "options": list(d.options)}
        return caps

    @staticmethod
    def _ips(result: dict) -> tuple[str, list[str]]:
        ifaces = result.get("interfaces") or []
        ips = []
        for ip in result.get("ips") or []:
            idx = ip.get("interface")
            if idx is not None and 0 <= idx < len(ifaces) and not ifaces[idx].get("sandbox"):
                continue
            ips.append(ip["address"].split("/")[0])
        v4 = [a for a in ips if ":" not in a]
        v6 = [a for a in ips if ":" in a]
        ordered = v4 + v6
        return (ordered[0] if ordered else ""), ordered[1:]

    async def _teardown_network(self, s: Sandbox) -> None:
        if s.netns or s.cni_result is not None:
            if self.cni.load() is not None or s.cni_result is not None:
                try:
                    await self.cni.delete(s.id, s.netns if s.netns and namespaces.is_pinned(Path(s.netns)) else "",
                                          "eth0", self._cni_args(s))
                except CNIError as e:
                    raise errors.CRIError(f"failed to destroy network for sandbox {s.id!r}: {e}") from None
            s.cni_result = None
        if s.netns:
            await namespaces.unpin([Path(s.netns)])

    async def _teardown_sandbox(self, s: Sandbox, remove: bool) -> None:
        """Undo whatever _setup_sandbox did; safe on a half-made sandbox and when run twice."""
        await self._teardown_network(s)
        pidns.stop(s.pid_holder, s.pid_holder_started)
        if not remove:
            return
        if s.shm:
            await self._unmount_quiet(Path(s.shm))
        await namespaces.unpin([Path(p) for p in (s.uts, s.ipc) if p])
        if s.dir:
            shutil.rmtree(s.dir, ignore_errors=True)
        if s.cgroup_created:
            await asyncio.to_thread(cgroups.remove, s.cgroup_parent)
        self.sandboxes.pop(s.id, None)
        self.records.drop_sandbox(s.id)

    async def stop_pod_sandbox(self, id: str) -> None:
        s = self._sandbox(id)
        async with self._locks[s.id]:
            for c in [c for c in self.containers.values() if c.sandbox_id == s.id]:
                await self.stop_container(c.id, 0)
            pidns.stop(s.pid_holder, s.pid_holder_started)
            await self._teardown_network(s)
            if s.state != SANDBOX_NOTREADY:
                s.state = SANDBOX_NOTREADY
            self.records.save_sandbox(s)

    async def remove_pod_sandbox(self, id: str) -> None:
        s = self.sandboxes.get(id) or self._by_prefix(self.sandboxes, id)
        if s is None:
            return
        async with self._locks[s.id]:
            for c in [c for c in self.containers.values() if c.sandbox_id == s.id]:
                await self.remove_container(c.id)
            await self._teardown_sandbox(s, remove=True)
            self._release(s.name_key, s.id)
        self._locks.pop(s.id, None)
        log.info("sandbox %s removed", s.id[:13])

    def pod_sandbox_status(self, id: str, verbose: bool) -> pb.PodSandboxStatusResponse:
        s = self._sandbox(id)
        c = s.config
        st = pb.PodSandboxStatus(id=s.id, metadata=c.metadata, state=s.state, created_at=s.created_at,
                                 labels=c.labels, annotations=c.annotations, runtime_handler=s.runtime_handler)
        if s.state == SANDBOX_READY or s.ip:
            st.network.ip = s.ip
            st.network.additional_ips.extend(pb.PodIP(ip=a) for a in s.additional_ips)
        ns = c.linux.security_context.namespace_options
        st.linux.namespaces.options.CopyFrom(ns)
        resp = pb.PodSandboxStatusResponse(status=st, timestamp=now_ns())
        if verbose:
            resp.info["info"] = json.dumps({"netNamespace": s.netns, "uts": s.uts, "ipc": s.ipc, "shm": s.shm,
                                            "cgroupParent": s.cgroup_parent, "cniResult": s.cni_result,
                                            "runtimeHandler": s.runtime_handler or "runc"})
        return resp

    def list_pod_sandbox(self, f: pb.PodSandboxFilter | None) -> list[pb.PodSandbox]:
        out = []
        for s in self.sandboxes.values():
            if f is not None:
                if f.id and not s.id.startswith(f.id):
                    continue
                if f.HasField("state") and f.state.state != s.state:
                    continue
                if any(s.config.labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            c = s.config
            out.append(pb.PodSandbox(id=s.id, metadata=c.metadata, state=s.state, created_at=s.created_at,
                                     labels=c.labels, annotations=c.annotations, runtime_handler=s.runtime_handler))
        return out

    # ---------------------------------------------------------------- containers

    async def create_container(self, sandbox_id: str, config: pb.ContainerConfig,
                               sandbox_config: pb.PodSandboxConfig | None) -> str:
        s = self._sandbox(sandbox_id)
        if s.state != SANDBOX_READY:
            raise errors.CRIError(f"sandbox {s.id!r} is not ready: create a new sandbox")
        if not config.metadata.name:
            raise errors.InvalidArgument("container config must include metadata with a name")
        if not config.image.image:
            raise errors.InvalidArgument("container config must include an image")
        image = self.images.get(config.image.image)
        if image is None:
            raise errors.NotFound(f"failed to get image {config.image.image!r}: not found")
        id = secrets.token_hex(32)
        name = self._container_name(config.metadata, s.config.metadata)
        self._reserve(name, id, "container")
        home = self.records.container_home(id)
        vol = self.cfg.runroot / "containers" / id
        bundle = vol / "bundle"
        log_path = ""
        if config.log_path:
            log_path = os.path.join(s.config.log_directory, config.log_path) if s.config.log_directory \
                else config.log_path
        c = Container.new(id, s.id, config, now_ns(), image_id=image.id, image_name=config.image.image,
                          image_ref=(image.repo_digests[0] if image.repo_digests else image.id),
                          bundle=str(bundle), rootfs=str(bundle / "rootfs"), upper=str(home),
                          log_path=log_path, cgroups_path=f"{s.cgroup_parent.rstrip('/')}/{id}",
                          persist_dir=str(vol / "persist"))
        try:
            for d in (home / "upper", home / "work", bundle / "rootfs", vol / "persist"):
                d.mkdir(parents=True, exist_ok=True)
            lowers = await self.images.snapshots.ensure(image.layers, image.diff_ids)
            await self.images.snapshots.mount_overlay(lowers, home / "upper", home / "work", bundle / "rootfs")
            spec = ocispec.build_spec(
                image_config=image.config, config=config, sandbox=self._spec_sandbox(s), rootfs=bundle / "rootfs",
                container_id=id, cgroups_path=c.cgroups_path, oom_score_adj_floor=_own_oom_score_adj(),
                target_pid_ns=self._target_pid_ns(config))
            c.stop_signal = ocispec.stop_signal(image.config, config)
            (bundle / "config.json").write_text(json.dumps(spec))
            if log_path:
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            c.pid = await self.conmon.create(id, bundle, log_path or str(vol / "console.log"), vol / "persist",
                                             stdin=config.stdin, tty=config.tty, stdin_once=config.stdin_once)
            c.state = CREATED
            self.containers[id] = c
            self.records.save_container(c)
        except BaseException as e:
            self.containers.pop(id, None)
            await self._destroy_container(c)
            self._release(name, id)
            if isinstance(e, (errors.CRIError, asyncio.CancelledError)):
                raise
            if isinstance(e, proc.CommandError | OSError | ValueError | RuntimeError):
                raise errors.CRIError(f"failed to create container {config.metadata.name!r}: {e}") from None
            raise
        log.info("container %s created name=%s sandbox=%s", id[:13], config.metadata.name, s.id[:13])
        return id

    def _spec_sandbox(self, s: Sandbox) -> ocispec.SandboxInfo:
        return ocispec.SandboxInfo(id=s.id, config=s.config, netns=s.netns, uts=s.uts, ipc=s.ipc, shm=s.shm,
                                   hostname_file=os.path.join(s.dir, "hostname"),
                                   hosts_file=os.path.join(s.dir, "hosts"),
                                   resolv_file=os.path.join(s.dir, "resolv.conf"),
                                   pid_ns=pidns.path(s.pid_holder) if s.pid_holder else "")

    def _target_pid_ns(self, config: pb.ContainerConfig) -> str:
        """For pid NamespaceMode TARGET (ephemeral containers): the target container's PID namespace."""
        ns = config.linux.security_context.namespace_options
        if ns.pid != pb.TARGET:
            return ""
        target = self._container(ns.target_id)
        self._refresh(target)
        if target.state != RUNNING or not target.pid:
            raise errors.FailedPrecondition(f"target container {ns.target_id!r} is not running")
        return f"/proc/{target.pid}/ns/pid"

    async def start_container(self, id: str) -> None:
        c = self._container(id)
        async with self._locks[c.id]:
            self._refresh(c)
            if c.state != CREATED:
                raise errors.CRIError(f"failed to set starting state for container {c.id!r}: "
                                      f"container is in {STATE_NAMES[c.state]} state")
            started = now_ns()
            try:
                await self.runc.start(c.id)
            except proc.CommandError as e:
                c.state, c.exit_code, c.reason, c.message = EXITED, 128, "StartError", str(e)
                c.finished_at = now_ns()
                self.records.save_container(c)
                raise errors.CRIError(f"failed to start container {c.id!r}: {e}") from None
            c.started_at = started
            c.state = RUNNING
            self.records.save_container(c)
            self._refresh(c)

    def _refresh(self, c: Container, exited: set[str] | None = None) -> None:
        """Learn from conmon's exit file whether a created or running container has exited.
        exited: the ids conmon has written exit files for (one listing for a whole List call)."""
        if c.state == EXITED or (exited is not None and c.id not in exited):
            return
        ex = self.conmon.read_exit(c.id)
        if ex is None:
            return
        code, finished = ex
        c.state, c.exit_code, c.finished_at = EXITED, code, max(finished, c.started_at)
        if self.conmon.oom_killed(Path(c.persist_dir)):
            c.reason = "OOMKilled"
        elif not c.reason:
            c.reason = "Completed" if code == 0 else "Error"
        self.records.save_container(c)

    async def _wait_exit(self, c: Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._refresh(c)
            if c.state == EXITED:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def stop_container(self, id: str, timeout: int) -> None:
        c = self._container(id)
        async with self._locks[c.id]:
            self._refresh(c)
            if c.state == EXITED:
                return
            if c.state == RUNNING and timeout > 0:
                try:
                    await self.runc.kill(c.id, c.stop_signal)
                except proc.CommandError as e:
                    log.info("container %s: stop signal %s: %s", c.id[:13], c.stop_signal, e)
                if await self._wait_exit(c, timeout):
                    return
            try:
                await self.runc.kill(c.id, "SIGKILL", all=True)
            except proc.CommandError as e:
                log.info("container %s: SIGKILL: %s", c.id[:13], e)
            if c.state == CREATED:
                # never started: runc init is killed; conmon records the exit
                if not await self._wait_exit(c, 10):
                    c.state, c.exit_code, c.reason, c.finished_at = EXITED, 137, "Error", now_ns()
                    self.records.save_container(c)
                return
            if not await self._wait_exit(c, 30):
                raise errors.CRIError(f"failed to stop container {c.id!r}: still running 30s after SIGKILL")

    async def remove_container(self, id: str) -> None:
        c = self.containers.get(id) or self._by_prefix(self.containers, id)
        if c is None:
            return
        if c.state != EXITED:
            await self.stop_container(c.id, 0)
        async with self._locks[c.id]:
            await self._destroy_container(c)
            self.containers.pop(c.id, None)
            s = self.sandboxes.get(c.sandbox_id)
            if s is not None:
                self._release(self._container_name(c.config.metadata, s.config.metadata), c.id)
            else:
                for k, v in list(self.names.items()):
                    if v == c.id:
                        del self.names[k]
        self._locks.pop(c.id, None)

    async def _destroy_container(self, c: Container) -> None:
        try:
            await self.runc.delete(c.id, force=True)
        except proc.CommandError as e:
            log.warning("container %s: runc delete: %s", c.id[:13], e)
        await self._unmount_quiet(Path(c.rootfs))
        shutil.rmtree(self.cfg.runroot / "containers" / c.id, ignore_errors=True)
        (self.cfg.runroot / "exits" / c.id).unlink(missing_ok=True)
        await asyncio.to_thread(cgroups.remove, c.cgroups_path)
        self.records.drop_container(c.id)

    @staticmethod
    async def _unmount_quiet(path: Path) -> None:
        if os.path.ismount(path):
            try:
                mounts.umount(str(path))
            except OSError as e:
                log.warning("umount %s: %s", path, e.strerror)

    def _image_for_status(self, c: Container) -> tuple[str, str]:
        image = self.images.get(c.image_id)
        name = image.repo_tags[0] if image is not None and image.repo_tags else c.image_name
        return name, c.image_ref

    def container_status(self, id: str, verbose: bool) -> pb.ContainerStatusResponse:
        c = self._container(id)
        self._refresh(c)
        cfg = c.config
        image, image_ref = self._image_for_status(c)
        st = pb.ContainerStatus(id=c.id, metadata=cfg.metadata, state=c.state, created_at=c.created_at,
                                started_at=c.started_at, finished_at=c.finished_at, exit_code=c.exit_code,
                                image=pb.ImageSpec(image=image), image_ref=image_ref, reason=c.reason,
                                message=c.message, labels=cfg.labels, annotations=cfg.annotations,
                                mounts=cfg.mounts, log_path=c.log_path, image_id=c.image_id)
        if c.stop_signal in pb.Signal.keys():
            st.stop_signal = pb.Signal.Value(c.stop_signal)
        if cfg.linux.HasField("resources"):
            st.resources.linux.CopyFrom(cfg.linux.resources)
        resp = pb.ContainerStatusResponse(status=st)
        if verbose:
            resp.info["info"] = json.dumps({"sandboxID": c.sandbox_id, "pid": c.pid, "bundle": c.bundle,
                                            "rootfs": c.rootfs, "cgroupsPath": c.cgroups_path})
        return resp

    def list_containers(self, f: pb.ContainerFilter | None) -> list[pb.Container]:
        out = []
        exited = self.conmon.exited()
        for c in self.containers.values():
            self._refresh(c, exited)
            cfg = c.config
            if f is not None:
                if f.id and not c.id.startswith(f.id):
                    continue
                if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                    continue
                if f.HasField("state") and f.state.state != c.state:
                    continue
                if any(cfg.labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            image, image_ref = self._image_for_status(c)
            out.append(pb.Container(id=c.id, pod_sandbox_id=c.sandbox_id, metadata=cfg.metadata,
                                    image=pb.ImageSpec(image=image), image_ref=image_ref, image_id=c.image_id,
                                    state=c.state,
                                    created_at=c.created_at, labels=cfg.labels, annotations=cfg.annotations))
        return out

    def image_in_use(self, image_id: str) -> str | None:
        """The id of a container using the image, if any (RemoveImage refuses then)."""
        return next((c.id for c in self.containers.values() if c.image_id == image_id), None)

    async def exec_sync(self, id: str, cmd: Iterable[str], timeout: int) -> tuple[bytes, bytes, int]:
        c = self._container(id)
        self._refresh(c)
        if c.state != RUNNING:
            raise errors.CRIError(f"container {c.id!r} is not running (state {STATE_NAMES[c.state]})")
        cmd = list(cmd)
        if not cmd:
            raise errors.InvalidArgument("cmd must not be empty")
        spec = json.loads((Path(c.bundle) / "config.json").read_text())
        process = ocispec.exec_process(spec, cmd, tty=False)
        try:
            return await self.runc.exec(c.id, process, timeout=float(timeout) if timeout > 0 else None)
        except proc.CommandError as e:
            if e.timed_out:
                raise errors.DeadlineExceeded(f"command {cmd!r} timed out after {timeout}s") from None
            raise errors.CRIError(f"failed to exec in container {c.id!r}: {e}") from None

    # ---------------------------------------------------------------- streaming (Exec, Attach, PortForward)

    def exec_target(self, id: str) -> ExecTarget:
        """The running container id for an exec or attach: NotFound if there is no such container,
        FailedPrecondition if it is not running."""
        c = self._container(id)
        self._refresh(c)
        if c.state != RUNNING:
            raise errors.FailedPrecondition(f"container {c.id!r} is not running (state {STATE_NAMES[c.state]})")
        try:
            spec = json.loads((Path(c.bundle) / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise errors.CRIError(f"cannot read the OCI spec of container {c.id!r}: {e}") from None
        cfg = c.config
        return ExecTarget(id=c.id, bundle=Path(c.bundle), process=dict(spec.get("process") or {}), runc=self.runc,
                          tty=cfg.tty, stdin=cfg.stdin, stdin_once=cfg.stdin_once)

    def sandbox_netns(self, id: str) -> str:
        """The network namespace path of a ready sandbox for a port forward ("" on the host network):
        NotFound if there is no such sandbox, FailedPrecondition if it is not ready."""
        s = self._sandbox(id)
        if s.state != SANDBOX_READY:
            raise errors.FailedPrecondition(f"sandbox {s.id!r} is not ready")
        if s.netns and not namespaces.is_pinned(Path(s.netns)):
            raise errors.FailedPrecondition(f"the network namespace of sandbox {s.id!r} is gone")
        return s.netns

    async def update_container_resources(self, id: str, linux: pb.LinuxContainerResources) -> None:
        c = self._container(id)
        self._refresh(c)
        if c.state not in (CREATED, RUNNING):
            raise errors.CRIError(f"container {c.id!r} is not running: cannot update its resources")
        resources = ocispec.linux_resources(linux, oom_score_adj_floor=_own_oom_score_adj())
        try:
            await self.runc.update(c.id, resources)
        except proc.CommandError as e:
            raise errors.CRIError(f"failed to update resources of container {c.id!r}: {e}") from None
        cfg = c.config
        cfg.linux.resources.CopyFrom(linux)
        c.set_config(cfg)
        self.records.save_container(c)

    async def reopen_container_log(self, id: str) -> None:
        c = self._container(id)
        self._refresh(c)
        if c.state != RUNNING:
            raise errors.CRIError(f"container {c.id!r} is not running")
        await self.conmon.reopen_log(c.id)

    # ---------------------------------------------------------------- stats

    def container_stats(self, id: str) -> pb.ContainerStats:
        c = self._container(id)
        return self._stats(c)

    def _stats(self, c: Container) -> pb.ContainerStats:
        cfg = c.config
        ts = now_ns()
        st = pb.ContainerStats(attributes=pb.ContainerAttributes(id=c.id, metadata=cfg.metadata, labels=cfg.labels,
                                                                 annotations=cfg.annotations))
        u = _cgroup_usage(c.cgroups_path, st.cpu, st.memory, ts)
        if u is not None and u.memory_limit:
            st.memory.available_bytes.value = max(0, u.memory_limit - u.memory_working_set)
        used, inodes = disk_usage(Path(c.upper) / "upper")
        st.writable_layer.timestamp = ts
        st.writable_layer.fs_id.mountpoint = str(self.cfg.root)
        st.writable_layer.used_bytes.value = used
        st.writable_layer.inodes_used.value = inodes
        return st

    def list_container_stats(self, f: pb.ContainerStatsFilter | None) -> list[pb.ContainerStats]:
        out = []
        exited = self.conmon.exited()
        for c in list(self.containers.values()):
            self._refresh(c, exited)
            if c.state != RUNNING:
                continue
            if f is not None:
                if f.id and not c.id.startswith(f.id):
                    continue
                if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                    continue
                if any(c.config.labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            out.append(self._stats(c))
        return out

    def pod_sandbox_stats(self, id: str) -> pb.PodSandboxStats:
        s = self._sandbox(id)
        c = s.config
        ts = now_ns()
        st = pb.PodSandboxStats(attributes=pb.PodSandboxAttributes(id=s.id, metadata=c.metadata, labels=c.labels,
                                                                   annotations=c.annotations))
        u = _cgroup_usage(s.cgroup_parent, st.linux.cpu, st.linux.memory, ts)
        if u is not None:
            st.linux.process.timestamp = ts
            st.linux.process.process_count.value = u.pids
        if s.netns and namespaces.is_pinned(Path(s.netns)):
            st.linux.network.timestamp = ts
            for name, rx, rxe, tx, txe in namespaces.interface_stats(Path(s.netns)):
                i = pb.NetworkInterfaceUsage(name=name)
                i.rx_bytes.value, i.rx_errors.value, i.tx_bytes.value, i.tx_errors.value = rx, rxe, tx, txe
                if name == "eth0":
                    st.linux.network.default_interface.CopyFrom(i)
                else:
                    st.linux.network.interfaces.append(i)
        for ctr in self.containers.values():
            if ctr.sandbox_id == s.id and ctr.state == RUNNING:
                st.linux.containers.append(self._stats(ctr))
        return st

    def list_pod_sandbox_stats(self, f: pb.PodSandboxStatsFilter | None) -> list[pb.PodSandboxStats]:
        out = []
        for s in list(self.sandboxes.values()):
            if f is not None:
                if f.id and not s.id.startswith(f.id):
                    continue
                if any(s.config.labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            out.append(self.pod_sandbox_stats(s.id))
        return out

    # ---------------------------------------------------------------- status

    def status(self) -> list[pb.RuntimeCondition]:
        ok, msg = self.cni.ready()
        net = pb.RuntimeCondition(type="NetworkReady", status=ok)
        if not ok:
            net.reason, net.message = "NetworkPluginNotReady", f"Network plugin returns error: {msg}"
        return [pb.RuntimeCondition(type="RuntimeReady", status=True), net]

    async def close(self) -> None:
        """Nothing to stop: conmon keeps containers running without us."""


def _own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return 0


def _cgroup_usage(cgroup: str, cpu: pb.CpuUsage, memory: pb.MemoryUsage, ts: int) -> cgroups.Stats | None:
    """Fill the CPU and memory usage of container or pod sandbox stats from their cgroup's numbers,
    and return those (None, and nothing filled, if the cgroup does not exist)."""
    u = cgroups.stats(cgroup)
    if u is None:
        return None
    cpu.timestamp = ts
    cpu.usage_core_nano_seconds.value = u.cpu_usage_ns
    memory.timestamp = ts
    memory.working_set_bytes.value = u.memory_working_set
    memory.usage_bytes.value = u.memory_usage
    memory.rss_bytes.value = u.memory_rss
    memory.page_faults.value = u.page_faults
    memory.major_page_faults.value = u.major_page_faults
    return u
