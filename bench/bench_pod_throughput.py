"""Pod-to-pod TCP throughput through a ClusterIP beside the direct pod IP, with iperf3.

A two-node lab cluster (kubelab.lab.cluster: each node a network namespace with kubelab-cri,
kubelab-proxy in iptables mode and its pods on its own cni0, host-gw routes between nodes) runs
two busybox pods through CRI, the server on node1 and the client on node2. iperf3 (Debian's; the
busybox image has none) runs inside the pods' network namespaces, entered with nsenter, so its
traffic takes the pods' own path: the client pod's veth, node2's cni0 and iptables (DNAT to the
endpoint for the ClusterIP), the lab bridge, node1's cni0, the server pod's veth. A Service with
one endpoint (the server pod) gives the ClusterIP. Each run is BENCH_IPERF_SECONDS (default 5) of
one TCP stream; direct and ClusterIP runs alternate for BENCH_IPERF_ROUNDS rounds (default 3), so
a change in the machine's load falls on both alike; the figure is each path's median, the ratio
ClusterIP / direct.

Target: ClusterIP throughput >= 0.9x direct pod IP.
Environment: BENCH_IPERF_SECONDS (5), BENCH_IPERF_ROUNDS (3); BENCH_QUIET_WAIT, BENCH_MAX_OTHER_CORES,
BENCH_ATTEMPTS, BENCH_BUDGET_S as in bench/harness.py. Everything started here is stopped and
removed, also on errors, Ctrl-C and SIGTERM.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

import harness
from harness import figure, log, print_figure
from kubelab.lab.cluster import LabCluster, endpoint_slice

NAME = "pod_throughput"
SECONDS = float(os.environ.get("BENCH_IPERF_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_IPERF_ROUNDS", "3"))
PORT = 5201
TARGET_RATIO = 0.9
IMAGE_CACHE = Path(os.environ.get("KUBELAB_IMAGE_CACHE", "/var/cache/kubelab/images"))


class BenchError(Exception):
    pass


def _others_cpu(exclude: set[int]) -> float:
    """CPU seconds so far of every user-space process not ours (kernel threads left out: they
    carry our own traffic's softirq work)."""
    total = 0.0
    for p in psutil.process_iter(["pid", "ppid", "cpu_times"]):
        if p.info["pid"] in exclude or p.info["pid"] == 2 or p.info["ppid"] == 2 or p.info["cpu_times"] is None:
            continue
        t = p.info["cpu_times"]
        total += t.user + t.system
    return total


def _ours() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}


def iperf(netns: str, host: str) -> float:
    """One iperf3 run from the client pod's namespace: received bits/s."""
    r = subprocess.run(["nsenter", f"--net={netns}", "iperf3", "-c", host, "-p", str(PORT), "-t", str(SECONDS),
                        "--connect-timeout", "3000", "-J"], capture_output=True, text=True, timeout=SECONDS + 30)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise BenchError(f"iperf3 to {host}: {r.stderr.strip() or r.stdout[-300:]}") from None
    if "error" in out:
        raise BenchError(f"iperf3 to {host}: {out['error']}")
    return float(out["end"]["sum_received"]["bits_per_second"])


