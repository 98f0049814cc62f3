"""Server-side Table printers: columns and cells as upstream's printers produce them."""
from __future__ import annotations

import datetime as dt

import pytest

from kubelab.api import tables
from kubelab.api.tables import (
    crd_cells,
    crd_columns,
    format_label_selector,
    human_duration,
    jsonpath_find,
    table_cells,
    table_columns,
    translate_timestamp,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def ago(**kw: float) -> str:
    """An RFC3339 timestamp the given time before NOW."""
    return (NOW - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def names(group: str, kind: str, wide: bool = True) -> list[str]:
    return [c["name"] for c in table_columns(group, kind) if wide or c["priority"] == 0]


def meta(name: str, **age: float) -> dict:
    return {"name": name, "namespace": "default", "uid": "u-" + name,
            "creationTimestamp": ago(**(age or {"minutes": 5}))}


# ---------------------------------------------------------------------------------------------
# HumanDuration


@pytest.mark.parametrize("delta,expected", [
    (dt.timedelta(seconds=-3), "<invalid>"),
    (dt.timedelta(seconds=-2), "<invalid>"),
    (dt.timedelta(seconds=-1.5), "0s"),  # up to ~2s of clock skew counts as now
    (dt.timedelta(seconds=-1), "0s"),
    (dt.timedelta(0), "0s"),
    (dt.timedelta(seconds=5), "5s"),
    (dt.timedelta(seconds=5.9), "5s"),
    (dt.timedelta(seconds=119), "119s"),
    (dt.timedelta(seconds=120), "2m"),
    (dt.timedelta(seconds=130), "2m10s"),
    (dt.timedelta(minutes=3, seconds=10), "3m10s"),
    (dt.timedelta(minutes=9, seconds=59), "9m59s"),
    (dt.timedelta(minutes=10), "10m"),
    (dt.timedelta(minutes=10, seconds=30), "10m"),
    (dt.timedelta(minutes=179, seconds=59), "179m"),
    (dt.timedelta(hours=3), "3h"),
    (dt.timedelta(hours=3, minutes=5), "3h5m"),
    (dt.timedelta(hours=5), "5h"),
    (dt.timedelta(hours=7, minutes=59), "7h59m"),
    (dt.timedelta(hours=8), "8h"),
    (dt.timedelta(hours=8, minutes=59), "8h"),
    (dt.timedelta(hours=47, minutes=59), "47h"),
    (dt.timedelta(hours=48), "2d"),
    (dt.timedelta(days=2, hours=3), "2d3h"),
    (dt.timedelta(days=7, hours=23), "7d23h"),
    (dt.timedelta(days=8), "8d"),
    (dt.timedelta(days=8, hours=23), "8d"),
    (dt.timedelta(days=729), "729d"),
    (dt.timedelta(days=730), "2y"),
    (dt.timedelta(days=731), "2y1d"),
    (dt.timedelta(days=365 * 8 - 1), "7y364d"),
    (dt.timedelta(days=365 * 8), "8y"),
    (dt.timedelta(days=365 * 10 + 100), "10y"),
])
def test_human_duration_boundaries(delta: dt.timedelta, expected: str) -> None:
    assert human_duration(delta) == expected


def test_translate_timestamp_unknown_and_naive_now() -> None:
    assert translate_timestamp(None, NOW) == "<unknown>"
    assert translate_timestamp("", NOW) == "<unknown>"
    assert translate_timestamp("not a time", NOW) == "<unknown>"
    naive_now = NOW.replace(tzinfo=None)
    assert translate_timestamp(ago(hours=5), naive_now) == "5h"
    # offsets and fractional seconds (MicroTime) are understood
    assert translate_timestamp("2024-05-01T13:55:00+02:00", NOW) == "5m"
    assert translate_timestamp("2024-05-01T11:59:50.123456Z", NOW) == "9s"


# ---------------------------------------------------------------------------------------------
# Pod


def test_pod_columns_and_wide_priority() -> None:
    cols = table_columns("", "Pod")
    assert [c["name"] for c in cols] == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                                         "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0]["format"] == "name" and cols[0]["type"] == "string"
    assert set(cols[0]) == {"name", "type", "format", "description", "priority"}
    assert all(c["description"] for c in cols)


def test_running_pod_wide_cells() -> None:
    pod = {
        "metadata": meta("web-7d4b9c8f5-x2k4p", hours=2, minutes=3),
        "spec": {"nodeName": "node-1", "containers": [{"name": "nginx"}, {"name": "log"}],
                 "readinessGates": [{"conditionType": "example.com/lb-ready"}, {"conditionType": "example.com/x"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/lb-ready", "status": "True"},
                           {"type": "example.com/x", "status": "False"}],
            "containerStatuses": [
                {"name": "nginx", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(hours=2)}}},
                {"name": "log", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": ago(hours=2)}}},
            ],
        },
    }
    assert table_cells("", "Pod", pod, NOW) == [
        "web-7d4b9c8f5-x2k4p", "1/2", "Running", "0", "123m", "10.244.1.5", "node-1", "<none>", "1/2"]


def test_pending_pod_placeholders() -> None:
    pod = {"metadata": meta("pending", seconds=7), "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": "Pending", "nominatedNodeName": "node-2",
                      "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}
    assert table_cells("", "Pod", pod, NOW) == ["pending", "0/1", "Pending", "0", "7s", "<none>", "<none>",
                                                "node-2", "<none>"]


def test_scheduling_gated_pod() -> None:
    pod = {"metadata": meta("gated"), "spec": {"containers": [{"name": "a"}], "schedulingGates": [{"name": "g"}]},
           "status": {"phase": "Pending",
                      "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}
    assert table_cells("", "Pod", pod, NOW)[2] == "SchedulingGated"


def test_crashloop_pod_with_restarts() -> None:
    pod = {
        "metadata": meta("crash", hours=1),
        "spec": {"nodeName": "node-2", "containers": [{"name": "app"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.2.9"}],
            "containerStatuses": [{
                "name": "app", "ready": False, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(minutes=5, seconds=2),
                                             "finishedAt": ago(minutes=5)}},
            }],
        },
    }
    assert table_cells("", "Pod", pod, NOW)[:5] == ["crash", "0/1", "CrashLoopBackOff", "3 (5m ago)", "60m"]


def test_restarts_take_latest_termination_over_all_containers() -> None:
    pod = {
        "metadata": meta("two", hours=3),
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(hours=2)}}},
            {"name": "b", "ready": True, "restartCount": 1, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=3, seconds=10)}}},
        ]},
    }
    assert table_cells("", "Pod", pod, NOW)[:4] == ["two", "2/2", "Running", "3 (3m10s ago)"]


