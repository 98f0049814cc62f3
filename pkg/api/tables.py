"""Server-side Table printing: the columns and cells `kubectl get` shows.

The apiserver answers `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` with a meta.k8s.io/v1
Table; it builds the envelope and rows and asks this module for the column definitions and the
cells of each row. The columns and cell formatting follow upstream's printers
(pkg/printers/internalversion/printers.go), which the apiserver always runs in "wide" mode: every
row carries the priority-1 cells too and kubectl hides them unless `-o wide`.

Per kind there is one column table (`_Col` tuples) and one small row function; `_PRINTERS` maps
(group, kind) to both. Kinds without a printer get upstream's default table convertor (Name and
"Created At", an RFC3339 date), as upstream serves roles, limit ranges and CRDs. Custom resources
use their CRD's additionalPrinterColumns (`crd_columns`, `crd_cells`).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from decimal import Decimal
from typing import Any, Callable, NamedTuple, Sequence

from .selectors import SelectorError, label_selector_from_api, label_selector_to_string

__all__ = [
    "table_columns",
    "table_cells",
    "crd_columns",
    "crd_cells",
    "human_duration",
    "translate_timestamp",
    "parse_time",
    "format_labels",
    "format_label_selector",
    "jsonpath_find",
]

# ---------------------------------------------------------------------------------------------
# descriptions (the two ObjectMeta ones are upstream's swagger text; kubectl never shows these)

_NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
    "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_CONTAINERS_DESC = "Names of each container in the template."
_IMAGES_DESC = "Images referenced by each container in the template."


class _Col(NamedTuple):
    name: str
    type: str = "string"
    priority: int = 0
    description: str = ""
    format: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = _Col("Name", format="name", description=_NAME_DESC)
AGE = _Col("Age", description=_AGE_DESC)
CONTAINERS_W = _Col("Containers", priority=1, description=_CONTAINERS_DESC)
IMAGES_W = _Col("Images", priority=1, description=_IMAGES_DESC)


def _selector_col(desc: str = "A label query over the objects this controller manages.") -> _Col:
    return _Col("Selector", priority=1, description=desc)


# ---------------------------------------------------------------------------------------------
# time


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_time(value: Any) -> _dt.datetime | None:
    """Parse an RFC3339 timestamp (metav1.Time or MicroTime) into an aware datetime; None if unset or bad."""
    if not isinstance(value, str) or not value:
        return None
    m = _RFC3339.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    zone = m.group(8)
    if zone == "Z":
        tz = _dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return _dt.datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tz)
    except ValueError:
        return None


def _aware(now: _dt.datetime) -> _dt.datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=_dt.timezone.utc)


def human_duration(d: _dt.timedelta) -> str:
    """Upstream's duration.HumanDuration: ~2-3 significant figures ("5s", "3m10s", "5h", "2d3h", "10y")."""
    micros = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    # Go's int(d.Seconds()) truncates toward zero
    seconds = micros // 1_000_000 if micros >= 0 else -((-micros) // 1_000_000)
    if seconds < -1:
        # more than a little clock skew
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def translate_timestamp(value: Any, now: _dt.datetime) -> str:
    """Age of a timestamp as upstream prints it; "<unknown>" when unset."""
    t = value if isinstance(value, _dt.datetime) else parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(_aware(now) - _aware(t))


def _age(obj: dict, now: _dt.datetime) -> str:
    return translate_timestamp(_meta(obj).get("creationTimestamp"), now)


# ---------------------------------------------------------------------------------------------
# small helpers over dicts


def _d(obj: Any, *path: str) -> Any:
    """Nested get through dicts; None when any step is missing or not a dict."""
    cur = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _dict(obj: Any, *path: str) -> dict:
    v = _d(obj, *path)
    return v if isinstance(v, dict) else {}


def _list(obj: Any, *path: str) -> list:
    v = _d(obj, *path)
    return v if isinstance(v, list) else []


def _str(obj: Any, *path: str) -> str:
    v = _d(obj, *path)
    return v if isinstance(v, str) else ""


def _int(obj: Any, *path: str, default: int = 0) -> int:
    v = _d(obj, *path)
    if isinstance(v, bool) or v is None:
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _meta(obj: dict) -> dict:
    return _dict(obj, "metadata")


def _name(obj: dict) -> str:
    return _str(obj, "metadata", "name")


def _present(d: dict, key: str) -> bool:
    """Go's `ptr != nil`: the key is there and not null (an empty object counts)."""
    return isinstance(d, dict) and d.get(key) is not None


def _quantity(v: Any) -> str:
    """A resource.Quantity's String(); the zero quantity prints as "0"."""
    if v is None or v == "":
        return "0"
    return str(v)


def _int_or_string(v: Any) -> str:
    return str(v)


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted "k=v" pairs joined by commas, "<none>" when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(selector: Any) -> str | None:
    """metav1.LabelSelectorAsSelector(selector).String(); None when the selector is invalid."""
    if not isinstance(selector, dict):
        return ""  # a nil selector selects nothing and prints as ""
    try:
        return str(label_selector_from_api(selector))
    except SelectorError:
        return None


