"""String validators, field.Error rendering and ObjectMeta validation (upstream wording)."""

import pytest
from hypothesis import given, strategies as st

from kubelab.api import validation as v
from kubelab.api.validation import (
    FieldError,
    GoValue,
    OMIT,
    Path,
    aggregate,
    duplicate,
    forbidden,
    go_quote,
    go_value,
    internal_error,
    invalid,
    is_c_identifier,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_num,
    name_is_dns_label,
    name_is_dns_subdomain,
    not_supported,
    required,
    too_long,
    too_many,
    type_invalid,
    validate_object_meta,
    validate_object_meta_update,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# ---- DNS names ------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a" * 63])
def test_dns1123_label_good(good):
    assert is_dns1123_label(good) == []


@pytest.mark.parametrize("bad", ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "a\n"])
def test_dns1123_label_bad(bad):
    assert is_dns1123_label(bad)


def test_dns1123_label_messages():
    assert is_dns1123_label("Foo") == [LABEL_MSG]
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1123_label("-" * 64) == ["must be no more than 63 characters", LABEL_MSG]


@pytest.mark.parametrize("good", ["a", "ab", "a1", "a-1", "a.a", "a1.a1", "1.2.3.4", "a" * 253, "a.b.c.d.e", "0.a.0.a"])
def test_dns1123_subdomain_good(good):
    assert is_dns1123_subdomain(good) == []


@pytest.mark.parametrize("bad", ["", "A", "a-", "-a", "a.", ".a", "a..b", "a_b", "a@b", "a,b", "a" * 254, "a.-b"])
def test_dns1123_subdomain_bad(bad):
    assert is_dns1123_subdomain(bad)


def test_dns1123_subdomain_messages():
    assert is_dns1123_subdomain("Foo") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_dns1035_label():
    for good in ["a", "ab", "a-1", "a--1--2--b", "a" * 63]:
        assert is_dns1035_label(good) == []
    for bad in ["0", "01", "1a", "a-", "A", "a.b", ""]:
        assert is_dns1035_label(bad) == [DNS1035_MSG]
    assert is_dns1035_label("a" * 64) == ["must be no more than 63 characters"]


# ---- label keys and values ------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    ["simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
     "now.with.dots/simple", "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123",
     "example.com/Uppercase_Is_OK_123", "requests.storage-foo", "a" * 63, "a" * 253 + "/" + "b" * 63],
)
def test_qualified_name_good(good):
    assert is_qualified_name(good) == []


@pytest.mark.parametrize(
    "bad",
    ["nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc",
     "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc", ""],
)
def test_qualified_name_bad(bad):
    assert is_qualified_name(bad)


def test_qualified_name_messages():
    assert is_qualified_name("-a") == [NAME_PART_MSG]
    assert is_qualified_name("") == ["name part must be non-empty", NAME_PART_MSG]
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/a") == ["prefix part " + SUBDOMAIN_MSG]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]
    assert is_qualified_name("a/b/c") == [
        "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
        "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
        "prefix and '/' (e.g. 'example.com/MyName')"
    ]


def test_label_values():
    for good in ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""]:
        assert is_valid_label_value(good) == []
    for bad in ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad",
                "-starts-with-dash", "ends-with-dash-", ".starts.with.dot", "ends.with.dot."]:
        assert is_valid_label_value(bad) == [LABEL_VALUE_MSG]
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 characters"]


# ---- identifiers, env names, ports, IPs ----------------------------------------------


def test_c_identifier():
    for good in ["a", "ab", "abc", "a1", "_a", "a_", "a_b", "a_1", "a__1__2__b", "__abc_123", "A", "AB", "AbC", "A1", "_A", "A_", "A_B", "A_1"]:
        assert is_c_identifier(good) == []
    for bad in ["", "1", "123", "1a", "-", "a-", "-a", "a-b", "a b", "1-", "1_", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", "#", "a#", "#a", "a#b", "1#", "#1", "1#2", "1 2", "1-2"]:
        assert is_c_identifier(bad) == [
            "a valid C identifier must start with alphabetic character or '_', followed by a string of "
            "alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for "
            "validation is '[A-Za-z_][A-Za-z0-9_]*')"
        ]


def test_env_var_name():
    for good in ["a", "ABC", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", "-x", ".x", "a..b"]:
        assert is_env_var_name(good) == []
    regex_msg = (
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
        "'.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
        "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
    )
    assert is_env_var_name("1a") == [regex_msg]
    assert is_env_var_name("a b") == [regex_msg]
    assert is_env_var_name("") == [regex_msg]
    assert is_env_var_name(".") == ["must not be '.'"]
    assert is_env_var_name("..") == ["must not be '..'"]
    assert is_env_var_name("..a") == ["must not start with '..'"]


def test_port_num():
    for good in [1, 80, 65535]:
        assert is_valid_port_num(good) == []
    for bad in [0, -1, 65536, True]:
        assert is_valid_port_num(bad) == ["must be between 1 and 65535, inclusive"]


def test_port_name():
    assert v.is_valid_port_name("http") == []
    assert v.is_valid_port_name("1234") == ["must contain at least one letter (a-z)"]
    assert v.is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert v.is_valid_port_name("-ab") == ["must not begin or end with a hyphen"]
    assert v.is_valid_port_name("abcdefghijklmnop") == ["must be no more than 15 characters"]
    assert v.is_valid_port_name("HTTP") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)",
    ]


