"""The served OpenAPI documents: schemas of every built-in kind, resolvable refs, strategic-merge
extensions taken from patchmeta, index hashes, the CRD branch and the v2 rendering."""
from __future__ import annotations

import json
import re

import pytest

from kubelab.api import patchmeta
from kubelab.api import schema as types
from kubelab.api.builtin import builtin_registry
from kubelab.api.registry import Kind
from kubelab.apiserver import openapi

ENVELOPE = {"apiVersion", "kind", "metadata"}


@pytest.fixture
def reg():
    return builtin_registry()


def _all_docs(reg):
    for g, vs in reg.groups():
        for v in vs:
            yield g, v, openapi.v3_group(reg, g, v)


def _schema_for_gvk(doc: dict, gvk: dict) -> dict | None:
    """What kubectl explain does: the first component (in name order) whose GVK list holds gvk."""
    for name in sorted(doc["components"]["schemas"]):
        s = doc["components"]["schemas"][name]
        if gvk in (s.get("x-kubernetes-group-version-kind") or []):
            return s
    return None


def _resolve(doc: dict, s: dict) -> dict:
    """Follow allOf-wrapped and direct $refs to the schema they name."""
    while True:
        if "allOf" in s and len(s["allOf"]) == 1 and "properties" not in s:
            s = s["allOf"][0]
            continue
        ref = s.get("$ref")
        if ref:
            assert ref.startswith("#/components/schemas/"), ref
            s = doc["components"]["schemas"][ref.split("/")[-1]]
            continue
        return s


def _walk(doc: dict, root: dict, path: str) -> dict:
    """The schema at a dotted field path, stepping through arrays and maps like explain does."""
    cur = root
    for part in path.split("."):
        cur = _resolve(doc, cur)
        while "properties" not in cur and ("items" in cur or isinstance(cur.get("additionalProperties"), dict)):
            cur = _resolve(doc, cur.get("items") or cur["additionalProperties"])
        assert part in cur.get("properties", {}), f"{part} missing on the way to {path}"
        cur = cur["properties"][part]
    return cur


def _refs(obj) -> list[str]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "$ref" and isinstance(v, str):  # (JSONSchemaProps has a *property* named $ref)
                out.append(v)
            else:
                out += _refs(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _refs(v)
    return out


# --- schemas of the built-in kinds -------------------------------------------------------------

def test_every_builtin_kind_has_a_schema_with_its_own_fields(reg):
    for k in reg.kinds():
        doc = openapi.v3_group(reg, k.group, k.version)
        gvk = {"group": k.group, "kind": k.kind, "version": k.version}
        s = _schema_for_gvk(doc, gvk)
        assert s is not None, f"no schema for {gvk}"
        assert s["type"] == "object" and s["description"]
        assert ENVELOPE <= set(s["properties"]), k.kind
        assert set(s["properties"]) - ENVELOPE, f"{k.kind} has only the envelope"
        assert "x-kubernetes-preserve-unknown-fields" not in s, k.kind
        # every field documented, every metadata field an ObjectMeta
        for name, f in s["properties"].items():
            assert f.get("description"), f"{k.kind}.{name} has no description"
        assert _resolve(doc, s["properties"]["metadata"]) is \
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]


def test_every_declared_field_is_documented_and_typed():
    for name in types.declarations():
        s = types.type_schema(name)
        assert s["description"], name
        for fname, f in s["properties"].items():
            assert f["description"], f"{name}.{fname}"
            assert "type" in f or "allOf" in f, f"{name}.{fname} has no type"


def test_every_ref_resolves_within_its_document(reg):
    for g, v, doc in _all_docs(reg):
        schemas = doc["components"]["schemas"]
        refs = _refs(doc)
        assert refs, (g, v)
        for ref in refs:
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.split("/")[-1] in schemas, f"{g}/{v}: dangling {ref}"


def test_group_documents_hold_only_what_their_kinds_reach(reg):
    apps = openapi.v3_group(reg, "apps", "v1")["components"]["schemas"]
    assert "io.k8s.api.core.v1.PodSpec" in apps  # shared types come along
    assert "io.k8s.api.autoscaling.v1.Scale" in apps  # the scale subresource
    assert "io.k8s.api.core.v1.Service" not in apps
    assert "io.k8s.api.batch.v1.Job" not in apps
    core = openapi.v3_group(reg, "", "v1")["components"]["schemas"]
    assert "io.k8s.api.apps.v1.Deployment" not in core


