"""Controller references (upstream's ControllerRefManager), shared by every controller that owns
objects through a selector (ReplicaSet, Deployment, DaemonSet, StatefulSet): which candidates an owner claims, adopting matching orphans and
releasing owned objects that stopped matching, by merge patches of metadata.ownerReferences
carrying the object's uid as a precondition."""
from __future__ import annotations

import logging
from typing import Any, Callable

from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with controller: true, if any."""
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def make_owner_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """The controller reference an owner puts on what it creates (blockOwnerDeletion set, as upstream)."""
    m = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": m["name"], "uid": m["uid"], "controller": True,
            "blockOwnerDeletion": True}


async def patch_owner_refs(client: Client, api_version: str, resource: str, obj: Obj, refs: list[Obj]) -> bool:
    """Replace obj's ownerReferences, if it is still the same object; False when it is gone or changed."""
    m = obj["metadata"]
    body: Obj = {"metadata": {"ownerReferences": refs or None, "uid": m.get("uid")}}
    try:
        await client.patch(api_version, resource, m.get("namespace"), m["name"], body, "merge")
        return True
    except ApiError as e:
        if not (is_not_found(e) or is_conflict(e)):
            log.warning("ownerReferences of %s %s/%s not changed: %s", resource, m.get("namespace"), m["name"], e)
        return False


def selects(selector: Any) -> Callable[[Obj], bool]:
    """The `matches` of claim() for a label selector."""
    return lambda obj: selector.matches((obj.get("metadata") or {}).get("labels") or {})


async def claim(client: Client, owner: Obj, owner_ref: Obj, candidates: list[Obj], matches: Callable[[Obj], bool], *,
                api_version: str, resource: str, adoptable: Callable[[Obj], bool] = lambda o: True) -> list[Obj]:
    """The candidates `owner` controls after adopting and releasing (ClaimObjects).

    Owned and matching: kept. Owned and no longer matching: released (unless the owner is being
    deleted). Orphaned, matching and `adoptable`: adopted (unless the owner is being deleted)."""
    uid = owner["metadata"]["uid"]
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    ours = []
    for obj in candidates:
        ref = controller_ref(obj)
        ok = matches(obj)
        if ref is not None and ref.get("uid") == uid:
            if ok:
                ours.append(obj)
            elif not deleting:
                await patch_owner_refs(client, api_version, resource, obj,
                                       [r for r in obj["metadata"].get("ownerReferences") or []
                                        if r.get("uid") != uid])
        elif ref is None and ok and not deleting and adoptable(obj):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            refs = list(obj["metadata"].get("ownerReferences") or []) + [owner_ref]
            if await patch_owner_refs(client, api_version, resource, obj, refs):
                ours.append(obj)
    return ours


def owner_key(obj: Obj, kind: str, owners: Any) -> str | None:
    """"ns/name" of obj's controller of `kind` if the informer `owners` holds it with the same uid."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    key = f"{obj['metadata'].get('namespace', '')}/{ref['name']}"
    owner = owners.get(key)
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return key


def selecting_owners(obj: Obj, owners: Any) -> list[str]:
    """Keys of the owners in the informer `owners` (same namespace) whose spec.selector matches obj."""
    from kubelab.api.selectors import SelectorError, label_selector_from_api
    from kubelab.client.informer import NAMESPACE_INDEX
    labels = obj["metadata"].get("labels") or {}
    out = []
    for o in owners.by_index(NAMESPACE_INDEX, obj["metadata"].get("namespace", "")):
        try:
            if label_selector_from_api((o.get("spec") or {}).get("selector")).matches(labels):
                out.append(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}")
        except SelectorError:
            continue
    return out
