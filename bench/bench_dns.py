"""Cluster DNS: kubelab-dns against dnsmasq, queries/s and latency measured with dnsperf.

A real etcd and kubelab-apiserver hold BENCH_DNS_SERVICES Services (default 1,000, ClusterIPs
allocated by the apiserver); kubelab-dns runs as its own process, fed by its informers, and
dnsmasq 2.90 serves the same names from a hosts file (`--addn-hosts`, no upstream, no cache
misses possible). Both listen on loopback; dnsperf (one client thread, BENCH_DNS_OUTSTANDING
queries in flight, default 100: a saturating load) asks A questions for the service names,
cycling through them, for BENCH_DNS_SECONDS (default 8) per run. The servers take turns run by
run (BENCH_DNS_ROUNDS rounds, default 3, order rotating) after an uncounted warm-up run each, so
a change in the machine's load falls on both alike. dnsperf's -v output gives every query's
latency: the p50/p99 are over all queries of all rounds; the queries/s figure is the best run
of each (other load only ever slows a run down). Before timing, every name is checked on both
servers to answer with its Service's IP.

Targets: kubelab-dns queries/s >= 0.5x dnsmasq's; kubelab-dns p99 <= 5 ms.
Environment: BENCH_DNS_SERVICES (1000), BENCH_DNS_SECONDS (8), BENCH_DNS_ROUNDS (3),
BENCH_DNS_OUTSTANDING (100); BENCH_QUIET_WAIT, BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S
as in bench/harness.py. Everything started here (etcd, apiserver, kubelab-dns, dnsmasq, the temp
dir) is stopped and removed, also on errors, Ctrl-C and SIGTERM.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import resource
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

import harness
from harness import ControlPlane, CpuMeter, figure, log, print_figure, summarize
from kubelab import proc
from kubelab.client.rest import ApiError
from kubelab.lab.controlplane import free_port, spawn, stop

NAME = "dns"
SERVICES = int(os.environ.get("BENCH_DNS_SERVICES", "1000"))
SECONDS = float(os.environ.get("BENCH_DNS_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_DNS_ROUNDS", "3"))
OUTSTANDING = int(os.environ.get("BENCH_DNS_OUTSTANDING", "100"))
NS = "dnsbench"
ZONE = "cluster.local"
HOST = "127.0.0.1"
SERVERS = ("kubelab-dns", "dnsmasq")
TARGET_RATIO = 0.5
TARGET_P99 = 0.005


class BenchError(Exception):
    """Something the benchmark needs did not work; one line saying what."""


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i:04d}", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "selector": {"app": f"a{i}"}}}


def fqdn(name: str) -> str:
    return f"{name}.{NS}.svc.{ZONE}"


class Servers:
    """kubelab-dns and dnsmasq processes on loopback ports, stopped by close()."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, object] = {}
        self.ports: dict[str, int] = {}
        self.ready_s = 0.0

    def start_kubelab_dns(self, kubeconfig: Path) -> None:
        port, health = free_port(), free_port()
        cmd = [sys.executable, "-c", "from kubelab.cmd.dns import main; main()", "--kubeconfig", str(kubeconfig),
               "--bind-address", HOST, "--port", str(port), "--health-port", str(health), "--metrics-port", "0",
               "--upstream", f"{HOST}:9"]
        t0 = time.monotonic()
        p = spawn(cmd, self.tmp / "kubelab-dns.log")
        self.procs["kubelab-dns"], self.ports["kubelab-dns"] = p, port
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise BenchError(f"kubelab-dns exited {p.returncode}: {self._tail('kubelab-dns')}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{health}/readyz", timeout=1) as r:
                    if r.status == 200:
                        self.ready_s = time.monotonic() - t0
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BenchError("kubelab-dns did not become ready within 120 s")

    def start_dnsmasq(self, hosts: Path) -> None:
        port = free_port()
        cmd = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--port", str(port),
               "--listen-address", HOST, "--bind-interfaces", f"--pid-file={self.tmp / 'dnsmasq.pid'}",
               "--log-facility=-"]
        p = spawn(cmd, self.tmp / "dnsmasq.log")
        self.procs["dnsmasq"], self.ports["dnsmasq"] = p, port
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise BenchError(f"dnsmasq exited {p.returncode}: {self._tail('dnsmasq')}")
            try:
                dns.query.udp(dns.message.make_query(fqdn("svc-0000"), "A"), HOST, timeout=0.5, port=port)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise BenchError("dnsmasq did not answer within 10 s")

    def _tail(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else "(no output)"

    def pid(self, name: str) -> int:
        return self.procs[name].pid  # type: ignore[attr-defined]

    def close(self) -> None:
        for p in self.procs.values():
            stop(p)


def check_answers(port: int, names: dict[str, str], server: str) -> None:
    """Every name answers with its Service's cluster IP (over UDP, one by one)."""
    wrong = []
    for name, ip in names.items():
        r = dns.query.udp(dns.message.make_query(fqdn(name), "A"), HOST, timeout=2, port=port)
        got = sorted(rd.to_text() for rr in r.answer for rd in rr)
        if got != [ip]:
            wrong.append(f"{name}: {got or dns.rcode.to_text(r.rcode())}")
    if wrong:
        raise BenchError(f"{server} answers {len(wrong)} of {len(names)} names wrongly, e.g. {wrong[0]} "
                         f"(want {names[wrong[0].split(':')[0]]})")


def parse_dnsperf(text: str) -> dict:
    """Summary numbers and every query's latency from `dnsperf -v` output."""
    def num(pattern: str) -> float:
        m = re.search(pattern, text)
        if not m:
            raise BenchError(f"dnsperf output lacks {pattern!r}: {text[-300:]}")
        return float(m.group(1))
    lat = [float(line.rsplit(None, 1)[1]) for line in text.splitlines() if line.startswith("> ")]
    noerror = sum(1 for line in text.splitlines() if line.startswith("> NOERROR "))
    return {"qps": num(r"Queries per second:\s+([\d.]+)"), "sent": int(num(r"Queries sent:\s+(\d+)")),
            "completed": int(num(r"Queries completed:\s+(\d+)")), "lost": int(num(r"Queries lost:\s+(\d+)")),
            "avg_latency": num(r"Average Latency \(s\):\s+([\d.]+)"), "noerror": noerror, "latencies": lat}


async def dnsperf(port: int, datafile: Path, seconds: float, out: Path) -> tuple[dict, float]:
    """One dnsperf run; returns its parsed output and the CPU seconds dnsperf itself used. Its -v
    output (a line per query) goes to a file, not through a pipe into this process, which would
    then compete for the CPUs while the server is timed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    args = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(datafile), "-l", f"{seconds:g}", "-q", str(OUTSTANDING),
            "-c", "1", "-T", "1", "-v"]
    await proc.run(["sh", "-c", 'out="$1"; shift; exec "$@" >"$out"', "sh", str(out), *args], timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        return parse_dnsperf(out.read_text(errors="replace")), cpu
    finally:
        out.unlink(missing_ok=True)


async def versions() -> dict[str, str]:
    out = {}
    for name, cmd, pat in (("dnsmasq", ["dnsmasq", "--version"], r"Dnsmasq version (\S+)"),
                           ("dnsperf", ["dnsperf", "-h"], r"Version (\S+)")):
        res = await proc.run(cmd, check=False, timeout=10)
        m = re.search(pat, res.text + res.stderr.decode(errors="replace"))
        out[name] = m.group(1) if m else "unknown"
    import dns.version
    out["dnspython"] = dns.version.version
    return out


async def measure(cp: ControlPlane) -> dict:
    assert cp.tmp is not None and cp.kubeconfig is not None
    client = cp.client()
    servers = Servers(cp.tmp)
    try:
        await harness.ensure_namespace(client, NS)
        log(f"creating {SERVICES} services")
        created: dict[str, str] = {}

        async def create(i: int) -> None:
            for attempt in range(10):
                try:
                    obj = await client.create("v1", "services", service(i), NS)
                    break
                except ApiError as e:
                    # concurrent creates can collide on the apiserver's cluster IP allocation (500 Conflict)
                    if e.code != 500 or "Conflict" not in e.message or attempt == 9:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
            created[obj["metadata"]["name"]] = obj["spec"]["clusterIP"]
        phase = await harness.run_workers(range(SERVICES), 16, create)
        if phase.errors:
            raise BenchError(f"creating services failed {phase.errors} times: {phase.first_error}")
        names = dict(sorted(created.items()))
        hosts = cp.tmp / "hosts"
        hosts.write_text("".join(f"{ip} {fqdn(n)}\n" for n, ip in names.items()))
        datafile = cp.tmp / "queries.txt"
        datafile.write_text("".join(f"{fqdn(n)} A\n" for n in names))

        log("starting kubelab-dns and dnsmasq")
        servers.start_kubelab_dns(cp.kubeconfig)
        servers.start_dnsmasq(hosts)
        for s in SERVERS:
            check_answers(servers.ports[s], names, s)
        log(f"kubelab-dns ready {servers.ready_s:.1f}s after start; both answer all {len(names)} names")

        meter = CpuMeter({"kubelab-dns": servers.pid("kubelab-dns"), "dnsmasq": servers.pid("dnsmasq"),
                          "apiserver": cp.api_pid, "etcd": cp.etcd_pid, "bench": os.getpid()})
        for s in SERVERS:      # warm-up, not counted
            await dnsperf(servers.ports[s], datafile, min(2.0, SECONDS), cp.tmp / "dnsperf.out")
        runs: dict[str, list[dict]] = {s: [] for s in SERVERS}
        cpu_total: dict[str, float] = {}
        measured = 0.0
        for rnd in range(ROUNDS):
            order = SERVERS if rnd % 2 == 0 else tuple(reversed(SERVERS))
            for s in order:
                meter.start()
                t0 = time.perf_counter()
                out, perf_cpu = await dnsperf(servers.ports[s], datafile, SECONDS, cp.tmp / "dnsperf.out")
                wall = time.perf_counter() - t0
                cpu = meter.stop()
                cpu["dnsperf"] = round(perf_cpu, 3)
                cpu["other"] = round(max(0.0, cpu["other"] - perf_cpu), 3)
                out["cpu_s"], out["wall_s"] = cpu, wall
                runs[s].append(out)
                measured += wall
                for k, v in cpu.items():
                    cpu_total[k] = cpu_total.get(k, 0.0) + v
                log(f"round {rnd + 1}: {s}: {out['qps']:,.0f} queries/s, {out['lost']} lost, "
                    f"{s} CPU {cpu.get(s, 0):.1f}s, dnsperf CPU {perf_cpu:.1f}s, other {cpu['other']:.1f}s")
        ver = await versions()
    finally:
        servers.close()
        await client.close()
    return summarise(runs, cpu_total, measured, servers.ready_s, ver)


def summarise(runs: dict[str, list[dict]], cpu: dict[str, float], measured: float, ready_s: float,
              ver: dict[str, str]) -> dict:
    # throughput: the best run of each server (other load can only slow a run down); latency: every run
    qps = {s: max(r["qps"] for r in runs[s]) for s in SERVERS}
    median = {s: statistics.median(r["qps"] for r in runs[s]) for s in SERVERS}
    lat = {s: summarize(x for r in runs[s] for x in r["latencies"]) for s in SERVERS}
    lost = {s: sum(r["lost"] for r in runs[s]) for s in SERVERS}
    completed = {s: sum(r["completed"] for r in runs[s]) for s in SERVERS}
    noerror = {s: sum(r["noerror"] for r in runs[s]) for s in SERVERS}
    cpu_per_query = {s: sum(r["cpu_s"].get(s, 0.0) for r in runs[s]) / max(1, completed[s]) for s in SERVERS}
    other = cpu.get("other", 0.0) / measured if measured > 0 else None
    k, d = "kubelab-dns", "dnsmasq"
    g = f"{SERVICES} service names, A queries, dnsperf with {OUTSTANDING} in flight"
    note = (f"best of {ROUNDS} runs of {SECONDS:g} s: " + ", ".join(f"{r['qps']:,.0f}" for r in runs[k])
            + " (dnsmasq " + ", ".join(f"{r['qps']:,.0f}" for r in runs[d]) + f"); medians ratio "
            f"{median[k] / median[d]:.2f}; lost {lost[k]} vs {lost[d]}")
    figures = [
        figure("kubelab-dns queries/s", qps[k], "queries/s", peer_name="dnsmasq", peer_value=qps[d],
               target=">= 0.5x dnsmasq", target_ratio=TARGET_RATIO, group=g, note=note, other_cores=other),
        figure("kubelab-dns p99 latency", lat[k]["p99"], "s", peer_name="dnsmasq p99", peer_value=lat[d]["p99"],
               target="<= 5 ms", target_value=TARGET_P99, higher_is_better=False, group=g,
               note=f"{lat[k]['n']:,} queries ({lat[d]['n']:,} for dnsmasq), at saturation", other_cores=other),
        figure("kubelab-dns p50 latency", lat[k]["p50"], "s", peer_name="dnsmasq p50", peer_value=lat[d]["p50"],
               group=g, note="for scale, no target", other_cores=other),
        figure("kubelab-dns CPU per query", cpu_per_query[k] * 1e6, "µs", peer_name="dnsmasq",
               peer_value=cpu_per_query[d] * 1e6,
               group=g, note="server process CPU time / queries completed; no target", other_cores=other),
    ]
    for f in figures:
        print_figure(f)
    return {
        "title": f"Cluster DNS: kubelab-dns against dnsmasq, {SERVICES} service names",
        "description": (f"{SERVICES} Services in a real apiserver; kubelab-dns (its own process, fed by informers, "
                        f"answers pre-rendered) and dnsmasq {ver.get('dnsmasq', '')} serving the same names from a "
                        f"hosts file, both on loopback. dnsperf {ver.get('dnsperf', '')} (one thread, {OUTSTANDING} "
                        f"queries in flight: a saturating load) asks A questions for the names in turn for "
                        f"{SECONDS:g} s per run; {ROUNDS} runs per server, taking turns, after a warm-up run each. "
                        f"Queries/s: the best run of each (other load only ever slows a run down); latency: every "
                        f"query of every run (dnsperf -v). dnsperf and "
                        f"the server under test share the machine's {os.cpu_count()} CPUs."),
        "params": {"services": SERVICES, "seconds": SECONDS, "rounds": ROUNDS, "outstanding": OUTSTANDING},
        "figures": figures,
        "latency": {f"{s} A query": lat[s] for s in SERVERS},
        "runs": {s: [{kk: vv for kk, vv in r.items() if kk != "latencies"} for r in runs[s]] for s in SERVERS},
        "answers": {s: {"completed": completed[s], "noerror": noerror[s], "lost": lost[s]} for s in SERVERS},
        "kubelab_dns_ready_s": round(ready_s, 2),
        "versions": ver,
        "measured_s": round(measured, 2),
        "cpu_total_s": {kk: round(vv, 2) for kk, vv in cpu.items()},
        "other_cores": None if other is None else round(other, 3),
    }


def run_once(quiet_wait: float | None) -> dict:
    quiet = harness.wait_quiet(quiet_wait)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with ControlPlane(NAME) as cp:
        result = asyncio.run(measure(cp))
    result.update({"wall_total_s": round(time.perf_counter() - t0, 1),
                   "loadavg_before": [round(x, 2) for x in load_before], "quiet_wait": quiet, "benchmark": NAME,
                   "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "machine": harness.machine_info()})
    return result


def main() -> int:
    return harness.main_loop(NAME, lambda quiet: run_once(quiet_wait=quiet),
                             (BenchError, proc.CommandError, RuntimeError, OSError))


if __name__ == "__main__":
    sys.exit(main())
