"""The kubelet's eviction logic: flags, thresholds met with minimum reclaim and grace periods,
pressure conditions held for the transition period, ranking, messages and admission (upstream's
eviction helpers_test.go and eviction_manager_test.go cases)."""
import asyncio
from decimal import Decimal

import pytest

from kubelab.kubelet.eviction import EvictionConfig, EvictionManager, ThresholdError, observe, parse_pairs, \
    parse_thresholds
from kubelab.kubelet.eviction.ranking import admit, eviction_message, is_critical, rank
from kubelab.kubelet.eviction.thresholds import Observation, conditions_within_transition, thresholds_met

Mi = 1024 * 1024


def test_flags_parse_with_upstream_errors():
    ts = parse_thresholds(parse_pairs("memory.available<100Mi,nodefs.available<10%", "<"),
                          parse_pairs("memory.available<300Mi", "<"), {"memory.available": 90.0},
                          parse_pairs("memory.available=50Mi", "="))
    assert [(t.signal, t.hard, t.grace_period) for t in ts] == [
        ("memory.available", True, 0.0), ("allocatableMemory.available", True, 0.0),
        ("nodefs.available", True, 0.0), ("memory.available", False, 90.0)]
    assert ts[0].value.amount(0) == 100 * Mi and ts[0].min_reclaim.amount(0) == 50 * Mi
    assert ts[2].value.amount(1000) == 100
    assert parse_thresholds({"nodefs.available": "0%"}) == []          # ignored, as upstream
    for hard, msg in (({"memory.avail": "1Mi"}, "unsupported eviction signal memory.avail"),
                      ({"allocatableMemory.available": "1Mi"}, "unsupported eviction signal"),
                      ({"nodefs.available": "101%"}, "must be <= 100%"),
                      ({"nodefs.available": "-1%"}, "must be >= 0%"),
                      ({"memory.available": "-1Mi"}, "must be positive"),
                      ({"memory.available": "lots"}, "invalid quantity")):
        with pytest.raises(ThresholdError, match=msg):
            parse_thresholds(hard)
    with pytest.raises(ThresholdError, match="grace period must be specified for the soft eviction threshold"):
        parse_thresholds({}, {"memory.available": "1Gi"})
    with pytest.raises(ThresholdError, match="malformed pair"):
        parse_pairs("memory.available=1Gi", "<")


def test_min_reclaim_keeps_a_met_threshold_met():
    [t] = parse_thresholds({"nodefs.available": "1Gi"}, min_reclaim={"nodefs.available": "500Mi"})
    low = {"nodefs.available": Observation(900 * Mi, 10_000 * Mi)}
    above = {"nodefs.available": Observation(1200 * Mi, 10_000 * Mi)}
    assert thresholds_met([t], low) == [t]
    assert thresholds_met([t], above) == []
    assert thresholds_met([t], above, already_met=[t]) == [t]          # 1200Mi < 1Gi + 500Mi
    assert thresholds_met([t], {"nodefs.available": Observation(1600 * Mi, 10_000 * Mi)}, already_met=[t]) == []


def test_conditions_stay_for_the_transition_period():
    conds, seen = conditions_within_transition({"MemoryPressure"}, {}, 100.0, 30.0)
    assert conds == {"MemoryPressure"}
    conds, seen = conditions_within_transition(set(), seen, 120.0, 30.0)
    assert conds == {"MemoryPressure"}
    conds, seen = conditions_within_transition(set(), seen, 131.0, 30.0)
    assert conds == set()


def pod(name, *, mem_req=None, prio=None, uid=None, qos_limits=None, annotations=None, tolerations=None):
    res = {}
    if mem_req:
        res["requests"] = {"memory": mem_req}
    if qos_limits:
        res["limits"] = qos_limits
        res["requests"] = qos_limits
    spec = {"containers": [{"name": "c", "resources": res}]}
    if prio is not None:
        spec["priority"] = prio
    if tolerations:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": name, "namespace": "default", "uid": uid or name, "annotations": annotations or {}},
            "spec": spec}


def pstats(uid, mem=0, disk=0, procs=0):
    return {"podRef": {"uid": uid, "name": uid, "namespace": "default"},
            "containers": [{"name": "c", "memory": {"workingSetBytes": mem},
                            "rootfs": {"usedBytes": disk}, "logs": {"usedBytes": 0}}],
            "ephemeral-storage": {"usedBytes": disk, "inodesUsed": 1}, "process_stats": {"process_count": procs}}


