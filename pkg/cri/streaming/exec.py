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
import json
import logging
import os
import shutil
import signal
import struct
import tempfile
import termios
import tty as ttymod
from pathlib import Path
from typing import Any

import psutil

from kubelab.cri.runtime import spec as ocispec
from kubelab.cri.runtime.runc import runc_message
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
    work = Path(tempfile.mkdtemp(prefix="kubelab-exec-", dir=target.runc.tmp_dir))
    try:
        pfile, pidfile, logfile = work / "process.json", work / "pid", work / "log.json"
        fd = os.open(pfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        args = [target.runc.binary, "--root", str(target.runc.root), "--log", str(logfile), "--log-format", "json",
                "exec", "--process", str(pfile), "--pid-file", str(pidfile), target.id]
        if streams.tty:
            code = await _run_tty(args, pidfile, streams)
        else:
            code = await _run_pipes(args, pidfile, streams)
        if code != 0:
            err = _runc_error(logfile)
            if err:
                raise ExecError(err)
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _runc_error(logfile: Path) -> str:
    """runc's own error (exec failed: executable not found, container not running...) or ""."""
    try:
        data = logfile.read_bytes()
    except OSError:
        return ""
    for line in data.decode(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            return runc_message(data)
    return ""


# ---------------------------------------------------------------------------------------------- pipes

async def _run_pipes(args: list[str], pidfile: Path, streams: CommandStreams) -> int:
    dn = asyncio.subprocess.DEVNULL
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=pipe if streams.stdin else dn, stdout=pipe if streams.stdout else dn,
        stderr=pipe if streams.stderr else dn, start_new_session=True)
    tasks: list[asyncio.Task] = []
    try:
        outs = []
        if streams.stdout:
            outs.append(asyncio.ensure_future(_copy_out(proc.stdout, streams.stdout)))
        if streams.stderr:
            outs.append(asyncio.ensure_future(_copy_out(proc.stderr, streams.stderr)))
        tasks += outs
        if streams.stdin and proc.stdin is not None:
            tasks.append(asyncio.ensure_future(_copy_in(streams.stdin, proc.stdin)))
        code = await proc.wait()
        if outs:
            await _drain(outs)
        return code
    except asyncio.CancelledError:
        await _kill(proc, pidfile)
        raise
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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


# ---------------------------------------------------------------------------------------------- tty

def set_winsize(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


async def _run_tty(args: list[str], pidfile: Path, streams: CommandStreams) -> int:
    master, slave = os.openpty()
    try:
        ttymod.setraw(slave)            # runc makes it raw too; do it before any byte passes
        os.set_blocking(master, False)
        proc = await asyncio.create_subprocess_exec(*args, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    tasks: list[asyncio.Task] = []
    try:
        out = asyncio.ensure_future(_pty_out(master, streams.stdout))
        tasks.append(out)
        if streams.stdin:
            tasks.append(asyncio.ensure_future(_pty_in(streams.stdin, master)))
        if streams.resize:
            tasks.append(asyncio.ensure_future(_pty_resize(streams.resize, master, proc.pid)))
        code = await proc.wait()
        # runc held the only other end: reading runs into EIO once the output is drained
        await _drain([out])
        return code
    except asyncio.CancelledError:
        await _kill(proc, pidfile)
        raise
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        os.close(master)


async def _pty_out(master: int, sink: Sink | None) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = os.read(master, 64 * 1024)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(master, lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(master)
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
    loop = asyncio.get_running_loop()
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
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(master, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_writer(master)
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

def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def kill_tree(pid: int | None) -> None:
    """SIGKILL a process, its descendants and its process group."""
    if pid is None:
        return
    try:
        p = psutil.Process(pid)
        victims = p.children(recursive=True) + [p]
    except psutil.Error:
        victims = []
    for v in victims:
        try:
            v.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _kill(proc: asyncio.subprocess.Process, pidfile: Path) -> None:
    """Kill the exec'd process (once runc wrote its pid) so that runc exits, then reap runc."""
    for _ in range(100):
        if proc.returncode is not None:
            break
        pid = _read_pid(pidfile)
        if pid is not None:
            kill_tree(pid)
            break
        await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_WAIT)
    except asyncio.TimeoutError:
        kill_tree(proc.pid)
        await proc.wait()
    log.info("exec: killed pid=%s", _read_pid(pidfile))
