"""Shared informers: a local, indexed cache of one resource kept current by LIST + WATCH.

    factory = SharedInformerFactory(client)
    pods = factory.informer("v1", "pods")
    pods.add_event_handler(on_add=lambda o: q.add(meta_namespace_key(o)),
                           on_update=lambda old, new: q.add(meta_namespace_key(new)),
                           on_delete=lambda o: q.add(meta_namespace_key(o)))
    factory.start()
    await factory.wait_for_cache_sync()
    pod = pods.store.get("default/web-0")

Behaviour follows client-go's reflector and shared informer:

* the first LIST (paged) fills the store; then a WATCH resumes from the last resourceVersion seen
  (bookmarks requested and used), re-opened after each server timeout (a random 5-10 minutes);
* a 410 Expired/Gone (as an ERROR event or an HTTP answer) or any other watch failure leads to a
  new LIST, with exponential backoff (0.8 s doubling to 30 s, jittered) when failures repeat;
  a watch that ends within a second having delivered nothing counts as a failure;
* a relist calls on_update(old, new) for objects still present, on_add for new ones and
  on_delete(DeletedFinalStateUnknown) for objects that vanished meanwhile;
* with a resync period, on_update(obj, obj) is delivered for every cached object periodically;
* each handler has its own queue and task: a slow handler delays only itself; handlers may be
  plain functions or coroutine functions; exceptions are logged, never propagated.

Objects in the store are shared with every reader: treat them as read-only (copy before editing).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
from typing import Any, Callable, Iterable

import aiohttp

from .rest import ApiError, Client, is_gone

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], list[str]]

NAMESPACE_INDEX = "namespace"


def meta_namespace_key(obj: Obj) -> str:
    """"namespace/name" for namespaced objects, "name" for cluster-scoped ones.

    A DeletedFinalStateUnknown yields its recorded key."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else name


def split_meta_namespace_key(key: str) -> tuple[str | None, str]:
    """Inverse of meta_namespace_key: (namespace or None, name)."""
    parts = key.split("/")
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"unexpected key format: {key!r}")


def namespace_index_func(obj: Obj) -> list[str]:
    """The built-in "namespace" index ("" for cluster-scoped objects)."""
    return [(obj.get("metadata") or {}).get("namespace") or ""]


class DeletedFinalStateUnknown(dict):
    """The last known state of an object that was deleted while the watch was not looking.

    It is a dict (the object as last seen) with an extra `key` attribute; handlers that only read
    metadata can treat it as the object, others can test `isinstance(obj, DeletedFinalStateUnknown)`.
    """

    def __init__(self, key: str, obj: Obj) -> None:
        super().__init__(obj)
        self.key = key

    @property
    def obj(self) -> Obj:
        """The object as last seen, as a plain dict (client-go's DeletedFinalStateUnknown.Obj)."""
        return dict(self)

    def __repr__(self) -> str:
        return f"DeletedFinalStateUnknown({self.key!r})"


