"""The watch cache: one etcd watch over /registry/, fanned out to every client watch.

At start the cacher lists everything under /registry/ at revision R and watches from R+1.
Objects are kept per resource (the key prefix `/registry/<resource>/`, or
`/registry/<group>/<resource>/` for custom resources, whose group always has a dot), each
with a ring buffer of recent events so that watches resume from any resourceVersion still
in the window and get 410 Expired before it. Because one watch sees every key in revision
order, the cacher knows the newest revision it has applied, and a consistent LIST can be
served from memory once the cache has caught up with etcd's current revision.

Cached objects are shared: callers must copy before changing one.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import json
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from aetcd import exceptions as etcd_errors

from .errors import Expired, TooLargeResourceVersion
from .etcd import Store, decode

log = logging.getLogger(__name__)

Predicate = Callable[[dict], bool]

# paginated LISTs are served from frozen views of the cache, as upstream's cacher does
SNAPSHOTS = 4
SNAPSHOT_TTL = 75.0


def resource_prefix(key: str) -> str:
    """The resource part of a storage key: '/registry/pods/ns/x' -> '/registry/pods/'."""
    parts = key.split("/", 4)
    if len(parts) > 3 and "." in parts[2]:
        return "/".join(parts[:4]) + "/"
    return "/".join(parts[:3]) + "/"


@dataclass(slots=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED (BOOKMARK and ERROR are made by watchers)
    key: str
    obj: dict
    prev: dict | None
    rv: int


@dataclass
class ResourceCache:
    prefix: str
    window_start: int
    capacity: int
    objects: dict[str, dict] = field(default_factory=dict)
    events: collections.deque = field(default_factory=collections.deque)
    watchers: set["Watcher"] = field(default_factory=set)
    #: frozen views for paginated LISTs: revision -> (sorted keys, objects, made at)
    snapshots: "collections.OrderedDict[int, tuple[list[str], dict[str, dict], float]]" = field(
        default_factory=collections.OrderedDict)
    _sorted: list[str] | None = None

    def sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def apply(self, ev: Event) -> None:
        if ev.type == "DELETED":
            if self.objects.pop(ev.key, None) is not None:
                self._sorted = None
        else:
            if ev.key not in self.objects:
                self._sorted = None
            self.objects[ev.key] = ev.obj
        self.events.append(ev)
        if len(self.events) > self.capacity:
            old = self.events.popleft()
            self.window_start = old.rv


class Watcher:
    """One client's watch: a bounded queue of (type, object) filled by the cacher."""

    def __init__(self, cache: ResourceCache, key_prefix: str, predicate: Predicate | None,
                 bookmarks: bool, maxsize: int = 10000) -> None:
        self.cache = cache
        self.key_prefix = key_prefix
        self.predicate = predicate
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=maxsize)
        self.closed = False
        self.rv = 0

    def _matches(self, obj: dict | None) -> bool:
        return obj is not None and (self.predicate is None or self.predicate(obj))

    def offer(self, ev: Event) -> None:
        if self.closed or not ev.key.startswith(self.key_prefix):
            return
        cur = ev.type != "DELETED" and self._matches(ev.obj)
        before = ev.prev is not None and self._matches(ev.prev)
        if ev.type == "DELETED":
            item = ("DELETED", ev.obj) if before else None
        elif cur and before:
            item = ("MODIFIED", ev.obj)
        elif cur:
            item = ("ADDED", ev.obj)
        elif before:
            item = ("DELETED", ev.obj)
        else:
            item = None
        if item is not None:
            self._put(item)
        self.rv = ev.rv

    def _put(self, item: tuple) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("watcher too slow, closing it prefix=%s", self.key_prefix)
            self.close()

    def bookmark(self, rv: int, initial_end: bool = False) -> None:
        if self.bookmarks and not self.closed:
            self._put(("BOOKMARK", rv, initial_end))

    def close(self, error: Exception | None = None) -> None:
        if not self.closed:
            self.closed = True
            self.cache.watchers.discard(self)
            # the sentinel must get through even when the queue is full
            while True:
                try:
                    self.queue.put_nowait(("CLOSE", error))
                    break
                except asyncio.QueueFull:
                    self.queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[tuple]:
        while True:
            item = await self.queue.get()
            if item[0] == "CLOSE":
                if item[1] is not None:
                    raise item[1]
                return
            yield item


