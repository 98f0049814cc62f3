"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) and the plugin registry.

    cfg = load_config(path)                 # or SchedulerConfig() for the defaults
    profiles = build_profiles(cfg, client)  # schedulerName -> Framework

Every profile starts from upstream's default plugins (multiPoint, with their default score
weights); `plugins.<point>.enabled/disabled` (and multiPoint) change that, "*" disables all, and
`pluginConfig` gives plugin arguments (NodeResourcesFit's scoringStrategy, InterPodAffinity's
hardPodAffinityWeight and ignorePreferredTermsOfExistingPods, PodTopologySpread's defaultConstraints
and defaultingType, DefaultPreemption's minCandidateNodesPercentage/Absolute). A plugin enabled
through multiPoint runs at every extension point it implements.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .framework import Framework, ProfilePlugins
from .plugins import (defaultbinder, defaultpreemption, imagelocality, interpodaffinity, nodeaffinity, nodename,
                      nodeports, noderesources, nodeunschedulable, podtopologyspread, prioritysort, tainttoleration)

Obj = dict[str, Any]

API_VERSION = "kubescheduler.config.k8s.io/v1"
DEFAULT_SCHEDULER = "default-scheduler"


class ConfigError(ValueError):
    pass


def _fit(args: Obj, client: Any) -> Any:
    strat = (args or {}).get("scoringStrategy") or {}
    res = tuple((r["name"], int(r.get("weight", 1))) for r in strat.get("resources") or []) or \
        noderesources.DEFAULT_RESOURCES
    return noderesources.NodeResourcesFit(strat.get("type") or "LeastAllocated", res)


def _balanced(args: Obj, client: Any) -> Any:
    res = tuple((r["name"], int(r.get("weight", 1))) for r in (args or {}).get("resources") or []) or \
        noderesources.DEFAULT_RESOURCES
    return noderesources.NodeResourcesBalancedAllocation(res)


def _int_arg(args: Obj, name: str, default: int) -> int:
    v = (args or {}).get(name, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{name}: Invalid value: {v!r}: must be an integer")
    return v


def _interpodaffinity(args: Obj, client: Any) -> Any:
    return interpodaffinity.InterPodAffinity(
        _int_arg(args, "hardPodAffinityWeight", interpodaffinity.DEFAULT_HARD_POD_AFFINITY_WEIGHT),
        bool((args or {}).get("ignorePreferredTermsOfExistingPods", False)))


def _podtopologyspread(args: Obj, client: Any) -> Any:
    args = args or {}
    dc = args.get("defaultConstraints") or []
    if not isinstance(dc, list) or not all(isinstance(c, dict) for c in dc):
        raise ValueError("defaultConstraints: Invalid value: must be a list of topology spread constraints")
    return podtopologyspread.PodTopologySpread(dc, args.get("defaultingType") or podtopologyspread.SYSTEM)


def _defaultpreemption(args: Obj, client: Any) -> Any:
    pct = _int_arg(args, "minCandidateNodesPercentage", defaultpreemption.MIN_CANDIDATE_NODES_PERCENTAGE)
    absolute = _int_arg(args, "minCandidateNodesAbsolute", defaultpreemption.MIN_CANDIDATE_NODES_ABSOLUTE)
    if not 0 <= pct <= 100:
        raise ValueError(f"minCandidateNodesPercentage: Invalid value: {pct}: not in valid range [0, 100]")
    if absolute < 0:
        raise ValueError(f"minCandidateNodesAbsolute: Invalid value: {absolute}: not in valid range [0, inf)")
    if pct == 0 and absolute == 0:
        raise ValueError("minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be zero")
    return defaultpreemption.DefaultPreemption(client, min_candidate_percentage=pct, min_candidate_absolute=absolute)


REGISTRY: dict[str, Callable[[Obj, Any], Any]] = {
    prioritysort.NAME: lambda a, c: prioritysort.PrioritySort(),
    nodeunschedulable.NAME: lambda a, c: nodeunschedulable.NodeUnschedulable(),
    nodename.NAME: lambda a, c: nodename.NodeName(),
    tainttoleration.NAME: lambda a, c: tainttoleration.TaintToleration(),
    nodeaffinity.NAME: lambda a, c: nodeaffinity.NodeAffinity(),
    nodeports.NAME: lambda a, c: nodeports.NodePorts(),
    noderesources.FIT: _fit,
    noderesources.BALANCED: _balanced,
    imagelocality.NAME: lambda a, c: imagelocality.ImageLocality(),
    podtopologyspread.NAME: _podtopologyspread,
    interpodaffinity.NAME: _interpodaffinity,
    defaultpreemption.NAME: _defaultpreemption,
    defaultbinder.NAME: lambda a, c: defaultbinder.DefaultBinder(c),
}

# upstream's default multiPoint plugins (those built so far) with their score weights
DEFAULT_PLUGINS: list[tuple[str, int]] = [
    (prioritysort.NAME, 0), (nodeunschedulable.NAME, 0), (nodename.NAME, 0), (tainttoleration.NAME, 3),
    (nodeaffinity.NAME, 2), (nodeports.NAME, 0), (noderesources.FIT, 1), (podtopologyspread.NAME, 2),
    (interpodaffinity.NAME, 2), (defaultpreemption.NAME, 0), (noderesources.BALANCED, 1), (imagelocality.NAME, 1),
    (defaultbinder.NAME, 0),
]

POINTS = ("queueSort", "preFilter", "filter", "postFilter", "preScore", "score", "reserve", "permit", "preBind",
          "bind")
_METHOD = {"queueSort": "less", "preFilter": "pre_filter", "filter": "filter", "postFilter": "post_filter",
           "preScore": "pre_score", "score": "score", "reserve": "reserve", "permit": "permit",
           "preBind": "pre_bind", "bind": "bind"}


@dataclass
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER
    plugins: Obj = field(default_factory=dict)
    plugin_config: dict[str, Obj] = field(default_factory=dict)
    percentage_of_nodes_to_score: int | None = None


@dataclass
class SchedulerConfig:
    profiles: list[Profile] = field(default_factory=lambda: [Profile()])
    percentage_of_nodes_to_score: int = 0
    leader_election: Obj = field(default_factory=dict)


def parse_config(doc: Obj) -> SchedulerConfig:
    if not isinstance(doc, dict):
        raise ConfigError("the configuration is not a YAML mapping")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "KubeSchedulerConfiguration":
        raise ConfigError(f"apiVersion/kind must be {API_VERSION}/KubeSchedulerConfiguration, "
                          f"not {doc.get('apiVersion')}/{doc.get('kind')}")
    pct = int(doc.get("percentageOfNodesToScore") or 0)
    if not 0 <= pct <= 100:
        raise ConfigError(f"percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]")
    profiles = []
    seen = set()
    for i, p in enumerate(doc.get("profiles") or [{}]):
        name = p.get("schedulerName") or DEFAULT_SCHEDULER
        if name in seen:
            raise ConfigError(f"profiles[{i}].schedulerName: Duplicate value: {name!r}")
        seen.add(name)
        pc = {}
        for c in p.get("pluginConfig") or []:
            if c.get("name") not in REGISTRY:
                raise ConfigError(f"profiles[{i}].pluginConfig: unknown plugin {c.get('name')!r}")
            pc[c["name"]] = c.get("args") or {}
        plugins = p.get("plugins") or {}
        for point, sets in plugins.items():
            if point != "multiPoint" and point not in POINTS:
                raise ConfigError(f"profiles[{i}].plugins: unknown extension point {point!r}")
            for e in (sets or {}).get("enabled") or []:
                if e.get("name") not in REGISTRY:
                    raise ConfigError(f"profiles[{i}].plugins.{point}.enabled: unknown plugin {e.get('name')!r}")
        profiles.append(Profile(name, plugins, pc, p.get("percentageOfNodesToScore")))
    return SchedulerConfig(profiles, pct, doc.get("leaderElection") or {})


def load_config(path: str | Path) -> SchedulerConfig:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    return parse_config(doc)


def _names(sets: Obj | None, key: str) -> list[Obj]:
    return list((sets or {}).get(key) or [])


def build_framework(profile: Profile, client: Any, default_pct: int = 0) -> Framework:
    # multiPoint: the defaults, minus disabled, plus enabled (with weights)
    mp = profile.plugins.get("multiPoint") or {}
    disabled_all = any(d.get("name") == "*" for d in _names(mp, "disabled"))
    disabled = {d["name"] for d in _names(mp, "disabled")}
    chosen: list[tuple[str, int]] = [] if disabled_all else [(n, w) for n, w in DEFAULT_PLUGINS if n not in disabled]
    for e in _names(mp, "enabled"):
        chosen = [(n, w) for n, w in chosen if n != e["name"]] + [(e["name"], int(e.get("weight") or 1))]
    instances: dict[str, Any] = {}

    def inst(name: str) -> Any:
        if name not in instances:
            instances[name] = REGISTRY[name](profile.plugin_config.get(name, {}), client)
        return instances[name]

    per_point: dict[str, list[tuple[str, int]]] = {p: [] for p in POINTS}
    for name, weight in chosen:
        obj = inst(name)
        for point in POINTS:
            if hasattr(obj, _METHOD[point]):
                per_point[point].append((name, weight or 1))
    # per-point overrides
    for point in POINTS:
        sets = profile.plugins.get(point) or {}
        dis = {d["name"] for d in _names(sets, "disabled")}
        if "*" in dis:
            per_point[point] = []
        else:
            per_point[point] = [(n, w) for n, w in per_point[point] if n not in dis]
        for e in _names(sets, "enabled"):
            per_point[point] = [(n, w) for n, w in per_point[point] if n != e["name"]]
            per_point[point].append((e["name"], int(e.get("weight") or 1)))
            inst(e["name"])
    pp = ProfilePlugins(
        queue_sort=inst(per_point["queueSort"][0][0]) if per_point["queueSort"] else None,
        pre_filter=[inst(n) for n, _ in per_point["preFilter"]], filter=[inst(n) for n, _ in per_point["filter"]],
        post_filter=[inst(n) for n, _ in per_point["postFilter"]],
        pre_score=[inst(n) for n, _ in per_point["preScore"]],
        score=[(inst(n), w) for n, w in per_point["score"]], reserve=[inst(n) for n, _ in per_point["reserve"]],
        permit=[inst(n) for n, _ in per_point["permit"]], pre_bind=[inst(n) for n, _ in per_point["preBind"]],
        bind=[inst(n) for n, _ in per_point["bind"]])
    pct = profile.percentage_of_nodes_to_score
    return Framework(profile.scheduler_name, pp, default_pct if pct is None else int(pct))


def build_profiles(cfg: SchedulerConfig, client: Any) -> dict[str, Framework]:
    try:
        return {p.scheduler_name: build_framework(p, client, cfg.percentage_of_nodes_to_score) for p in cfg.profiles}
    except ValueError as e:
        raise ConfigError(str(e)) from None
