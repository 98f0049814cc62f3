"""Reading container logs in the CRI log format, as the kubelet's kuberuntime/logs package does.

A CRI log file (written by conmon or containerd) holds one record per line:

    2016-10-06T00:17:09.669794202Z stdout F log content 2

(`<RFC3339Nano> <stdout|stderr> <tags> <content>`, tags `P` for a partial line that the next
record continues, `F` for a full one). `read_logs` turns such a file into what `kubectl logs`
prints, with the PodLogOptions the kubelet supports: tailLines, sinceSeconds/sinceTime (records
older are skipped), timestamps (each line prefixed with its RFC3339Nano time and a space),
limitBytes (output cut after that many bytes) and follow (wait for more at the end, survive
rotation: when the path names a new file, the rest of the old one is read, then the new one from
its start; stop once the container is no longer running and nothing more comes).

Departure from upstream, on purpose: upstream's tail counts raw file lines and prefixes every
record with a timestamp, so a line split into partial records is counted several times and
printed with timestamps in its middle. Here partial records are joined into one logical line
first: tailLines counts logical lines and a timestamp starts only a logical line (its first
record's time). Lines that are not valid CRI records are skipped, as upstream does.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

STDOUT, STDERR = "stdout", "stderr"
PARTIAL, FULL = "P", "F"
POLL_INTERVAL = 0.1          # follow: how often the end of the file is looked at
RUNNING_CHECK_INTERVAL = 1.0  # follow: how often, while no data comes, the container state is asked
READ_CHUNK = 64 * 1024
TAIL_BLOCK = 64 * 1024


class LogFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    """One line of a CRI log file."""
    timestamp: str          # as written (RFC3339Nano)
    time_ns: int            # nanoseconds since the epoch
    stream: str
    partial: bool
    content: bytes          # without the newline


@dataclass
class LogOptions:
    """The kubelet's view of PodLogOptions (kuberuntime/logs.NewLogOptions)."""
    tail_lines: int | None = None    # None: all
    limit_bytes: int | None = None   # None: no limit
    since_ns: int | None = None      # records before this time are skipped
    timestamps: bool = False
    follow: bool = False


