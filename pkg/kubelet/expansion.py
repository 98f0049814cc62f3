"""`$(VAR)` expansion in container env values, command, args, exec probes and subPathExpr, as upstream's
third_party/forked/golang/expansion: `$(NAME)` is replaced when NAME is known and left as written
otherwise, `$$` is an escaped `$`, an unterminated `$(` and any other `$x` are kept literally.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping


def syntax_wrap(name: str) -> str:
    return f"$({name})"


def mapping_func_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """MappingFuncFor: the first context holding the name wins; unknown names stay `$(name)`."""
    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return syntax_wrap(name)
    return mapping


def _read_variable_name(s: str) -> tuple[str, bool, int]:
    if s[0] == "$":
        return "$", False, 1
    if s[0] == "(":
        end = s.find(")", 1)
        if end >= 0:
            return s[1:end], True, end + 1
        return "$(", False, 1
    return "$" + s[0], False, 1


def expand(value: str, mapping: Callable[[str], str]) -> str:
    """Expand: replace every `$(NAME)` of `value` by mapping(NAME)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            read, is_var, advance = _read_variable_name(value[cursor + 1:])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]


def expand_static(command: Iterable[str], env: Iterable[dict] | None) -> list[str]:
    """ExpandContainerCommandOnlyStatic (exec probes): expand with the plain values of the
    container's env entries (no references resolved)."""
    values = {e.get("name", ""): e.get("value") or "" for e in env or () if isinstance(e, dict)}
    mapping = mapping_func_for(values)
    return [expand(str(arg), mapping) for arg in command]
