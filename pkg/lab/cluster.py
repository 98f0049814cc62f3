"""A networked lab cluster on one host: a control plane and N nodes, each a network namespace with
its own kubelab-cri and kubelab-proxy, pod CIDRs from the node IPAM controller and host-gw routes
from kubelab.kubelet.podnet, cluster DNS from kubelab-dns at the kube-dns ClusterIP.

    host: etcd, kubelab-apiserver on 192.168.56.1, kubelab-controller-manager (node IPAM),
          podnet for the host (routes to every node's pod CIDR)
    node<i> (netns kubelab-node<i>, 192.168.56.1<i>): kubelab-cri, kubelab-proxy, podnet;
          node1 also kubelab-dns (behind the kube-dns Service 10.96.0.10)

Until the kubelet exists, the caller plays it: it starts pods through CRI (`run_pod`), and writes
EndpointSlices (there is no EndpointSlice controller yet). podnet, the kubelet's part, runs in this
process on an event loop thread. Used by the networking e2e tests and the throughput benchmark;
`down()` removes everything and returns what it found left behind.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from kubelab.cni import launcher as cni_launcher
from kubelab.lab.controlplane import APIServerProc, Etcd, Pki, free_port, spawn, stop
from kubelab.lab.nodes import HOST_IP, LabNetwork, Node
from kubelab.lab.runtimes import CNI_BIN_DIR, KubelabCRIProc

BIN = Path(sys.executable).parent
DNS_IP = "10.96.0.10"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ClusterError(Exception):
    pass


class LoopThread:
    """An asyncio loop in a thread: the in-process parts (podnet, the API client) live here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="lab-loop")
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class Pod:
    name: str
    node: int            # index into LabCluster.nodes
    sandbox_id: str
    container_id: str
    ip: str
    netns: str           # the sandbox's network namespace (a path)