def test_pod_reaches_container_port_with_format_and_merge_keys(reg):
    doc = openapi.v3_group(reg, "", "v1")
    pod = _schema_for_gvk(doc, {"group": "", "kind": "Pod", "version": "v1"})
    containers = _walk(doc, pod, "spec.containers")
    assert containers["type"] == "array"
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    ports = _walk(doc, pod, "spec.containers.ports")
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    port = _walk(doc, pod, "spec.containers.ports.containerPort")
    assert port == {"type": "integer", "format": "int32", "description": port["description"]}
    cport = _resolve(doc, _walk(doc, pod, "spec.containers.ports")["items"])
    assert cport["required"] == ["containerPort"]
    container = _resolve(doc, containers["items"])
    assert container["required"] == ["name"]
    assert _walk(doc, pod, "spec.volumes")["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    assert _walk(doc, pod, "metadata.finalizers")["x-kubernetes-list-type"] == "set"
    assert _walk(doc, pod, "metadata.ownerReferences")["x-kubernetes-patch-merge-key"] == "uid"
    assert _walk(doc, pod, "spec.tolerations")["x-kubernetes-list-type"] == "atomic"
    assert "x-kubernetes-patch-strategy" not in _walk(doc, pod, "spec.tolerations")


def test_scalar_types_follow_upstream(reg):
    doc = openapi.v3_group(reg, "", "v1")
    schemas = doc["components"]["schemas"]
    pod = _schema_for_gvk(doc, {"group": "", "kind": "Pod", "version": "v1"})
    created = _resolve(doc, _walk(doc, pod, "metadata.creationTimestamp"))
    assert created["type"] == "string" and created["format"] == "date-time"
    limits = _walk(doc, pod, "spec.containers.resources.limits")
    quantity = "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"
    assert limits["additionalProperties"] == {"$ref": quantity}
    q = schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert "type" not in q and {"type": "string"} in q["oneOf"]
    port = _resolve(doc, _walk(doc, pod, "spec.containers.livenessProbe.httpGet.port"))
    assert port["format"] == "int-or-string" and "type" not in port
    grace = _walk(doc, pod, "spec.terminationGracePeriodSeconds")
    assert grace["format"] == "int64"
    policy = _walk(doc, pod, "spec.containers.imagePullPolicy")
    assert policy["enum"] == ["Always", "IfNotPresent", "Never"]
    host_path_type = _walk(doc, pod, "spec.volumes.hostPath.type")
    assert "" in host_path_type["enum"]
    secret = _schema_for_gvk(doc, {"group": "", "kind": "Secret", "version": "v1"})
    data = secret["properties"]["data"]
    assert data["additionalProperties"] == {"type": "string", "format": "byte"}


def test_deployment_and_service_paths(reg):
    apps = openapi.v3_group(reg, "apps", "v1")
    dep = _schema_for_gvk(apps, {"group": "apps", "kind": "Deployment", "version": "v1"})
    assert _walk(apps, dep, "spec.strategy")["x-kubernetes-patch-strategy"] == "retainKeys"
    surge = _resolve(apps, _walk(apps, dep, "spec.strategy.rollingUpdate.maxSurge"))
    assert surge["format"] == "int-or-string"
    spec = _resolve(apps, dep["properties"]["spec"])
    assert spec["required"] == ["selector", "template"]
    env = _walk(apps, dep, "spec.template.spec.containers.env")
    assert env["x-kubernetes-patch-merge-key"] == "name"
    core = openapi.v3_group(reg, "", "v1")
    svc = _schema_for_gvk(core, {"group": "", "kind": "Service", "version": "v1"})
    ports = _walk(core, svc, "spec.ports")
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert _resolve(core, ports["items"])["required"] == ["port"]


def test_patch_extensions_match_patchmeta():
    """Every field patchmeta gives a strategy or merge key carries them in the declared schema."""
    decls = types.declarations()
    checked = 0
    for tname, fields in patchmeta.TYPES.items():
        if tname not in decls:
            continue
        s = types.type_schema(tname)
        for fname, (_, strategy, key) in fields.items():
            if strategy is None and key is None:
                continue
            assert fname in s["properties"], f"{tname}.{fname} is not declared"
            f = s["properties"][fname]
            assert f.get("x-kubernetes-patch-strategy") == strategy, f"{tname}.{fname}"
            assert f.get("x-kubernetes-patch-merge-key") == key, f"{tname}.{fname}"
            checked += 1
    assert checked >= 40
    # and nothing else carries a strategy
    for tname in decls:
        for fname, f in types.type_schema(tname)["properties"].items():
            if "x-kubernetes-patch-strategy" in f:
                assert patchmeta.field_meta(tname, fname)[1] == f["x-kubernetes-patch-strategy"]


def test_list_kinds_and_list_operations(reg):
    doc = openapi.v3_group(reg, "", "v1")
    pod_list = _schema_for_gvk(doc, {"group": "", "kind": "PodList", "version": "v1"})
    assert pod_list["required"] == ["items"]
    assert pod_list["properties"]["items"]["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"}
    op = doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("core.v1.PodList")
    assert "io.k8s.api.autoscaling.v1.ScaleList" not in \
        openapi.v3_group(reg, "apps", "v1")["components"]["schemas"]


# --- paths -------------------------------------------------------------------------------------

def test_write_operations_take_field_validation(reg):
    n = 0
    for _, _, doc in _all_docs(reg):
        for path, item in doc["paths"].items():
            for verb in ("post", "put", "patch"):
                if verb in item:
                    names = [p["name"] for p in item[verb]["parameters"]]
                    assert "fieldValidation" in names, (path, verb)
                    n += 1
    assert n > 50


def test_paths_follow_verbs_and_subresources(reg):
    doc = openapi.v3_group(reg, "apps", "v1")
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert set(item) == {"get", "put", "patch", "delete", "parameters"}
    assert "application/strategic-merge-patch+json" in item["patch"]["requestBody"]["content"]
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["get"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                               "version": "v1"}
    status = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert status["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "/apis/apps/v1/daemonsets/{name}/scale" not in doc["paths"]
    # a create-only kind has only POST on its collection
    reg.add(Kind("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
                 namespaced=False, verbs=("create",)))
    auth = openapi.v3_group(reg, "authentication.k8s.io", "v1")
    assert list(auth["paths"]) == ["/apis/authentication.k8s.io/v1/selfsubjectreviews"]
    assert set(auth["paths"]["/apis/authentication.k8s.io/v1/selfsubjectreviews"]) == {"post", "parameters"}
    ssr = _schema_for_gvk(auth, {"group": "authentication.k8s.io", "kind": "SelfSubjectReview", "version": "v1"})
    assert "userInfo" in _resolve(auth, ssr["properties"]["status"])["properties"]


# --- index, caching, custom resources ---------------------------------------------------------------

def _crd_kind(group="example.com", kind="Widget", schema=None) -> Kind:
    version = {"name": "v1", "served": True, "storage": True}
    if schema is not None:
        version["schema"] = {"openAPIV3Schema": schema}
    return Kind(group, "v1", kind, kind.lower() + "s", crd=version)


def test_index_hashes_change_when_a_kind_is_added(reg):
    before = openapi.v3_index(reg)["paths"]
    assert re.fullmatch(r"/openapi/v3/api/v1\?hash=[0-9A-F]{128}", before["api/v1"]["serverRelativeURL"])
    reg.add(Kind("apps", "v1", "Gadget", "gadgets"))
    after = openapi.v3_index(reg)["paths"]
    assert after["apis/apps/v1"] != before["apis/apps/v1"]
    assert after["api/v1"] == before["api/v1"]
    gadget = _schema_for_gvk(openapi.v3_group(reg, "apps", "v1"),
                             {"group": "apps", "kind": "Gadget", "version": "v1"})
    assert gadget["x-kubernetes-preserve-unknown-fields"] is True  # undeclared: envelope only
    reg.add(_crd_kind())
    assert "apis/example.com/v1" in openapi.v3_index(reg)["paths"]
    reg.remove("example.com", "v1", "widgets")
    assert "apis/example.com/v1" not in openapi.v3_index(reg)["paths"]


def test_documents_are_cached_per_generation(reg):
    a = openapi.v3_group(reg, "", "v1")
    assert openapi.v3_group(reg, "", "v1") is a
    assert openapi.v2(reg) is openapi.v2(reg)
    reg.add(_crd_kind())
    assert openapi.v3_group(reg, "", "v1") is not a
    assert openapi.v3_group(reg, "", "v1") == a
    other = builtin_registry()
    assert openapi.v3_group(other, "", "v1") is not openapi.v3_group(reg, "", "v1")


def test_custom_resource_publishes_its_crd_schema(reg):
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]},
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}}
    reg.add(_crd_kind(schema=schema))
    doc = openapi.v3_group(reg, "example.com", "v1")
    gvk = {"group": "example.com", "kind": "Widget", "version": "v1"}
    s = _schema_for_gvk(doc, gvk)
    assert s is doc["components"]["schemas"]["com.example.v1.Widget"]
    assert s["properties"]["spec"]["required"] == ["size"]
    assert s["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert s["properties"]["apiVersion"]["type"] == "string"
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == 10  # input untouched
    lst = _schema_for_gvk(doc, {**gvk, "kind": "WidgetList"})
    assert lst["properties"]["items"]["items"]["$ref"].endswith("com.example.v1.Widget")
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    content = patch["requestBody"]["content"]
    assert "application/strategic-merge-patch+json" not in content
    assert "application/merge-patch+json" in content
    for ref in _refs(doc):
        assert ref.split("/")[-1] in doc["components"]["schemas"]
    # without a schema the resource keeps unknown fields
    reg.add(_crd_kind(group="plain.example.com", kind="Thing"))
    thing = _schema_for_gvk(openapi.v3_group(reg, "plain.example.com", "v1"),
                            {"group": "plain.example.com", "kind": "Thing", "version": "v1"})
    assert thing["x-kubernetes-preserve-unknown-fields"] is True


def test_kind_description_overrides_the_declared_one(reg):
    k = reg.resource("", "v1", "configmaps")
    k.description = "Configuration for pods."
    reg.add(k)
    s = _schema_for_gvk(openapi.v3_group(reg, "", "v1"), {"group": "", "kind": "ConfigMap", "version": "v1"})
    assert s["description"] == "Configuration for pods."
    assert types.type_schema("core/v1.ConfigMap")["description"] != "Configuration for pods."


# --- v2 ------------------------------------------------------------------------------------------

def test_v2_definitions(reg):
    doc = openapi.v2(reg)
    assert doc["swagger"] == "2.0"
    text = json.dumps(doc)
    assert "#/components/schemas/" not in text
    defs = doc["definitions"]
    for ref in _refs(doc):
        assert ref.startswith("#/definitions/") and ref.split("/")[-1] in defs, ref
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    ios = defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert (ios["type"], ios["format"]) == ("string", "int-or-string")
    spec = defs["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["affinity"]["$ref"] == "#/definitions/io.k8s.api.core.v1.Affinity"
    assert spec["affinity"]["description"]
    assert spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    for k in reg.kinds():
        assert openapi.schema_name(k) in defs, k.kind
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    names = [p["name"] for p in patch["parameters"]]
    assert "fieldValidation" in names and names[0] == "body"
    assert patch["responses"]["200"]["schema"] == {"$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}


# --- the declaration notation --------------------------------------------------------------------

def test_parse_reads_fields_and_rejects_bad_lines():
    decls = types.parse("package demo/v1\n\nThing kind: A thing.\n  size* int32  How big.\n"
                        "  tags []string  Labels.\n")
    assert [d.name for d in decls] == ["demo/v1.Thing"] and decls[0].kind
    f = decls[0].fields
    assert (f[0].name, f[0].type, f[0].required, f[0].description) == ("size", "int32", True, "How big.")
    assert (f[1].name, f[1].required) == ("tags", False)
    with pytest.raises(types.SchemaError):
        types.parse("Thing: no package\n")
    with pytest.raises(types.SchemaError):
        types.parse("package demo/v1\nThing: x\n  lonely\n")
    with pytest.raises(types.SchemaError):
        types.resolve("NoSuchType", "core/v1")


def test_names():
    assert types.published_name("core/v1.Pod") == "io.k8s.api.core.v1.Pod"
    assert types.published_name("discovery.k8s.io/v1.EndpointSlice") == "io.k8s.api.discovery.v1.EndpointSlice"
    assert types.published_name("meta/v1.ObjectMeta") == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert types.published_name("apiextensions.k8s.io/v1.CustomResourceDefinition") == \
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
    assert types.kind_type("", "v1", "Pod") == "core/v1.Pod"
    assert types.kind_type("rbac.authorization.k8s.io", "v1", "ClusterRole") == \
        "rbac.authorization.k8s.io/v1.ClusterRole"
    assert types.kind_type("", "v1", "NoSuchKind") is None
    assert types.gvk_of("core/v1.Pod") == {"group": "", "kind": "Pod", "version": "v1"}
