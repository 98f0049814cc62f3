"""Proxying an HTTP request to a backend URL, upgraded connections included: apimachinery's
util/proxy UpgradeAwareHandler, which the apiserver uses for pods/log, exec, attach,
portforward and node/pod proxy (to the kubelet) and the kubelet for exec, attach and
port-forward (to the runtime's streaming server).

- A plain request is sent with aiohttp and its answer streamed back as it comes (a followed log
  stays open; nothing is buffered).
- An upgrade request (`Connection: Upgrade`, any `Upgrade:` protocol: WebSocket, SPDY/3.1) is
  written to a raw connection to the backend. When the backend answers 101, the same 101 (with the
  protocol the backend chose) goes to the client and from then on bytes are copied both ways
  unchanged, until either side closes; then both are closed (as upstream: one half ending ends
  the proxied connection). Any other answer is relayed as it is (status, Content-Type, body), so
  the client sees the backend's error text ("unable to upgrade connection: ..." in kubectl).

Headers: hop-by-hop headers are dropped on plain requests; the client's Authorization and
Impersonate-* headers never go to the backend (the proxying server authenticates itself, with its
own client certificate in `ssl`).
"""
from __future__ import annotations

import asyncio
import logging
import ssl as ssllib
from typing import Callable, Mapping

import aiohttp
from aiohttp import web
from yarl import URL

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(h.lower() for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                                           "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
                                           "Content-Length"))
PRIVATE = ("authorization", "impersonate-")
MAX_HEAD = 64 * 1024
MAX_ERROR_BODY = 1 << 20
PIPE_HIGH_WATER = 4 << 20
DIAL_TIMEOUT = 30.0


class BackendError(Exception):
    """The backend could not be reached."""


def is_upgrade_request(headers: Mapping[str, str]) -> bool:
    """Connection: Upgrade with an Upgrade header (httpstream.IsUpgradeRequest)."""
    return "upgrade" in headers.get("Connection", "").lower() and bool(headers.get("Upgrade"))


def _forwarded_headers(headers: Mapping[str, str], keep_hop: bool) -> list[tuple[str, str]]:
    out = []
    for k, v in headers.items():
        lk = k.lower()
        if lk.startswith(PRIVATE) or lk == "host":
            continue
        if not keep_hop and lk in HOP_BY_HOP:
            continue
        out.append((k, v))
    return out


async def proxy(request: web.Request, url: str | URL, *, ssl: ssllib.SSLContext | None = None,
                on_error: Callable[[int, str], Exception] | None = None,
                timeout: float = DIAL_TIMEOUT) -> web.StreamResponse:
    """Serve `request` by proxying it to `url` (whose query replaces the request's). With
    on_error, a non-2xx answer of a plain request raises on_error(status, body text) instead of
    being relayed."""
    target = URL(str(url)) if not isinstance(url, URL) else url
    if is_upgrade_request(request.headers):
        return await proxy_upgrade(request, target, ssl=ssl, timeout=timeout)
    return await proxy_plain(request, target, ssl=ssl, on_error=on_error, timeout=timeout)


