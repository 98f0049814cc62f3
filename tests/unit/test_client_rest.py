"""pkg/client against small in-test aiohttp servers speaking the Kubernetes REST protocol.

rest.py: request shape, paging, retries/backoff (429 + Retry-After, 5xx, dropped connections),
Status -> ApiError, warnings, watch stream parsing (BOOKMARK, ERROR 410, split and huge lines).
Then the pieces built on it: informer (list + watch, resume, bookmarks, relist on 410, resync),
leader election on Leases, and the event recorder.
"""
import asyncio
import json
import logging
import socket
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubelab.client.events import EventCorrelator, EventRecorder
from kubelab.client.informer import (
    DeletedFinalStateUnknown,
    SharedInformer,
    SharedInformerFactory,
    _Backoff,
    meta_namespace_key,
    split_meta_namespace_key,
)
from kubelab.client.kubeconfig import ClientConfig
from kubelab.client.leaderelection import LeaderElectionConfig, LeaderElector
from kubelab.client.rest import (
    ApiError,
    Client,
    is_already_exists,
    is_conflict,
    is_gone,
    is_invalid,
    is_not_found,
    parse_warning_header,
    resource_path,
)


def status(code, reason, message, **details):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


class Req:
    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def json(self):
        return json.loads(self.body)


class Scripted:
    """Answers (method, path) with a scripted sequence of responses; the last one repeats."""

    def __init__(self):
        self.requests: list[Req] = []
        self.routes: dict[tuple[str, str], list] = {}

    def on(self, method, path, *responses):
        self.routes[(method, path)] = list(responses)

    def app(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request):
        body = await request.read()
        self.requests.append(Req(request.method, request.path, request.query.copy(), request.headers.copy(), body))
        queue = self.routes.get((request.method, request.path))
        if not queue:
            return web.json_response(status(404, "NotFound", "the server could not find the requested resource"),
                                     status=404)
        resp = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(resp):
            return await resp(request)
        code, payload, headers = (resp + ({},))[:3] if isinstance(resp, tuple) else (200, resp, {})
        if isinstance(payload, (dict, list)):
            return web.json_response(payload, status=code, headers=headers)
        return web.Response(text=payload, status=code, headers=headers)


@pytest.fixture
async def serve():
    servers = []

    async def _serve(app):
        s = TestServer(app)
        await s.start_server()
        servers.append(s)
        return str(s.make_url("")).rstrip("/")

    yield _serve
    for s in servers:
        await s.close()


