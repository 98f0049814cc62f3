"""Kubernetes resource.Quantity: parsing and canonical serialization.

Follows k8s.io/apimachinery/pkg/api/resource (quantity.go, suffix.go, amount.go):

- ``<number><suffix>`` with binary (Ki..Ei), decimal (n u m "" k M G T P E) and
  exponent (``e3``, ``E-6``) suffixes; the suffix family is the quantity's *format*
  and is kept for serialization.
- Non-zero values are rounded up (away from zero) to nano precision; BinarySI values are
  capped at 2^63-1; a BinarySI value strictly between 0 and 1 switches to DecimalSI.
- The canonical form removes fractional digits and picks the largest suffix that keeps
  the value exact (``1.5`` -> ``1500m``, ``1024Mi`` -> ``1Gi``, ``1.5Gi`` -> ``1536Mi``).
- Like upstream, a string that is already canonical when parsed is emitted unchanged
  (this is why ``"+1"`` or ``"01"`` survive a round trip through the API server).

Values are exact :class:`decimal.Decimal` numbers built from strings and integers; no
context arithmetic is applied to them, so precision never silently drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

SPLIT_RE_STRING = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT_WRONG = "quantities must match the regular expression '" + SPLIT_RE_STRING + "'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

MAX_INT64 = (1 << 63) - 1
_MAX_INT32 = (1 << 31) - 1
_NANO = -9

_DEC_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_BY_EXP = {v: k for k, v in _BIN_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")


class QuantityError(ValueError):
    """A string that is not a quantity; ``str()`` is upstream's error text."""


@dataclass(frozen=True)
class Quantity:
    """A parsed quantity: exact value, format, and the kept input if already canonical."""

    value: Decimal
    format: str = DECIMAL_SI
    text: str | None = None

    @classmethod
    def parse(cls, s: str) -> "Quantity":
        return parse(s)

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return format_quantity(self.value, self.format)

    def scaled_value(self, scale: int) -> int:
        """ceil(value / 10^scale), rounding away from zero (upstream ScaledValue)."""
        return _ceil_away(self.value, -scale)

    def int_value(self) -> int:
        """Value(): the value rounded up (away from zero) to an integer."""
        return self.scaled_value(0)

    def milli_value(self) -> int:
        """MilliValue(): value * 1000 rounded up (away from zero)."""
        return self.scaled_value(-3)


def _ceil_away(d: Decimal, shift: int = 0) -> int:
    """ceil(|d| * 10^shift) with d's sign, exactly."""
    sign, digits, exp = d.as_tuple()
    exp += shift
    if exp > 4096:
        raise OverflowError("quantity too large for an integer value")
    n = int("".join(map(str, digits)) or "0")
    if exp >= 0:
        r = n * 10**exp
    else:
        q, rem = divmod(n, 10 ** (-exp))
        r = q + (1 if rem else 0)
    return -r if sign else r


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def _scan(s: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, num, denom, suffix)."""
    positive = True
    pos = 0
    end = len(s)
    if pos < end and s[0] in "+-":
        positive = s[0] != "-"
        pos += 1
    # strip leading zeros
    i = pos
    while True:
        if i >= end:
            return positive, "0", "0", "", ""
        if s[i] != "0":
            break
        pos += 1
        i += 1
    # numerator
    i = pos
    while True:
        if i >= end:
            return positive, s, s[pos:end], "", ""
        if s[i] not in _DIGITS:
            num = s[pos:i]
            pos = i
            break
        i += 1
    if not num:
        num = "0"
    denom = ""
    if pos < end and s[pos] == ".":
        pos += 1
        i = pos
        while True:
            if i >= end:
                return positive, s, num, s[pos:end], ""
            if s[i] not in _DIGITS:
                denom = s[pos:i]
                pos = i
                break
            i += 1
    suffix_start = pos
    i = pos
    while True:
        if i >= end:
            return positive, s[:suffix_start], num, denom, s[suffix_start:]
        if s[i] not in _SUFFIX_CHARS:
            pos = i
            break
        i += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    i = pos
    while True:
        if i >= end:
            return positive, s[:suffix_start], num, denom, s[suffix_start:]
        if s[i] not in _DIGITS:
            raise QuantityError(ERR_FORMAT_WRONG)
        i += 1


def _interpret(suffix: str) -> tuple[int, int, str] | None:
    """(base, exponent, format) for a suffix, or None."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        rest = suffix[1:]
        if not _GO_INT_RE.fullmatch(rest):
            return None
        exp = int(rest)
        if abs(exp) > _MAX_INT32:
            return None
        return 10, exp, DECIMAL_EXPONENT
    return None


def _round_up_to_nano(coeff: int, exp: int) -> tuple[int, int]:
    """Round coeff*10^exp (coeff > 0) up to a multiple of 10^-9."""
    if exp >= _NANO:
        return coeff, exp
    shift = _NANO - exp
    if shift > len(str(coeff)):
        return 1, _NANO
    q, rem = divmod(coeff, 10**shift)
    return q + (1 if rem else 0), _NANO


def _dec(coeff: int, exp: int, negative: bool) -> Decimal:
    if coeff == 0:
        return Decimal(0)
    return Decimal(f"{'-' if negative else ''}{coeff}E{exp}")


