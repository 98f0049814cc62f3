"""The registry of every built-in kind."""
from __future__ import annotations

from .registry import Registry


def builtin_registry() -> Registry:
    from . import apps, batch, core, misc
    from .prune import pruner_for
    reg = Registry()
    for mod in (core, apps, batch, misc):
        for k in mod.KINDS:
            if k.prune is None:
                k.prune = pruner_for(k.group, k.version, k.kind)
            reg.add(k)
    return reg
