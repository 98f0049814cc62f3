"""Pod validation and defaults, as upstream words them."""
from kubelab.api.core import pods


def msgs(spec):
    return [e.message() for e in pods.validate_pod_spec(spec, "spec")]


def c(name="a", **kw):
    return {"name": name, "image": "busybox", **kw}


def test_valid_spec_has_no_errors():
    assert msgs({"containers": [c(ports=[{"containerPort": 80, "name": "http"}])]}) == []


def test_required_and_unique_names():
    assert msgs({"containers": []}) == ["spec.containers: Required value"]
    assert msgs({"containers": [c("a"), c("a")]}) == ['spec.containers[1].name: Duplicate value: "a"']
    assert msgs({"containers": [{"name": "a"}]}) == ["spec.containers[0].image: Required value"]
    out = msgs({"containers": [c("Bad_Name")]})
    assert out[0].startswith('spec.containers[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label')


def test_ports_names_and_host_ports_are_unique():
    spec = {"containers": [c("a", ports=[{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}])]}
    assert msgs(spec) == ['spec.containers[0].ports[1].name: Duplicate value: "web"']
    spec = {"containers": [c("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
                           c("b", ports=[{"containerPort": 81, "hostPort": 8080}])]}
    assert msgs(spec) == ['spec.containers[1].ports[0].hostPort: Duplicate value: "8080/TCP"']
    spec = {"containers": [c("a", ports=[{"containerPort": 70000}])]}
    assert msgs(spec) == ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
                          "65535, inclusive"]


def test_enums_and_resources():
    assert msgs({"containers": [c()], "restartPolicy": "Sometimes"}) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']
    out = msgs({"containers": [c(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})]})
    assert out == ['spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu '
                   'limit of 1']
    out = msgs({"containers": [c(resources={"limits": {"memory": "lots"}})]})
    assert out[0].startswith('spec.containers[0].resources.limits[memory]: Invalid value: "lots": quantities must')


def test_defaults_and_qos():
    pod = {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.25"}]}}
    pods.default_pod(pod)
    a, b = pod["spec"]["containers"]
    assert a["imagePullPolicy"] == "Always" and b["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["restartPolicy"] == "Always" and pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert pods.qos_class(pod["spec"]) == "BestEffort"
    g = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    pods.default_pod({"spec": g})
    assert pods.qos_class(g) == "Guaranteed"
    assert pods.qos_class({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]}) == "Burstable"
