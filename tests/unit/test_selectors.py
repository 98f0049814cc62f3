"""Label and field selectors: upstream grammar, matching, canonical strings, errors."""

import pytest
from hypothesis import given, strategies as st

from kubelab.api.selectors import (
    DOES_NOT_EXIST,
    EQUALS,
    EXISTS,
    IN,
    NOT_IN,
    FieldSelector,
    LabelSelector,
    Requirement,
    SelectorError,
    escape_field_value,
    field_selector_from_set,
    label_selector_from_api,
    label_selector_to_string,
    new_requirement,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
    unescape_field_value,
)

KEY_REGEX_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_REGEX_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# ---- label selector parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("", ""),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("a==b", "a==b"),
        ("  a = b , c  ", "a=b,c"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("\rx", "x"),
        ("foo  in\t (abc)", "foo in (abc)"),
        ("x notin\n (abc)", "x notin (abc)"),
        ("x in (abc,)", "x in (,abc)"),
        ("x in ()", "x in ()"),
        ("x notin ( )", "x notin ()"),
        ("x notin (, a)", "x notin (,a)"),
        ("x notin (abc,,def),bar,z in (),w", "bar,w,x notin (,abc,def),z in ()"),
        ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
        ("notin=in", "notin=in"),
        ("a ", "a"),
        ("x in (b,a,b)", "x in (a,b)"),
        ("this-is-a-dns.domain.com/key-with-dash", "this-is-a-dns.domain.com/key-with-dash"),
        ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)", "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"),
    ],
)
def test_parse_good(text, canonical):
    assert str(parse_label_selector(text)) == canonical


def test_parse_is_deterministic_and_sorted_by_key():
    assert str(parse_label_selector("x=a,a=x")) == str(parse_label_selector("a=x,x=a")) == "a=x,x=a"
    sel = parse_label_selector("x,y in (a)")
    assert [r.key for r in sel.requirements] == ["x", "y"]


def test_parsed_structure():
    sel = parse_label_selector("x in (foo,,baz),y,z notin ()")
    assert sel.requirements == (
        Requirement("x", IN, ("", "baz", "foo")),
        Requirement("y", EXISTS, ()),
        Requirement("z", NOT_IN, ("",)),
    )
    assert parse_label_selector("!k").requirements == (Requirement("k", DOES_NOT_EXIST, ()),)