class LabCluster:
    def __init__(self, images: dict[str, Path], nodes: int = 2, *, dns_upstreams: tuple[str, ...] = (),
                 proxy_args: tuple[str, ...] = (), sync_period: str = "2s", kubelets: bool = False,
                 runtime: str = "kubelab-cri", kubelet_args: tuple[str, ...] = ()) -> None:
        if runtime not in ("kubelab-cri", "containerd"):
            raise ValueError(f"unknown runtime {runtime!r}")
        self.images = images
        self.kubelets = kubelets
        self.kubelet_args = kubelet_args          # appended to every kubelet's flags (the last one wins)
        self.runtime = runtime
        self.nodes = [Node(f"node{i}", i) for i in range(1, nodes + 1)]
        self.net = LabNetwork(self.nodes)
        self.dns_upstreams = dns_upstreams
        self.proxy_args = proxy_args
        self.sync_period = sync_period
        self.tmp = Path(tempfile.mkdtemp(prefix="kubelab-cluster-"))
        self.kubeconfig = self.tmp / "admin.kubeconfig"
        self.procs: dict[str, subprocess.Popen] = {}
        self.cris: list[KubelabCRIProc] = []
        self.channels: list[Any] = []
        self.rt: list[Any] = []                 # RuntimeService stubs, one per node
        self.image_refs: list[dict[str, str]] = []
        self.pods: list[Pod] = []
        self.loop: LoopThread | None = None
        self.podnets: list[Any] = []
        self._podnet_tasks: list[asyncio.Task] = []
        self.client: Any = None
        self.factory: Any = None
        self.api: APIServerProc | None = None
        self.etcd: Etcd | None = None

    # -- bring-up -------------------------------------------------------------------------------

    def up(self) -> "LabCluster":
        left = self.net.leftovers()
        if left:
            raise ClusterError(f"a lab network exists already: {left}")
        try:
            self.net.up(routes=False)
            self.etcd = Etcd(self.tmp / "etcd", free_port(), free_port())
            self.etcd.start(self.tmp / "etcd.log")
            pki = Pki(self.tmp / "pki")
            pki.ensure((HOST_IP, "127.0.0.1"))
            self.api = APIServerProc(self.etcd.url, free_port(HOST_IP), pki, host=HOST_IP)
            self.api.start(self.tmp / "apiserver.log")
            pki.kubeconfig(f"https://{HOST_IP}:{self.api.port}", self.kubeconfig)
            self.procs["controller-manager"] = spawn(
                [str(BIN / "kubelab-controller-manager"), "--kubeconfig", str(self.kubeconfig),
                 "--allocate-node-cidrs", "--cluster-cidr", CLUSTER_CIDR, "--service-cluster-ip-range", SERVICE_CIDR,
                 "--root-ca-file", str(pki.dir / "ca.crt"),   # kube-root-ca.crt, for the pods' token volume
                 "--leader-elect=false", "--secure-port", "0"], self.tmp / "controller-manager.log")
            self.loop = LoopThread()
            self.loop.run(self._api_up())
            self.cni_bin = self.tmp / "cnibin"
            self.cni_bin.mkdir()
            cni_launcher.install(self.cni_bin)
            os.symlink(CNI_BIN_DIR / "portmap", self.cni_bin / "portmap")
            os.symlink(CNI_BIN_DIR / "loopback", self.cni_bin / "loopback")     # containerd sets up lo with it
            if self.kubelets:
                self.procs["scheduler"] = spawn(
                    [str(BIN / "kubelab-scheduler"), "--kubeconfig", str(self.kubeconfig), "--leader-elect=false",
                     "--secure-port", "0"], self.tmp / "scheduler.log")
            for n in self.nodes:
                self._node_up(n)
            self._wait_proxies()
            if self.kubelets:
                self._wait_nodes_ready()
        except BaseException:
            problems = self.down()
            if problems:
                print(f"lab cluster teardown after a failed start: {problems}", file=sys.stderr)
            raise
        return self

    async def _api_up(self) -> None:
        from kubelab.client.informer import SharedInformerFactory
        from kubelab.client.rest import Client
        from kubelab.kubelet.podnet import PodNetwork
        self.client = c = Client.from_kubeconfig(str(self.kubeconfig), component="kubelab-lab")
        for n in self.nodes:       # what the kubelet will register
            await c.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name}})
            await c.patch("v1", "nodes", None, n.name, {"status": {"addresses": [
                {"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]}},
                subresource="status")
        self.factory = SharedInformerFactory(c)
        for n in self.nodes:
            self.podnets.append(PodNetwork(self.factory, n.name, cni_conf_dir=self.tmp / n.name / "net.d",
                                           ipam_data_dir=str(self.tmp / n.name / "ipam"), netns=str(n.netns_path),
                                           resync_period=2))
        self.podnets.append(PodNetwork(self.factory, None, resync_period=2))     # the host
        self.factory.informer("v1", "nodes")
        self.factory.start()
        self._podnet_tasks = [asyncio.create_task(p.run()) for p in self.podnets]
        deadline = time.monotonic() + 30
        while not all(p.pod_cidrs for p in self.podnets[:-1]) or len(self.podnets[-1].routes) < len(self.nodes):
            if time.monotonic() > deadline:
                raise ClusterError("nodes got no pod CIDRs or routes within 30s: "
                                   + (self.tmp / "controller-manager.log").read_text()[-2000:])
            await asyncio.sleep(0.1)
        await c.create("v1", "services", {"apiVersion": "v1", "kind": "Service",
                                          "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                                          "spec": {"clusterIP": DNS_IP, "ports": [
                                              {"name": "dns", "port": 53, "protocol": "UDP"},
                                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}, "kube-system")
        await c.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(
            "kube-system", "kube-dns", [(self.nodes[0].ip, self.nodes[0].name, None)],
            [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
            "kube-system")

    def _node_up(self, n: Node) -> None:
        import grpc

        from kubelab.cri.api import api_pb2_grpc as pbg
        from kubelab.cri.image.archive import import_archive
        from kubelab.cri.image.store import ImageStore
        d = self.tmp / n.name
        if self.runtime == "containerd":
            from kubelab.lab.runtimes import ContainerdProc
            cri = ContainerdProc(d / "ctrd", cni_conf_dir=d / "net.d", cni_bin_dir=self.cni_bin, prefix=n.nsenter())
            self.cris.append(cri)
            cri.start()
            refs = {short: cri.import_image(path)[0] for short, path in self.images.items()}
        else:
            cri = KubelabCRIProc(d, {"conf_dir": d / "net.d", "bin_dir": self.cni_bin}, prefix=n.nsenter(),
                                 cgroup_parent=self.cgroup_parent(n))
            store = ImageStore(cri.root)
            refs = {short: asyncio.run(import_archive(store, path))[0].repo_tags[0]
                    for short, path in self.images.items()}
            self.cris.append(cri)
            cri.start()
        self.image_refs.append(refs)
        ch = grpc.insecure_channel(f"unix://{cri.socket}")
        self.channels.append(ch)
        self.rt.append(pbg.RuntimeServiceStub(ch))
        if self.kubelets:
            self._kubelet(n)
        self.procs[f"proxy-{n.name}"] = spawn(
            n.nsenter() + [str(BIN / "kubelab-proxy"), "--kubeconfig", str(self.kubeconfig), "--hostname-override",
                           n.name, "--cluster-cidr", CLUSTER_CIDR, "--iptables-sync-period", self.sync_period,
                           *self.proxy_args], d / "proxy.log")
        if n.index == 1:
            ups = [a for u in self.dns_upstreams for a in ("--upstream", u)]
            # on every address of node1 (the Service DNATs to its node IP; replies to local pods
            # leave from that address, not cni0's, because the server replies from the address asked)
            self.procs["dns"] = spawn(
                n.nsenter() + [str(BIN / "kubelab-dns"), "--kubeconfig", str(self.kubeconfig), *ups,
                               "--pods", "insecure"], d / "dns.log")

    def _kubelet(self, n: Node) -> None:
        d = self.tmp / n.name
        self.procs[f"kubelet-{n.name}"] = spawn(
            n.nsenter() + [str(BIN / "kubelab-kubelet"), "--kubeconfig", str(self.kubeconfig), "--hostname-override",
                           n.name, "--node-ip", n.ip, "--container-runtime-endpoint",
                           f"unix://{self.cris[n.index - 1].socket}", "--root-dir", str(d / "kubelet"),
                           "--pod-logs-dir", str(d / "pods"), "--cluster-dns", DNS_IP,
                           "--pod-manifest-path", str(d / "manifests"), "--file-check-frequency", "2s",
                           "--cgroup-root", self.cgroup_parent(n), "--port", "10250", "--client-ca-file", str(self.tmp / "pki" / "ca.crt"),
                           "--node-status-update-frequency", "2s", *self._sandbox_image_args(n), *self.kubelet_args],
            d / "kubelet.log")

    def _sandbox_image_args(self, n: Node) -> list[str]:
        """containerd's pause image, which the kubelet's image GC must keep (kubelab-cri has none)."""
        image = getattr(self.cris[n.index - 1], "sandbox_image", None)
        return ["--pod-infra-container-image", image] if image else []

    def _remove_all_sandboxes(self) -> list[str]:
        from kubelab.cri.api import api_pb2 as pb
        problems = []
        for i, rt in enumerate(self.rt):
            # a container the stopped kubelet was starting can hold its sandbox for a moment
            # (containerd: "container is in starting state, can't be removed"): try again briefly
            for attempt in range(10):
                try:
                    for sb in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
                        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                    break
                except Exception as e:
                    if attempt == 9:
                        problems.append(f"removing the sandboxes of {self.nodes[i].name}: {e}")
                    else:
                        time.sleep(0.5)
        return problems

    def restart_kubelet(self, node: int, kill: bool = True) -> None:
        """SIGKILL (or stop) a node's kubelet and start it again (0-based node)."""
        n = self.nodes[node]
        p = self.procs[f"kubelet-{n.name}"]
        if kill:
            p.kill()
            p.wait()
        else:
            p.terminate()
            p.wait(30)
        self._kubelet(n)

    def _wait_nodes_ready(self, timeout: float = 60) -> None:
        async def ready(c: Any) -> bool:
            nodes = (await c.list("v1", "nodes"))["items"]
            ok = {x["metadata"]["name"] for x in nodes for cond in (x.get("status") or {}).get("conditions") or []
                  if cond.get("type") == "Ready" and cond.get("status") == "True"}
            return all(n.name in ok for n in self.nodes)
        deadline = time.monotonic() + timeout
        while not self.call(ready):
            if time.monotonic() > deadline:
                raise ClusterError("nodes not Ready within 60s: " + (self.tmp / self.nodes[0].name /
                                                                      "kubelet.log").read_text()[-2000:])
            time.sleep(0.5)

    def cgroup_parent(self, n: Node) -> str:
        return f"/kubelab-lab-{n.name}"

    def _wait_proxies(self) -> None:
        deadline = time.monotonic() + 30
        for n in self.nodes:
            log = self.tmp / n.name / "proxy.log"
            while "sync complete full=True ok=True" not in log.read_text():
                p = self.procs[f"proxy-{n.name}"]
                if p.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(f"kubelab-proxy on {n.name} did not sync: {log.read_text()[-3000:]}")
                time.sleep(0.1)

    # -- use ----------------------------------------------------------------------------------------

    def call(self, fn: Callable[[Any], Awaitable[Any]], timeout: float = 60) -> Any:
        """Run fn(client) on the lab's loop (kubelab.client.rest.Client, admin credentials)."""
        assert self.loop is not None

        async def go() -> Any:
            return await fn(self.client)
        return self.loop.run(go(), timeout)

    def pod_cidr(self, i: int) -> str:
        return self.podnets[i].pod_cidrs[0]

    def run_pod(self, node: int, name: str, command: list[str], *, image: str = "busybox",
                namespace: str = "default") -> Pod:
        """A one-container pod on node (0-based) through CRI, with the cluster's DNS config."""
        from kubelab.cri.api import api_pb2 as pb
        n = self.nodes[node]
        uid = str(uuid.uuid4())
        sc = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=0), hostname=name,
            log_directory=str(self.tmp / n.name / "pods" / f"{namespace}_{name}_{uid}"),
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                    "io.kubernetes.pod.uid": uid},
            dns_config=pb.DNSConfig(servers=[DNS_IP], options=["ndots:5"], searches=[
                f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]))
        sc.linux.cgroup_parent = f"{self.cgroup_parent(n)}/pod{uid}"
        rt = self.rt[node]
        sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sc), timeout=60).pod_sandbox_id
        pod = Pod(name, node, sid, "", "", "")
        self.pods.append(pod)
        cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=0),
                                image=pb.ImageSpec(image=self.image_refs[node][image]), command=command,
                                log_path=f"{name}/0.log", labels={"io.kubernetes.container.name": name})
        pod.container_id = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cc,
                                                                        sandbox_config=sc), timeout=60).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=pod.container_id), timeout=60)
        st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True), timeout=30)
        pod.ip = st.status.network.ip
        pod.netns = _netns_of(st)
        return pod

    def exec(self, pod: Pod, cmd: str, timeout: int = 120) -> tuple[int, str]:
        """`sh -c cmd` in the pod's container: (exit code, stdout + stderr)."""
        from kubelab.cri.api import api_pb2 as pb
        r = self.rt[pod.node].ExecSync(pb.ExecSyncRequest(container_id=pod.container_id, cmd=["sh", "-c", cmd],
                                                          timeout=timeout), timeout=timeout + 10)
        return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")

    def remove_pods(self) -> list[str]:
        from kubelab.cri.api import api_pb2 as pb
        problems = []
        for p in self.pods:
            try:
                self.rt[p.node].StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.sandbox_id), timeout=60)
                self.rt[p.node].RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.sandbox_id), timeout=60)
            except Exception as e:
                problems.append(f"removing pod {p.name}: {e}")
        self.pods = []
        return problems

    # -- teardown -------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop and remove everything; returns what was found wrong or left behind."""
        from kubelab.cri.runtime import cgroups
        problems = self.remove_pods() if self.rt else []
        if self.kubelets:
            # what would recreate pods goes first, then every sandbox the kubelets made
            for name in [k for k in self.procs if k.startswith("kubelet-") or k in ("controller-manager", "scheduler")]:
                p = self.procs[name]
                if p.poll() is None:
                    stop(p, 30)
            problems += self._remove_all_sandboxes()
        for ch in self.channels:
            ch.close()
        for name, p in self.procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    problems.append(f"{name} did not stop on SIGTERM")
        for cri in self.cris:
            try:
                cri.stop()
            except Exception as e:        # containerd's peer reports what it could not clean
                problems.append(f"stopping {type(cri).__name__}: {e}")
        if self.loop is not None:
            async def stop_podnets() -> None:
                for t in self._podnet_tasks:
                    t.cancel()
                await asyncio.gather(*self._podnet_tasks, return_exceptions=True)
                if self.podnets:
                    await self.podnets[-1].remove_routes()
                if self.factory is not None:
                    await self.factory.shutdown()
                if self.client is not None:
                    await self.client.close()
            try:
                self.loop.run(stop_podnets())
            except Exception as e:
                problems.append(f"podnet shutdown: {e}")
            self.loop.close()
            self.loop = None
        if self.api and self.api.proc:
            stop(self.api.proc)
        if self.etcd and self.etcd.proc:
            stop(self.etcd.proc)
        self.net.down()
        for n in self.nodes:
            cgroups.remove(self.cgroup_parent(n))
            ipam = self.tmp / n.name / "ipam" / "kubelab"
            held = [f.name for f in ipam.iterdir() if f.name[0].isdigit()] if ipam.exists() else []
            if held:
                problems.append(f"IP reservations left on {n.name}: {held}")
        for log in sorted(self.tmp.glob("**/*.log")):
            if log.name.endswith(("proxy.log", "dns.log", "controller-manager.log", "kubelet.log")) and \
                    "Traceback" in log.read_text():
                problems.append(f"{log.relative_to(self.tmp)} has a traceback: {log.read_text()[-2000:]}")
        # the kubelets stopped before their pods went: their volumes' tmpfs mounts stay (as upstream's
        # kubelet leaves them to its next start); the lab removes them with the rest
        from kubelab.lab.runtimes import mountpoints_under
        for mp in mountpoints_under(self.tmp):
            subprocess.run(["umount", mp], capture_output=True)
        left_mounts = mountpoints_under(self.tmp)
        if left_mounts:
            problems.append(f"mounts left under {self.tmp}: {left_mounts[:5]}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = self.net.leftovers()
        if left:
            problems.append(f"lab network left behind: {left}")
        import psutil
        procs = [p.pid for p in psutil.process_iter(["cmdline"]) if str(self.tmp) in " ".join(p.info["cmdline"] or [])]
        if procs:
            problems.append(f"processes left: {procs}")
        return problems


def _netns_of(resp: Any) -> str:
    """The sandbox's network namespace path from a verbose PodSandboxStatus response (kubelab-cri's info)."""
    import json
    return json.loads(resp.info.get("info", "{}") or "{}").get("netNamespace", "")


def endpoint_slice(namespace: str, service: str, endpoints: list[tuple[str, str, str | None]],
                   ports: list[dict], name: str | None = None) -> dict:
    """An EndpointSlice for service: endpoints are (ip, node name, hostname or None), all ready."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service}-1", "namespace": namespace,
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": node,
                           **({"hostname": host} if host else {})} for ip, node, host in endpoints]}
