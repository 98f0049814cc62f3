"""The garbage collector's dependency graph and its decisions, free of I/O (upstream's
GraphBuilder uidToNode map and the case analysis of attemptToDeleteItem).

Every object the collector watches is a Node keyed by uid, holding its ownerReferences; the graph
keeps the reverse edges (owner uid -> dependent uids) in step as objects are added, changed and
deleted, and says which work each change causes:

* an object whose owner is absent, or whose owner is being deleted in the foreground, must be
  looked at by attemptToDelete ("delete" work);
* an owner that starts waiting for its dependents (deletionTimestamp + the foregroundDeletion
  finalizer) makes every dependent "delete" work and itself "dependents" work, looked at again
  whenever one of its dependents goes or drops the reference;
* an owner with the orphan finalizer is "orphan" work: its dependents lose the reference, then the
  finalizer is removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass
class Node:
    uid: str
    api_version: str
    kind: str
    resource: str
    namespace: str
    name: str
    owners: list[Obj] = field(default_factory=list)     # the ownerReferences as stored
    deleting: bool = False                              # deletionTimestamp set
    finalizers: tuple[str, ...] = ()

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and ORPHAN in self.finalizers

    def owner_ref(self, owner_uid: str) -> Obj | None:
        for r in self.owners:
            if r.get("uid") == owner_uid:
                return r
        return None


def node_from(obj: Obj, api_version: str, kind: str, resource: str) -> Node:
    m = obj.get("metadata") or {}
    return Node(uid=m.get("uid", ""), api_version=api_version, kind=kind, resource=resource,
                namespace=m.get("namespace") or "", name=m.get("name", ""),
                owners=[r for r in m.get("ownerReferences") or [] if r.get("uid")],
                deleting=bool(m.get("deletionTimestamp")), finalizers=tuple(m.get("finalizers") or ()))


Work = tuple[str, str]     # ("delete" | "dependents" | "orphan", uid)


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.dependents: dict[str, set[str]] = {}

    def _link(self, node: Node) -> None:
        for r in node.owners:
            self.dependents.setdefault(r["uid"], set()).add(node.uid)

    def _unlink(self, node: Node) -> None:
        for r in node.owners:
            deps = self.dependents.get(r["uid"])
            if deps is not None:
                deps.discard(node.uid)
                if not deps:
                    del self.dependents[r["uid"]]

    def dependents_of(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in self.dependents.get(uid, ()) if d in self.nodes]

    def blocking_dependents(self, uid: str) -> list[Node]:
        """Dependents that hold `uid`'s deletion (blockOwnerDeletion: true)."""
        out = []
        for d in self.dependents_of(uid):
            ref = d.owner_ref(uid)
            if ref is not None and ref.get("blockOwnerDeletion"):
                out.append(d)
        return out

    def upsert(self, node: Node) -> list[Work]:
        """Record an added or changed object; the work that follows."""
        old = self.nodes.get(node.uid)
        if old is not None:
            self._unlink(old)
        self.nodes[node.uid] = node
        self._link(node)
        work: list[Work] = []
        if node.deleting_dependents and not (old and old.deleting_dependents):
            work += [("delete", d.uid) for d in self.dependents_of(node.uid)]
        if node.deleting_dependents:
            work.append(("dependents", node.uid))
        if node.orphaning:
            work.append(("orphan", node.uid))
        for r in node.owners:
            owner = self.nodes.get(r["uid"])
            if owner is None or owner.deleting_dependents:
                work.append(("delete", node.uid))
                break
        if old is not None:        # references dropped: an owner waiting for dependents may be free
            now = {r["uid"] for r in node.owners}
            for r in old.owners:
                if r["uid"] not in now:
                    owner = self.nodes.get(r["uid"])
                    if owner is not None and owner.deleting_dependents:
                        work.append(("dependents", owner.uid))
        return work

    def remove(self, uid: str) -> list[Work]:
        """Record a deleted object; its dependents and waiting owners are looked at again."""
        node = self.nodes.pop(uid, None)
        if node is None:
            return []
        self._unlink(node)
        work: list[Work] = [("delete", d) for d in self.dependents.get(uid, ())]
        for r in node.owners:
            owner = self.nodes.get(r["uid"])
            if owner is not None and owner.deleting_dependents:
                work.append(("dependents", owner.uid))
        return work


def decide(owner_states: Iterable[tuple[Obj, str]], has_dependents: bool,
           finalizers: Iterable[str]) -> tuple[str, Any]:
    """attemptToDeleteItem's decision for one dependent, given each ownerReference with the state of
    its owner ("solid", "waiting" for its dependents, or "dangling": absent or another uid).

    Returns ("keep", None), ("patch", new_owner_references) — a solid owner remains, dangling
    references are dropped and waiting owners no longer blocked — or ("delete", propagationPolicy).
    """
    states = list(owner_states)
    solid = [r for r, s in states if s == "solid"]
    dangling = [r for r, s in states if s == "dangling"]
    waiting = [r for r, s in states if s == "waiting"]
    if solid:
        if not dangling and not any(r.get("blockOwnerDeletion") for r in waiting):
            return ("keep", None)
        gone = {r["uid"] for r in dangling}
        refs = []
        for r, s in states:
            if r["uid"] in gone:
                continue
            if s == "waiting" and r.get("blockOwnerDeletion"):
                r = dict(r, blockOwnerDeletion=False)
            refs.append(r)
        return ("patch", refs)
    if waiting and has_dependents:
        return ("delete", "Foreground")        # the owner waits for this one's dependents too
    fins = set(finalizers)
    if ORPHAN in fins:
        return ("delete", "Orphan")
    if FOREGROUND in fins:
        return ("delete", "Foreground")
    return ("delete", "Background")