@pytest.mark.parametrize("good", ["1.2.3.4", "10.9.8.7", "0.0.0.0", "255.255.255.255", "010.001.002.003", "::", "::1", "2001:db8::ffff", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8"])
def test_ip_good(good):
    assert is_valid_ip(good) == []


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "a.b.c.d", " 1.2.3.4", "1.2.3.4 ", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "1.2.3.4/24", "::ffff:300.1.1.1", "localhost"])
def test_ip_bad(bad):
    assert is_valid_ip(bad) == ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]


@pytest.mark.parametrize("good", ["10.0.0.0/8", "10.244.0.0/16", "1.2.3.4/32", "1.2.3.4/24", "0.0.0.0/0", "2001:db8::/64", "::/0", "::1/128", "010.0.0.0/08"])
def test_cidr_good(good):
    assert is_valid_cidr(good) == []


@pytest.mark.parametrize("bad", ["", "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/-1", "10.0.0.0/+8", "a/8", "10.0.0.0/8/8", "10.0.0.0/ 8"])
def test_cidr_bad(bad):
    assert is_valid_cidr(bad) == ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


# ---- field.Error rendering -----------------------------------------------------------


def test_field_error_messages():
    assert required("spec.containers[0].name").message() == "spec.containers[0].name: Required value"
    assert required("metadata.name", "name or generateName is required").message() == (
        "metadata.name: Required value: name or generateName is required"
    )
    assert invalid("metadata.name", "Foo", SUBDOMAIN_MSG).message() == 'metadata.name: Invalid value: "Foo": ' + SUBDOMAIN_MSG
    assert duplicate("spec.containers[1].name", "a").message() == 'spec.containers[1].name: Duplicate value: "a"'
    assert not_supported("spec.restartPolicy", "x", ["Always", "Never", "OnFailure"]).message() == (
        'spec.restartPolicy: Unsupported value: "x": supported values: "Always", "Never", "OnFailure"'
    )
    assert not_supported("a", "x", []).message() == 'a: Unsupported value: "x"'
    assert forbidden("metadata.namespace", "not allowed on this type").message() == (
        "metadata.namespace: Forbidden: not allowed on this type"
    )
    assert too_long("metadata.annotations", "", 262144).message() == (
        "metadata.annotations: Too long: must have at most 262144 bytes"
    )
    assert type_invalid("spec.replicas", "x", "must be an integer").message() == (
        'spec.replicas: Invalid value: "x": must be an integer'
    )
    assert too_many("spec.list", 5, 4).message() == "spec.list: Too many: 5: must have at most 4 items"
    assert too_many("spec.list", -1, -1).message() == "spec.list: Too many: has too many items"
    assert internal_error("x", RuntimeError("boom")).message() == "x: Internal error: boom"


def test_field_error_types_and_values():
    e = invalid(Path.new("spec").child("replicas"), -1, "must be greater than or equal to 0")
    assert e.type == "FieldValueInvalid"
    assert e.field == "spec.replicas"
    assert e.message() == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert str(e) == e.message()
    assert e.to_cause() == {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: -1: must be greater than or equal to 0",
        "field": "spec.replicas",
    }
    assert {f("p").type for f in (required, lambda p: forbidden(p, "d"))} == {"FieldValueRequired", "FieldValueForbidden"}
    assert duplicate("p", 1).type == "FieldValueDuplicate"
    assert not_supported("p", 1, ["a"]).type == "FieldValueNotSupported"
    assert too_long("p", "", 1).type == "FieldValueTooLong"
    assert type_invalid("p", 1, "d").type == "FieldValueTypeInvalid"
    with pytest.raises(ValueError):
        FieldError("Bogus", "p")


