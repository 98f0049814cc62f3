"""The scheduling queue (priority order, backoff, unschedulable pods moved by cluster events) and
the scheduler configuration (profiles, plugin sets and weights)."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.scheduler.config import ConfigError, SchedulerConfig, build_profiles, parse_config
from kubelab.scheduler.plugins.prioritysort import PrioritySort
from kubelab.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pod(name, priority=0):
    return {"metadata": {"name": name, "namespace": "d", "uid": name}, "spec": {"priority": priority}}


def make(clock):
    return SchedulingQueue(PrioritySort().less, clock=clock)


async def test_priority_then_arrival():
    c = Clock()
    q = make(c)
    for name, prio in (("low", 0), ("high", 10), ("low2", 0), ("mid", 5)):
        q.add(pod(name, prio))
        c.t += 1
    got = [(await q.pop()).key for _ in range(4)]
    assert got == ["d/high", "d/mid", "d/low", "d/low2"]


async def test_an_event_during_the_attempt_sends_the_pod_to_backoff_not_to_wait():
    c = Clock()
    q = make(c)
    q.add(pod("a"))
    qp = await q.pop()
    q.move_all_unschedulable("AssignedPodDelete")      # e.g. a preemption victim went meanwhile
    q.requeue_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where("d/a") == "backoff"
    q.add(pod("b"))
    qp = await q.pop()
    q.requeue_unschedulable(qp, {"NodeResourcesFit"})  # no event since it was popped
    assert q.where("d/b") == "unschedulable"
    assert q.counts() == {"active": 0, "backoff": 1, "unschedulable": 1, "inflight": 0}


async def test_unschedulable_waits_for_an_event_then_backs_off():
    c = Clock()
    q = make(c)
    q.add(pod("a"))
    qp = await q.pop()
    assert qp.attempts == 1 and q.where("d/a") == "inflight"
    q.requeue_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where("d/a") == "unschedulable"
    # an event for plugins that did not reject it leaves it alone
    assert q.move_all_unschedulable("NodeAdd", {"TaintToleration"}) == 0
    # one that may help moves it; its 1 s backoff has not passed yet
    assert q.move_all_unschedulable("NodeAdd", {"NodeResourcesFit"}) == 1
    assert q.where("d/a") == "backoff"
    c.t += 1.0
    qp = await asyncio.wait_for(q.pop(), 2)
    assert qp.key == "d/a" and qp.attempts == 2


async def test_errors_back_off_doubling_to_ten_seconds():
    c = Clock()
    q = make(c)
    q.add(pod("a"))
    qp = await q.pop()
    durations = []
    for _ in range(6):
        q.requeue_unschedulable(qp, set(), error=True)
        durations.append(round(qp.backoff_until - c.t, 3))
        c.t = qp.backoff_until
        qp = await asyncio.wait_for(q.pop(), 2)
    assert durations == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_deleted_pods_are_not_popped_and_updates_replace():
    c = Clock()
    q = make(c)
    q.add(pod("a"))
    q.add(pod("b"))
    q.delete(pod("a"))
    newer = pod("b", priority=3)
    q.add(newer)
    qp = await q.pop()
    assert qp.key == "d/b" and qp.pod is newer
    q.close()
    assert await q.pop() is None


def test_default_profile_plugins_and_weights():
    (fwk,) = build_profiles(SchedulerConfig(), None).values()
    assert fwk.name == "default-scheduler"
    assert [p.name for p in fwk.plugins.filter] == ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                                                    "NodePorts", "NodeResourcesFit", "PodTopologySpread",
                                                    "InterPodAffinity"]
    assert [p.name for p in fwk.plugins.pre_filter] == ["NodeResourcesFit", "PodTopologySpread", "InterPodAffinity"]
    assert [p.name for p in fwk.plugins.post_filter] == ["DefaultPreemption"]
    assert [(p.name, w) for p, w in fwk.plugins.score] == [("TaintToleration", 3), ("NodeAffinity", 2),
                                                          ("NodeResourcesFit", 1), ("PodTopologySpread", 2),
                                                          ("InterPodAffinity", 2),
                                                          ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1)]
    assert [p.name for p in fwk.plugins.bind] == ["DefaultBinder"] and fwk.plugins.queue_sort.name == "PrioritySort"


def test_profiles_from_a_configuration():
    cfg = parse_config({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "percentageOfNodesToScore": 30,
        "profiles": [{"schedulerName": "default-scheduler"},
                     {"schedulerName": "packer",
                      "plugins": {"score": {"disabled": [{"name": "ImageLocality"}],
                                            "enabled": [{"name": "NodeResourcesFit", "weight": 5}]}},
                      "pluginConfig": [{"name": "NodeResourcesFit",
                                        "args": {"scoringStrategy": {"type": "MostAllocated"}}}]}]})
    profiles = build_profiles(cfg, None)
    packer = profiles["packer"]
    assert packer.percentage_of_nodes_to_score == 30
    scores = {p.name: w for p, w in packer.plugins.score}
    assert "ImageLocality" not in scores and scores["NodeResourcesFit"] == 5
    fit = next(p for p in packer.plugins.filter if p.name == "NodeResourcesFit")
    assert fit.strategy == "MostAllocated"


def test_plugin_args_for_affinity_spread_and_preemption():
    cfg = parse_config({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "profiles": [{"pluginConfig": [
            {"name": "InterPodAffinity", "args": {"hardPodAffinityWeight": 7}},
            {"name": "PodTopologySpread", "args": {"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}]}},
            {"name": "DefaultPreemption", "args": {"minCandidateNodesPercentage": 20,
                                                   "minCandidateNodesAbsolute": 5}}]}]})
    (fwk,) = build_profiles(cfg, None).values()
    by_name = {p.name: p for p in fwk.instances()}
    assert by_name["InterPodAffinity"].hard_weight == 7
    spread = by_name["PodTopologySpread"]
    assert not spread.system_defaulted and spread.default_constraints[0]["maxSkew"] == 1
    assert (by_name["DefaultPreemption"].min_pct, by_name["DefaultPreemption"].min_abs) == (20, 5)


@pytest.mark.parametrize("name,args,msg", [
    ("InterPodAffinity", {"hardPodAffinityWeight": 101}, "hardPodAffinityWeight: Invalid value: 101"),
    ("PodTopologySpread", {"defaultingType": "Sometimes"}, "defaultingType: Unsupported value"),
    ("PodTopologySpread", {"defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                                   "whenUnsatisfiable": "DoNotSchedule"}]},
     'when .defaultingType is "System"'),
    ("DefaultPreemption", {"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}, "cannot both be zero"),
])
def test_bad_plugin_args(name, args, msg):
    cfg = parse_config({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
                        "profiles": [{"pluginConfig": [{"name": name, "args": args}]}]})
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        build_profiles(cfg, None)


@pytest.mark.parametrize("doc,msg", [
    ({"apiVersion": "v1", "kind": "Pod"}, "apiVersion/kind must be kubescheduler.config.k8s.io/v1"),
    ({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
      "percentageOfNodesToScore": 101}, "percentageOfNodesToScore: Invalid value: 101"),
    ({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
      "profiles": [{"plugins": {"filter": {"enabled": [{"name": "Telepathy"}]}}}]}, "unknown plugin 'Telepathy'"),
    ({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
      "profiles": [{}, {"schedulerName": "default-scheduler"}]}, "Duplicate value: 'default-scheduler'"),
])
def test_bad_configurations(doc, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_config(doc)
