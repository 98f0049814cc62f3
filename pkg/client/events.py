"""Event recorder: core/v1 Events about objects, written in the background (client-go's
tools/record with its EventCorrelator).

    recorder = EventRecorder(client, component="deployment-controller")
    recorder.event(deployment, "Normal", "ScalingReplicaSet", "Scaled up replica set web-5d4 to 3")

`event()` never blocks and never raises: the event is queued (up to 1000; more are dropped with a
log line) and a background task writes it. Before writing, events are correlated as upstream:

* identical events (same source, involved object, type, reason and message) are not created
  again: the first Event's `count` is incremented and `lastTimestamp` moved by a strategic merge
  PATCH `{"count", "lastTimestamp", "message"}` (re-created if it was deleted meanwhile);
* when 10 events that differ only by message arrive for the same object/reason within 10
  minutes, further ones are folded into one Event whose message starts with
  "(combined from similar events): ";
* each source+object may burst 25 events, then 1 per 5 minutes (spam filter).

Writes that fail on the transport are retried up to 12 times, 10 s apart (the first wait
randomised); an error answer from the server drops the event.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Any, Callable

from .rest import ApiError, Client, is_not_found
from .workqueue import TokenBucket
from kubelab.api.timefmt import rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

EVENT_TYPE_NORMAL = "Normal"
EVENT_TYPE_WARNING = "Warning"

MAX_LRU_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL_SECONDS = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
MAX_TRIES_PER_EVENT = 12
MAX_QUEUED_EVENTS = 1000


def object_reference(obj: Obj, field_path: str | None = None) -> Obj:
    """An ObjectReference for an object dict (or a copy of a dict that already is a reference)."""
    if "metadata" in obj:
        meta = obj.get("metadata") or {}
        ref = {
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": meta.get("resourceVersion"),
        }
    else:
        keys = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        ref = {k: obj.get(k) for k in keys}
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v}


class _LRU(collections.OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_lru(self, key: str) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _src(ev: Obj) -> list[str]:
    s = ev.get("source") or {}
    return [s.get("component") or "", s.get("host") or ""]


def _obj(ev: Obj, with_field_path: bool) -> list[str]:
    r = ev.get("involvedObject") or {}
    keys = ["kind", "namespace", "name"] + (["fieldPath"] if with_field_path else []) + ["uid", "apiVersion"]
    return [str(r.get(k) or "") for k in keys]


def event_key(ev: Obj) -> str:
    """Identity of an event for counting: source, involved object, type, reason, message."""
    return "".join(_src(ev) + _obj(ev, True) + [ev.get("type") or "", ev.get("reason") or "",
                                                 ev.get("message") or ""])


def spam_key(ev: Obj) -> str:
    """Key of the spam filter: source and involved object."""
    return "".join(_src(ev) + _obj(ev, False))


def aggregate_keys(ev: Obj) -> tuple[str, str]:
    """(aggregate key, local key): events differing only by message share the aggregate key."""
    agg = "".join(_src(ev) + _obj(ev, False) + [
        ev.get("type") or "", ev.get("reason") or "",
        ev.get("reportingComponent") or "", ev.get("reportingInstance") or ""])
    return agg, ev.get("message") or ""


class EventCorrelator:
    """Filters, aggregates and counts events (upstream defaults). `correlate(event)` returns
    (event to write, patch or None, cache key) or None when the spam filter drops it."""

    def __init__(self, clock: Callable[[], float] = time.time, *, max_events: int = AGGREGATE_MAX_EVENTS,
                 interval: float = AGGREGATE_INTERVAL_SECONDS, spam_burst: int = SPAM_BURST,
                 spam_qps: float = SPAM_QPS, lru_size: int = MAX_LRU_ENTRIES) -> None:
        self.clock = clock
        self.max_events = max_events
        self.interval = interval
        self.spam_burst = spam_burst
        self.spam_qps = spam_qps
        self._spam = _LRU(lru_size)
        self._aggregate = _LRU(lru_size)     # agg key -> (set of local keys, last time)
        self._log = _LRU(lru_size)           # key -> {count, firstTimestamp, name, resourceVersion}

    def _aggregate_event(self, ev: Obj) -> tuple[Obj, str]:
        now = self.clock()
        key = event_key(ev)
        agg_key, local_key = aggregate_keys(ev)
        record = self._aggregate.get_lru(agg_key)
        if record is None or now - record[1] > self.interval:
            record = (set(), now)
        local_keys = record[0]
        local_keys.add(local_key)
        self._aggregate.put(agg_key, (local_keys, now))
        if len(local_keys) < self.max_events:
            return ev, key
        local_keys.pop()  # keep the set from growing beyond max
        ts = rfc3339(now)
        ref = ev.get("involvedObject") or {}
        combined = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.get('name', '')}.{int(now * 1e9):x}",
                         "namespace": (ev.get("metadata") or {}).get("namespace")},
            "involvedObject": ref,
            "reason": ev.get("reason"),
            "message": "(combined from similar events): " + (ev.get("message") or ""),
            "source": ev.get("source"),
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "type": ev.get("type"),
        }
        return combined, agg_key

    def _observe(self, ev: Obj, key: str) -> tuple[Obj, Obj | None]:
        ev = dict(ev)
        last = self._log.get_lru(key)
        patch = None
        if last is not None and last["count"] > 0:
            ev["metadata"] = {**(ev.get("metadata") or {}), "name": last["name"]}
            if last.get("resourceVersion"):
                ev["metadata"]["resourceVersion"] = last["resourceVersion"]
            ev["firstTimestamp"] = last["firstTimestamp"]
            ev["count"] = last["count"] + 1
            patch = {"count": ev["count"], "lastTimestamp": ev.get("lastTimestamp"),
                     "message": ev.get("message")}
        self.update_state(ev, key)
        return ev, patch

    def _spam_filtered(self, ev: Obj) -> bool:
        key = spam_key(ev)
        bucket = self._spam.get_lru(key)
        if bucket is None:
            bucket = TokenBucket(self.spam_qps, self.spam_burst, clock=self.clock)
        self._spam.put(key, bucket)
        return not bucket.try_accept()

    def correlate(self, ev: Obj) -> tuple[Obj, Obj | None, str] | None:
        agg_ev, key = self._aggregate_event(ev)
        observed, patch = self._observe(agg_ev, key)
        if self._spam_filtered(observed):
            return None
        return observed, patch, key

    def update_state(self, ev: Obj, key: str) -> None:
        """Remember the server's view of an event (name, resourceVersion, count)."""
        meta = ev.get("metadata") or {}
        self._log.put(key, {"count": int(ev.get("count") or 1), "firstTimestamp": ev.get("firstTimestamp"),
                            "name": meta.get("name"), "resourceVersion": meta.get("resourceVersion")})