def parse(s: str) -> Quantity:
    """ParseQuantity: value, format, and the input kept if it is already canonical."""
    if not isinstance(s, str):
        raise QuantityError(ERR_FORMAT_WRONG)
    if s == "":
        raise QuantityError(ERR_FORMAT_WRONG)
    if s == "0":
        return Quantity(Decimal(0), DECIMAL_SI, "0")

    positive, value, num, denom, suffix = _scan(s)
    interp = _interpret(suffix)
    if interp is None:
        raise QuantityError(ERR_SUFFIX)
    base, exponent, fmt = interp
    shifted = num + denom

    # Upstream's int64 fast path: exact, and it keeps the input string when the input
    # is already in canonical form.
    if fmt in (DECIMAL_EXPONENT, DECIMAL_SI):
        scale = exponent - len(denom)
        if 18 - len(shifted) >= 0 and scale >= _NANO:
            text = None
            if scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
                text = s
            return Quantity(_dec(int(shifted), scale, not positive), fmt, text)
    elif not denom and 15 - len(num) - (exponent * 3 // 10) - 1 >= 0:
        v = int(num)
        text = s if v & 0x07 else None
        return Quantity(_dec(v << exponent, 0, not positive), fmt, text)

    # Exact path.
    if not any(c in _DIGITS for c in value):
        raise QuantityError(ERR_NUMERIC)
    coeff = int(shifted)
    if base == 10:
        exp10 = exponent - len(denom)
    else:
        coeff <<= exponent
        exp10 = -len(denom)
    if coeff:
        coeff, exp10 = _round_up_to_nano(coeff, exp10)
    amount = _dec(coeff, exp10, False)
    if fmt == BINARY_SI and amount > MAX_INT64:
        amount = Decimal(MAX_INT64)
    if fmt == BINARY_SI and 0 < amount < 1:
        fmt = DECIMAL_SI
    if not positive and amount:
        amount = -amount
    return Quantity(amount, fmt, None)


def parse_quantity(s: str) -> Decimal:
    """The exact value of a quantity string (raises QuantityError)."""
    return parse(s).value


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _canonical_base10(value: Decimal) -> tuple[str, int]:
    """(signed mantissa digits, exponent) with the exponent a multiple of 3, maximal."""
    sign, digits, exp = value.as_tuple()
    ds = "".join(map(str, digits)).lstrip("0") or "0"
    stripped = ds.rstrip("0")
    exp += len(ds) - len(stripped)
    r = exp % 3
    mant = stripped + "0" * r
    exp -= r
    return ("-" if sign else "") + mant, exp


def _decimal_exponent(value: Decimal) -> str:
    mant, exp = _canonical_base10(value)
    return mant if exp == 0 else f"{mant}e{exp}"


def _is_integral(value: Decimal) -> bool:
    _, digits, exp = value.as_tuple()
    if exp >= 0:
        return True
    return all(d == 0 for d in digits[exp:]) if -exp <= len(digits) else not any(digits)


def format_quantity(value: Decimal | int | str, fmt: str) -> str:
    """Canonical string of ``value`` in ``fmt`` (CanonicalizeBytes + suffix).

    Unknown formats serialize as DecimalExponent, as upstream.  Suffix-less magnitudes
    (beyond ``E``/``Ei`` or below ``n``) fall back to exponent notation.
    """
    try:
        value = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as e:
        raise QuantityError(f"not a number: {value!r}") from e
    if not value.is_finite():
        raise QuantityError(f"not a finite number: {value}")
    if value == 0:
        return "0"
    if fmt == BINARY_SI:
        if -1024 < value < 1024 or not _is_integral(value):
            fmt = DECIMAL_SI
        elif value.adjusted() > 4096:
            return _decimal_exponent(value)
        else:
            n = int(value)
            mag = abs(n)
            times = 0
            while mag >= 1024 and mag % 1024 == 0:
                mag //= 1024
                times += 1
            mant = ("-" if n < 0 else "") + str(mag)
            if times == 0:
                return mant
            suffix = _BIN_BY_EXP.get(times * 10)
            if suffix is None:
                return _decimal_exponent(value)
            return mant + suffix
    if fmt not in (DECIMAL_SI, DECIMAL_EXPONENT):
        fmt = DECIMAL_EXPONENT
    mant, exp = _canonical_base10(value)
    if fmt == DECIMAL_SI:
        suffix = _DEC_BY_EXP.get(exp)
        if suffix is not None:
            return mant + suffix
    return mant if exp == 0 else f"{mant}e{exp}"


def canonicalize(s: str) -> str:
    """The string upstream emits after parsing ``s`` (raises QuantityError)."""
    return str(parse(s))


def canonicalize_value(v: Any) -> str:
    """Canonicalize a quantity as found in decoded JSON/YAML: a string or a number.

    Like upstream's UnmarshalJSON, surrounding whitespace is ignored; numbers are
    read from their literal text.
    """
    if isinstance(v, bool) or v is None:
        raise QuantityError(ERR_FORMAT_WRONG)
    if isinstance(v, int):
        return canonicalize(str(v))
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise QuantityError(ERR_FORMAT_WRONG)
        return canonicalize(repr(v))
    if isinstance(v, Decimal):
        return canonicalize(str(v))
    if isinstance(v, str):
        return canonicalize(v.strip())
    raise QuantityError(ERR_FORMAT_WRONG)


__all__ = [
    "BINARY_SI",
    "DECIMAL_EXPONENT",
    "DECIMAL_SI",
    "ERR_FORMAT_WRONG",
    "ERR_NUMERIC",
    "ERR_SUFFIX",
    "Quantity",
    "QuantityError",
    "canonicalize",
    "canonicalize_value",
    "format_quantity",
    "parse",
    "parse_quantity",
]