def test_restarts_without_termination_time_are_a_plain_count() -> None:
    pod = {"metadata": meta("p"), "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": "Running", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 4, "state": {"running": {}}}]}}
    assert table_cells("", "Pod", pod, NOW)[3] == "4"


@pytest.mark.parametrize("statuses,expected", [
    # first init container still running
    ([{"name": "init-db", "state": {"running": {}}}, {"name": "init-cache", "state": {"waiting": {"reason": "PodInitializing"}}}],
     "Init:0/2"),
    # first done, second waiting to start
    ([{"name": "init-db", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
      {"name": "init-cache", "state": {"waiting": {"reason": "PodInitializing"}}}], "Init:1/2"),
    ([{"name": "init-db", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}], "Init:Error"),
    ([{"name": "init-db", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}], "Init:CrashLoopBackOff"),
    ([{"name": "init-db", "state": {"terminated": {"exitCode": 137, "signal": 9}}}], "Init:Signal:9"),
    ([{"name": "init-db", "state": {"terminated": {"exitCode": 2}}}], "Init:ExitCode:2"),
])
def test_init_container_status(statuses: list, expected: str) -> None:
    pod = {
        "metadata": meta("init"),
        "spec": {"initContainers": [{"name": "init-db"}, {"name": "init-cache"}], "containers": [{"name": "app"}]},
        "status": {"phase": "Pending",
                   "conditions": [{"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
                   "initContainerStatuses": statuses,
                   "containerStatuses": [{"name": "app", "ready": False, "restartCount": 0,
                                          "state": {"waiting": {"reason": "PodInitializing"}}}]},
    }
    cells = table_cells("", "Pod", pod, NOW)
    assert cells[1:4] == ["0/1", expected, "0"]


def test_init_container_restarts_counted_while_initializing() -> None:
    pod = {
        "metadata": meta("init"),
        "spec": {"initContainers": [{"name": "init-db"}], "containers": [{"name": "app"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "init-db", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(seconds=30)}}}],
            "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]},
    }
    assert table_cells("", "Pod", pod, NOW)[1:4] == ["0/1", "Init:CrashLoopBackOff", "2 (30s ago)"]


def test_sidecar_init_container_counts_as_container() -> None:
    pod = {
        "metadata": meta("sidecar"),
        "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
                 "containers": [{"name": "app"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "proxy", "ready": True, "started": True, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=4)}}},
                {"name": "setup", "ready": False, "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=50)}}},
            ],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}],
        },
    }
    # the regular init container's restarts no longer count once the pod is initialized
    assert table_cells("", "Pod", pod, NOW)[1:4] == ["2/2", "Running", "1 (4m ago)"]