@pytest.mark.parametrize(
    "value,rendered",
    [
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (1.5, "1.5"),
        (1.0, "1"),
        (1e21, "1e+21"),
        (1e-05, "1e-05"),
        ("a\"b\\c\n\t\x01é", '"a\\"b\\\\c\\n\\t\\x01é"'),
        (["a", "b"], '[]string{"a", "b"}'),
        ([], "[]string{}"),
        ([1, "a"], '[]interface {}{1, "a"}'),
        ({"b": "2", "a": "1"}, 'map[string]string{"a":"1", "b":"2"}'),
        (GoValue("[]string(nil)"), "[]string(nil)"),
    ],
)
def test_go_value(value, rendered):
    assert go_value(value) == rendered


def test_omit_value():
    assert FieldError("FieldValueInvalid", "x", OMIT, "d").message() == "x: Invalid value: d"


def test_go_quote_non_printable():
    assert go_quote("\u00a0") == '"\\u00a0"'
    assert go_quote("\x7f") == '"\\x7f"'
    assert go_quote("日本") == '"日本"'


def test_path_rendering():
    p = Path.new("spec", "template").child("spec").child("containers").index(2).child("env").key("FOO")
    assert str(p) == "spec.template.spec.containers[2].env[FOO]"
    assert str(Path.new("values").index(0).key("x")) == "values[0][x]"


def test_aggregate():
    assert aggregate([]) == ""
    one = required("a")
    assert aggregate([one]) == "a: Required value"
    assert aggregate([one, one, required("b")]) == "[a: Required value, b: Required value]"


# ---- ObjectMeta -----------------------------------------------------------------------


def messages(errs):
    return [e.message() for e in errs]


def test_object_meta_valid():
    meta = {
        "name": "web-1",
        "namespace": "default",
        "labels": {"app": "web", "example.com/tier": ""},
        "annotations": {"Example.com/Note": "anything at all"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1", "controller": True}],
        "finalizers": ["kubernetes.io/pvc-protection"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1"}],
    }
    assert validate_object_meta(meta, True, name_is_dns_subdomain) == []


def test_object_meta_name_required_and_invalid():
    assert messages(validate_object_meta({"namespace": "default"}, True, name_is_dns_subdomain)) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert messages(validate_object_meta({"name": "Foo", "namespace": "default"}, True, name_is_dns_subdomain)) == [
        'metadata.name: Invalid value: "Foo": ' + SUBDOMAIN_MSG
    ]
    assert messages(validate_object_meta({"name": "a.b"}, False, name_is_dns_label)) == [
        'metadata.name: Invalid value: "a.b": must not contain dots'
    ]


def test_object_meta_generate_name_trailing_dash_allowed():
    meta = {"generateName": "web-", "name": "web-x7k2p", "namespace": "ns"}
    assert validate_object_meta(meta, True, name_is_dns_subdomain) == []
    bad = {"generateName": "Web-", "name": "web-abcde", "namespace": "ns"}
    assert [e.field for e in validate_object_meta(bad, True, name_is_dns_subdomain)] == ["metadata.generateName"]


def test_object_meta_namespace_rules():
    assert messages(validate_object_meta({"name": "a"}, True, name_is_dns_subdomain)) == [
        "metadata.namespace: Required value"
    ]
    assert messages(validate_object_meta({"name": "a", "namespace": "x"}, False, name_is_dns_subdomain)) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    assert messages(validate_object_meta({"name": "a", "namespace": "Bad_NS"}, True, name_is_dns_subdomain)) == [
        'metadata.namespace: Invalid value: "Bad_NS": ' + LABEL_MSG
    ]


def test_object_meta_labels_and_annotations():
    meta = {"name": "a", "labels": {"-bad": "ok", "good": "-bad"}, "annotations": {"a/b/c": "x"}}
    assert messages(validate_object_meta(meta, False, name_is_dns_subdomain)) == [
        'metadata.labels: Invalid value: "-bad": ' + NAME_PART_MSG,
        'metadata.labels: Invalid value: "-bad": ' + LABEL_VALUE_MSG,
        'metadata.annotations: Invalid value: "a/b/c": ' + is_qualified_name("a/b/c")[0],
    ]


def test_object_meta_annotation_size_limit():
    meta = {"name": "a", "annotations": {"k": "x" * (256 * 1024 - 1)}}
    assert validate_object_meta(meta, False, name_is_dns_subdomain) == []
    meta["annotations"]["k2"] = "y"
    assert messages(validate_object_meta(meta, False, name_is_dns_subdomain)) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"
    ]


def test_object_meta_owner_references():
    refs = [
        {"apiVersion": "", "kind": "", "name": "", "uid": ""},
        {"apiVersion": "apps/", "kind": "ReplicaSet", "name": "n", "uid": "u"},
    ]
    assert messages(validate_object_meta({"name": "a", "ownerReferences": refs}, False, name_is_dns_subdomain)) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
        'metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty',
    ]
    event = [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}]
    (err,) = validate_object_meta({"name": "a", "ownerReferences": event}, False, name_is_dns_subdomain)
    assert err.field == "metadata.ownerReferences"
    assert err.message().endswith(": /v1, Kind=Event is disallowed from being an owner")
    two = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "b", "uid": "2", "controller": True},
    ]
    (err,) = validate_object_meta({"name": "a", "ownerReferences": two}, False, name_is_dns_subdomain)
    assert err.message().endswith(
        'Only one reference can have Controller set to true. Found "true" in references for ReplicaSet/a and Deployment/b'
    )


