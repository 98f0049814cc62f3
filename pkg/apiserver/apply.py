"""Server-side apply (application/apply-patch+yaml) on the managed-fields engine.

The applied configuration is merged into the live object by pkg/api/managedfields (field
ownership per manager, conflicts unless force, removal of fields a manager stops applying),
then goes through the same update pipeline as any write (defaults, validation, admission,
optimistic concurrency). A missing object is created.
"""
from __future__ import annotations

from aiohttp import web

from ..api import managedfields
from ..api.objcopy import deep_copy
from ..api.patchmeta import root_type_for
from . import codec, status
from .objects import now_rfc3339


async def server_side_apply(h, request: web.Request, r, body, dry: bool) -> web.StreamResponse:
    from .rest import Req, _bool
    k = r.kind
    q = request.query
    manager = q.get("fieldManager")
    if not manager:
        raise status.bad_request("PATCH requests with apply content type require fieldManager to be set")
    force = _bool(q, "force")
    if not isinstance(body, dict):
        raise status.bad_request("error decoding YAML: the applied configuration must be an object")
    applied = h._check_type(k, deep_copy(body))
    md = applied.setdefault("metadata", {})
    if not isinstance(md, dict):
        raise status.bad_request("metadata must be an object")
    if md.get("name") not in (None, r.name):
        raise status.bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL "
                                 f"({r.name})")
    md["name"] = r.name
    if k.namespaced and md.get("namespace") not in (None, r.namespace):
        raise status.bad_request("the namespace of the provided object does not match the namespace sent on the "
                                 "request")
    root = root_type_for(k.group, k.kind)
    sub = r.sub or ""
    ignore_status = k.has_status and sub != "status"

    def merged(live: dict | None) -> dict:
        try:
            return managedfields.apply(live, applied, manager=manager, api_version=k.api_version, root_type=root,
                                       force=force, now=now_rfc3339(), subresource=sub, ignore_status=ignore_status)
        except managedfields.ApplyConflict as e:
            st = e.to_status()
            raise status.StatusError(409, "Conflict", st["message"], st.get("details"))
        except managedfields.FieldManagerError as e:
            raise status.bad_request(str(e))

    async def create():
        obj = merged(None)
        if k.namespaced:
            obj["metadata"]["namespace"] = r.namespace
        created = await h._create_obj(request, r, obj, dry, None)
        return codec.json_response(created, 201)

    def mutate(cur: dict) -> dict:
        rv = md.get("resourceVersion")
        if rv and rv != cur["metadata"].get("resourceVersion"):
            raise status.conflict(k.group, k.plural, r.name)
        return merged(cur)

    return await h._guaranteed(request, Req(k, r.namespace, r.name, r.sub), mutate, dry=dry, sub=r.sub,
                               precondition_from_body=False, create_if_missing=create if r.sub is None else None,
                               track_manager=False)