def make_client(url, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return Client(ClientConfig(server=url, token="t0k3n"), component="test", **kw)


# ======================================================================================
# rest.py
# ======================================================================================

def test_resource_path():
    assert resource_path("v1", "pods", "default", "web-0") == "/api/v1/namespaces/default/pods/web-0"
    assert resource_path("v1", "nodes") == "/api/v1/nodes"
    assert resource_path("apps/v1", "deployments", "ns", "d", "scale") == \
        "/apis/apps/v1/namespaces/ns/deployments/d/scale"
    assert resource_path("rbac.authorization.k8s.io/v1", "clusterroles", None, "system:node") == \
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:node"
    with pytest.raises(ValueError):
        resource_path("v1", "pods", "default", None, "status")


async def test_get_sends_json_accept_user_agent_and_bearer_token(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/namespaces/default/pods/web-0", {"kind": "Pod", "metadata": {"name": "web-0"}})
    srv.on("GET", "/apis/apps/v1/namespaces/prod/deployments/web/scale", {"kind": "Scale"})
    url = await serve(srv.app())
    async with make_client(url) as c:
        pod = await c.get("v1", "pods", "default", "web-0")
        scale = await c.get("apps/v1", "deployments", "prod", "web", "scale")
    assert pod["metadata"]["name"] == "web-0" and scale["kind"] == "Scale"
    r = srv.requests[0]
    assert r.method == "GET"
    assert r.headers["Accept"] == "application/json"
    assert r.headers["User-Agent"] == "kubelab/test"
    assert r.headers["Authorization"] == "Bearer t0k3n"
    assert srv.requests[1].path == "/apis/apps/v1/namespaces/prod/deployments/web/scale"


async def test_list_sends_selectors_paging_and_rv_params(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/pods", {"kind": "PodList", "metadata": {"resourceVersion": "77"}, "items": None})
    url = await serve(srv.app())
    async with make_client(url) as c:
        lst = await c.list("v1", "pods", label_selector="app=web,tier!=db",
                           field_selector="spec.nodeName=n1", limit=50, continue_="tok",
                           resource_version="0", resource_version_match="NotOlderThan")
    assert lst["items"] == []
    q = srv.requests[0].query
    assert dict(q) == {"labelSelector": "app=web,tier!=db", "fieldSelector": "spec.nodeName=n1",
                       "limit": "50", "continue": "tok", "resourceVersion": "0",
                       "resourceVersionMatch": "NotOlderThan"}


async def test_list_all_follows_continue_without_resending_resource_version(serve):
    srv = Scripted()
    pages = {None: (["a", "b"], "t1"), "t1": (["c", "d"], "t2"), "t2": (["e"], None)}

    async def page(request):
        names, nxt = pages[request.query.get("continue")]
        meta = {"resourceVersion": "100"}
        if nxt:
            meta["continue"] = nxt
            meta["remainingItemCount"] = 3
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                                  "items": [{"metadata": {"name": n}} for n in names]})

    srv.on("GET", "/api/v1/namespaces/ns/pods", page)
    url = await serve(srv.app())
    async with make_client(url) as c:
        lst = await c.list_all("v1", "pods", "ns", label_selector="app=x", limit=2, resource_version="5")
    assert [i["metadata"]["name"] for i in lst["items"]] == ["a", "b", "c", "d", "e"]
    assert lst["metadata"] == {"resourceVersion": "100"}
    assert lst["kind"] == "PodList"
    assert [r.query.get("continue") for r in srv.requests] == [None, "t1", "t2"]
    assert srv.requests[0].query["resourceVersion"] == "5"
    assert all("resourceVersion" not in r.query for r in srv.requests[1:])
    assert all(r.query["labelSelector"] == "app=x" and r.query["limit"] == "2" for r in srv.requests)


async def test_list_all_relists_unpaged_when_continue_token_expired(serve):
    srv = Scripted()

    async def page(request):
        if "continue" in request.query:
            return web.json_response(status(410, "Expired", "The provided continue parameter is too old"),
                                     status=410)
        if "limit" in request.query:
            return web.json_response({"metadata": {"resourceVersion": "9", "continue": "old"},
                                      "items": [{"metadata": {"name": "a"}}]})
        return web.json_response({"metadata": {"resourceVersion": "12"},
                                  "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]})

    srv.on("GET", "/api/v1/pods", page)
    url = await serve(srv.app())
    async with make_client(url) as c:
        lst = await c.list_all("v1", "pods", limit=1)
    assert [i["metadata"]["name"] for i in lst["items"]] == ["a", "b"]
    assert lst["metadata"]["resourceVersion"] == "12"
    assert "limit" not in srv.requests[-1].query


async def test_write_verbs_request_shapes(serve):
    srv = Scripted()
    created = {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns", "resourceVersion": "1"}}
    srv.on("POST", "/api/v1/namespaces/ns/configmaps", (201, created))
    srv.on("PUT", "/api/v1/namespaces/ns/configmaps/cm", created)
    srv.on("PUT", "/apis/apps/v1/namespaces/ns/deployments/d/status", {"kind": "Deployment"})
    srv.on("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", {"kind": "Deployment"})
    srv.on("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {"kind": "Scale"})
    srv.on("DELETE", "/api/v1/namespaces/ns/pods/p", {"kind": "Pod"})
    srv.on("DELETE", "/api/v1/namespaces/ns/pods", {"kind": "PodList", "items": []})
    srv.on("POST", "/api/v1/namespaces/ns/pods/p/binding", (201, {"kind": "Status", "status": "Success"}))
    url = await serve(srv.app())
    async with make_client(url) as c:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}}
        assert (await c.create("v1", "configmaps", body, field_manager="kubelab", dry_run=True)) == created
        await c.update("v1", "configmaps", {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}})
        await c.update_status("apps/v1", "deployments", {"metadata": {"name": "d", "namespace": "ns"},
                                                         "status": {"replicas": 1}})
        await c.patch("apps/v1", "deployments", "ns", "d", {"spec": {"replicas": 3}})
        await c.patch("apps/v1", "deployments", "ns", "d", [{"op": "replace", "path": "/spec/replicas",
                                                             "value": 2}], "json")
        await c.patch("apps/v1", "deployments", "ns", "d", {"spec": {}}, "strategic")
        await c.patch("apps/v1", "deployments", "ns", "d", {"apiVersion": "apps/v1", "kind": "Deployment"},
                      "apply", field_manager="kubectl", force=True)
        await c.patch("apps/v1", "deployments", "ns", "d", {"spec": {"replicas": 5}}, subresource="scale")
        await c.delete("v1", "pods", "ns", "p", propagation_policy="Foreground", grace_period_seconds=0,
                       preconditions={"uid": "u-1", "resourceVersion": "7"})
        await c.delete_collection("v1", "pods", "ns", label_selector="app=web")
        await c.create("v1", "pods", {"apiVersion": "v1", "kind": "Binding", "target": {"name": "n1"}}, "ns",
                       name="p", subresource="binding")
        with pytest.raises(ValueError):
            await c.patch("v1", "pods", "ns", "p", {}, "apply")
        with pytest.raises(ValueError):
            await c.patch("v1", "pods", "ns", "p", {}, "merge", force=True)
        with pytest.raises(ValueError):
            await c.patch("v1", "pods", "ns", "p", {}, "yaml")
    r = srv.requests
    assert r[0].method == "POST" and r[0].json() == body
    assert r[0].headers["Content-Type"] == "application/json"
    assert dict(r[0].query) == {"fieldManager": "kubelab", "dryRun": "All"}
    assert r[1].method == "PUT" and r[1].json()["metadata"]["resourceVersion"] == "1"
    assert r[2].path.endswith("/deployments/d/status")
    ctypes = [x.headers["Content-Type"] for x in r[3:8]]
    assert ctypes == ["application/merge-patch+json", "application/json-patch+json",
                      "application/strategic-merge-patch+json", "application/apply-patch+yaml",
                      "application/merge-patch+json"]
    assert r[4].json()[0]["op"] == "replace"
    assert dict(r[6].query) == {"fieldManager": "kubectl", "force": "true"}
    assert r[7].path.endswith("/deployments/d/scale")
    assert r[8].json() == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                           "gracePeriodSeconds": 0, "preconditions": {"uid": "u-1", "resourceVersion": "7"}}
    assert r[9].method == "DELETE" and r[9].path == "/api/v1/namespaces/ns/pods"
    assert r[9].query["labelSelector"] == "app=web" and r[9].body == b""
    assert r[10].path == "/api/v1/namespaces/ns/pods/p/binding"
    assert len(r) == 11, "invalid patches must not reach the server"


async def test_error_answers_become_api_errors(serve):
    srv = Scripted()
    srv.on("GET", "/apis/apps/v1/namespaces/ns/deployments/x",
           (404, status(404, "NotFound", 'deployments.apps "x" not found',
                        name="x", group="apps", kind="deployments")))
    srv.on("PUT", "/api/v1/namespaces/ns/pods/p",
           (409, status(409, "Conflict", 'Operation cannot be fulfilled on pods "p": the object has been '
                                          'modified; please apply your changes to the latest version and try again')))
    srv.on("POST", "/api/v1/namespaces/ns/pods",
           (409, status(409, "AlreadyExists", 'pods "p" already exists')),
           (422, status(422, "Invalid", 'Pod "p" is invalid: spec.containers: Required value',
                        causes=[{"reason": "FieldValueRequired", "message": "Required value",
                                 "field": "spec.containers"}])))
    srv.on("GET", "/api/v1/nodes/n1", (500, "etcd exploded"))
    srv.on("GET", "/api/v1/secrets", (403, 'secrets is forbidden: User "bob" cannot list resource "secrets"'))
    srv.on("GET", "/api/v1/namespaces", (401, ""))
    url = await serve(srv.app())
    async with make_client(url, max_retries=0) as c:
        with pytest.raises(ApiError) as ei:
            await c.get("apps/v1", "deployments", "ns", "x")
        e = ei.value
        assert (e.code, e.reason, e.message) == (404, "NotFound", 'deployments.apps "x" not found')
        assert e.status["details"]["kind"] == "deployments" and is_not_found(e) and not is_conflict(e)
        assert str(e) == 'deployments.apps "x" not found'

        with pytest.raises(ApiError) as ei:
            await c.update("v1", "pods", {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "1"}})
        assert is_conflict(ei.value) and ei.value.message.startswith("Operation cannot be fulfilled")

        body = {"metadata": {"name": "p", "namespace": "ns"}}
        with pytest.raises(ApiError) as ei:
            await c.create("v1", "pods", body)
        assert is_already_exists(ei.value) and not is_conflict(ei.value)
        with pytest.raises(ApiError) as ei:
            await c.create("v1", "pods", body)
        assert is_invalid(ei.value) and ei.value.causes[0]["field"] == "spec.containers"

        with pytest.raises(ApiError) as ei:
            await c.get("v1", "nodes", name="n1")
        assert (ei.value.code, ei.value.reason) == (500, "InternalError")
        assert ei.value.message == 'an error on the server ("etcd exploded") has prevented the request from succeeding'

        with pytest.raises(ApiError) as ei:
            await c.list("v1", "secrets")
        assert ei.value.reason == "Forbidden" and 'User "bob"' in ei.value.message

        with pytest.raises(ApiError) as ei:
            await c.list("v1", "namespaces")
        assert ei.value.reason == "Unauthorized"
        assert ei.value.message == "the server has asked for the client to provide credentials"
        assert ei.value.status["code"] == 401


