"""LIST of 10,000 pods while a background load of creates and updates runs.

10,000 minimal pods are created in one namespace. Then a background writer runs at a fixed
rate (BENCH_LIST_LOAD_QPS writes/s, default 100: half creates of new pods in another namespace,
half merge-patch updates of pods in the listed namespace), and one client LISTs the namespace
again and again, one LIST at a time:

  * LIST (no resourceVersion: a consistent read, served from the watch cache once it has
    caught up with etcd's current revision);
  * LIST resourceVersion=0 (any cached state);
  * LIST limit=500, following `continue` through all 20 pages (served from etcd at the
    revision of the first page); the figure is the time for the whole walk.

Latency is time to the last byte of the response (the upstream SLI measures the request at the
server, not the client's decoding); every 5th response is decoded to check its item count.
Target: LIST p99 <= 1 s under that load. The background writes' own latency during the LISTs
is reported too (mutating p99 <= 1 s).
Environment: BENCH_LIST_PODS (10000), BENCH_LIST_RUNS (25 unpaged LISTs of each kind),
BENCH_LIST_PAGED_RUNS (20 paged walks), BENCH_LIST_LOAD_QPS (100).
"""
from __future__ import annotations

import asyncio
import json
import os
import time

import harness
from harness import ControlPlane, Phase, figure, log, print_figure, run_workers, summarize

PODS = int(os.environ.get("BENCH_LIST_PODS", "10000"))
RUNS = int(os.environ.get("BENCH_LIST_RUNS", "25"))
PAGED_RUNS = int(os.environ.get("BENCH_LIST_PAGED_RUNS", "20"))
LOAD_QPS = float(os.environ.get("BENCH_LIST_LOAD_QPS", "100"))
PAGE = 500
TARGET = 1.0
NAN = float("nan")
NS = "list10k"
CHURN_NS = "list10k-churn"


