"""The meta.k8s.io/v1 Table envelope around the per-kind columns of pkg/api/tables."""
from __future__ import annotations

import datetime

from ..api import tables as printers
from ..api.registry import Kind


def _columns(k: Kind) -> list[dict]:
    if k.crd is not None:
        return printers.crd_columns(k.crd.get("additionalPrinterColumns") or [])
    return printers.table_columns(k.group, k.kind)


def _cells(k: Kind, obj: dict, now: datetime.datetime) -> list:
    if k.crd is not None:
        return printers.crd_cells(k.crd.get("additionalPrinterColumns") or [], obj, now)
    return printers.table_cells(k.group, k.kind, obj, now)


def table(k: Kind, items: list[dict], rv: str, include_object: str | None = None, *, columns: bool = True) -> dict:
    """A Table of items; row objects are PartialObjectMetadata unless includeObject=Object (or None)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for o in items:
        if include_object == "Object":
            ro = o
        elif include_object == "None":
            ro = None
        else:
            ro = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata", {})}
        row = {"cells": _cells(k, o, now)}
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
         "columnDefinitions": _columns(k) if columns else [], "rows": rows}
    return t
