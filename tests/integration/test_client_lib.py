"""kubelab's own client library (kubelab.client) against the real apiserver on a real etcd.

Covers the REST client (kubeconfig with client certificates, every verb, error Statuses, paging,
Warning headers, watches with bookmarks and 410), the shared informer (including a relist after
the apiserver is SIGKILLed), leader election on a Lease, the event recorder and a small
level-triggered controller built from an informer and the workqueue.
"""
from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from typing import Any, Callable

import pytest

from kubelab.client.events import EventRecorder
from kubelab.client.informer import (DeletedFinalStateUnknown, SharedInformer, SharedInformerFactory,
                                     meta_namespace_key, split_meta_namespace_key)
from kubelab.client.kubeconfig import load_kubeconfig
from kubelab.client.leaderelection import LeaderElectionConfig, LeaderElector
from kubelab.client.rest import (ApiError, Client, is_already_exists, is_conflict, is_gone, is_invalid,
                                 is_not_found)
from kubelab.client.workqueue import ShutDown, WorkQueue
from kubelab.storage import errors as storage_errors
from kubelab.storage.etcd import Store

pytestmark = pytest.mark.integration

LEASES = "coordination.k8s.io/v1"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
async def api(control_plane):
    """kubelab's client from the lab kubeconfig (admin client certificate)."""
    c = Client.from_kubeconfig(str(control_plane.kubeconfig), component="itest")
    try:
        yield c
    finally:
        await c.close()


def cm(name: str, ns: str, data: dict | None = None, labels: dict | None = None) -> dict:
    md: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": dict(data or {})}


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def eventually(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `cond` (sync or async) until it returns a truthy value; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def compact_etcd(control_plane) -> int:
    """Compact etcd at its current revision; returns that revision."""
    s = Store([control_plane.etcd.url])
    try:
        rev = await s.revision()
        try:
            await s.compact(rev)
        except storage_errors.Expired:  # already compacted at this revision
            pass
        return rev
    finally:
        await s.close()


async def etcd_revision(control_plane) -> int:
    s = Store([control_plane.etcd.url])
    try:
        return await s.revision()
    finally:
        await s.close()


async def collect(agen, n: int, timeout: float) -> list[tuple[str, dict]]:
    """The first n events of a watch (fewer if it ends)."""
    out: list[tuple[str, dict]] = []

    async def run() -> None:
        async for etype, obj in agen:
            out.append((etype, obj))
            if len(out) >= n:
                return
    await asyncio.wait_for(run(), timeout)
    return out


# -- REST client: config, verbs, errors -------------------------------------------------------


async def test_from_kubeconfig_authenticates_with_client_certificate(control_plane, api):
    cfg = load_kubeconfig(str(control_plane.kubeconfig))
    assert cfg.server == control_plane.url
    assert cfg.client_certificate_data and cfg.client_key_data and cfg.certificate_authority_data
    assert cfg.authorization_header() is None, "the admin kubeconfig authenticates by certificate only"
    assert api.config.server == control_plane.url
    # the server sees who the certificate says we are
    review = await api.create("authentication.k8s.io/v1", "selfsubjectreviews",
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    user = review["status"]["userInfo"]
    assert user["username"] == "kubernetes-admin"
    assert "system:masters" in user["groups"]
    ns = await api.get("v1", "namespaces", None, "default")
    assert ns["metadata"]["name"] == "default" and ns["status"]["phase"] == "Active"


async def test_credentials_decide_who_the_client_is(control_plane):
    cfg = load_kubeconfig(str(control_plane.kubeconfig))
    cfg.client_certificate_data = cfg.client_key_data = None
    async with Client(cfg, max_retries=0) as anon:
        with pytest.raises(ApiError) as e:
            await anon.list("v1", "configmaps", "default")
    # without credentials the request is anonymous: either 401 or 403, never data
    assert (e.value.code, e.value.reason) in ((401, "Unauthorized"), (403, "Forbidden")), repr(e.value)
    cfg.token = control_plane.token
    async with Client(cfg) as tok:
        review = await tok.create("authentication.k8s.io/v1", "selfsubjectreviews",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review["status"]["userInfo"]["username"] == "test-user"


async def test_crud_round_trip(api, namespace):
    created = await api.create("v1", "configmaps", cm("one", namespace, {"a": "1", "b": "2"}, {"app": "x"}))
    assert created["metadata"]["uid"] and created["metadata"]["namespace"] == namespace
    assert created["data"] == {"a": "1", "b": "2"}

    got = await api.get("v1", "configmaps", namespace, "one")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert rv(got) == rv(created)

    listed = await api.list("v1", "configmaps", namespace, label_selector="app=x")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["one"]
    assert listed["kind"] == "ConfigMapList"
    assert int(listed["metadata"]["resourceVersion"]) >= rv(created)

    # update (PUT) with the current resourceVersion
    body = copy.deepcopy(got)
    body["data"]["a"] = "10"
    updated = await api.update("v1", "configmaps", body)
    assert updated["data"] == {"a": "10", "b": "2"}
    assert rv(updated) > rv(got)

    # merge patch: null deletes a key, other keys merge
    merged = await api.patch("v1", "configmaps", namespace, "one", {"data": {"b": None, "c": "3"}}, "merge")
    assert merged["data"] == {"a": "10", "c": "3"}

    # JSON patch: ordered operations, "test" guards the edit
    jp = [{"op": "test", "path": "/data/a", "value": "10"},
          {"op": "replace", "path": "/data/a", "value": "11"},
          {"op": "remove", "path": "/data/c"},
          {"op": "add", "path": "/metadata/labels/tier", "value": "web"}]
    patched = await api.patch("v1", "configmaps", namespace, "one", jp, "json")
    assert patched["data"] == {"a": "11"}
    assert patched["metadata"]["labels"] == {"app": "x", "tier": "web"}
    fresh = await api.get("v1", "configmaps", namespace, "one")
    assert fresh["data"] == {"a": "11"} and rv(fresh) == rv(patched)

    # delete returns a Success Status naming the object; it is gone afterwards
    st = await api.delete("v1", "configmaps", namespace, "one")
    assert st["kind"] == "Status" and st["status"] == "Success"
    assert st["details"]["name"] == "one" and st["details"]["kind"] == "configmaps"
    assert st["details"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiError) as e:
        await api.get("v1", "configmaps", namespace, "one")
    assert e.value.code == 404


async def test_strategic_merge_patch_merges_containers_by_name(api, namespace):
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "a", "image": "busybox:1.36"},
                                                      {"name": "b", "image": "nginx:1.25"}]}}},
    }
    await api.create("apps/v1", "deployments", dep)
    # strategic merge: the containers list merges on "name"
    sp = {"spec": {"replicas": 3,
                   "template": {"spec": {"containers": [{"name": "b", "image": "nginx:1.27"}]}}}}
    out = await api.patch("apps/v1", "deployments", namespace, "web", sp, "strategic")
    cs = {c["name"]: c["image"] for c in out["spec"]["template"]["spec"]["containers"]}
    assert cs == {"a": "busybox:1.36", "b": "nginx:1.27"}
    assert out["spec"]["replicas"] == 3
    # $patch: delete removes one element by its merge key
    out = await api.patch("apps/v1", "deployments", namespace, "web",
                          {"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}},
                          "strategic")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["b"]
    # a JSON merge patch replaces the whole list instead
    out = await api.patch("apps/v1", "deployments", namespace, "web",
                          {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}},
                          "merge")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["c"]
    assert out["metadata"]["generation"] == 4


