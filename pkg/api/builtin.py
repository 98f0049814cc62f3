"""The registry of every built-in kind."""
from __future__ import annotations

from .registry import Registry


def builtin_registry() -> Registry:
    from . import apps, batch, core, misc
    reg = Registry()
    for mod in (core, apps, batch, misc):
        for k in mod.KINDS:
            reg.add(k)
    return reg
