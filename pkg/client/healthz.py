"""The HTTP side every daemon shares: /healthz, /livez, /readyz and Prometheus /metrics.

    app = health_app(ready=lambda: informers_synced)
    metrics_app(registry, app)                      # same listener
    runner = await serve(app, "127.0.0.1", 10257)   # ... await runner.cleanup()
"""
from __future__ import annotations

import ssl
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def health_app(ready: Callable[[], bool], app: web.Application | None = None,
               not_ready_message: str = "informers not synced") -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text=not_ready_message + "\n")

    app = app or web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def metrics_app(registry: CollectorRegistry, app: web.Application | None = None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = app or web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Listen on host:port; OSError (as raised by bind) if that fails, with nothing left running."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
