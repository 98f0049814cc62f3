"""Label and field selectors with upstream grammar, semantics and error wording.

Label selectors follow k8s.io/apimachinery/pkg/labels/selector.go (lexer, parser,
NewRequirement validation, canonical String()); ``label_selector_from_api`` follows
metav1.LabelSelectorAsSelector.  Field selectors follow pkg/fields/selector.go
(comma-separated ``=``/``==``/``!=`` terms with ``\\,`` ``\\=`` ``\\\\`` escaping).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from .validation import (
    FieldError,
    Path,
    aggregate,
    go_quote,
    invalid,
    is_qualified_name,
    is_valid_label_value,
    not_supported,
    GoValue,
)


class SelectorError(ValueError):
    """A selector that cannot be parsed or built; ``str()`` is upstream's error text."""


# selection.Operator values
DOES_NOT_EXIST = "!"
EQUALS = "="
DOUBLE_EQUALS = "=="
IN = "in"
NOT_EQUALS = "!="
NOT_IN = "notin"
EXISTS = "exists"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]
_UNARY_OPERATORS = [EXISTS, DOES_NOT_EXIST]
_VALID_OPERATORS = _BINARY_OPERATORS + _UNARY_OPERATORS
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _parse_int64(s: str) -> int | None:
    if not _GO_INT_RE.fullmatch(s):
        return None
    n = int(s)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def _go_strings(values: Iterable[str] | None) -> GoValue:
    vals = list(values or [])
    if values is None:
        return GoValue("[]string(nil)")
    return GoValue("[]string{" + ", ".join(go_quote(v) for v in vals) + "}")


# --------------------------------------------------------------------------------------
# Requirements and label selectors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; build with :func:`new_requirement` to validate."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have = _parse_int64(labels[self.key])
            want = _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        out = ("!" if op == DOES_NOT_EXIST else "") + self.key
        if op in (EXISTS, DOES_NOT_EXIST):
            return out
        out += {
            EQUALS: "=",
            DOUBLE_EQUALS: "==",
            NOT_EQUALS: "!=",
            IN: " in ",
            NOT_IN: " notin ",
            GREATER_THAN: ">",
            LESS_THAN: "<",
        }.get(op, "")
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{out}({vals})"
        return out + vals


_MSG_IN_EMPTY = "for 'in', 'notin' operators, values set can't be empty"
_MSG_EXACT_ONE = "exact-match compatibility requires one single value"
_MSG_EXISTS_EMPTY = "values set must be empty for exists and does not exist"
_MSG_GTLT_ONE = "for 'Gt', 'Lt' operators, exactly one value is required"
_MSG_GTLT_INT = "for 'Gt', 'Lt' operators, the value must be an integer"


def _key_error(key: str, path: Path | None) -> FieldError | None:
    errs = is_qualified_name(key)
    if errs:
        return invalid(path, key, "; ".join(errs))
    return None


def new_requirement(
    key: str, operator: str, values: Iterable[str] | None, path: Path | None = None
) -> Requirement:
    """labels.NewRequirement: validates key, operator arity and values.

    ``values=None`` stands for a nil Go slice (as LabelSelectorAsSelector passes when
    ``values`` is absent); it only changes how an error prints the value.
    """
    vals = list(values) if values is not None else None
    vlist = vals or []
    errs: list[FieldError] = []
    kerr = _key_error(key, path.child("key") if path else Path("key"))
    if kerr:
        errs.append(kerr)
    vpath = path.child("values") if path else Path("values")
    if operator in (IN, NOT_IN):
        if not vlist:
            errs.append(invalid(vpath, _go_strings(vals), _MSG_IN_EMPTY))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vlist) != 1:
            errs.append(invalid(vpath, _go_strings(vals), _MSG_EXACT_ONE))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vlist:
            errs.append(invalid(vpath, _go_strings(vals), _MSG_EXISTS_EMPTY))
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vlist) != 1:
            errs.append(invalid(vpath, _go_strings(vals), _MSG_GTLT_ONE))
        for i, v in enumerate(vlist):
            if _parse_int64(v) is None:
                errs.append(invalid(vpath.index(i), v, _MSG_GTLT_INT))
    else:
        op_path = path.child("operator") if path else Path("operator")
        errs.append(not_supported(op_path, operator, _VALID_OPERATORS))
    for i, v in enumerate(vlist):
        msgs = is_valid_label_value(v)
        if msgs:
            errs.append(invalid(vpath.index(i).key(key), v, "; ".join(msgs)))
    if errs:
        raise SelectorError(aggregate(errs))
    return Requirement(key, operator, tuple(vlist))