def format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: the selector string, "<none>" when empty, "<error>" when invalid."""
    return label_selector_to_string(selector if isinstance(selector, dict) else None)


def _layout_containers(containers: list) -> tuple[str, str]:
    names = ",".join(_str(c, "name") for c in containers)
    images = ",".join(_str(c, "image") for c in containers)
    return names, images


def _template_containers(obj: dict, *path: str) -> list:
    return _list(obj, *path, "spec", "containers")


def _bool_ptr(v: Any) -> str:
    if v is None:
        return "<unset>"
    return "True" if v else "False"


def _list_with_more(items: list[str], count: int, limit: int) -> str:
    ret = ",".join(items[:limit])
    if count > limit:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _condition(conditions: list, ctype: str) -> dict | None:
    for c in conditions:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


# ---------------------------------------------------------------------------------------------
# core/v1


_POD_COLS = (
    NAME,
    _Col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _Col("Status", description="The aggregate status of the containers in this pod."),
    _Col("Restarts", description="The number of times the containers in this pod have been restarted "
         "and when the last container in this pod has restarted."),
    AGE,
    _Col("IP", priority=1, description="podIP address allocated to the pod."),
    _Col("Node", priority=1, description="NodeName is the name of the node the pod is scheduled onto."),
    _Col("Nominated Node", priority=1, description="nominatedNodeName is set when this pod preempts other "
         "pods on the node."),
    _Col("Readiness Gates", priority=1, description="If specified, all readiness gates will be evaluated "
         "for pod readiness."),
)


def _later(current: _dt.datetime | None, candidate: Any) -> _dt.datetime | None:
    t = parse_time(candidate)
    if t is None:
        return current
    if current is None or current < t:
        return t
    return current


def _pod_cells(pod: dict, now: _dt.datetime) -> list:
    spec = _dict(pod, "spec")
    status = _dict(pod, "status")
    conditions = _list(status, "conditions")
    init_specs = _list(spec, "initContainers")
    # restartable init containers (sidecars) count as containers of the pod
    sidecars = {_str(c, "name") for c in init_specs if _str(c, "restartPolicy") == "Always"}
    total = len(_list(spec, "containers")) + len(sidecars)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: _dt.datetime | None = None
    last_sidecar_restart: _dt.datetime | None = None

    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    for cond in conditions:
        if _str(cond, "type") == "PodScheduled" and _str(cond, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for i, cs in enumerate(_list(status, "initContainerStatuses")):
        restarts += _int(cs, "restartCount")
        finished = _d(cs, "lastState", "terminated", "finishedAt")
        last_restart = _later(last_restart, finished)
        is_sidecar = _str(cs, "name") in sidecars
        if is_sidecar:
            sidecar_restarts += _int(cs, "restartCount")
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = _dict(cs, "state")
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and _int(terminated, "exitCode") == 0:
            continue
        if is_sidecar and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if not _str(terminated, "reason"):
                if _int(terminated, "signal"):
                    reason = f"Init:Signal:{_int(terminated, 'signal')}"
                else:
                    reason = f"Init:ExitCode:{_int(terminated, 'exitCode')}"
            else:
                reason = "Init:" + _str(terminated, "reason")
        elif waiting is not None and _str(waiting, "reason") and _str(waiting, "reason") != "PodInitializing":
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = _str(_condition(conditions, "Initialized") or {}, "status") == "True"
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for cs in reversed(_list(status, "containerStatuses")):
            restarts += _int(cs, "restartCount")
            last_restart = _later(last_restart, _d(cs, "lastState", "terminated", "finishedAt"))
            state = _dict(cs, "state")
            terminated = state.get("terminated")
            waiting = state.get("waiting")
            if waiting is not None and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif terminated is not None and _str(terminated, "reason"):
                reason = _str(terminated, "reason")
            elif terminated is not None:
                if _int(terminated, "signal"):
                    reason = f"Signal:{_int(terminated, 'signal')}"
                else:
                    reason = f"ExitCode:{_int(terminated, 'exitCode')}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # a pod whose last container completed but another still runs is not "Completed"
        if reason == "Completed" and has_running:
            pod_ready = _str(_condition(conditions, "Ready") or {}, "status") == "True"
            reason = "Running" if pod_ready else "NotReady"

    if _meta(pod).get("deletionTimestamp") and _str(status, "reason") == "NodeLost":
        reason = "Unknown"
    elif _meta(pod).get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_str = f"{restarts} ({translate_timestamp(last_restart, now)} ago)"

    pod_ips = _list(status, "podIPs")
    pod_ip = _str(pod_ips[0], "ip") if pod_ips else _str(status, "podIP")
    gates = _list(spec, "readinessGates")
    gates_str = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            cond = _condition(conditions, _str(gate, "conditionType"))
            if cond is not None and _str(cond, "status") == "True":
                true_count += 1
        gates_str = f"{true_count}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_str,
        _age(pod, now),
        pod_ip or "<none>",
        _str(spec, "nodeName") or "<none>",
        _str(status, "nominatedNodeName") or "<none>",
        gates_str,
    ]


_POD_TEMPLATE_COLS = (
    NAME,
    _Col("Containers", description=_CONTAINERS_DESC),
    _Col("Images", description=_IMAGES_DESC),
    _Col("Pod Labels", description="The labels for the pod template."),
)


def _pod_template_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "template"))
    return [_name(obj), names, images, format_labels(_d(obj, "template", "metadata", "labels"))]


_NODE_COLS = (
    NAME,
    _Col("Status", description="The status of the node"),
    _Col("Roles", description="The roles of the node"),
    AGE,
    _Col("Version", description="Kubelet Version reported by the node."),
    _Col("Internal-IP", priority=1, description="List of addresses reachable to the node."),
    _Col("External-IP", priority=1, description="List of addresses reachable to the node."),
    _Col("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release."),
    _Col("Kernel-Version", priority=1, description="Kernel Version reported by the node."),
    _Col("Container-Runtime", priority=1, description="ContainerRuntime Version reported by the node."),
)

_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"


def _node_roles(node: dict) -> list[str]:
    roles: set[str] = set()
    for key, value in _dict(node, "metadata", "labels").items():
        if key.startswith(_NODE_ROLE_PREFIX):
            role = key[len(_NODE_ROLE_PREFIX):]
            if role:
                roles.add(role)
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(str(value))
    return sorted(roles)


def _node_address(node: dict, kind: str) -> str:
    for addr in _list(node, "status", "addresses"):
        if _str(addr, "type") == kind:
            return _str(addr, "address")
    return "<none>"


def _node_cells(node: dict, now: _dt.datetime) -> list:
    status: list[str] = []
    ready = _condition(_list(node, "status", "conditions"), "Ready")
    if ready is not None:
        status.append("Ready" if _str(ready, "status") == "True" else "NotReady")
    if not status:
        status.append("Unknown")
    if _d(node, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    info = _dict(node, "status", "nodeInfo")
    return [
        _name(node),
        ",".join(status),
        ",".join(_node_roles(node)) or "<none>",
        _age(node, now),
        _str(info, "kubeletVersion"),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        _str(info, "osImage") or "<unknown>",
        _str(info, "kernelVersion") or "<unknown>",
        _str(info, "containerRuntimeVersion") or "<unknown>",
    ]


_NAMESPACE_COLS = (NAME, _Col("Status", description="The status of the namespace"), AGE)


def _namespace_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _str(obj, "status", "phase"), _age(obj, now)]


_SERVICE_COLS = (
    NAME,
    _Col("Type", description="type determines how the Service is exposed."),
    _Col("Cluster-IP", description="clusterIP is the IP address of the service."),
    _Col("External-IP", description="externalIPs is a list of IP addresses for which nodes in the "
         "cluster will also accept traffic for this service."),
    _Col("Port(s)", description="The list of ports that are exposed by this service."),
    AGE,
    _Col("Selector", priority=1, description="Route service traffic to pods with label keys and values "
         "matching this selector."),
)


def _lb_ingress_string(ingress: list) -> str:
    # the apiserver prints wide, so the list is never clipped
    found = set()
    for ing in ingress:
        if _str(ing, "ip"):
            found.add(_str(ing, "ip"))
        elif _str(ing, "hostname"):
            found.add(_str(ing, "hostname"))
    return ",".join(sorted(found))


def _service_external_ip(svc: dict) -> str:
    svc_type = _str(svc, "spec", "type")
    external_ips = [str(ip) for ip in _list(svc, "spec", "externalIPs")]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        lb = _lb_ingress_string(_list(svc, "status", "loadBalancer", "ingress"))
        if external_ips:
            results = lb.split(",") if lb else []
            return ",".join(results + external_ips)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return _str(svc, "spec", "externalName")
    return "<unknown>"


def _service_ports(ports: list) -> str:
    pieces = []
    for p in ports:
        proto = _str(p, "protocol") or "TCP"
        node_port = _int(p, "nodePort")
        if node_port > 0:
            pieces.append(f"{_int(p, 'port')}:{node_port}/{proto}")
        else:
            pieces.append(f"{_int(p, 'port')}/{proto}")
    return ",".join(pieces)


def _service_cells(svc: dict, now: _dt.datetime) -> list:
    spec = _dict(svc, "spec")
    cluster_ips = _list(spec, "clusterIPs")
    cluster_ip = str(cluster_ips[0]) if cluster_ips else _str(spec, "clusterIP")
    return [
        _name(svc),
        _str(spec, "type"),
        cluster_ip or "<none>",
        _service_external_ip(svc),
        _service_ports(_list(spec, "ports")) or "<none>",
        _age(svc, now),
        format_labels(spec.get("selector")),
    ]


_ENDPOINTS_COLS = (NAME, _Col("Endpoints", description="The set of all endpoints is the union of all subsets."), AGE)


def _format_endpoints(subsets: list) -> str:
    if not subsets:
        return "<none>"
    items: list[str] = []
    limit = 3
    count = 0
    for ss in subsets:
        addresses = _list(ss, "addresses")
        ports = _list(ss, "ports")
        if not ports:
            # headless services may have no ports
            count += len(addresses)
            for a in addresses:
                if len(items) == limit:
                    break
                items.append(_str(a, "ip"))
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(items) == limit:
                    break
                items.append(_join_host_port(_str(a, "ip"), _int(port, "port")))
    ret = ",".join(items)
    if count > limit:
        return f"{ret} + {count - limit} more..."
    return ret


def _endpoints_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _format_endpoints(_list(obj, "subsets")), _age(obj, now)]


_CONFIGMAP_COLS = (NAME, _Col("Data", description="Data contains the configuration data."), AGE)


def _configmap_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), len(_dict(obj, "data")) + len(_dict(obj, "binaryData")), _age(obj, now)]


_SECRET_COLS = (
    NAME,
    _Col("Type", description="Used to facilitate programmatic handling of secret data."),
    _Col("Data", description="Data contains the secret data."),
    AGE,
)


def _secret_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _str(obj, "type"), len(_dict(obj, "data")), _age(obj, now)]


_SERVICE_ACCOUNT_COLS = (
    NAME,
    _Col("Secrets", description="Secrets is a list of the secrets in the same namespace that pods "
         "running using this ServiceAccount are allowed to use."),
    AGE,
)


def _service_account_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), len(_list(obj, "secrets")), _age(obj, now)]


_EVENT_COLS = (
    _Col("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    _Col("Type", description="Type of this event (Normal, Warning), new types could be added in the future"),
    _Col("Reason", description="This should be a short, machine understandable string that gives the "
         "reason for the transition into the object's current status."),
    _Col("Object", description="The object that this event is about."),
    _Col("Subobject", priority=1, description="The specific part of the object the event is about."),
    _Col("Source", priority=1, description="The component reporting this event."),
    _Col("Message", description="A human-readable description of the status of this operation."),
    _Col("First Seen", priority=1, description="The time at which the event was first recorded."),
    _Col("Count", priority=1, description="The number of times this event has occurred."),
    _Col("Name", priority=1, format="name", description=_NAME_DESC),
)


def _event_as_core(obj: dict, group: str) -> dict:
    """View an events.k8s.io/v1 Event with core/v1 field names (upstream prints both from one type)."""
    if group != "events.k8s.io":
        return obj
    source = _dict(obj, "deprecatedSource")
    return {
        "metadata": _meta(obj),
        "involvedObject": _dict(obj, "regarding"),
        "reason": obj.get("reason"),
        "message": obj.get("note"),
        "source": source,
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"),
        "type": obj.get("type"),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
    }


def _event_cells_for(group: str) -> Callable[[dict, _dt.datetime], list]:
    def cells(raw: dict, now: _dt.datetime) -> list:
        ev = _event_as_core(raw, group)
        first = translate_timestamp(ev.get("firstTimestamp"), now)
        if parse_time(ev.get("firstTimestamp")) is None:
            first = translate_timestamp(ev.get("eventTime"), now)
        last = translate_timestamp(ev.get("lastTimestamp"), now)
        if parse_time(ev.get("lastTimestamp")) is None:
            last = first
        count = _int(ev, "count")
        series = ev.get("series")
        if isinstance(series, dict):
            last = translate_timestamp(series.get("lastObservedTime"), now)
            count = _int(series, "count")
        elif count == 0:
            count = 1  # singleton events carry no count in the new API
        involved = _dict(ev, "involvedObject")
        kind = _str(involved, "kind").lower()
        target = f"{kind}/{_str(involved, 'name')}" if _str(involved, "name") else kind
        component = _str(ev, "source", "component") or _str(ev, "reportingComponent")
        instance = _str(ev, "source", "host") or _str(ev, "reportingInstance")
        source = f"{component}, {instance}" if instance else component
        return [
            last,
            _str(ev, "type"),
            _str(ev, "reason"),
            target,
            _str(involved, "fieldPath"),
            source,
            _str(ev, "message").strip(),
            first,
            count,
            _name(ev),
        ]

    return cells


_RESOURCE_QUOTA_COLS = (
    NAME,
    _Col("Request", description="Request represents a minimum amount of cpu/memory that a container may consume."),
    _Col("Limit", description="Limits control the maximum amount of cpu/memory that a container may use "
         "independent of contention on the node."),
    AGE,
)


def _resource_quota_cells(obj: dict, now: _dt.datetime) -> list:
    hard = _dict(obj, "status", "hard")
    used = _dict(obj, "status", "used")
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        piece = f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard.get(resource))}"
        parts = resource.split(".")
        (limits if len(parts) > 1 and parts[0] == "limits" else requests).append(piece)
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: list) -> str:
    return ",".join(short for mode, short in _ACCESS_MODES if mode in modes)


_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def _volume_class(obj: dict) -> str:
    annotations = _dict(obj, "metadata", "annotations")
    if _STORAGE_CLASS_ANNOTATION in annotations:
        return str(annotations[_STORAGE_CLASS_ANNOTATION])
    return _str(obj, "spec", "storageClassName")


_PV_COLS = (
    NAME,
    _Col("Capacity", description="capacity is the description of the persistent volume's resources and capacity."),
    _Col("Access Modes", description="accessModes contains all ways the volume can be mounted."),
    _Col("Reclaim Policy", description="persistentVolumeReclaimPolicy defines what happens to a persistent "
         "volume when released from its claim."),
    _Col("Status", description="phase indicates if a volume is available, bound to a claim, or released by a claim."),
    _Col("Claim", description="claimRef is part of a bi-directional binding between PersistentVolume and "
         "PersistentVolumeClaim."),
    _Col("StorageClass", description="StorageClass of the pv"),
    _Col("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
    _Col("Reason", description="reason is a brief CamelCase string that describes any failure."),
    AGE,
    _Col("VolumeMode", priority=1, description="volumeMode defines if a volume is intended to be used with a "
         "formatted filesystem or to remain in raw block state."),
)


def _pv_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    claim = ""
    if _present(spec, "claimRef"):
        claim = f"{_str(spec, 'claimRef', 'namespace')}/{_str(spec, 'claimRef', 'name')}"
    phase = _str(obj, "status", "phase")
    if _meta(obj).get("deletionTimestamp"):
        phase = "Terminating"
    return [
        _name(obj),
        _quantity(_d(spec, "capacity", "storage")),
        _access_modes(_list(spec, "accessModes")),
        _str(spec, "persistentVolumeReclaimPolicy"),
        phase,
        claim,
        _volume_class(obj),
        _str(spec, "volumeAttributesClassName") or "<unset>",
        _str(obj, "status", "reason"),
        _age(obj, now),
        _str(spec, "volumeMode") or "<unset>",
    ]


_PVC_COLS = (
    NAME,
    _Col("Status", description="phase represents the current phase of PersistentVolumeClaim."),
    _Col("Volume", description="volumeName is the binding reference to the PersistentVolume backing this claim."),
    _Col("Capacity", description="capacity represents the actual resources of the underlying volume."),
    _Col("Access Modes", description="accessModes contains the actual access modes the volume backing the PVC has."),
    _Col("StorageClass", description="StorageClass of the pvc"),
    _Col("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
    AGE,
    _Col("VolumeMode", priority=1, description="volumeMode defines what type of volume is required by the claim."),
)


def _pvc_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    phase = _str(obj, "status", "phase")
    if _meta(obj).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = ""
    modes = ""
    if _str(spec, "volumeName"):
        modes = _access_modes(_list(obj, "status", "accessModes"))
        capacity = _quantity(_d(obj, "status", "capacity", "storage"))
    return [
        _name(obj),
        phase,
        _str(spec, "volumeName"),
        capacity,
        modes,
        _volume_class(obj),
        _str(spec, "volumeAttributesClassName") or "<unset>",
        _age(obj, now),
        _str(spec, "volumeMode") or "<unset>",
    ]


_RC_COLS = (
    NAME,
    _Col("Desired", "integer", description="Replicas is the number of desired replicas."),
    _Col("Current", "integer", description="Replicas is the most recently observed number of replicas."),
    _Col("Ready", "integer", description="The number of ready replicas for this replication controller."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col(),
)


def _rc_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    return [
        _name(obj),
        _int(obj, "spec", "replicas", default=1),
        _int(obj, "status", "replicas"),
        _int(obj, "status", "readyReplicas"),
        _age(obj, now),
        names,
        images,
        format_labels(_d(obj, "spec", "selector")),
    ]


_COMPONENT_STATUS_COLS = (
    NAME,
    _Col("Status", description="Status of the component conditions"),
    _Col("Message", description="Message of the component conditions"),
    _Col("Error", description="Error of the component conditions"),
)


def _component_status_cells(obj: dict, now: _dt.datetime) -> list:
    status, message, error = "Unknown", "", ""
    cond = _condition(_list(obj, "conditions"), "Healthy")
    if cond is not None:
        status = "Healthy" if _str(cond, "status") == "True" else "Unhealthy"
        message = _str(cond, "message")
        error = _str(cond, "error")
    return [_name(obj), status, message, error]


# ---------------------------------------------------------------------------------------------
# apps/v1


_DEPLOYMENT_COLS = (
    NAME,
    _Col("Ready", description="Number of the pod with ready state"),
    _Col("Up-to-date", description="Total number of non-terminated pods targeted by this deployment that "
         "have the desired template spec."),
    _Col("Available", description="Total number of available pods (ready for at least minReadySeconds) "
         "targeted by this deployment."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col("Label selector for pods."),
)


def _deployment_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    selector = _selector_string(_d(obj, "spec", "selector"))
    return [
        _name(obj),
        f"{_int(obj, 'status', 'readyReplicas')}/{_int(obj, 'spec', 'replicas', default=1)}",
        _int(obj, "status", "updatedReplicas"),
        _int(obj, "status", "availableReplicas"),
        _age(obj, now),
        names,
        images,
        "<invalid>" if selector is None else selector,
    ]


_REPLICASET_COLS = (
    NAME,
    _Col("Desired", "integer", description="Replicas is the number of desired replicas."),
    _Col("Current", "integer", description="Replicas is the most recently observed number of replicas."),
    _Col("Ready", "integer", description="readyReplicas is the number of pods targeted by this ReplicaSet "
         "with a Ready Condition."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col(),
)


def _replicaset_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    return [
        _name(obj),
        _int(obj, "spec", "replicas", default=1),
        _int(obj, "status", "replicas"),
        _int(obj, "status", "readyReplicas"),
        _age(obj, now),
        names,
        images,
        format_label_selector(_d(obj, "spec", "selector")),
    ]


_DAEMONSET_COLS = (
    NAME,
    _Col("Desired", "integer", description="The total number of nodes that should be running the daemon pod."),
    _Col("Current", "integer", description="The number of nodes that are running at least 1 daemon pod and "
         "are supposed to run the daemon pod."),
    _Col("Ready", "integer", description="numberReady is the number of nodes that should be running the "
         "daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    _Col("Up-to-date", "integer", description="The total number of nodes that are running updated daemon pod"),
    _Col("Available", "integer", description="The number of nodes that should be running the daemon pod and "
         "have one or more of the daemon pod running and available."),
    _Col("Node Selector", description="NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col(),
)


def _daemonset_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    status = _dict(obj, "status")
    return [
        _name(obj),
        _int(status, "desiredNumberScheduled"),
        _int(status, "currentNumberScheduled"),
        _int(status, "numberReady"),
        _int(status, "updatedNumberScheduled"),
        _int(status, "numberAvailable"),
        format_labels(_d(obj, "spec", "template", "spec", "nodeSelector")),
        _age(obj, now),
        names,
        images,
        format_label_selector(_d(obj, "spec", "selector")),
    ]


_STATEFULSET_COLS = (
    NAME,
    _Col("Ready", description="Number of the pod with ready state"),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
)


def _statefulset_cells(obj: dict, now: _dt.datetime) -> list:
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    return [
        _name(obj),
        f"{_int(obj, 'status', 'readyReplicas')}/{_int(obj, 'spec', 'replicas', default=1)}",
        _age(obj, now),
        names,
        images,
    ]


_CONTROLLER_REVISION_COLS = (
    NAME,
    _Col("Controller", description="Controller of the object"),
    _Col("Revision", description="Revision indicates the revision of the state represented by Data."),
    AGE,
)


def _controller_revision_cells(obj: dict, now: _dt.datetime) -> list:
    controller = "<none>"
    for ref in _list(obj, "metadata", "ownerReferences"):
        if isinstance(ref, dict) and ref.get("controller") is True:
            api_version = _str(ref, "apiVersion")
            group = api_version.split("/", 1)[0] if "/" in api_version else ""
            kind = _str(ref, "kind")
            group_kind = f"{kind}.{group}" if group else kind
            controller = f"{group_kind.lower()}/{_str(ref, 'name')}" if group_kind else _str(ref, "name")
            break
    return [_name(obj), controller, _int(obj, "revision"), _age(obj, now)]


# ---------------------------------------------------------------------------------------------
# batch/v1


_JOB_COLS = (
    NAME,
    _Col("Status", description="Status of the job."),
    _Col("Completions", description="The number of pods which reached phase Succeeded."),
    _Col("Duration", description="Time required to complete the job."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col("A label query over pods that should match the pod count."),
)


def _job_condition(conditions: list, ctype: str) -> bool:
    cond = _condition(conditions, ctype)
    return cond is not None and _str(cond, "status") == "True"


def _job_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    status = _dict(obj, "status")
    succeeded = _int(status, "succeeded")
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec, 'completions')}"
    else:
        parallelism = _int(spec, "parallelism")
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = parse_time(status.get("startTime"))
    completion = parse_time(status.get("completionTime"))
    if start is None:
        duration = ""
    elif completion is None:
        duration = human_duration(_aware(now) - start)
    else:
        duration = human_duration(completion - start)
    conditions = _list(status, "conditions")
    if _job_condition(conditions, "Complete"):
        job_status = "Complete"
    elif _job_condition(conditions, "Failed"):
        job_status = "Failed"
    elif _meta(obj).get("deletionTimestamp"):
        job_status = "Terminating"
    elif _job_condition(conditions, "Suspended"):
        job_status = "Suspended"
    elif _job_condition(conditions, "FailureTarget"):
        job_status = "FailureTarget"
    else:
        job_status = "Running"
    names, images = _layout_containers(_template_containers(obj, "spec", "template"))
    return [
        _name(obj),
        job_status,
        completions,
        duration,
        _age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


_CRONJOB_COLS = (
    NAME,
    _Col("Schedule", description="The schedule in Cron format."),
    _Col("Timezone", description="The time zone name for the given schedule."),
    _Col("Suspend", "boolean", description="This flag tells the controller to suspend subsequent executions."),
    _Col("Active", "integer", description="A list of pointers to currently running jobs."),
    _Col("Last Schedule", description="Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS_W,
    IMAGES_W,
    _selector_col("A label query over pods that should match the pod count."),
)


def _cronjob_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    last = "<none>"
    if _d(obj, "status", "lastScheduleTime") is not None:
        last = translate_timestamp(_d(obj, "status", "lastScheduleTime"), now)
    job_spec = _dict(spec, "jobTemplate", "spec")
    names, images = _layout_containers(_template_containers(job_spec, "template"))
    return [
        _name(obj),
        _str(spec, "schedule"),
        _str(spec, "timeZone") or "<none>",
        _bool_ptr(spec.get("suspend")),
        len(_list(obj, "status", "active")),
        last,
        _age(obj, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]


# ---------------------------------------------------------------------------------------------
# other groups


_ENDPOINTSLICE_COLS = (
    NAME,
    _Col("AddressType", description="addressType specifies the type of address carried by this EndpointSlice."),
    _Col("Ports", description="ports specifies the list of network ports exposed by each endpoint in this slice."),
    _Col("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
    AGE,
)


def _endpointslice_cells(obj: dict, now: _dt.datetime) -> list:
    ports: list[str] = []
    for p in _list(obj, "ports"):
        if _d(p, "port") is not None:
            ports.append(str(_int(p, "port")))
        elif _d(p, "name") is not None:
            ports.append(_str(p, "name"))
        else:
            ports.append("*")
    addresses = [str(a) for ep in _list(obj, "endpoints") for a in _list(ep, "addresses")]
    return [
        _name(obj),
        _str(obj, "addressType"),
        _list_with_more(ports, len(ports), 3),
        _list_with_more(addresses, len(addresses), 3),
        _age(obj, now),
    ]


_LEASE_COLS = (NAME, _Col("Holder", description="holderIdentity contains the identity of the holder of a "
                          "current lease."), AGE)


def _lease_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _str(obj, "spec", "holderIdentity"), _age(obj, now)]


_BINDING_COLS = (
    NAME,
    _Col("Role", description="RoleRef can reference a Role in the current namespace or a ClusterRole in the "
         "global namespace."),
    AGE,
    _Col("Users", priority=1, description="Users in the roleBinding"),
    _Col("Groups", priority=1, description="Groups in the roleBinding"),
    _Col("ServiceAccounts", priority=1, description="ServiceAccounts in the roleBinding"),
)


def _binding_cells(obj: dict, now: _dt.datetime) -> list:
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in _list(obj, "subjects"):
        kind = _str(s, "kind")
        if kind == "ServiceAccount":
            sas.append(f"{_str(s, 'namespace')}/{_str(s, 'name')}")
        elif kind == "User":
            users.append(_str(s, "name"))
        elif kind == "Group":
            groups.append(_str(s, "name"))
    role_ref = f"{_str(obj, 'roleRef', 'kind')}/{_str(obj, 'roleRef', 'name')}"
    return [_name(obj), role_ref, _age(obj, now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


_PDB_COLS = (
    NAME,
    _Col("Min Available", description="The minimum number of pods that must be available."),
    _Col("Max Unavailable", description="The maximum number of pods that may be unavailable."),
    _Col("Allowed Disruptions", "integer", description="Calculated number of pods that may be disrupted at this time."),
    AGE,
)


def _pdb_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    min_available = _int_or_string(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A"
    max_unavailable = _int_or_string(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A"
    return [_name(obj), min_available, max_unavailable, _int(obj, "status", "disruptionsAllowed"), _age(obj, now)]


_HPA_COLS = (
    NAME,
    _Col("Reference", description="scaleTargetRef points to the target resource to scale."),
    _Col("Targets", description="metrics contains the specifications for which to use to calculate the "
         "desired replica count."),
    _Col("MinPods", description="minReplicas is the lower limit for the number of replicas."),
    _Col("MaxPods", description="maxReplicas is the upper limit for the number of replicas."),
    _Col("Replicas", description="currentReplicas is current number of replicas of pods managed by this autoscaler."),
    AGE,
)


def _hpa_metrics(obj: dict) -> tuple[list, list]:
    spec = _dict(obj, "spec")
    status = _dict(obj, "status")
    if "metrics" in spec or "targetCPUUtilizationPercentage" not in spec:
        return _list(spec, "metrics"), _list(status, "currentMetrics")
    # autoscaling/v1: one CPU utilization target
    specs = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}}]
    statuses = []
    if status.get("currentCPUUtilizationPercentage") is not None:
        statuses = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    return specs, statuses


def _hpa_targets(specs: list, statuses: list) -> str:
    if not specs:
        return "<none>"
    items: list[str] = []
    for i, spec in enumerate(specs):
        st = statuses[i] if i < len(statuses) and isinstance(statuses[i], dict) else {}
        mtype = _str(spec, "type")
        if mtype in ("External", "Object"):
            key = "external" if mtype == "External" else "object"
            target = _dict(spec, key, "target")
            cur = st.get(key) if isinstance(st.get(key), dict) else None
            if target.get("averageValue") is not None:
                current = "<unknown>"
                if cur is not None and _d(cur, "current", "averageValue") is not None:
                    current = _quantity(_d(cur, "current", "averageValue"))
                items.append(f"{current}/{_quantity(target['averageValue'])} (avg)")
            else:
                current = _quantity(_d(cur, "current", "value")) if cur is not None else "<unknown>"
                items.append(f"{current}/{_quantity(target.get('value'))}")
        elif mtype == "Pods":
            cur = st.get("pods") if isinstance(st.get("pods"), dict) else None
            current = _quantity(_d(cur, "current", "averageValue")) if cur is not None else "<unknown>"
            items.append(f"{current}/{_quantity(_d(spec, 'pods', 'target', 'averageValue'))}")
        elif mtype in ("Resource", "ContainerResource"):
            key = "resource" if mtype == "Resource" else "containerResource"
            res = _dict(spec, key)
            target = _dict(res, "target")
            cur = st.get(key) if isinstance(st.get(key), dict) else None
            if target.get("averageValue") is not None:
                current = _quantity(_d(cur, "current", "averageValue")) if cur is not None else "<unknown>"
                items.append(f"{_str(res, 'name')}: {current}/{_quantity(target['averageValue'])}")
            else:
                current = "<unknown>"
                if cur is not None and _d(cur, "current", "averageUtilization") is not None:
                    current = f"{_int(cur, 'current', 'averageUtilization')}%"
                want = "<auto>"
                if target.get("averageUtilization") is not None:
                    want = f"{_int(target, 'averageUtilization')}%"
                items.append(f"{_str(res, 'name')}: {current}/{want}")
        else:
            items.append("<unknown type>")
    limit = 2
    if len(items) > limit:
        return f"{', '.join(items[:limit])} + {len(items) - limit} more..."
    return ", ".join(items)


def _hpa_cells(obj: dict, now: _dt.datetime) -> list:
    spec = _dict(obj, "spec")
    ref = f"{_str(spec, 'scaleTargetRef', 'kind')}/{_str(spec, 'scaleTargetRef', 'name')}"
    min_pods = str(_int(spec, "minReplicas")) if spec.get("minReplicas") is not None else "<unset>"
    return [
        _name(obj),
        ref,
        _hpa_targets(*_hpa_metrics(obj)),
        min_pods,
        _int(spec, "maxReplicas"),
        _int(obj, "status", "currentReplicas"),
        _age(obj, now),
    ]


_PRIORITY_CLASS_COLS = (
    NAME,
    _Col("Value", "integer", description="value represents the integer value of this priority class."),
    _Col("Global-Default", "boolean", description="globalDefault specifies whether this PriorityClass should "
         "be considered as the default priority for pods that do not have any priority class."),
    AGE,
    _Col("PreemptionPolicy", description="preemptionPolicy is the Policy for preempting pods with lower priority."),
)


def _priority_class_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _int(obj, "value"), bool(obj.get("globalDefault")), _age(obj, now),
            _str(obj, "preemptionPolicy")]


_CSR_COLS = (
    NAME,
    AGE,
    _Col("SignerName", description="signerName indicates the requested signer."),
    _Col("Requestor", description="username contains the name of the user that created the request."),
    _Col("RequestedDuration", description="expirationSeconds is the requested duration of validity of the "
         "issued certificate."),
    _Col("Condition", description="conditions applied to the request."),
)


def _csr_cells(obj: dict, now: _dt.datetime) -> list:
    types = {_str(c, "type") for c in _list(obj, "status", "conditions")}
    if "Denied" in types:
        status = "Denied"
    elif "Approved" in types:
        status = "Approved"
    else:
        status = "Pending"
    if "Failed" in types:
        status += ",Failed"
    if _str(obj, "status", "certificate"):
        status += ",Issued"
    spec = _dict(obj, "spec")
    requested = "<none>"
    if spec.get("expirationSeconds") is not None:
        requested = human_duration(_dt.timedelta(seconds=_int(spec, "expirationSeconds")))
    return [_name(obj), _age(obj, now), _str(spec, "signerName") or "<none>", _str(spec, "username"),
            requested, status]


_INGRESS_COLS = (
    NAME,
    _Col("Class", description="The name of the IngressClass resource that should be used for additional configuration"),
    _Col("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
    _Col("Address", description="Address is a list containing ingress points for the load-balancer"),
    _Col("Ports", description="Ports of TLS configurations that open"),
    AGE,
)


def _ingress_cells(obj: dict, now: _dt.datetime) -> list:
    rules = _list(obj, "spec", "rules")
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and _str(rule, "host"):
            hosts.append(_str(rule, "host"))
    if not hosts:
        hosts_str = "*"
    elif more:
        hosts_str = f"{','.join(hosts)} + {len(rules) - 3} more..."
    else:
        hosts_str = ",".join(hosts)
    return [
        _name(obj),
        _str(obj, "spec", "ingressClassName") or "<none>",
        hosts_str,
        _lb_ingress_string(_list(obj, "status", "loadBalancer", "ingress")),
        "80, 443" if _list(obj, "spec", "tls") else "80",
        _age(obj, now),
    ]


_INGRESS_CLASS_COLS = (
    NAME,
    _Col("Controller", description="Controller that is responsible for handling this class"),
    _Col("Parameters", description="A reference to a resource with additional parameters"),
    AGE,
)


def _ingress_class_cells(obj: dict, now: _dt.datetime) -> list:
    params = _d(obj, "spec", "parameters")
    parameters = "<none>"
    if isinstance(params, dict):
        parameters = _str(params, "kind")
        if params.get("apiGroup") is not None:
            parameters += "." + _str(params, "apiGroup")
        parameters += "/" + _str(params, "name")
    return [_name(obj), _str(obj, "spec", "controller"), parameters, _age(obj, now)]


_NETWORK_POLICY_COLS = (NAME, _Col("Pod-Selector", description="Selects the pods to which this NetworkPolicy "
                                   "object applies."), AGE)


def _network_policy_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), format_label_selector(_dict(obj, "spec", "podSelector")), _age(obj, now)]


_STORAGE_CLASS_COLS = (
    NAME,
    _Col("Provisioner", description="provisioner indicates the type of the provisioner."),
    _Col("ReclaimPolicy", description="reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
         "PersistentVolumes of this storage class."),
    _Col("VolumeBindingMode", description="volumeBindingMode indicates how PersistentVolumeClaims should be "
         "provisioned and bound."),
    _Col("AllowVolumeExpansion", description="allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
)

_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")


def _storage_class_cells(obj: dict, now: _dt.datetime) -> list:
    name = _name(obj)
    annotations = _dict(obj, "metadata", "annotations")
    if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [
        name,
        _str(obj, "provisioner"),
        _str(obj, "reclaimPolicy") or "Delete",
        _str(obj, "volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        _age(obj, now),
    ]


_RUNTIME_CLASS_COLS = (NAME, _Col("Handler", description="handler specifies the underlying runtime and "
                                  "configuration that the CRI implementation will use."), AGE)


def _runtime_class_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), _str(obj, "handler"), _age(obj, now)]


_WEBHOOK_COLS = (
    NAME,
    _Col("Webhooks", "integer", description="Webhooks indicates the number of webhooks registered in this configuration"),
    AGE,
)


def _webhook_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), len(_list(obj, "webhooks")), _age(obj, now)]


# ---------------------------------------------------------------------------------------------
# upstream's default table convertor: what kinds without a printer show (roles, CRDs, ...)

_DEFAULT_COLS = (NAME, _Col("Created At", "date", description=_AGE_DESC))


def _default_cells(obj: dict, now: _dt.datetime) -> list:
    created = parse_time(_meta(obj).get("creationTimestamp"))
    if created is None:
        stamp = "0001-01-01T00:00:00Z"  # Go's zero time, formatted
    else:
        stamp = created.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_name(obj), stamp]


# ---------------------------------------------------------------------------------------------
# the registry


_Cells = Callable[[dict, _dt.datetime], list]

_PRINTERS: dict[tuple[str, str], tuple[tuple[_Col, ...], _Cells]] = {
    ("", "Pod"): (_POD_COLS, _pod_cells),
    ("", "PodTemplate"): (_POD_TEMPLATE_COLS, _pod_template_cells),
    ("", "Node"): (_NODE_COLS, _node_cells),
    ("", "Namespace"): (_NAMESPACE_COLS, _namespace_cells),
    ("", "Service"): (_SERVICE_COLS, _service_cells),
    ("", "Endpoints"): (_ENDPOINTS_COLS, _endpoints_cells),
    ("", "ConfigMap"): (_CONFIGMAP_COLS, _configmap_cells),
    ("", "Secret"): (_SECRET_COLS, _secret_cells),
    ("", "ServiceAccount"): (_SERVICE_ACCOUNT_COLS, _service_account_cells),
    ("", "Event"): (_EVENT_COLS, _event_cells_for("")),
    ("", "ResourceQuota"): (_RESOURCE_QUOTA_COLS, _resource_quota_cells),
    ("", "PersistentVolume"): (_PV_COLS, _pv_cells),
    ("", "PersistentVolumeClaim"): (_PVC_COLS, _pvc_cells),
    ("", "ReplicationController"): (_RC_COLS, _rc_cells),
    ("", "ComponentStatus"): (_COMPONENT_STATUS_COLS, _component_status_cells),
    ("apps", "Deployment"): (_DEPLOYMENT_COLS, _deployment_cells),
    ("apps", "ReplicaSet"): (_REPLICASET_COLS, _replicaset_cells),
    ("apps", "DaemonSet"): (_DAEMONSET_COLS, _daemonset_cells),
    ("apps", "StatefulSet"): (_STATEFULSET_COLS, _statefulset_cells),
    ("apps", "ControllerRevision"): (_CONTROLLER_REVISION_COLS, _controller_revision_cells),
    ("batch", "Job"): (_JOB_COLS, _job_cells),
    ("batch", "CronJob"): (_CRONJOB_COLS, _cronjob_cells),
    ("discovery.k8s.io", "EndpointSlice"): (_ENDPOINTSLICE_COLS, _endpointslice_cells),
    ("coordination.k8s.io", "Lease"): (_LEASE_COLS, _lease_cells),
    ("events.k8s.io", "Event"): (_EVENT_COLS, _event_cells_for("events.k8s.io")),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_BINDING_COLS, _binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_BINDING_COLS, _binding_cells),
    ("policy", "PodDisruptionBudget"): (_PDB_COLS, _pdb_cells),
    ("autoscaling", "HorizontalPodAutoscaler"): (_HPA_COLS, _hpa_cells),
    ("scheduling.k8s.io", "PriorityClass"): (_PRIORITY_CLASS_COLS, _priority_class_cells),
    ("certificates.k8s.io", "CertificateSigningRequest"): (_CSR_COLS, _csr_cells),
    ("networking.k8s.io", "Ingress"): (_INGRESS_COLS, _ingress_cells),
    ("networking.k8s.io", "IngressClass"): (_INGRESS_CLASS_COLS, _ingress_class_cells),
    ("networking.k8s.io", "NetworkPolicy"): (_NETWORK_POLICY_COLS, _network_policy_cells),
    ("storage.k8s.io", "StorageClass"): (_STORAGE_CLASS_COLS, _storage_class_cells),
    ("node.k8s.io", "RuntimeClass"): (_RUNTIME_CLASS_COLS, _runtime_class_cells),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (_WEBHOOK_COLS, _webhook_cells),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (_WEBHOOK_COLS, _webhook_cells),
    # upstream serves these through its default table convertor, said here for the record:
    # LimitRange, Role, ClusterRole, CustomResourceDefinition and every kind not listed.
}


def _printer(group: str, kind: str) -> tuple[tuple[_Col, ...], _Cells]:
    return _PRINTERS.get((group, kind), (_DEFAULT_COLS, _default_cells))


def table_columns(group: str, kind: str) -> list[dict]:
    """The columnDefinitions of a built-in kind's Table (upstream's printer columns)."""
    return [c.as_dict() for c in _printer(group, kind)[0]]


def table_cells(group: str, kind: str, obj: dict, now: _dt.datetime) -> list:
    """One row's cells for `obj`, formatted as upstream's printer formats them (wide columns included)."""
    return _printer(group, kind)[1](obj if isinstance(obj, dict) else {}, now)


# ---------------------------------------------------------------------------------------------
# custom resources: additionalPrinterColumns with simple JSONPath


class _Step(NamedTuple):
    op: str  # "field", "index", "slice", "wild", "filter"
    arg: Any = None


class _Filter(NamedTuple):
    path: tuple[_Step, ...]
    cmp: str | None  # None: existence test
    value: Any = None


_MISSING = object()


def _parse_literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)  # raises ValueError for junk


def _split_bracket(s: str, i: int) -> tuple[str, int]:
    """The text inside the bracket opened at s[i] and the index after its closing bracket."""
    depth = 0
    quote = ""
    j = i
    while j < len(s):
        ch = s[j]
        if quote:
            if ch == "\\":
                j += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
        j += 1
    raise ValueError("unclosed bracket")


def _parse_path(s: str, allow_current: bool = False) -> tuple[_Step, ...]:
    s = s.strip()
    steps: list[_Step] = []
    i = 0
    if s.startswith("$") or (allow_current and s.startswith("@")):
        i = 1
    while i < len(s):
        ch = s[i]
        if ch == ".":
            i += 1
            if i < len(s) and s[i] == ".":
                raise ValueError("recursive descent is not supported")
            name = []
            while i < len(s) and s[i] not in ".[":
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                name.append(s[i])
                i += 1
            field = "".join(name)
            if field == "*":
                steps.append(_Step("wild"))
            elif field:
                steps.append(_Step("field", field))
        elif ch == "[":
            inner, i = _split_bracket(s, i)
            inner = inner.strip()
            if inner == "*":
                steps.append(_Step("wild"))
            elif inner.startswith("?"):
                steps.append(_Step("filter", _parse_filter(inner[1:].strip())))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                steps.append(_Step("field", inner[1:-1]))
            elif ":" in inner:
                parts = inner.split(":")
                if len(parts) > 3:
                    raise ValueError("bad slice")
                nums = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
                steps.append(_Step("slice", tuple(nums)))
            else:
                steps.append(_Step("index", int(inner)))
        elif ch.isspace():
            i += 1
        else:
            raise ValueError(f"unexpected {ch!r}")
    return tuple(steps)


def _parse_filter(text: str) -> _Filter:
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError("bad filter")
    text = text[1:-1].strip()
    m = re.match(r"^(@[^=!<>\s]*)\s*(==|!=|<=|>=|<|>)\s*(.+)$", text)
    if m is None:
        if not text.startswith("@"):
            raise ValueError("bad filter")
        return _Filter(_parse_path(text, allow_current=True), None)
    return _Filter(_parse_path(m.group(1), allow_current=True), m.group(2), _parse_literal(m.group(3)))


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("==", "!="):
        if isinstance(left, (int, float)) and isinstance(right, (int, float)) and not (
                isinstance(left, bool) or isinstance(right, bool)):
            equal = left == right
        else:
            equal = type(left) is type(right) and left == right
        return equal if op == "==" else not equal
    if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
        return False
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]


def _eval(values: list, steps: Sequence[_Step]) -> list:
    for step in steps:
        out: list = []
        for v in values:
            if step.op == "field":
                if isinstance(v, dict) and step.arg in v:
                    out.append(v[step.arg])
            elif step.op == "index":
                if isinstance(v, list) and -len(v) <= step.arg < len(v):
                    out.append(v[step.arg])
            elif step.op == "slice":
                if isinstance(v, list):
                    out.extend(v[slice(*step.arg)])
            elif step.op == "wild":
                if isinstance(v, list):
                    out.extend(v)
                elif isinstance(v, dict):
                    out.extend(v[k] for k in sorted(v))
            elif step.op == "filter":
                items = v if isinstance(v, list) else []
                for item in items:
                    found = _eval([item], step.arg.path)
                    if step.arg.cmp is None:
                        if found:
                            out.append(item)
                    elif found and _compare(found[0], step.arg.cmp, step.arg.value):
                        out.append(item)
        values = out
    return values


def jsonpath_find(obj: Any, path: str) -> list:
    """Results of a simple JSONPath (`.spec.replicas`, `.items[0]`, `.conditions[?(@.type=="Ready")].status`).

    Missing keys give no results; an unparseable path raises ValueError.
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return _eval([obj], _parse_path(text))


