"""JSON for the plugin, which is exec'd for every pod: the standard library's own C parser and string
encoder (json's accelerator module, _json), without importing json itself.

`import json` costs the plugin about 15 ms per exec on the lab machine, most of it `re` (and the
enum, functools and collections modules re needs) for the pure-Python fallback's patterns, which
the C scanner never uses. loads() drives _json's scanner the way json.JSONDecoder does; dumps()
prints what the plugin prints (results, errors, version info: dicts, lists, strings, numbers, bools,
None) as json.dumps does, indented by 4 where the reference plugins indent; anything else (a
non-string key, an object JSON cannot carry) goes to json.dumps. An interpreter without _json gets
json's.
Errors go through json proper (imported then): ValueError subclasses with json's messages.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see the module docstring

if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:     # pragma: no cover - CPython always has it
    _json = None

_WHITESPACE = " \t\n\r"
_INF = float("inf")
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What _json.make_scanner reads off json.JSONDecoder (its defaults)."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_Context()) if _json is not None else None


def loads(data: bytes | str) -> Any:
    """json.loads for the plugin's inputs; ValueError (json.JSONDecodeError) if data is not JSON.
    Anything but a clean parse is handed to json itself, so errors are json's, word for word (the
    C scanner alone cannot raise them: it expects json.decoder to be imported already)."""
    try:
        s = data.decode() if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:      # json.loads detects UTF-16 and UTF-32 too
        s = ""
    if s and _scan is not None and not s.startswith("\ufeff"):
        start = len(s) - len(s.lstrip(_WHITESPACE))
        try:
            obj, end = _scan(s, start)
        except Exception:           # noqa: BLE001 - json.loads below raises the real error
            pass
        else:
            while end < len(s) and s[end] in _WHITESPACE:
                end += 1
            if end == len(s):
                return obj
    import json
    return json.loads(data)


class _NotPlain(Exception):
    """A value (or key) the plugin never prints: json.dumps handles the whole object then."""


def dumps(obj: Any, indent: int | None = None, separators: tuple[str, str] | None = None) -> str:
    """JSON as json.dumps(obj, indent=indent, separators=separators) prints it."""
    if _json is not None:
        item_sep, key_sep = separators or ((", ", ": ") if indent is None else (",", ": "))
        out: list[str] = []
        try:
            _emit(obj, out, indent, 0, item_sep, key_sep)
            return "".join(out)
        except _NotPlain:
            pass
    import json
    return json.dumps(obj, indent=indent, separators=separators)


def _emit(o: Any, out: list[str], indent: int | None, level: int, item_sep: str, key_sep: str) -> None:
    if isinstance(o, str):
        out.append(_json.encode_basestring_ascii(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, float):
        out.append("NaN" if o != o else "Infinity" if o == _INF else "-Infinity" if o == -_INF else float.__repr__(o))
    elif isinstance(o, (dict, list, tuple)):
        is_map = isinstance(o, dict)
        items = list(o.items()) if is_map else list(o)
        opening, closing = ("{", "}") if is_map else ("[", "]")
        if not items:
            out.append(opening + closing)
            return
        inner, outer = ("", "") if indent is None else \
            ("\n" + " " * (indent * (level + 1)), "\n" + " " * (indent * level))
        out.append(opening)
        for i, item in enumerate(items):
            if i:
                out.append(item_sep)
            out.append(inner)
            if is_map:
                k, item = item
                if not isinstance(k, str):
                    raise _NotPlain()
                out.append(_json.encode_basestring_ascii(k) + key_sep)
            _emit(item, out, indent, level + 1, item_sep, key_sep)
        out.append(outer + closing)
    else:
        raise _NotPlain()