async def test_delete_collection_by_label(api, namespace):
    for i in range(4):
        await api.create("v1", "configmaps", cm(f"d{i}", namespace, labels={"batch": "odd" if i % 2 else "even"}))
    await api.delete_collection("v1", "configmaps", namespace, label_selector="batch=odd")
    left = await api.list("v1", "configmaps", namespace, label_selector="batch")
    assert sorted(o["metadata"]["name"] for o in left["items"]) == ["d0", "d2"]
    await api.delete_collection("v1", "configmaps", namespace, label_selector="batch")
    assert (await api.list("v1", "configmaps", namespace, label_selector="batch"))["items"] == []


async def test_api_errors_carry_code_reason_and_details(api, namespace):
    # NotFound
    with pytest.raises(ApiError) as e:
        await api.get("v1", "configmaps", namespace, "nope")
    err = e.value
    assert (err.code, err.reason) == (404, "NotFound") and is_not_found(err)
    assert err.message == 'configmaps "nope" not found'
    assert err.details["name"] == "nope" and err.details["kind"] == "configmaps"
    with pytest.raises(ApiError) as e:
        await api.get("apps/v1", "deployments", namespace, "nope")
    assert e.value.message == 'deployments.apps "nope" not found'
    assert e.value.details["group"] == "apps"

    # AlreadyExists
    first = await api.create("v1", "configmaps", cm("dup", namespace, {"k": "v"}))
    with pytest.raises(ApiError) as e:
        await api.create("v1", "configmaps", cm("dup", namespace))
    err = e.value
    assert (err.code, err.reason) == (409, "AlreadyExists") and is_already_exists(err)
    assert not is_conflict(err)
    assert err.message == 'configmaps "dup" already exists'

    # Conflict: an update carrying a stale resourceVersion
    await api.patch("v1", "configmaps", namespace, "dup", {"data": {"k": "w"}})
    stale = copy.deepcopy(first)
    stale["data"] = {"k": "stale"}
    with pytest.raises(ApiError) as e:
        await api.update("v1", "configmaps", stale)
    err = e.value
    assert (err.code, err.reason) == (409, "Conflict") and is_conflict(err)
    assert err.message == ('Operation cannot be fulfilled on configmaps "dup": the object has been modified; '
                           'please apply your changes to the latest version and try again')
    assert (await api.get("v1", "configmaps", namespace, "dup"))["data"] == {"k": "w"}

    # Conflict: a delete precondition that does not match
    with pytest.raises(ApiError) as e:
        await api.delete("v1", "configmaps", namespace, "dup", preconditions={"uid": "not-the-uid"})
    assert (e.value.code, e.value.reason) == (409, "Conflict")
    assert "Precondition failed: UID in precondition: not-the-uid" in e.value.message
    await api.get("v1", "configmaps", namespace, "dup")  # still there

    # Invalid: 422 with one cause per field
    with pytest.raises(ApiError) as e:
        await api.create("v1", "configmaps", cm("bad", namespace, {"bad key!": "x"}))
    err = e.value
    assert (err.code, err.reason) == (422, "Invalid") and is_invalid(err)
    assert err.message.startswith('ConfigMap "bad" is invalid: data[bad key!]: Invalid value: "bad key!": ')
    assert err.details["name"] == "bad" and err.details["kind"] == "ConfigMap"
    assert [(c["field"], c["reason"]) for c in err.causes] == [("data[bad key!]", "FieldValueInvalid")]

    with pytest.raises(ApiError) as e:
        await api.create("v1", "configmaps", cm("Bad_Name", namespace))
    err = e.value
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.message.startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
                                  'a lowercase RFC 1123 subdomain must consist of')
    assert [c["field"] for c in err.causes] == ["metadata.name"]
    # nothing was stored by the failed writes
    with pytest.raises(ApiError) as e:
        await api.get("v1", "configmaps", namespace, "bad")
    assert e.value.code == 404


