"""Declarations of the built-in types, in the notation read by :mod:`kubelab.api.schema`.

One module per area; each holds one or more blocks (a block starts with ``package <pkg>``).
"""
from __future__ import annotations

from . import apiextensions, apps, batch, core, meta, misc, pods

SOURCES: list[str] = [*meta.SOURCES, *pods.SOURCES, *core.SOURCES, *apps.SOURCES, *batch.SOURCES,
                      *misc.SOURCES, *apiextensions.SOURCES]
