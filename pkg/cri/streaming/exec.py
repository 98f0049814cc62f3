"""Run a command in a running container for the streaming Exec: `runc exec` with the client's pipes.

Without a tty, runc gets pipes as stdin/stdout/stderr and hands them to the process as they are;
runc waits for it and exits with its status. With a tty, runc runs non-detached with a pseudo
terminal of ours as its own stdio (as CRI-O does): runc makes the container's terminal and copies
between the two, and resizes the container's terminal to ours at start and on SIGWINCH, so a resize
is TIOCSWINSZ on our pty master plus SIGWINCH to runc. (`runc exec --console-socket` would hand the
container's pty master over directly, but it needs --detach, after which the process is reparented
to the container's init and its exit status is lost.)

runc's --pid-file names the process's host pid: when the client goes away (cancellation), the process,
its descendants and its process group are SIGKILLed and runc reaped, so nothing stays behind in the
container. These are long-running interactive processes with streamed stdio, which is why they are
started here rather than through kubelab.proc.run (made for commands that finish).
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import struct
import termios
import tty as ttymod
from typing import Any

from kubelab.cri.runtime import spec as ocispec
from kubelab.cri.runtime.runc import ExecCall, kill_tree
from kubelab.cri.streaming import CommandStreams, Sink, Source, TerminalSize, terminal_sizes

log = logging.getLogger("kubelab.cri.streaming.exec")

DRAIN_AFTER_EXIT = 5.0      # seconds to wait for output pipes held open by the process's children
KILL_WAIT = 10.0


class ExecError(Exception):
    """The command could not be run (runc's own failure); str() is one line."""


async def run(target: Any, cmd: list[str], streams: CommandStreams) -> int:
    """Run cmd in the container target (a RuntimeService ExecTarget) wired to streams; return its
    exit code. Cancelling kills the process and waits for runc to exit."""
    if not cmd:
        raise ExecError("cmd must not be empty")
    process = ocispec.exec_process({"process": target.process}, cmd, tty=streams.tty)
    with target.runc.exec_call(target.id, process, prefix="kubelab-exec-") as call:
        if streams.tty:
            code = await _run_tty(call, streams)
        else:
            code = await _run_pipes(call, streams)
        if code != 0:
            err = call.error()
            if err:
                raise ExecError(err)
        return code


# ---------------------------------------------------------------------------------------------- pipes

async def _run_pipes(call: ExecCall, streams: CommandStreams) -> int:
    dn = asyncio.subprocess.DEVNULL
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *call.args, stdin=pipe if streams.stdin else dn, stdout=pipe if streams.stdout else dn,
        stderr=pipe if streams.stderr else dn, start_new_session=True)
    outs: list[asyncio.Task] = []
    if streams.stdout:
        outs.append(asyncio.ensure_future(_copy_out(proc.stdout, streams.stdout)))
    if streams.stderr:
        outs.append(asyncio.ensure_future(_copy_out(proc.stderr, streams.stderr)))
    pumps = list(outs)
    if streams.stdin and proc.stdin is not None:
        pumps.append(asyncio.ensure_future(_copy_in(streams.stdin, proc.stdin)))
    return await _wait(proc, call, pumps, outs)


async def _copy_out(reader: asyncio.StreamReader | None, sink: Sink) -> None:
    assert reader is not None
    while True:
        data = await reader.read(64 * 1024)
        if not data:
            return
        await sink.write(data)


async def _copy_in(source: Source, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await source.read()
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, BrokenPipeError):
        return                          # the process closed its stdin
    finally:
        writer.close()


async def _drain(tasks: list[asyncio.Task]) -> None:
    """Let output pumps finish after the process exited; give up on pipes its children keep open."""
    done, _ = await asyncio.wait(tasks, timeout=DRAIN_AFTER_EXIT)
    for t in done:
        if t.exception() is not None:       # the client stopped reading: the status says the rest
            log.debug("exec: output copy ended: %s", t.exception())


async def _wait(proc: asyncio.subprocess.Process, call: ExecCall, pumps: list[asyncio.Task],
                outs: list[asyncio.Task]) -> int:
    """Wait for runc to exit and the output pumps (outs, a part of pumps) to drain; return its exit
    code. Cancelled (the client went away), kill the process and reap runc. The pumps still running
    are cancelled either way."""
    try:
        code = await proc.wait()
        if outs:
            await _drain(outs)
        return code
    except asyncio.CancelledError:
        await _kill(proc, call)
        raise
    finally:
        for t in pumps:
            if not t.done():
                t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


# ---------------------------------------------------------------------------------------------- tty

def set_winsize(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


async def _run_tty(call: ExecCall, streams: CommandStreams) -> int:
    master, slave = os.openpty()
    try:
        ttymod.setraw(slave)            # runc makes it raw too; do it before any byte passes
        os.set_blocking(master, False)
        proc = await asyncio.create_subprocess_exec(*call.args, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    try:
        out = asyncio.ensure_future(_pty_out(master, streams.stdout))
        pumps = [out]
        if streams.stdin:
            pumps.append(asyncio.ensure_future(_pty_in(streams.stdin, master)))
        if streams.resize:
            pumps.append(asyncio.ensure_future(_pty_resize(streams.resize, master, proc.pid)))
        # runc held the only other end: reading runs into EIO once the output is drained
        return await _wait(proc, call, pumps, [out])
    finally:
        os.close(master)


async def _fd_ready(fd: int, write: bool) -> None:
    """Wait until the non-blocking fd can be read (or, write=True, written)."""
    loop = asyncio.get_running_loop()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    ready: asyncio.Future[None] = loop.create_future()
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


async def _pty_out(master: int, sink: Sink | None) -> None:
    while True:
        try:
            data = os.read(master, 64 * 1024)
        except BlockingIOError:
            await _fd_ready(master, write=False)
            continue
        except OSError as e:
            if e.errno == errno.EIO:    # every slave end closed: runc is gone
                return
            raise
        if not data:
            return
        if sink is not None:
            await sink.write(data)


async def _pty_in(source: Source, master: int) -> None:
    while True:
        data = await source.read()
        if not data:
            return                      # a terminal has no end of input: the client types ^D
        view = memoryview(data)
        while view:
            try:
                n = os.write(master, view)
                view = view[n:]
            except BlockingIOError:
                await _fd_ready(master, write=True)
            except OSError:
                return


async def _pty_resize(source: Source, master: int, runc_pid: int) -> None:
    async for size in terminal_sizes(source):
        try:
            set_winsize(master, size)
            os.kill(runc_pid, signal.SIGWINCH)
        except (OSError, ProcessLookupError):
            return


# ---------------------------------------------------------------------------------------------- cleanup

async def _kill(proc: asyncio.subprocess.Process, call: ExecCall) -> None:
    """Kill the exec'd process (once runc wrote its pid) so that runc exits, then reap runc."""
    await call.kill(wait=2.0, exited=lambda: proc.returncode is not None)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_WAIT)
    except asyncio.TimeoutError:
        kill_tree(proc.pid)
        await proc.wait()
    log.info("exec: killed pid=%s", call.pid())