async def test_list_all_follows_continue_tokens(api, namespace):
    names = [f"p{i:02d}" for i in range(23)]
    for n in names:
        await api.create("v1", "configmaps", cm(n, namespace, {"n": n}, {"paged": "yes"}))
    baseline = await api.list("v1", "configmaps", namespace)
    total = len(baseline["items"])
    assert total >= 23

    one = await api.list("v1", "configmaps", namespace, limit=5)
    assert len(one["items"]) == 5
    assert one["metadata"]["continue"]
    assert one["metadata"]["remainingItemCount"] == total - 5

    calls: list[dict] = []
    real_list = api.list

    async def counting_list(*a, **kw):
        page = await real_list(*a, **kw)
        calls.append({"continue": kw.get("continue_"), "n": len(page["items"])})
        return page
    api.list = counting_list  # type: ignore[method-assign]
    try:
        result = await api.list_all("v1", "configmaps", namespace, label_selector="paged=yes", limit=5)
    finally:
        del api.list
    got = [o["metadata"]["name"] for o in result["items"]]
    assert got == names  # every item once, in key order
    assert len(calls) == 5 and [c["n"] for c in calls] == [5, 5, 5, 5, 3]
    assert calls[0]["continue"] is None and all(c["continue"] for c in calls[1:])
    assert "continue" not in result["metadata"]
    # the result's RV is the snapshot of the first page
    assert int(result["metadata"]["resourceVersion"]) >= max(rv(o) for o in result["items"])


async def test_list_all_relists_when_continue_token_is_compacted(api, namespace, control_plane):
    for i in range(6):
        await api.create("v1", "configmaps", cm(f"c{i}", namespace, labels={"grp": "c"}))
    real_list = api.list
    seen: list[str] = []

    async def list_then_compact(*a, **kw):
        try:
            return await real_list(*a, **kw)
        except ApiError as e:
            seen.append(f"{e.code} {e.reason}")
            raise
        finally:
            if len(seen) == 0 and kw.get("continue_") is None and kw.get("limit") == 2:
                # after the first page: a new object appears, etcd forgets the page's revision, and the
                # apiserver restarts (its watch cache keeps paging snapshots only in memory)
                seen.append("first page")
                await api.create("v1", "configmaps", cm("c9", namespace, labels={"grp": "c"}))
                await compact_etcd(control_plane)
                await asyncio.to_thread(control_plane.restart_apiserver, True)
    api.list = list_then_compact  # type: ignore[method-assign]
    try:
        result = await api.list_all("v1", "configmaps", namespace, label_selector="grp=c", limit=2)
    finally:
        del api.list
    assert seen[:2] == ["first page", "410 Expired"], seen
    # the fallback is one unpaged list: consistent, and it includes the object created meanwhile
    assert [o["metadata"]["name"] for o in result["items"]] == [f"c{i}" for i in range(6)] + ["c9"]


async def test_warning_headers_are_surfaced(api, namespace):
    body = cm("warned", namespace, {"a": "1"})
    body["metadata"]["bogus"] = "x"
    before = len(api.warnings)
    created = await api.create("v1", "configmaps", body, field_validation="Warn")
    assert list(api.warnings)[before:] == ['unknown field "metadata.bogus"']
    assert "bogus" not in created["metadata"]

    # several unknown fields: one warning each (the header carries them comma-separated)
    body = cm("warned2", namespace)
    body["metadata"]["bogus"] = "x"
    body["metadata"]["other"] = {"y": 1}
    before = len(api.warnings)
    await api.create("v1", "configmaps", body)  # Warn is the default
    assert sorted(list(api.warnings)[before:]) == ['unknown field "metadata.bogus"', 'unknown field "metadata.other"']

    # Ignore: no warning; Strict: 400 naming the field, nothing stored
    body = cm("ignored", namespace)
    body["metadata"]["bogus"] = "x"
    before = len(api.warnings)
    await api.create("v1", "configmaps", body, field_validation="Ignore")
    assert len(api.warnings) == before
    body = cm("strict", namespace)
    body["metadata"]["bogus"] = "x"
    with pytest.raises(ApiError) as e:
        await api.create("v1", "configmaps", body, field_validation="Strict")
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    assert 'unknown field "metadata.bogus"' in e.value.message
    with pytest.raises(ApiError):
        await api.get("v1", "configmaps", namespace, "strict")


# -- watch -----------------------------------------------------------------------------------