@pytest.mark.parametrize(
    "text",
    [
        "x=a||y=b",
        "x==a==b",
        "!x=a",
        "x<a",
        "x,,y",
        ",x,y",
        "x nott in (y)",
        "a in (xyz),",
        "a in (xyz)b notin ()",
        "a in (xyz abc)",
        "a notin(",
        "a (",
        "(",
        "x in a",
        "x in (a",
        "x=(a,b)",
        "x. in (a,b)",
        ".x. in (a,b)",
        "x in in",
        "x in .",
        "a=-b",
        "a/b/c",
        "=a",
    ],
)
def test_parse_bad(text):
    with pytest.raises(SelectorError):
        parse_label_selector(text)


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a,,b", "found ',', expected: identifier after ','"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!=", "found '!=', expected: !, identifier, or 'end of string'"),
        ("!!a", "unable to parse requirement: found '!', expected: identifier"),
        ("-a", 'unable to parse requirement: <nil>: Invalid value: "-a": ' + KEY_REGEX_MSG),
        ("a=-b", 'unable to parse requirement: values[0][a]: Invalid value: "-b": ' + VALUE_REGEX_MSG),
        ("x>a", 'unable to parse requirement: values[0]: Invalid value: "a": '
         "for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_parse_error_messages(text, message):
    with pytest.raises(SelectorError) as exc:
        parse_label_selector(text)
    assert str(exc.value) == message


def test_parse_error_aggregates_several_errors():
    with pytest.raises(SelectorError) as exc:
        parse_label_selector("x>-a")
    assert str(exc.value) == (
        'unable to parse requirement: [values[0]: Invalid value: "-a": for \'Gt\', \'Lt\' operators, '
        'the value must be an integer, values[0][x]: Invalid value: "-a": ' + VALUE_REGEX_MSG + "]"
    )


def test_selector_error_is_value_error():
    assert issubclass(SelectorError, ValueError)


def test_nul_byte_like_upstream_lexer():
    # Go's lexer reads byte 0 as "end": it ends an identifier, and after blanks ends input.
    assert str(parse_label_selector("a\0=b")) == "a=b"
    assert str(parse_label_selector("a \0=b")) == "a"


# ---- label selector matching ----------------------------------------------------------


@pytest.mark.parametrize(
    "text,labels,expected",
    [
        ("", {"x": "y"}, True),
        ("x=y", {"x": "y"}, True),
        ("x=y,z=w", {"x": "y", "z": "w"}, True),
        ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
        ("notin=in", {"notin": "in"}, True),
        ("x", {"x": "z"}, True),
        ("!x", {"y": "z"}, True),
        ("x>1", {"x": "2"}, True),
        ("x<1", {"x": "0"}, True),
        ("x=z", {}, False),
        ("x=y", {"x": "z"}, False),
        ("x=y,z=w", {"x": "w", "z": "w"}, False),
        ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
        ("x", {"y": "z"}, False),
        ("!x", {"x": "z"}, False),
        ("x>1", {"x": "0"}, False),
        ("x<1", {"x": "2"}, False),
        ("x>1", {"x": "v2"}, False),
        ("x>1", {}, False),
        ("x!=y", {}, True),
        ("x notin (a)", {}, True),
        ("x notin (a)", {"x": "a"}, False),
        ("x in (a,b)", {"x": "b"}, True),
        ("x in ()", {"y": "baz"}, False),
        ("x in ()", {"x": ""}, True),
        ("x notin (),y", {"y": ""}, True),
        ("x notin (),!y", {"y": ""}, False),
        ("x=", {"x": ""}, True),
        ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
    ],
)
def test_matches(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


def test_matches_none_labels():
    assert parse_label_selector("!x").matches(None)
    assert not parse_label_selector("x").matches(None)


def test_empty_and_exact_match():
    assert parse_label_selector("").empty
    assert not parse_label_selector("a").empty
    sel = parse_label_selector("app=web,tier in (front),env notin (prod),x in (a,b)")
    assert sel.requires_exact_match("app") == "web"
    assert sel.requires_exact_match("tier") == "front"
    assert sel.requires_exact_match("env") is None
    assert sel.requires_exact_match("x") is None
    assert sel.requires_exact_match("missing") is None


def test_selector_from_set():
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})
    assert selector_from_set(None).empty and selector_from_set({}).matches({"x": "y"})


# ---- NewRequirement -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,op,vals,ok",
    [
        ("x", "in", None, False),
        ("x", "notin", [], False),
        ("x", "in", ["foo"], True),
        ("x", "notin", ["foo"], True),
        ("x", "exists", None, True),
        ("x", "!", None, True),
        ("1foo", "in", ["bar"], True),
        ("1234", "in", ["bar"], True),
        ("y", "gt", ["1"], True),
        ("z", "lt", ["6"], True),
        ("foo", "gt", ["bar"], False),
        ("barz", "lt", ["blah"], False),
        ("a" * 254, "exists", None, False),
        ("x", "=", ["a", "b"], False),
        ("x", "bogus", ["a"], False),
    ],
)
def test_new_requirement(key, op, vals, ok):
    if ok:
        assert new_requirement(key, op, vals).key == key
    else:
        with pytest.raises(SelectorError):
            new_requirement(key, op, vals)


def test_new_requirement_unsupported_operator_message():
    with pytest.raises(SelectorError) as exc:
        new_requirement("x", "bogus", ["a"])
    assert str(exc.value) == (
        'operator: Unsupported value: "bogus": supported values: "in", "notin", "=", "==", "!=", '
        '"gt", "lt", "exists", "!"'
    )


