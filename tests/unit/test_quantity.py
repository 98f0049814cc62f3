"""resource.Quantity parsing and canonical form (cases from upstream quantity_test.go)."""

from decimal import Decimal as D

import pytest
from hypothesis import given, strategies as st

from kubelab.api.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    MAX_INT64,
    Quantity,
    QuantityError,
    canonicalize,
    canonicalize_value,
    format_quantity,
    parse,
    parse_quantity,
)


def dec(i: int, exp: int) -> D:
    return D(i) * (D(10) ** exp)


@pytest.mark.parametrize(
    "text,value,fmt",
    [
        ("0", 0, DECIMAL_SI),
        ("0n", 0, DECIMAL_SI),
        ("0m", 0, DECIMAL_SI),
        ("0Ki", 0, BINARY_SI),
        ("0Mi", 0, BINARY_SI),
        ("0T", 0, DECIMAL_SI),
        ("1", 1, DECIMAL_SI),
        ("1Ki", 1024, BINARY_SI),
        ("8Ki", 8 * 1024, BINARY_SI),
        ("7Mi", 7 * 1024**2, BINARY_SI),
        ("6Gi", 6 * 1024**3, BINARY_SI),
        ("5Ti", 5 * 1024**4, BINARY_SI),
        ("4Pi", 4 * 1024**5, BINARY_SI),
        ("3Ei", 3 * 1024**6, BINARY_SI),
        ("100Ti", 100 * 1024**4, BINARY_SI),
        ("5n", dec(5, -9), DECIMAL_SI),
        ("4u", dec(4, -6), DECIMAL_SI),
        ("3m", dec(3, -3), DECIMAL_SI),
        ("8k", dec(8, 3), DECIMAL_SI),
        ("50k", dec(5, 4), DECIMAL_SI),
        ("7M", dec(7, 6), DECIMAL_SI),
        ("6G", dec(6, 9), DECIMAL_SI),
        ("5T", dec(5, 12), DECIMAL_SI),
        ("2P", dec(2, 15), DECIMAL_SI),
        ("1E", dec(1, 18), DECIMAL_SI),
        ("1E-3", dec(1, -3), DECIMAL_EXPONENT),
        ("1e3", dec(1, 3), DECIMAL_EXPONENT),
        ("1E6", dec(1, 6), DECIMAL_EXPONENT),
        ("1e14", dec(1, 14), DECIMAL_EXPONENT),
        ("100.035k", 100035, DECIMAL_SI),
        ("0.001", dec(1, -3), DECIMAL_SI),
        ("0.0005k", dec(5, -1), DECIMAL_SI),
        ("0.5", dec(5, -1), DECIMAL_SI),
        ("0.50000", dec(5, -1), DECIMAL_SI),
        ("0.5e0", dec(5, -1), DECIMAL_EXPONENT),
        ("0.5e-2", dec(5, -3), DECIMAL_EXPONENT),
        ("10.035M", dec(10035, 3), DECIMAL_SI),
        ("1.2e3", dec(12, 2), DECIMAL_EXPONENT),
        ("1.3E+6", dec(13, 5), DECIMAL_EXPONENT),
        ("1.7E18", dec(17, 17), DECIMAL_EXPONENT),
        ("9.01", dec(901, -2), DECIMAL_SI),
        ("6.987654321G", 6987654321, DECIMAL_SI),
        ("1.01E", dec(101, 16), DECIMAL_SI),
        # things that saturate or round up to nano
        ("3.001n", dec(4, -9), DECIMAL_SI),
        ("1.1E-9", dec(2, -9), DECIMAL_EXPONENT),
        ("0.0000000001", dec(1, -9), DECIMAL_SI),
        ("0.0000000005", dec(1, -9), DECIMAL_SI),
        ("0.5e-9", dec(1, -9), DECIMAL_EXPONENT),
        ("0.9n", dec(1, -9), DECIMAL_SI),
        ("0.00000012345", dec(124, -9), DECIMAL_SI),
        ("0.00000012354", dec(124, -9), DECIMAL_SI),
        ("9Ei", MAX_INT64, BINARY_SI),
        ("9223372036854775807Ki", MAX_INT64, BINARY_SI),
        ("12E", dec(12, 18), DECIMAL_SI),
        # fractional binary
        ("100.035Ki", dec(10243584, -2), BINARY_SI),
        ("0.5Mi", 512 * 1024, BINARY_SI),
        ("0.05Gi", dec(536870912, -1), BINARY_SI),
        ("0.025Ti", dec(274877906944, -1), BINARY_SI),
        # written by trolls
        ("0.000000000001Ki", dec(2, -9), DECIMAL_SI),
        (".001", dec(1, -3), DECIMAL_SI),
        (".0001k", dec(100, -3), DECIMAL_SI),
        ("1.", 1, DECIMAL_SI),
        ("1.G", dec(1, 9), DECIMAL_SI),
        (".", 0, DECIMAL_SI),
        ("-.", 0, DECIMAL_SI),
        (".484785E-7466", dec(1, -9), DECIMAL_EXPONENT),
    ],
)
def test_parse_values_and_formats(text, value, fmt):
    variants = [(1, text)] if text[0] in "+-" else [(1, text), (1, "+" + text), (-1, "-" + text)]
    for sign, s in variants:
        q = parse(s)
        assert q.value == sign * D(value), s
        assert q.format == fmt, s
        assert parse_quantity(s) == sign * D(value)


