"""Write docs/benchmarks.md (and its SVG plots under docs/benchmarks/) from bench/results/*.json.

    python bench/report.py [--results DIR] [--out FILE]

Each result file holds "figures" (value, peer or target, ratio, pass), "latency" (percentiles per
operation, for the tables and plots) and the machine it ran on; see bench/harness.py.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from harness import fmt  # noqa: E402  (one number formatter for the scripts and the report)

TOP = BENCH_DIR.parent
ORDER = ["pod_crud", "list_10k", "watch_latency", "pod_start", "dns", "proxy_sync", "pod_throughput", "scheduler",
         "deployment", "kubelet_pod_startup"]
CONTROL_PLANE_CPU = ("apiserver", "etcd", "bench", "other")


def verdict(f: dict) -> str:
    if f.get("pass") is None:
        return "-"
    return "**pass**" if f["pass"] else "**FAIL**"


def target_cell(f: dict) -> str:
    parts = []
    if f.get("peer_name"):
        parts.append(f"{f['peer_name']}: {fmt(f.get('peer_value'), f['unit'])}")
    if f.get("target"):
        parts.append(f"target {f['target']}")
    return "; ".join(parts) or "-"


def ratio_cell(f: dict) -> str:
    r = f.get("ratio")
    if r is None or (isinstance(r, float) and math.isnan(r)):
        return "-"
    return f"{r:.2f}x" if f.get("peer_name") else f"{r:.2f}"


def other_cell(f: dict) -> str:
    oc = f.get("other_cores")
    return "-" if oc is None else f"{oc:.2f}"


def figures_table(figs: list[dict], with_group: bool = False) -> list[str]:
    head = ("| figure | value | peer / target | ratio | result | other load | note |",
            "|---|---:|---|---:|:---:|---:|---|")
    if with_group:
        head = ("| benchmark | figure | value | peer / target | ratio | result | other load |",
                "|---|---|---:|---|---:|:---:|---:|")
    out = list(head)
    for f in figs:
        cells = [f["name"], fmt(f["value"], f["unit"]), target_cell(f), ratio_cell(f), verdict(f), other_cell(f)]
        if with_group:
            cells.insert(0, f["_bench"])
        else:
            cells.append(f.get("note") or "")
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def latency_table(lat: dict) -> list[str]:
    out = ["| operation | n | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in lat.items():
        out.append(f"| {name} | {s.get('n', '') if s.get('n') is not None else ''} | {fmt(s.get('p50'), 's')} | "
                   f"{fmt(s.get('p90'), 's')} | {fmt(s.get('p99'), 's')} | {fmt(s.get('max'), 's')} |")
    return out


def cpu_table_crud(rounds: dict) -> list[str]:
    """CPU milliseconds per operation, per process: where the time goes."""
    out = ["| clients | operation | ops/s | apiserver CPU ms/op | etcd CPU ms/op | bench client CPU ms/op | "
           "other processes CPU s |", "|---:|---|---:|---:|---:|---:|---:|"]
    for c, r in rounds.items():
        for side, ops in (("apiserver", ("create", "get", "list", "delete")), ("etcd", ("put", "get", "range",
                                                                                      "delete"))):
            for op in ops:
                st = r[side][op]
                cpu = st.get("cpu_s") or {}
                n = st.get("ops") or 0
                if not n:
                    continue
                per = {k: 1000 * v / n for k, v in cpu.items()}
                label = f"{'pod ' if side == 'apiserver' else 'raw etcd '}{op}"
                out.append(f"| {c} | {label} | {fmt(st.get('throughput'))} | {per.get('apiserver', 0):.2f} | "
                           f"{per.get('etcd', 0):.2f} | {per.get('bench', 0):.2f} | {cpu.get('other', 0):.1f} |")
    return out


def cpu_table_phases(phases: dict, names: dict[str, str]) -> list[str]:
    out = ["| phase | wall s | apiserver CPU s | etcd CPU s | bench client CPU s | other processes CPU s |",
           "|---|---:|---:|---:|---:|---:|"]
    for key, label in names.items():
        st = phases.get(key) or {}
        cpu = st.get("cpu_s") or {}
        if not cpu:
            continue
        cells = [f"{cpu.get(k, 0):.1f}" for k in ("apiserver", "etcd", "bench", "other")]
        out.append(f"| {label} | {st.get('wall_s', 0):.1f} | " + " | ".join(cells) + " |")
    return out


def cpu_line(cpu: dict | None, wall: float | None = None) -> str:
    if not cpu:
        return ""
    parts = [f"{k} {v:.1f} s" for k, v in cpu.items()]
    w = f" over {wall:.0f} s of wall time" if wall else ""
    return f"CPU used during the whole run{w}: " + ", ".join(parts) + "."


# --- SVG ------------------------------------------------------------------------------------


def latency_svg(title: str, lat: dict, target: float | None = None) -> str:
    """Horizontal bars per operation: p50 (dark) and p99 (light), log-scaled milliseconds."""
    rows = [(name, s) for name, s in lat.items() if s.get("p50") is not None and s.get("p99") is not None]
    label_w, bar_w, row_h, top, bottom = 260, 460, 26, 40, 40
    width = label_w + bar_w + 30
    height = top + row_h * max(1, len(rows)) + bottom
    values = [s["p99"] for _, s in rows] + [s["p50"] for _, s in rows] + ([target] if target else [])
    lo_ms = 10 ** math.floor(math.log10(max(min(v for v in values if v > 0) * 1000, 0.01))) if values else 0.1
    hi_ms = 10 ** math.ceil(math.log10(max(values) * 1000)) if values else 1000
    if hi_ms <= lo_ms:
        hi_ms = lo_ms * 10

    def x(sec: float) -> float:
        ms = max(sec * 1000, lo_ms)
        return label_w + bar_w * (math.log10(ms) - math.log10(lo_ms)) / (math.log10(hi_ms) - math.log10(lo_ms))

    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{e(title)}</text>']
    # grid: one line per decade
    d = lo_ms
    while d <= hi_ms * 1.0001:
        gx = x(d / 1000)
        label = f"{d:g} ms" if d < 1000 else f"{d / 1000:g} s"
        out.append(f'<line x1="{gx:.1f}" y1="{top - 5}" x2="{gx:.1f}" y2="{height - bottom + 5}" stroke="#ddd"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - bottom + 20}" text-anchor="middle" fill="#555">{label}</text>')
        d *= 10
    for i, (name, s) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{e(name)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{x(s["p99"]) - label_w:.1f}" height="18" fill="#9ecae1">'
                   f'<title>{e(name)} p99 {fmt(s["p99"], "s")}</title></rect>')
        out.append(f'<rect x="{label_w}" y="{y + 7}" width="{x(s["p50"]) - label_w:.1f}" height="10" fill="#08519c">'
                   f'<title>{e(name)} p50 {fmt(s["p50"], "s")}</title></rect>')
        out.append(f'<text x="{x(s["p99"]) + 4:.1f}" y="{y + 16}" fill="#333" font-size="10">'
                   f'{e(fmt(s["p99"], "s"))}</text>')
    if target:
        tx = x(target)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - bottom}" stroke="#d62728" '
                   f'stroke-dasharray="4,3" stroke-width="1.5"/>')
        out.append(f'<text x="{tx + 3:.1f}" y="{top - 10}" fill="#d62728" font-size="10">target</text>')
    lx = label_w
    ly = height - 10
    out.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="9" fill="#08519c"/>'
               f'<text x="{lx + 16}" y="{ly}">p50</text>'
               f'<rect x="{lx + 60}" y="{ly - 9}" width="12" height="9" fill="#9ecae1"/>'
               f'<text x="{lx + 76}" y="{ly}">p99 (log scale)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def throughput_svg(title: str, bars: list[tuple[str, float, float]]) -> str:
    """Paired bars: apiserver vs raw etcd throughput per operation (linear ops/s)."""
    label_w, bar_w, row_h, top, bottom = 200, 480, 40, 40, 30
    width = label_w + bar_w + 80
    height = top + row_h * max(1, len(bars)) + bottom
    hi = max([max(a, b) for _, a, b in bars] + [1])
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{e(title)}</text>']
    for i, (name, api, raw) in enumerate(bars):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 20}" text-anchor="end">{e(name)}</text>')
        for j, (v, color) in enumerate(((api, "#08519c"), (raw, "#bdbdbd"))):
            w = bar_w * v / hi
            out.append(f'<rect x="{label_w}" y="{y + 4 + j * 16}" width="{w:.1f}" height="14" fill="{color}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15 + j * 16}" font-size="10">{fmt(v)}/s</text>')
    ly = height - 10
    out.append(f'<rect x="{label_w}" y="{ly - 9}" width="12" height="9" fill="#08519c"/>'
               f'<text x="{label_w + 16}" y="{ly}">apiserver</text>'
               f'<rect x="{label_w + 90}" y="{ly - 9}" width="12" height="9" fill="#bdbdbd"/>'
               f'<text x="{label_w + 106}" y="{ly}">raw etcd (aetcd), same concurrency</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def pod_start_details(r: dict) -> list[str]:
    """Per-RPC split of the two CRI runtimes, kubelab-cri's CPU per pod, the versions compared."""
    lat = r.get("latency") or {}
    rpcs = ("RunPodSandbox", "CreateContainer", "StartContainer")
    out = ["### Where the time goes", "",
           "p50 of each CRI call of a pod start (the pod start p50 is not their sum: each column is its own "
           "median).", "",
           "| runtime | " + " | ".join(rpcs) + " | pod start |", "|---|" + "---:|" * (len(rpcs) + 1)]
    for rt in ("kubelab-cri", "containerd"):
        cells = [fmt((lat.get(f"{rt} {rpc}") or {}).get("p50"), "s") for rpc in rpcs]
        out.append(f"| {rt} | " + " | ".join(cells) + f" | {fmt((lat.get(f'{rt} pod start') or {}).get('p50'), 's')} |")
    raw = (lat.get("runc run -d") or {}).get("p50")
    out.append(f"| raw runc | - | - | - | {fmt(raw, 's')} (`runc run -d`) |")
    cpu = r.get("kubelab_cri_cpu_per_pod_s") or {}
    if cpu:
        out += ["", f"kubelab-cri CPU per pod start (mean; the kernel counts in 10 ms ticks): "
                f"{fmt((cpu.get('self') or {}).get('mean'), 's')} in its own process, "
                f"{fmt((cpu.get('children') or {}).get('mean'), 's')} in the commands it ran and waited for "
                "(runc, CNI plugins, mount, unshare; conmon's own work is not counted)."]
    versions = r.get("versions") or {}
    if versions:
        out += ["", "| component | version |", "|---|---|"]
        out += [f"| {k} | {v.replace('|', '/')} |" for k, v in versions.items()]
    top = r.get("other_top_s") or {}
    if top:
        out += ["", "Other processes that used the most CPU during the measurement: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in top.items()) + "."]
    return out + [""]


# --- report ---------------------------------------------------------------------------------


def load(results: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(results.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except ValueError as e:
            print(f"report: skipping {p}: {e}", file=sys.stderr)
    return out


def dns_details(r: dict) -> list[str]:
    """Every dnsperf run, in the order they ran, with the CPU each process used meanwhile."""
    out = ["### Runs", "", "| server | queries/s | mean latency | lost | server CPU s | dnsperf CPU s | "
           "other processes CPU s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for server, runs in (r.get("runs") or {}).items():
        for x in runs:
            cpu = x.get("cpu_s") or {}
            out.append(f"| {server} | {fmt(x.get('qps'))} | {fmt(x.get('avg_latency'), 's')} | {x.get('lost', 0)} | "
                       f"{cpu.get(server, 0):.1f} | {cpu.get('dnsperf', 0):.1f} | {cpu.get('other', 0):.1f} |")
    ver = r.get("versions") or {}
    out += ["", f"kubelab-dns was ready (informers synced, {r.get('params', {}).get('services')} services' answers "
            f"rendered) {r.get('kubelab_dns_ready_s')} s after it started. Versions: "
            + ", ".join(f"{k} {v}" for k, v in ver.items()) + "."]
    return out + [""]


def machine_section(res: dict[str, dict]) -> list[str]:
    lines = ["## Machine", ""]
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in res.values()}
    for m_json in sorted(machines):
        m = json.loads(m_json)
        lines += ["| | |", "|---|---|",
                  f"| CPUs (nproc) | {m.get('nproc')} ({m.get('cpu', '')}) |",
                  f"| memory | {m.get('memory_gib')} GiB |",
                  f"| Python | {m.get('python')} |",
                  f"| etcd | {m.get('etcd')} |",
                  f"| aiohttp | {m.get('aiohttp', '')} |",
                  f"| kernel | {m.get('kernel', '')} |", ""]
    lines += ["| benchmark | run at (UTC) | wall time | waited for a quiet machine | load average before | "
              "CPU s: apiserver / etcd / bench client / other processes | other load | run kept |",
              "|---|---|---:|---|---|---|---:|---|"]
    for name, r in res.items():
        la = ", ".join(str(x) for x in r.get("loadavg_before", []))
        q = r.get("quiet_wait") or {}
        qs = (f"{q.get('waited_s')} s, " + ("quiet" if q.get("quiet") else
                                           f"still busy ({q.get('busy_pct_last')}% CPU)")) if q else "-"
        cpu = r.get("cpu_total_s") or {}
        if cpu and set(cpu) - set(CONTROL_PLANE_CPU):  # not only the control plane: name its processes
            cs = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        else:
            cs = " / ".join(f"{cpu.get(k, 0):.1f}" for k in CONTROL_PLANE_CPU) if cpu else "-"
        att = r.get("attempts") or []
        kept = (f"{r.get('chosen_attempt')} of {len(att)} (other load per run: "
                + ", ".join(f"{a['other_cores']:.2f}" for a in att) + ")") if att else "-"
        oc = r.get("other_cores")
        lines.append(f"| {name} | {r.get('date', '')} | {r.get('wall_total_s', '-')} s | {qs} | {la} | {cs} | "
                     f"{'-' if oc is None else f'{oc:.2f}'} | {kept} |")
    lines += ["", "etcd, the apiserver and the load generator (one Python process, the project's own "
              "`kubelab.client.rest.Client` over HTTPS with client certificates) share these CPUs; in the pod "
              "start benchmark, kubelab-cri, containerd and the benchmark's CRI client do. "
              "Each benchmark first waits (up to `BENCH_QUIET_WAIT` seconds) for the machine to be quiet, "
              "but other processes may start meanwhile: \"other load\" in the tables is how many cores the "
              "rest of the machine kept busy, on average, while a figure was measured (out of "
              f"{json.loads(sorted(machines)[0]).get('nproc')}). A run whose other load was above "
              "`BENCH_MAX_OTHER_CORES` (0.3) is repeated, up to `BENCH_ATTEMPTS` (3) runs within `BENCH_BUDGET_S` "
              "(240 s), and the least disturbed run is kept: the choice looks at the other load only, never at "
              "the figures, and every run's figures are in the result file. A figure measured with other load "
              "near or above 0.5 is disturbed and should be re-measured on a quiet machine before it is "
              "trusted.", ""]
    return lines


def write(res: dict[str, dict], out: Path) -> None:
    img_dir = out.parent / out.stem
    img_dir.mkdir(parents=True, exist_ok=True)
    rel_img = img_dir.name
    names = [n for n in ORDER if n in res] + [n for n in res if n not in ORDER]
    lines = ["# kubelab benchmarks", "",
             "Generated by `make bench` (`bench/report.py` from `bench/results/*.json`); do not edit by hand. "
             "Each API benchmark starts its own etcd and `kubelab-apiserver` on loopback ports, drives it with the "
             "project's REST client and stops everything when done; the pod start benchmark starts its own "
             "`kubelab-cri` and containerd side by side and drives both through CRI.", ""]
    lines += ["## Summary", ""]
    all_figs = []
    for n in names:
        for f in res[n].get("figures", []):
            if f.get("pass") is not None:
                all_figs.append(dict(f, _bench=n))
    lines += figures_table(all_figs, with_group=True)
    failed = [f for f in all_figs if f.get("pass") is False]
    lines += ["", f"{len(all_figs) - len(failed)} of {len(all_figs)} targets met."
              + (" Missed: " + "; ".join(f"{f['name']} ({fmt(f['value'], f['unit'])}, target {f['target']})"
                                        for f in failed) + "." if failed else ""), ""]
    missing = [n for n in ORDER if n not in res]
    if missing:
        lines += [f"Not run: {', '.join(missing)}.", ""]
    lines += machine_section({n: res[n] for n in names})

    for i, n in enumerate(names, 1):
        r = res[n]
        lines += [f"## {i}. {r.get('title', n)}", "", r.get("description", ""), "",
                  f"Script: `bench/bench_{n}.py`; raw result: `bench/results/{n}.json`.", ""]
        groups: dict[str, list[dict]] = {}
        for f in r.get("figures", []):
            groups.setdefault(f.get("group") or "", []).append(f)
        for g, figs in groups.items():
            if g:
                lines += [f"### {g}", ""]
            lines += figures_table(figs) + [""]
        lat = r.get("latency") or {}
        if lat:
            lines += ["### Latency percentiles", ""] + latency_table(lat) + [""]
            target = {"list_10k": 1.0, "watch_latency": 0.1, "dns": 0.005, "proxy_sync": 0.1}.get(n)
            svg = latency_svg(f"{r.get('title', n)}: latency", lat, target)
            (img_dir / f"{n}-latency.svg").write_text(svg)
            lines += [f"![{n} latency percentiles]({rel_img}/{n}-latency.svg)", ""]
        if n == "pod_crud" and r.get("rounds"):
            bars = []
            for c, rd in r["rounds"].items():
                for api_op, raw_op in (("create", "put"), ("get", "get"), ("delete", "delete")):
                    bars.append((f"{api_op} @{c}", rd["apiserver"][api_op]["throughput"],
                                 rd["etcd"][raw_op]["throughput"]))
            (img_dir / f"{n}-throughput.svg").write_text(throughput_svg("Throughput: apiserver vs raw etcd", bars))
            lines += [f"![{n} throughput]({rel_img}/{n}-throughput.svg)", "",
                      "### CPU per operation", "",
                      "CPU time each process spent during a phase divided by the operations done in it.", ""]
            lines += cpu_table_crud(r["rounds"]) + [""]
        if n == "list_10k" and r.get("phases"):
            lines += ["### CPU per phase", ""]
            lines += cpu_table_phases(r["phases"], {"fill": "create the pods (32 clients)",
                                                    "idle": "LIST, no background writes (5)", "plain": "LIST",
                                                    "rv0": "LIST rv=0", "paged": "LIST limit=500"}) + [""]
            bg = r["phases"].get("background") or {}
            if bg:
                lines += [f"Background writer: {fmt(bg.get('offered_qps'))} writes/s offered, "
                          f"{bg.get('errors', 0)} errors.", ""]
        if n == "watch_latency":
            d = r.get("delivery") or {}
            if d:
                lines += [f"Delivered {d.get('delivered')} of {d.get('expected')} expected events; per-watcher "
                          f"p99 ranged from {fmt(d.get('per_watcher_p99_min'), 's')} to "
                          f"{fmt(d.get('per_watcher_p99_max'), 's')}.", ""]
            if r.get("cpu_s"):
                lines += ["CPU during the measured writes: " + ", ".join(f"{k} {v:.1f} s"
                                                                        for k, v in r["cpu_s"].items()) + ".", ""]
        if n == "pod_start":
            lines += pod_start_details(r)
        if n == "dns":
            lines += dns_details(r)
            cpu = r.get("cpu_total_s") or {}
            line = (f"CPU used while timing ({r.get('measured_s', 0):.0f} s of wall time, pods started and "
                    "removed): " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items()) + ".") if cpu else ""
        else:
            line = cpu_line(r.get("cpu_total_s"), r.get("wall_total_s"))
        if line:
            lines += [line, ""]
    out.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(BENCH_DIR / "results"))
    p.add_argument("--out", default=str(TOP / "docs" / "benchmarks.md"))
    a = p.parse_args(argv)
    res = load(Path(a.results))
    if not res:
        print(f"report: no results in {a.results}", file=sys.stderr)
        return 1
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(res, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