def parse_timestamp_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with up to nine fraction digits."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    if "." in s:
        head, rest = s.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        if not digits or len(digits) > 9:
            raise LogFormatError(f"invalid timestamp {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        s = head + rest
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError:
        raise LogFormatError(f"invalid timestamp {text!r}") from None
    if d.tzinfo is None:
        raise LogFormatError(f"invalid timestamp {text!r}: no time zone")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    delta = d - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + frac_ns


def parse_record(line: bytes) -> Record:
    """Parse one CRI log line (without or with its trailing newline), as upstream's parseCRILog."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise LogFormatError(f"invalid CRI log line: {line[:80]!r}")
    ts, stream, tags = (p.decode("utf-8", "replace") for p in parts[:3])
    if stream not in (STDOUT, STDERR):
        raise LogFormatError(f"unexpected stream type {stream!r}")
    tag_list = tags.split(":")
    if tag_list[0] not in (PARTIAL, FULL):
        raise LogFormatError(f"unexpected tag {tags!r}")
    return Record(ts, parse_timestamp_ns(ts), stream, tag_list[0] == PARTIAL, parts[3] if len(parts) > 3 else b"")


@dataclass
class _Line:
    timestamp: str
    time_ns: int
    stream: str
    content: bytearray
    complete: bool


class _Joiner:
    """Joins partial records into logical lines (per stream: stdout and stderr interleave)."""

    def __init__(self) -> None:
        self.open: dict[str, _Line] = {}

    def feed(self, raw: bytes) -> _Line | None:
        try:
            rec = parse_record(raw)
        except LogFormatError:
            return None
        cur = self.open.get(rec.stream)
        if cur is None:
            cur = _Line(rec.timestamp, rec.time_ns, rec.stream, bytearray(), False)
        cur.content += rec.content
        if rec.partial:
            self.open[rec.stream] = cur
            return None
        self.open.pop(rec.stream, None)
        cur.complete = True
        return cur

    def flush(self) -> list[_Line]:
        """Lines still partial (the file ended in the middle of them), oldest first."""
        out = sorted(self.open.values(), key=lambda ln: ln.time_ns)
        self.open.clear()
        return out


def _render(line: _Line, opts: LogOptions) -> bytes:
    body = bytes(line.content) + (b"\n" if line.complete else b"")
    if opts.timestamps:
        return line.timestamp.encode() + b" " + body
    return body


def tail_start_offset(f, lines: int) -> int:
    """Offset in the open binary file f where the last `lines` logical lines start (partial
    records joined into one line count once). Reads backwards in blocks."""
    f.seek(0, os.SEEK_END)
    pos = f.tell()
    if lines <= 0:
        return pos
    carry = b""
    found = 0
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + carry
        pieces = data.split(b"\n")
        starts = [pos]
        for p in pieces[:-1]:
            starts.append(starts[-1] + len(p) + 1)
        first = 1 if pos > 0 else 0          # the first piece may be cut: keep it for the next block
        for i in range(len(pieces) - 1, first - 1, -1):
            piece = pieces[i]
            if not piece.strip():
                continue
            try:
                rec = parse_record(piece)
            except LogFormatError:
                continue
            if rec.partial:
                continue
            found += 1
            if found > lines:
                return starts[i] + len(piece) + 1
        carry = pieces[0] if pos > 0 else b""
    return 0


async def read_logs(path: Path, opts: LogOptions, write: Callable[[bytes], Awaitable[None]],
                    running: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Write the container log at `path` through `write` as opts asks. With opts.follow, keep
    reading until `running()` says the container stopped and the file has no more data."""
    remaining = opts.limit_bytes

    async def out(data: bytes) -> bool:
        nonlocal remaining
        if remaining is not None:
            if remaining <= 0:
                return False
            data = data[:remaining]
            remaining -= len(data)
        if data:
            await write(data)
        return remaining is None or remaining > 0

    async for line in _lines(path, opts, running):
        if opts.since_ns is not None and line.time_ns < opts.since_ns:
            continue
        if not await out(_render(line, opts)):
            return


async def _lines(path: Path, opts: LogOptions, running: Callable[[], Awaitable[bool]] | None
                 ) -> AsyncIterator[_Line]:
    f = open(path, "rb")
    try:
        if opts.tail_lines is not None:
            f.seek(tail_start_offset(f, opts.tail_lines))
        else:
            f.seek(0)
        joiner = _Joiner()
        pending = b""
        last_check = 0.0
        while True:
            chunk = f.read(READ_CHUNK)
            if chunk:
                pending += chunk
                *records, pending = pending.split(b"\n")
                for raw in records:
                    line = joiner.feed(raw)
                    if line is not None:
                        yield line
                continue
            # end of the file
            if not opts.follow:
                break
            rotated = _rotated(path, f)
            if rotated is not None:
                rest = f.read()          # what was written to the old file after our last read
                f.close()
                f = rotated
                if rest:
                    pending += rest
                    *records, pending = pending.split(b"\n")
                    for raw in records:
                        line = joiner.feed(raw)
                        if line is not None:
                            yield line
                continue
            now = time.monotonic()
            if running is not None and now - last_check >= RUNNING_CHECK_INTERVAL:
                last_check = now
                if not await running():
                    # one more look: data written just before the container exited
                    if f.read(1):
                        f.seek(-1, os.SEEK_CUR)
                        continue
                    break
            elif running is None:
                break
            await asyncio.sleep(POLL_INTERVAL)
        if pending:
            line = joiner.feed(pending)
            if line is not None:
                yield line
        for line in joiner.flush():
            yield line
    finally:
        f.close()


def _rotated(path: Path, f) -> "object | None":
    """The new file at `path` when the one open as f was rotated away (renamed or removed and
    recreated), else None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None      # rotation in progress: the new file comes in a moment
    cur = os.fstat(f.fileno())
    if (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino):
        if st.st_size < f.tell():      # truncated in place (copytruncate)
            f.seek(0)
        return None
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