def test_memory_ranking_exceeds_requests_then_priority_then_usage_above_request():
    pods = [pod("guaranteed", qos_limits={"memory": "500Mi", "cpu": "1"}), pod("small-be"),
            pod("big-be"), pod("burstable-over", mem_req="100Mi"), pod("high-prio-be", prio=1000)]
    stats = {"guaranteed": pstats("guaranteed", 400 * Mi), "small-be": pstats("small-be", 10 * Mi),
             "big-be": pstats("big-be", 300 * Mi), "burstable-over": pstats("burstable-over", 600 * Mi),
             "high-prio-be": pstats("high-prio-be", 900 * Mi)}
    assert [p["metadata"]["name"] for p in rank(pods, "memory", stats)] == [
        "burstable-over", "big-be", "small-be", "high-prio-be", "guaranteed"]
    # a pod without stats counts as exceeding its request
    assert rank([pod("a"), pod("nostats", mem_req="1Gi")], "memory", {"a": pstats("a", Mi)})[0]["metadata"][
        "name"] == "a"
    assert rank([pod("a", mem_req="1Gi"), pod("nostats", mem_req="1Gi")], "memory",
                {"a": pstats("a", Mi)})[0]["metadata"]["name"] == "nostats"


def test_disk_and_pid_ranking():
    pods = [pod("a"), pod("b"), pod("c", prio=-5)]
    stats = {"a": pstats("a", disk=10 * Mi, procs=50), "b": pstats("b", disk=90 * Mi, procs=3),
             "c": pstats("c", disk=1 * Mi, procs=1)}
    assert [p["metadata"]["name"] for p in rank(pods, "ephemeral-storage", stats)] == ["c", "b", "a"]
    assert [p["metadata"]["name"] for p in rank(pods, "pids", stats)] == ["c", "a", "b"]


def test_eviction_message_names_the_offending_container():
    p = pod("hog", mem_req="100Mi")
    msg, ann = eviction_message(p, "memory", pstats("hog", 300 * Mi), "100Mi", 50 * Mi)
    assert msg == ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
                   "Container c was using 300Mi, request is 100Mi, has larger consumption of memory. ")
    assert ann == {"offending_containers": "c", "offending_containers_usage": "300Mi", "starved_resource": "memory"}
    msg, _ = eviction_message(pod("x"), "memory", None, None, None)
    assert msg == "The node was low on resource: memory. "


def test_admission_under_pressure():
    be, burst = pod("be"), pod("burst", mem_req="10Mi")
    crit = pod("crit", prio=2_000_000_000)
    static = pod("static", annotations={"kubernetes.io/config.source": "file"})
    tol = pod("tol", tolerations=[{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
                                   "effect": "NoSchedule"}])
    assert admit(be, set()) is None
    assert admit(be, {"MemoryPressure"}) == "The node had condition: [MemoryPressure]. "
    assert admit(burst, {"MemoryPressure"}) is None and admit(tol, {"MemoryPressure"}) is None
    assert admit(burst, {"DiskPressure", "MemoryPressure"}) == "The node had condition: [DiskPressure MemoryPressure]. "
    assert admit(crit, {"DiskPressure"}) is None and admit(static, {"DiskPressure"}) is None
    assert is_critical(static) and is_critical(crit) and not is_critical(be)


def summary(avail, working_set, pods_ws=0, pods=()):
    return {"node": {"memory": {"availableBytes": avail, "workingSetBytes": working_set},
                     "systemContainers": [{"name": "pods", "memory": {"workingSetBytes": pods_ws}}],
                     "fs": {"availableBytes": 50 * Mi, "capacityBytes": 100 * Mi, "inodesFree": 90, "inodes": 100},
                     "rlimit": {"maxpid": 1000, "curproc": 100}},
            "pods": list(pods)}


def test_observations_from_a_summary():
    obs = observe(summary(200 * Mi, 800 * Mi, pods_ws=300 * Mi), 400 * Mi)
    assert obs["memory.available"] == Observation(200 * Mi, 1000 * Mi)
    assert obs["allocatableMemory.available"] == Observation(100 * Mi, 400 * Mi)
    assert obs["nodefs.available"] == obs["imagefs.available"] == Observation(50 * Mi, 100 * Mi)
    assert obs["nodefs.inodesFree"] == Observation(90, 100) and obs["pid.available"] == Observation(900, 1000)


