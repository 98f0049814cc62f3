"""Static pods (upstream's file config source and mirror pods): pods read from --pod-manifest-path,
run by the kubelet without the API server, and shown in the API as mirror pods.

A manifest's pod is named <name>-<node>, bound to the node, given a UID that is a hash of its content
and the node (so an edited manifest is a new pod), and the annotations kubernetes.io/config.source
(file), config.hash and config.seen. Its mirror pod carries kubernetes.io/config.mirror=<hash> and a
controller reference to the Node; the kubelet keeps it in the API and writes the static pod's status
to it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from kubelab.api.timefmt import now_rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SOURCE = "kubernetes.io/config.source"
HASH = "kubernetes.io/config.hash"
SEEN = "kubernetes.io/config.seen"
MIRROR = "kubernetes.io/config.mirror"


def is_mirror(pod: Obj) -> bool:
    return MIRROR in ((pod.get("metadata") or {}).get("annotations") or {})


def _uid(content: Obj, node: str) -> str:
    h = hashlib.md5(json.dumps(content, sort_keys=True).encode() + node.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def read_manifests(directory: Path, node: str) -> dict[str, Obj]:
    """uid -> static pod, from every *.yaml, *.yml and *.json file (dotfiles ignored, as upstream);
    a file that is not a valid Pod is logged and skipped."""
    out: dict[str, Obj] = {}
    if not directory or not directory.is_dir():
        return out
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            log.warning("static pod manifest %s is not readable: %s", path, e)
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "Pod" or not (doc.get("metadata") or {}).get("name"):
            log.warning("static pod manifest %s holds no Pod with a name", path)
            continue
        uid = _uid(doc, node)
        m = doc.setdefault("metadata", {})
        m["name"] = f"{m['name']}-{node}"
        m.setdefault("namespace", "default")
        m["uid"] = uid
        m["annotations"] = {**(m.get("annotations") or {}), SOURCE: "file", HASH: uid, SEEN: now_rfc3339()}
        spec = doc.setdefault("spec", {})
        spec["nodeName"] = node
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        doc.setdefault("status", {})
        out[uid] = doc
    return out


def mirror_pod(static: Obj, node_obj: Obj | None) -> Obj:
    m = static["metadata"]
    meta: Obj = {"name": m["name"], "namespace": m["namespace"], "labels": dict(m.get("labels") or {}),
                 "annotations": {**{k: v for k, v in (m.get("annotations") or {}).items() if k != SEEN},
                                 MIRROR: m["uid"]}}
    if node_obj is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_obj["metadata"]["name"],
                                    "uid": node_obj["metadata"]["uid"], "controller": True}]
    spec = {k: v for k, v in (static.get("spec") or {}).items()}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
