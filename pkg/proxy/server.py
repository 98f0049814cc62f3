"""kube-proxy's HTTP endpoints: /healthz (+ /livez, /readyz) on the healthz address, /metrics (+ the
same health paths, /proxyMode) on the metrics address, as upstream."""
from __future__ import annotations

import json
import logging
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from kubelab.api.timefmt import micro_time

log = logging.getLogger(__name__)


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """"IP:port", "IP" or ":port" -> (host, port); "[v6]:port" too."""
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:] else default_port
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host or "0.0.0.0", int(port) if port else default_port
    return addr or "0.0.0.0", default_port


class HealthServer:
    """Serves health (and optionally metrics) on one address until stop()."""

    def __init__(self, host: str, port: int, healthy: Callable[[], bool], last_updated: Callable[[], float | None],
                 registry: CollectorRegistry | None = None, proxy_mode: str = "iptables") -> None:
        self.host, self.port = host, port
        self.healthy = healthy
        self.last_updated = last_updated
        self.registry = registry
        self.proxy_mode = proxy_mode
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        import time
        ok = self.healthy()
        body = {"lastUpdated": micro_time(self.last_updated()) if self.last_updated() is not None else "", "currentTime": micro_time(time.time())}
        return web.Response(status=200 if ok else 503, text=json.dumps(body), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _mode(self, request: web.Request) -> web.Response:
        return web.Response(text=self.proxy_mode)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/livez", self._health)
        app.router.add_get("/readyz", self._health)
        if self.registry is not None:
            app.router.add_get("/metrics", self._metrics)
            app.router.add_get("/proxyMode", self._mode)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("serving address=%s:%d metrics=%s", self.host, self.port, self.registry is not None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