def test_manager_evicts_one_ranked_pod_and_holds_the_condition():
    now = [0.0]
    cur = {"s": summary(500 * Mi, 500 * Mi)}
    pods = [pod("guaranteed", qos_limits={"memory": "500Mi", "cpu": "1"}), pod("hog"), pod("quiet"),
            pod("crit", prio=2_000_000_000)]
    evicted = []

    async def evict(p, grace, msg, ann):
        evicted.append((p["metadata"]["name"], grace, msg))
        return True

    async def get_summary():
        return cur["s"]
    cfg = EvictionConfig(thresholds=parse_thresholds({"memory.available": "100Mi"},
                                                     {"memory.available": "300Mi"}, {"memory.available": 60}),
                         pressure_transition_period=30, max_pod_grace_period=10)
    calls = []
    m = EvictionManager(cfg, summary=get_summary, allocatable_memory=lambda: None, active_pods=lambda: pods,
                        evict=evict, pod_gone=lambda uid: True, on_conditions=lambda: calls.append(1),
                        clock=lambda: now[0])

    async def run():
        assert await m.synchronize() == [] and m.conditions == set()
        stats = [pstats("guaranteed", 400 * Mi), pstats("hog", 700 * Mi), pstats("quiet", 5 * Mi),
                 pstats("crit", 2000 * Mi)]
        cur["s"] = summary(200 * Mi, 800 * Mi, pods=stats)        # soft threshold met, grace not yet passed
        assert await m.synchronize() == [] and m.conditions == {"MemoryPressure"} and calls == [1]
        now[0] = 61
        [p] = await m.synchronize()                     # soft: grace min(max-pod-grace-period, the pod's)
        assert p["metadata"]["name"] == "hog" and evicted[-1][1] == 10
        cur["s"] = summary(50 * Mi, 950 * Mi, pods=stats)         # hard: 1 s, at once
        now[0] = 62
        await m.synchronize()
        assert evicted[-1][:2] == ("hog", 1)
        assert evicted[-1][2].startswith("The node was low on resource: memory. Threshold quantity: 100Mi, "
                                         "available: 50Mi. Container c was using 700Mi")
        assert "crit" not in [e[0] for e in evicted]
        cur["s"] = summary(900 * Mi, 100 * Mi)
        now[0] = 70
        assert await m.synchronize() == [] and m.conditions == {"MemoryPressure"}     # transition period
        now[0] = 93
        assert await m.synchronize() == [] and m.conditions == set() and calls == [1, 1]
    asyncio.run(run())


def test_allocatable_keeps_the_hard_memory_and_nodefs_thresholds_back():
    from kubelab.kubelet.eviction import DEFAULT_HARD, hard_eviction_reservation
    cap = {"cpu": "2", "memory": "1000Mi", "ephemeral-storage": "100Gi", "pods": "110"}
    assert hard_eviction_reservation(parse_thresholds(DEFAULT_HARD), cap) == {
        "memory": str(100 * Mi), "ephemeral-storage": str(int(100 * 1024 * Mi * 0.1))}
    soft_only = parse_thresholds({}, {"memory.available": "1Gi"}, {"memory.available": 10})
    assert hard_eviction_reservation(soft_only, cap) == {}


def test_local_storage_limits():
    from kubelab.kubelet.eviction.ranking import local_storage_violation
    p = {"metadata": {"name": "p", "uid": "p"},
         "spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "10Mi"}},
                              {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
                  "containers": [{"name": "a", "resources": {"limits": {"ephemeral-storage": "50Mi"}}},
                                 {"name": "b"}]}}

    def st(scratch=0, ram=0, a=0, b=0):
        return {"volume": [{"name": "scratch", "usedBytes": scratch}, {"name": "ram", "usedBytes": ram}],
                "containers": [{"name": "a", "rootfs": {"usedBytes": a}, "logs": {"usedBytes": 0}},
                               {"name": "b", "rootfs": {"usedBytes": b}, "logs": {"usedBytes": 0}}],
                "ephemeral-storage": {"usedBytes": scratch + a + b}}
    assert local_storage_violation(p, st(scratch=5 * Mi, ram=5 * Mi, a=Mi)) is None       # tmpfs: not disk
    assert local_storage_violation(p, st(scratch=11 * Mi)) == 'Usage of EmptyDir volume "scratch" exceeds the limit "10Mi". '
    assert local_storage_violation(p, st(scratch=9 * Mi, b=42 * Mi)) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 50Mi. "
    p["spec"]["containers"][1]["resources"] = {"limits": {"ephemeral-storage": "100Mi"}}
    assert local_storage_violation(p, st(a=51 * Mi)) == 'Container a exceeded its local ephemeral storage limit "50Mi". '
    assert local_storage_violation(p, None) is None


