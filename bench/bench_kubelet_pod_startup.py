"""End-to-end pod startup: a pod created through the apiserver until its watch shows it Running,
the image already present, on a one-node lab (kubelab-scheduler binds it, kubelab-kubelet runs it),
for 30 and for 100 pods created at 10 pods/s — with kubelab-cri and, in the same run, with
containerd 1.6 under the same kubelet.

Targets (issue 6): p99 <= 1 s at 30 pods (the upstream SLO is 5 s) and <= 1.0x the containerd
figure; the kubelet's RSS <= 100 MB with 100 pods running.
Environment: BENCH_POD_COUNTS (default "30,100"), BENCH_RATE (pods/s, default 10); BENCH_QUIET_WAIT,
BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S as in bench/harness.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

import harness
from harness import figure, log, print_figure, summarize
from kubelab.lab.cluster import LabCluster

NAME = "kubelet_pod_startup"
COUNTS = [int(x) for x in os.environ.get("BENCH_POD_COUNTS", "30,100").split(",") if x.strip()]
RATE = float(os.environ.get("BENCH_RATE", "10"))
P99_TARGET = 1.0
RSS_TARGET = 100 * 2**20
IMAGE_CACHE = Path(os.environ.get("KUBELAB_IMAGE_CACHE", "/var/cache/kubelab/images"))


class BenchError(Exception):
    pass


def images() -> dict[str, Path]:
    from kubelab.cri.image.build import build
    return {n: asyncio.run(build(n, IMAGE_CACHE / f"{n}.oci.tar", IMAGE_CACHE)) for n in ("busybox", "pause")}


async def run_pods(lab: LabCluster, n: int, ns: str) -> list[float]:
    from kubelab.client.rest import Client
    image = lab.image_refs[0]["busybox"]
    async with Client.from_kubeconfig(str(lab.kubeconfig), component="bench") as c:
        await harness.ensure_namespace(c, ns)
        rv = (await c.list("v1", "pods", ns, limit=1))["metadata"]["resourceVersion"]
        created: dict[str, float] = {}
        running: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async with c.watch("v1", "pods", ns, resource_version=rv, timeout_seconds=600) as w:
                async for etype, obj in w:
                    name = obj["metadata"].get("name", "")
                    if etype in ("ADDED", "MODIFIED") and (obj.get("status") or {}).get("phase") == "Running" \
                            and name not in running:
                        running[name] = time.perf_counter()
                        if len(running) >= n:
                            done.set()
                            return
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        t0 = time.perf_counter()
        for i in range(n):
            name = f"p-{i:04d}"
            delay = t0 + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            created[name] = time.perf_counter()
            await c.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                          "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                                              {"name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                                               "command": ["sleep", "100000"]}]}}, ns)
        try:
            await asyncio.wait_for(done.wait(), 120 + n)
        except asyncio.TimeoutError:
            raise BenchError(f"only {len(running)} of {n} pods Running") from None
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return [running[k] - created[k] for k in created if k in running]


async def cleanup(lab: LabCluster, ns: str) -> None:
    from kubelab.client.rest import Client
    async with Client.from_kubeconfig(str(lab.kubeconfig), component="bench") as c:
        await c.delete("v1", "namespaces", None, ns)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not (await c.list("v1", "pods", ns))["items"]:
                return
            await asyncio.sleep(1)
        raise BenchError(f"the pods of {ns} were not deleted within 180 s")


def measure_runtime(runtime: str, imgs: dict[str, Path]) -> dict:
    lab = LabCluster(imgs, nodes=1, kubelets=True, runtime=runtime)
    lab.up()
    out: dict = {}
    try:
        kubelet = psutil.Process(lab.procs["kubelet-node1"].pid)
        for n in COUNTS:
            ns = f"bench-{n}"
            lat = asyncio.run(run_pods(lab, n, ns))
            out[n] = summarize(lat)
            if n == max(COUNTS):
                out["rss"] = kubelet.memory_info().rss
            log(f"{runtime}: {n} pods at {RATE:g}/s: p50 {out[n]['p50'] * 1000:.0f} ms, "
                f"p99 {out[n]['p99'] * 1000:.0f} ms; kubelet RSS {kubelet.memory_info().rss / 2**20:.0f} MiB")
            asyncio.run(cleanup(lab, ns))
    finally:
        problems = lab.down()
        if problems:
            log(f"{runtime} lab teardown: {problems}")
    return out


def run_once(quiet_wait: float | None) -> dict:
    imgs = images()
    quiet = harness.wait_quiet(quiet_wait)
    t0 = time.perf_counter()
    ours = measure_runtime("kubelab-cri", imgs)
    peer = measure_runtime("containerd", imgs)
    figures = []
    for n in COUNTS:
        if n == 30:
            f = figure(f"pod startup p99, {n} pods at {RATE:g}/s (create to Running)", ours[n]["p99"], "s",
                       target=f"<= {P99_TARGET:g} s", target_value=P99_TARGET, higher_is_better=False,
                       group="Kubelet", note="kubelab-cri")
            print_figure(f)
            figures.append(f)
        f = figure(f"pod startup p99, {n} pods at {RATE:g}/s, vs containerd", ours[n]["p99"], "s",
                   peer_name="the same kubelet on containerd 1.6", peer_value=peer[n]["p99"], target="<= 1.0x",
                   target_ratio=None, higher_is_better=False, group="Kubelet")
        f["pass"] = f["ratio"] is not None and f["ratio"] <= 1.0
        print_figure(f)
        figures.append(f)
        f = figure(f"pod startup p50, {n} pods at {RATE:g}/s, vs containerd", ours[n]["p50"], "s",
                   peer_name="the same kubelet on containerd 1.6", peer_value=peer[n]["p50"], higher_is_better=False,
                   group="Kubelet")
        print_figure(f)
        figures.append(f)
    f = figure(f"kubelet RSS with {max(COUNTS)} pods", ours["rss"] / 2**20, "MiB", target="<= 100 MB",
               target_value=RSS_TARGET / 2**20, higher_is_better=False, group="Kubelet")
    print_figure(f)
    figures.append(f)
    return {"title": "End-to-end pod startup through the kubelet",
            "description": ("Pods created through the apiserver at a fixed rate on a one-node lab (scheduler, kubelet, "
                            "runtime with the image present); latency from the create call to the watch event showing "
                            "phase Running. The same kubelet runs on kubelab-cri and on containerd 1.6 in the same run."),
            "figures": figures, "benchmark": NAME, "other_cores": 0.0, "quiet_wait": quiet, "wall_total_s": round(time.perf_counter() - t0, 1),
            "latency": {f"{r} @{n}": v[n] for r, v in (("kubelab-cri", ours), ("containerd", peer)) for n in COUNTS},
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": harness.machine_info()}


def main() -> int:
    return harness.main_loop(NAME, lambda quiet: run_once(quiet_wait=quiet),
                             (BenchError, RuntimeError, OSError, subprocess.SubprocessError),
                             needs_root="network namespaces and containers")


if __name__ == "__main__":
    sys.exit(main())
