"""`kubectl explain` (the real kubectl) against the real apiserver: it reads the served OpenAPI v3
documents, so these check that the per-field schemas are published and walkable."""
from __future__ import annotations

import json
import re
import time
import uuid


def _fields(out: str) -> dict[str, str]:
    """FIELDS section of explain output: field name -> the rest of its line ("<type> -required-")."""
    lines = out.split("FIELDS:\n", 1)[1].splitlines()
    out_fields = {}
    for line in lines:
        m = re.match(r"^  (\S+)\t(.*)$", line)
        if m:
            out_fields[m.group(1)] = m.group(2)
    return out_fields


def test_explain_pod_containers(kubectl):
    out = kubectl("explain", "pods.spec.containers")
    lines = out.splitlines()
    assert re.match(r"^KIND:\s+Pod$", lines[0]), out
    assert re.match(r"^VERSION:\s+v1$", lines[1]), out
    assert "FIELD: containers <[]Container>" in out
    assert "DESCRIPTION:" in out
    fields = _fields(out)
    assert fields["name"] == "<string> -required-"
    assert fields["image"] == "<string>"
    assert fields["ports"] == "<[]ContainerPort>"
    assert fields["env"] == "<[]EnvVar>"
    assert fields["resources"] == "<ResourceRequirements>"
    assert fields["livenessProbe"] == "<Probe>"
    assert fields["securityContext"] == "<SecurityContext>"
    assert "args" in fields and "volumeMounts" in fields and "lifecycle" in fields
    # enums are listed under the field
    assert re.search(r"imagePullPolicy\t<string>\n\s+enum: Always, IfNotPresent, Never", out), out


def test_explain_deep_paths_and_formats(kubectl):
    out = kubectl("explain", "pods.spec.containers.ports.containerPort")
    assert "FIELD: containerPort <integer>" in out
    out = kubectl("explain", "pods.spec.containers.resources")
    fields = _fields(out)
    assert fields["limits"] == "<map[string]Quantity>"
    assert fields["requests"] == "<map[string]Quantity>"
    out = kubectl("explain", "pods.spec.containers.livenessProbe.httpGet")
    assert _fields(out)["port"] == "<IntOrString> -required-"
    out = kubectl("explain", "pods.metadata")
    fields = _fields(out)
    assert fields["creationTimestamp"] == "<string>"
    assert fields["labels"] == "<map[string]string>"
    assert fields["ownerReferences"] == "<[]OwnerReference>"


def test_explain_deployment_strategy(kubectl):
    out = kubectl("explain", "deployments.spec.strategy")
    lines = out.splitlines()
    assert re.match(r"^GROUP:\s+apps$", lines[0]), out
    assert re.match(r"^KIND:\s+Deployment$", lines[1]), out
    assert re.match(r"^VERSION:\s+v1$", lines[2]), out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    fields = _fields(out)
    assert fields["rollingUpdate"] == "<RollingUpdateDeployment>"
    assert fields["type"].startswith("<string>")
    assert "enum: Recreate, RollingUpdate" in out
    out = kubectl("explain", "deployments.spec.strategy.rollingUpdate")
    fields = _fields(out)
    assert fields["maxSurge"] == "<IntOrString>"
    assert fields["maxUnavailable"] == "<IntOrString>"
    fields = _fields(kubectl("explain", "deployments.spec"))
    assert fields["selector"] == "<LabelSelector> -required-"
    assert fields["template"] == "<PodTemplateSpec> -required-"


def test_explain_service_ports(kubectl):
    out = kubectl("explain", "services.spec.ports")
    assert re.match(r"^KIND:\s+Service$", out.splitlines()[0]), out
    assert "FIELD: ports <[]ServicePort>" in out
    fields = _fields(out)
    assert fields["port"] == "<integer> -required-"
    assert fields["targetPort"] == "<IntOrString>"
    assert fields["nodePort"] == "<integer>"
    assert fields["protocol"].startswith("<string>")


def test_explain_other_groups(kubectl):
    cases = {
        "jobs.spec.template.spec.restartPolicy": "FIELD: restartPolicy <string>",
        "cronjobs.spec.jobTemplate": "FIELD: jobTemplate <JobTemplateSpec>",
        "endpointslices.endpoints": "FIELD: endpoints <[]Endpoint>",
        "leases.spec.holderIdentity": "FIELD: holderIdentity <string>",
        "roles.rules": "FIELD: rules <[]PolicyRule>",
        "hpa.spec.metrics": "FIELD: metrics <[]MetricSpec>",
        "pdb.spec.minAvailable": "FIELD: minAvailable <IntOrString>",
        "crd.spec.versions.schema": "FIELD: schema <CustomResourceValidation>",
        "statefulsets.spec.volumeClaimTemplates": "FIELD: volumeClaimTemplates <[]PersistentVolumeClaim>",
        "nodes.status.addresses": "FIELD: addresses <[]NodeAddress>",
    }
    for path, expected in cases.items():
        out = kubectl("explain", path)
        assert expected in out, (path, out)


def test_explain_unknown_field_fails(kubectl):
    p = kubectl.run("explain", "pods.spec.nosuchfield", check=False)
    assert p.returncode != 0
    assert 'field "nosuchfield" does not exist' in p.stderr


def test_explain_custom_resource(kubectl):
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {
                         "type": "object", "description": "Widget settings.",
                         "properties": {"size": {"type": "integer", "description": "How big."}},
                         "required": ["size"]}}}}}]}}
    kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s")
        out = ""
        for _ in range(20):
            # other tests serve "widgets" too: --api-version picks the group, as upstream explain wants
            p = kubectl.run("explain", "widgets.spec", f"--api-version={group}/v1", check=False)
            out = p.stdout
            if p.returncode == 0:
                break
            time.sleep(0.2)
        assert f"GROUP:      {group}" in out, out
        assert "KIND:       Widget" in out, out
        assert "FIELD: spec <Object>" in out
        assert _fields(out)["size"] == "<integer> -required-"
        fields = _fields(kubectl("explain", "widgets", f"--api-version={group}/v1"))
        assert fields["metadata"] == "<ObjectMeta>"
        # client-side apply of a custom resource must not use strategic merge (the document says so)
        w = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
             "spec": {"size": 1}}
        kubectl("apply", "-f", "-", input=json.dumps(w))
        w["spec"]["size"] = 2
        p = kubectl.run("apply", "-f", "-", input=json.dumps(w))
        assert "configured" in p.stdout
        assert kubectl.json("get", f"widgets.{group}", "w", "-n", "default")["spec"] == {"size": 2}
    finally:
        kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_apply_uses_served_patch_metadata(kubectl, namespace):
    """Client-side apply builds its strategic merge patch from the served v3 schemas: a second apply
    that changes a container and a label must compute it without falling back (no warning)."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                                                          "ports": [{"containerPort": 80}],
                                                          "env": [{"name": "A", "value": "1"}]}]}}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(dep))
    dep["metadata"]["labels"]["tier"] = "front"
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    p = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(dep))
    assert "warning" not in p.stderr.lower(), p.stderr
    got = kubectl.json("get", "deployment", "web", "-n", namespace)
    c = got["spec"]["template"]["spec"]["containers"]
    assert [x["name"] for x in c] == ["c"]
    assert c[0]["image"] == "nginx:1.26"
    assert [e["name"] for e in c[0]["env"]] == ["A", "B"]
    assert got["metadata"]["labels"] == {"app": "web", "tier": "front"}