def test_terminating_pod() -> None:
    pod = {
        "metadata": {**meta("web"), "deletionTimestamp": ago(seconds=-30), "deletionGracePeriodSeconds": 30},
        "spec": {"containers": [{"name": "nginx"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "nginx", "ready": True, "restartCount": 0, "state": {"running": {}}}]},
    }
    assert table_cells("", "Pod", pod, NOW)[1:3] == ["1/1", "Terminating"]


def test_terminating_pod_on_lost_node_is_unknown() -> None:
    pod = {"metadata": {**meta("lost"), "deletionTimestamp": ago(minutes=1)}, "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": "Running", "reason": "NodeLost"}}
    assert table_cells("", "Pod", pod, NOW)[2] == "Unknown"


def test_completed_pod_and_deleted_completed_pod() -> None:
    pod = {
        "metadata": meta("job-abc12"),
        "spec": {"containers": [{"name": "main"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "main", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": ago(minutes=1)}}}]},
    }
    assert table_cells("", "Pod", pod, NOW)[1:4] == ["0/1", "Completed", "0"]
    pod["metadata"]["deletionTimestamp"] = ago(seconds=5)
    assert table_cells("", "Pod", pod, NOW)[2] == "Completed"  # terminal phases never show Terminating


def test_failed_container_without_reason() -> None:
    pod = {"metadata": meta("f"), "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": "Failed", "containerStatuses": [
               {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}}
    assert table_cells("", "Pod", pod, NOW)[2] == "ExitCode:3"
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["signal"] = 15
    assert table_cells("", "Pod", pod, NOW)[2] == "Signal:15"


def test_completed_container_with_running_sibling() -> None:
    statuses = [
        {"name": "job", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "helper", "ready": True, "restartCount": 0, "state": {"running": {}}},
    ]
    pod = {"metadata": meta("p"), "spec": {"containers": [{"name": "job"}, {"name": "helper"}]},
           "status": {"phase": "Running", "containerStatuses": statuses,
                      "conditions": [{"type": "Ready", "status": "False"}]}}
    assert table_cells("", "Pod", pod, NOW)[1:3] == ["1/2", "NotReady"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert table_cells("", "Pod", pod, NOW)[2] == "Running"


def test_evicted_pod_shows_status_reason() -> None:
    pod = {"metadata": meta("ev"), "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}}
    assert table_cells("", "Pod", pod, NOW)[2] == "Evicted"


# ---------------------------------------------------------------------------------------------
# Node


def _node(**over: object) -> dict:
    node = {
        "metadata": {**meta("cp-1", days=2, hours=3),
                     "labels": {"kubernetes.io/hostname": "cp-1", "node-role.kubernetes.io/control-plane": "",
                                "kubernetes.io/role": "master", "node-role.kubernetes.io/": ""}},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.56.10"}, {"type": "Hostname", "address": "cp-1"}],
            "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "kubelab://0.1.0"},
        },
    }
    node.update(over)
    return node


def test_node_columns() -> None:
    assert names("", "Node", wide=False) == ["Name", "Status", "Roles", "Age", "Version"]
    assert names("", "Node")[5:] == ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]


def test_node_with_roles() -> None:
    assert table_cells("", "Node", _node(), NOW) == [
        "cp-1", "Ready", "control-plane,master", "2d3h", "v1.30.0", "192.168.56.10", "<none>",
        "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "kubelab://0.1.0"]


def test_cordoned_not_ready_and_unknown_nodes() -> None:
    node = _node(spec={"unschedulable": True})
    assert table_cells("", "Node", node, NOW)[1] == "Ready,SchedulingDisabled"
    node["status"]["conditions"][1]["status"] = "Unknown"
    assert table_cells("", "Node", node, NOW)[1] == "NotReady,SchedulingDisabled"
    bare = {"metadata": meta("new"), "spec": {}, "status": {}}
    assert table_cells("", "Node", bare, NOW) == ["new", "Unknown", "<none>", "5m", "", "<none>", "<none>",
                                                  "<unknown>", "<unknown>", "<unknown>"]


# ---------------------------------------------------------------------------------------------
# Service


def _svc(name: str, spec: dict, status: dict | None = None) -> dict:
    return {"metadata": meta(name, days=3), "spec": spec, "status": status or {"loadBalancer": {}}}


def test_service_columns() -> None:
    assert names("", "Service") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert [c["priority"] for c in table_columns("", "Service")][-1] == 1


def test_cluster_ip_service() -> None:
    svc = _svc("web", {"type": "ClusterIP", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                       "selector": {"app": "web", "tier": "frontend"},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                                 {"name": "dns", "port": 53, "protocol": "UDP"}]})
    assert table_cells("", "Service", svc, NOW) == [
        "web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP,53/UDP", "3d", "app=web,tier=frontend"]


def test_node_port_service() -> None:
    svc = _svc("np", {"type": "NodePort", "clusterIPs": ["10.96.4.4"], "selector": {"app": "np"},
                      "externalIPs": ["192.168.56.200"],
                      "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                {"port": 443, "nodePort": 30443, "protocol": "TCP"}]})
    assert table_cells("", "Service", svc, NOW)[1:5] == ["NodePort", "10.96.4.4", "192.168.56.200",
                                                         "80:30080/TCP,443:30443/TCP"]


def test_load_balancer_service_pending_then_assigned() -> None:
    spec = {"type": "LoadBalancer", "clusterIPs": ["10.96.7.7"],
            "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}], "selector": {"app": "lb"}}
    assert table_cells("", "Service", _svc("lb", spec), NOW)[3:5] == ["<pending>", "80:31234/TCP"]
    status = {"loadBalancer": {"ingress": [{"ip": "192.168.56.241"}, {"hostname": "lb.example.com"},
                                           {"ip": "192.168.56.240"}, {"ip": "192.168.56.241"}]}}
    # sorted, de-duplicated, never clipped (the server prints wide)
    assert table_cells("", "Service", _svc("lb", spec, status), NOW)[3] == \
        "192.168.56.240,192.168.56.241,lb.example.com"
    spec["externalIPs"] = ["10.0.0.9"]
    assert table_cells("", "Service", _svc("lb", spec, status), NOW)[3] == \
        "192.168.56.240,192.168.56.241,lb.example.com,10.0.0.9"


def test_headless_external_name_and_portless_services() -> None:
    headless = _svc("db", {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                           "ports": [{"port": 5432, "protocol": "TCP"}]})
    assert table_cells("", "Service", headless, NOW)[1:5] == ["ClusterIP", "None", "<none>", "5432/TCP"]
    ext = _svc("ext", {"type": "ExternalName", "externalName": "db.example.com"})
    assert table_cells("", "Service", ext, NOW)[1:7] == ["ExternalName", "<none>", "db.example.com", "<none>",
                                                         "3d", "<none>"]
    # only the legacy single clusterIP field set: still shown
    legacy = _svc("k", {"type": "ClusterIP", "clusterIP": "10.96.0.1", "ports": [{"port": 443, "protocol": "TCP"}]})
    assert table_cells("", "Service", legacy, NOW)[2] == "10.96.0.1"


# ---------------------------------------------------------------------------------------------
# workloads


def test_deployment() -> None:
    dep = {
        "metadata": meta("web", hours=5),
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "web"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                                                   {"key": "canary", "operator": "DoesNotExist"}]},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "frontend"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                                      {"name": "log", "image": "busybox:1.36"}]}}},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    }
    assert names("apps", "Deployment", wide=False) == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table_cells("apps", "Deployment", dep, NOW) == [
        "web", "2/3", 3, 2, "5h", "nginx,log", "nginx:1.25,busybox:1.36", "app=web,!canary,tier in (backend,frontend)"]
    fresh = {"metadata": meta("new", seconds=3), "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                                                          "template": {"spec": {"containers": []}}}}
    assert table_cells("apps", "Deployment", fresh, NOW)[:5] == ["new", "0/0", 0, 0, "3s"]


def test_replicaset_daemonset_statefulset() -> None:
    tmpl = {"spec": {"containers": [{"name": "c", "image": "img:1"}], "nodeSelector": {"kubernetes.io/os": "linux"}}}
    rs = {"metadata": meta("web-7d4b9c8f5"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                                      "template": tmpl},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert table_cells("apps", "ReplicaSet", rs, NOW) == ["web-7d4b9c8f5", 2, 2, 1, "5m", "c", "img:1", "app=web"]
    ds = {"metadata": meta("proxy"), "spec": {"selector": {"matchLabels": {"k8s-app": "proxy"}}, "template": tmpl},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert names("apps", "DaemonSet", wide=False) == ["Name", "Desired", "Current", "Ready", "Up-to-date",
                                                      "Available", "Node Selector", "Age"]
    assert table_cells("apps", "DaemonSet", ds, NOW) == [
        "proxy", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "5m", "c", "img:1", "k8s-app=proxy"]
    sts = {"metadata": meta("db"), "spec": {"replicas": 3, "template": tmpl}, "status": {"readyReplicas": 1}}
    assert names("apps", "StatefulSet", wide=False) == ["Name", "Ready", "Age"]
    assert table_cells("apps", "StatefulSet", sts, NOW) == ["db", "1/3", "5m", "c", "img:1"]


def test_controller_revision() -> None:
    cr = {"metadata": {**meta("proxy-6b9f"), "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "uid": "x", "controller": True}]},
        "revision": 2}
    assert table_cells("apps", "ControllerRevision", cr, NOW) == ["proxy-6b9f", "daemonset.apps/proxy", 2, "5m"]
    orphan = {"metadata": meta("o"), "revision": 1}
    assert table_cells("apps", "ControllerRevision", orphan, NOW)[1] == "<none>"


def test_jobs() -> None:
    done = {"metadata": meta("pi", minutes=3),
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "startTime": ago(minutes=3), "completionTime": ago(minutes=2, seconds=35),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}}
    assert names("batch", "Job", wide=False) == ["Name", "Status", "Completions", "Duration", "Age"]
    assert table_cells("batch", "Job", done, NOW) == [
        "pi", "Complete", "1/1", "25s", "3m", "pi", "perl:5.34", "batch.kubernetes.io/controller-uid=u1"]
    running = {"metadata": meta("work", minutes=3), "spec": {"parallelism": 3, "template": {"spec": {"containers": []}}},
               "status": {"startTime": ago(minutes=3, seconds=10), "active": 3}}
    assert table_cells("batch", "Job", running, NOW)[1:4] == ["Running", "0/1 of 3", "3m10s"]
    failed = {"metadata": meta("bad"), "spec": {"completions": 2},
              "status": {"failed": 7, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    assert table_cells("batch", "Job", failed, NOW)[1:4] == ["Failed", "0/2", ""]
    suspended = {"metadata": meta("s"), "spec": {"completions": 1, "suspend": True},
                 "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}
    assert table_cells("batch", "Job", suspended, NOW)[1] == "Suspended"


def test_cronjob() -> None:
    cj = {"metadata": meta("hello", days=1),
          "spec": {"schedule": "*/1 * * * *", "suspend": False,
                   "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
          "status": {"active": [{"name": "hello-28577"}], "lastScheduleTime": ago(seconds=42)}}
    assert names("batch", "CronJob", wide=False) == ["Name", "Schedule", "Timezone", "Suspend", "Active",
                                                     "Last Schedule", "Age"]
    assert table_cells("batch", "CronJob", cj, NOW) == [
        "hello", "*/1 * * * *", "<none>", "False", 1, "42s", "24h", "hello", "busybox", "<none>"]
    cj["spec"]["timeZone"] = "Etc/UTC"
    del cj["status"]
    assert table_cells("batch", "CronJob", cj, NOW)[2:6] == ["Etc/UTC", "False", 0, "<none>"]


# ---------------------------------------------------------------------------------------------
# config, storage, networking


def test_configmap_secret_serviceaccount_namespace() -> None:
    cm = {"metadata": meta("kube-root-ca.crt"), "data": {"ca.crt": "..."}, "binaryData": {"b": "AA=="}}
    assert table_cells("", "ConfigMap", cm, NOW) == ["kube-root-ca.crt", 2, "5m"]
    sec = {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eQ=="}}
    assert names("", "Secret") == ["Name", "Type", "Data", "Age"]
    assert table_cells("", "Secret", sec, NOW) == ["tls", "kubernetes.io/tls", 2, "5m"]
    assert table_cells("", "ServiceAccount", {"metadata": meta("default")}, NOW) == ["default", 0, "5m"]
    ns = {"metadata": meta("kube-system", days=40), "status": {"phase": "Active"}}
    assert table_cells("", "Namespace", ns, NOW) == ["kube-system", "Active", "40d"]


def test_endpoints_and_slices() -> None:
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.7"}], "ports": [{"port": 8080, "protocol": "TCP"}]},
        {"addresses": [{"ip": "fd00::3"}, {"ip": "10.244.3.3"}], "ports": [{"port": 8080}]}]}
    assert table_cells("", "Endpoints", ep, NOW) == ["web", "10.244.1.5:8080,10.244.2.7:8080,[fd00::3]:8080 + 1 more...",
                                                     "5m"]
    assert table_cells("", "Endpoints", {"metadata": meta("none")}, NOW)[1] == "<none>"
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "10.244.1.9"}]}]}
    assert table_cells("", "Endpoints", headless, NOW)[1] == "10.244.1.9"
    sl = {"metadata": meta("web-abcde"), "addressType": "IPv4",
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "named"}, {}],
          "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.2.7"]}]}
    assert names("discovery.k8s.io", "EndpointSlice") == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert table_cells("discovery.k8s.io", "EndpointSlice", sl, NOW) == [
        "web-abcde", "IPv4", "8080,named,*", "10.244.1.5,10.244.2.7", "5m"]
    empty = {"metadata": meta("e"), "addressType": "IPv4"}
    assert table_cells("discovery.k8s.io", "EndpointSlice", empty, NOW)[2:4] == ["<unset>", "<unset>"]


