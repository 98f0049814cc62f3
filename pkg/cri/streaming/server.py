"""The streaming server: Exec, Attach and PortForward hand out URLs of this HTTP server, one-time
tokens valid for a minute, as k8s.io/kubelet/pkg/cri/streaming (containerd's server) does:

  GET|POST /exec/{token}          remotecommand: SPDY/3.1 (X-Stream-Protocol-Version: v5..v1
  GET|POST /attach/{token}        .channel.k8s.io) or WebSocket (Sec-WebSocket-Protocol, see websocket.py)
  GET|POST /portforward/{token}   SPDY (portforward.k8s.io) or WebSocket (v4.channel.k8s.io)

An unknown, used or expired token is a 404. Over SPDY the client opens one stream per pipe, each
with a `streamType` header (error, stdin, stdout, stderr, resize; port forwarding: data and error
with `port` and `requestID`); the server waits for all of them (30 s) before starting. The error
stream (channel 3 over WebSocket) ends each exec or attach with the status: for v4 and later a
metav1.Status JSON (Success, or NonZeroExitCode with an ExitCode cause, or InternalError).
When the client goes away mid-stream, the exec'd process is killed.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Protocol

import grpc
from aiohttp import web

from kubelab.cri import errors
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.streaming import (PORT_FORWARD_PROTOCOL_V1, STREAM_PROTOCOL_V1, STREAM_PROTOCOL_V2,
                                   STREAM_PROTOCOL_V3, STREAM_PROTOCOL_V4, STREAM_PROTOCOL_V5, CommandStreams,
                                   encode_status, exec as execmod, spdy, status_exit_code,
                                   status_internal_error, status_success, websocket)
from kubelab.cri.streaming import attach as attachmod, portforward

log = logging.getLogger("kubelab.cri.streaming")

TOKEN_TTL = 60.0
MAX_IN_FLIGHT = 1000
TOKEN_LEN = 8
STREAM_CREATION_TIMEOUT = 30.0
IDLE_TIMEOUT = 4 * 3600.0

# SPDY remotecommand protocols, preferred first (the version number is what the handlers key on)
SPDY_COMMAND_PROTOCOLS = {STREAM_PROTOCOL_V5: 5, STREAM_PROTOCOL_V4: 4, STREAM_PROTOCOL_V3: 3,
                          STREAM_PROTOCOL_V2: 2, STREAM_PROTOCOL_V1: 1}
SPDY_PORT_FORWARD_PROTOCOLS = [PORT_FORWARD_PROTOCOL_V1]
STREAM_TYPES = ("error", "stdin", "stdout", "stderr", "resize")


class TooManyInFlight(errors.CRIError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StreamRuntime(Protocol):
    """What the server needs from the runtime (kubelab.cri.runtime.service.RuntimeService)."""

    def exec_target(self, container_id: str) -> Any: ...

    def sandbox_netns(self, sandbox_id: str) -> str: ...


class TokenCache:
    """Single-use random tokens for cached requests, expiring after ttl seconds."""

    def __init__(self, ttl: float = TOKEN_TTL, max_in_flight: int = MAX_IN_FLIGHT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_in_flight = max_in_flight
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def _gc(self) -> None:
        now = self.clock()
        while self._entries:
            token, (expires, _) = next(iter(self._entries.items()))
            if expires >= now:
                return
            del self._entries[token]

    def insert(self, request: Any) -> str:
        self._gc()
        if len(self._entries) >= self.max_in_flight:
            raise TooManyInFlight("maximum number of in-flight streaming requests exceeded")
        for _ in range(10):
            token = base64.urlsafe_b64encode(secrets.token_bytes(6)).decode()[:TOKEN_LEN]
            if token not in self._entries:
                self._entries[token] = (self.clock() + self.ttl, request)
                return token
        raise errors.CRIError("failed to generate a unique streaming token")

    def consume(self, token: str) -> Any | None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return None
        expires, request = entry
        return request if self.clock() <= expires else None

    def __len__(self) -> int:
        return len(self._entries)


def _validate_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    if tty and stderr:
        raise errors.InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise errors.InvalidArgument("one of stdin, stdout, or stderr must be set")


def _text(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n", headers=headers)


class _Exchange:
    """One request being served: the response once the connection was upgraded (it is final)."""

    def __init__(self) -> None:
        self.response: web.StreamResponse | None = None


class SpdyCommandConn:
    """exec/attach over SPDY, once the client opened its streams."""

    def __init__(self, response: web.StreamResponse, session: spdy.SpdySession, version: int,
                 streams: dict[str, spdy.SpdyStream], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
        self.response = response
        self.session = session
        self.version = version
        self.error = streams.get("error")
        for kind, s in streams.items():      # the client only ever writes stdin and resize
            if not ((kind == "stdin" and stdin) or (kind == "resize" and tty)):
                s.discard_input()
        self.streams = CommandStreams(stdin=streams.get("stdin") if stdin else None,
                                      stdout=streams.get("stdout") if stdout else None,
                                      stderr=streams.get("stderr") if stderr else None,
                                      resize=streams.get("resize") if tty else None, tty=tty, gone=session.closed)

    async def start(self) -> None:
        pass

    async def send_status(self, status: dict) -> None:
        for s in (self.streams.stdout, self.streams.stderr):
            if s is not None:
                await s.close()
        if self.error is not None:
            data = encode_status(status, self.version >= 4)
            if data:
                await self.error.write(data)
            await self.error.close()

    async def close(self) -> None:
        await self.session.close()
        await _linger(self.session)


async def _linger(session: spdy.SpdySession, timeout: float = 1.0) -> None:
    """After our GOAWAY, give the client a moment to hang up first: closing a socket whose peer is
    still sending resets the connection, and the reset can destroy what the peer has not read yet."""
    try:
        await asyncio.wait_for(session.peer_eof.wait(), timeout)
    except asyncio.TimeoutError:
        pass


class StreamServer:
    def __init__(self, runtime: StreamRuntime, address: str = "127.0.0.1", port: int = 0, *,
                 token_ttl: float = TOKEN_TTL, idle_timeout: float = IDLE_TIMEOUT,
                 stream_creation_timeout: float = STREAM_CREATION_TIMEOUT) -> None:
        self.runtime = runtime
        self.address = address
        self.port = port
        self.idle_timeout = idle_timeout
        self.stream_creation_timeout = stream_creation_timeout
        self.cache = TokenCache(ttl=token_ttl)
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._active: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application()
        for kind, handler in (("exec", self._exec), ("attach", self._attach), ("portforward", self._port_forward)):
            serve = self._guarded(kind, handler)
            app.router.add_route("GET", f"/{kind}/{{token}}", serve)
            app.router.add_route("POST", f"/{kind}/{{token}}", serve)
        try:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            sock = socket.create_server((self.address, self.port), family=family, backlog=128)
        except OSError as e:
            raise OSError(f"cannot serve streams on {self.address}:{self.port}: {e.strerror or e}") from None
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        if family == socket.AF_INET6:
            host = f"[{host}]"
        self.base_url = f"http://{host}:{port}"
        log.info("serving streams (exec, attach, port-forward) on %s", self.base_url)

    async def stop(self) -> None:
        for t in list(self._active):
            t.cancel()
        if self._active:
            await asyncio.wait(list(self._active), timeout=15)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------ CRI side

    def get_exec(self, req: pb.ExecRequest) -> str:
        if not req.container_id:
            raise errors.InvalidArgument("missing required container_id")
        _validate_streams(req.stdin, req.stdout, req.stderr, req.tty)
        if not req.cmd:
            raise errors.InvalidArgument("cmd must not be empty")
        return self._url("exec", self.cache.insert(_copy(req)))

    def get_attach(self, req: pb.AttachRequest) -> str:
        if not req.container_id:
            raise errors.InvalidArgument("missing required container_id")
        _validate_streams(req.stdin, req.stdout, req.stderr, req.tty)
        return self._url("attach", self.cache.insert(_copy(req)))

    def get_port_forward(self, req: pb.PortForwardRequest) -> str:
        if not req.pod_sandbox_id:
            raise errors.InvalidArgument("missing required pod_sandbox_id")
        for p in req.port:
            if not 0 < p < 65536:
                raise errors.InvalidArgument(f"invalid port {p}")
        return self._url("portforward", self.cache.insert(_copy(req)))

    def _url(self, kind: str, token: str) -> str:
        if not self.base_url:
            raise errors.CRIError("the streaming server is not running")
        return f"{self.base_url}/{kind}/{token}"

    # ------------------------------------------------------------------------------------ HTTP side

    def _consume(self, request: web.Request, kind: type) -> Any | None:
        req = self.cache.consume(request.match_info["token"])
        return req if isinstance(req, kind) else None

    def _guarded(self, kind: str, handler: Callable[[web.Request, "_Exchange"], Awaitable[web.StreamResponse]]):
        async def serve(request: web.Request) -> web.StreamResponse:
            return await self._guard(kind, handler, request)
        return serve

    async def _guard(self, kind: str, handler: Callable[[web.Request, "_Exchange"], Awaitable[web.StreamResponse]],
                     request: web.Request) -> web.StreamResponse:
        """Serve a request in a task that stop() can cancel; whatever happens, answer aiohttp with a
        response (the upgraded one once there is one) and never let a traceback reach its log."""
        ex = _Exchange()
        task = asyncio.ensure_future(handler(request, ex))
        self._active.add(task)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            self._active.discard(task)
        if task.cancelled():
            return ex.response or _text(503, "the streaming server is shutting down")
        e = task.exception()
        if e is not None:
            log.error("%s: %s: %s", kind, type(e).__name__, e)
            return ex.response or _text(500, f"{kind}: internal error: {e}")
        return task.result()

    async def _exec(self, request: web.Request, ex: "_Exchange") -> web.StreamResponse:
        async def work(req: pb.ExecRequest, streams: CommandStreams) -> dict:
            cmd = list(req.cmd)
            log.info("exec container=%s cmd=%s tty=%s", req.container_id[:13], cmd, req.tty)
            target = self.runtime.exec_target(req.container_id)
            code = await execmod.run(target, cmd, streams)
            log.info("exec container=%s cmd=%s exit=%d", req.container_id[:13], cmd, code)
            return status_success() if code == 0 else status_exit_code(code, cmd)

        return await self._serve_command(request, ex, pb.ExecRequest, work, "exec",
                                         "error executing command in container")

    async def _attach(self, request: web.Request, ex: "_Exchange") -> web.StreamResponse:
        async def work(req: pb.AttachRequest, streams: CommandStreams) -> dict:
            log.info("attach container=%s tty=%s", req.container_id[:13], req.tty)
            target = self.runtime.exec_target(req.container_id)
            await attachmod.run(target, streams)
            log.info("attach container=%s ended", req.container_id[:13])
            return status_success()

        return await self._serve_command(request, ex, pb.AttachRequest, work, "attach", "error attaching to container")

    async def _serve_command(self, request: web.Request, ex: "_Exchange", kind: type,
                             work: Callable[[Any, CommandStreams], Awaitable[dict]], name: str,
                             what: str) -> web.StreamResponse:
        """Serve an Exec or Attach URL: take its request (kind) from the cache, upgrade, run
        work(request, streams) as a command session, and answer with the upgraded response."""
        req = self._consume(request, kind)
        if req is None:
            return _text(404, "404 page not found")
        conn = await self._open_command(request, ex, req.stdin, req.stdout, req.stderr, req.tty)
        if isinstance(conn, web.StreamResponse):
            return conn
        await self._command_session(conn, lambda streams: work(req, streams), name, what)
        return conn.response

    async def _command_session(self, conn: Any, work: Callable[[CommandStreams], Awaitable[dict]],
                               kind: str, what: str) -> None:
        """Run work until it ends or the client goes away; send the status; close the connection."""
        try:
            try:
                await conn.start()
            except (ConnectionError, spdy.StreamClosed, RuntimeError) as e:
                log.info("%s: the client went away: %s", kind, e)
                return
            job = asyncio.ensure_future(work(conn.streams))
            gone = asyncio.ensure_future(conn.streams.gone.wait())
            try:
                await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not job.done():
                    job.cancel()
                gone.cancel()
                await asyncio.gather(job, gone, return_exceptions=True)
            if job.cancelled():
                log.info("%s: the client went away, stopped", kind)
                return
            e = job.exception()
            if e is None:
                status = job.result()
            elif isinstance(e, (errors.CRIError, execmod.ExecError, attachmod.AttachError)):
                message = e.message if isinstance(e, errors.CRIError) else str(e)
                log.info("%s: %s", what, message)
                status = status_internal_error(f"{what}: {message}")
            else:
                log.error("%s: %s: %s", what, type(e).__name__, e)
                status = status_internal_error(f"{what}: {e}")
            try:
                await conn.send_status(status)
            except (ConnectionError, spdy.StreamClosed, RuntimeError) as e:
                log.debug("cannot send the status: %s", e)
        finally:
            await conn.close()

    async def _open_command(self, request: web.Request, ex: "_Exchange", stdin: bool, stdout: bool, stderr: bool,
                            tty: bool) -> Any:
        """Upgrade to WebSocket or SPDY and gather the client's streams; an error response otherwise."""
        if websocket.is_websocket_request(request.headers):
            ws, proto = await websocket.accept(request, websocket.REMOTE_COMMAND_PROTOCOLS)
            if proto is None:
                return ws
            ex.response = ws
            return websocket.CommandConn(ws, proto, stdin, stdout, stderr, tty, self.idle_timeout)
        protocol, version_or_error = self._spdy_handshake(request, list(SPDY_COMMAND_PROTOCOLS))
        if isinstance(version_or_error, web.Response):
            return version_or_error
        version = SPDY_COMMAND_PROTOCOLS[protocol]
        expected = 1 + stdin + stdout + stderr + (1 if tty and version >= 3 else 0)
        arrived: dict[str, spdy.SpdyStream] = {}
        complete = asyncio.Event()

        def on_stream(s: spdy.SpdyStream) -> bool:
            kind = s.header("streamtype")
            if kind not in STREAM_TYPES or (kind == "resize" and version < 3):
                log.info("spdy: unexpected stream type %r", kind)
                s.discard_input()
                return True
            arrived[kind] = s
            if len(arrived) >= expected:
                complete.set()
            return True

        resp, session = await spdy.upgrade(request, protocol, on_stream, self.idle_timeout)
        ex.response = resp
        waiter = asyncio.ensure_future(complete.wait())
        closed = asyncio.ensure_future(session.closed.wait())
        try:
            await asyncio.wait({waiter, closed}, timeout=self.stream_creation_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await session.close()
            raise
        finally:
            waiter.cancel()
            closed.cancel()
        if not complete.is_set() or session.closed.is_set():
            log.info("spdy: %s", "the client went away before creating its streams" if session.closed.is_set()
                     else "timed out waiting for the client to create streams")
            await session.close()
            return resp
        return SpdyCommandConn(resp, session, version, arrived, stdin, stdout, stderr, tty)

    @staticmethod
    def _spdy_handshake(request: web.Request, supported: list[str]) -> tuple[str, Any]:
        """(protocol, None) or ("", error response): httpstream.Handshake plus the upgrade checks."""
        offered = [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", [])
                   for p in v.split(",") if p.strip()]
        if not offered:
            return "", _text(400, "unable to upgrade: X-Stream-Protocol-Version is required")
        chosen = next((p for p in offered if p in supported), "")
        if not chosen:
            headers = {"X-Accepted-Stream-Protocol-Versions": ", ".join(supported)}
            return "", _text(403, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                  f"server accepts {supported}", headers)
        if not spdy.is_upgrade_request(request.headers):
            return "", _text(400, "unable to upgrade: missing upgrade headers in request")
        return chosen, None

    # ------------------------------------------------------------------------------------ port forward

    async def _port_forward(self, request: web.Request, ex: "_Exchange") -> web.StreamResponse:
        req = self._consume(request, pb.PortForwardRequest)
        if req is None:
            return _text(404, "404 page not found")
        sandbox_id = req.pod_sandbox_id
        if websocket.is_websocket_request(request.headers):
            ws, proto = await websocket.accept(request, websocket.PORT_FORWARD_PROTOCOLS)
            if proto is None:
                return ws
            ex.response = ws
            await self._ws_port_forward(ws, proto, sandbox_id, list(req.port))
            return ws
        protocol, error = self._spdy_handshake(request, SPDY_PORT_FORWARD_PROTOCOLS)
        if error is not None:
            return error
        pf = _SpdyPortForward(self, sandbox_id)
        resp, session = await spdy.upgrade(request, protocol, pf.on_stream, self.idle_timeout)
        ex.response = resp
        pf.session = session
        await pf.run()
        return resp

    async def _forward_one(self, sandbox_id: str, port: int, data: Any, error: Any) -> None:
        """Forward one connection; a failure is reported on the error stream as upstream words it."""
        try:
            netns = self.runtime.sandbox_netns(sandbox_id)
            log.info("port-forward sandbox=%s port=%d", sandbox_id[:13], port)
            await portforward.forward(netns, port, data, data)
        except (errors.CRIError, portforward.PortForwardError) as e:
            message = e.message if isinstance(e, errors.CRIError) else str(e)
            log.info("port-forward sandbox=%s port=%d: %s", sandbox_id[:13], port, message)
            try:
                await error.write(f"error forwarding port {port} to pod {sandbox_id}, uid : {message}".encode())
            except (ConnectionError, spdy.StreamClosed, RuntimeError):
                pass
        except (ConnectionError, spdy.StreamClosed) as e:
            log.debug("port-forward sandbox=%s port=%d: the client went away: %s", sandbox_id[:13], port, e)
        finally:
            for s in (data, error):
                try:
                    await s.close()
                except (ConnectionError, spdy.StreamClosed, RuntimeError):
                    pass

    async def _ws_port_forward(self, ws: web.WebSocketResponse, proto: websocket.ChannelProtocol, sandbox_id: str,
                               ports: list[int]) -> None:
        kinds = [k for _ in ports for k in ((True, True), (False, True))]
        conn = websocket.ChannelConn(ws, proto, kinds, self.idle_timeout)
        try:
            jobs = []
            for i, port in enumerate(ports):
                data, error = conn.channels[2 * i], conn.channels[2 * i + 1]
                await data.write(websocket.port_prefix(port))
                await error.write(websocket.port_prefix(port))
                jobs.append(asyncio.ensure_future(self._forward_one(sandbox_id, port, data, error)))
            gone = asyncio.ensure_future(conn.gone.wait())
            try:
                while jobs and not gone.done() and not all(j.done() for j in jobs):
                    await asyncio.wait([j for j in jobs if not j.done()] + [gone],
                                       return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                for j in jobs:
                    if not j.done():
                        j.cancel()
                await asyncio.gather(gone, *jobs, return_exceptions=True)
        except (ConnectionError, RuntimeError) as e:
            log.debug("port-forward: %s", e)
        finally:
            await conn.close()


class _SpdyPortForward:
    """One SPDY port-forward connection: streams pair up by requestID (data + error), each pair is a
    forwarded connection. Runs until the client closes the connection."""

    def __init__(self, server: StreamServer, sandbox_id: str) -> None:
        self.server = server
        self.sandbox_id = sandbox_id
        self.session: spdy.SpdySession | None = None
        self.pairs: dict[str, dict[str, spdy.SpdyStream]] = {}
        self.jobs: set[asyncio.Task] = set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self.jobs.add(t)
        t.add_done_callback(self._reap)

    def _reap(self, t: asyncio.Task) -> None:
        self.jobs.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("port-forward: %s: %s", type(t.exception()).__name__, t.exception())

    def on_stream(self, s: spdy.SpdyStream) -> bool:
        port_s = s.header("port")
        try:
            port = int(port_s)
        except ValueError:
            log.info("port-forward: stream without a valid port header (%r)", port_s)
            return False
        if not 0 < port < 65536:
            log.info("port-forward: port %d out of range", port)
            return False
        kind = s.header("streamtype")
        if kind not in ("data", "error"):
            log.info("port-forward: invalid stream type %r", kind)
            return False
        rid = s.header("requestid")
        if not rid:     # old clients: pairs are consecutive odd ids, error first
            rid = str(s.id if kind == "error" else s.id - 2)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = {}
            self._spawn(self._expire(rid))
        if kind in pair:
            s.discard_input()
            self._spawn(self._complain(pair.get("error"), f"error processing stream for request {rid}: "
                                                          f"{kind} stream already assigned"))
            return True
        pair[kind] = s
        if kind == "error":
            s.discard_input()
        if "data" in pair and "error" in pair:
            del self.pairs[rid]
            self._spawn(self.server._forward_one(self.sandbox_id, port, pair["data"], pair["error"]))
        return True

    async def _complain(self, error: spdy.SpdyStream | None, message: str) -> None:
        log.info("port-forward: %s", message)
        if error is not None:
            try:
                await error.write(message.encode())
            except spdy.StreamClosed:
                pass

    async def _expire(self, rid: str) -> None:
        await asyncio.sleep(self.server.stream_creation_timeout)
        pair = self.pairs.pop(rid, None)
        if pair:
            await self._complain(pair.get("error"), f"timed out waiting for streams of request {rid}")
            for s in pair.values():
                await s.reset()

    async def run(self) -> None:
        assert self.session is not None
        try:
            await self.session.closed.wait()
        finally:
            for t in list(self.jobs):
                t.cancel()
            await asyncio.gather(*self.jobs, return_exceptions=True)
            await self.session.close()
            await _linger(self.session)


def _copy(msg: Any) -> Any:
    out = type(msg)()
    out.CopyFrom(msg)
    return out
