"""ControllerRevision history: FNV hashes (published test vectors), SafeEncodeString, the template
patch, Go-style JSON, revision numbering, equality and pruning as upstream's history package."""
from __future__ import annotations

import pytest

from kubelab.controller import history as h


@pytest.mark.parametrize("data,fnv1,fnv1a", [
    (b"", 0x811C9DC5, 0x811C9DC5),
    (b"a", 0x050C5D7E, 0xE40C292C),
    (b"foobar", 0x31F0B262, 0xBF9CF968),
])
def test_fnv32_vectors(data, fnv1, fnv1a):
    assert h.fnv32(data) == fnv1
    assert h.fnv32a(data) == fnv1a


def test_safe_encode_string_maps_digits_like_apimachinery():
    # '0' is 48: 48 % 27 = 21 -> '4'; '9' is 57 -> 3 -> 'f'
    assert h.safe_encode_string("0123456789") == "456789bcdf"


def test_hash_controller_revision_is_fnv1_of_raw_then_probe():
    raw = b'{"spec":{"template":{"$patch":"replace"}}}'
    assert h.hash_controller_revision(raw) == h.safe_encode_string(str(h.fnv32(raw)))
    assert h.hash_controller_revision(raw, 1) == h.safe_encode_string(str(h.fnv32(raw + b"1")))
    assert h.hash_controller_revision(raw, 0) != h.hash_controller_revision(raw, 1)


def test_compute_hash_appends_collision_count_little_endian():
    t = {"metadata": {"labels": {"a": "b"}}}
    raw = h.go_json(t)
    assert h.compute_hash(t) == h.safe_encode_string(str(h.fnv32a(raw)))
    assert h.compute_hash(t, 1) == h.safe_encode_string(str(h.fnv32a(raw + b"\x01\0\0\0\0\0\0\0")))
    assert h.compute_hash(t, None) != h.compute_hash(t, 0)


def test_go_json_sorts_keys_and_escapes_html():
    assert h.go_json({"b": 1, "a": "<&>", "c": "é"}) == '{"a":"\\u003c\\u0026\\u003e","b":1,"c":"é"}'.encode()


def test_template_patch_replaces_the_template():
    ds = {"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}, "selector": {}}}
    p = h.template_patch(ds)
    assert p == {"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []},
                                       "$patch": "replace"}}}
    assert "$patch" not in ds["spec"]["template"]
    assert h.revision_template({"data": p}) == ds["spec"]["template"]
    assert h.matches_template(ds, {"data": p})


def test_revision_name_truncates_prefix():
    assert h.controller_revision_name("web", "abc") == "web-abc"
    assert h.controller_revision_name("x" * 300, "abc") == "x" * 223 + "-abc"


def _parent():
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}


def test_new_controller_revision_labels_and_owner():
    data = {"spec": {"template": {"$patch": "replace"}}}
    cr = h.new_controller_revision(_parent(), "StatefulSet", {"app": "web"}, data, 3, 0)
    hash_ = h.hash_controller_revision(h.go_json(data), 0)
    assert cr["metadata"]["name"] == f"web-{hash_}"
    assert cr["metadata"]["labels"] == {"app": "web", h.CONTROLLER_REVISION_HASH_LABEL: hash_}
    assert cr["revision"] == 3 and cr["metadata"]["namespace"] == "ns"
    assert cr["metadata"]["ownerReferences"][0]["controller"] is True
    moved = h.rename_for_collision(cr, "web", 1)
    assert moved["metadata"]["name"] != cr["metadata"]["name"] and moved["data"] == data


def _rev(name, n, data=None):
    return {"metadata": {"name": name, "labels": {}}, "revision": n, "data": data or {"n": name}}


def test_next_revision_and_sort():
    assert h.next_revision([]) == 1
    revs = [_rev("b", 3), _rev("a", 1), _rev("c", 2)]
    assert h.next_revision(revs) == 4
    assert [r["metadata"]["name"] for r in h.sort_revisions(revs)] == ["a", "c", "b"]


def test_equal_revision_uses_hash_label_then_data():
    a, b = _rev("a", 1, {"x": 1}), _rev("b", 2, {"x": 1})
    assert h.equal_revision(a, b)
    a["metadata"]["labels"][h.CONTROLLER_REVISION_HASH_LABEL] = "h1"
    b["metadata"]["labels"][h.CONTROLLER_REVISION_HASH_LABEL] = "h2"
    assert not h.equal_revision(a, b)
    assert not h.equal_revision(_rev("a", 1, {"x": 1}), _rev("b", 1, {"x": 2}))
    assert h.find_equal_revisions([_rev("a", 1, {"x": 1}), _rev("b", 2, {"x": 2})], _rev("c", 3, {"x": 2}))[0][
        "metadata"]["name"] == "b"


@pytest.mark.parametrize("n,live,limit,pruned", [
    (5, set(), 10, []),
    (5, set(), 2, ["r1", "r2", "r3"]),
    (5, {"r1", "r5"}, 2, ["r2"]),          # live revisions never count nor go
    (3, set(), 0, ["r1", "r2", "r3"]),
    (12, set(), None, ["r1", "r2"]),        # default limit 10
])
def test_revisions_to_prune(n, live, limit, pruned):
    revs = [_rev(f"r{i}", i) for i in range(n, 0, -1)]
    assert [r["metadata"]["name"] for r in h.revisions_to_prune(revs, live, limit)] == pruned