async def test_watch_delivers_added_modified_deleted_in_order(api, namespace):
    start = await api.list("v1", "configmaps", namespace)
    start_rv = start["metadata"]["resourceVersion"]
    async with api.watch("v1", "configmaps", namespace, resource_version=start_rv, timeout_seconds=30,
                         allow_bookmarks=False) as w:
        async def writes() -> list[dict]:
            a = await api.create("v1", "configmaps", cm("w", namespace, {"v": "1"}))
            b = await api.patch("v1", "configmaps", namespace, "w", {"data": {"v": "2"}})
            other = await api.create("v1", "configmaps", cm("w2", namespace))
            await api.delete("v1", "configmaps", namespace, "w")
            return [a, b, other]
        writer = asyncio.ensure_future(writes())
        events = await collect(w, 4, 20)
        a, b, other = await writer
        assert [(t, o["metadata"]["name"]) for t, o in events] == [
            ("ADDED", "w"), ("MODIFIED", "w"), ("ADDED", "w2"), ("DELETED", "w")]
        assert events[0][1]["data"] == {"v": "1"} and rv(events[0][1]) == rv(a)
        assert events[1][1]["data"] == {"v": "2"} and rv(events[1][1]) == rv(b)
        assert rv(events[2][1]) == rv(other)
        rvs = [rv(o) for _, o in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == 4
        # the DELETED event carries the last state, at the deletion's revision
        assert events[3][1]["data"] == {"v": "2"} and rvs[3] > rv(b)
        assert w.resource_version == str(rvs[3])
        assert w.events == 4

    # resuming from a seen RV replays exactly what came after it
    async with api.watch("v1", "configmaps", namespace, resource_version=str(rvs[1]), timeout_seconds=5,
                         allow_bookmarks=False) as w2:
        replay = await collect(w2, 2, 10)
    assert [(t, o["metadata"]["name"]) for t, o in replay] == [("ADDED", "w2"), ("DELETED", "w")]


async def test_watch_field_selector_and_server_timeout(api, namespace):
    await api.create("v1", "configmaps", cm("keep", namespace))
    await api.create("v1", "configmaps", cm("skip", namespace))
    t0 = time.monotonic()
    async with api.watch("v1", "configmaps", namespace, field_selector="metadata.name=keep",
                         timeout_seconds=2, allow_bookmarks=False) as w:
        events = [(t, o["metadata"]["name"]) async for t, o in w]
    elapsed = time.monotonic() - t0
    # no RV: the current state as ADDED, filtered; then the server ends the stream at the timeout
    assert events == [("ADDED", "keep")]
    assert 1.5 <= elapsed < 10, elapsed


async def test_watch_bookmarks_only_when_allowed(api, namespace):
    start = await api.list("v1", "configmaps", namespace)
    start_rv = int(start["metadata"]["resourceVersion"])

    async def run(allow: bool) -> tuple[list[tuple[str, dict]], str | None]:
        async with api.watch("v1", "configmaps", namespace, resource_version=str(start_rv),
                             timeout_seconds=11, allow_bookmarks=allow) as w:
            evs = [(t, o) async for t, o in w]
            return evs, w.resource_version

    # the apiserver sends bookmarks every 10 s: within 11 s an idle watch sees at least one
    (with_bm, with_rv), (without, without_rv) = await asyncio.wait_for(
        asyncio.gather(run(True), run(False)), 40)
    assert without == [] and without_rv == str(start_rv)
    assert with_bm, "no BOOKMARK within 11s although allowWatchBookmarks=true"
    assert {t for t, _ in with_bm} == {"BOOKMARK"}
    bm = with_bm[0][1]
    assert bm["kind"] == "ConfigMap" and bm["apiVersion"] == "v1"
    assert int(bm["metadata"]["resourceVersion"]) >= start_rv
    assert with_rv == with_bm[-1][1]["metadata"]["resourceVersion"]


async def test_send_initial_events_ends_with_initial_events_end_bookmark(api, namespace):
    made = [await api.create("v1", "configmaps", cm(f"i{i}", namespace, {"i": str(i)})) for i in range(3)]
    path = api.path("v1", "configmaps", namespace)
    raw = await api.request("GET", path, params={
        "watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true", "timeoutSeconds": 2}, raw=True)
    events = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert sorted(added) == ["i0", "i1", "i2"]
    first_bookmark = next(i for i, e in enumerate(events) if e["type"] == "BOOKMARK")
    assert first_bookmark == 3, [e["type"] for e in events]
    bm = events[first_bookmark]["object"]
    assert bm["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bm["metadata"]["resourceVersion"]) >= max(rv(o) for o in made)
    # sendInitialEvents without resourceVersionMatch=NotOlderThan is Invalid
    with pytest.raises(ApiError) as e:
        await api.request("GET", path, params={"watch": "1", "sendInitialEvents": "true",
                                               "allowWatchBookmarks": "true"})
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert "resourceVersionMatch" in e.value.message


async def test_watch_from_compacted_rv_is_410_expired(api, namespace, control_plane):
    made = [await api.create("v1", "configmaps", cm(f"z{i}", namespace)) for i in range(3)]
    old_rv = rv(made[0])
    compacted = await compact_etcd(control_plane)
    assert compacted > old_rv
    # an exact list at a revision etcd has compacted away is 410
    with pytest.raises(ApiError) as e:
        await api.list("v1", "configmaps", namespace, resource_version=str(old_rv), resource_version_match="Exact")
    assert (e.value.code, e.value.reason) == (410, "Expired") and is_gone(e.value)

    # A running apiserver still serves watches from its watch cache's window (as upstream does);
    # once it restarts, the window begins at etcd's current revision and the compacted history
    # is gone for good: a watch from before it answers ERROR 410 Expired.
    await asyncio.to_thread(control_plane.restart_apiserver, True)
    with pytest.raises(ApiError) as e:
        async with api.watch("v1", "configmaps", namespace, resource_version=str(old_rv), timeout_seconds=5) as w:
            async for _ in w:
                pass
    err = e.value
    assert (err.code, err.reason) == (410, "Expired") and is_gone(err)
    m = re.fullmatch(r"too old resource version: (\d+) \((\d+)\)", err.message)
    assert m, err.message
    assert int(m.group(1)) == old_rv and int(m.group(2)) >= compacted
    assert err.status["kind"] == "Status" and err.status["status"] == "Failure"

    # raise_errors=False: the ERROR event is yielded with its Status, then the stream ends
    async with api.watch("v1", "configmaps", namespace, resource_version="1", timeout_seconds=5,
                         raise_errors=False) as w:
        evs = [(t, o) async for t, o in w]
    assert len(evs) == 1 and evs[0][0] == "ERROR"
    assert evs[0][1]["kind"] == "Status" and evs[0][1]["code"] == 410 and evs[0][1]["reason"] == "Expired"

    # the cure for 410 is a fresh list: watching from its RV works
    fresh = await api.list("v1", "configmaps", namespace)
    assert sorted(o["metadata"]["name"] for o in fresh["items"]) == ["z0", "z1", "z2"]
    async with api.watch("v1", "configmaps", namespace, resource_version=fresh["metadata"]["resourceVersion"],
                         timeout_seconds=10, allow_bookmarks=False) as w:
        await api.create("v1", "configmaps", cm("z3", namespace))
        evs = await collect(w, 1, 10)
    assert [(t, o["metadata"]["name"]) for t, o in evs] == [("ADDED", "z3")]


async def test_watch_ends_promptly_when_apiserver_shuts_down_gracefully(api, namespace, control_plane):
    """SIGTERM: the apiserver ends open watch streams and exits (upstream closes watches at
    shutdown); the client's watch iterator simply ends, ready for the caller to re-watch."""
    await api.create("v1", "configmaps", cm("g0", namespace))
    w = api.watch("v1", "configmaps", namespace, timeout_seconds=300, allow_bookmarks=False)
    first = await collect(w, 1, 10)
    assert [(t, o["metadata"]["name"]) for t, o in first] == [("ADDED", "g0")]
    ended_at: list[float] = []

    async def drain() -> list:
        rest = [e async for e in w]
        ended_at.append(time.monotonic())
        return rest
    drainer = asyncio.ensure_future(drain())
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    try:
        await asyncio.to_thread(control_plane.restart_apiserver, False)
        took = time.monotonic() - t0
        rest = await asyncio.wait_for(drainer, 10)
    finally:
        await w.close()
    assert rest == [], "no event may be invented at shutdown"
    stream_end = ended_at[0] - t0
    # control_plane's stop() sends SIGTERM and escalates to SIGKILL after 10 s
    assert stream_end < 3 and took < 8, (
        f"graceful shutdown with an open watch: the stream ended after {stream_end:.1f}s and the "
        f"restart took {took:.1f}s (the apiserver did not exit on SIGTERM while a watch was open)")
    # the restarted server answers again
    assert (await api.get("v1", "configmaps", namespace, "g0"))["metadata"]["name"] == "g0"


# -- informer --------------------------------------------------------------------------------


def _app_index(obj: dict) -> list[str]:
    app = ((obj.get("metadata") or {}).get("labels") or {}).get("app")
    return [app] if app else []


async def _store_matches_api(api: Client, inf: SharedInformer, namespace: str) -> bool:
    live = await api.list("v1", "configmaps", namespace)
    want = {meta_namespace_key(o): o["metadata"]["resourceVersion"] for o in live["items"]}
    have = {k: inf.store.get(k)["metadata"]["resourceVersion"] for k in inf.store.list_keys()}
    return want == have


async def test_informer_syncs_tracks_changes_and_relists_after_apiserver_kill(api, namespace, control_plane):
    for name, app in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        await api.create("v1", "configmaps", cm(name, namespace, {"v": "0"}, {"app": app}))
    factory = SharedInformerFactory(api)
    inf = factory.informer("v1", "configmaps", namespace, indexers={"app": _app_index})
    log: list[tuple[str, str, Any]] = []
    inf.add_event_handler(
        on_add=lambda o: log.append(("add", meta_namespace_key(o), o["metadata"]["resourceVersion"])),
        on_update=lambda old, new: log.append(("update", meta_namespace_key(new),
                                               (old["metadata"]["resourceVersion"],
                                                new["metadata"]["resourceVersion"]))),
        on_delete=lambda o: log.append(("delete", meta_namespace_key(o), type(o).__name__)))
    factory.start()
    try:
        assert await factory.wait_for_cache_sync(15)
        assert inf.has_synced and inf.relists == 1
        key = lambda n: f"{namespace}/{n}"  # noqa: E731
        assert sorted(inf.store.list_keys()) == [key("a1"), key("a2"), key("b1")]
        assert sorted(o["metadata"]["name"] for o in inf.by_index("app", "a")) == ["a1", "a2"]
        assert [o["metadata"]["name"] for o in inf.by_index("app", "b")] == ["b1"]
        assert sorted(inf.store.index_keys("namespace", namespace)) == [key("a1"), key("a2"), key("b1")]
        await inf.wait_handlers_idle()
        assert sorted((k, t) for t, k, _ in log) == [(key("a1"), "add"), (key("a2"), "add"), (key("b1"), "add")]

        # adds, updates (including one that moves an object between index values) and deletes
        log.clear()
        c1 = await api.create("v1", "configmaps", cm("c1", namespace, {"v": "0"}, {"app": "b"}))
        a1 = await api.patch("v1", "configmaps", namespace, "a1", {"data": {"v": "1"}})
        a2 = await api.patch("v1", "configmaps", namespace, "a2", {"metadata": {"labels": {"app": "b"}}})
        await api.delete("v1", "configmaps", namespace, "b1")
        await eventually(lambda: len(log) >= 4, 10, "4 handler calls")
        await inf.wait_handlers_idle()
        assert [(t, k) for t, k, _ in log] == [("add", key("c1")), ("update", key("a1")),
                                               ("update", key("a2")), ("delete", key("b1"))]
        assert log[0][2] == c1["metadata"]["resourceVersion"]
        assert log[1][2][1] == a1["metadata"]["resourceVersion"]
        assert log[3][2] == "dict", "a watched DELETE hands over the object itself"
        assert inf.get(key("a1"))["data"] == {"v": "1"}
        assert [o["metadata"]["name"] for o in inf.by_index("app", "a")] == ["a1"]
        assert sorted(o["metadata"]["name"] for o in inf.by_index("app", "b")) == ["a2", "c1"]
        assert int(inf.last_sync_resource_version) > rv(a2)
        assert await _store_matches_api(api, inf, namespace)

        # move etcd past the informer's resourceVersion with writes it does not watch and compact that
        # history away, so the restarted apiserver's watch cache cannot resume it: the informer must relist
        # (without the compaction the new apiserver replays etcd's history and the watch simply resumes)
        for _ in range(3):
            await api.create("v1", "secrets", {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"generateName": "bump-", "namespace": namespace}})
        assert int(inf.last_sync_resource_version) < await etcd_revision(control_plane) - 1
        store = Store([control_plane.etcd.url])
        await store.compact(await store.revision())
        await store.close()
        relists_before = inf.relists
        log.clear()
        await asyncio.to_thread(control_plane.restart_apiserver, True)

        # changes right after the restart; some may be seen by watch, the rest by the relist
        await api.create("v1", "configmaps", cm("late", namespace, {"v": "late"}, {"app": "a"}))
        await api.delete("v1", "configmaps", namespace, "c1")
        await api.patch("v1", "configmaps", namespace, "a1", {"data": {"v": "2"}})

        await eventually(lambda: inf.relists > relists_before, 30, "a relist after the apiserver restart")
        await eventually(lambda: _store_matches_api(api, inf, namespace), 30, "the store to match the API")
        await inf.wait_handlers_idle()
        assert sorted(inf.store.list_keys()) == [key("a1"), key("a2"), key("late")]
        assert inf.get(key("a1"))["data"] == {"v": "2"}
        assert inf.get(key("late"))["data"] == {"v": "late"}
        assert sorted(o["metadata"]["name"] for o in inf.by_index("app", "a")) == ["a1", "late"]
        assert [o["metadata"]["name"] for o in inf.by_index("app", "b")] == ["a2"]
        kinds = {(t, k) for t, k, _ in log}
        assert ("add", key("late")) in kinds
        assert ("delete", key("c1")) in kinds
        deletes = [d for t, k, d in log if t == "delete"]
        assert set(deletes) <= {"dict", DeletedFinalStateUnknown.__name__}
        # the relist reported every surviving object as an update (old -> new)
        assert ("update", key("a2")) in kinds
    finally:
        await factory.shutdown()


async def test_informer_handler_added_late_gets_cache_replay(api, namespace):
    for i in range(3):
        await api.create("v1", "configmaps", cm(f"r{i}", namespace, labels={"app": "r"}))
    inf = SharedInformer(api, "v1", "configmaps", namespace, label_selector="app=r", page_size=2)
    inf.start()
    try:
        assert await inf.wait_for_sync(15)
        assert sorted(o["metadata"]["name"] for o in inf.list()) == ["r0", "r1", "r2"]
        seen: list[str] = []

        async def on_add(o: dict) -> None:  # coroutine handlers work too
            seen.append(o["metadata"]["name"])
        inf.add_event_handler(on_add=on_add)
        await api.create("v1", "configmaps", cm("r3", namespace, labels={"app": "r"}))
        await api.create("v1", "configmaps", cm("other", namespace, labels={"app": "other"}))
        await eventually(lambda: len(seen) >= 4, 10, "replay plus the new object")
        await asyncio.sleep(0.3)
        assert sorted(seen[:3]) == ["r0", "r1", "r2"] and seen[3:] == ["r3"]
        assert "other" not in {o["metadata"]["name"] for o in inf.list()}
    finally:
        await inf.shutdown()


# -- leader election -------------------------------------------------------------------------


class Candidate:
    def __init__(self, api: Client, namespace: str, identity: str, release: bool = True) -> None:
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started_count = 0
        self.new_leaders: list[str] = []
        self.elector = LeaderElector(
            api, LeaderElectionConfig(name="ctl", namespace=namespace, identity=identity, lease_duration=3,
                                      renew_deadline=2, retry_period=0.5, release_on_cancel=release),
            on_started_leading=self._lead, on_stopped_leading=self.stopped.set,
            on_new_leader=self.new_leaders.append)
        self.task: asyncio.Task | None = None

    async def _lead(self) -> None:
        self.started_count += 1
        self.leading.set()
        await asyncio.Event().wait()

    def start(self) -> "Candidate":
        self.task = asyncio.ensure_future(self.elector.run())
        return self

    async def stop(self) -> None:
        self.elector.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 15)


