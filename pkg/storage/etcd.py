"""The etcd store: objects as JSON under /registry keys, resourceVersion = etcd mod_revision.

Every write is one etcd transaction: create compares create_revision == 0, update and delete
compare mod_revision with the revision the caller read (optimistic concurrency). The stored
bytes never carry metadata.resourceVersion; it is set from the key's mod_revision on read.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

import aetcd
import grpc
from aetcd import rpc

from .errors import AlreadyExists, Conflict, Expired, NotFound, Unavailable

log = logging.getLogger(__name__)

UpdateFn = Callable[[dict], "dict | None | Awaitable[dict | None]"]


def encode(obj: dict) -> bytes:
    """Serialize an object for etcd, without its resourceVersion."""
    meta = obj.get("metadata")
    if meta and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        obj = {**obj, "metadata": meta}
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(value: bytes, mod_revision: int) -> dict:
    """Deserialize a stored object and stamp its resourceVersion."""
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def prefix_end(prefix: bytes) -> bytes:
    """The etcd range end that covers every key starting with prefix."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def _stamped(obj: dict, revision: int) -> dict:
    """obj with metadata.resourceVersion set (a shallow copy: the caller's dict is not changed)."""
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(revision)
    return {**obj, "metadata": meta}


@dataclass
class ListResult:
    items: list[dict]
    revision: int
    #: key to continue from when the list was cut by limit, else None
    next_key: str | None
    #: how many items are left after this page (etcd count minus this page)
    remaining: int


