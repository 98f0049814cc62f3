"""Upstream's ControllerRefManager for any owner and owned resource: owned objects that match the
selector are kept, owned ones that stopped matching are released (the owner reference dropped),
matching orphans are adopted (an owner reference added, guarded by the object's uid), unless the
owner is being deleted. Used by the DaemonSet and StatefulSet controllers for pods and revisions.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def controller_of(obj: Obj) -> Obj | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


async def patch_owner_refs(client: Client, api_version: str, resource: str, obj: Obj, refs: list[Obj]) -> bool:
    m = obj["metadata"]
    try:
        await client.patch(api_version, resource, m.get("namespace"), m["name"],
                           {"metadata": {"ownerReferences": refs, "uid": m.get("uid")}}, "merge")
        return True
    except ApiError as e:
        if not (is_not_found(e) or is_conflict(e)):
            log.warning("ownerReferences of %s %s/%s not changed: %s", resource, m.get("namespace"), m["name"], e)
        return False


async def claim(client: Client, api_version: str, resource: str, owner: Obj, owner_ref: Obj,
                candidates: list[Obj], matches: Callable[[Obj], bool],
                adoptable: Callable[[Obj], bool] = lambda o: True) -> list[Obj]:
    """The candidates this owner controls after adoption and release."""
    uid = owner["metadata"]["uid"]
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    ours = []
    for obj in candidates:
        ref = controller_of(obj)
        ok = matches(obj)
        if ref is not None and ref.get("uid") == uid:
            if ok:
                ours.append(obj)
            elif not deleting:
                await patch_owner_refs(client, api_version, resource, obj,
                                       [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid])
        elif ref is None and ok and not deleting and adoptable(obj) and not obj["metadata"].get("deletionTimestamp"):
            refs = list(obj["metadata"].get("ownerReferences") or []) + [owner_ref]
            if await patch_owner_refs(client, api_version, resource, obj, refs):
                ours.append(obj)
    return ours
