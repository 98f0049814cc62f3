"""CustomResourceDefinitions and their custom resources through the real kubectl."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: string
                enum: [small, large]
              replicas:
                type: integer
                minimum: 0
                default: 1
              tags:
                type: array
                items: {{type: string}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              selector: {{type: string}}
"""


def _wait_established(kubectl, name: str) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        crd = kubectl.json("get", "crd", name)
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            return
        time.sleep(0.1)
    raise AssertionError(f"CRD {name} not established")


@pytest.fixture
def widget_group(kubectl):
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    out = kubectl("apply", "-f", "-", input=CRD.format(group=group))
    assert out.strip() == f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created"
    _wait_established(kubectl, f"widgets.{group}")
    return group


def test_crd_custom_resources_via_kubectl(kubectl, namespace, widget_group):
    g = widget_group
    crd = kubectl.json("get", "crd", f"widgets.{g}")
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    w = f"apiVersion: {g}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: small\n"
    assert kubectl("apply", "-n", namespace, "-f", "-", input=w).strip() == f"widget.{g}/w1 created"
    # defaulting from the schema
    got = kubectl.json("get", f"widgets.{g}", "w1", "-n", namespace)
    assert got["spec"] == {"size": "small", "replicas": 1}
    assert got["metadata"]["generation"] == 1
    # printer columns, short name, category
    out = kubectl("get", "widgets." + g, "-n", namespace)
    # declared columns replace the default AGE, as upstream
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "REPLICAS"]
    assert out.splitlines()[1].split()[:3] == ["w1", "small", "1"]
    out = kubectl("get", "wd", "-n", namespace)
    assert out.splitlines()[1].split()[0] == "w1"
    # apply configured, then scale through the scale subresource
    assert kubectl("apply", "-n", namespace, "-f", "-", input=w.replace("small", "large")).strip() == \
        f"widget.{g}/w1 configured"
    assert kubectl("scale", f"widgets.{g}", "w1", "-n", namespace, "--replicas=3").strip() == \
        f"widget.{g}/w1 scaled"
    got = kubectl.json("get", f"widgets.{g}", "w1", "-n", namespace)
    assert got["spec"]["replicas"] == 3 and got["spec"]["size"] == "large"
    # schema validation: enum and type, 422 with the field named
    bad = w.replace("small", "huge")
    r = kubectl.run("apply", "-n", namespace, "-f", "-", input=bad.replace("w1", "w2"), check=False)
    assert r.returncode == 1
    # kubectl words a 422 from its details: "The <Kind> <name> is invalid: <causes>"
    assert r.stderr.strip() == \
        'The Widget "w2" is invalid: spec.size: Unsupported value: "huge": supported values: "small", "large"'
    r = kubectl.run("apply", "-n", namespace, "-f", "-", check=False,
                    input=f"apiVersion: {g}/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  replicas: 2\n")
    assert "spec.size: Required value" in r.stderr
    # unknown fields: Strict (kubectl's default) refuses, listing them
    r = kubectl.run("apply", "-n", namespace, "-f", "-", check=False,
                    input=w.replace("w1", "w4") + "  color: red\n")
    assert r.returncode == 1 and 'unknown field "spec.color"' in r.stderr
    # kubectl get all includes the category
    out = kubectl("get", "all", "-n", namespace)
    assert f"widget.{g}/w1" in out


def test_crd_status_subresource_and_deletion(k8s, kubectl, namespace, widget_group):
    g = widget_group
    api = client.CustomObjectsApi(k8s)
    body = {"apiVersion": f"{g}/v1", "kind": "Widget", "metadata": {"name": "s1"}, "spec": {"size": "small"},
            "status": {"replicas": 9}}
    created = api.create_namespaced_custom_object(g, "v1", namespace, "widgets", body)
    assert "status" not in created  # status is only written through /status
    st = api.patch_namespaced_custom_object_status(g, "v1", namespace, "widgets", "s1",
                                                   {"status": {"replicas": 2, "selector": "app=x"}})
    assert st["status"] == {"replicas": 2, "selector": "app=x"}
    assert st["metadata"]["generation"] == 1  # status writes do not bump generation
    scale = api.get_namespaced_custom_object_scale(g, "v1", namespace, "widgets", "s1")
    assert scale["spec"]["replicas"] == 1 and scale["status"] == {"replicas": 2, "selector": "app=x"}
    with pytest.raises(ApiException) as e:
        api.patch_namespaced_custom_object(g, "v1", namespace, "widgets", "s1", [{"op": "replace",
                                           "path": "/spec/replicas", "value": "many"}],
                                           _content_type="application/json-patch+json")
    assert e.value.status == 422
    st = json.loads(e.value.body)
    assert st["reason"] == "Invalid" and st["details"]["causes"][0]["field"] == "spec.replicas"
    assert st["message"].startswith(f'Widget.{g} "s1" is invalid: spec.replicas: Invalid value: "string": ')
    # deleting the CRD removes its custom resources, then the CRD itself
    kubectl("delete", "crd", f"widgets.{g}", "--wait=true", "--timeout=30s")
    r = kubectl.run("get", "crd", f"widgets.{g}", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    kubectl("apply", "-f", "-", input=CRD.format(group=g))
    _wait_established(kubectl, f"widgets.{g}")
    assert api.list_namespaced_custom_object(g, "v1", namespace, "widgets")["items"] == []