class Store:
    """Key -> object map with secondary indices (client-go's thread-safe store + indexer).

    Every method is synchronous and awaits nothing, so it is atomic for asyncio tasks. The
    "namespace" index is always present. The mutating methods (add/update/delete/replace) are used
    by the informer and by tests that need a pre-filled cache.
    """

    def __init__(self, indexers: dict[str, IndexFunc] | None = None,
                 key_func: Callable[[Obj], str] = meta_namespace_key) -> None:
        self.key_func = key_func
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index_func}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        if indexers:
            self.add_indexers(indexers)

    # reads

    def get(self, key: str) -> Obj | None:
        """The object stored under `key`, or None."""
        return self._items.get(key)

    def list(self) -> list[Obj]:
        """All objects."""
        return list(self._items.values())

    def list_keys(self) -> list[str]:
        """All keys."""
        return list(self._items.keys())

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        """Objects whose index function `index_name` yields `value`."""
        return [self._items[k] for k in self.index_keys(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> list[str]:
        """Keys of the objects whose index function `index_name` yields `value`."""
        if index_name not in self._indices:
            raise KeyError(f"index with name {index_name} does not exist")
        return sorted(self._indices[index_name].get(value, ()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # indexers

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Add index functions (obj -> list of index values); existing objects are indexed."""
        for name, func in indexers.items():
            if name in self._indexers:
                raise ValueError(f"indexer conflict: {name}")
            self._indexers[name] = func
            self._indices[name] = {}
            for key, obj in self._items.items():
                self._index_one(name, key, obj)

    def _index_one(self, name: str, key: str, obj: Obj) -> None:
        try:
            values = self._indexers[name](obj) or []
        except Exception:
            log.exception("index function %s failed for %s", name, key)
            values = []
        idx = self._indices[name]
        for v in values:
            idx.setdefault(v, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._indexers.items():
            try:
                values = func(obj) or []
            except Exception:
                values = []
            idx = self._indices[name]
            for v in values:
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]

    # writes

    def _put(self, key: str, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index_one(name, key, obj)
        return old

    def _remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def add(self, obj: Obj) -> None:
        """Insert or replace an object."""
        self._put(self.key_func(obj), obj)

    update = add

    def delete(self, obj: Obj) -> None:
        """Remove an object (by its key)."""
        self._remove(self.key_func(obj))

    def replace(self, objs: Iterable[Obj]) -> None:
        """Make the store hold exactly `objs`."""
        self._items = {}
        self._indices = {name: {} for name in self._indexers}
        for obj in objs:
            self._put(self.key_func(obj), obj)


class EventHandlerRegistration:
    """One set of handlers with its own notification queue; returned by add_event_handler."""

    def __init__(self, on_add: Callable | None, on_update: Callable | None,
                 on_delete: Callable | None) -> None:
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete
        self._queue: asyncio.Queue[tuple[str, tuple]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def notify(self, kind: str, *args: Any) -> None:
        self._queue.put_nowait((kind, args))

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def wait_idle(self) -> None:
        """Wait until every queued notification has been handled."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            kind, args = await self._queue.get()
            try:
                fn = {"add": self.on_add, "update": self.on_update, "delete": self.on_delete}[kind]
                if fn is not None:
                    result = fn(*args)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event handler (%s) failed", kind)
            finally:
                self._queue.task_done()


class _Backoff:
    """Exponential backoff with jitter (client-go reflector: 800ms doubling to 30s, jitter 1.0)."""

    def __init__(self, initial: float = 0.8, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self._next = initial

    def next(self) -> float:
        d = self._next
        self._next = min(self.cap, self._next * 2)
        return d * (1 + random.random())

    def reset(self) -> None:
        self._next = self.initial


class SharedInformer:
    """A cache of one resource (optionally one namespace and selectors) kept by list + watch.

    `run()` runs until `stop()`; `start()` runs it as a task. Handlers added after the cache has
    synced first receive on_add for every cached object.
    """

    min_watch_timeout = 300.0   # seconds; each watch asks for a random 1x-2x of this
    short_watch = 1.0           # a watch closing this fast with no events is an error

    def __init__(self, client: Client, api_version: str, resource: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync_period: float = 0.0, indexers: dict[str, IndexFunc] | None = None,
                 page_size: int = 500) -> None:
        self.client = client
        self.api_version = api_version
        self.resource = resource
        self.namespace = namespace or None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.page_size = page_size
        self.store = Store(indexers)
        self._handlers: list[EventHandlerRegistration] = []
        self._synced = asyncio.Event()
        self._stop = asyncio.Event()
        self._running = False
        self._task: asyncio.Task | None = None
        self._rv: str | None = None
        self._backoff = _Backoff()
        self.relists = 0

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<SharedInformer {self.api_version} {self.resource}{where}>"

    # -- cache access ----------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        """Same as store.get."""
        return self.store.get(key)

    def list(self) -> list[Obj]:
        """Same as store.list."""
        return self.store.list()

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        """Same as store.by_index."""
        return self.store.by_index(index_name, value)

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Add index functions (allowed at any time; existing objects are indexed)."""
        self.store.add_indexers(indexers)

    @property
    def has_synced(self) -> bool:
        """True once the first LIST has been stored."""
        return self._synced.is_set()

    @property
    def last_sync_resource_version(self) -> str | None:
        """The resourceVersion the cache is current to."""
        return self._rv

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait for the first LIST to be stored; False on timeout or when stopped first."""
        waiter = asyncio.ensure_future(self._synced.wait())
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        return self._synced.is_set()

    # -- handlers --------------------------------------------------------------------

    def add_event_handler(self, on_add: Callable[[Obj], Any] | None = None,
                          on_update: Callable[[Obj, Obj], Any] | None = None,
                          on_delete: Callable[[Obj], Any] | None = None) -> EventHandlerRegistration:
        """Register handlers: on_add(obj), on_update(old, new), on_delete(obj). Each may be a
        function or a coroutine function. Returns a registration for remove_event_handler."""
        reg = EventHandlerRegistration(on_add, on_update, on_delete)
        self._handlers.append(reg)
        for obj in self.store.list():
            reg.notify("add", obj)
        if self._running:
            reg.start()
        return reg

    async def remove_event_handler(self, reg: EventHandlerRegistration) -> None:
        """Stop delivering to `reg`."""
        if reg in self._handlers:
            self._handlers.remove(reg)
        await reg.stop()

    async def wait_handlers_idle(self) -> None:
        """Wait until every handler has processed everything delivered so far."""
        for reg in list(self._handlers):
            await reg.wait_idle()

    def _notify(self, kind: str, *args: Any) -> None:
        for reg in self._handlers:
            reg.notify(kind, *args)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Run the informer as a task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=repr(self))
        return self._task

    def stop(self) -> None:
        """Ask run() to return (now or, if it has not started yet, as soon as it starts);
        handlers stop receiving events. An informer is not restarted after stop()."""
        self._stop.set()

    async def shutdown(self) -> None:
        """stop() and wait for run() to finish."""
        self.stop()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        """List, watch and dispatch until stop() (or cancellation)."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        for reg in self._handlers:
            reg.start()
        tasks = [asyncio.ensure_future(self._list_and_watch_forever())]
        if self.resync_period and self.resync_period > 0:
            tasks.append(asyncio.ensure_future(self._resync_forever()))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in [*tasks, stopper]:
                t.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            for reg in self._handlers:
                await reg.stop()
            self._running = False

    # -- list and watch -----------------------------------------------------------------

    async def _list_and_watch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            failed = False
            try:
                await self._list()
                await self._watch_until_relist()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every failure means: back off and relist
                failed = True
                log.warning("%r: list/watch failed: %s", self, e)
            if failed or loop.time() - started < self.short_watch:
                await asyncio.sleep(self._backoff.next())
            else:
                self._backoff.reset()

    async def _list(self) -> None:
        result = await self.client.list_all(
            self.api_version, self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, limit=self.page_size)
        rv = (result.get("metadata") or {}).get("resourceVersion")
        self._replace(result.get("items") or [], rv)

    def _replace(self, items: list[Obj], rv: str | None) -> None:
        new = {meta_namespace_key(o): o for o in items}
        old = {k: self.store.get(k) for k in self.store.list_keys()}
        self.store.replace(new.values())
        for key, obj in new.items():
            prev = old.get(key)
            if prev is None:
                self._notify("add", obj)
            else:
                self._notify("update", prev, obj)
        for key, prev in old.items():
            if key not in new and prev is not None:
                self._notify("delete", DeletedFinalStateUnknown(key, prev))
        self._rv = rv
        self.relists += 1
        if not self._synced.is_set():
            log.debug("%r: synced at resourceVersion %s (%d objects)", self, rv, len(new))
            self._synced.set()

    async def _watch_until_relist(self) -> None:
        """Watch from the last RV, re-opening after normal closes; return when a relist is needed
        (410), raise on other failures."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = int(self.min_watch_timeout * (1.0 + random.random()))
            opened = loop.time()
            w = self.client.watch(self.api_version, self.resource, self.namespace,
                                  resource_version=self._rv, timeout_seconds=timeout, allow_bookmarks=True,
                                  label_selector=self.label_selector, field_selector=self.field_selector)
            try:
                async with w:
                    async for etype, obj in w:
                        self._handle(etype, obj)
            except ApiError as e:
                if is_gone(e):
                    log.info("%r: watch from resourceVersion %s expired (%s); relisting", self, self._rv, e)
                    return
                if e.code == 429 or e.code >= 500:
                    log.info("%r: watch failed (%s); retrying", self, e)
                    await asyncio.sleep(self._backoff.next())
                    continue
                raise
            except aiohttp.ClientConnectorError as e:
                log.info("%r: cannot connect to open the watch (%s); retrying", self, e)
                await asyncio.sleep(self._backoff.next())
                continue
            if w.events == 0 and loop.time() - opened < self.short_watch:
                raise RuntimeError("very short watch: the watch closed within "
                                   f"{self.short_watch:g}s without delivering an event")
            self._backoff.reset()

    def _handle(self, etype: str, obj: Obj) -> None:
        if not isinstance(obj, dict):
            return
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if etype == "BOOKMARK":
            if rv:
                self._rv = rv
            return
        key = meta_namespace_key(obj)
        if etype in ("ADDED", "MODIFIED"):
            old = self.store._put(key, obj)
            if old is None:
                self._notify("add", obj)
            else:
                self._notify("update", old, obj)
        elif etype == "DELETED":
            if self.store._remove(key) is not None:
                self._notify("delete", obj)
        else:
            log.warning("%r: unexpected watch event type %r", self, etype)
            return
        if rv:
            self._rv = rv

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if not self._synced.is_set():
                continue
            for obj in self.store.list():
                self._notify("update", obj, obj)


class SharedInformerFactory:
    """Hands out one informer per (api_version, resource, namespace, selectors) so components
    share caches and watches."""

    def __init__(self, client: Client, resync_period: float = 0.0, namespace: str | None = None) -> None:
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace or None
        self._informers: dict[tuple, SharedInformer] = {}

    def informer(self, api_version: str, resource: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync_period: float | None = None,
                 indexers: dict[str, IndexFunc] | None = None) -> SharedInformer:
        """The shared informer for this resource; created on first use. `namespace` defaults to
        the factory's (None = all namespaces). Indexers are added to an existing informer."""
        ns = namespace or self.namespace
        key = (api_version, resource, ns, label_selector or None, field_selector or None)
        inf = self._informers.get(key)
        if inf is None:
            inf = SharedInformer(self.client, api_version, resource, ns, label_selector=label_selector,
                                 field_selector=field_selector,
                                 resync_period=self.resync_period if resync_period is None else resync_period)
            self._informers[key] = inf
        if indexers:
            new = {k: v for k, v in indexers.items() if k not in inf.store._indexers}
            if new:
                inf.add_indexers(new)
        return inf

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer not yet running (call again after asking for more)."""
        for inf in self._informers.values():
            inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """Wait until every informer has synced; False on timeout."""
        results = await asyncio.gather(*(inf.wait_for_sync(timeout) for inf in self._informers.values()))
        return all(results)

    async def shutdown(self) -> None:
        """Stop every informer and wait for them."""
        await asyncio.gather(*(inf.shutdown() for inf in self._informers.values()))
