"""Server-side apply (application/apply-patch+yaml).

This first cut creates the object when it is missing and otherwise merges the applied
configuration into the live object (strategic merge for built-in kinds, merge patch for
custom resources), recording an Apply entry for the field manager. Field ownership
(fieldsV1, conflicts and removal of fields a manager stops applying) is not tracked yet.
"""
from __future__ import annotations

import copy

from aiohttp import web

from ..api.patch import PatchError, apply_merge_patch, apply_strategic_merge_patch
from ..api.patchmeta import root_type_for
from . import codec, status


async def server_side_apply(h, request: web.Request, r, body, dry: bool) -> web.StreamResponse:
    from .rest import Req
    k = r.kind
    manager = request.query.get("fieldManager")
    if not manager:
        raise status.bad_request("PATCH requests with apply content type require fieldManager to be set")
    if not isinstance(body, dict):
        raise status.bad_request("error decoding YAML: the applied configuration must be an object")
    applied = h._check_type(k, copy.deepcopy(body))
    md = applied.setdefault("metadata", {})
    if md.get("name") not in (None, r.name):
        raise status.bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL "
                                 f"({r.name})")
    md["name"] = r.name

    async def create():
        obj = copy.deepcopy(applied)
        if k.namespaced:
            obj["metadata"]["namespace"] = r.namespace
        created = await h._create_obj(request, r, obj, dry, None)
        h._record_manager(created, manager, "Apply", k)
        return codec.json_response(created, 201)

    root = root_type_for(k.group, k.kind)

    def mutate(cur: dict) -> dict:
        patch = copy.deepcopy(applied)
        patch.get("metadata", {}).pop("resourceVersion", None)
        try:
            if root is not None:
                new = apply_strategic_merge_patch(cur, patch, root)
            else:
                new = apply_merge_patch(cur, patch)
        except PatchError as e:
            raise status.from_patch_error(e)
        h._record_manager(new, manager, "Apply", k, r.sub or "")
        return new

    sub_req = Req(k, r.namespace, r.name, r.sub)
    return await h._guaranteed(request, sub_req, mutate, dry=dry, sub=r.sub, precondition_from_body=False,
                               create_if_missing=create if r.sub is None else None)
