"""The generic REST handler: one implementation of every verb for every declared kind.

The write chain is: decode -> (authn/authz happen in middleware) -> mutating admission ->
defaults -> validation -> validating admission -> storage. Kind-specific behaviour comes
only from the `Kind` declaration and from the admission plugins.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from ..api import managedfields
from ..api import validation as v
from ..api.objcopy import deep_copy
from ..api.patch import PatchError, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from ..api.patchmeta import root_type_for
from ..api.registry import Kind, Registry, get_path, set_path
from ..api.selectors import SelectorError, label_selector_from_api, parse_field_selector, parse_label_selector
from ..storage import errors as serr
from ..storage.cacher import Cacher
from ..storage.etcd import Store
from . import codec, kubeletproxy, status, tables
from .admission import Admission
from .objects import (OBJECT_META_FIELDS, SYSTEM_META, generate_name, meta, name_validator, new_uid,
                      now_rfc3339, rfc3339_after, spec_changed)

log = logging.getLogger(__name__)

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


def _bool(q, name: str) -> bool:
    return str(q.get(name, "")).lower() in ("true", "1")


@dataclass
class Req:
    """What a resource request is about, parsed from the path."""
    kind: Kind
    namespace: str | None
    name: str | None
    sub: str | None


def _view(k: Kind, obj: dict) -> dict:
    """An object as seen through k: custom resources are stored once for all their versions, and
    events.k8s.io Events are stored as core Events."""
    if k.from_storage is not None:
        return k.from_storage(obj)
    if k.crd is not None and obj.get("apiVersion") != k.api_version:
        return {**obj, "apiVersion": k.api_version}
    return obj


def _stored(k: Kind, obj: dict) -> dict:
    return k.to_storage(obj) if k.to_storage is not None else obj


LIST_CHUNK = 500


def _continue_token(rev: int, next_key: str) -> str:
    """metadata.continue: the list's revision and the key to go on from."""
    return base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rev,
                                                "start": next_key}).encode()).decode().rstrip("=")


class _ListStream(web.StreamResponse):
    """A large LIST written in chunks, so other requests are served while it goes out."""

    def __init__(self, head: bytes, chunks: list[list[dict]], dumps: Callable[[dict], bytes]) -> None:
        super().__init__(status=200, headers={"Content-Type": "application/json"})
        self._head, self._chunks, self._dumps_fn = head, chunks, dumps

    async def prepare(self, request):  # aiohttp calls this to send the response
        if self.prepared:
            return await super().prepare(request)
        self.enable_chunked_encoding()
        writer = await super().prepare(request)
        sep = b""
        await self.write(self._head)
        for chunk in self._chunks:
            await self.write(sep + b",".join(self._dumps_fn(o) for o in chunk))
            sep = b","
            await asyncio.sleep(0)
        await self.write(b"]}")
        await self.write_eof()
        return writer


def field_manager(request: web.Request) -> str:
    """fieldManager, or upstream's default: the User-Agent up to its first '/'."""
    m = request.query.get("fieldManager")
    if m:
        if len(m) > 128:
            raise status.invalid("meta.k8s.io", "UpdateOptions", "", [v.too_long("fieldManager", m, 128)])
        return m
    ua = request.headers.get("User-Agent", "")
    return (ua.split("/", 1)[0] or "unknown")[:128]


def _dry_run(q) -> bool:
    vals = q.getall("dryRun", [])
    for val in vals:
        if val != "All":
            raise status.bad_request(f'Invalid dryRun value: "{val}": supported values: "All"')
    return bool(vals)


def _field_validation(q) -> str:
    fv = q.get("fieldValidation", "Warn") or "Warn"
    if fv not in ("Ignore", "Warn", "Strict"):
        raise status.bad_request(f"fieldValidation parameter unsupported: {fv}. "
                                 f"Must be one of Ignore, Warn, Strict")
    return fv


