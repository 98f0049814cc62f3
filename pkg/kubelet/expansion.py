"""$(VAR) expansion of container command lines, as upstream's third_party/forked/golang/expansion.

``$(NAME)`` is replaced by the mapped value, or left as written when NAME is unknown; ``$$``
is an escaped ``$``; an unterminated ``$(`` and a ``$`` before any other character are kept.
:func:`expand_static` is ``ExpandContainerCommandOnlyStatic``: the mapping is the container's
``env`` entries' plain ``value`` fields (what exec probes get; no downward API, no valueFrom).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """MappingFuncFor: the first context holding a name wins; unknown names stay ``$(NAME)``."""
    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"
    return mapping


def _read_variable(s: str) -> tuple[str, bool, int]:
    """tryReadVariableName on the text after a ``$``: (text, is a variable name, bytes consumed)."""
    if s[0] == "$":
        return "$", False, 1
    if s[0] == "(":
        close = s.find(")", 1)
        if close != -1:
            return s[1:close], True, close + 1
        return "$(", False, 1
    return "$" + s[0], False, 1


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Expand every ``$(NAME)`` reference of ``text`` through ``mapping``."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1:])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def expand_static(command: Iterable[str], env: Iterable[dict] | None) -> list[str]:
    """ExpandContainerCommandOnlyStatic: expand with the plain values of the container's env."""
    values = {e.get("name", ""): e.get("value") or "" for e in env or () if isinstance(e, dict)}
    mapping = mapping_for(values)
    return [expand(str(arg), mapping) for arg in command]