class LabelSelector:
    """An AND of requirements, or the selector that matches nothing."""

    __slots__ = ("_reqs", "_nothing")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        # Stable sort by key, as upstream sorts requirements ByKey.
        self._reqs: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing

    @classmethod
    def everything(cls) -> "LabelSelector":
        return cls()

    @classmethod
    def nothing(cls) -> "LabelSelector":
        return cls(nothing=True)

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return self._reqs

    @property
    def empty(self) -> bool:
        """True if the selector does not restrict the selection space."""
        return not self._nothing and not self._reqs

    @property
    def matches_nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        return all(r.matches(labels) for r in self._reqs)

    def add(self, *reqs: Requirement) -> "LabelSelector":
        if self._nothing:
            return self
        return LabelSelector(self._reqs + reqs)

    def requires_exact_match(self, label: str) -> str | None:
        """The single value a ``=``/``==``/``in (v)`` requirement on ``label`` demands."""
        for r in self._reqs:
            if r.key == label:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._reqs)

    def __repr__(self) -> str:
        return "LabelSelector(nothing)" if self._nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LabelSelector)
            and other._nothing == self._nothing
            and other._reqs == self._reqs
        )

    def __hash__(self) -> int:
        return hash((self._nothing, self._reqs))


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """SelectorFromSet: equality on every pair, unvalidated; empty/None selects all."""
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items())


def validated_selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    return LabelSelector(new_requirement(k, EQUALS, [v]) for k, v in (labels or {}).items())


# ---- lexer ---------------------------------------------------------------------------

(_ERROR, _EOS, _CLOSED_PAR, _COMMA, _NOT, _DOUBLE_EQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN,
 _OPEN_PAR) = range(14)
_STRING2TOKEN = {
    ")": _CLOSED_PAR,
    ",": _COMMA,
    "!": _NOT,
    "==": _DOUBLE_EQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN_PAR,
}
_WHITESPACE = " \t\r\n"
_SPECIAL = "=!(),><"


class _Lexer:
    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0

    def read(self) -> str:
        # Go returns byte 0 at the end; a NUL in the input therefore also ends a token.
        if self.pos < len(self.s):
            ch = self.s[self.pos]
            self.pos += 1
            return ch
        return "\0"

    def unread(self) -> None:
        self.pos -= 1

    def lex(self) -> tuple[int, str]:
        ch = self.read()
        while ch in _WHITESPACE:
            ch = self.read()
        if ch == "\0":
            return _EOS, ""
        self.unread()
        if ch in _SPECIAL:
            return self._special()
        return self._ident()

    def _ident(self) -> tuple[int, str]:
        buf = []
        while True:
            ch = self.read()
            if ch == "\0":
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self.unread()
                break
            buf.append(ch)
        s = "".join(buf)
        return _STRING2TOKEN.get(s, _IDENT), s

    def _special(self) -> tuple[int, str]:
        buf = ""
        last: tuple[int, str] | None = None
        while True:
            ch = self.read()
            if ch == "\0":
                break
            if ch in _SPECIAL:
                buf += ch
                if buf in _STRING2TOKEN:
                    last = (_STRING2TOKEN[buf], buf)
                elif last is not None:
                    self.unread()
                    break
            else:
                self.unread()
                break
        if last is None:
            return _ERROR, f"error expected: keyword found '{buf}'"
        return last


# ---- parser --------------------------------------------------------------------------

_KEY_AND_OPERATOR, _VALUES = 0, 1


class _ParseError(Exception):
    pass