class ResourceHandler:
    def __init__(self, store: Store, cacher: Cacher, registry: Registry, admission: Admission,
                 min_request_timeout: int = 1800) -> None:
        self.store = store
        self.cacher = cacher
        self.registry = registry
        self.admission = admission
        self.min_request_timeout = min_request_timeout
        self.kubelet: kubeletproxy.KubeletProxy | None = None

    # --- dispatch --------------------------------------------------------------------------

    async def handle(self, request: web.Request, r: Req) -> web.StreamResponse:
        m = request.method
        q = request.query
        k = r.kind
        if r.sub and r.sub not in k.subresources:
            raise status.route_not_found(request.path)
        if r.sub in ("log", "exec", "attach", "portforward", "proxy"):
            return await self.node_proxy(request, r)
        if r.sub in ("binding", "eviction") and m != "POST":
            raise status.method_not_allowed()
        if r.sub == "finalize" and m != "PUT":
            raise status.method_not_allowed()
        if m == "GET":
            if r.name is None:
                if _bool(q, "watch"):
                    return await self.watch(request, r)
                return await self.list(request, r)
            if _bool(q, "watch"):
                return await self.watch(request, r, single=True)
            return await self.get(request, r)
        if m == "POST":
            if r.name is None:
                return await self.create(request, r)
            if r.sub == "binding":
                return await self.bind(request, r)
            if r.sub == "eviction":
                return await self.evict(request, r)
            raise status.method_not_allowed()
        if m == "PUT" and r.name is not None:
            return await self.update(request, r)
        if m == "PATCH" and r.name is not None:
            return await self.patch(request, r)
        if m == "DELETE":
            if r.sub:
                raise status.method_not_allowed()
            if r.name is None:
                return await self.delete_collection(request, r)
            return await self.delete(request, r)
        raise status.method_not_allowed()

    # --- reads -----------------------------------------------------------------------------

    async def _read(self, r: Req) -> dict:
        try:
            return await self.store.get(r.kind.key(r.namespace, r.name))
        except serr.NotFound:
            raise status.not_found(r.kind.group, r.kind.plural, r.name)

    async def get(self, request: web.Request, r: Req) -> web.StreamResponse:
        rv = request.query.get("resourceVersion")
        if rv == "0":
            obj = self.cacher.get(r.kind.key_prefix(), r.kind.key(r.namespace, r.name))
            if obj is None:
                raise status.not_found(r.kind.group, r.kind.plural, r.name)
        else:
            obj = await self._read(r)
        if r.sub == "scale":
            obj = self.to_scale(r.kind, obj)
            return codec.json_response(obj)
        if codec.wants_table(request) and r.sub is None:
            return codec.json_response(tables.table(r.kind, [_view(r.kind, obj)],
                                                    obj["metadata"].get("resourceVersion", ""),
                                                    request.query.get("includeObject")))
        return codec.json_response(_view(r.kind, obj))

    def predicate(self, request: web.Request, r: Req) -> Callable[[dict], bool] | None:
        q = request.query
        k = r.kind
        try:
            ls = parse_label_selector(q.get("labelSelector", ""))
            fs = parse_field_selector(q.get("fieldSelector", ""))
        except SelectorError as e:
            raise status.bad_request(str(e))
        getters: dict[str, Callable[[dict], str]] = {}
        for field, op, _ in fs.requirements:
            if field == "metadata.name":
                getters[field] = lambda o: o["metadata"].get("name", "")
            elif field == "metadata.namespace" and k.namespaced:
                getters[field] = lambda o: o["metadata"].get("namespace", "")
            elif field in k.field_selectors:
                getters[field] = k.field_selectors[field]
            else:
                raise status.bad_request(f'field label not supported: {field}')
        if ls.empty and not fs.requirements:
            return None

        def pred(o: dict) -> bool:
            if not ls.empty and not ls.matches(o.get("metadata", {}).get("labels") or {}):
                return False
            if fs.requirements:
                return fs.matches({f: g(o) for f, g in getters.items()})
            return True
        return pred

    async def list(self, request: web.Request, r: Req) -> web.StreamResponse:
        q = request.query
        k = r.kind
        pred = self.predicate(request, r)
        rv = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        try:
            limit = int(q.get("limit", "0") or 0)
        except ValueError:
            raise status.bad_request(f'invalid limit: {q.get("limit")}')
        cont = q.get("continue", "")
        if match and match not in ("Exact", "NotOlderThan"):
            raise status.bad_request(f'resourceVersionMatch: Unsupported value: "{match}": '
                                     f'supported values: "Exact", "NotOlderThan"')
        if match and not rv:
            raise status.invalid("meta.k8s.io", "ListOptions", "", [v.forbidden(
                "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")])
        if cont and rv not in ("", "0") and rv:
            raise status.invalid("meta.k8s.io", "ListOptions", "", [v.forbidden(
                "resourceVersion", "specifying resource version is not allowed when using continue")])
        prefix = k.key_prefix(r.namespace)
        items: list[dict]
        remaining = 0
        next_token = ""
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                start_rv, start_key = int(tok["rv"]), tok["start"]
                if not start_key.startswith(prefix.rstrip("/")):
                    start_key = prefix + start_key
            except Exception:
                raise status.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                         "(version meta.k8s.io/v1)")
            paged = self._page(k, start_rv, prefix, start_key, limit, pred)
            if paged is not None:
                items, next_token, remaining = paged
                return self._list_response(request, k, items, start_rv, next_token, remaining, cached=True)
            items, rev, next_token, remaining = await self._list_etcd(prefix, pred, limit, start_rv, start_key)
        elif limit and rv == "" and await self.cacher.consistent():
            # kubectl pages every get (limit=500): serve it from a frozen view of the cache
            snap_rv = self.cacher.snapshot(k.key_prefix())
            items, next_token, remaining = self._page(k, snap_rv, prefix, None, limit, pred)
            return self._list_response(request, k, items, snap_rv, next_token, remaining, cached=True)
        elif match == "Exact" or (limit and rv == ""):
            revision = int(rv) if match == "Exact" else 0
            items, rev, next_token, remaining = await self._list_etcd(prefix, pred, limit, revision, None)
        else:
            if rv == "":
                if not await self.cacher.consistent():
                    items, rev, next_token, remaining = await self._list_etcd(prefix, pred, limit, 0, None)
                    return self._list_response(request, k, items, rev, next_token, remaining)
            elif rv != "0":
                try:
                    want = int(rv)
                except ValueError:
                    raise status.bad_request(f"invalid resource version: {rv}")
                if not await self.cacher.wait_for(want, 3.0):
                    raise status.timeout(f"Too large resource version: {want}, current: {self.cacher.rev}")
            items, rev = self.cacher.list(k.key_prefix(), prefix, pred)
            return self._list_response(request, k, items, rev, next_token, remaining, cached=True)
        return self._list_response(request, k, items, rev, next_token, remaining)

    def _page(self, k: Kind, rev: int, prefix: str, start_key: str | None, limit: int, pred):
        """A page from the cache's snapshot at rev, with its continue token; None without a snapshot."""
        res = self.cacher.page(k.key_prefix(), rev, prefix, start_key, limit or 1 << 62, pred)
        if res is None:
            return None
        items, next_key, remaining = res
        token = _continue_token(rev, next_key) if next_key else ""
        return items, token, remaining

    async def _list_etcd(self, prefix: str, pred, limit: int, revision: int, start_key: str | None):
        out: list[dict] = []
        rev = revision
        while True:
            want = (limit - len(out)) if limit else 0
            try:
                res = await self.store.list(prefix, revision=rev, limit=max(want, 1) if limit else 0,
                                            start_key=start_key)
            except serr.Expired:
                raise status.expired("The provided continue parameter is too old to display a consistent list "
                                     "result. You can start a new list without the continue parameter, or use "
                                     "the continue token in this response to retrieve the remainder of the "
                                     "results. Continuing with the provided token results in an inconsistent "
                                     "list - objects that were created, modified, or deleted between the time "
                                     "the first chunk was returned and now may show up in the list.")
            rev = rev or res.revision
            out.extend(o for o in res.items if pred is None or pred(o))
            if res.next_key is None:
                return out, rev, "", 0
            if not limit or len(out) >= limit:
                return out, rev, _continue_token(rev, res.next_key), res.remaining if pred is None else 0
            start_key = res.next_key

    def _list_response(self, request, k: Kind, items, rev: int, cont: str, remaining: int,
                       cached: bool = False) -> web.Response:
        if codec.wants_table(request):
            t = tables.table(k, [_view(k, o) for o in items], str(rev), request.query.get("includeObject"))
            if cont:
                t["metadata"]["continue"] = cont
            return codec.json_response(t)
        md: dict[str, Any] = {"resourceVersion": str(rev)}
        if cont:
            md["continue"] = cont
            if remaining:
                md["remainingItemCount"] = remaining
        head = b"".join([b'{"kind":"', k.list_kind.encode(), b'","apiVersion":"', k.api_version.encode(),
                         b'","metadata":', codec.dumps(md), b',"items":['])
        if len(items) <= LIST_CHUNK:
            body = head + b",".join(self._dumps(k, o, cached) for o in items) + b"]}"
            return web.Response(body=body, content_type="application/json")
        return _ListStream(head, [items[i:i + LIST_CHUNK] for i in range(0, len(items), LIST_CHUNK)],
                           lambda o: self._dumps(k, o, cached))

    def _dumps(self, k: Kind, obj: dict, cached: bool) -> bytes:
        """An object's JSON; objects from the watch cache are encoded once for everyone."""
        view = _view(k, obj)
        if cached and view is obj:
            return self.cacher.encoded.get(obj)
        return codec.dumps(view)

    async def watch(self, request: web.Request, r: Req, single: bool = False) -> web.StreamResponse:
        q = request.query
        k = r.kind
        pred = self.predicate(request, r)
        if single:
            name = r.name
            inner = pred
            pred = (lambda o: o["metadata"].get("name") == name and (inner is None or inner(o)))
        rv_s = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents")
        bookmarks = _bool(q, "allowWatchBookmarks")
        if send_initial is not None:
            si = send_initial.lower() == "true"
            if q.get("resourceVersionMatch") != "NotOlderThan":
                raise status.invalid("meta.k8s.io", "ListOptions", "", [v.forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
            if si and not bookmarks:
                raise status.invalid("meta.k8s.io", "ListOptions", "", [v.forbidden(
                    "allowWatchBookmarks", "allowWatchBookmarks must be set to true when sendInitialEvents is set")])
            send_initial_b = si
        else:
            send_initial_b = False
            if q.get("resourceVersionMatch"):
                raise status.bad_request("resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                                         "is provided")
        try:
            from_rv = int(rv_s) if rv_s else 0
        except ValueError:
            raise status.bad_request(f"invalid resource version: {rv_s}")
        if send_initial_b and not rv_s:
            await self.cacher.consistent()
        try:
            timeout = int(q.get("timeoutSeconds", "0") or 0)
        except ValueError:
            raise status.bad_request(f'invalid timeoutSeconds: {q.get("timeoutSeconds")}')
        if timeout <= 0:
            timeout = int(self.min_request_timeout * (1 + random.random()))
        prefix = k.key_prefix(r.namespace)
        try:
            w = await self.cacher.watch(k.key_prefix(), prefix, from_rv, pred, bookmarks=bookmarks,
                                        send_initial=send_initial_b)
        except serr.Expired as e:
            # upstream answers an expired watch with 200 and an ERROR event
            return await self._watch_error(request, status.expired(str(e)).status())
        except serr.TooLargeResourceVersion as e:
            raise status.timeout(str(e))
        as_table = codec.wants_table(request)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                        "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first_table = [True]

        def encode(item) -> bytes:
            typ = item[0]
            if typ == "BOOKMARK":
                md: dict[str, Any] = {"resourceVersion": str(item[1])}
                if item[2]:
                    md["annotations"] = {"k8s.io/initial-events-end": "true"}
                obj = {"kind": k.kind, "apiVersion": k.api_version, "metadata": md}
            elif as_table:
                obj = _view(k, item[1])
                obj = tables.table(k, [obj], obj["metadata"].get("resourceVersion", ""),
                                   q.get("includeObject"), columns=first_table[0])
                first_table[0] = False
            else:
                return b'{"type":"' + typ.encode() + b'","object":' + self._dumps(k, item[1], True) + b"}\n"
            return b'{"type":"' + typ.encode() + b'","object":' + codec.dumps(obj) + b"}\n"

        # the watch ends at its timeout by closing the watcher: no timer task per event
        timer = asyncio.get_running_loop().call_later(timeout, w.close)
        try:
            while True:
                item = await w.queue.get()
                if item[0] == "CLOSE":
                    if isinstance(item[1], serr.Expired):
                        await resp.write(b'{"type":"ERROR","object":' +
                                         codec.dumps(status.expired(str(item[1])).status()) + b"}\n")
                    break
                buf = [encode(item)]
                while not w.queue.empty() and len(buf) < 256:
                    nxt = w.queue.get_nowait()
                    if nxt[0] == "CLOSE":
                        w.queue.put_nowait(nxt)
                        break
                    buf.append(encode(nxt))
                await resp.write(b"".join(buf))
        except ConnectionResetError:
            pass
        finally:
            timer.cancel()
            w.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def _watch_error(self, request: web.Request, st: dict) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"type":"ERROR","object":' + codec.dumps(st) + b"}\n")
        await resp.write_eof()
        return resp

    # --- the write pipeline ----------------------------------------------------------------

    def _check_type(self, k: Kind, obj: Any) -> dict:
        if not isinstance(obj, dict):
            raise status.bad_request("the body of the request was in an unknown format - accepted media types "
                                     "include: application/json, application/yaml")
        # a typed endpoint defaults what the body leaves out, as upstream's decoder does
        kind = obj.setdefault("kind", k.kind) or k.kind
        api_version = obj.get("apiVersion") or k.api_version
        if not isinstance(kind, str) or not isinstance(api_version, str):
            raise status.bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        obj["kind"] = kind
        if api_version != k.api_version or kind != k.kind:
            raise status.bad_request(f'{kind} in version "{api_version}" cannot be handled as a {k.kind}: '
                                     f'no kind "{kind}" is registered for version "{api_version}" '
                                     f'in scheme "k8s.io/apimachinery@v1.36.0/pkg/runtime/scheme.go"'
                                     if api_version != k.api_version else
                                     f'{kind} in version "{api_version}" cannot be handled as a {k.kind}')
        obj["apiVersion"] = k.api_version
        if "metadata" in obj and not isinstance(obj["metadata"], dict):
            raise status.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a {k.kind}: '
                                     f'json: cannot unmarshal into Go struct field {k.kind}.metadata of type '
                                     f'v1.ObjectMeta')
        return obj

    def _unknown_fields(self, k: Kind, obj: dict, mode: str, warnings: list[str]) -> None:
        """Prune fields the kind does not know; Strict refuses them, Warn reports them (as upstream)."""
        md = obj.get("metadata") or {}
        unknown = [f"metadata.{f}" for f in md if f not in OBJECT_META_FIELDS]
        for f in unknown:
            del md[f[len("metadata."):]]
        if k.prune is not None:
            pruned, more = k.prune(obj)
            if more:
                obj.clear()
                obj.update(pruned)
                unknown += more
        if not unknown:
            return
        msgs = [f'unknown field "{f}"' for f in unknown]
        if mode == "Strict":
            raise status.bad_request("strict decoding error: " + ", ".join(msgs))
        if mode == "Warn":
            warnings.extend(msgs)

    def _check_meta_types(self, k: Kind, obj: dict) -> None:
        md = obj.get("metadata") or {}
        for f in ("labels", "annotations"):
            val = md.get(f)
            if val is not None and (not isinstance(val, dict) or not all(isinstance(x, str) for x in val.values())):
                raise status.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a {k.kind}: '
                                         f'json: cannot unmarshal into Go struct field ObjectMeta.metadata.{f} '
                                         f'of type map[string]string')
        for f in ("name", "namespace", "generateName"):
            if md.get(f) is not None and not isinstance(md[f], str):
                raise status.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a {k.kind}: '
                                         f'json: cannot unmarshal into Go struct field ObjectMeta.metadata.{f} '
                                         f'of type string')
        if md.get("finalizers") is not None and not isinstance(md["finalizers"], list):
            raise status.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a {k.kind}: '
                                     f'json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers '
                                     f'of type []string')

    def _validate(self, k: Kind, obj: dict, old: dict | None) -> None:
        errs = v.validate_object_meta(obj.get("metadata") or {}, k.namespaced, name_validator(k))
        if old is not None:
            errs += v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
            if k.validate_update:
                errs += k.validate_update(obj, old)
            elif k.validate:
                errs += k.validate(obj)
        elif k.validate:
            errs += k.validate(obj)
        if errs:
            raise status.invalid(k.group, k.kind, (obj.get("metadata") or {}).get("name", ""), errs)

    async def _ensure_namespace(self, r: Req, name: str) -> None:
        if not r.kind.namespaced:
            return
        ns_kind = self.registry.resource("", "v1", "namespaces")
        ns = self.cacher.get(ns_kind.key_prefix(), ns_kind.key(None, r.namespace))
        if ns is None:
            try:
                ns = await self.store.get(ns_kind.key(None, r.namespace))
            except serr.NotFound:
                raise status.not_found("", "namespaces", r.namespace)
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            raise status.forbidden(r.kind.group, r.kind.plural, name,
                                   f"unable to create new content in namespace {r.namespace} because it is "
                                   f"being terminated")

    async def create(self, request: web.Request, r: Req, body: Any = None) -> web.StreamResponse:
        q = request.query
        k = r.kind
        dry = _dry_run(q)
        fv = _field_validation(q)
        warnings: list[str] = []
        obj = self._check_type(k, body if body is not None else await codec.read_body(request))
        self._check_meta_types(k, obj)
        self._unknown_fields(k, obj, fv, warnings)
        md = meta(obj)
        if k.namespaced:
            ns = md.get("namespace")
            if ns and r.namespace and ns != r.namespace:
                raise status.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            if not r.namespace:
                raise status.route_not_found(request.path)
            md["namespace"] = r.namespace
        else:
            md.pop("namespace", None)
        if not md.get("name") and not md.get("generateName"):
            raise status.invalid(k.group, k.kind, "", [v.required("metadata.name", "name or generateName is "
                                                                                  "required")])
        created = await self._create_obj(request, r, obj, dry, field_manager(request))
        return codec.json_response(created, 201, self._warning_headers(warnings))

    async def _create_obj(self, request, r: Req, obj: dict, dry: bool, manager: str | None) -> dict:
        k = r.kind
        md = meta(obj)
        await self._ensure_namespace(r, md.get("name") or md.get("generateName", ""))
        for f in SYSTEM_META + ("resourceVersion", "selfLink"):
            md.pop(f, None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = now_rfc3339()
        if k.generation:
            md["generation"] = 1
        gen = md.get("generateName") if not md.get("name") else None
        if gen:
            md["name"] = generate_name(gen)
        if k.defaults:
            k.defaults(obj)
        if k.prepare_create:
            k.prepare_create(obj)
        elif k.has_status:
            obj.pop("status", None)
        await self.admission.mutate(request, k, obj, None, "CREATE")
        self._validate(k, obj, None)
        await self.admission.validate(request, k, obj, None, "CREATE")
        if manager is not None:
            obj = self._track(k, None, obj, manager, "")
            md = meta(obj)
        if dry:
            return obj
        release = await self.admission.allocate(k, obj, None)
        for attempt in range(8):
            try:
                out = await self.store.create(k.key(md.get("namespace"), md["name"]), _stored(k, obj))
                return _view(k, out)
            except serr.AlreadyExists:
                if gen and attempt < 7:
                    md["name"] = generate_name(gen)
                    continue
                await release()
                raise status.already_exists(k.group, k.plural, md["name"])
            except BaseException:
                await release()
                raise
        raise AssertionError("unreachable")

    def _track(self, k: Kind, old: dict | None, new: dict, manager: str, subresource: str) -> dict:
        """Give manager the fields this write changed (metadata.managedFields, as upstream)."""
        try:
            return managedfields.update(old, new, manager=manager, api_version=k.api_version,
                                        root_type=root_type_for(k.group, k.kind), now=now_rfc3339(),
                                        subresource=subresource, ignore_status=k.has_status and subresource != "status")
        except managedfields.FieldManagerError as e:
            raise status.bad_request(str(e))

    def _warning_headers(self, warnings: list[str]) -> dict | None:
        if not warnings:
            return None
        # several Warning headers cannot be set through a dict; join as upstream allows one per warning
        return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)}

    def _update_fn(self, request, r: Req, mutate: Callable[[dict], dict], *, sub: str | None,
                   manager: str | None, warnings: list[str], fv: str, precondition_from_body: bool):
        """The function GuaranteedUpdate runs: mutate the current object, then the update pipeline."""
        k = r.kind

        async def fn(cur: dict) -> dict | None:
            # cur is the store's private decode of the stored bytes: viewing it needs no copy
            cur = _view(k, cur)
            cur["apiVersion"] = k.api_version
            old = deep_copy(cur)
            new = mutate(cur)           # may change cur in place: old is the copy kept apart
            new = self._check_type(k, new)
            self._check_meta_types(k, new)
            self._unknown_fields(k, new, fv, warnings)
            nmd = meta(new)
            if precondition_from_body:
                rv = nmd.get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise status.conflict(k.group, k.plural, r.name)
            if nmd.get("name", r.name) != r.name:
                raise status.bad_request(f"the name of the object ({nmd.get('name')}) does not match the name "
                                         f"on the URL ({r.name})")
            if k.namespaced and nmd.get("namespace", r.namespace) != r.namespace:
                raise status.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            nmd["name"] = r.name
            if k.namespaced:
                nmd["namespace"] = r.namespace
            omd = old["metadata"]
            if nmd.get("uid") and nmd["uid"] != omd.get("uid"):
                # a uid in the body is a precondition (controllers adopt and release with it)
                raise status.conflict(k.group, k.plural, r.name,
                                      f"Precondition failed: UID in precondition: {nmd['uid']}, "
                                      f"UID in object meta: {omd.get('uid')}")
            for f in SYSTEM_META:
                if f in omd:
                    nmd[f] = omd[f]
                else:
                    nmd.pop(f, None)
            if sub == "status":
                # a status write keeps everything but status (and lets labels/annotations through)
                keep = {key: val for key, val in old.items() if key not in ("status", "metadata")}
                new = {**keep, "metadata": nmd, "status": new.get("status"),
                       "kind": k.kind, "apiVersion": k.api_version}
                if new["status"] is None:
                    new.pop("status")
                for f in ("ownerReferences", "finalizers"):
                    if f in omd:
                        nmd[f] = omd[f]
                    else:
                        nmd.pop(f, None)
            elif sub == "finalize":
                keep = {key: val for key, val in old.items() if key != "spec"}
                new = {**keep, "spec": {**(old.get("spec") or {}),
                                        "finalizers": (new.get("spec") or {}).get("finalizers") or []}}
            elif k.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if k.defaults:
                k.defaults(new)
            if k.prepare_update:
                k.prepare_update(new, old)
            if k.generation and sub is None and spec_changed(new, old):
                nmd["generation"] = int(omd.get("generation", 1)) + 1
            await self.admission.mutate(request, k, new, old, "UPDATE")
            self._validate(k, new, old)
            await self.admission.validate(request, k, new, old, "UPDATE")
            if manager is not None:
                new = self._track(k, old, new, manager, sub or "")
            new = _stored(k, new)
            # an object whose deletion waits only for finalizers goes away when the last is removed
            return new
        return fn

    async def _guaranteed(self, request, r: Req, mutate, *, dry: bool, sub: str | None = None,
                          precondition_from_body: bool = True, create_if_missing: Callable | None = None,
                          track_manager: bool = True) -> web.Response:
        q = request.query
        k = r.kind
        fv = _field_validation(q)
        warnings: list[str] = []
        fn = self._update_fn(request, r, mutate, sub=sub, manager=field_manager(request) if track_manager else None,
                             warnings=warnings, fv=fv, precondition_from_body=precondition_from_body)
        key = k.key(r.namespace, r.name)
        try:
            if dry:
                cur = await self._read(r)
                new = await fn(cur)
                return codec.json_response(_view(k, new), 200, self._warning_headers(warnings))
            old, new = await self.store.guaranteed_update(key, fn)
        except serr.NotFound:
            if create_if_missing is not None:
                return await create_if_missing()
            raise status.not_found(k.group, k.plural, r.name)
        except serr.Conflict:
            raise status.conflict(k.group, k.plural, r.name)
        nmd = new["metadata"]
        if nmd.get("deletionTimestamp") and not nmd.get("finalizers") and self._finalized(k, new):
            try:
                await self.store.delete(key, int(nmd["resourceVersion"]))
            except (serr.NotFound, serr.Conflict):
                pass
        await self.admission.after_update(k, new, old)
        if sub == "scale":
            return codec.json_response(self.to_scale(k, new), 200, self._warning_headers(warnings))
        return codec.json_response(_view(k, new), 200, self._warning_headers(warnings))

    def _finalized(self, k: Kind, obj: dict) -> bool:
        if k.graceful_delete and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0:
            return False
        if k.plural == "namespaces" and k.group == "" and (obj.get("spec") or {}).get("finalizers"):
            return False
        return True

    async def update(self, request: web.Request, r: Req) -> web.StreamResponse:
        body = await codec.read_body(request)
        dry = _dry_run(request.query)
        if r.sub == "scale":
            return await self.update_scale(request, r, lambda scale: body, dry)
        if r.sub == "approval":
            r = Req(r.kind, r.namespace, r.name, "status")
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request was in an unknown format")

        def mutate(cur: dict) -> dict:
            return deep_copy(body)
        return await self._guaranteed(request, r, mutate, dry=dry, sub=r.sub)

    async def patch(self, request: web.Request, r: Req) -> web.StreamResponse:
        k = r.kind
        q = request.query
        ctype = (request.content_type or "").lower()
        ptype = PATCH_TYPES.get(ctype)
        if ptype is None or ptype == "unsupported":
            raise status.StatusError(415, "UnsupportedMediaType",
                                     "the body of the request was in an unknown format - accepted media types "
                                     "include: application/json-patch+json, application/merge-patch+json, "
                                     "application/apply-patch+yaml")
        body = await codec.read_body(request)
        dry = _dry_run(q)
        if ptype == "strategic" and root_type_for(k.group, k.kind) is None:
            raise status.StatusError(415, "UnsupportedMediaType",
                                     "strategic merge patch is not supported for custom resources: "
                                     "use merge or json patch")
        if ptype == "apply":
            from .apply import server_side_apply
            return await server_side_apply(self, request, r, body, dry)
        if ptype == "json" and not isinstance(body, list):
            raise status.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if ptype != "json" and not isinstance(body, dict):
            raise status.bad_request("json: cannot unmarshal into Go value of type map[string]interface {}")

        def apply(doc: dict, in_place: bool = False) -> dict:
            try:
                if ptype == "json":
                    return apply_json_patch(doc, body, in_place=in_place)
                if ptype == "merge":
                    return apply_merge_patch(doc, body, in_place=in_place)
                return apply_strategic_merge_patch(doc, body, root_type_for(k.group, k.kind), in_place=in_place)
            except PatchError as e:
                raise status.from_patch_error(e)

        if r.sub == "scale":
            return await self.update_scale(request, r, apply, dry, from_patch=True)
        if r.sub == "approval":
            r = Req(r.kind, r.namespace, r.name, "status")

        def mutate(cur: dict) -> dict:
            # cur is _update_fn's own copy (it keeps the old object apart): patched where it lies
            return apply(cur, in_place=True)
        return await self._guaranteed(request, r, mutate, dry=dry, sub=r.sub, precondition_from_body=True)

    # --- scale -----------------------------------------------------------------------------

    def to_scale(self, k: Kind, obj: dict) -> dict:
        sc = k.scale
        if sc is None:
            raise status.route_not_found("")
        md = obj["metadata"]
        sel = get_path(obj, sc.label_selector)
        if isinstance(sel, dict):
            try:
                sel = str(label_selector_from_api(sel))
            except SelectorError:
                sel = ""
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md.get("uid"),
                             "resourceVersion": md.get("resourceVersion"),
                             "creationTimestamp": md.get("creationTimestamp")},
                "spec": {"replicas": get_path(obj, sc.spec_replicas) or 0},
                "status": {"replicas": get_path(obj, sc.status_replicas) or 0, "selector": sel or ""}}

    async def update_scale(self, request, r: Req, make: Callable[[dict], Any], dry: bool,
                           from_patch: bool = False) -> web.Response:
        k = r.kind

        def mutate(cur: dict) -> dict:
            scale = self.to_scale(k, cur)
            new_scale = make(scale)
            if not isinstance(new_scale, dict):
                raise status.bad_request("the body of the request was in an unknown format")
            rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise status.conflict(k.group, k.plural, r.name)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise status.invalid("autoscaling", "Scale", r.name, [v.invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")])
            set_path(cur, k.scale.spec_replicas, replicas)
            return cur
        return await self._guaranteed(request, Req(k, r.namespace, r.name, None), mutate, dry=dry,
                                      sub="scale", precondition_from_body=False)

    # --- delete ----------------------------------------------------------------------------

    async def _delete_options(self, request: web.Request) -> dict:
        opts: dict = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    opts = json.loads(raw)
                except ValueError as e:
                    raise status.bad_request(f"couldn't decode DeleteOptions: {e}")
                if not isinstance(opts, dict):
                    raise status.bad_request("couldn't decode DeleteOptions")
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise status.bad_request(f"invalid gracePeriodSeconds: {q['gracePeriodSeconds']}")
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = _bool(q, "orphanDependents")
        if q.getall("dryRun", []):
            opts["dryRun"] = q.getall("dryRun")
        pp = opts.get("propagationPolicy")
        if pp is not None and pp not in ("Orphan", "Background", "Foreground"):
            raise status.invalid("meta.k8s.io", "DeleteOptions", "", [v.not_supported(
                "propagationPolicy", pp, ["Foreground", "Background", "Orphan", "nil"])])
        if pp is not None and opts.get("orphanDependents") is not None:
            raise status.invalid("meta.k8s.io", "DeleteOptions", "", [v.invalid(
                "propagationPolicy", pp, "orphanDependents and deletionPropagation cannot be both set")])
        g = opts.get("gracePeriodSeconds")
        if g is not None and not isinstance(g, int):
            raise status.bad_request("gracePeriodSeconds must be an integer")
        for val in opts.get("dryRun") or []:
            if val != "All":
                raise status.bad_request(f'Invalid dryRun value: "{val}": supported values: "All"')
        return opts

    async def delete(self, request: web.Request, r: Req, opts: dict | None = None) -> web.Response:
        k = r.kind
        self.admission.validate_delete(k, r.name)
        if opts is None:
            opts = await self._delete_options(request)
        dry = bool(opts.get("dryRun"))
        key = k.key(r.namespace, r.name)
        pre = opts.get("preconditions") or {}
        result: dict = {}

        def fn(cur: dict) -> dict | None:
            md = cur["metadata"]
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise status.conflict(k.group, k.plural, r.name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {md.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
                raise status.conflict(k.group, k.plural, r.name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{md.get('resourceVersion')}")
            policy = opts.get("propagationPolicy")
            if policy is None and opts.get("orphanDependents") is not None:
                policy = "Orphan" if opts["orphanDependents"] else "Background"
            if policy is None:
                policy = k.default_propagation
            fins = list(md.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in fins:
                fins.append("orphan")
            if policy == "Foreground" and "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
            if policy == "Background":
                fins = [f for f in fins if f not in ("orphan", "foregroundDeletion")
                        or f in (md.get("finalizers") or [])]
            grace = self._grace(k, cur, opts)
            ns_pending = k.plural == "namespaces" and k.group == "" and (cur.get("spec") or {}).get("finalizers")
            if not fins and grace == 0 and not ns_pending:
                result["delete"] = True
                return None
            new = deep_copy(cur)
            nmd = new["metadata"]
            if fins != list(md.get("finalizers") or []):
                nmd["finalizers"] = fins
            if not nmd.get("deletionTimestamp"):
                nmd["deletionTimestamp"] = rfc3339_after(grace) if grace else now_rfc3339()
                nmd["deletionGracePeriodSeconds"] = grace
            elif grace < nmd.get("deletionGracePeriodSeconds", 0):
                nmd["deletionTimestamp"] = rfc3339_after(grace)
                nmd["deletionGracePeriodSeconds"] = grace
                if grace == 0 and not fins:
                    result["delete"] = True
                    return None
            if ns_pending:
                new.setdefault("status", {})["phase"] = "Terminating"
            result["obj"] = new
            return new

        try:
            if dry:
                cur = await self._read(r)
                out = fn(deep_copy(cur))
                return codec.json_response(_view(k, out if out is not None else cur))
            while True:
                cur_old, cur_new = await self.store.guaranteed_update(key, fn)
                if not result.get("delete"):
                    await self.admission.after_update(k, cur_new, cur_old)
                    return codec.json_response(_view(k, cur_new))
                try:
                    deleted = await self.store.delete(key, int(cur_old["metadata"]["resourceVersion"]))
                except serr.Conflict:
                    result.clear()
                    continue
                await self.admission.after_delete(k, deleted)
                if k.return_deleted:
                    return codec.json_response(_view(k, deleted))
                md = deleted["metadata"]
                return codec.json_response(status.success_status(
                    {"name": md.get("name"), "group": k.group, "kind": k.plural, "uid": md.get("uid")}))
        except serr.NotFound:
            raise status.not_found(k.group, k.plural, r.name)

    def _grace(self, k: Kind, obj: dict, opts: dict) -> int:
        if not k.graceful_delete:
            return 0
        g = opts.get("gracePeriodSeconds")
        spec = obj.get("spec") or {}
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        if g < 0:
            g = 1
        st = obj.get("status") or {}
        # a pod never scheduled, or already finished, has nothing to stop gracefully
        if not spec.get("nodeName") or st.get("phase") in ("Succeeded", "Failed"):
            return 0
        return int(g)

    async def delete_collection(self, request: web.Request, r: Req) -> web.Response:
        k = r.kind
        opts = await self._delete_options(request)
        pred = self.predicate(request, r)
        items, rev = self.cacher.list(k.key_prefix(), k.key_prefix(r.namespace), pred)
        deleted = []
        for o in items:
            md = o["metadata"]
            try:
                await self.delete(request, Req(k, md.get("namespace"), md["name"], None), opts)
                deleted.append(o)
            except status.StatusError as e:
                if e.code != 404:
                    raise
        return self._list_response(request, k, deleted, rev, "", 0)

    # --- pod subresources ------------------------------------------------------------------

    async def bind(self, request: web.Request, r: Req) -> web.Response:
        body = await codec.read_body(request)
        target = (body.get("target") or {}) if isinstance(body, dict) else {}
        node = target.get("name")
        if not node:
            raise status.invalid("", "Binding", r.name, [v.required("target.name", "")])
        if _dry_run(request.query):
            return codec.json_response(status.success_status(), 201)

        def fn(cur: dict) -> dict:
            spec = cur.setdefault("spec", {})
            if cur["metadata"].get("deletionTimestamp"):
                raise status.conflict("", "pods", r.name, f"pod {r.name} is being deleted, cannot be assigned "
                                                          f"to a host")
            if spec.get("nodeName"):
                raise status.conflict("", "pods", r.name,
                                      f'pod {r.name} is already assigned to node "{spec["nodeName"]}"')
            spec["nodeName"] = node
            conds = [c for c in (cur.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            cur.setdefault("status", {})["conditions"] = conds
            return cur
        try:
            await self.store.guaranteed_update(r.kind.key(r.namespace, r.name), fn)
        except serr.NotFound:
            raise status.not_found("", "pods", r.name)
        return codec.json_response(status.success_status(), 201)

    async def evict(self, request: web.Request, r: Req) -> web.Response:
        """pods/eviction as upstream's EvictionREST: a pod that has finished, is Pending or is already
        being deleted goes without a budget check; otherwise its one PodDisruptionBudget must allow
        a disruption, which is consumed (disruptionsAllowed - 1, the pod in disruptedPods) in the
        same guaranteed update that checks it, so two evictions never spend one disruption."""
        body = await codec.read_body(request)
        opts = (body.get("deleteOptions") or {}) if isinstance(body, dict) else {}
        pod = await self._read(r)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
            await self.delete(request, r, opts)
            return codec.json_response(status.success_status(), 201)
        pdbs = self.admission.pdbs_for(pod)
        if len(pdbs) > 1:
            raise status.StatusError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which "
                                                           "the eviction subresource does not support.")
        if pdbs and not _dry_run(request.query):
            await self._spend_disruption(pdbs[0], r.name)
        await self.delete(request, r, opts)
        return codec.json_response(status.success_status(), 201)

    async def _spend_disruption(self, pdb: dict, pod_name: str) -> None:
        msg = "Cannot evict pod as it would violate the pod's disruption budget."
        name = pdb["metadata"]["name"]
        pdb_kind = self.registry.resource("policy", "v1", "poddisruptionbudgets")

        def fn(cur: dict) -> dict:
            st = cur.get("status") or {}
            if int(st.get("observedGeneration") or 0) < int(cur["metadata"].get("generation") or 0):
                why = f"The disruption budget {name} is still being processed by the server."
            elif int(st.get("disruptionsAllowed") or 0) < 1:
                why = (f"The disruption budget {name} needs {int(st.get('desiredHealthy') or 0)} healthy pods and "
                       f"has {int(st.get('currentHealthy') or 0)} currently")
            else:
                st = dict(st, disruptionsAllowed=int(st["disruptionsAllowed"]) - 1,
                          disruptedPods={**(st.get("disruptedPods") or {}), pod_name: now_rfc3339()})
                return dict(cur, status=st)
            raise status.StatusError(429, "TooManyRequests", msg,
                                     {"causes": [{"reason": "DisruptionBudget", "message": why}]})
        try:
            await self.store.guaranteed_update(pdb_kind.key(pdb["metadata"]["namespace"], name), fn)
        except serr.NotFound:
            pass

    async def node_proxy(self, request: web.Request, r: Req) -> web.StreamResponse:
        """pods/log, exec, attach, portforward and proxy, nodes/proxy: to the kubelet (kubeletproxy.py)."""
        if r.sub == "proxy" and r.kind.plural == "services":
            raise status.StatusError(503, "ServiceUnavailable", "services/proxy is not served by this apiserver")
        if self.kubelet is None:
            raise status.StatusError(503, "ServiceUnavailable", "no kubelet client configured")
        if r.sub == "proxy":
            marker = f"/{r.name}/proxy"
            rest = request.path.split(marker, 1)[1].lstrip("/") if marker in request.path else ""
            if r.kind.plural == "nodes":
                return await self.kubelet.node_proxy(request, r.name, rest)
            scheme, name, port = kubeletproxy.split_scheme_name_port(r.name)
            pod = await self._read(Req(r.kind, r.namespace, name, None))
            return await self.kubelet.pod_proxy(request, pod, port, scheme, rest)
        pod = await self._read(r)
        return await self.kubelet.pod_subresource(request, pod, r.sub)