@pytest.mark.parametrize(
    "text,error",
    [
        ("", ERR_FORMAT_WRONG),
        ("1.1.M", ERR_FORMAT_WRONG),
        ("1+1.0M", ERR_FORMAT_WRONG),
        ("0.1mi", ERR_SUFFIX),
        ("0.1am", ERR_FORMAT_WRONG),
        ("aoeu", ERR_FORMAT_WRONG),
        (".5i", ERR_SUFFIX),
        ("1i", ERR_SUFFIX),
        ("-3.01i", ERR_SUFFIX),
        ("-3.01e-", ERR_SUFFIX),
        ("1e4294967297", ERR_SUFFIX),
        ("1e", ERR_SUFFIX),
        ("1ki", ERR_SUFFIX),
        ("1K", ERR_SUFFIX),
        (" 1", ERR_FORMAT_WRONG),
        ("1 ", ERR_FORMAT_WRONG),
        ("1Gi3", ERR_SUFFIX),
        (".e-20", ERR_NUMERIC),
    ],
)
def test_parse_errors(text, error):
    with pytest.raises(QuantityError) as exc:
        parse(text)
    assert str(exc.value) == error
    assert isinstance(exc.value, ValueError)


def test_error_wording():
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    assert ERR_SUFFIX == "unable to parse quantity's suffix"