def test_pv_and_pvc() -> None:
    pv = {"metadata": meta("pv-1"), "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                                             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                                             "claimRef": {"namespace": "default", "name": "data"},
                                             "volumeMode": "Filesystem"},
          "status": {"phase": "Bound"}}
    assert table_cells("", "PersistentVolume", pv, NOW) == [
        "pv-1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "", "5m", "Filesystem"]
    pvc = {"metadata": meta("data"), "spec": {"volumeName": "pv-1", "storageClassName": "local",
                                              "resources": {"requests": {"storage": "5Gi"}}},
           "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}}
    assert table_cells("", "PersistentVolumeClaim", pvc, NOW) == [
        "data", "Bound", "pv-1", "10Gi", "RWO", "local", "<unset>", "5m", "<unset>"]
    pending = {"metadata": {**meta("p"), "deletionTimestamp": ago(seconds=1)}, "spec": {},
               "status": {"phase": "Pending"}}
    assert table_cells("", "PersistentVolumeClaim", pending, NOW)[1:5] == ["Terminating", "", "", ""]


def test_resource_quota() -> None:
    rq = {"metadata": meta("compute"), "status": {
        "hard": {"requests.cpu": "1", "pods": "10", "limits.memory": "2Gi", "limits.cpu": "2"},
        "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}}
    assert table_cells("", "ResourceQuota", rq, NOW) == [
        "compute", "pods: 3/10, requests.cpu: 500m/1", "limits.cpu: 1/2, limits.memory: 0/2Gi", "5m"]


def test_ingress_networkpolicy_storageclass() -> None:
    ing = {"metadata": meta("web"), "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                                             "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.240"}]}}}
    assert table_cells("networking.k8s.io", "Ingress", ing, NOW) == [
        "web", "nginx", "a.example.com,b.example.com", "192.168.56.240", "80, 443", "5m"]
    np = {"metadata": meta("deny"), "spec": {"podSelector": {}}}
    assert table_cells("networking.k8s.io", "NetworkPolicy", np, NOW) == ["deny", "<none>", "5m"]
    sc = {"metadata": {**meta("standard"), "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
          "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}
    assert table_cells("storage.k8s.io", "StorageClass", sc, NOW) == [
        "standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "5m"]


# ---------------------------------------------------------------------------------------------
# events


def test_core_event() -> None:
    ev = {"metadata": meta("web.17c9"), "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                                                           "fieldPath": "spec.containers{nginx}"},
          "reason": "Pulled", "message": "Successfully pulled image \"nginx\"\n", "type": "Normal",
          "source": {"component": "kubelet", "host": "node-1"},
          "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(minutes=2), "count": 4}
    assert names("", "Event", wide=False) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert names("", "Event")[4:] == ["Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    assert table_cells("", "Event", ev, NOW) == [
        "2m", "Normal", "Pulled", "pod/web", "spec.containers{nginx}", "kubelet, node-1",
        "Successfully pulled image \"nginx\"", "10m", 4, "web.17c9"]


def test_new_style_events_in_both_groups() -> None:
    core = {"metadata": meta("x.1"), "involvedObject": {"kind": "Node", "name": "node-1"}, "reason": "Starting",
            "type": "Normal", "eventTime": "2024-05-01T11:59:00.000000Z", "reportingComponent": "kube-proxy",
            "reportingInstance": "kube-proxy-node-1", "source": {}}
    assert table_cells("", "Event", core, NOW) == [
        "60s", "Normal", "Starting", "node/node-1", "", "kube-proxy, kube-proxy-node-1", "", "60s", 1, "x.1"]
    new = {"metadata": meta("web.1"), "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet",
           "note": "Scaled up replica set web-7d4 to 3", "type": "Normal", "eventTime": "2024-05-01T11:50:00.000000Z",
           "reportingController": "deployment-controller", "reportingInstance": "",
           "series": {"count": 5, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}}
    assert table_cells("events.k8s.io", "Event", new, NOW) == [
        "30s", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller",
        "Scaled up replica set web-7d4 to 3", "10m", 5, "web.1"]
    assert table_columns("events.k8s.io", "Event") == table_columns("", "Event")


# ---------------------------------------------------------------------------------------------
# other groups


def test_lease_rbac_pdb_priorityclass() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_1b2c", "leaseDurationSeconds": 15}}
    assert table_cells("coordination.k8s.io", "Lease", lease, NOW) == ["kube-scheduler", "cp-1_1b2c", "5m"]
    rb = {"metadata": meta("read"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                       {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}, {"kind": "User", "name": "bob"}]}
    assert names("rbac.authorization.k8s.io", "RoleBinding", wide=False) == ["Name", "Role", "Age"]
    assert table_cells("rbac.authorization.k8s.io", "ClusterRoleBinding", rb, NOW) == [
        "read", "ClusterRole/view", "5m", "alice, bob", "devs", "tools/ci"]
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}
    assert table_cells("policy", "PodDisruptionBudget", pdb, NOW) == ["web", "50%", "N/A", 1, "5m"]
    pc = {"metadata": meta("system-node-critical"), "value": 2000001000, "globalDefault": False,
          "preemptionPolicy": "PreemptLowerPriority"}
    assert table_cells("scheduling.k8s.io", "PriorityClass", pc, NOW) == [
        "system-node-critical", 2000001000, False, "5m", "PreemptLowerPriority"]


def test_hpa_targets() -> None:
    hpa = {"metadata": meta("web"), "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 10,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}]},
        "status": {"currentReplicas": 2, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 23, "averageValue": "115m"}}}]}}
    assert table_cells("autoscaling", "HorizontalPodAutoscaler", hpa, NOW) == [
        "web", "Deployment/web", "cpu: 23%/50%, memory: <unknown>/100Mi + 1 more...", "1", 10, 2, "5m"]
    v1 = {"metadata": meta("old"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 3,
                                            "targetCPUUtilizationPercentage": 80}, "status": {}}
    assert table_cells("autoscaling", "HorizontalPodAutoscaler", v1, NOW)[2:4] == ["cpu: <unknown>/80%", "<unset>"]


def test_csr() -> None:
    csr = {"metadata": meta("csr-abc"), "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                                                 "username": "system:bootstrap:abcdef", "expirationSeconds": 86400},
           "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}}
    assert names("certificates.k8s.io", "CertificateSigningRequest") == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    assert table_cells("certificates.k8s.io", "CertificateSigningRequest", csr, NOW) == [
        "csr-abc", "5m", "kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:abcdef", "24h",
        "Approved,Issued"]
    pending = {"metadata": meta("p"), "spec": {"username": "u"}}
    assert table_cells("certificates.k8s.io", "CertificateSigningRequest", pending, NOW)[2:] == [
        "<none>", "u", "<none>", "Pending"]


# ---------------------------------------------------------------------------------------------
# default table (kinds without a printer)


@pytest.mark.parametrize("group,kind", [
    ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "ClusterRole"), ("", "LimitRange"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"), ("example.com", "Unheard"),
])
def test_default_table(group: str, kind: str) -> None:
    cols = table_columns(group, kind)
    assert [(c["name"], c["type"], c["format"]) for c in cols] == [("Name", "string", "name"), ("Created At", "date", "")]
    obj = {"metadata": {"name": "thing", "creationTimestamp": "2024-04-30T10:11:12Z"}}
    assert table_cells(group, kind, obj, NOW) == ["thing", "2024-04-30T10:11:12Z"]


def test_every_printer_gives_one_cell_per_column() -> None:
    for (group, kind) in tables._PRINTERS:
        cells = table_cells(group, kind, {"metadata": {"name": "n"}}, NOW)
        assert len(cells) == len(table_columns(group, kind)), (group, kind)
        assert all(isinstance(c["priority"], int) for c in table_columns(group, kind))


# ---------------------------------------------------------------------------------------------
# custom resources


_COLUMNS = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Image", "type": "string", "jsonPath": ".spec.template.containers[0].image", "priority": 1,
     "description": "The first image"},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend"},
    {"name": "Ratio", "type": "number", "jsonPath": ".status.ratio"},
    {"name": "Last Backup", "type": "date", "jsonPath": ".status.lastBackup"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def test_crd_columns() -> None:
    cols = crd_columns(_COLUMNS)
    assert [c["name"] for c in cols] == ["Name", "Replicas", "Ready", "Image", "Suspended", "Ratio", "Last Backup", "Age"]
    assert cols[0]["format"] == "name"
    assert cols[1] == {"name": "Replicas", "type": "integer", "format": "",
                       "description": "Custom resource definition column (in JSONPath format): .spec.replicas",
                       "priority": 0}
    assert cols[3]["priority"] == 1 and cols[3]["description"] == "The first image"


def test_crd_cells() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Backup",
           "metadata": meta("nightly", days=3, hours=1),
           "spec": {"replicas": 3, "suspend": False, "template": {"containers": [{"image": "backup:2"}]}},
           "status": {"ratio": 0.5, "lastBackup": ago(hours=7, minutes=20),
                      "conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}]}}
    assert crd_cells(_COLUMNS, obj, NOW) == ["nightly", 3, "False", "backup:2", False, 0.5, "7h20m", "3d1h"]
    # absent values print as null (kubectl shows <none>)
    bare = {"metadata": meta("bare"), "spec": {}}
    assert crd_cells(_COLUMNS, bare, NOW) == ["bare", None, None, None, None, None, None, "5m"]


def test_crd_cells_type_coercion() -> None:
    cols = [{"name": "I", "type": "integer", "jsonPath": ".a"}, {"name": "S", "type": "string", "jsonPath": ".b"},
            {"name": "S2", "type": "string", "jsonPath": ".c"}, {"name": "S3", "type": "string", "jsonPath": ".d"},
            {"name": "D", "type": "date", "jsonPath": ".e"}, {"name": "B", "type": "boolean", "jsonPath": ".f"}]
    obj = {"metadata": {"name": "x"}, "a": 2.9, "b": {"k": [1, "<a>"]}, "c": 12, "d": True, "e": "yesterday", "f": "yes"}
    assert crd_cells(cols, obj, NOW) == ["x", 2, '{"k":[1,"\\u003ca\\u003e"]}', "12", "true", "<invalid>", None]


def test_crd_without_columns_shows_age() -> None:
    assert [(c["name"], c["type"]) for c in crd_columns([])] == [("Name", "string"), ("Age", "date")]
    obj = {"metadata": {"name": "x", "creationTimestamp": ago(days=2, hours=3)}}
    assert crd_cells([], obj, NOW) == ["x", "2d3h"]


def test_jsonpath() -> None:
    obj = {"metadata": {"labels": {"app.kubernetes.io/name": "web"}},
           "items": [{"n": 1}, {"n": 2}, {"n": 3}],
           "conds": [{"type": "A", "ok": 1}, {"type": "B", "ok": 2}]}
    assert jsonpath_find(obj, r".metadata.labels.app\.kubernetes\.io/name") == ["web"]
    assert jsonpath_find(obj, "{.metadata.labels['app.kubernetes.io/name']}") == ["web"]
    assert jsonpath_find(obj, ".items[-1].n") == [3]
    assert jsonpath_find(obj, ".items[*].n") == [1, 2, 3]
    assert jsonpath_find(obj, ".items[0:2].n") == [1, 2]
    assert jsonpath_find(obj, "$.conds[?(@.ok > 1)].type") == ["B"]
    assert jsonpath_find(obj, ".conds[?(@.type != 'A')].ok") == [2]
    assert jsonpath_find(obj, ".items[7]") == []
    assert jsonpath_find(obj, ".missing.deeper") == []
    with pytest.raises(ValueError):
        jsonpath_find(obj, ".items[")


def test_format_label_selector() -> None:
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]},
                                                       {"key": "app", "operator": "Exists"}]}) == "app,env notin (prod)"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}) == "<error>"