async def _lease(api: Client, namespace: str) -> dict:
    return (await api.get(LEASES, "leases", namespace, "ctl"))["spec"]


async def test_leader_election_one_leader_and_handover_on_release(api, namespace):
    a = Candidate(api, namespace, "cand-a")
    b = Candidate(api, namespace, "cand-b")
    a.start(), b.start()
    try:
        done, _ = await asyncio.wait({asyncio.ensure_future(a.leading.wait()),
                                      asyncio.ensure_future(b.leading.wait())},
                                     timeout=15, return_when=asyncio.FIRST_COMPLETED)
        assert done, "nobody became leader"
        leader, follower = (a, b) if a.leading.is_set() else (b, a)
        # hold on for longer than a lease duration: the leader keeps renewing, the other waits
        spec1 = await _lease(api, namespace)
        await asyncio.sleep(4)
        spec2 = await _lease(api, namespace)
        assert not follower.leading.is_set(), "both candidates lead"
        assert leader.elector.is_leader() and not follower.elector.is_leader()
        assert spec2["holderIdentity"] == leader.elector.identity
        assert spec2["leaseDurationSeconds"] == 3
        assert spec2["leaseTransitions"] == 0
        assert spec2["acquireTime"] == spec1["acquireTime"]
        assert spec2["renewTime"] > spec1["renewTime"], "the leader does not renew"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", spec2["renewTime"])
        assert follower.new_leaders == [leader.elector.identity]
        assert follower.elector.leader == leader.elector.identity

        # the leader stops and releases: the follower takes over without waiting for expiry
        t0 = time.monotonic()
        await leader.stop()
        assert leader.stopped.is_set()
        await asyncio.wait_for(follower.leading.wait(), 5)
        took = time.monotonic() - t0
        assert took < 3, f"handover after release took {took:.1f}s (lease duration is 3s)"
        spec3 = await _lease(api, namespace)
        assert spec3["holderIdentity"] == follower.elector.identity
        assert spec3["leaseTransitions"] == 1
        assert spec3["leaseDurationSeconds"] == 3
        assert spec3["acquireTime"] > spec2["acquireTime"]
        assert follower.started_count == 1 and leader.started_count == 1
    finally:
        for c in (a, b):
            c.elector.stop()
        await asyncio.gather(*(c.task for c in (a, b) if c.task), return_exceptions=True)