class Background:
    """Paced (open-loop) writes: creates in CHURN_NS and merge patches of pods in NS, alternating.

    A write is started every 1/qps seconds whether or not the previous one has answered, so a
    slow apiserver shows up as write latency rather than as a lower offered load."""

    def __init__(self, client, qps: float, names: list[str]) -> None:
        self.client = client
        self.qps = qps
        self.names = names
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.sent = 0
        self.recording = False
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()

    async def _one(self, i: int) -> None:
        t0 = time.perf_counter()
        try:
            if i % 2 == 0:
                await self.client.create("v1", "pods", harness.pod(f"churn-{i:06d}", CHURN_NS), CHURN_NS)
            else:
                name = self.names[(i * 7919) % len(self.names)]
                await self.client.patch("v1", "pods", NS, name,
                                        {"metadata": {"annotations": {"bench/touched": str(i)}}})
        except Exception as e:
            self.errors += 1
            if not self.first_error:
                self.first_error = f"{type(e).__name__}: {e}"[:300]
            return
        if self.recording:
            self.latencies.append(time.perf_counter() - t0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        i = 0
        while True:
            i += 1
            t = self._inflight
            task = asyncio.create_task(self._one(i))
            t.add(task)
            task.add_done_callback(t.discard)
            self.sent += 1
            nxt = start + i / self.qps
            await asyncio.sleep(max(0.0, nxt - loop.time()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=60)


def _metadata(body: bytes) -> dict:
    """metadata of a list body, read without decoding the items (the apiserver writes it first)."""
    i = body.find(b'"metadata":')
    if i < 0:
        raise ValueError("no metadata in list response")
    md, _ = json.JSONDecoder().raw_decode(body[i + len(b'"metadata":'):].decode())
    return md


async def timed_lists(client, path: str, params: dict | None, runs: int, meter) -> tuple[Phase, list[int]]:
    phase = Phase()
    counts: list[int] = []
    meter.start()
    t_all = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        try:
            body = await client.request("GET", path, params=params, raw=True)
        except Exception as e:
            phase.errors += 1
            phase.first_error = phase.first_error or f"{type(e).__name__}: {e}"[:300]
            continue
        phase.latencies.append(time.perf_counter() - t0)
        phase.ops += 1
        if i % 5 == 0:
            counts.append(len(json.loads(body)["items"]))
    phase.wall = time.perf_counter() - t_all
    phase.cpu = meter.stop()
    return phase, counts


async def timed_paged(client, path: str, runs: int, meter) -> tuple[Phase, list[float], list[int]]:
    phase = Phase()
    pages: list[float] = []
    counts: list[int] = []
    meter.start()
    t_all = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        n = 0
        token = None
        try:
            while True:
                tp = time.perf_counter()
                body = await client.request("GET", path, params={"limit": PAGE, "continue": token}, raw=True)
                pages.append(time.perf_counter() - tp)
                md = _metadata(body)
                if i % 5 == 0:
                    n += len(json.loads(body)["items"])
                token = md.get("continue")
                if not token:
                    break
        except Exception as e:
            phase.errors += 1
            phase.first_error = phase.first_error or f"{type(e).__name__}: {e}"[:300]
            continue
        phase.latencies.append(time.perf_counter() - t0)
        phase.ops += 1
        if i % 5 == 0:
            counts.append(n)
    phase.wall = time.perf_counter() - t_all
    phase.cpu = meter.stop()
    return phase, pages, counts


async def main(cp: ControlPlane) -> dict:
    client = cp.client()
    meter = harness.cpu_meter(cp)
    try:
        await harness.ensure_namespace(client, NS)
        await harness.ensure_namespace(client, CHURN_NS)
        names = [f"pod-{i:05d}" for i in range(PODS)]
        log(f"creating {PODS} pods")

        async def create(name: str) -> None:
            await client.create("v1", "pods", harness.pod(name, NS, labels={"app": "list10k"}), NS)

        fill = await run_workers(names, 32, create, meter)
        log(f"created {fill.ops} pods in {fill.wall:.1f}s ({fill.throughput:.0f}/s), errors {fill.errors}")
        if fill.errors:
            raise RuntimeError(f"could not create the pods: {fill.first_error}")

        path = client.path("v1", "pods", NS)
        idle, idle_counts = await timed_lists(client, path, None, 5, meter)
        log(f"LIST without load: p50 {summarize(idle.latencies).get('p50', 0)*1000:.0f} ms")

        bg = Background(client, LOAD_QPS, names)
        bg.start()
        await asyncio.sleep(2.0)
        bg.recording = True
        sent0 = bg.sent
        t_load = time.perf_counter()
        plain, plain_counts = await timed_lists(client, path, None, RUNS, meter)
        log(f"LIST: p50 {summarize(plain.latencies).get('p50', NAN)*1000:.0f} ms p99 "
            f"{summarize(plain.latencies).get('p99', NAN)*1000:.0f} ms, cpu {plain.cpu}")
        rv0, rv0_counts = await timed_lists(client, path, {"resourceVersion": "0"}, RUNS, meter)
        log(f"LIST rv=0: p50 {summarize(rv0.latencies).get('p50', NAN)*1000:.0f} ms p99 "
            f"{summarize(rv0.latencies).get('p99', NAN)*1000:.0f} ms, cpu {rv0.cpu}")
        paged, pages, paged_counts = await timed_paged(client, path, PAGED_RUNS, meter)
        log(f"LIST limit={PAGE}: whole walk p50 {summarize(paged.latencies).get('p50', NAN)*1000:.0f} ms p99 "
            f"{summarize(paged.latencies).get('p99', NAN)*1000:.0f} ms, cpu {paged.cpu}")
        bg.recording = False
        load_wall = time.perf_counter() - t_load
        offered = (bg.sent - sent0) / load_wall
        await bg.stop()
    finally:
        await client.close()

    bgs = summarize(bg.latencies)
    items = {"plain": plain_counts, "rv0": rv0_counts, "paged": paged_counts, "idle": idle_counts}
    bad = {k: v for k, v in items.items() if any(n < PODS for n in v)}
    note = f"{len(bg.latencies)} writes at {offered:.0f}/s offered" + (f"; short lists: {bad}" if bad else "")
    g = f"LIST of {PODS} pods, {LOAD_QPS:.0f} writes/s in the background"
    ps = plain.stats()
    rs = rv0.stats()
    pgs = paged.stats()
    oc = harness.other_cores
    fmt = harness.fmt
    figures = [
        figure(f"LIST {PODS} pods p99", ps.get("p99", NAN), "s", target="<= 1 s", target_value=TARGET,
               higher_is_better=False, group=g, note=f"{ps['ops']} LISTs, p50 {fmt(ps.get('p50'), 's')}",
               other_cores=oc(ps)),
        figure(f"LIST {PODS} pods resourceVersion=0 p99", rs.get("p99", NAN), "s", target="<= 1 s",
               target_value=TARGET, higher_is_better=False, group=g,
               note=f"{rs['ops']} LISTs, p50 {fmt(rs.get('p50'), 's')}", other_cores=oc(rs)),
        figure(f"LIST {PODS} pods limit={PAGE}, all pages, p99", pgs.get("p99", NAN), "s", target="<= 1 s",
               target_value=TARGET, higher_is_better=False, group=g,
               note=f"{pgs['ops']} walks of {-(-PODS // PAGE)} pages, p50 {fmt(pgs.get('p50'), 's')}; "
                    f"one page p99 {fmt(summarize(pages).get('p99'), 's')}", other_cores=oc(pgs)),
        figure("background write p99 during the LISTs", bgs.get("p99", NAN), "s", target="<= 1 s",
               target_value=TARGET, higher_is_better=False, group=g, note=note, other_cores=oc(ps, rs, pgs)),
    ]
    for f in figures:
        print_figure(f)
    return {
        "title": f"LIST of {PODS} pods under a background write load",
        "description": (f"{PODS} minimal pods in one namespace; {RUNS} sequential LISTs (and rv=0 LISTs), "
                        f"{PAGED_RUNS} walks through all pages of limit={PAGE}, while a "
                        f"paced writer offers {LOAD_QPS:.0f} writes/s (half pod creates in another namespace, "
                        f"half merge-patch updates of the listed pods). Latency is time to the last byte of "
                        f"the response through the project's REST client over HTTPS."),
        "params": {"pods": PODS, "runs": RUNS, "paged_runs": PAGED_RUNS, "load_qps": LOAD_QPS, "page": PAGE},
        "figures": figures,
        "latency": {
            "LIST, no background writes": summarize(idle.latencies),
            "LIST": summarize(plain.latencies),
            "LIST rv=0": summarize(rv0.latencies),
            f"LIST limit={PAGE}, all pages": summarize(paged.latencies),
            f"LIST limit={PAGE}, one page": summarize(pages),
            "background writes": bgs,
        },
        "phases": {"fill": fill.stats(), "idle": idle.stats(), "plain": plain.stats(),
                   "rv0": rv0.stats(), "paged": paged.stats(),
                   "background": {"offered_qps": offered, "errors": bg.errors, "first_error": bg.first_error,
                                  **bgs}},
        "items_checked": items,
    }


if __name__ == "__main__":
    harness.run("list_10k", main)
