"""GuaranteedUpdate on a hot key (as the service IP range is) against the real etcd: every writer
wins eventually, none fails with a conflict, and no increment is lost."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from kubelab.storage.etcd import Store

pytestmark = pytest.mark.integration


async def test_guaranteed_update_on_a_hot_key_never_gives_up(control_plane):
    store = Store([control_plane.etcd.url])
    key = f"/kubelab-test/hot/{uuid.uuid4().hex}"
    writers, rounds = 48, 5
    try:
        await store.create(key, {"n": 0})

        async def bump(cur: dict) -> dict:
            await asyncio.sleep(0)          # let the other writers race in between read and write
            cur["n"] += 1
            return cur

        async def writer() -> None:
            for _ in range(rounds):
                await store.guaranteed_update(key, bump)

        await asyncio.gather(*(writer() for _ in range(writers)))
        assert (await store.get(key))["n"] == writers * rounds
    finally:
        try:
            await store.delete(key)
        finally:
            await store.close()
