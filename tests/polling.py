"""What the integration and e2e tests share to wait for things and call the API: poll a condition
with a deadline (never a bare sleep as an assertion), and run one coroutine against the API."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from kubelab.client.rest import Client


def wait(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """cond()'s first truthy value within timeout seconds; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last})")


async def until(cond: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.2) -> Any:
    """The async twin of wait()."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await cond()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last})")


def api(cp: Any, fn: Callable[[Client], Awaitable[Any]], component: str = "test") -> Any:
    """Run fn(client) with a client of the control plane cp's kubeconfig."""
    async def go() -> Any:
        async with Client.from_kubeconfig(str(cp.kubeconfig), component=component) as c:
            return await fn(c)
    return asyncio.run(go())
