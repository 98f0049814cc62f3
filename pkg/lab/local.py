"""The single-host lab of `kubelab up` / `kubelab down` (README command 1).

`up --nodes N` (default 2) starts etcd, the apiserver on the lab bridge's host address
(192.168.56.1), the controller-manager and the scheduler, then N nodes: each a network namespace on
the kubelab0 bridge (192.168.56.10+i) with its pod CIDR 10.244.<i>.0/24 and host-gw routes, running
kubelab-cri (its CNI config: kubelab-bridge on the node's cni0), kubelab-kubelet (registering the
node with that pod CIDR) and kubelab-proxy; kubelab-dns runs on node1 behind the kube-dns Service
(10.96.0.10). The lab's images (nginx, busybox, pause, built from Debian packages and cached) are
imported into every node's runtime. It then deploys an nginx Deployment (3 replicas) and a NodePort
Service and shows what answers on the ClusterIP, the NodePort and, from inside a pod, the Service's
DNS name. `--nodes 0` starts only etcd and the apiserver (on 127.0.0.1).

Every process is detached and recorded in the state directory (pids.json, lab.json). `down` stops
the kubelets and controllers, removes every pod sandbox through each node's runtime, stops the rest,
and removes the namespaces, links, routes, cgroups, mounts and the state directory.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .controlplane import APIServerProc, Etcd, Pki, spawn, stop

DEFAULT_STATE = Path("/var/lib/kubelab/lab")
BIN = Path(sys.executable).parent
DNS_IP = "10.96.0.10"
SERVICE_CIDR = "10.96.0.0/12"
NODE_PORT = 30080
IMAGES = ("nginx", "busybox", "pause")


class LabError(Exception):
    pass


class Lab:
    def __init__(self, state: Path = DEFAULT_STATE, *, etcd_port: int = 23790, apiserver_port: int = 6443,
                 nodes: int = 2) -> None:
        self.state = state
        self.etcd_port = etcd_port
        self.apiserver_port = apiserver_port
        self.n_nodes = nodes

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    def _pids(self) -> dict[str, int]:
        try:
            return json.loads((self.state / "pids.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, pids: dict[str, int]) -> None:
        (self.state / "pids.json").write_text(json.dumps(pids))

    def _info(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "lab.json").read_text())
        except (OSError, ValueError):
            return {}

    def running(self) -> dict[str, bool]:
        out = {}
        for name, pid in self._pids().items():
            try:
                os.kill(pid, 0)
                out[name] = True
            except ProcessLookupError:
                out[name] = False
        return out

    def _nodes(self, count: int) -> list[Any]:
        from .nodes import Node
        return [Node(f"node{i}", i) for i in range(1, count + 1)]

    # -- up ---------------------------------------------------------------------------------------

    def up(self, log=print) -> dict[str, str]:
        """Bring the lab up; returns what the demo fetched ({} with no nodes)."""
        if any(self.running().values()):
            raise LabError(f"a lab is already running (state in {self.state}); run `kubelab down` first")
        if self.n_nodes:
            from .nodes import LabNetwork
            left = LabNetwork(self._nodes(self.n_nodes)).leftovers()
            if left:
                raise LabError(f"another lab's network exists ({left}); run `kubelab down` for it first")
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "lab.json").write_text(json.dumps({"nodes": self.n_nodes}))
        pids: dict[str, int] = {}
        try:
            if self.n_nodes:
                from .nodes import HOST_IP, LabNetwork
                LabNetwork(self._nodes(self.n_nodes)).up(routes=True)
                host = HOST_IP
            else:
                host = "127.0.0.1"
            etcd = Etcd(self.state / "etcd", self.etcd_port, self.etcd_port + 1)
            etcd.start(self.state / "logs" / "etcd.log", detach=True)
            pids["etcd"] = etcd.proc.pid
            self._save(pids)
            pki = Pki(self.state / "pki")
            pki.ensure(("127.0.0.1", host))
            api = APIServerProc(etcd.url, self.apiserver_port, pki, host=host)
            api.start(self.state / "logs" / "apiserver.log", detach=True)
            pids["apiserver"] = api.proc.pid
            self._save(pids)
            pki.kubeconfig(f"https://{host}:{self.apiserver_port}", self.kubeconfig)
            if not self.n_nodes:
                return {}
            log(f"control plane up at https://{host}:{self.apiserver_port}; starting {self.n_nodes} nodes")
            self._nodes_up(pids, log)
            return asyncio.run(self._demo(log))
        except Exception as e:
            self.down()
            raise LabError(f"lab did not come up: {e}") from e

    def _spawn(self, pids: dict[str, int], name: str, args: list[str]) -> None:
        p = spawn(args, self.state / "logs" / f"{name}.log", detach=True)
        pids[name] = p.pid
        self._save(pids)

    def _nodes_up(self, pids: dict[str, int], log) -> None:
        from kubelab.cni import launcher as cni_launcher
        from kubelab.cri.image.archive import import_archive
        from kubelab.cri.image.build import build
        from kubelab.cri.image.store import ImageStore

        from kubelab.kubelet.podnet import cni_conflist, write_if_changed

        from .nodes import CLUSTER_CIDR
        from .runtimes import CNI_BIN_DIR, KubelabCRIProc
        kc = str(self.kubeconfig)
        self._spawn(pids, "controller-manager", [str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc,
                                                 "--service-cluster-ip-range", SERVICE_CIDR, "--leader-elect=false",
                                                 "--root-ca-file", str(self.state / "pki" / "ca.crt"),
                                                 "--secure-port", "0"])
        self._spawn(pids, "scheduler", [str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--leader-elect=false",
                                        "--secure-port", "0"])
        log("building the lab's images from Debian packages (cached after the first time)")
        (self.state / "images").mkdir(exist_ok=True)
        archives = {name: asyncio.run(build(name, self.state / "images" / f"{name}.tar")) for name in IMAGES}
        cni_bin = self.state / "cnibin"
        cni_bin.mkdir(exist_ok=True)
        cni_launcher.install(cni_bin)
        if not (cni_bin / "portmap").exists():
            os.symlink(CNI_BIN_DIR / "portmap", cni_bin / "portmap")
        refs: dict[str, str] = {}
        for n in self._nodes(self.n_nodes):
            d = self.state / n.name
            # the kubelet's side of pod networking (kubelab.kubelet.podnet) with the node's fixed pod CIDR
            write_if_changed(d / "net.d" / "10-kubelab.conflist", json.dumps(cni_conflist(
                [str(n.pod_cidr)], ipam_data_dir=str(d / "ipam")), indent=2))
            cri = KubelabCRIProc(d, {"conf_dir": d / "net.d", "bin_dir": cni_bin}, prefix=n.nsenter(),
                                 cgroup_parent=f"/kubelab-lab-{n.name}", detach=True)
            store = ImageStore(cri.root)
            for name, path in archives.items():
                refs[name] = asyncio.run(import_archive(store, path))[0].repo_tags[0]
            cri.start()
            pids[f"cri-{n.name}"] = cri.proc.pid
            self._save(pids)
            self._spawn(pids, f"kubelet-{n.name}", n.nsenter() + [
                str(BIN / "kubelab-kubelet"), "--kubeconfig", kc, "--hostname-override", n.name, "--node-ip", n.ip,
                "--pod-cidr", str(n.pod_cidr), "--container-runtime-endpoint", f"unix://{cri.socket}",
                "--root-dir", str(d / "kubelet"), "--pod-logs-dir", str(d / "pods"), "--cluster-dns", DNS_IP,
                "--cgroup-root", f"/kubelab-lab-{n.name}", "--node-status-update-frequency", "2s",
                "--client-ca-file", str(self.state / "pki" / "ca.crt")])
            self._spawn(pids, f"proxy-{n.name}", n.nsenter() + [
                str(BIN / "kubelab-proxy"), "--kubeconfig", kc, "--hostname-override", n.name,
                "--cluster-cidr", str(CLUSTER_CIDR)])
            if n.index == 1:
                self._spawn(pids, "dns", n.nsenter() + [str(BIN / "kubelab-dns"), "--kubeconfig", kc,
                                                        "--pods", "insecure"])
        info = self._info()
        info["images"] = refs
        (self.state / "lab.json").write_text(json.dumps(info))

    async def _demo(self, log) -> dict[str, str]:
        from kubelab.client.rest import Client
        nodes = self._nodes(self.n_nodes)
        refs = self._info()["images"]
        async with Client.from_kubeconfig(str(self.kubeconfig), component="kubelab-up") as c:
            await self._wait(c, lambda: self._nodes_ready(c, nodes), 90, "the nodes to become Ready")
            await c.create("v1", "services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                                                    "labels": {"k8s-app": "kube-dns"}},
                "spec": {"clusterIP": DNS_IP, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
                "kube-system")
            from .cluster import endpoint_slice
            await c.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(
                "kube-system", "kube-dns", [(nodes[0].ip, nodes[0].name, None)],
                [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
                "kube-system")
            pod_spec = {"terminationGracePeriodSeconds": 5, "containers": [
                {"name": "nginx", "image": refs["nginx"], "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 80}]}]}
            await c.create("apps/v1", "deployments", {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                         "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": pod_spec}}}, "default")
            svc = await c.create("v1", "services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
                "spec": {"type": "NodePort", "selector": {"app": "nginx"},
                         "ports": [{"port": 80, "targetPort": 80, "nodePort": NODE_PORT}]}}, "default")
            await c.create("v1", "pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "client", "image": refs["busybox"], "imagePullPolicy": "IfNotPresent",
                     "command": ["sleep", "1000000"]}]}}, "default")
            log("deployed nginx (3 replicas), its NodePort Service and a client pod; waiting for them")

            async def available() -> bool:
                st = (await c.get("apps/v1", "deployments", "default", "nginx")).get("status") or {}
                pod = await c.get("v1", "pods", "default", "client")
                return st.get("availableReplicas") == 3 and (pod.get("status") or {}).get("phase") == "Running"
            await self._wait(c, available, 120, "nginx to become available")
            client = await c.get("v1", "pods", "default", "client")
        ip = svc["spec"]["clusterIP"]
        node = next(n for n in nodes if n.name == client["spec"]["nodeName"])
        cid = client["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
        out = {
            f"http://{ip}/ (ClusterIP, from node1)": self._fetch_in(nodes[0], f"http://{ip}/"),
            f"http://{nodes[0].ip}:{NODE_PORT}/ (NodePort, from this host)": self._fetch(
                f"http://{nodes[0].ip}:{NODE_PORT}/"),
            "http://nginx.default.svc.cluster.local/ (DNS, from the client pod)": self._exec(
                node, cid, ["wget", "-qO-", "http://nginx.default.svc.cluster.local/"]),
        }
        return out

    async def _nodes_ready(self, c: Any, nodes: list[Any]) -> bool:
        items = (await c.list("v1", "nodes"))["items"]
        ready = {x["metadata"]["name"] for x in items for cond in (x.get("status") or {}).get("conditions") or []
                 if cond.get("type") == "Ready" and cond.get("status") == "True"}
        return all(n.name in ready for n in nodes)

    async def _wait(self, c: Any, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await cond():
            for name, ok in self.running().items():
                if not ok:
                    raise LabError(f"{name} exited; see {self.state / 'logs' / (name + '.log')}")
            if time.monotonic() > deadline:
                raise LabError(f"timed out waiting for {what}; logs are in {self.state / 'logs'}")
            await asyncio.sleep(0.5)

    @staticmethod
    def _first_line(text: str) -> str:
        for line in text.splitlines():
            if "<title>" in line:
                return line.strip()
        return (text.strip().splitlines() or [""])[0][:120]

    def _fetch(self, url: str, prefix: list[str] | None = None) -> str:
        code = ("import urllib.request,sys\ntry:\n sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5)"
                ".read().decode())\nexcept Exception as e:\n sys.stdout.write(f'FAILED: {e}')")
        for _ in range(20):
            try:
                p = subprocess.run((prefix or []) + [sys.executable, "-c", code, url], capture_output=True,
                                   text=True, timeout=15)
            except subprocess.TimeoutExpired:
                continue
            if not p.stdout.startswith("FAILED"):
                return self._first_line(p.stdout)
            time.sleep(0.5)
        return "FAILED: no answer within 20 tries"

    def _fetch_in(self, node: Any, url: str) -> str:
        return self._fetch(url, node.nsenter())

    def _exec(self, node: Any, cid: str, cmd: list[str]) -> str:
        from kubelab.cri.api import api_pb2 as pb

        from .runtimes import cri_channel
        ch = cri_channel(self.state / node.name / "run" / "cri.sock")
        try:
            from kubelab.cri.api import api_pb2_grpc as pbg
            rt = pbg.RuntimeServiceStub(ch)
            for _ in range(20):
                r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=5), timeout=15)
                if r.exit_code == 0:
                    return self._first_line(r.stdout.decode(errors="replace"))
                time.sleep(0.5)
            return f"FAILED: exit {r.exit_code}: {(r.stdout + r.stderr).decode(errors='replace').strip()[:200]}"
        finally:
            ch.close()

    # -- down -------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop and remove everything; returns what could not be cleaned (also printed by the CLI)."""
        problems: list[str] = []
        pids = self._pids()
        n = int(self._info().get("nodes") or 0)
        # first what would recreate pods, then the pods themselves through each node's runtime
        for name in [k for k in pids if k.startswith("kubelet-") or k in ("controller-manager", "scheduler")]:
            stop(pids[name], 30)
        for node in self._nodes(n):
            problems += self._remove_sandboxes(node)
        for name in [k for k in pids if k not in ("apiserver", "etcd")]:
            stop(pids[name], 20)
        for name in ("apiserver", "etcd"):
            if pids.get(name):
                stop(pids[name])
        if n:
            from kubelab.cri.runtime import cgroups

            from .nodes import LabNetwork
            from .runtimes import mountpoints_under
            LabNetwork(self._nodes(n)).down()
            for node in self._nodes(n):
                if not cgroups.remove(f"/kubelab-lab-{node.name}"):
                    problems.append(f"cgroup /kubelab-lab-{node.name} still has processes")
            for mp in mountpoints_under(self.state):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        if self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
        if self.state == DEFAULT_STATE:
            try:
                DEFAULT_STATE.parent.rmdir()  # /var/lib/kubelab, made by `up`, if nothing else is there
            except OSError:
                pass
        return problems

    def _remove_sandboxes(self, node: Any) -> list[str]:
        sock = self.state / node.name / "run" / "cri.sock"
        if not sock.exists():
            return []
        from kubelab.cri.api import api_pb2 as pb
        from kubelab.cri.api import api_pb2_grpc as pbg

        from .runtimes import cri_channel
        ch = cri_channel(sock)
        try:
            rt = pbg.RuntimeServiceStub(ch)
            for sb in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
            return []
        except Exception as e:
            return [f"removing the pods of {node.name}: {e}"]
        finally:
            ch.close()