async def test_429_honours_retry_after_for_any_method(serve):
    srv = Scripted()
    srv.on("POST", "/api/v1/namespaces/ns/pods",
           (429, status(429, "TooManyRequests", "Too many requests, please try again later."), {"Retry-After": "1"}),
           (201, {"kind": "Pod"}))
    url = await serve(srv.app())
    async with make_client(url) as c:
        start = time.monotonic()
        assert (await c.create("v1", "pods", {"metadata": {"name": "p"}}, "ns"))["kind"] == "Pod"
        elapsed = time.monotonic() - start
    assert len(srv.requests) == 2
    assert 0.95 <= elapsed < 3, elapsed


async def test_retry_after_is_capped_and_retries_are_bounded(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/pods", (429, status(429, "TooManyRequests", "slow down"), {"Retry-After": "3600"}))
    url = await serve(srv.app())
    async with make_client(url, max_retries=3, max_retry_after=0.02) as c:
        start = time.monotonic()
        with pytest.raises(ApiError) as ei:
            await c.list("v1", "pods")
        assert time.monotonic() - start < 1
    assert ei.value.code == 429 and ei.value.retry_after == 3600
    assert len(srv.requests) == 4


async def test_5xx_retried_with_backoff_for_idempotent_calls_only(serve):
    srv = Scripted()
    unavailable = (503, status(503, "ServiceUnavailable", "etcd is unavailable"))
    srv.on("GET", "/api/v1/namespaces/ns/pods/p", unavailable, (500, "boom"), {"kind": "Pod"})
    srv.on("POST", "/api/v1/namespaces/ns/pods", unavailable)
    srv.on("PATCH", "/api/v1/namespaces/ns/pods/p",
           (503, status(503, "ServiceUnavailable", "later"), {"Retry-After": "0"}), {"kind": "Pod"})
    url = await serve(srv.app())
    async with make_client(url, backoff_base=0.05, backoff_max=1.0) as c:
        start = time.monotonic()
        assert (await c.get("v1", "pods", "ns", "p"))["kind"] == "Pod"
        elapsed = time.monotonic() - start
        # two backoffs: 0.05*[0.5,1] + 0.1*[0.5,1]
        assert 0.07 <= elapsed < 1.0, elapsed
        with pytest.raises(ApiError) as ei:
            await c.create("v1", "pods", {"metadata": {"name": "p"}}, "ns")
        assert ei.value.code == 503 and ei.value.message == "etcd is unavailable"
        # a 5xx with Retry-After is retried even for a non-idempotent verb (as client-go)
        assert (await c.patch("v1", "pods", "ns", "p", {"metadata": {}}))["kind"] == "Pod"
    methods = [r.method for r in srv.requests]
    assert methods == ["GET", "GET", "GET", "POST", "PATCH", "PATCH"]


async def test_5xx_gives_up_after_max_retries(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/nodes", (500, status(500, "InternalError", "Internal error occurred: x")))
    url = await serve(srv.app())
    async with make_client(url, max_retries=2) as c:
        with pytest.raises(ApiError) as ei:
            await c.list("v1", "nodes")
    assert ei.value.reason == "InternalError" and len(srv.requests) == 3


async def test_dropped_connections_are_retried_for_get_but_not_for_post(serve):
    calls = {"GET": 0, "POST": 0}

    async def flaky(request):
        calls[request.method] += 1
        if calls[request.method] == 1 or request.method == "POST":
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.json_response({"kind": "Pod"})

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/ns/pods/p", flaky)
    app.router.add_route("*", "/api/v1/namespaces/ns/pods", flaky)
    url = await serve(app)
    async with make_client(url) as c:
        assert (await c.get("v1", "pods", "ns", "p"))["kind"] == "Pod"
        with pytest.raises(aiohttp.ClientError):
            await c.create("v1", "pods", {"metadata": {"name": "p"}}, "ns")
    assert calls == {"GET": 2, "POST": 1}


async def test_connection_refused_is_retried_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", max_retries=3, backoff_base=0.04, backoff_max=1) as c:
        start = time.monotonic()
        with pytest.raises(aiohttp.ClientConnectorError):
            await c.create("v1", "pods", {"metadata": {"name": "p"}}, "ns")
        # backoffs 0.04, 0.08, 0.16, each jittered to at least half
        assert time.monotonic() - start >= 0.14


async def test_warning_headers_are_logged_and_kept(serve, caplog):
    srv = Scripted()
    srv.on("GET", "/apis/policy/v1beta1/podsecuritypolicies",
           (200, {"items": []}, {"Warning": '299 - "policy/v1beta1 PodSecurityPolicy is deprecated"'}))
    url = await serve(srv.app())
    caplog.set_level(logging.WARNING, logger="kubelab.client.rest")
    async with make_client(url) as c:
        await c.list("policy/v1beta1", "podsecuritypolicies")
        assert list(c.warnings) == ["policy/v1beta1 PodSecurityPolicy is deprecated"]
    assert "PodSecurityPolicy is deprecated" in caplog.text


def test_parse_warning_header():
    assert parse_warning_header('299 - "one", 299 - "two, with comma"') == ["one", "two, with comma"]
    assert parse_warning_header('299 kube-apiserver "esc \\"q\\"" "Mon, 01 Jan 2024 00:00:00 GMT"') == ['esc "q"']
    assert parse_warning_header("garbage") == []


async def test_request_returns_text_for_non_json_and_raw_bytes(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/namespaces/ns/pods/p/log", "{not json} line 1\nline 2\n")
    url = await serve(srv.app())
    async with make_client(url) as c:
        text = await c.request("GET", "/api/v1/namespaces/ns/pods/p/log",
                               params={"container": "app", "follow": False, "tailLines": 10})
        raw = await c.request("GET", "/api/v1/namespaces/ns/pods/p/log", raw=True)
    assert text == "{not json} line 1\nline 2\n"
    assert raw == b"{not json} line 1\nline 2\n"
    assert dict(srv.requests[0].query) == {"container": "app", "follow": "false", "tailLines": "10"}


async def test_client_side_qps_limit(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/nodes", {"items": []})
    url = await serve(srv.app())
    async with make_client(url, qps=20, burst=1) as c:
        start = time.monotonic()
        for _ in range(5):
            await c.list("v1", "nodes")
        assert time.monotonic() - start >= 0.19


# -- watch --------------------------------------------------------------------------------

def watch_app(script, seen):
    async def handler(request):
        seen.append(request.query.copy())
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        for chunk in script:
            if isinstance(chunk, float):
                await asyncio.sleep(chunk)
            else:
                await resp.write(chunk)
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods", handler)
    return app


def line(etype, obj):
    return (json.dumps({"type": etype, "object": obj}) + "\n").encode()


def pod(name, rv, **extra):
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "ns",
                                                            "resourceVersion": str(rv)}, **extra}


async def test_watch_parses_stream_with_split_lines_bookmarks_and_huge_objects(serve):
    big = pod("big", 12, data="x" * 300_000)
    mod = line("MODIFIED", pod("a", 11))
    bookmark = line("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "20"}})
    script = [line("ADDED", pod("a", 10)) + mod[:17], 0.02, mod[17:], b"\n",
              line("ADDED", big), bookmark[:5], 0.01, bookmark[5:] + line("DELETED", pod("a", 21))]
    seen = []
    url = await serve(watch_app(script, seen))
    async with make_client(url) as c:
        w = c.watch("v1", "pods", "ns", resource_version="9", timeout_seconds=30,
                    label_selector="app=web", field_selector="metadata.name=a")
        events = [(t, o) async for t, o in w]
    assert [(t, o["metadata"].get("name"), o["metadata"]["resourceVersion"]) for t, o in events] == [
        ("ADDED", "a", "10"), ("MODIFIED", "a", "11"), ("ADDED", "big", "12"),
        ("BOOKMARK", None, "20"), ("DELETED", "a", "21")]
    assert len(events[2][1]["data"]) == 300_000
    assert w.resource_version == "21" and w.events == 5
    assert dict(seen[0]) == {"watch": "true", "resourceVersion": "9", "timeoutSeconds": "30",
                             "allowWatchBookmarks": "true", "labelSelector": "app=web",
                             "fieldSelector": "metadata.name=a"}


async def test_watch_error_410_raises_expired(serve):
    expired = status(410, "Expired", "too old resource version: 5 (100)")
    seen = []
    url = await serve(watch_app([line("ADDED", pod("a", 101)), line("ERROR", expired)], seen))
    async with make_client(url) as c:
        got = []
        with pytest.raises(ApiError) as ei:
            async with c.watch("v1", "pods", "ns", resource_version="5") as w:
                async for t, o in w:
                    got.append(t)
        assert got == ["ADDED"]
        assert (ei.value.code, ei.value.reason) == (410, "Expired") and is_gone(ei.value)
        assert ei.value.message == "too old resource version: 5 (100)"

        events = [(t, o) async for t, o in c.watch("v1", "pods", "ns", resource_version="5", raise_errors=False)]
        assert [t for t, _ in events] == ["ADDED", "ERROR"] and events[1][1]["code"] == 410


async def test_watch_http_error_is_raised(serve):
    srv = Scripted()
    srv.on("GET", "/api/v1/namespaces/ns/pods", (410, status(410, "Gone", "the resource version is gone")))
    url = await serve(srv.app())
    async with make_client(url) as c:
        with pytest.raises(ApiError) as ei:
            async for _ in c.watch("v1", "pods", "ns", resource_version="1"):
                pass
    assert is_gone(ei.value)


# ======================================================================================
# informer.py, against a miniature API server for pods
# ======================================================================================

class MiniApi:
    """Pods with resourceVersions, paged LIST, WATCH from an RV (410 below the compaction point),
    bookmarks on demand, and the ability to cut or mute watches."""

    def __init__(self):
        self.rv = 0
        self.objs: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []
        self.compacted = 0
        self.watchers: list[asyncio.Queue] = []
        self.muted = False
        self.lists = 0
        self.watch_params: list[dict] = []

    def put(self, ns, name, **labels):
        self.rv += 1
        key = f"{ns}/{name}"
        etype = "MODIFIED" if key in self.objs else "ADDED"
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "resourceVersion": str(self.rv), "labels": labels}}
        self.objs[key] = obj
        self._emit(etype, obj)
        return obj

    def remove(self, ns, name):
        self.rv += 1
        obj = json.loads(json.dumps(self.objs.pop(f"{ns}/{name}")))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", obj)

    def _emit(self, etype, obj):
        self.history.append((self.rv, etype, obj))
        if not self.muted:
            for q in self.watchers:
                q.put_nowait((etype, obj))

    def bookmark(self):
        for q in self.watchers:
            q.put_nowait(("BOOKMARK", {"kind": "Pod", "apiVersion": "v1",
                                       "metadata": {"resourceVersion": str(self.rv)}}))

    def cut(self):
        for q in self.watchers:
            q.put_nowait(None)

    def app(self):
        app = web.Application()
        app.router.add_get("/api/v1/pods", self.handle)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.handle)
        return app

    async def handle(self, request):
        ns = request.match_info.get("ns")
        if request.query.get("watch") == "true":
            return await self.watch(request, ns)
        self.lists += 1
        items = [o for k, o in sorted(self.objs.items()) if ns is None or k.startswith(ns + "/")]
        start = int(request.query.get("continue", "0"))
        limit = int(request.query.get("limit", "0")) or len(items)
        page = items[start:start + limit]
        meta = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page})

    async def watch(self, request, ns):
        self.watch_params.append(dict(request.query))
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        since = int(request.query.get("resourceVersion") or 0)
        if since < self.compacted:
            await resp.write(line("ERROR", status(410, "Expired", f"too old resource version: {since} "
                                                                   f"({self.compacted})")))
            return resp
        q: asyncio.Queue = asyncio.Queue()
        for rv, etype, obj in self.history:
            if rv > since:
                q.put_nowait((etype, obj))
        self.watchers.append(q)
        try:
            while True:
                item = await q.get()
                if item is None:
                    break
                etype, obj = item
                if ns and obj["metadata"].get("namespace") not in (None, ns):
                    continue
                await resp.write(line(etype, obj))
        finally:
            self.watchers.remove(q)
        return resp