# (value, exponent, format) -> canonical string, plus an alternate spelling that
# canonicalizes to it (upstream TestQuantityString).
STRING_TABLE = [
    (1024**3, 0, BINARY_SI, "1Gi", "1024Mi"),
    (300 * 1024**2, 0, BINARY_SI, "300Mi", "307200Ki"),
    (6 * 1024, 0, BINARY_SI, "6Ki", ""),
    (1001 * 1024**3, 0, BINARY_SI, "1001Gi", "1025024Mi"),
    (1024**4, 0, BINARY_SI, "1Ti", "1024Gi"),
    (5, 0, BINARY_SI, "5", "5000m"),
    (500, -3, BINARY_SI, "500m", "0.5"),
    (1, 9, DECIMAL_SI, "1G", "1000M"),
    (1000, 6, DECIMAL_SI, "1G", "0.001T"),
    (1000000000, 0, DECIMAL_SI, "1G", ""),
    (1, -3, DECIMAL_SI, "1m", "1000u"),
    (80, -3, DECIMAL_SI, "80m", ""),
    (1080, -3, DECIMAL_SI, "1080m", "1.08"),
    (108, -2, DECIMAL_SI, "1080m", "1080000000n"),
    (10800, -4, DECIMAL_SI, "1080m", ""),
    (300, 6, DECIMAL_SI, "300M", ""),
    (1, 12, DECIMAL_SI, "1T", ""),
    (1, 18, DECIMAL_SI, "1E", ""),
    (1, 21, DECIMAL_SI, "1e21", "1000E"),
    (5, 21, DECIMAL_SI, "5e21", "5000E"),
    (1, 24, DECIMAL_SI, "1e24", "1000000E"),
    (1, 70, BINARY_SI, "10e69", ""),
    (2, 70, BINARY_SI, "20e69", ""),
    (1, 72, BINARY_SI, "1e72", ""),
    (1234567, 6, DECIMAL_SI, "1234567M", ""),
    (1234567, -3, BINARY_SI, "1234567m", ""),
    (3, 3, DECIMAL_SI, "3k", ""),
    (1025, 0, BINARY_SI, "1025", ""),
    (0, 0, DECIMAL_SI, "0", ""),
    (0, 0, BINARY_SI, "0", ""),
    (1, 9, DECIMAL_EXPONENT, "1e9", ".001e12"),
    (1, -3, DECIMAL_EXPONENT, "1e-3", "0.001e0"),
    (1, -9, DECIMAL_EXPONENT, "1e-9", "1000e-12"),
    (80, -3, DECIMAL_EXPONENT, "80e-3", ""),
    (300, 6, DECIMAL_EXPONENT, "300e6", ""),
    (1, 12, DECIMAL_EXPONENT, "1e12", ""),
    (3, 3, DECIMAL_EXPONENT, "3e3", ""),
    (0, 0, DECIMAL_EXPONENT, "0", "00"),
    (1, -9, DECIMAL_SI, "1n", ""),
    (80, -9, DECIMAL_SI, "80n", ""),
    (1080, -9, DECIMAL_SI, "1080n", ""),
    (108, -8, DECIMAL_SI, "1080n", ""),
    (10800, -10, DECIMAL_SI, "1080n", ""),
    (1, -6, DECIMAL_SI, "1u", ""),
    (80, -6, DECIMAL_SI, "80u", ""),
    (1080, -6, DECIMAL_SI, "1080u", ""),
]


@pytest.mark.parametrize("i,exp,fmt,expect,alternate", STRING_TABLE)
def test_format_canonical(i, exp, fmt, expect, alternate):
    value = dec(i, exp)
    assert format_quantity(value, fmt) == expect
    # the canonical string is kept verbatim when parsed
    assert parse(expect).text == expect
    assert canonicalize(expect) == expect
    if alternate:
        q = parse(alternate)
        assert q.text is None
        assert str(q) == expect
    if i:
        assert format_quantity(-value, fmt) == "-" + expect


