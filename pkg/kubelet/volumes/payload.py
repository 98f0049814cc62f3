"""The files of configMap, secret and downwardAPI volumes and projected sources, as upstream's
MakePayload (pkg/volume/configmap, pkg/volume/secret) and downwardapi.CollectData build them: every
key at its own name with defaultMode, or only the listed items at their paths with their modes; a
listed key that is missing fails (`configmap references non-existent config key: k`) unless the
source is optional. Pure functions over API objects.
"""
from __future__ import annotations

import base64
import posixpath
from typing import Any, Mapping

from kubelab.kubelet.fieldpath import FieldPathError, container_resource_value, extract_field_path, find_container
from kubelab.kubelet.volumes.atomic_writer import FileProjection

Obj = dict[str, Any]

DEFAULT_MODE = 0o644      # ConfigMap/Secret/DownwardAPI/Projected VolumeSourceDefaultMode


class PayloadSourceError(Exception):
    """A payload cannot be built (upstream's message)."""


def aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate's text."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _mode(item: Mapping[str, Any], default_mode: int) -> int:
    m = item.get("mode")
    return int(m) if m is not None else default_mode


def configmap_payload(items: list[Obj] | None, cm: Obj | None, default_mode: int, optional: bool) -> dict[str, FileProjection]:
    """configmap.MakePayload (cm None: an optional configMap that does not exist)."""
    data = dict((cm or {}).get("data") or {})
    binary = {k: base64.b64decode(v) for k, v in ((cm or {}).get("binaryData") or {}).items()}
    out: dict[str, FileProjection] = {}
    if not items:
        for k, v in data.items():
            out[k] = FileProjection(v.encode(), default_mode)
        for k, v in binary.items():
            out[k] = FileProjection(v, default_mode)
        return out
    for it in items:
        key = it.get("key", "")
        if key in data:
            content = data[key].encode()
        elif key in binary:
            content = binary[key]
        elif optional:
            continue
        else:
            raise PayloadSourceError(f"configmap references non-existent config key: {key}")
        out[it.get("path", "")] = FileProjection(content, _mode(it, default_mode))
    return out


def secret_payload(items: list[Obj] | None, secret: Obj | None, default_mode: int, optional: bool) -> dict[str, FileProjection]:
    """secret.MakePayload (secret None: an optional secret that does not exist)."""
    data = {k: base64.b64decode(v or "") for k, v in ((secret or {}).get("data") or {}).items()}
    out: dict[str, FileProjection] = {}
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    for it in items:
        key = it.get("key", "")
        if key not in data:
            if optional:
                continue
            raise PayloadSourceError(f"references non-existent secret key: {key}")
        out[it.get("path", "")] = FileProjection(data[key], _mode(it, default_mode))
    return out


def downward_api_payload(items: list[Obj] | None, pod: Obj, default_mode: int,
                         allocatable: Mapping[str, Any] | None = None) -> dict[str, FileProjection]:
    """downwardapi.CollectData: fieldRef (metadata) and resourceFieldRef (containerName) items;
    errors are aggregated, as upstream."""
    out: dict[str, FileProjection] = {}
    errors: list[str] = []
    for it in items or []:
        path = posixpath.normpath(it.get("path", ""))
        value = ""
        try:
            if it.get("fieldRef"):
                value = extract_field_path(pod, it["fieldRef"].get("fieldPath", ""), None)
            elif it.get("resourceFieldRef"):
                ref = it["resourceFieldRef"]
                container = find_container(pod, ref.get("containerName", ""))
                value = container_resource_value(ref, container, allocatable)
        except FieldPathError as e:
            errors.append(str(e))
        out[path] = FileProjection(value.encode(), _mode(it, default_mode))
    if errors:
        raise PayloadSourceError(aggregate(errors))
    return out