def _go_float(x: float) -> str:
    """Go's %v for a float64: shortest digits, exponent form when the exponent is < -4 or >= 6."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    ds = "".join(str(d) for d in digits)
    exp = len(ds) + int(exponent) - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return prefix + format(Decimal(repr(abs(x))).normalize(), "f")


def _go_json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _print_result(value: Any) -> str:
    """How upstream's jsonpath PrintResults renders one value in a string column."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _go_json(value)
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _crd_cell(col_type: str, value: Any, now: _dt.datetime) -> Any:
    if col_type == "string":
        return _print_result(value)
    if value is None:
        return None
    if col_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return int(value)
    elif col_type == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif col_type == "boolean":
        if isinstance(value, bool):
            return value
    elif col_type == "date":
        if isinstance(value, str):
            if value in ("", "null"):
                return "<unknown>"
            t = parse_time(value)
            if t is None:
                return "<invalid>"
            return translate_timestamp(t, now)
    return None


def _crd_printer_columns(additional_printer_columns: list[dict] | None) -> list[dict]:
    columns = [c for c in (additional_printer_columns or []) if isinstance(c, dict)]
    if columns:
        return columns
    # a CRD without columns shows its age (upstream's served default)
    return [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": _AGE_DESC}]


def _json_path_of(column: dict) -> str:
    return str(column.get("jsonPath", column.get("JSONPath", "")))


def crd_columns(additional_printer_columns: list[dict]) -> list[dict]:
    """columnDefinitions for a custom resource: Name, then the CRD version's additionalPrinterColumns."""
    out = [NAME.as_dict()]
    for col in _crd_printer_columns(additional_printer_columns):
        out.append({
            "name": str(col.get("name", "")),
            "type": str(col.get("type", "string")),
            "format": str(col.get("format", "")),
            "description": str(col.get("description") or
                               f"Custom resource definition column (in JSONPath format): {_json_path_of(col)}"),
            "priority": int(col.get("priority", 0) or 0),
        })
    return out


def crd_cells(additional_printer_columns: list[dict], obj: dict, now: _dt.datetime) -> list:
    """One custom resource's cells: its name, then each printer column's JSONPath value (None if absent)."""
    cells: list = [_name(obj)]
    for col in _crd_printer_columns(additional_printer_columns):
        try:
            results = jsonpath_find(obj, _json_path_of(col))
        except (ValueError, TypeError):
            results = []
        if not results:
            cells.append(None)
            continue
        cells.append(_crd_cell(str(col.get("type", "string")), results[0], now))
    return cells
