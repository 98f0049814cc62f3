"""Pod create / get / list / watch / delete through the apiserver, beside raw etcd at equal concurrency.

For each concurrency C (16 and 64): N pods are created by C concurrent workers through the
project's REST client while one watcher on the namespace counts the ADDED events it is
delivered; then the N pods are read (GET), the namespace is listed (each LIST returns all N
pods), and the pods are deleted. In the same run, on the same etcd, the same C workers do the
raw equivalent with aetcd: put N keys (value: the bytes of a stored pod), get them, range over
the prefix, delete them, with one aetcd watch on the prefix counting events.

Targets: create throughput >= 0.5x raw etcd puts at equal concurrency; mutating p99 <= 1 s.
Environment: BENCH_CRUD_PODS (N, default 3000), BENCH_CRUD_LISTS (LISTs per C, default 64),
BENCH_CRUD_CONCURRENCY (default "16,64").
"""
from __future__ import annotations

import asyncio
import json
import os
import time

import harness
from harness import ControlPlane, figure, log, print_figure, run_workers

N = int(os.environ.get("BENCH_CRUD_PODS", "3000"))
LISTS = int(os.environ.get("BENCH_CRUD_LISTS", "64"))
CONCURRENCY = tuple(int(c) for c in os.environ.get("BENCH_CRUD_CONCURRENCY", "16,64").split(","))
MUTATING_P99 = 1.0