def test_disk_pressure_reclaims_node_level_resources_before_evicting():
    """reclaimNodeLevelResources: dead containers and unused images go first; pods are evicted only
    when that does not bring the signal back above threshold + minimum reclaim."""
    fs_avail = {"v": 5 * Mi}                               # of 100Mi: nodefs.available<10% is met

    def disk_summary():
        s = summary(900 * Mi, 100 * Mi, pods=[pstats("hog", 10 * Mi)])
        s["node"]["fs"]["availableBytes"] = fs_avail["v"]
        return s

    async def get_summary():
        return disk_summary()
    reclaimed, evicted = [], []

    async def reclaim(signal):
        reclaimed.append(signal)
        fs_avail["v"] += freed["v"]

    async def evict(p, grace, msg, ann):
        evicted.append(p["metadata"]["name"])
        return True
    cfg = EvictionConfig(thresholds=parse_thresholds({"nodefs.available": "10%"}, {}, {},
                                                     {"nodefs.available": "5Mi"}))
    m = EvictionManager(cfg, summary=get_summary, allocatable_memory=lambda: None, active_pods=lambda: [pod("hog")],
                        evict=evict, pod_gone=lambda uid: True, reclaim=reclaim)
    freed = {"v": 11 * Mi}                                 # back to 16Mi: above 10Mi + 5Mi minimum reclaim
    assert asyncio.run(m.synchronize()) == [] and reclaimed == ["nodefs.available"] and evicted == []
    assert m.conditions == {"DiskPressure"}
    fs_avail["v"], freed["v"] = 5 * Mi, 6 * Mi             # 11Mi: above the threshold, not above 10 + 5
    assert [p["metadata"]["name"] for p in asyncio.run(m.synchronize())] == ["hog"]
    assert reclaimed == ["nodefs.available"] * 2


def test_memory_pressure_does_not_reclaim_disk():
    reclaimed = []

    async def reclaim(signal):
        reclaimed.append(signal)

    async def evict(p, grace, msg, ann):
        return True

    async def get_summary():
        return summary(50 * Mi, 950 * Mi, pods=[pstats("hog", 700 * Mi)])
    m = EvictionManager(EvictionConfig(thresholds=parse_thresholds({"memory.available": "100Mi"})),
                        summary=get_summary, allocatable_memory=lambda: None, active_pods=lambda: [pod("hog")],
                        evict=evict, pod_gone=lambda uid: True, reclaim=reclaim)
    assert len(asyncio.run(m.synchronize())) == 1 and reclaimed == []


def test_memcg_notification_level_and_description():
    from kubelab.kubelet.eviction.notifier import MemoryThresholdNotifier, memcg_threshold
    from kubelab.kubelet.eviction.thresholds import Threshold, Value
    Mi = 1 << 20
    hard = Threshold("allocatableMemory.available", Value(quantity=Decimal(100 * Mi)))
    # the working set may reach capacity - threshold; usage also counts the inactive file pages
    assert memcg_threshold(hard, usage=300 * Mi, working_set=250 * Mi, capacity=500 * Mi) == 450 * Mi
    pct = Threshold("memory.available", Value(percentage=0.1), grace_period=30.0, hard=False)
    assert memcg_threshold(pct, usage=10 * Mi, working_set=10 * Mi, capacity=1000 * Mi) == 900 * Mi
    n = MemoryThresholdNotifier.__new__(MemoryThresholdNotifier)
    n.threshold = hard
    assert n.description() == "hard allocatable memory eviction threshold"
    n.threshold = pct
    assert n.description() == "soft memory eviction threshold"


def test_memcg_notification_flag():
    from kubelab.cmd.kubelet import _eviction_config, build_parser
    for argv, want in (([], False), (["--kernel-memcg-notification"], True),
                       (["--kernel-memcg-notification=true"], True), (["--kernel-memcg-notification=false"], False)):
        assert _eviction_config(build_parser().parse_args(argv)).kernel_memcg_notification is want
