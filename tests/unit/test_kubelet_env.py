"""Pure pieces of the kubelet's container environment: $(VAR) expansion (upstream's expand_test.go
table), the downward API's formatting and values, service link variables."""
from __future__ import annotations

import pytest

from kubelab.kubelet.envvars import from_services, pod_field_value, service_env
from kubelab.kubelet.expansion import expand, mapping_func_for
from kubelab.kubelet.fieldpath import FieldPathError, container_resource_value, extract_field_path, format_map

CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}

EXPAND_CASES = [
    ("$(VAR_A)", "A"), ("___$(VAR_B)___", "___B___"), ("___$(VAR_C)", "___C"), ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)-1", "A-1"), ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"), ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"), ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"), ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"), ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"), ("$(VAR_REF)", "$(VAR_A)"),
    ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"), ("foo$(VAR_EMPTY)bar", "foobar"),
    ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"), ("f00__(VAR_A)__", "f00__(VAR_A)__"),
    ("$?_boo_$!", "$?_boo_$!"), ("$VAR_A", "$VAR_A"), ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"), ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"), ("$$$$$$$(VAR_A)", "$$$A"), ("$VAR_A)", "$VAR_A)"),
    ("${VAR_A}", "${VAR_A}"), ("$(VAR_B)_______$(A", "B_______$(A"), ("$(VAR_C)_______$(", "C_______$("),
    ("$(VAR_A)foobarzab$", "Afoobarzab$"), ("foo-\\$(VAR_A", "foo-\\$(VAR_A"), ("--$($($($($--", "--$($($($($--"),
    ("$($($($($--foo$(", "$($($($($--foo$("), ("foo0--$($($($(", "foo0--$($($($("), ("$(foo$$var)", "$(foo$$var)"),
    ("$", "$"), ("$$", "$"), ("", ""),
]


@pytest.mark.parametrize("value,want", EXPAND_CASES)
def test_expand_table(value, want):
    assert expand(value, mapping_func_for(CONTEXT)) == want


def test_mapping_prefers_first_context():
    assert expand("$(X)", mapping_func_for({"X": "1"}, {"X": "2"})) == "1"
    assert expand("$(Y)", mapping_func_for({"X": "1"}, {"Y": "2"})) == "2"


@pytest.mark.parametrize("m,want", [
    ({}, ""),
    ({"b": "2", "a": "1"}, 'a="1"\nb="2"'),
    ({"k": 'say "hi"\n\tback\\slash'}, 'k="say \\"hi\\"\\n\\tback\\\\slash"'),
    ({"u": "é\x01\x7f"}, 'u="é\\x01\\x7f"'),
])
def test_format_map(m, want):
    assert format_map(m) == want


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web", "tier": "fe"},
                    "annotations": {"a.b/c": "x"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "sa"}, "status": {"podIPs": [{"ip": "10.0.0.5"},
                                                                                     {"ip": "fd00::5"}]}}


@pytest.mark.parametrize("path,want", [
    ("metadata.name", "p"), ("metadata.namespace", "ns"), ("metadata.uid", "u-1"),
    ("metadata.labels", 'app="web"\ntier="fe"'), ("metadata.annotations", 'a.b/c="x"'),
    ("metadata.labels['app']", "web"), ("metadata.annotations['a.b/c']", "x"), ("metadata.labels['none']", ""),
])
def test_extract_field_path(path, want):
    assert extract_field_path(POD, path) == want


def test_extract_field_path_errors():
    with pytest.raises(FieldPathError, match="unsupported fieldPath: spec.bogus"):
        extract_field_path(POD, "spec.bogus")
    with pytest.raises(FieldPathError, match="unsupported pod version: v2"):
        extract_field_path(POD, "metadata.name", "v2")


@pytest.mark.parametrize("path,want", [
    ("spec.nodeName", "n1"), ("spec.serviceAccountName", "sa"), ("status.podIP", "10.0.0.5"),
    ("status.podIPs", "10.0.0.5,fd00::5"), ("status.hostIP", "192.168.56.11"), ("status.hostIPs", "192.168.56.11"),
    ("metadata.labels['tier']", "fe"),
])
def test_pod_field_value(path, want):
    assert pod_field_value(POD, {"fieldPath": path}, host_ip="192.168.56.11", pod_ip="10.0.0.5") == want


C = {"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}}


@pytest.mark.parametrize("ref,want", [
    ({"resource": "limits.cpu"}, "1"),                        # ceil(500m / 1)
    ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
    ({"resource": "requests.cpu", "divisor": "100m"}, "3"),   # ceil(250/100)
    ({"resource": "limits.memory"}, str(128 * 1024 * 1024)),
    ({"resource": "limits.memory", "divisor": "1Mi"}, "128"),
    ({"resource": "requests.memory", "divisor": "1M"}, "68"),  # ceil(67108864/1e6)
    ({"resource": "requests.ephemeral-storage", "divisor": "1Gi"}, "1"),
    ({"resource": "limits.ephemeral-storage"}, "0"),
])
def test_container_resource_value(ref, want):
    assert container_resource_value(ref, C) == want


def test_container_resource_value_defaults_limits_to_allocatable():
    assert container_resource_value({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, C,
                                    {"ephemeral-storage": "10Gi", "cpu": "4"}) == "10"
    assert container_resource_value({"resource": "limits.cpu"}, C, {"cpu": "4"}) == "1"   # set limit wins
    with pytest.raises(FieldPathError, match="unsupported container resource : limits.gpu"):
        container_resource_value({"resource": "limits.gpu"}, C)


def svc(name, ns, ip, ports):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


def test_from_services_vars():
    got = from_services([svc("my-db", "ns", "10.96.0.20", [{"port": 5432}, {"name": "metrics", "port": 9187,
                                                                              "protocol": "TCP"}])])
    assert got == [
        ("MY_DB_SERVICE_HOST", "10.96.0.20"), ("MY_DB_SERVICE_PORT", "5432"),
        ("MY_DB_SERVICE_PORT_METRICS", "9187"),
        ("MY_DB_PORT", "tcp://10.96.0.20:5432"),
        ("MY_DB_PORT_5432_TCP", "tcp://10.96.0.20:5432"), ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
        ("MY_DB_PORT_5432_TCP_PORT", "5432"), ("MY_DB_PORT_5432_TCP_ADDR", "10.96.0.20"),
        ("MY_DB_PORT_9187_TCP", "tcp://10.96.0.20:9187"), ("MY_DB_PORT_9187_TCP_PROTO", "tcp"),
        ("MY_DB_PORT_9187_TCP_PORT", "9187"), ("MY_DB_PORT_9187_TCP_ADDR", "10.96.0.20"),
    ]
    v6 = dict(from_services([svc("dns", "ns", "fd00::a", [{"port": 53, "protocol": "UDP"}])]))
    assert v6["DNS_PORT"] == "udp://[fd00::a]:53"


def test_service_env_selection():
    services = [svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443}]),
                svc("other", "default", "10.96.0.2", [{"port": 80}]),
                svc("web", "ns", "10.96.0.3", [{"port": 80}]),
                svc("headless", "ns", "None", [{"port": 80}]),
                svc("web2", "elsewhere", "10.96.0.4", [{"port": 80}])]
    env = service_env("ns", services, True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["WEB_SERVICE_HOST"] == "10.96.0.3"
    assert not any(k.startswith(("OTHER_", "HEADLESS_", "WEB2_")) for k in env)
    env = service_env("ns", services, False)       # enableServiceLinks: false keeps only the master service
    assert "KUBERNETES_SERVICE_PORT_HTTPS" in env and not any(k.startswith("WEB_") for k in env)
