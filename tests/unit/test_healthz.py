"""The shared /healthz handler, worded as upstream's healthz package."""
import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kubelab.client.healthz import health_app


async def get(app: web.Application, path: str) -> tuple[int, str]:
    async with TestClient(TestServer(app)) as c:
        r = await c.get(path)
        return r.status, await r.text()


def test_checks_pass_then_fail_with_upstream_wording():
    state = {"msg": None}
    app = health_app(lambda: True, checks={"syncloop": lambda: state["msg"]})

    async def run():
        assert await get(app, "/healthz") == (200, "ok")
        assert await get(app, "/healthz?verbose") == (200, "[+]ping ok\n[+]syncloop ok\nhealthz check passed\n")
        state["msg"] = "sync Loop took longer than expected"
        assert await get(app, "/healthz") == (500, "[+]ping ok\n[-]syncloop failed: reason withheld\n"
                                                   "healthz check failed\n")
        assert (await get(app, "/livez"))[0] == 500
        assert await get(app, "/readyz") == (200, "ok")
    asyncio.run(run())
