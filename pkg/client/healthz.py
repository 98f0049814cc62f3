"""The HTTP side every daemon shares: /healthz, /livez, /readyz and Prometheus /metrics.

    app = health_app(ready=lambda: informers_synced)
    metrics_app(registry, app)                      # same listener
    runner = await serve(app, "127.0.0.1", 10257)   # ... await runner.cleanup()
"""
from __future__ import annotations

import ssl
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def health_app(ready: Callable[[], bool], app: web.Application | None = None,
               not_ready_message: str = "informers not synced",
               checks: dict[str, Callable[[], str | None]] | None = None) -> web.Application:
    """`checks` are named liveness checks for /healthz and /livez (a message when failing)."""
    healthz = healthz_handler(checks or {})

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text=not_ready_message + "\n")

    app = app or web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def healthz_handler(checks: dict[str, Callable[[], str | None]]):
    """A /healthz handler as upstream's healthz package words it: "ok"; or, when a check fails (or
    with ?verbose), one "[+]name ok" / "[-]name failed: reason withheld" line per check, then
    "healthz check failed" with status 500 (or "healthz check passed")."""
    async def healthz(request: web.Request) -> web.Response:
        results = [("ping", None)] + [(name, check()) for name, check in checks.items()]
        failed = any(msg is not None for _, msg in results)
        if not failed and "verbose" not in request.query:
            return web.Response(text="ok")
        lines = [f"[+]{name} ok" if msg is None else f"[-]{name} failed: reason withheld" for name, msg in results]
        lines.append("healthz check failed" if failed else "healthz check passed")
        return web.Response(status=500 if failed else 200, text="\n".join(lines) + "\n")
    return healthz


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


def self_signed_context(cert_dir: str | None, name: str) -> tuple[ssl.SSLContext, Any]:
    """A server TLS context with a self-signed certificate for `name` (upstream's components make
    one when no --tls-cert-file is given), kept in cert_dir, or in a temporary directory (returned,
    to be cleaned up) when cert_dir is empty."""
    import tempfile
    from pathlib import Path

    from kubelab.pki import certs
    tmp = None
    if not cert_dir:
        tmp = tempfile.TemporaryDirectory(prefix=f"{name}-")
        cert_dir = tmp.name
    d = Path(cert_dir)
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    if not crt.exists():
        ca, ca_key = certs.make_ca(cn=f"{name}-ca")
        c, k = certs.issue(ca, ca_key, name, sans=("localhost", "127.0.0.1"), server=True)
        certs.write(crt, c + ca, 0o644)
        certs.write(key, k)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx, tmp


class SecureServer:
    """A component's HTTPS /healthz, /livez, /readyz and /metrics (the default Prometheus registry)
    with a self-signed certificate, as kube-scheduler and kube-controller-manager serve them.

        srv = SecureServer("kube-scheduler", host, port, cert_dir, ready=leading.is_set)
        await srv.start()  ...  await srv.stop()
    """

    def __init__(self, name: str, host: str, port: int, cert_dir: str | None, ready: Callable[[], bool],
                 not_ready_message: str = "not leading") -> None:
        self.name, self.host, self.port, self.cert_dir = name, host, port, cert_dir
        self.ready, self.not_ready_message = ready, not_ready_message
        self._runner: web.AppRunner | None = None
        self._tmp: Any = None

    async def start(self) -> None:
        from prometheus_client import REGISTRY
        ctx, self._tmp = self_signed_context(self.cert_dir, self.name)
        app = metrics_app(REGISTRY, health_app(self.ready, not_ready_message=self.not_ready_message))
        try:
            self._runner = await serve(app, self.host, self.port, ctx)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