async def test_leader_election_release_empties_the_lease(api, namespace):
    a = Candidate(api, namespace, "only").start()
    await asyncio.wait_for(a.leading.wait(), 15)
    held = await _lease(api, namespace)
    assert held["holderIdentity"] == "only" and held["leaseTransitions"] == 0
    await a.stop()
    assert a.stopped.is_set() and not a.elector.is_leader()
    # upstream's release: no holder, leaseDurationSeconds 1, transitions kept
    released = await _lease(api, namespace)
    assert released.get("holderIdentity", "") == ""
    assert released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 0
    assert released["renewTime"] >= held["renewTime"]


async def test_leader_election_takeover_after_leader_dies_without_release(api, namespace):
    a = Candidate(api, namespace, "dies", release=False).start()
    await asyncio.wait_for(a.leading.wait(), 15)
    b = Candidate(api, namespace, "survivor").start()
    try:
        await asyncio.sleep(1)
        assert not b.leading.is_set()
        # the leader vanishes (no release): the Lease still names it
        a.task.cancel()
        await asyncio.gather(a.task, return_exceptions=True)
        dead = await _lease(api, namespace)
        assert dead["holderIdentity"] == "dies"
        t0 = time.monotonic()
        await asyncio.wait_for(b.leading.wait(), 15)
        waited = time.monotonic() - t0
        # b takes over only once the record has not changed for leaseDurationSeconds by its own clock
        assert waited >= 1.0, f"took over an unexpired lease after {waited:.1f}s"
        spec = await _lease(api, namespace)
        assert spec["holderIdentity"] == "survivor" and spec["leaseTransitions"] == 1
    finally:
        for c in (a, b):
            c.elector.stop()
        await asyncio.gather(*(c.task for c in (a, b) if c.task), return_exceptions=True)