class EventCounter:
    """Counts events on a stream until `expect` have arrived; remembers when the last one did."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def hit(self, n: int = 1) -> None:
        self.count += n
        self.last = time.perf_counter()
        if self.count >= self.expect:
            self.done.set()


async def api_watch(client, ns: str, rv: str, counter: EventCounter) -> None:
    async with client.watch("v1", "pods", ns, resource_version=rv, allow_bookmarks=False) as w:
        async for etype, _obj in w:
            if etype == "ADDED":
                counter.hit()
                if counter.done.is_set():
                    return


async def etcd_watch(etcd, prefix: bytes, counter: EventCounter, started: asyncio.Event) -> None:
    from kubelab.storage.etcd import prefix_end
    w = await etcd.watch(prefix, range_end=prefix_end(prefix))
    started.set()
    try:
        async for ev in w:
            if ev.kind == "PUT":
                counter.hit()
                if counter.done.is_set():
                    return
    finally:
        await w.cancel()


async def wait_counter(counter: EventCounter, task: asyncio.Task, timeout: float = 120.0) -> None:
    try:
        await asyncio.wait_for(counter.done.wait(), timeout)
    except asyncio.TimeoutError:
        log(f"watcher saw only {counter.count}/{counter.expect} events")
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


async def apiserver_round(cp: ControlPlane, client, c: int) -> dict:
    ns = f"crud-c{c}"
    await harness.ensure_namespace(client, ns)
    names = [f"pod-{i:05d}" for i in range(N)]
    meter = harness.cpu_meter(cp)
    out: dict = {}

    start_rv = (await client.list("v1", "pods", ns))["metadata"]["resourceVersion"]
    counter = EventCounter(N)
    wtask = asyncio.create_task(api_watch(client, ns, start_rv, counter))
    await asyncio.sleep(0.2)  # the watch is open before the first create

    async def create(name: str) -> None:
        await client.create("v1", "pods", harness.pod(name, ns), ns)

    t0 = time.perf_counter()
    create = await run_workers(names, c, create, meter)
    await wait_counter(counter, wtask)
    watch_wall = (counter.last - t0) if counter.count else float("nan")
    out["create"] = create.stats()
    out["watch"] = {"events": counter.count, "expected": N, "wall_s": watch_wall,
                    "throughput": counter.count / watch_wall if counter.count else 0.0,
                    "lag_after_last_create_s": (counter.last - t0 - create.wall) if counter.count else None}
    log(f"api C={c}: create {create.throughput:.0f}/s p99 {out['create'].get('p99', 0)*1000:.0f} ms, "
        f"watch {out['watch']['throughput']:.0f} ev/s ({counter.count}/{N}), cpu {create.cpu}")

    async def get(name: str) -> None:
        await client.get("v1", "pods", ns, name)

    get = await run_workers(names, c, get, meter)
    out["get"] = get.stats()
    log(f"api C={c}: get {get.throughput:.0f}/s p99 {out['get'].get('p99', 0)*1000:.0f} ms, cpu {get.cpu}")

    # time to the last byte of each LIST: the client's decoding of the body (as much CPU as the
    # server's encoding) stays out of the figure; the bodies are checked after the phase
    bodies: list[bytes] = []
    path = client.path("v1", "pods", ns)

    async def lst(_: int) -> None:
        body = await client.request("GET", path, raw=True)
        if not bodies or len(body) != len(bodies[0]):
            bodies.append(body)

    lst_phase = await run_workers(range(LISTS), c, lst, meter)
    out["list"] = lst_phase.stats()
    out["list"]["items_per_list"] = min((len(json.loads(b)["items"]) for b in bodies), default=0)
    out["list"]["bytes_per_list"] = len(bodies[0]) if bodies else 0
    log(f"api C={c}: list {lst_phase.throughput:.1f}/s p99 {out['list'].get('p99', 0)*1000:.0f} ms "
        f"({out['list']['items_per_list']} items), cpu {lst_phase.cpu}")

    async def delete(name: str) -> None:
        await client.delete("v1", "pods", ns, name, grace_period_seconds=0)

    delete = await run_workers(names, c, delete, meter)
    out["delete"] = delete.stats()
    log(f"api C={c}: delete {delete.throughput:.0f}/s p99 {out['delete'].get('p99', 0)*1000:.0f} ms, "
        f"cpu {delete.cpu}")
    return out


async def etcd_round(cp: ControlPlane, etcd, c: int, value: bytes) -> dict:
    prefix = f"/bench/c{c}/".encode()
    keys = [prefix + f"pod-{i:05d}".encode() for i in range(N)]
    meter = harness.cpu_meter(cp)
    out: dict = {}

    counter = EventCounter(N)
    started = asyncio.Event()
    wtask = asyncio.create_task(etcd_watch(etcd, prefix, counter, started))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.2)

    async def put(key: bytes) -> None:
        await etcd.put(key, value)

    t0 = time.perf_counter()
    put = await run_workers(keys, c, put, meter)
    await wait_counter(counter, wtask)
    watch_wall = (counter.last - t0) if counter.count else float("nan")
    out["put"] = put.stats()
    out["watch"] = {"events": counter.count, "expected": N, "wall_s": watch_wall,
                    "throughput": counter.count / watch_wall if counter.count else 0.0}
    log(f"etcd C={c}: put {put.throughput:.0f}/s p99 {out['put'].get('p99', 0)*1000:.1f} ms, "
        f"watch {out['watch']['throughput']:.0f} ev/s, cpu {put.cpu}")

    async def get(key: bytes) -> None:
        if await etcd.get(key) is None:
            raise KeyError(key)

    get = await run_workers(keys, c, get, meter)
    out["get"] = get.stats()
    log(f"etcd C={c}: get {get.throughput:.0f}/s, cpu {get.cpu}")

    sizes: list[int] = []

    async def rng(_: int) -> None:
        res = await etcd.get_prefix(prefix)
        sizes.append(len(list(res)))

    rng = await run_workers(range(LISTS), c, rng, meter)
    out["range"] = rng.stats()
    out["range"]["items_per_list"] = min(sizes) if sizes else 0
    log(f"etcd C={c}: range {rng.throughput:.1f}/s ({out['range']['items_per_list']} keys), cpu {rng.cpu}")

    async def delete(key: bytes) -> None:
        await etcd.delete(key)

    delete = await run_workers(keys, c, delete, meter)
    out["delete"] = delete.stats()
    log(f"etcd C={c}: delete {delete.throughput:.0f}/s, cpu {delete.cpu}")
    return out


def figures_for(c: int, api: dict, raw: dict) -> list[dict]:
    g = f"{c} concurrent clients"
    oc = harness.other_cores
    f = [
        figure(f"pod create throughput @{c}", api["create"]["throughput"], "ops/s",
               peer_name=f"raw etcd put @{c}", peer_value=raw["put"]["throughput"],
               target=">= 0.5x raw etcd put", target_ratio=0.5, group=g,
               other_cores=oc(api["create"], raw["put"])),
        figure(f"pod create p99 @{c}", api["create"]["p99"], "s", target="<= 1 s",
               target_value=MUTATING_P99, higher_is_better=False, group=g, other_cores=oc(api["create"])),
        figure(f"pod delete throughput @{c}", api["delete"]["throughput"], "ops/s",
               peer_name=f"raw etcd delete @{c}", peer_value=raw["delete"]["throughput"], group=g,
               other_cores=oc(api["delete"], raw["delete"])),
        figure(f"pod delete p99 @{c}", api["delete"]["p99"], "s", target="<= 1 s",
               target_value=MUTATING_P99, higher_is_better=False, group=g, other_cores=oc(api["delete"])),
        figure(f"pod get throughput @{c}", api["get"]["throughput"], "ops/s",
               peer_name=f"raw etcd get @{c}", peer_value=raw["get"]["throughput"], group=g,
               other_cores=oc(api["get"], raw["get"])),
        figure(f"pod get p99 @{c}", api["get"]["p99"], "s",
               peer_name=f"raw etcd get p99 @{c}", peer_value=raw["get"]["p99"], group=g,
               other_cores=oc(api["get"], raw["get"])),
        figure(f"pod list ({api['list']['items_per_list']} pods) throughput @{c}", api["list"]["throughput"],
               "lists/s", peer_name=f"raw etcd range ({raw['range']['items_per_list']} keys) @{c}",
               peer_value=raw["range"]["throughput"], group=g,
               other_cores=oc(api["list"], raw["range"])),
        figure(f"pod list ({api['list']['items_per_list']} pods) p99 @{c}", api["list"]["p99"], "s",
               peer_name=f"raw etcd range p99 @{c}", peer_value=raw["range"]["p99"], group=g,
               other_cores=oc(api["list"], raw["range"])),
        figure(f"watch events delivered during creates @{c}", api["watch"]["throughput"], "events/s",
               peer_name=f"raw etcd watch during puts @{c}", peer_value=raw["watch"]["throughput"], group=g,
               note=f"{api['watch']['events']}/{api['watch']['expected']} events delivered",
               other_cores=oc(api["create"], raw["put"])),
    ]
    return f


async def main(cp: ControlPlane) -> dict:
    client = cp.client()
    etcd = cp.etcd_client()
    await etcd.connect()
    rounds: dict = {}
    figures: list[dict] = []
    try:
        # the raw value: the bytes of a pod as the apiserver stores it (defaults included)
        await harness.ensure_namespace(client, "crud-sample")
        stored = await client.create("v1", "pods", harness.pod("sample", "crud-sample"), "crud-sample")
        stored["metadata"].pop("resourceVersion", None)
        value = json.dumps(stored, separators=(",", ":")).encode()
        await client.delete("v1", "pods", "crud-sample", "sample", grace_period_seconds=0)
        for c in CONCURRENCY:
            api = await apiserver_round(cp, client, c)
            raw = await etcd_round(cp, etcd, c, value)
            rounds[str(c)] = {"apiserver": api, "etcd": raw}
            for f in figures_for(c, api, raw):
                print_figure(f)
                figures.append(f)
    finally:
        await client.close()
        await etcd.close()
    latency = {}
    for c, r in rounds.items():
        for op in ("create", "get", "list", "delete"):
            latency[f"apiserver {op} @{c}"] = {k: r["apiserver"][op][k] for k in ("n", "p50", "p90", "p99", "max")
                                                if k in r["apiserver"][op]}
        for op in ("put", "get", "range", "delete"):
            latency[f"etcd {op} @{c}"] = {k: r["etcd"][op][k] for k in ("n", "p50", "p90", "p99", "max")
                                           if k in r["etcd"][op]}
    return {
        "title": "Pod CRUD and watch throughput beside raw etcd",
        "description": (f"{N} minimal pods (one container) created, read, listed and deleted by C concurrent "
                        f"workers through the project's REST client (HTTPS, client certificates), one "
                        f"watcher on the namespace during the creates; the same C workers do the raw aetcd "
                        f"put/get/range/delete on the same etcd, with the stored pod's bytes ({len(value)} B) "
                        f"as the value, in the same run. Each LIST returns all {N} pods; {LISTS} LISTs per C, "
                        f"timed to the last byte of the response (the client's JSON decoding is left out)."),
        "params": {"pods": N, "lists": LISTS, "concurrency": list(CONCURRENCY), "value_bytes": len(value)},
        "figures": figures,
        "latency": latency,
        "rounds": rounds,
    }


if __name__ == "__main__":
    harness.run("pod_crud", main)