def test_object_meta_finalizers_generation_managed_fields():
    meta = {
        "name": "a",
        "generation": -1,
        "finalizers": ["Bad Finalizer", "orphan", "foregroundDeletion"],
        "managedFields": [{"manager": "m", "operation": "Patch", "fieldsType": "FieldsV2"}],
    }
    assert messages(validate_object_meta(meta, False, name_is_dns_subdomain)) == [
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
        'metadata.finalizers: Invalid value: "Bad Finalizer": ' + NAME_PART_MSG,
        'metadata.finalizers: Invalid value: []string{"Bad Finalizer", "orphan", "foregroundDeletion"}: '
        "finalizer orphan and foregroundDeletion cannot be both set",
        'metadata.managedFields[0].operation: Invalid value: "Patch": must be `Apply` or `Update`',
        'metadata.managedFields[0].fieldsType: Invalid value: "FieldsV2": must be `FieldsV1`',
    ]


def test_object_meta_update_immutable_fields():
    old = {
        "name": "a",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "5",
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "generation": 3,
    }
    new = dict(old, labels={"x": "y"}, generation=4)
    assert validate_object_meta_update(new, old) == []
    changed = dict(old, name="b", namespace="other", uid="u2", creationTimestamp="2025-01-01T00:00:00Z")
    assert messages(validate_object_meta_update(changed, old)) == [
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.namespace: Invalid value: "other": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        "metadata.creationTimestamp: Invalid value: 2025-01-01 00:00:00 +0000 UTC: field is immutable",
    ]


def test_object_meta_update_other_rules():
    old = {"name": "a", "resourceVersion": "5", "generation": 3,
           "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a"]}
    new = {"name": "a", "resourceVersion": "", "generation": 2,
           "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a", "c", "b"]}
    assert messages(validate_object_meta_update(new, old)) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, '
        'found new finalizers []string{"b", "c"}',
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        "metadata.generation: Invalid value: 2: must not be decremented",
    ]
    assert messages(validate_object_meta_update({"name": "a", "resourceVersion": "1", "deletionGracePeriodSeconds": 30},
                                                {"name": "a", "resourceVersion": "1"})) == [
        "metadata.deletionGracePeriodSeconds: Invalid value: 30: field is immutable"
    ]


def test_go_time_string():
    assert v.go_time_string("2024-01-02T03:04:05Z") == "2024-01-02 03:04:05 +0000 UTC"
    assert v.go_time_string("2024-01-02T03:04:05.5+01:00") == "2024-01-02 02:04:05.5 +0000 UTC"
    assert v.go_time_string(None) == "0001-01-01 00:00:00 +0000 UTC"


@given(st.text(max_size=80))
def test_validators_never_raise_and_agree_with_regex(s):
    import re

    assert (is_dns1123_label(s) == []) == bool(
        re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s) and len(s.encode()) <= 63
    )
    assert (is_valid_label_value(s) == []) == bool(
        re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", s) and len(s.encode()) <= 63
    )
    for fn in (is_dns1123_subdomain, is_dns1035_label, is_qualified_name, is_c_identifier, is_env_var_name, is_valid_ip, is_valid_cidr):
        assert isinstance(fn(s), list)