async def proxy_plain(request: web.Request, url: URL, *, ssl: ssllib.SSLContext | None = None,
                      on_error: Callable[[int, str], Exception] | None = None,
                      timeout: float = DIAL_TIMEOUT) -> web.StreamResponse:
    body = await request.read() if request.can_read_body else None
    headers = _forwarded_headers(request.headers, keep_hop=False)
    connector = aiohttp.TCPConnector(ssl=ssl if url.scheme == "https" else False, force_close=True)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout))
    try:
        try:
            upstream = await session.request(request.method, url, headers=headers, data=body,
                                             allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise BackendError(f"error dialing backend: {_reason(e)}") from None
        async with upstream:
            if on_error is not None and not 200 <= upstream.status < 300:
                text = (await upstream.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
                raise on_error(upstream.status, text.strip())
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server", "content-encoding"):
                    resp.headers.add(k, v)
            if "Content-Encoding" in upstream.headers:
                resp.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except ConnectionResetError:
                log.debug("proxy %s: the client went away", url.path)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.info("proxy %s: the backend went away: %s", url.path, e)
            return resp
    finally:
        await session.close()


def _reason(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientConnectorError):
        return str(e.os_error) or str(e)
    return str(e) or type(e).__name__


class _Pipe:
    """Takes the place of aiohttp's payload parser on the upgraded client connection: raw bytes
    from the client go straight to the backend (the hook aiohttp's own WebSockets use)."""

    def __init__(self, backend: asyncio.StreamWriter, client: asyncio.Transport | None) -> None:
        self.backend = backend
        self.client = client
        self.eof = asyncio.Event()
        self._draining = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.backend.is_closing():
            return False, b""
        self.backend.write(data)
        if (not self._draining and self.client is not None
                and self.backend.transport.get_write_buffer_size() > PIPE_HIGH_WATER):
            self._draining = True
            self.client.pause_reading()
            asyncio.ensure_future(self._drain())
        return False, b""

    async def _drain(self) -> None:
        try:
            await self.backend.drain()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._draining = False
            if self.client is not None and not self.client.is_closing():
                self.client.resume_reading()

    def feed_eof(self) -> None:
        self.eof.set()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BackendError("the backend's response head is too large") from None
    except asyncio.IncompleteReadError:
        raise BackendError("the backend closed the connection without answering") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        raise BackendError(f"malformed response from the backend: {lines[0][:80]!r}") from None
    headers = []
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return code, parts[2] if len(parts) > 2 else "", headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    h = {k.lower(): v for k, v in headers}
    try:
        if "chunked" in h.get("transfer-encoding", "").lower():
            out = bytearray()
            while len(out) < MAX_ERROR_BODY:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                out += await reader.readexactly(size)
                await reader.readline()
            return bytes(out)
        if "content-length" in h:
            return await reader.readexactly(min(int(h["content-length"]), MAX_ERROR_BODY))
        return await reader.read(MAX_ERROR_BODY)
    except (asyncio.IncompleteReadError, ValueError, ConnectionError):
        return b""


async def proxy_upgrade(request: web.Request, url: URL, *, ssl: ssllib.SSLContext | None = None,
                        timeout: float = DIAL_TIMEOUT) -> web.StreamResponse:
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl if url.scheme == "https" else None, limit=MAX_HEAD),
            timeout)
    except (OSError, asyncio.TimeoutError, ssllib.SSLError) as e:
        raise BackendError(f"error dialing backend: {_reason(e)}") from None
    try:
        body = await request.read() if request.can_read_body else b""
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"{request.method} {url.raw_path_qs} HTTP/1.1", f"Host: {hostport}"]
        lines += [f"{k}: {v}" for k, v in _forwarded_headers(request.headers, keep_hop=True)
                  if k.lower() != "content-length"]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        code, reason, headers = await _read_head(reader)
        if code != 101:
            data = await _read_body(reader, headers)
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "text/plain; charset=utf-8")
            return web.Response(status=code, reason=reason or None, body=data, headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=101, reason=reason or "Switching Protocols")
        for k, v in headers:
            if k.lower() not in ("date", "server", "content-length", "transfer-encoding"):
                resp.headers.add(k, v)
        resp.force_close()
        await resp.prepare(request)
        pipe = _Pipe(writer, request.transport)
        request.protocol.set_parser(pipe)
        await _copy_until_either_ends(reader, resp, pipe)
        return resp
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError, ssllib.SSLError):
            pass


async def _copy_until_either_ends(reader: asyncio.StreamReader, resp: web.StreamResponse, pipe: _Pipe) -> None:
    async def backend_to_client() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await resp.write(data)

    down = asyncio.ensure_future(backend_to_client())
    up = asyncio.ensure_future(pipe.eof.wait())
    try:
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (down, up):
            t.cancel()
        await asyncio.gather(down, up, return_exceptions=True)