# -- events ------------------------------------------------------------------------------------


async def test_event_recorder_creates_and_counts_events(api, namespace):
    obj = await api.create("v1", "configmaps", cm("evented", namespace))
    rec = EventRecorder(api, "itest-controller", host="node-1")
    try:
        rec.event(obj, "Normal", "Synced", "synced it")
        await rec.flush()
        sel = "involvedObject.name=evented"
        evs = (await api.list("v1", "events", namespace, field_selector=sel))["items"]
        assert len(evs) == 1
        ev = evs[0]
        assert ev["reason"] == "Synced" and ev["message"] == "synced it" and ev["type"] == "Normal"
        assert ev["count"] == 1
        ref = ev["involvedObject"]
        assert ref["kind"] == "ConfigMap" and ref["apiVersion"] == "v1"
        assert ref["name"] == "evented" and ref["namespace"] == namespace
        assert ref["uid"] == obj["metadata"]["uid"]
        assert ev["source"] == {"component": "itest-controller", "host": "node-1"}
        assert ev["metadata"]["name"].startswith("evented.")
        assert ev["firstTimestamp"] and ev["lastTimestamp"]

        # the same event again: no new Event, the count goes up
        rec.event(obj, "Normal", "Synced", "synced it")
        await rec.flush()
        rec.event(obj, "Normal", "Synced", "synced it")
        await rec.flush()
        evs = (await api.list("v1", "events", namespace, field_selector=sel))["items"]
        assert len(evs) == 1
        assert evs[0]["metadata"]["name"] == ev["metadata"]["name"]
        assert evs[0]["count"] == 3
        assert evs[0]["firstTimestamp"] == ev["firstTimestamp"]
        assert evs[0]["lastTimestamp"] >= ev["firstTimestamp"]

        # a different message or type is another Event
        rec.event(obj, "Warning", "Failed", "it broke")
        await rec.flush()
        evs = (await api.list("v1", "events", namespace, field_selector=sel))["items"]
        by_reason = {e["reason"]: e for e in evs}
        assert set(by_reason) == {"Synced", "Failed"}
        assert by_reason["Failed"]["type"] == "Warning" and by_reason["Failed"]["count"] == 1
        # an Event deleted meanwhile is re-created under its name, with the correlated count
        await api.delete("v1", "events", namespace, ev["metadata"]["name"])
        rec.event(obj, "Normal", "Synced", "synced it")
        await rec.flush()
        again = await api.get("v1", "events", namespace, ev["metadata"]["name"])
        assert again["count"] == 4 and again["metadata"]["uid"] != ev["metadata"]["uid"]

        # events are findable the way kubectl describe finds them
        uid_sel = f"involvedObject.uid={obj['metadata']['uid']},reason=Synced"
        assert len((await api.list("v1", "events", namespace, field_selector=uid_sel))["items"]) == 1
    finally:
        await rec.shutdown()


# -- workqueue + informer: a tiny level-triggered controller --------------------------------------


