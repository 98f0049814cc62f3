"""Node helpers the node controllers share, as upstream's pkg/controller/util/node and
pkg/util/node: the Ready condition, the zone a node is in (GetZoneKey), swapping the taints the
node controllers own (SwapNodeControllerTaint: add then remove, each with a fresh read and retried
on conflicts; added taints get timeAdded), MarkPodsNotReady, and the node events (RecordNodeEvent,
RecordNodeStatusChange) that upstream writes against the node in the "default" namespace."""
from __future__ import annotations

import copy
import logging
from typing import Any

from kubelab.api.taints import same_taint, taint_exists
from kubelab.client.events import EventRecorder
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found

from .podutil import get_condition, patch_pod_status, rfc3339, update_pod_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
UPDATE_RETRIES = 5


def ready_condition(node: Obj) -> Obj | None:
    return get_condition((node.get("status") or {}).get("conditions"), "Ready")


def is_node_ready(node: Obj) -> bool:
    c = ready_condition(node)
    return c is not None and c.get("status") == "True"


def zone_key(node: Obj) -> str:
    """Upstream's GetZoneKey: "" without zone and region labels, else region + ":\\x00:" + zone."""
    labels = node.get("metadata", {}).get("labels") or {}
    zone = next((labels[k] for k in ZONE_LABELS if labels.get(k)), "")
    region = next((labels[k] for k in REGION_LABELS if labels.get(k)), "")
    if not zone and not region:
        return ""
    return f"{region}:\x00:{zone}"


def with_taints_swapped(taints: list[Obj], add: list[Obj], remove: list[Obj], now: str) -> list[Obj] | None:
    """The taint list after adding `add` (replacing a taint of the same key and effect whose value
    differs) and removing `remove`; None when nothing would change."""
    out = [t for t in taints if not taint_exists(remove, t)]
    for a in add:
        cur = next((t for t in out if same_taint(t, a)), None)
        if cur is not None and (cur.get("value") or "") == (a.get("value") or ""):
            continue
        if cur is not None:
            out.remove(cur)
        out.append({**a, "timeAdded": now})
    if len(out) == len(taints) and all(o is t for o, t in zip(out, taints)):
        return None
    return out


async def swap_node_controller_taint(client: Client, name: str, add: list[Obj], remove: list[Obj]) -> bool:
    """Add `add` and remove `remove` on node `name`; False (logged) when the node could not be updated."""
    for attempt in range(UPDATE_RETRIES):
        try:
            node = await client.get("v1", "nodes", None, name)
            spec = node.setdefault("spec", {})
            taints = with_taints_swapped(list(spec.get("taints") or []), add, remove, rfc3339())
            if taints is None:
                return True
            spec["taints"] = taints
            await client.update("v1", "nodes", node)
            return True
        except ApiError as e:
            if is_not_found(e):
                return False
            if is_conflict(e) and attempt < UPDATE_RETRIES - 1:
                continue
            log.warning("taints of node %s not updated: %s", name, e)
            return False
        except OSError as e:
            log.warning("taints of node %s not updated: %s", name, e)
            return False
    return False


def _node_ref(name: str, uid: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid, "namespace": ""}


def record_node_event(recorder: EventRecorder | None, name: str, uid: str, event_type: str, reason: str,
                      event: str) -> None:
    """Upstream's RecordNodeEvent: the message is "Node <name> event: <event>"."""
    if recorder is not None:
        recorder.event(_node_ref(name, uid), event_type, reason, f"Node {name} event: {event}")


def record_node_status_change(recorder: EventRecorder | None, node: Obj, new_status: str) -> None:
    """Upstream's RecordNodeStatusChange: reason new_status, "Node <name> status is now: <new_status>"."""
    name = node["metadata"]["name"]
    if recorder is not None:
        recorder.event(_node_ref(name, node["metadata"].get("uid", "")), "Normal", new_status,
                       f"Node {name} status is now: {new_status}")


async def mark_pods_not_ready(client: Client, recorder: EventRecorder | None, pods: list[Obj],
                              node_name: str) -> list[Exception]:
    """Upstream's MarkPodsNotReady: set Ready=False on every pod of the node that has a Ready
    condition, with the Warning event NodeNotReady "Node is not ready"; returns the errors."""
    errors: list[Exception] = []
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") != node_name:
            continue
        ready = get_condition((pod.get("status") or {}).get("conditions"), "Ready")
        if ready is None:
            continue
        status = copy.deepcopy(pod.get("status") or {})
        if not update_pod_condition(status, dict(ready, status="False")):
            continue
        log.info("updating ready status of pod %s/%s to false", pod["metadata"]["namespace"],
                 pod["metadata"]["name"])
        try:
            await patch_pod_status(client, pod, {"conditions": [get_condition(status["conditions"], "Ready")]})
        except ApiError as e:
            if is_not_found(e):
                continue
            errors.append(e)
            continue
        except OSError as e:
            errors.append(e)
            continue
        if recorder is not None:
            recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")
    return errors


POD_NODE_INDEX = "spec.nodeName"


def pod_node_index(pod: Obj) -> list[str]:
    """Index function: the node a pod is bound to (upstream's "spec.nodeName" pod indexer)."""
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []
