"""Watch delivery latency with 100 watchers.

100 concurrent watch streams on the pods of one namespace (each its own HTTPS connection through
the project's REST client). A writer merge-patches the namespace's pods at a fixed rate
(BENCH_WATCH_QPS updates/s, default 50, round robin over BENCH_WATCH_OBJECTS pods), stamping
each update with the monotonic time it was sent in an annotation. For every watcher and every
event: latency = time the watcher decoded the event - the stamped send time, so a sample covers
the whole path: the PATCH through the apiserver, the etcd commit, the watch cache, the fan-out
and the client. Watchers and writer share one process and one clock (CLOCK_MONOTONIC).
Target: p99 <= 100 ms.
Environment: BENCH_WATCHERS (100), BENCH_WATCH_QPS (50), BENCH_WATCH_SECONDS (30), BENCH_WATCH_OBJECTS (20).
"""
from __future__ import annotations

import asyncio
import os
import time

import harness
from harness import ControlPlane, figure, log, print_figure, summarize

WATCHERS = int(os.environ.get("BENCH_WATCHERS", "100"))
QPS = float(os.environ.get("BENCH_WATCH_QPS", "50"))
SECONDS = float(os.environ.get("BENCH_WATCH_SECONDS", "30"))
OBJECTS = int(os.environ.get("BENCH_WATCH_OBJECTS", "20"))
TARGET = 0.1
NS = "watchlat"
STAMP = "bench.kubelab.io/sent"


class Watcher:
    def __init__(self, client, rv: str) -> None:
        self.client = client
        self.rv = rv
        self.latencies: list[float] = []
        self.seen: set[str] = set()
        self.error = ""

    async def run(self) -> None:
        try:
            async with self.client.watch("v1", "pods", NS, resource_version=self.rv, allow_bookmarks=True) as w:
                async for etype, obj in w:
                    now = time.monotonic()
                    if etype != "MODIFIED":
                        continue
                    sent = ((obj.get("metadata") or {}).get("annotations") or {}).get(STAMP)
                    if not sent:
                        continue
                    seq, _, t = sent.partition("@")
                    if seq in self.seen:
                        continue
                    self.seen.add(seq)
                    self.latencies.append(now - float(t))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"[:300]


async def writer(client, names: list[str], qps: float, seconds: float) -> tuple[int, list[float], int, str]:
    """Paced merge patches; returns (sent, write latencies, errors, first error)."""
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    errors = [0, ""]
    inflight: set[asyncio.Task] = set()

    async def one(i: int) -> None:
        t0 = time.monotonic()
        stamp = f"{i}@{t0:.6f}"
        try:
            await client.patch("v1", "pods", NS, names[i % len(names)],
                               {"metadata": {"annotations": {STAMP: stamp}}})
        except Exception as e:
            errors[0] += 1
            errors[1] = errors[1] or f"{type(e).__name__}: {e}"[:300]
            return
        lat.append(time.monotonic() - t0)

    start = loop.time()
    n = int(qps * seconds)
    for i in range(n):
        task = asyncio.create_task(one(i))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        await asyncio.sleep(max(0.0, start + (i + 1) / qps - loop.time()))
    if inflight:
        await asyncio.wait(list(inflight), timeout=60)
    return n - errors[0], lat, errors[0], errors[1]


async def main(cp: ControlPlane) -> dict:
    client = cp.client()
    meter = harness.cpu_meter(cp)
    tasks: list[asyncio.Task] = []
    try:
        await harness.ensure_namespace(client, NS)
        names = [f"target-{i:03d}" for i in range(OBJECTS)]
        for n in names:
            await client.create("v1", "pods", harness.pod(n, NS), NS)
        rv = (await client.list("v1", "pods", NS))["metadata"]["resourceVersion"]
        watchers = [Watcher(client, rv) for _ in range(WATCHERS)]
        tasks = [asyncio.create_task(w.run()) for w in watchers]
        # a probe update proves that every stream is delivering before the measured writes start
        probe = {"metadata": {"annotations": {STAMP: f"-1@{time.monotonic():.6f}"}}}
        await client.patch("v1", "pods", NS, names[0], probe)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all("-1" in w.seen for w in watchers):
            await asyncio.sleep(0.05)
        live = sum("-1" in w.seen for w in watchers)
        log(f"{live}/{WATCHERS} watchers live; writing {QPS:.0f} updates/s for {SECONDS:.0f}s")
        for w in watchers:
            w.latencies.clear()
            w.seen.discard("-1")
        meter.start()
        t_measure = time.monotonic()
        sent, wlat, werr, wfirst = await writer(client, names, QPS, SECONDS)
        # let the last events arrive
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(w.seen) < sent for w in watchers):
            await asyncio.sleep(0.05)
        cpu = meter.stop()
        measured = time.monotonic() - t_measure
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    samples = [x for w in watchers for x in w.latencies]
    s = summarize(samples)
    expected = sent * WATCHERS
    missing = expected - len(samples)
    errors = [w.error for w in watchers if w.error]
    per_watcher_p99 = sorted(summarize(w.latencies).get("p99", float("nan")) for w in watchers if w.latencies)
    log(f"samples {len(samples)}/{expected}, p50 {s.get('p50', 0)*1000:.1f} ms p99 {s.get('p99', 0)*1000:.1f} ms, "
        f"cpu {cpu}")
    g = f"{WATCHERS} watchers, {QPS:.0f} updates/s"
    note = (f"{len(samples)} samples ({sent} updates x {WATCHERS} watchers"
            + (f", {missing} not delivered" if missing else ", all delivered") + ")"
            + (f"; watcher errors: {len(errors)} ({errors[0]})" if errors else ""))
    other = cpu.get("other", 0.0) / measured if measured > 0 else None
    figures = [
        figure(f"watch delivery p99, {WATCHERS} watchers", s.get("p99", float("nan")), "s", target="<= 100 ms",
               target_value=TARGET, higher_is_better=False, group=g, note=note, other_cores=other),
        figure(f"watch delivery p50, {WATCHERS} watchers", s.get("p50", float("nan")), "s", group=g,
               other_cores=other),
        figure("update (PATCH) p99 while fanning out", summarize(wlat).get("p99", float("nan")), "s",
               target="<= 1 s", target_value=1.0, higher_is_better=False, group=g,
               note=f"{len(wlat)} updates, {werr} errors" + (f" ({wfirst})" if wfirst else ""), other_cores=other),
    ]
    for f in figures:
        print_figure(f)
    return {
        "title": f"Watch delivery latency, {WATCHERS} watchers",
        "description": (f"{WATCHERS} watch streams on the pods of one namespace; a writer merge-patches "
                        f"{OBJECTS} pods round robin at {QPS:.0f} updates/s for {SECONDS:.0f} s, stamping each "
                        f"with its monotonic send time; latency = receive time - send time, per watcher per "
                        f"event (so it includes the PATCH itself)."),
        "params": {"watchers": WATCHERS, "qps": QPS, "seconds": SECONDS, "objects": OBJECTS},
        "figures": figures,
        "latency": {"watch delivery": s, "update (PATCH)": summarize(wlat)},
        "delivery": {"expected": expected, "delivered": len(samples), "watcher_errors": errors[:5],
                     "per_watcher_p99_min": per_watcher_p99[0] if per_watcher_p99 else None,
                     "per_watcher_p99_max": per_watcher_p99[-1] if per_watcher_p99 else None},
        "cpu_s": cpu,
        "measured_s": measured,
    }


if __name__ == "__main__":
    harness.run("watch_latency", main)
