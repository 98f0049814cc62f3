"""Validators and field errors with upstream Kubernetes wording.

Mirrors k8s.io/apimachinery/pkg/util/validation (the string validators),
k8s.io/apimachinery/pkg/util/validation/field (``field.Error`` and its rendering)
and k8s.io/apimachinery/pkg/api/validation (ObjectMeta validation).

Every ``is_*`` validator returns a list of messages: empty means valid.  Lengths are
measured in bytes of UTF-8, as Go's ``len`` does.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

# --------------------------------------------------------------------------------------
# Message helpers (util/validation: MaxLenError, RegexError, EmptyError, ...)
# --------------------------------------------------------------------------------------

# Upstream releases say "characters"; the newest apimachinery ``content`` package has
# started to say "bytes" for label keys/values.  One switch keeps the wording uniform.
MAX_LEN_UNIT = "characters"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} {MAX_LEN_UNIT}"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Upstream RegexError, including its double space between examples."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            out += " or "
        out += "'" + example + "', "
    return out + "regex used for validation is '" + fmt + "')"


def empty_error() -> str:
    return "must be non-empty"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def _blen(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _full(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


# --------------------------------------------------------------------------------------
# DNS names
# --------------------------------------------------------------------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
DNS1035_LABEL_MAX_LENGTH = 63

_DNS1123_LABEL_RE = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(DNS1035_LABEL_FMT)


def is_dns1123_label(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _full(_DNS1123_LABEL_RE, value):
        if _full(_DNS1123_SUBDOMAIN_RE, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _full(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _full(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


# --------------------------------------------------------------------------------------
# Label keys ("qualified names") and values
# --------------------------------------------------------------------------------------

QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
LABEL_VALUE_MAX_LENGTH = 63

_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_FMT)


def is_qualified_name(value: str) -> list[str]:
    """A label key: optional DNS-subdomain prefix and '/', then a name of <= 63."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a valid label key "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif _blen(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _full(_QUALIFIED_NAME_RE, name):
        errs.append(
            "name part "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


is_label_key = is_qualified_name


def is_valid_label_value(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --------------------------------------------------------------------------------------
# Identifiers, env vars, keys, ports, percent
# --------------------------------------------------------------------------------------

C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"
C_IDENTIFIER_ERR = (
    "a valid C identifier must start with alphabetic character or '_', "
    "followed by a string of alphanumeric characters or '_'"
)
ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
ENV_VAR_NAME_ERR = (
    "a valid environment variable name must consist of alphabetic characters, digits, "
    "'_', '-', or '.', and must not start with a digit"
)
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_MAP_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
PERCENT_FMT = "[0-9]+%"
PERCENT_ERR = "a valid percent string must be a numeric string followed by an ending '%'"

_C_IDENTIFIER_RE = re.compile(C_IDENTIFIER_FMT)
_ENV_VAR_NAME_RE = re.compile(ENV_VAR_NAME_FMT)
_CONFIG_MAP_KEY_RE = re.compile(CONFIG_MAP_KEY_FMT)
_PERCENT_RE = re.compile(PERCENT_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER_RE = re.compile("[a-z]")


def is_c_identifier(value: str) -> list[str]:
    if not _full(_C_IDENTIFIER_RE, value):
        return [regex_error(C_IDENTIFIER_ERR, C_IDENTIFIER_FMT, "my_name", "MY_NAME", "MyName")]
    return []


def _has_chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_env_var_name(value: str) -> list[str]:
    """Upstream IsEnvVarName (container env names, configMapRef prefixes)."""
    errs: list[str] = []
    if not _full(_ENV_VAR_NAME_RE, value):
        errs.append(
            regex_error(ENV_VAR_NAME_ERR, ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1")
        )
    errs.extend(_has_chdir_prefix(value))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _full(_CONFIG_MAP_KEY_RE, value):
        errs.append(regex_error(CONFIG_MAP_KEY_ERR, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    errs.extend(_has_chdir_prefix(value))
    return errs


def is_valid_port_num(port: int) -> list[str]:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return [inclusive_range_error(1, 65535)]


def is_in_range(value: int, lo: int, hi: int) -> list[str]:
    if lo <= value <= hi:
        return []
    return [inclusive_range_error(lo, hi)]


def is_valid_port_name(port: str) -> list[str]:
    errs: list[str] = []
    if _blen(port) > 15:
        errs.append(max_len_error(15))
    if not _full(_PORT_NAME_CHARSET_RE, port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER_RE.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(percent: str) -> list[str]:
    if not _full(_PERCENT_RE, percent):
        return [regex_error(PERCENT_ERR, PERCENT_FMT, "1%", "93%")]
    return []


# --------------------------------------------------------------------------------------
# IP addresses and CIDRs (netutils.ParseIPSloppy / ParseCIDRSloppy semantics)
# --------------------------------------------------------------------------------------

IP_ERR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CIDR_ERR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
_SLOPPY_V4_RE = re.compile(r"[0-9]+(\.[0-9]+){3}")


def _sloppy_v4(text: str) -> str | None:
    """IPv4 dotted quad allowing leading zeros (read as decimal), like Go's old parser."""
    if not _full(_SLOPPY_V4_RE, text):
        return None
    octets = [int(p) for p in text.split(".")]
    if any(o > 255 for o in octets):
        return None
    return ".".join(str(o) for o in octets)


def parse_ip_sloppy(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value or "%" in value or value.strip() != value:
        return None
    if ":" not in value:
        v4 = _sloppy_v4(value)
        return ipaddress.IPv4Address(v4) if v4 is not None else None
    text = value
    head, sep, tail = value.rpartition(":")
    if sep and "." in tail:
        v4 = _sloppy_v4(tail)
        if v4 is None:
            return None
        text = head + ":" + v4
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def is_valid_ip(value: str) -> list[str]:
    return [] if parse_ip_sloppy(value) is not None else [IP_ERR]


def is_valid_cidr(value: str) -> list[str]:
    addr_text, sep, bits = value.partition("/")
    if not sep or not bits.isascii() or not bits.isdigit():
        return [CIDR_ERR]
    ip = parse_ip_sloppy(addr_text)
    if ip is None:
        return [CIDR_ERR]
    if int(bits) > ip.max_prefixlen:
        return [CIDR_ERR]
    return []


# --------------------------------------------------------------------------------------
# Go value rendering (what field.Error prints for BadValue)
# --------------------------------------------------------------------------------------


def go_quote(s: str) -> str:
    """strconv.Quote: Go double-quoted string literal."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def go_float(f: float) -> str:
    """fmt %v of a float64 (shortest repr, exponent form outside [1e-4, 1e21))."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    d = Decimal(repr(f))
    exp = d.adjusted()
    sign, digits, _ = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 21:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{prefix}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    plain = format(abs(d), "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return prefix + plain


class GoValue:
    """A bad value whose Go rendering is already known (printed verbatim)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
"""Bad value marker meaning "do not print a value" (upstream omitValue)."""


def _go_elem(v: Any) -> str:
    if isinstance(v, str):
        return go_quote(v)
    return go_value(v)


def go_value(v: Any) -> str:
    """Render a JSON-ish value the way field.Error prints BadValue (%v / %q / %#v)."""
    if isinstance(v, GoValue):
        return v.text
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, str) for x in v):
            return "[]string{" + ", ".join(go_quote(x) for x in v) + "}"
        return "[]interface {}{" + ", ".join(_go_elem(x) for x in v) + "}"
    if isinstance(v, dict):
        keys = sorted(v, key=str)
        if all(isinstance(k, str) for k in v) and all(isinstance(x, str) for x in v.values()):
            body = ", ".join(f"{go_quote(k)}:{go_quote(v[k])}" for k in keys)
            return "map[string]string{" + body + "}"
        body = ", ".join(f"{go_quote(str(k))}:{_go_elem(v[k])}" for k in keys)
        return "map[string]interface {}{" + body + "}"
    return str(v)


# --------------------------------------------------------------------------------------
# field.Path and field.Error
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """field.Path: ``Path("spec").child("containers").index(0).child("name")``."""

    name: str = ""
    index_: str | None = None
    parent: "Path | None" = None

    @staticmethod
    def new(name: str, *more: str) -> "Path":
        p = Path(name)
        for n in more:
            p = Path(n, None, p)
        return p

    def child(self, name: str, *more: str) -> "Path":
        p = Path(name, None, self)
        for n in more:
            p = Path(n, None, p)
        return p

    def index(self, i: int) -> "Path":
        return Path("", str(i), self)

    def key(self, k: str) -> "Path":
        return Path("", k, self)

    def __str__(self) -> str:
        elems: list[Path] = []
        p: Path | None = self
        while p is not None:
            elems.append(p)
            p = p.parent
        out = []
        for e in reversed(elems):
            if e.index_ is None:
                if e.parent is not None and e.name:
                    out.append(".")
                out.append(e.name)
            else:
                out.append(f"[{e.index_}]")
        return "".join(out)


REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
DUPLICATE = "FieldValueDuplicate"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_FOUND = "FieldValueNotFound"
INTERNAL = "InternalError"

ERROR_TYPE_STRINGS = {
    NOT_FOUND: "Not found",
    REQUIRED: "Required value",
    DUPLICATE: "Duplicate value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    INTERNAL: "Internal error",
    TYPE_INVALID: "Invalid value",
}


def _path_str(path: "str | Path | None") -> str:
    if path is None:
        return "<nil>"
    return str(path)


@dataclass
class FieldError:
    """upstream field.Error: ``type`` is the Status cause reason string."""

    type: str
    field: str
    bad_value: Any = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.type not in ERROR_TYPE_STRINGS:
            raise ValueError(f"unrecognized validation error: {self.type!r}")
        if not isinstance(self.field, str):
            self.field = _path_str(self.field)

    def body(self) -> str:
        """ErrorBody(): the message without the field name (a Status cause's message)."""
        label = ERROR_TYPE_STRINGS[self.type]
        if self.type in (REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL) or self.bad_value is OMIT:
            s = label
        else:
            s = f"{label}: {go_value(self.bad_value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def message(self) -> str:
        """Error(): ``<field>: <body>``."""
        return f"{self.field}: {self.body()}"

    def __str__(self) -> str:
        return self.message()

    def to_cause(self) -> dict[str, str]:
        """metav1.StatusCause as upstream's NewInvalid builds it."""
        return {"reason": self.type, "message": self.body(), "field": self.field}


def required(path: "str | Path | None", detail: str = "") -> FieldError:
    return FieldError(REQUIRED, _path_str(path), "", detail)


def invalid(path: "str | Path | None", value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, _path_str(path), value, detail)


def duplicate(path: "str | Path | None", value: Any) -> FieldError:
    return FieldError(DUPLICATE, _path_str(path), value, "")


def not_supported(path: "str | Path | None", value: Any, valid: Iterable[str]) -> FieldError:
    valid = list(valid)
    detail = ""
    if valid:
        detail = "supported values: " + ", ".join(go_quote(v) for v in valid)
    return FieldError(NOT_SUPPORTED, _path_str(path), value, detail)


def forbidden(path: "str | Path | None", detail: str) -> FieldError:
    return FieldError(FORBIDDEN, _path_str(path), "", detail)


def too_long(path: "str | Path | None", value: Any, max_length: int) -> FieldError:
    return FieldError(TOO_LONG, _path_str(path), value, f"must have at most {max_length} bytes")


def too_long_max_length(path: "str | Path | None", value: Any, max_length: int) -> FieldError:
    detail = f"may not be longer than {max_length}" if max_length >= 0 else "value is too long"
    return FieldError(TOO_LONG, _path_str(path), value, detail)


def too_many(path: "str | Path | None", actual: int, max_quantity: int) -> FieldError:
    detail = f"must have at most {max_quantity} items" if max_quantity >= 0 else "has too many items"
    return FieldError(TOO_MANY, _path_str(path), actual if actual >= 0 else OMIT, detail)


def type_invalid(path: "str | Path | None", value: Any, detail: str) -> FieldError:
    return FieldError(TYPE_INVALID, _path_str(path), value, detail)


def not_found(path: "str | Path | None", value: Any) -> FieldError:
    return FieldError(NOT_FOUND, _path_str(path), value, "")


def internal_error(path: "str | Path | None", err: BaseException | str) -> FieldError:
    return FieldError(INTERNAL, _path_str(path), None, str(err))


def aggregate(errors: Iterable[Any]) -> str:
    """ErrorList.ToAggregate().Error(): one message, or ``[m1, m2]`` (duplicates dropped)."""
    msgs: list[str] = []
    for e in errors:
        m = e.message() if isinstance(e, FieldError) else str(e)
        if m not in msgs:
            msgs.append(m)
    if not msgs:
        return ""
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"


# --------------------------------------------------------------------------------------
# Name validators (ValidateNameFunc: (name, prefix) -> messages)
# --------------------------------------------------------------------------------------

NameValidator = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    # Upstream replaces the last two characters with "a" (sic).
    if name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


validate_namespace_name = name_is_dns_label


# --------------------------------------------------------------------------------------
# ObjectMeta
# --------------------------------------------------------------------------------------

FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)
IS_NEGATIVE_ERROR_MSG = "must be greater than or equal to 0"
FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"
FIELD_MANAGER_MAX_LENGTH = 128
MAX_SUBRESOURCE_NAME_LENGTH = 256


def _as_path(path: "str | Path") -> Path:
    if isinstance(path, Path):
        return path
    parts = path.split(".")
    return Path.new(parts[0], *parts[1:])


def _as_dict(meta: Any) -> dict:
    return meta if isinstance(meta, dict) else {}


def validate_labels(labels: Any, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [type_invalid(path, labels, "must be a map of string to string")]
    for k, v in labels.items():
        for msg in is_qualified_name(k):
            errs.append(invalid(path, k, msg))
        if not isinstance(v, str):
            errs.append(type_invalid(_as_path(path).key(k), v, "must be a string"))
            continue
        for msg in is_valid_label_value(v):
            errs.append(invalid(path, v, msg))
    return errs


def validate_annotations(annotations: Any, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if annotations is None:
        return errs
    if not isinstance(annotations, dict):
        return [type_invalid(path, annotations, "must be a map of string to string")]
    total = 0
    for k, v in annotations.items():
        # QualifiedName rules, but case does not matter.
        for msg in is_qualified_name(k.lower()):
            errs.append(invalid(path, k, msg))
        total += _blen(k) + (_blen(v) if isinstance(v, str) else 0)
        if not isinstance(v, str):
            errs.append(type_invalid(_as_path(path).key(k), v, "must be a string"))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return errs


def _go_ptr(v: Any, typ: str) -> str:
    if v is None:
        return f"(*{typ})(nil)"
    return f"&{go_value(v)}"


def _owner_ref_go(ref: dict) -> str:
    return (
        "v1.OwnerReference{"
        f"APIVersion:{go_quote(str(ref.get('apiVersion') or ''))}, "
        f"Kind:{go_quote(str(ref.get('kind') or ''))}, "
        f"Name:{go_quote(str(ref.get('name') or ''))}, "
        f"UID:{go_quote(str(ref.get('uid') or ''))}, "
        f"Controller:{_go_ptr(ref.get('controller'), 'bool')}, "
        f"BlockOwnerDeletion:{_go_ptr(ref.get('blockOwnerDeletion'), 'bool')}}}"
    )


def _parse_group_version(api_version: str) -> tuple[str, str]:
    """schema.FromAPIVersionAndKind's group/version split (errors give empty gv)."""
    if not api_version:
        return "", ""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", api_version
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def validate_owner_references(refs: Any, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if refs is None:
        return errs
    if not isinstance(refs, list):
        return [type_invalid(path, refs, "must be a list of owner references")]
    p = _as_path(path)
    first_controller = ""
    for ref in refs:
        ref = _as_dict(ref)
        api_version = str(ref.get("apiVersion") or "")
        kind = str(ref.get("kind") or "")
        group, version = _parse_group_version(api_version)
        if not version:
            errs.append(invalid(p.child("apiVersion"), api_version, "version must not be empty"))
        if not kind:
            errs.append(invalid(p.child("kind"), kind, "must not be empty"))
        if not ref.get("name"):
            errs.append(invalid(p.child("name"), str(ref.get("name") or ""), "must not be empty"))
        if not ref.get("uid"):
            errs.append(invalid(p.child("uid"), str(ref.get("uid") or ""), "must not be empty"))
        if (group, version, kind) == ("", "v1", "Event"):
            errs.append(
                invalid(
                    p,
                    GoValue(_owner_ref_go(ref)),
                    f"{group}/{version}, Kind={kind} is disallowed from being an owner",
                )
            )
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name') or ''}"
            if first_controller:
                all_refs = GoValue(
                    "[]v1.OwnerReference{" + ", ".join(_owner_ref_go(_as_dict(r)) for r in refs) + "}"
                )
                errs.append(
                    invalid(
                        p,
                        all_refs,
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {first_controller} and {current}',
                    )
                )
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Any, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if finalizers is None:
        return errs
    if not isinstance(finalizers, list):
        return [type_invalid(path, finalizers, "must be a list of strings")]
    for f in finalizers:
        if not isinstance(f, str):
            errs.append(type_invalid(path, f, "must be a string"))
            continue
        for msg in is_qualified_name(f):
            errs.append(invalid(path, f, msg))
    if FINALIZER_ORPHAN_DEPENDENTS in finalizers and FINALIZER_DELETE_DEPENDENTS in finalizers:
        errs.append(
            invalid(
                path,
                finalizers,
                f"finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} "
                "cannot be both set",
            )
        )
    return errs


def validate_field_manager(manager: str, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if _blen(manager) > FIELD_MANAGER_MAX_LENGTH:
        errs.append(too_long(path, manager, FIELD_MANAGER_MAX_LENGTH))
    pos = 0
    for ch in manager:
        if not (ch == " " or ch.isprintable()):
            errs.append(
                invalid(path, manager, f"invalid character U+{ord(ch):04X} (at position {pos})")
            )
        pos += _blen(ch)
    return errs


def validate_managed_fields(entries: Any, path: "str | Path") -> list[FieldError]:
    errs: list[FieldError] = []
    if entries is None:
        return errs
    if not isinstance(entries, list):
        return [type_invalid(path, entries, "must be a list of managed fields entries")]
    p = _as_path(path)
    for i, entry in enumerate(entries):
        entry = _as_dict(entry)
        ep = p.index(i)
        op = entry.get("operation") or ""
        if op not in ("Apply", "Update"):
            errs.append(invalid(ep.child("operation"), op, "must be `Apply` or `Update`"))
        ftype = entry.get("fieldsType") or ""
        if ftype and ftype != "FieldsV1":
            errs.append(invalid(ep.child("fieldsType"), ftype, "must be `FieldsV1`"))
        errs.extend(validate_field_manager(str(entry.get("manager") or ""), ep.child("manager")))
        sub = str(entry.get("subresource") or "")
        if _blen(sub) > MAX_SUBRESOURCE_NAME_LENGTH:
            errs.append(too_long(ep.child("subresource"), sub, MAX_SUBRESOURCE_NAME_LENGTH))
    return errs


def _validate_meta_common(meta: dict, namespaced: bool, p: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errs.append(required(p.child("namespace"), ""))
        else:
            for msg in validate_namespace_name(namespace, False):
                errs.append(invalid(p.child("namespace"), namespace, msg))
    elif namespace:
        errs.append(forbidden(p.child("namespace"), "not allowed on this type"))
    generation = meta.get("generation") or 0
    if isinstance(generation, int) and generation < 0:
        errs.append(invalid(p.child("generation"), generation, IS_NEGATIVE_ERROR_MSG))
    errs.extend(validate_labels(meta.get("labels"), p.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), p.child("annotations")))
    errs.extend(validate_owner_references(meta.get("ownerReferences"), p.child("ownerReferences")))
    errs.extend(validate_finalizers(meta.get("finalizers"), p.child("finalizers")))
    errs.extend(validate_managed_fields(meta.get("managedFields"), p.child("managedFields")))
    return errs


def validate_object_meta(
    meta: dict | None,
    namespaced: bool,
    name_validator: NameValidator = name_is_dns_subdomain,
    path: "str | Path" = "metadata",
) -> list[FieldError]:
    """ValidateObjectMeta on create (name generation is expected to have happened).

    ``name_validator(name, prefix)`` returns messages, like upstream ValidateNameFunc;
    ``generateName`` is checked with ``prefix=True``.
    """
    meta = _as_dict(meta)
    p = _as_path(path)
    errs: list[FieldError] = []
    generate_name = meta.get("generateName") or ""
    if generate_name:
        for msg in name_validator(generate_name, True):
            errs.append(invalid(p.child("generateName"), generate_name, msg))
    name = meta.get("name") or ""
    if not name:
        errs.append(required(p.child("name"), "name or generateName is required"))
    else:
        for msg in name_validator(name, False):
            errs.append(invalid(p.child("name"), name, msg))
    errs.extend(_validate_meta_common(meta, namespaced, p))
    return errs


_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def go_time_string(ts: str | None) -> str:
    """time.Time.String() of a metav1.Time decoded from RFC 3339 (server in UTC)."""
    if not ts:
        return "0001-01-01 00:00:00 +0000 UTC"
    m = _RFC3339_RE.fullmatch(ts)
    if not m:
        return ts
    frac = m.group(7) or ""
    try:
        dt = datetime.fromisoformat(ts[: m.start(7)] if frac else ts[: m.end(6)]).replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        return ts
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        dt = dt - sign * timedelta(hours=hh, minutes=mm)
    frac_digits = frac[1:].rstrip("0")
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac_digits}" if frac_digits else "") + " +0000 UTC"


def _immutable(new: Any, old: Any, path: Path, shown: Any) -> list[FieldError]:
    if new != old:
        return [invalid(path, shown, FIELD_IMMUTABLE_ERROR_MSG)]
    return []


def validate_object_meta_update(
    new: dict | None, old: dict | None, path: "str | Path" = "metadata"
) -> list[FieldError]:
    """ValidateObjectMetaUpdate: immutables, resourceVersion, generation, finalizers."""
    new = _as_dict(new)
    old = _as_dict(old)
    p = _as_path(path)
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        new_f = set(new.get("finalizers") or [])
        extra = sorted(new_f - set(old.get("finalizers") or []))
        if extra:
            errs.append(
                forbidden(
                    p.child("finalizers"),
                    "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {go_value(extra)}",
                )
            )
    rv = new.get("resourceVersion") or ""
    if not rv:
        errs.append(invalid(p.child("resourceVersion"), rv, "must be specified for an update"))
    new_gen = new.get("generation") or 0
    old_gen = old.get("generation") or 0
    if isinstance(new_gen, int) and isinstance(old_gen, int) and new_gen < old_gen:
        errs.append(invalid(p.child("generation"), new_gen, "must not be decremented"))

    for key in ("name", "namespace", "uid"):
        nv, ov = new.get(key) or "", old.get(key) or ""
        errs.extend(_immutable(nv, ov, p.child(key), nv))
    nct, oct_ = new.get("creationTimestamp") or "", old.get("creationTimestamp") or ""
    errs.extend(_immutable(nct, oct_, p.child("creationTimestamp"), GoValue(go_time_string(nct))))
    ndt, odt = new.get("deletionTimestamp"), old.get("deletionTimestamp")
    shown_dt = GoValue(go_time_string(ndt)) if ndt else None
    errs.extend(_immutable(ndt or None, odt or None, p.child("deletionTimestamp"), shown_dt))
    ngp, ogp = new.get("deletionGracePeriodSeconds"), old.get("deletionGracePeriodSeconds")
    errs.extend(_immutable(ngp, ogp, p.child("deletionGracePeriodSeconds"), ngp))

    errs.extend(validate_labels(new.get("labels"), p.child("labels")))
    errs.extend(validate_annotations(new.get("annotations"), p.child("annotations")))
    errs.extend(validate_owner_references(new.get("ownerReferences"), p.child("ownerReferences")))
    errs.extend(validate_managed_fields(new.get("managedFields"), p.child("managedFields")))
    return errs


__all__ = [
    "FieldError",
    "GoValue",
    "OMIT",
    "Path",
    "aggregate",
    "duplicate",
    "forbidden",
    "go_quote",
    "go_value",
    "internal_error",
    "invalid",
    "is_c_identifier",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_in_range",
    "is_label_key",
    "is_qualified_name",
    "is_valid_cidr",
    "is_valid_ip",
    "is_valid_label_value",
    "is_valid_percent",
    "is_valid_port_name",
    "is_valid_port_num",
    "max_len_error",
    "name_is_dns1035_label",
    "name_is_dns_label",
    "name_is_dns_subdomain",
    "not_found",
    "not_supported",
    "regex_error",
    "required",
    "too_long",
    "too_long_max_length",
    "too_many",
    "type_invalid",
    "validate_annotations",
    "validate_finalizers",
    "validate_labels",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_owner_references",
]