class EventRecorder:
    """Records Events on behalf of one component (source.component) and optional host.

    Call `event()` from the event loop's thread; the writer task starts on the first event.
    `flush()` waits until everything queued has been written (or dropped); `shutdown()` flushes
    (bounded by `timeout`) and stops the writer.
    """

    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 clock: Callable[[], float] = time.time, max_queued: int = MAX_QUEUED_EVENTS,
                 retry_interval: float = 10.0, max_tries: int = MAX_TRIES_PER_EVENT,
                 correlator: EventCorrelator | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.correlator = correlator or EventCorrelator(clock)
        self._queue: asyncio.Queue[Obj] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task | None = None
        self._closed = False

    # -- producing -----------------------------------------------------------------

    def make_event(self, obj: Obj, event_type: str, reason: str, message: str, *,
                   annotations: dict[str, str] | None = None, field_path: str | None = None) -> Obj:
        """The Event object that event() would queue (name "<object name>.<unix nanos hex>")."""
        ref = object_reference(obj, field_path)
        now = self.clock()
        ts = rfc3339(now)
        meta: Obj = {"name": f"{ref.get('name', '')}.{int(now * 1e9):x}",
                     "namespace": ref.get("namespace") or "default"}
        if annotations:
            meta["annotations"] = dict(annotations)
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        ev: Obj = {
            "apiVersion": "v1", "kind": "Event", "metadata": meta,
            "involvedObject": ref, "reason": reason, "message": message,
            "source": source, "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "type": event_type, "reportingComponent": self.component,
        }
        if self.host:
            ev["reportingInstance"] = self.host
        return ev

    def event(self, obj: Obj, event_type: str, reason: str, message: str, *,
              annotations: dict[str, str] | None = None, field_path: str | None = None) -> None:
        """Queue an event about `obj` (an object dict or an ObjectReference dict).
        event_type is "Normal" or "Warning"; reason is UpperCamelCase; message is for people."""
        if event_type not in (EVENT_TYPE_NORMAL, EVENT_TYPE_WARNING):
            log.error("Unsupported event type: '%s'", event_type)
            return
        if self._closed:
            log.debug("event recorder is shut down; dropping event %s %s", reason, message)
            return
        try:
            ev = self.make_event(obj, event_type, reason, message, annotations=annotations,
                                 field_path=field_path)
            self._ensure_writer()
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            log.error("unable to record event: too many queued events, dropped event %s/%s %s",
                      event_type, reason, message)
        except RuntimeError as e:  # no running loop
            log.error("unable to record event %s %s: %s", reason, message, e)

    def eventf(self, obj: Obj, event_type: str, reason: str, message_fmt: str, *args: Any) -> None:
        """event() with a %-format message."""
        self.event(obj, event_type, reason, message_fmt % args if args else message_fmt)

    # -- writing -----------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())

    async def flush(self) -> None:
        """Wait until every queued event has been written or given up on."""
        await self._queue.join()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting events, flush for at most `timeout` seconds, stop the writer."""
        self._closed = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("event recorder: %d events not written at shutdown", self._queue.qsize())
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _writer(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                await self._record_to_sink(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unable to write event")
            finally:
                self._queue.task_done()

    async def _record_to_sink(self, ev: Obj) -> None:
        result = self.correlator.correlate(ev)
        if result is None:
            return
        event, patch, key = result
        tries = 0
        while True:
            if await self._record(event, patch, key):
                return
            tries += 1
            if tries >= self.max_tries or self._closed:
                log.error("Unable to write event %s/%s (retry limit exceeded!)",
                          event.get("reason"), event.get("message"))
                return
            delay = self.retry_interval * (random.random() if tries == 1 else 1.0)
            await asyncio.sleep(delay)

    async def _record(self, event: Obj, patch: Obj | None, key: str) -> bool:
        """True when written or abandoned, False to retry."""
        meta = event.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        try:
            written: Obj | None = None
            if patch is not None and int(event.get("count") or 1) > 1:
                try:
                    written = await self._patch(ns, name, patch)
                except ApiError as e:
                    if not is_not_found(e):
                        raise
            if written is None:
                body = dict(event)
                body["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
                written = await self.client.create("v1", "events", body, ns)
        except ApiError as e:
            log.log(logging.DEBUG if e.reason == "AlreadyExists" else logging.ERROR,
                    "Server rejected event %s/%s: %s (will not retry!)", event.get("reason"),
                    event.get("message"), e)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - transport failures are retried
            log.error("Unable to write event %s/%s: %s (may retry after sleeping)",
                      event.get("reason"), event.get("message"), e)
            return False
        if isinstance(written, dict):
            self.correlator.update_state(written, key)
        return True

    async def _patch(self, ns: str, name: str, patch: Obj) -> Obj:
        try:
            return await self.client.patch("v1", "events", ns, name, patch, "strategic")
        except ApiError as e:
            if e.code != 415:
                raise
            return await self.client.patch("v1", "events", ns, name, patch, "merge")