class Store:
    """Typed access to etcd for the apiserver. All methods raise storage errors, never grpc ones."""

    def __init__(self, endpoints: list[str], *, timeout: float = 10.0) -> None:
        url = urlparse(endpoints[0] if "://" in endpoints[0] else "http://" + endpoints[0])
        self.endpoints = endpoints
        self.client = aetcd.Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, timeout=timeout,
                                   options={"grpc.max_receive_message_length": 256 << 20,
                                            "grpc.max_send_message_length": 32 << 20})
        self.timeout = timeout

    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    # --- low level -------------------------------------------------------------------------

    async def _call(self, method: str, request: Any) -> Any:
        await self.client.connect()
        try:
            return await getattr(self.client.kvstub, method)(request, timeout=self.timeout,
                                                              metadata=self.client.metadata)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (e.details() or ""):
                raise Expired(0, 0) from e
            raise Unavailable("", f"etcd: {e.code().name}: {e.details()}") from e

    async def revision(self) -> int:
        """The current etcd revision (a cheap count-only range)."""
        resp = await self._call("Range", rpc.RangeRequest(key=b"/registry/", count_only=True, limit=1))
        return resp.header.revision

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.revision(), 2)
            return True
        except Exception:
            return False

    # --- reads -----------------------------------------------------------------------------

    async def get(self, key: str) -> dict:
        resp = await self._call("Range", rpc.RangeRequest(key=key.encode()))
        if not resp.kvs:
            raise NotFound(key)
        kv = resp.kvs[0]
        return decode(kv.value, kv.mod_revision)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_key: str | None = None) -> ListResult:
        """List keys under prefix (which must end with '/') at a revision (0 = newest)."""
        pb = prefix.encode()
        start = start_key.encode() if start_key else pb
        req = rpc.RangeRequest(key=start, range_end=prefix_end(pb), revision=revision,
                               limit=limit + 1 if limit else 0)
        try:
            resp = await self._call("Range", req)
        except Expired:
            raise Expired(revision, 0)
        kvs = list(resp.kvs)
        next_key = None
        if limit and len(kvs) > limit:
            next_key = kvs[limit].key.decode()
            kvs = kvs[:limit]
        items = [decode(kv.value, kv.mod_revision) for kv in kvs]
        remaining = max(0, resp.count - len(items)) if next_key else 0
        return ListResult(items, resp.header.revision, next_key, remaining)

    async def list_raw(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        """Every (key, value, mod_revision) under a prefix and the revision read at."""
        pb = prefix.encode()
        resp = await self._call("Range", rpc.RangeRequest(key=pb, range_end=prefix_end(pb)))
        return [(kv.key.decode(), kv.value, kv.mod_revision) for kv in resp.kvs], resp.header.revision

    # --- writes ----------------------------------------------------------------------------

    async def create(self, key: str, obj: dict) -> dict:
        """Create the key; returns obj (which the store now owns) stamped with its resourceVersion."""
        kb = key.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=kb, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=kb, value=encode(obj)))],
        )
        resp = await self._call("Txn", txn)
        if not resp.succeeded:
            raise AlreadyExists(key)
        return _stamped(obj, resp.header.revision)

    async def _cas_put(self, key: str, obj: dict, mod_revision: int) -> tuple[bool, int, Any]:
        return await self._cas_put_value(key, encode(obj), mod_revision)

    async def _cas_put_value(self, key: str, value: bytes, mod_revision: int) -> tuple[bool, int, Any]:
        """Put if the key's mod_revision still equals mod_revision; returns (ok, revision, current kv or None)."""
        kb = key.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=kb, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=kb, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=kb))],
        )
        resp = await self._call("Txn", txn)
        if resp.succeeded:
            return True, resp.header.revision, None
        kvs = resp.responses[0].response_range.kvs
        return False, resp.header.revision, (kvs[0] if kvs else None)

    async def update(self, key: str, obj: dict, expected_rv: int) -> dict:
        """Replace the object if its resourceVersion is still expected_rv."""
        ok, rev, cur = await self._cas_put(key, obj, expected_rv)
        if not ok:
            if cur is None:
                raise NotFound(key)
            raise Conflict(key)
        return _stamped(obj, rev)

    async def guaranteed_update(self, key: str, fn: UpdateFn, *, max_retries: int | None = None) -> tuple[dict, dict]:
        """Read-modify-write with retry on races; returns (old, new).

        fn gets a private copy of the current object and returns the new object, or None to
        leave it unchanged. It may raise to abort (the error propagates). NotFound when absent.
        As upstream's GuaranteedUpdate, it retries until it wins (a hot key such as the service IP
        range sees a steady stream of writers, and a cap made unlucky writers fail with a 500);
        after a few lost rounds it waits a random moment to break up convoys. max_retries caps
        the attempts (Conflict after that) where a caller wants one.
        """
        resp = await self._call("Range", rpc.RangeRequest(key=key.encode()))
        kv = resp.kvs[0] if resp.kvs else None
        attempt = 0
        while max_retries is None or attempt < max_retries:
            if attempt >= 4:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * attempt)))
                resp = await self._call("Range", rpc.RangeRequest(key=key.encode()))
                kv = resp.kvs[0] if resp.kvs else None
            attempt += 1
            if kv is None:
                raise NotFound(key)
            current = decode(kv.value, kv.mod_revision)
            result = fn(decode(kv.value, kv.mod_revision))
            if asyncio.iscoroutine(result):
                result = await result
            if result is None:
                return current, current
            value = encode(result)
            if value == kv.value:
                return current, current
            ok, rev, kv2 = await self._cas_put_value(key, value, kv.mod_revision)
            if ok:
                return current, _stamped(result, rev)
            kv = kv2
        raise Conflict(key)

    async def delete(self, key: str, expected_rv: int | None = None) -> dict:
        """Delete the key (if its mod_revision is expected_rv, when given); returns the deleted object."""
        kb = key.encode()
        while True:
            if expected_rv is None:
                resp = await self._call("Range", rpc.RangeRequest(key=kb))
                if not resp.kvs:
                    raise NotFound(key)
                rev = resp.kvs[0].mod_revision
            else:
                rev = expected_rv
            txn = rpc.TxnRequest(
                compare=[rpc.Compare(key=kb, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=rev)],
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=kb, prev_kv=True))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=kb))],
            )
            resp = await self._call("Txn", txn)
            if resp.succeeded:
                prev = resp.responses[0].response_delete_range.prev_kvs
                if not prev:
                    raise NotFound(key)
                return decode(prev[0].value, prev[0].mod_revision)
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise NotFound(key)
            if expected_rv is not None:
                raise Conflict(key)

    async def put_raw(self, key: str, value: bytes) -> int:
        resp = await self._call("Put", rpc.PutRequest(key=key.encode(), value=value))
        return resp.header.revision

    async def compact(self, revision: int) -> None:
        await self._call("Compact", rpc.CompactionRequest(revision=revision, physical=False))

    async def watch(self, prefix: str, start_revision: int):
        """An aetcd watch over every key under prefix from start_revision, with previous values."""
        await self.client.connect()
        pb = prefix.encode()
        return await self.client.watch(pb, range_end=prefix_end(pb), start_revision=start_revision, prev_kv=True)