@pytest.mark.parametrize(
    "reqs,out",
    [
        ([("x", "in", ["abc", "def"]), ("y", "notin", ["jkl"]), ("z", "exists", [])],
         "x in (abc,def),y notin (jkl),z"),
        ([("x", "notin", ["abc", "def"]), ("y", "!=", ["jkl"]), ("z", "!", [])],
         "x notin (abc,def),y!=jkl,!z"),
        ([("x", "notin", ["abc"]), ("y", "in", ["mno", "jkl"]), ("z", "notin", [""])],
         "x notin (abc),y in (jkl,mno),z notin ()"),
        ([("x", "=", ["abc"]), ("y", "==", ["jkl"]), ("z", "!=", ["a"]), ("z", "exists", [])],
         "x=abc,y==jkl,z!=a,z"),
        ([("x", "gt", ["2"]), ("y", "lt", ["8"]), ("z", "exists", [])], "x>2,y<8,z"),
    ],
)
def test_to_string(reqs, out):
    sel = LabelSelector(new_requirement(k, op, v) for k, op, v in reqs)
    assert str(sel) == out


# ---- metav1.LabelSelector -------------------------------------------------------------


def test_from_api_none_selects_nothing_empty_selects_everything():
    nothing = label_selector_from_api(None)
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert not nothing.empty and str(nothing) == ""
    everything = label_selector_from_api({})
    assert everything.empty and everything.matches({"a": "b"}) and everything.matches(None)
    assert label_selector_from_api({"matchLabels": {}, "matchExpressions": []}).empty


def test_from_api_match_labels_and_expressions():
    sel = label_selector_from_api(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(sel) == "app=web,env notin (prod),!legacy,team,tier in (edge,front)"
    assert sel.matches({"app": "web", "tier": "edge", "team": "a"})
    assert not sel.matches({"app": "web", "tier": "edge", "team": "a", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "edge", "team": "a", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "back", "team": "a"})


@pytest.mark.parametrize(
    "api,message",
    [
        ({"matchExpressions": [{"key": "k", "operator": "Foo", "values": ["a"]}]},
         '"Foo" is not a valid pod selector operator'),
        ({"matchExpressions": [{"key": "k", "operator": "In"}]},
         "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
        ({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]},
         'values: Invalid value: []string{"a"}: values set must be empty for exists and does not exist'),
        ({"matchLabels": {"-a": "b"}}, 'key: Invalid value: "-a": ' + KEY_REGEX_MSG),
        ({"matchLabels": {"a": "b c"}}, 'values[0][a]: Invalid value: "b c": ' + VALUE_REGEX_MSG),
    ],
)
def test_from_api_errors(api, message):
    with pytest.raises(SelectorError) as exc:
        label_selector_from_api(api)
    assert str(exc.value) == message


def test_label_selector_to_string():
    assert label_selector_to_string({}) == "<none>"
    assert label_selector_to_string({"matchLabels": {"a": "b"}}) == "a=b"
    assert label_selector_to_string({"matchExpressions": [{"key": "k", "operator": "X"}]}) == "<error>"


label_keys = st.from_regex(r"[a-z]([a-z0-9]{0,8})", fullmatch=True)
label_values = st.from_regex(r"([a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?)?", fullmatch=True)


@given(st.dictionaries(label_keys, label_values, max_size=5), st.dictionaries(label_keys, label_values, max_size=5))
def test_string_round_trip_property(want, have):
    """String() re-parses to an equivalent selector that matches the same label sets."""
    sel = label_selector_from_api({"matchLabels": want})
    again = parse_label_selector(str(sel))
    assert str(again) == str(sel)
    assert again.matches(have) == sel.matches(have) == all(have.get(k) == v for k, v in want.items())


# ---- field selectors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"]
)
def test_field_parse_good_round_trips(text):
    assert str(parse_field_selector(text)) == text


@pytest.mark.parametrize("text", ["x=a||y=b", "x==a==b", "x=a,b", "x in (a)", "x in (a,b,c)", "x"])
def test_field_parse_bad(text):
    with pytest.raises(SelectorError):
        parse_field_selector(text)