async def eventually(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def fast(inf: SharedInformer) -> SharedInformer:
    inf._backoff = _Backoff(0.01, 0.05)
    inf.short_watch = 0.0
    return inf


def test_keys():
    assert meta_namespace_key({"metadata": {"name": "p", "namespace": "ns"}}) == "ns/p"
    assert meta_namespace_key({"metadata": {"name": "node-1"}}) == "node-1"
    assert split_meta_namespace_key("ns/p") == ("ns", "p")
    assert split_meta_namespace_key("node-1") == (None, "node-1")
    assert meta_namespace_key(DeletedFinalStateUnknown("ns/x", {"metadata": {}})) == "ns/x"


async def test_informer_lists_then_watches_and_dispatches_to_handlers(serve):
    api = MiniApi()
    api.put("a", "p1", app="web")
    api.put("a", "p2", app="db")
    api.put("b", "p3", app="web")
    url = await serve(api.app())
    seen = []

    def on_add(obj):
        seen.append(("add", meta_namespace_key(obj)))

    async def on_update(old, new):
        await asyncio.sleep(0)
        seen.append(("update", meta_namespace_key(new), old["metadata"]["resourceVersion"],
                     new["metadata"]["resourceVersion"]))

    async with make_client(url) as c:
        inf = SharedInformer(c, "v1", "pods", page_size=2,
                             indexers={"app": lambda o: [o["metadata"]["labels"].get("app", "")]})
        inf.add_event_handler(on_add=on_add, on_update=on_update, on_delete=lambda o: seen.append(("delete", meta_namespace_key(o))))
        assert not inf.has_synced
        inf.start()
        assert await inf.wait_for_sync(5)
        assert inf.last_sync_resource_version == "3"
        assert sorted(inf.store.list_keys()) == ["a/p1", "a/p2", "b/p3"]
        assert [meta_namespace_key(o) for o in inf.by_index("namespace", "a")] == ["a/p1", "a/p2"]
        assert [meta_namespace_key(o) for o in inf.by_index("app", "web")] == ["a/p1", "b/p3"]
        await eventually(lambda: len(api.watchers) == 1)
        api.put("a", "p4", app="web")
        api.put("a", "p1", app="cache")
        api.remove("b", "p3")
        await eventually(lambda: len(seen) == 6)
        await inf.shutdown()
    assert seen == [("add", "a/p1"), ("add", "a/p2"), ("add", "b/p3"), ("add", "a/p4"),
                    ("update", "a/p1", "1", "5"), ("delete", "b/p3")]
    assert sorted(inf.store.list_keys()) == ["a/p1", "a/p2", "a/p4"]
    assert [meta_namespace_key(o) for o in inf.by_index("app", "web")] == ["a/p4"], "index follows updates"
    assert inf.by_index("app", "cache")[0]["metadata"]["resourceVersion"] == "5"
    wp = api.watch_params[0]
    assert wp["resourceVersion"] == "3" and wp["allowWatchBookmarks"] == "true"
    assert 300 <= int(wp["timeoutSeconds"]) <= 600
    assert api.lists == 2, "one paged LIST of two pages"


async def test_informer_resumes_watch_from_last_rv_and_bookmark(serve):
    api = MiniApi()
    api.put("a", "p1")
    url = await serve(api.app())
    async with make_client(url) as c:
        inf = fast(SharedInformer(c, "v1", "pods", "a"))
        inf.start()
        await inf.wait_for_sync(5)
        await eventually(lambda: len(api.watchers) == 1)
        api.put("a", "p2")
        await eventually(lambda: inf.store.get("a/p2") is not None)
        api.cut()
        await eventually(lambda: len(api.watch_params) == 2 and len(api.watchers) == 1)
        assert api.watch_params[1]["resourceVersion"] == "2"
        api.rv += 40            # other resources moved the revision on
        api.bookmark()
        await eventually(lambda: inf.last_sync_resource_version == "42")
        api.cut()
        await eventually(lambda: len(api.watch_params) == 3)
        assert api.watch_params[2]["resourceVersion"] == "42"
        assert api.lists == 1, "a closed watch resumes without relisting"
        await inf.shutdown()


async def test_informer_relists_on_410_and_delivers_deleted_final_state_unknown(serve):
    api = MiniApi()
    for n in ("gone", "kept", "changed"):
        api.put("a", n)
    url = await serve(api.app())
    events = []
    async with make_client(url) as c:
        inf = fast(SharedInformer(c, "v1", "pods"))
        inf.add_event_handler(on_add=lambda o: events.append(("add", meta_namespace_key(o))),
                              on_update=lambda old, new: events.append(("update", meta_namespace_key(new))),
                              on_delete=lambda o: events.append(("delete", o)))
        inf.start()
        await inf.wait_for_sync(5)
        await eventually(lambda: len(api.watchers) == 1)
        events.clear()
        # the watch misses these, and history is compacted past them
        api.muted = True
        api.remove("a", "gone")
        api.put("a", "changed", v="2")
        api.put("a", "new")
        api.compacted = api.rv
        api.muted = False
        api.cut()
        await eventually(lambda: api.lists == 2 and len(events) == 4)
        await inf.wait_handlers_idle()
        await inf.shutdown()
    kinds = sorted((e[0], e[1] if isinstance(e[1], str) else e[1].key) for e in events)
    assert kinds == [("add", "a/new"), ("delete", "a/gone"), ("update", "a/changed"), ("update", "a/kept")]
    deleted = next(e[1] for e in events if e[0] == "delete")
    assert isinstance(deleted, DeletedFinalStateUnknown) and deleted["metadata"]["name"] == "gone"
    # controllers unwrap it with .obj, as client-go's DeletedFinalStateUnknown.Obj
    assert deleted.obj == {**deleted} and type(deleted.obj) is dict
    assert sorted(inf.store.list_keys()) == ["a/changed", "a/kept", "a/new"]
    assert inf.store.get("a/changed")["metadata"]["labels"] == {"v": "2"}
    assert api.watch_params[-1]["resourceVersion"] == str(api.rv)


async def test_informer_resync_and_late_handlers(serve):
    api = MiniApi()
    api.put("a", "p1")
    api.put("a", "p2")
    url = await serve(api.app())
    resyncs = []
    late = []
    async with make_client(url) as c:
        inf = SharedInformer(c, "v1", "pods", resync_period=0.05)
        inf.add_event_handler(on_update=lambda old, new: resyncs.append((old is new, meta_namespace_key(new))))
        inf.start()
        await inf.wait_for_sync(5)
        await eventually(lambda: len(resyncs) >= 4)
        inf.add_event_handler(on_add=lambda o: late.append(meta_namespace_key(o)))
        await eventually(lambda: len(late) == 2)
        await inf.shutdown()
    assert all(same for same, _ in resyncs)
    assert {k for _, k in resyncs} == {"a/p1", "a/p2"}
    assert sorted(late) == ["a/p1", "a/p2"]


async def test_informer_factory_shares_informers(serve):
    api = MiniApi()
    api.put("a", "p1")
    url = await serve(api.app())
    async with make_client(url) as c:
        f = SharedInformerFactory(c)
        i1 = f.informer("v1", "pods")
        assert f.informer("v1", "pods") is i1
        assert f.informer("v1", "pods", "a") is not i1
        assert f.informer("v1", "pods", label_selector="x=y") is not i1
        f.start()
        assert await f.wait_for_cache_sync(5)
        assert i1.get("a/p1") is not None
        await f.shutdown()


# ======================================================================================
# leaderelection.py, against a Lease endpoint with optimistic concurrency
# ======================================================================================

class LeaseApi:
    def __init__(self):
        self.leases: dict[str, dict] = {}
        self.rv = 0
        self.fail_writes = False
        self.writes: list[tuple[str, dict]] = []

    def app(self):
        app = web.Application()
        base = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        app.router.add_get(base + "/{name}", self.get)
        app.router.add_post(base, self.create)
        app.router.add_put(base + "/{name}", self.update)
        return app

    async def get(self, request):
        lease = self.leases.get(request.match_info["name"])
        if lease is None:
            return web.json_response(status(404, "NotFound", "leases.coordination.k8s.io not found"), status=404)
        return web.json_response(lease)

    async def create(self, request):
        body = await request.json()
        name = body["metadata"]["name"]
        if name in self.leases:
            return web.json_response(status(409, "AlreadyExists", "exists"), status=409)
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[name] = body
        self.writes.append(("create", body["spec"]))
        return web.json_response(body, status=201)

    async def update(self, request):
        if self.fail_writes:
            return web.json_response(status(500, "InternalError", "no"), status=500)
        body = await request.json()
        name = request.match_info["name"]
        cur = self.leases.get(name)
        if cur is None:
            return web.json_response(status(404, "NotFound", "nf"), status=404)
        if body["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            return web.json_response(status(409, "Conflict", "the object has been modified"), status=409)
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[name] = body
        self.writes.append(("update", body["spec"]))
        return web.json_response(body)


def elector(client, ident, log, release=False):
    cfg = LeaderElectionConfig(name="kube-scheduler", namespace="kube-system", identity=ident,
                               lease_duration=1.0, renew_deadline=0.6, retry_period=0.1,
                               release_on_cancel=release)

    async def lead():
        log.append((ident, "started"))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append((ident, "cancelled"))
            raise

    return LeaderElector(client, cfg, on_started_leading=lead,
                         on_stopped_leading=lambda: log.append((ident, "stopped")))


def test_leader_election_config_validation():
    with pytest.raises(ValueError, match="leaseDuration must be greater than renewDeadline"):
        LeaderElectionConfig(name="x", lease_duration=5, renew_deadline=5).validate()
    with pytest.raises(ValueError, match="renewDeadline must be greater than retryPeriod"):
        LeaderElectionConfig(name="x", renew_deadline=2, retry_period=2).validate()
    cfg = LeaderElectionConfig(name="x")
    assert (cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (15.0, 10.0, 2.0)


async def test_one_leader_and_release_hands_over(serve):
    api = LeaseApi()
    url = await serve(api.app())
    log = []
    async with make_client(url) as c:
        a = elector(c, "a", log, release=True)
        b = elector(c, "b", log)
        ta = asyncio.ensure_future(a.run())
        await eventually(lambda: ("a", "started") in log)
        tb = asyncio.ensure_future(b.run())
        await asyncio.sleep(0.5)
        assert ("b", "started") not in log and a.is_leader() and not b.is_leader()
        assert b.leader == "a"
        spec = api.leases["kube-scheduler"]["spec"]
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 1
        assert spec["leaseTransitions"] == 0
        assert spec["acquireTime"].endswith("Z") and "." in spec["renewTime"]
        renewals = [s for k, s in api.writes if k == "update" and s["holderIdentity"] == "a"]
        assert len(renewals) >= 3 and all(s["acquireTime"] == spec["acquireTime"] for s in renewals)

        a.stop()
        await asyncio.wait_for(ta, 2)
        assert log[1:3] == [("a", "cancelled"), ("a", "stopped")]
        start = time.monotonic()
        await eventually(lambda: ("b", "started") in log, timeout=2)
        assert time.monotonic() - start < 0.5, "a released lease is taken at the next retry"
        releases = [s for _, s in api.writes if s["holderIdentity"] == ""]
        assert len(releases) == 1 and releases[0]["leaseDurationSeconds"] == 1
        assert api.leases["kube-scheduler"]["spec"]["holderIdentity"] == "b"
        assert api.leases["kube-scheduler"]["spec"]["leaseTransitions"] == 1
        b.stop()
        await asyncio.wait_for(tb, 2)


async def test_expired_lease_is_taken_over_by_own_clock(serve):
    api = LeaseApi()
    url = await serve(api.app())
    log = []
    async with make_client(url) as c:
        a = elector(c, "a", log)
        b = elector(c, "b", log)
        ta = asyncio.ensure_future(a.run())
        await eventually(lambda: ("a", "started") in log)
        tb = asyncio.ensure_future(b.run())
        await asyncio.sleep(0.3)
        try:
            ta.cancel()                    # crash: no release
            with pytest.raises(asyncio.CancelledError):
                await ta
            died = time.monotonic()
            assert api.leases["kube-scheduler"]["spec"]["holderIdentity"] == "a"
            await eventually(lambda: ("b", "started") in log, timeout=3)
            waited = time.monotonic() - died
            assert 0.8 <= waited < 2.0, waited
            assert api.leases["kube-scheduler"]["spec"]["leaseTransitions"] == 1
        finally:
            b.stop()
            await asyncio.wait_for(tb, 2)


async def test_leader_steps_down_when_renewal_fails(serve):
    api = LeaseApi()
    url = await serve(api.app())
    log = []
    async with make_client(url, max_retries=0) as c:
        a = elector(c, "a", log)
        ta = asyncio.ensure_future(a.run())
        await eventually(lambda: ("a", "started") in log)
        api.fail_writes = True
        failed_at = time.monotonic()
        await asyncio.wait_for(ta, 3)
        took = time.monotonic() - failed_at
    assert log == [("a", "started"), ("a", "cancelled"), ("a", "stopped")]
    assert 0.5 <= took < 1.5, took


# ======================================================================================
# events.py
# ======================================================================================

class EventsApi:
    def __init__(self, delay=0.0):
        self.events: dict[str, dict] = {}
        self.requests: list[Req] = []
        self.delay = delay
        self.rv = 0

    def app(self):
        app = web.Application()
        app.router.add_post("/api/v1/namespaces/{ns}/events", self.create)
        app.router.add_patch("/api/v1/namespaces/{ns}/events/{name}", self.patch)
        return app

    async def create(self, request):
        body = await request.read()
        self.requests.append(Req("POST", request.path, request.query.copy(), request.headers.copy(), body))
        await asyncio.sleep(self.delay)
        ev = json.loads(body)
        self.rv += 1
        ev["metadata"]["resourceVersion"] = str(self.rv)
        self.events[ev["metadata"]["name"]] = ev
        return web.json_response(ev, status=201)

    async def patch(self, request):
        body = await request.read()
        self.requests.append(Req("PATCH", request.path, request.query.copy(), request.headers.copy(), body))
        ev = self.events.get(request.match_info["name"])
        if ev is None:
            return web.json_response(status(404, "NotFound", "events not found"), status=404)
        ev.update(json.loads(body))
        self.rv += 1
        ev["metadata"]["resourceVersion"] = str(self.rv)
        return web.json_response(ev)


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-0", "namespace": "prod", "uid": "uid-1", "resourceVersion": "9"}}


async def test_event_recorder_creates_then_counts_identical_events(serve):
    api = EventsApi()
    url = await serve(api.app())
    async with make_client(url) as c:
        rec = EventRecorder(c, "kubelet", host="node-1")
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")
        rec.event(POD, "Normal", "Pulled", "Container image already present", field_path="spec.containers{app}")
        await rec.flush()
        await rec.shutdown()
    post, patch, post2 = api.requests
    ev = post.json()
    assert post.path == "/api/v1/namespaces/prod/events"
    assert ev["metadata"]["name"].startswith("web-0.") and ev["metadata"]["namespace"] == "prod"
    int(ev["metadata"]["name"].split(".", 1)[1], 16)
    assert ev["involvedObject"] == {"kind": "Pod", "namespace": "prod", "name": "web-0", "uid": "uid-1",
                                    "apiVersion": "v1", "resourceVersion": "9"}
    assert (ev["type"], ev["reason"], ev["count"]) == ("Warning", "BackOff", 1)
    assert ev["source"] == {"component": "kubelet", "host": "node-1"}
    assert ev["firstTimestamp"] == ev["lastTimestamp"] and ev["firstTimestamp"].endswith("Z")
    assert patch.path == f"/api/v1/namespaces/prod/events/{ev['metadata']['name']}"
    assert patch.headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert set(patch.json()) == {"count", "lastTimestamp", "message"} and patch.json()["count"] == 2
    assert api.events[ev["metadata"]["name"]]["count"] == 2
    assert post2.json()["involvedObject"]["fieldPath"] == "spec.containers{app}"


async def test_event_recorder_recreates_an_event_deleted_meanwhile(serve):
    api = EventsApi()
    url = await serve(api.app())
    async with make_client(url) as c:
        rec = EventRecorder(c, "scheduler")
        rec.event(POD, "Warning", "FailedScheduling", "0/3 nodes are available")
        await rec.flush()
        api.events.clear()
        rec.event(POD, "Warning", "FailedScheduling", "0/3 nodes are available")
        await rec.flush()
        await rec.shutdown()
    assert [r.method for r in api.requests] == ["POST", "PATCH", "POST"]
    assert api.requests[2].json()["count"] == 2
    assert "resourceVersion" not in api.requests[2].json()["metadata"]


async def test_event_recorder_aggregates_similar_events(serve):
    api = EventsApi()
    url = await serve(api.app())
    async with make_client(url) as c:
        rec = EventRecorder(c, "deployment-controller")
        for i in range(12):
            rec.event(POD, "Normal", "Scaled", f"scaled to {i}")
        await rec.flush()
        await rec.shutdown()
    methods = [r.method for r in api.requests]
    # 9 distinct events, then the 10th similar one starts a combined event that later ones count
    assert methods == ["POST"] * 10 + ["PATCH"] * 2
    assert [r.json()["message"] for r in api.requests[:9]] == [f"scaled to {i}" for i in range(9)]
    combined = api.requests[9].json()
    assert combined["message"] == "(combined from similar events): scaled to 9"
    assert combined["count"] == 1
    assert api.requests[10].path.endswith("/events/" + combined["metadata"]["name"])
    assert [r.json()["count"] for r in api.requests[10:]] == [2, 3]
    assert api.requests[11].json()["message"] == "(combined from similar events): scaled to 11"


async def test_event_recording_never_blocks_the_caller(serve, caplog):
    api = EventsApi(delay=0.3)
    url = await serve(api.app())
    async with make_client(url) as c:
        rec = EventRecorder(c, "x")
        start = time.monotonic()
        for i in range(3):
            rec.event(POD, "Normal", "R", f"m{i}")
        rec.event(POD, "Bogus", "R", "dropped")
        assert time.monotonic() - start < 0.05
        await rec.flush()
        await rec.shutdown()
    assert len(api.requests) == 3
    assert "Unsupported event type: 'Bogus'" in caplog.text


def test_event_correlator_spam_filter_bursts_then_throttles():
    now = [1000.0]
    corr = EventCorrelator(lambda: now[0], spam_burst=3, spam_qps=1.0)
    base = {"metadata": {"name": "x", "namespace": "ns"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "source": {"component": "c"}, "type": "Normal", "reason": "R", "count": 1,
            "firstTimestamp": "t", "lastTimestamp": "t"}
    results = [corr.correlate({**base, "message": f"m{i}"}) for i in range(5)]
    assert [r is not None for r in results] == [True, True, True, False, False]
    now[0] += 1.0
    assert corr.correlate({**base, "message": "later"}) is not None


async def test_max_inflight_bounds_concurrent_requests_and_connections(serve):
    state = {"now": 0, "peak": 0, "peers": set()}

    async def slow(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        state["peers"].add(request.transport.get_extra_info("peername"))
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return web.json_response({"kind": "Pod", "metadata": {"name": request.match_info["name"]}})
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/{name}", slow)
    url = await serve(app)
    async with make_client(url, max_inflight=3) as c:
        got = await asyncio.gather(*(c.get("v1", "pods", "default", f"p{i}") for i in range(12)))
    assert [g["metadata"]["name"] for g in got] == [f"p{i}" for i in range(12)]
    assert state["peak"] == 3 and len(state["peers"]) <= 3
