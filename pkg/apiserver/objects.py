"""Object metadata bookkeeping shared by the write paths: names, uids, timestamps, generation."""
from __future__ import annotations

import random
import uuid
from typing import Callable
from kubelab.api.timefmt import now_rfc3339, rfc3339_after  # noqa: F401  (re-exported)

# upstream's generateName alphabet (no vowels, no confusable characters)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})

# metadata a client may not set on create, and that updates keep from the stored object
SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def generate_name(base: str) -> str:
    base = base[: 63 - 5]
    return base + "".join(random.choice(_ALPHABET) for _ in range(5))


def new_uid() -> str:
    return str(uuid.uuid4())


def spec_changed(new: dict, old: dict) -> bool:
    """True when anything but metadata and status differs (what bumps metadata.generation)."""
    keys = (set(new) | set(old)) - {"metadata", "status", "kind", "apiVersion"}
    return any(new.get(k) != old.get(k) for k in keys)


def meta(obj: dict) -> dict:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


# kinds whose names are DNS-1123 labels (the rest are subdomains, or path segments for rbac)
_LABEL_NAMED = {("", "namespaces"), ("", "services")}
_PATH_SEGMENT_NAMED = {"rbac.authorization.k8s.io"}


def _path_segment_name(name: str, prefix: bool = False) -> list[str]:
    if name in (".", ".."):
        return [f'may not be \'{name}\'']
    for bad in ("/", "%"):
        if bad in name:
            return [f"may not contain '{bad}'"]
    return []


def name_validator(kind) -> Callable[[str, bool], list[str]]:
    """The name rule of a kind, as upstream's ValidateObjectMeta is given it."""
    from ..api import validation as v
    if (kind.group, kind.plural) in _LABEL_NAMED:
        return v.name_is_dns_label
    if kind.group in _PATH_SEGMENT_NAMED:
        return _path_segment_name
    return v.name_is_dns_subdomain