class CopyController:
    """For every ConfigMap labelled role=source, keep a ConfigMap "<name>-copy" with the same data."""

    def __init__(self, api: Client, inf: SharedInformer) -> None:
        self.api = api
        self.inf = inf
        self.queue = WorkQueue(name="copier")
        self.writes = 0
        self.syncs = 0
        self.conflicts = 0
        self.inflight: set[str] = set()
        self.overlap = False
        inf.add_event_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                              on_delete=self.enqueue)

    def enqueue(self, obj: dict) -> None:
        ns, name = split_meta_namespace_key(meta_namespace_key(obj))
        role = ((obj.get("metadata") or {}).get("labels") or {}).get("role")
        if role == "copy" and name.endswith("-copy"):
            self.queue.add(f"{ns}/{name[:-len('-copy')]}")
        elif role == "source":
            self.queue.add(f"{ns}/{name}")

    async def sync(self, key: str) -> None:
        ns, name = split_meta_namespace_key(key)
        src = self.inf.get(key)
        dst = self.inf.get(f"{key}-copy")
        if src is None:
            if dst is not None:
                try:
                    await self.api.delete("v1", "configmaps", ns, f"{name}-copy")
                    self.writes += 1
                except ApiError as e:
                    if not is_not_found(e):
                        raise
            return
        want = dict(src.get("data") or {})
        if dst is None:
            await self.api.create("v1", "configmaps", cm(f"{name}-copy", ns, want, {"role": "copy"}))
            self.writes += 1
        elif (dst.get("data") or {}) != want:
            body = copy.deepcopy(dst)
            body["data"] = want
            await self.api.update("v1", "configmaps", body)  # conditional on the cached RV
            self.writes += 1

    async def worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            if key in self.inflight:
                self.overlap = True
            self.inflight.add(key)
            try:
                self.syncs += 1
                await self.sync(key)
                self.queue.forget(key)
            except ApiError as e:
                if is_conflict(e) or is_already_exists(e):
                    self.conflicts += 1
                self.queue.add_rate_limited(key)
            except Exception:
                self.queue.add_rate_limited(key)
            finally:
                self.inflight.discard(key)
                self.queue.done(key)


async def _converged(api: Client, namespace: str) -> bool:
    items = (await api.list("v1", "configmaps", namespace))["items"]
    by_name = {o["metadata"]["name"]: o for o in items}
    sources = {n: o for n, o in by_name.items() if (o["metadata"].get("labels") or {}).get("role") == "source"}
    copies = {n: o for n, o in by_name.items() if (o["metadata"].get("labels") or {}).get("role") == "copy"}
    if set(copies) != {f"{n}-copy" for n in sources}:
        return False
    return all((copies[f"{n}-copy"].get("data") or {}) == (o.get("data") or {}) for n, o in sources.items())


async def test_workqueue_controller_converges_level_triggered(api, namespace):
    for i in range(5):
        await api.create("v1", "configmaps", cm(f"s{i}", namespace, {"i": str(i)}, {"role": "source"}))
    # a copy that exists already but is wrong, and an orphaned copy whose source is gone
    await api.create("v1", "configmaps", cm("s0-copy", namespace, {"i": "wrong"}, {"role": "copy"}))
    await api.create("v1", "configmaps", cm("gone-copy", namespace, {"x": "y"}, {"role": "copy"}))
    inf = SharedInformer(api, "v1", "configmaps", namespace)
    ctl = CopyController(api, inf)
    inf.start()
    workers = [asyncio.ensure_future(ctl.worker()) for _ in range(3)]
    try:
        assert await inf.wait_for_sync(15)
        await eventually(lambda: _converged(api, namespace), 20, "the copies to converge")
        # no stray copy is left
        names = {o["metadata"]["name"] for o in (await api.list("v1", "configmaps", namespace))["items"]}
        assert "gone-copy" not in names and {f"s{i}-copy" for i in range(5)} <= names

        # edits to a source propagate
        await api.patch("v1", "configmaps", namespace, "s1", {"data": {"i": "one", "extra": "e"}})
        await eventually(lambda: _converged(api, namespace), 20, "a source edit to propagate")
        assert (await api.get("v1", "configmaps", namespace, "s1-copy"))["data"] == {"i": "one", "extra": "e"}

        # someone tampers with a copy and deletes another: both are repaired
        await api.patch("v1", "configmaps", namespace, "s2-copy", {"data": {"i": "tampered"}})
        await api.delete("v1", "configmaps", namespace, "s3-copy")
        await eventually(lambda: _converged(api, namespace), 20, "tampered copies to be repaired")
        assert (await api.get("v1", "configmaps", namespace, "s2-copy"))["data"] == {"i": "2"}
        assert (await api.get("v1", "configmaps", namespace, "s3-copy"))["data"] == {"i": "3"}

        # a burst of edits to one source: the queue de-duplicates, the end state is the last edit
        for n in range(10):
            await api.patch("v1", "configmaps", namespace, "s4", {"data": {"i": f"burst{n}"}})
        await eventually(lambda: _converged(api, namespace), 20, "the burst to converge")
        assert (await api.get("v1", "configmaps", namespace, "s4-copy"))["data"] == {"i": "burst9"}

        # a deleted source takes its copy with it
        await api.delete("v1", "configmaps", namespace, "s0")
        await eventually(lambda: _converged(api, namespace), 20, "the orphaned copy to be deleted")
        with pytest.raises(ApiError) as e:
            await api.get("v1", "configmaps", namespace, "s0-copy")
        assert e.value.code == 404

        # level-triggered: syncing everything again when converged writes nothing
        await inf.wait_handlers_idle()
        await eventually(lambda: len(ctl.queue) == 0 and not ctl.inflight and ctl.queue.num_waiting() == 0,
                         10, "the queue to drain")
        writes, syncs = ctl.writes, ctl.syncs
        for o in inf.list():
            ctl.enqueue(o)
        await eventually(lambda: ctl.syncs >= syncs + 4 and len(ctl.queue) == 0 and not ctl.inflight,
                         10, "the resync to be processed")
        await asyncio.sleep(0.5)
        assert ctl.writes == writes, "a sync of a converged key wrote to the API"
        assert not ctl.overlap, "one key was processed by two workers at once"
        assert await _converged(api, namespace)
    finally:
        ctl.queue.shutdown()
        await asyncio.gather(*workers, return_exceptions=True)
        await inf.shutdown()