def measure(lab: LabCluster) -> dict:
    server = lab.run_pod(0, "iperf-server", ["sleep", "3600"])
    client = lab.run_pod(1, "iperf-client", ["sleep", "3600"])
    if not server.netns or not client.netns:
        raise BenchError("kubelab-cri did not report the pods' network namespaces")
    srv = subprocess.Popen(["nsenter", f"--net={server.netns}", "iperf3", "-s", "-p", str(PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        svc = lab.call(lambda c: c.create("v1", "services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "iperf", "namespace": "default"},
            "spec": {"ports": [{"name": "iperf", "port": PORT, "protocol": "TCP"}]}}, "default"))
        lab.call(lambda c: c.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(
            "default", "iperf", [(server.ip, "node1", None)], [{"name": "iperf", "port": PORT, "protocol": "TCP"}]),
            "default"))
        cluster_ip = svc["spec"]["clusterIP"]
        deadline = time.monotonic() + 20
        while True:     # the Service's rules are in place on node2 and the server listens
            try:
                r = subprocess.run(["nsenter", f"--net={client.netns}", "iperf3", "-c", cluster_ip, "-p", str(PORT),
                                    "-t", "1", "--connect-timeout", "1000", "-J"], capture_output=True, text=True,
                                   timeout=15)
                if r.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                r = subprocess.CompletedProcess([], 1, "timed out", "")
            if time.monotonic() > deadline:
                raise BenchError(f"the ClusterIP {cluster_ip}:{PORT} did not answer within 20s: {r.stdout[-300:]}")
            time.sleep(0.3)
        log(f"pods: server {server.ip} on node1, client {client.ip} on node2, ClusterIP {cluster_ip}")
        direct, via = [], []
        ours = _ours()
        cpu0, t0 = _others_cpu(ours), time.perf_counter()
        for k in range(ROUNDS):
            order = [("direct", server.ip), ("clusterip", cluster_ip)]
            if k % 2:
                order.reverse()
            for kind, host in order:
                bps = iperf(client.netns, host)
                (direct if kind == "direct" else via).append(bps)
                log(f"round {k + 1}: {kind:9s} {bps / 1e9:.2f} Gbit/s")
        other = (_others_cpu(ours) - cpu0) / (time.perf_counter() - t0)
    finally:
        srv.terminate()
        srv.wait(10)
    d, v = statistics.median(direct), statistics.median(via)
    f = figure("pod-to-pod TCP throughput via ClusterIP (iperf3, 1 stream, across nodes)", v / 1e9, "Gbit/s",
               peer_name="direct pod IP", peer_value=d / 1e9, target=f">= {TARGET_RATIO}x direct",
               target_ratio=TARGET_RATIO, group="Pod networking",
               note=f"median of {ROUNDS} alternating {SECONDS:g} s runs each", other_cores=other)
    print_figure(f)
    return {"title": "Pod-to-pod TCP throughput through a ClusterIP (iperf3)",
            "description": ("Two lab nodes (network namespaces on the lab bridge, host-gw routes), each with kubelab-cri "
                            "and kubelab-proxy in iptables mode; a busybox pod on each, started through CRI with "
                            "kubelab-bridge. iperf3 runs inside the pods' network namespaces (entered with nsenter: "
                            "the image has no iperf3), client on node2, server on node1, one TCP stream, "
                            f"{SECONDS:g} s per run; runs to the pod IP and to a one-endpoint ClusterIP alternate "
                            f"for {ROUNDS} rounds and each figure is its path's median."),
            "figures": [f], "other_cores": round(other, 2),
            "runs_gbps": {"direct": [round(x / 1e9, 3) for x in direct],
                          "clusterip": [round(x / 1e9, 3) for x in via]}}


def run_once(quiet_wait: float | None) -> dict:
    from kubelab.cri.image.build import build
    quiet = harness.wait_quiet(quiet_wait)
    t0 = time.perf_counter()
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    lab = LabCluster({"busybox": Path("/nonexistent")})
    tar = asyncio.run(build("busybox", lab.tmp / "busybox.oci.tar", IMAGE_CACHE))
    lab.images = {"busybox": tar}
    try:
        lab.up()
        result = measure(lab)
    finally:
        problems = lab.down()
        if problems:
            raise BenchError(f"the lab cluster left things behind: {problems}")
    result.update({"wall_total_s": round(time.perf_counter() - t0, 1), "quiet_wait": quiet, "benchmark": NAME,
                   "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "machine": harness.machine_info()})
    return result


def main() -> int:
    return harness.main_loop(NAME, lambda quiet: run_once(quiet_wait=quiet),
                             (BenchError, RuntimeError, OSError, subprocess.SubprocessError), needs_root="network namespaces, iptables, containers")


if __name__ == "__main__":
    sys.exit(main())