@pytest.mark.parametrize(
    "text,message",
    [
        ("x", "invalid selector: 'x'; can't understand 'x'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("x==a==b", "invalid field selector: unescaped character in value: 61"),
        ("a=\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_parse_error_messages(text, message):
    with pytest.raises(SelectorError) as exc:
        parse_field_selector(text)
    assert str(exc.value) == message


def test_field_requirements_and_normalization():
    sel = parse_field_selector("status.phase!=Running,spec.nodeName==node-1,metadata.name=x,")
    assert sel.requirements == [
        ("metadata.name", "=", "x"),
        ("spec.nodeName", "=", "node-1"),
        ("status.phase", "!=", "Running"),
    ]
    assert str(sel) == "metadata.name=x,spec.nodeName=node-1,status.phase!=Running"
    assert parse_field_selector("x=a,a=x").requirements == parse_field_selector("a=x,x=a").requirements


def test_field_escaping():
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requirements == [("metadata.name", "=", "a,b=c\\d")]
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    for raw in ["", "a", "a,b", "a=b", "a\\b", "\\,=", "x\\\\,,=="]:
        assert unescape_field_value(escape_field_value(raw)) == raw
    with pytest.raises(SelectorError):
        unescape_field_value("\\\\\\")


def test_field_matches_missing_field_is_empty_string():
    sel = parse_field_selector("spec.nodeName=")
    assert sel.matches({})
    assert sel.matches({"spec.nodeName": ""})
    assert not sel.matches({"spec.nodeName": "n1"})
    neq = parse_field_selector("spec.nodeName!=")
    assert neq.matches({"spec.nodeName": "n1"}) and not neq.matches({})
    both = parse_field_selector("metadata.namespace=default,status.phase!=Failed")
    assert both.matches({"metadata.namespace": "default", "status.phase": "Running"})
    assert not both.matches({"metadata.namespace": "default", "status.phase": "Failed"})
    assert not both.matches({"metadata.namespace": "kube-system"})


def test_field_exact_match():
    sel = parse_field_selector("spec.nodeName!=a,spec.nodeName=b,status.phase!=x")
    assert sel.exact_match("spec.nodeName") == "b"
    assert sel.exact_match("status.phase") is None
    assert sel.exact_match("metadata.name") is None
    assert parse_field_selector("").exact_match("spec.nodeName") is None


def test_field_empty_terms_are_dropped():
    assert parse_field_selector("=").empty
    assert parse_field_selector(",,").empty
    assert parse_field_selector("").matches({"a": "b"})
    assert not parse_field_selector("a=b").empty


def test_field_no_whitespace_trimming_like_upstream():
    assert parse_field_selector("a = b").requirements == [("a ", "=", " b")]


def test_field_transform_and_from_set():
    sel = parse_field_selector("spec.host=n1,drop=me")

    def fn(field, value):
        if field == "drop":
            return "", ""
        return ("spec.nodeName" if field == "spec.host" else field), value

    assert parse_field_selector("spec.host=n1").transform(fn).requirements == [("spec.nodeName", "=", "n1")]
    assert sel.transform(fn).requirements == [("spec.nodeName", "=", "n1")]
    s = field_selector_from_set({"metadata.name": "a,b"})
    assert str(s) == r"metadata.name=a\,b"
    assert isinstance(s, FieldSelector)


field_values = st.text(alphabet=st.sampled_from("ab,=\\ .-"), max_size=8)


@given(st.lists(st.tuples(st.sampled_from(["a", "b.c", "spec.x"]), st.sampled_from(["=", "!="]), field_values), max_size=4))
def test_field_round_trip_property(terms):
    sel = FieldSelector(tuple(sorted(terms, key=lambda t: f"{t[0]}{t[1]}{escape_field_value(t[2])}")))
    again = parse_field_selector(str(sel))
    assert sorted(again.requirements) == sorted(sel.requirements)
    assert str(parse_field_selector(str(again))) == str(again)


def test_requirement_constants():
    assert EQUALS == "=" and IN == "in" and NOT_IN == "notin"