@pytest.mark.parametrize(
    "text,expect",
    [
        ("1Ki", "1Ki"),
        ("1Mi", "1Mi"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1e3", "1e3"),
        ("1.5", "1500m"),
        ("1.5Gi", "1536Mi"),
        ("100m", "100m"),
        ("2000m", "2"),
        ("0.1", "100m"),
        ("128974848", "128974848"),
        ("129e6", "129e6"),
        ("123Mi", "123Mi"),
        ("1.5e3", "1500"),
        ("9Ei", "9223372036854775807"),
    ],
)
def test_parse_emit(text, expect):
    assert canonicalize(text) == expect
    if parse(text).value:
        assert canonicalize("-" + text) == "-" + expect


def test_already_canonical_input_is_kept_like_upstream():
    # Upstream reuses the input string when its fast path finds it canonical.
    assert canonicalize("+1") == "+1"
    assert canonicalize("01") == "01"
    assert canonicalize("1.") == "1."
    assert canonicalize("1E-3") == "1E-3"
    assert canonicalize("3Ki") == "3Ki"
    assert canonicalize("1025Ki") == "1025Ki"
    # ...but not when it is not canonical
    assert canonicalize("8Ki") == "8Ki" and parse("8Ki").text is None
    assert canonicalize("1000") == "1k"
    assert canonicalize("+1000m") == "1"


def test_format_unknown_format_is_decimal_exponent():
    assert format_quantity(D(1000000), "bogus") == "1e6"
    assert format_quantity(D("0.001"), "") == "1e-3"
    assert format_quantity(D(2**70), BINARY_SI) == "1180591620717411303424"
    assert format_quantity(D(2000), BINARY_SI) == "2000"
    assert format_quantity(D(-2000), BINARY_SI) == "-2000"
    assert format_quantity(D("1e-12"), DECIMAL_SI) == "1e-12"
    assert format_quantity(D("1e-10"), DECIMAL_SI) == "100e-12"
    assert format_quantity(1536 * 1024**2 + D("0.5"), BINARY_SI) == "1610612736500m"
    assert format_quantity(5, DECIMAL_SI) == "5"
    with pytest.raises(QuantityError):
        format_quantity(D("NaN"), DECIMAL_SI)


def test_canonicalize_value_accepts_json_numbers_and_whitespace():
    assert canonicalize_value(" 1") == "1"
    assert canonicalize_value("1 ") == "1"
    assert canonicalize_value(1) == "1"
    assert canonicalize_value(10) == "10"
    assert canonicalize_value(-1) == "-1"
    assert canonicalize_value(0.5) == "500m"
    assert canonicalize_value(1000) == "1k"
    for bad in (True, None, [], float("inf"), "x"):
        with pytest.raises(QuantityError):
            canonicalize_value(bad)


@pytest.mark.parametrize(
    "text,value,milli",
    [
        ("-.484785E-7466", -1, -1),
        (".484785E-7466", 1, 1),
        ("-.484785E-1", -1, -49),
        (".484785E-1", 1, 49),
        ("-0.0005", -1, -1),
        ("0.0005", 1, 1),
        ("-1500m", -2, -1500),
        ("1500m", 2, 1500),
        ("-9.5000000001Gi", -10200547329, -10200547328108),
        ("9.5000000001Gi", 10200547329, 10200547328108),
        ("-1", -1, -1000),
        ("0", 0, 0),
        ("100m", 1, 100),
    ],
)
def test_value_and_milli_value_round_away_from_zero(text, value, milli):
    q = parse(text)
    assert q.int_value() == value
    assert q.milli_value() == milli


def test_quantity_class_parse_and_str():
    q = Quantity.parse("1.5Gi")
    assert q == parse("1.5Gi")
    assert str(q) == "1536Mi"
    assert str(Quantity(D("0.25"), DECIMAL_SI)) == "250m"


# ---- properties -----------------------------------------------------------------------

nanos = st.integers(min_value=-(10**20), max_value=10**20)
formats = st.sampled_from([BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT])


@given(nanos, formats)
def test_parse_format_round_trip(n, fmt):
    """parse(format(x)) == x for any nano-precision x (within the BinarySI cap)."""
    x = D(n).scaleb(-9)
    text = format_quantity(x, fmt)
    assert parse_quantity(text) == x
    # canonical strings are fixed points, except BinarySI printed without a binary suffix: that text
    # parses back as DecimalSI (upstream: a BinarySI 5000 prints "5000", and "5000" canonicalizes to "5k")
    if fmt != BINARY_SI or text.endswith("i"):
        assert canonicalize(text) == text


def test_binary_si_without_a_binary_suffix_reparses_as_decimal():
    assert format_quantity(D(5000), BINARY_SI) == "5000"
    assert canonicalize("5000") == "5k"
    assert format_quantity(D(5120), BINARY_SI) == "5Ki"


@given(st.integers(min_value=-(2**62), max_value=2**62), st.sampled_from(["", "k", "M", "m", "u", "n", "Ki", "Mi", "Gi", "e3", "e-6"]))
def test_canonicalize_is_idempotent_and_value_preserving(i, suffix):
    text = f"{i}{suffix}"
    once = canonicalize(text)
    assert canonicalize(once) == once
    assert parse_quantity(once) == parse_quantity(text)


@given(st.from_regex(r"[+-]?[0-9]{0,6}(\.[0-9]{0,12})?([eE][+-]?[0-9]{1,2}|[numkMGTPE]|[KMGTPE]i)?", fullmatch=True))
def test_generated_strings_parse_consistently(text):
    try:
        q = parse(text)
    except QuantityError:
        return
    assert parse_quantity(str(q)) == q.value
    # nano precision: value * 1e9 is an integer
    assert (q.value * 10**9) == (q.value * 10**9).to_integral_value()