class EncodedObjects:
    """JSON bytes of cached objects, made once per object version and shared by every LIST and
    watch that sends it. Keyed by identity: cached objects are never changed, and an entry holds
    its object, so an id is not reused while its entry lives."""

    def __init__(self, size: int = 60000) -> None:
        self.size = size
        self._d: dict[int, tuple[dict, bytes]] = {}

    def get(self, obj: dict) -> bytes:
        e = self._d.get(id(obj))
        if e is not None and e[0] is obj:
            return e[1]
        b = json.dumps(obj, separators=(",", ":")).encode()
        self._d[id(obj)] = (obj, b)
        if len(self._d) > self.size:
            del self._d[next(iter(self._d))]
        return b


def _prev(raw) -> dict | None:
    """The previous value an etcd event carries (aetcd hands an empty KeyValue when there is none)."""
    pk = raw.prev_kv
    if pk is None or not pk.value or not pk.mod_revision:
        return None
    return decode(pk.value, pk.mod_revision)


class Cacher:
    """Keeps every object under /registry/ in memory, current to the last applied revision."""

    def __init__(self, store: Store, *, capacity: int = 20000, bookmark_interval: float = 10.0,
                 root: str = "/registry/", history: int = 5000) -> None:
        self.store = store
        self.root = root
        self.capacity = capacity
        self.bookmark_interval = bookmark_interval
        self.caches: dict[str, ResourceCache] = {}
        self.rev = 0
        self.start_rev = 0
        self.ready = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._tasks: list[asyncio.Task] = []
        self._watch = None
        self.encoded = EncodedObjects()
        # history: on start the ring buffers are filled with etcd's last `history` revisions, so a
        # client that watched a previous apiserver resumes here without a 410 (and without relisting)
        self.history = history
        self.load_rev = 0
        self.history_from = 0
        self.history_done = asyncio.Event()
        self._history_seen = 0.0

    def cache(self, prefix: str) -> ResourceCache:
        c = self.caches.get(prefix)
        if c is None:
            c = self.caches[prefix] = ResourceCache(prefix, self.start_rev, self.capacity)
        return c

    async def start(self) -> None:
        await self._load()
        self._tasks.append(asyncio.create_task(self._run(), name="cacher-watch"))
        self._tasks.append(asyncio.create_task(self._bookmarks(), name="cacher-bookmarks"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self._watch is not None:
            try:
                await self._watch.cancel()
            except Exception:
                pass
        self.close_watchers()

    def close_watchers(self) -> None:
        """End every client watch (shutdown)."""
        for c in self.caches.values():
            for w in list(c.watchers):
                w.close()

    async def _load(self) -> None:
        kvs, rev = await self.store.list_raw(self.root)
        old = self.caches
        self.caches = {}
        self.start_rev = self.rev = self.load_rev = rev
        self.history_from = max(1, rev - self.history + 1)
        self.history_done.clear()
        for key, value, mod in kvs:
            c = self.cache(resource_prefix(key))
            c.objects[key] = decode(value, mod)
        # watchers of a previous generation cannot be resumed consistently: they must relist
        for c in old.values():
            for w in list(c.watchers):
                w.close(Expired(w.rv, rev))
        self.ready.set()
        self._notify()

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                replay = not self.history_done.is_set()
                start = self.history_from if replay else self.rev + 1
                self._watch = await self.store.watch(self.root, start)
                delay = 0.2
                if replay:
                    for c in self.caches.values():
                        c.events.clear()
                    if self.load_rev < start:
                        self._history_complete()
                    else:
                        self._history_seen = asyncio.get_running_loop().time()
                        self._arm_history_timer()
                async for ev in self._watch:
                    if ev.kv.mod_revision <= self.load_rev:
                        if not self.history_done.is_set():
                            self._history_seen = asyncio.get_running_loop().time()
                            self._remember(ev)
                            if ev.kv.mod_revision >= self.load_rev:
                                self._history_complete()
                        continue
                    if not self.history_done.is_set():
                        self._history_complete()
                    self._apply(ev)
                    # a burst of events may come in one response: yield to clients now and then
                    if not ev.kv.mod_revision % 64:
                        await asyncio.sleep(0)
                log.warning("etcd watch ended, restarting from rev=%d", self.rev + 1)
            except asyncio.CancelledError:
                raise
            except etcd_errors.RevisionCompactedError as e:
                if not self.history_done.is_set() and e.compacted_revision <= self.load_rev:
                    # history before the compaction is gone: replay what is left
                    self.history_from = max(self.history_from, e.compacted_revision)
                    for c in self.caches.values():
                        c.events.clear()
                    continue
                log.warning("etcd compacted past the cache (rev=%d), reloading", self.rev)
                await self._reload()
            except Exception as e:  # etcd gone: keep trying; clients keep their watches
                log.warning("etcd watch failed err=%r, retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reload(self) -> None:
        while True:
            try:
                await self._load()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("cache reload failed err=%r", e)
                await asyncio.sleep(1)

    def _remember(self, raw) -> None:
        """A historical event (at or before the load revision): into the ring buffer only."""
        kv = raw.kv
        key = kv.key.decode()
        rev = kv.mod_revision
        prev = _prev(raw)
        if raw.kind == "DELETE":
            if prev is None:
                return
            obj = dict(prev)
            obj["metadata"] = dict(prev.get("metadata", {}), resourceVersion=str(rev))
            ev = Event("DELETED", key, obj, prev, rev)
        else:
            ev = Event("ADDED" if kv.version == 1 else "MODIFIED", key, decode(kv.value, rev), prev, rev)
        c = self.cache(resource_prefix(key))
        c.events.append(ev)
        if len(c.events) > c.capacity:
            c.events.popleft()

    def _arm_history_timer(self) -> None:
        """etcd sends the history in one burst: it is complete once nothing came for a moment
        (or at once when an event at the load revision arrived)."""
        loop = asyncio.get_running_loop()

        def check() -> None:
            if self.history_done.is_set():
                return
            if loop.time() - self._history_seen >= 0.3:
                self._history_complete()
            else:
                loop.call_later(0.1, check)
        loop.call_later(0.3, check)

    def _history_complete(self) -> None:
        if self.history_done.is_set():
            return
        start = self.history_from - 1
        self.start_rev = start
        for c in self.caches.values():
            # the buffer may have overflowed: then it starts at its oldest event
            c.window_start = start if len(c.events) < c.capacity else c.events[0].rv - 1
        self.history_done.set()

    def _apply(self, raw) -> None:
        kv = raw.kv
        key = kv.key.decode()
        rev = kv.mod_revision
        c = self.cache(resource_prefix(key))
        prev = c.objects.get(key)
        if raw.kind == "DELETE":
            if prev is None:
                prev = _prev(raw)
            if prev is None:
                self.rev = max(self.rev, rev)
                self._notify()
                return
            obj = dict(prev)
            obj["metadata"] = dict(prev.get("metadata", {}), resourceVersion=str(rev))
            ev = Event("DELETED", key, obj, prev, rev)
        else:
            ev = Event("MODIFIED" if prev is not None else "ADDED", key, decode(kv.value, rev), prev, rev)
        c.apply(ev)
        self.rev = max(self.rev, rev)
        for w in list(c.watchers):
            w.offer(ev)
        self._notify()

    def _notify(self) -> None:
        if self._waiters:
            keep = []
            for rev, fut in self._waiters:
                if rev <= self.rev:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((rev, fut))
            self._waiters = keep

    async def wait_for(self, rev: int, timeout: float) -> bool:
        """Wait until the cache has applied revision rev; False on timeout."""
        if self.rev >= rev:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((rev, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _bookmarks(self) -> None:
        while True:
            await asyncio.sleep(self.bookmark_interval)
            for c in list(self.caches.values()):
                for w in list(c.watchers):
                    w.bookmark(self.rev)

    async def consistent(self, timeout: float = 3.0) -> bool:
        """Bring the cache up to etcd's current revision; False if it could not in time."""
        rev = await self.store.revision()
        return await self.wait_for(rev, timeout)

    # --- reads -----------------------------------------------------------------------------

    def list(self, resource: str, key_prefix: str, predicate: Predicate | None = None) -> tuple[list[dict], int]:
        """Objects under key_prefix (sorted by key) that match, and the cache revision."""
        c = self.cache(resource)
        objs = c.objects
        keys = c.sorted_keys()
        out = []
        # keys are sorted, so a namespace's keys are one run: find it instead of scanning them all
        for i in range(bisect.bisect_left(keys, key_prefix), len(keys)):
            k = keys[i]
            if not k.startswith(key_prefix):
                break
            o = objs[k]
            if predicate is None or predicate(o):
                out.append(o)
        return out, self.rev

    def snapshot(self, resource: str) -> int:
        """Freeze the resource's current state for paging; returns the revision it is kept under."""
        c = self.cache(resource)
        now = time.monotonic()
        while c.snapshots and (len(c.snapshots) >= SNAPSHOTS or now - next(iter(c.snapshots.values()))[2]
                               > SNAPSHOT_TTL):
            c.snapshots.popitem(last=False)
        if self.rev not in c.snapshots:
            # the sorted key list is replaced, never changed, when keys come and go: share it
            c.snapshots[self.rev] = (c.sorted_keys(), dict(c.objects), now)
        return self.rev

    def page(self, resource: str, rev: int, key_prefix: str, start_key: str | None, limit: int,
             predicate: Predicate | None) -> tuple[list[dict], str | None, int] | None:
        """One page of a snapshot: (items, key to continue from or None, items left when known);
        None when no snapshot is kept at rev (the caller reads etcd at rev instead)."""
        snap = self.cache(resource).snapshots.get(rev)
        if snap is None:
            return None
        keys, objs, _ = snap
        i = bisect.bisect_left(keys, max(start_key or key_prefix, key_prefix))
        out: list[dict] = []
        n = len(keys)
        while i < n and keys[i].startswith(key_prefix):
            o = objs[keys[i]]
            if predicate is None or predicate(o):
                if len(out) == limit:
                    end = bisect.bisect_left(keys, key_prefix[:-1] + chr(ord(key_prefix[-1]) + 1))
                    return out, keys[i], (end - i if predicate is None else 0)
                out.append(o)
            i += 1
        return out, None, 0

    def get(self, resource: str, key: str) -> dict | None:
        return self.cache(resource).objects.get(key)

    async def watch(self, resource: str, key_prefix: str, from_rv: int | None, predicate: Predicate | None,
                    *, bookmarks: bool = False, send_initial: bool = False) -> Watcher:
        """Start a watch. from_rv None/0: current state as ADDED first; else events after from_rv.

        send_initial (watch-list): current state as ADDED, then a BOOKMARK marking the end of it.
        """
        c = self.cache(resource)
        if from_rv and from_rv < c.window_start and not self.history_done.is_set():
            try:
                await asyncio.wait_for(self.history_done.wait(), 3.0)
            except asyncio.TimeoutError:
                pass
        if from_rv and from_rv > self.rev:
            if not await self.wait_for(from_rv, 3.0):
                raise TooLargeResourceVersion(from_rv, self.rev)
        w = Watcher(c, key_prefix, predicate, bookmarks or send_initial)
        if not from_rv or send_initial:
            objs, rev = self.list(resource, key_prefix, predicate)
            for o in objs:
                w._put(("ADDED", o))
            w.rv = rev
            if send_initial:
                w._put(("BOOKMARK", rev, True))
        else:
            if from_rv < c.window_start:
                raise Expired(from_rv, c.window_start + 1)
            for ev in c.events:
                if ev.rv > from_rv:
                    w.offer(ev)
            w.rv = max(from_rv, self.rev)
        c.watchers.add(w)
        return w