class _Parser:
    def __init__(self, s: str) -> None:
        lexer = _Lexer(s)
        self.items: list[tuple[int, str]] = []
        while True:
            tok = lexer.lex()
            self.items.append(tok)
            if tok[0] == _EOS:
                break
        self.position = 0

    def _ctx(self, tok: tuple[int, str], context: int) -> tuple[int, str]:
        if context == _VALUES and tok[0] in (_IN, _NOTIN):
            return _IDENT, tok[1]
        return tok

    def lookahead(self, context: int) -> tuple[int, str]:
        return self._ctx(self.items[self.position], context)

    def consume(self, context: int) -> tuple[int, str]:
        self.position += 1
        return self._ctx(self.items[self.position - 1], context)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(_VALUES)
            if tok in (_IDENT, _NOT):
                try:
                    reqs.append(self.parse_requirement())
                except (_ParseError, SelectorError) as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, l = self.consume(_VALUES)
                if t == _EOS:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead(_VALUES)
                    if t2 not in (_IDENT, _NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{l}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, op = self.parse_key_and_infer_operator()
        if op in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, op, [])
        op = self.parse_operator()
        if op in (IN, NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return new_requirement(key, op, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, str]:
        op = ""
        tok, lit = self.consume(_VALUES)
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.consume(_VALUES)
        if tok != _IDENT:
            raise _ParseError(f"found '{lit}', expected: identifier")
        err = _key_error(lit, None)
        if err:
            raise _ParseError(err.message())
        t, _ = self.lookahead(_VALUES)
        if t in (_EOS, _COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        return lit, op

    def parse_operator(self) -> str:
        tok, lit = self.consume(_KEY_AND_OPERATOR)
        op = {
            _IN: IN,
            _EQ: EQUALS,
            _DOUBLE_EQ: DOUBLE_EQUALS,
            _GT: GREATER_THAN,
            _LT: LESS_THAN,
            _NOTIN: NOT_IN,
            _NEQ: NOT_EQUALS,
        }.get(tok)
        if op is None:
            raise _ParseError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return op

    def parse_values(self) -> set[str]:
        tok, lit = self.consume(_VALUES)
        if tok != _OPEN_PAR:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(_VALUES)
        if tok in (_IDENT, _COMMA):
            s = self.parse_identifiers_list()
            if self.consume(_VALUES)[0] != _CLOSED_PAR:
                raise _ParseError(f"found '{lit}', expected: ')'")
            return s
        if tok == _CLOSED_PAR:
            self.consume(_VALUES)
            return {""}
        raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.consume(_VALUES)
            if tok == _IDENT:
                s.add(lit)
                tok2, lit2 = self.lookahead(_VALUES)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSED_PAR:
                    return s
                raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not s:
                    s.add("")  # "(,"
                tok2, _ = self.lookahead(_VALUES)
                if tok2 == _CLOSED_PAR:
                    s.add("")  # ",)"
                    return s
                if tok2 == _COMMA:
                    s.add("")  # ",,"
                continue
            raise _ParseError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead(_VALUES)
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume(_VALUES)
        if tok == _IDENT:
            return {lit}
        raise _ParseError(f"found '{lit}', expected: identifier")


def parse_label_selector(s: str) -> LabelSelector:
    """labels.Parse: ``a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1``; "" selects all."""
    return LabelSelector(_Parser(s).parse())


_API_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_api(sel: Mapping | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} selects everything."""
    if sel is None:
        return LabelSelector.nothing()
    if not isinstance(sel, Mapping):
        raise SelectorError("label selector must be an object")
    match_labels = sel.get("matchLabels") or {}
    match_exprs = sel.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(match_exprs, list):
        raise SelectorError("label selector must be an object")
    if not match_labels and not match_exprs:
        return LabelSelector.everything()
    reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in match_exprs:
        expr = expr if isinstance(expr, Mapping) else {}
        api_op = expr.get("operator") or ""
        op = _API_OPERATORS.get(api_op)
        if op is None:
            raise SelectorError(f"{go_quote(str(api_op))} is not a valid pod selector operator")
        values = expr.get("values")
        reqs.append(new_requirement(str(expr.get("key") or ""), op, list(values) if values else None))
    return LabelSelector(reqs)


def label_selector_to_string(sel: Mapping | None) -> str:
    """metav1.FormatLabelSelector: ``<none>`` for an empty string, ``<error>`` on error."""
    try:
        s = str(label_selector_from_api(sel))
    except SelectorError:
        return "<error>"
    return s or "<none>"


# --------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------


def escape_field_value(s: str) -> str:
    """fields.EscapeValue: backslash-escape ``\\``, ``,`` and ``=``."""
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(s: str) -> str:
    """fields.UnescapeValue."""
    if not any(c in s for c in "\\,="):
        return s
    out = []
    in_slash = False
    for c in s:
        if in_slash:
            if c in "\\,=":
                out.append(c)
            else:
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            # Upstream prints the rune with %v, i.e. its code point number.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    if not s:
        return []
    terms = []
    start = 0
    in_slash = False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


_TERM_OPERATORS = ("!=", "==", "=")


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in _TERM_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


@dataclass(frozen=True)
class FieldSelector:
    """An AND of ``field=value`` / ``field!=value`` terms (ops normalized to = and !=)."""

    terms: tuple[tuple[str, str, str], ...] = ()

    @property
    def requirements(self) -> list[tuple[str, str, str]]:
        return list(self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, fields: Mapping[str, str] | None) -> bool:
        fields = fields or {}
        for f, op, v in self.terms:
            have = fields.get(f, "")
            if (have == v) != (op == "="):
                return False
        return True

    def exact_match(self, field: str) -> str | None:
        """RequiresExactMatch: the value of the first ``field=value`` term, if any."""
        for f, op, v in self.terms:
            if f == field and op == "=":
                return v
        return None

    def transform(self, fn: Callable[[str, str], tuple[str, str]]) -> "FieldSelector":
        """Apply ``fn(field, value) -> (field, value)``; terms mapped to ("", "") drop."""
        out = []
        for f, op, v in self.terms:
            nf, nv = fn(f, v)
            if nf or nv:
                out.append((nf, op, nv))
        return FieldSelector(tuple(out))

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{escape_field_value(v)}" for f, op, v in self.terms)


def parse_field_selector(s: str) -> FieldSelector:
    """fields.ParseSelector (terms are sorted as raw strings, like upstream)."""
    terms = []
    for part in sorted(_split_terms(s)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
        lhs, op, rhs = split
        value = unescape_field_value(rhs)
        if lhs == "" and value == "":
            continue
        terms.append((lhs, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(terms))


def field_selector_from_set(fields: Mapping[str, str] | None) -> FieldSelector:
    return FieldSelector(tuple((k, "=", v) for k, v in (fields or {}).items()))


__all__ = [
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "escape_field_value",
    "field_selector_from_set",
    "label_selector_from_api",
    "label_selector_to_string",
    "new_requirement",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_set",
    "unescape_field_value",
    "validated_selector_from_set",
]
