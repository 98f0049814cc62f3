"""The CRI log reader (kubelab.kubelet.logs): upstream's kuberuntime/logs cases plus partial lines,
tail, since, limitBytes, timestamps, follow and rotation."""
from __future__ import annotations

import asyncio
import os

import pytest

from kubelab.kubelet.logs import (LogFormatError, LogOptions, parse_record, parse_timestamp_ns, read_logs,
                                  tail_start_offset)

T0 = "2016-10-06T00:17:09.669794202Z"
T1 = "2016-10-06T00:17:10.113242941Z"
T2 = "2016-10-06T00:17:11.000000001Z"


def _write(path, *records: str) -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(r + "\n")


def _read(path, **kw) -> bytes:
    out = bytearray()

    async def write(b: bytes) -> None:
        out.extend(b)

    asyncio.run(read_logs(path, LogOptions(**kw), write))
    return bytes(out)


@pytest.mark.parametrize("line,stream,partial,content", [
    (f"{T0} stdout F log content 1", "stdout", False, b"log content 1"),
    (f"{T1} stderr F log content 2", "stderr", False, b"log content 2"),
    (f"{T0} stdout P log content 3", "stdout", True, b"log content 3"),
    (f"{T0} stdout F ", "stdout", False, b""),
    (f"{T0} stdout F", "stdout", False, b""),
    (f"{T0} stdout F:x with  two  spaces", "stdout", False, b"with  two  spaces"),
])
def test_parse_record(line, stream, partial, content):
    rec = parse_record(line.encode())
    assert (rec.stream, rec.partial, rec.content) == (stream, partial, content)
    assert rec.timestamp == line.split()[0]


@pytest.mark.parametrize("line", ["", "garbage", f"{T0} stdin F x", f"{T0} stdout X x", "notatime stdout F x"])
def test_parse_record_rejects(line):
    with pytest.raises(LogFormatError):
        parse_record(line.encode())


def test_timestamp_nanoseconds_and_offsets():
    assert parse_timestamp_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_timestamp_ns("1970-01-01T01:00:00+01:00") == 0
    assert parse_timestamp_ns("1970-01-01T00:00:00.5Z") == 500_000_000


def test_partial_lines_are_joined_and_streams_interleave(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout P hel", f"{T0} stderr F oops", f"{T1} stdout P lo ", f"{T1} stdout F world",
           "not a cri line", f"{T2} stdout F end")
    assert _read(p) == b"oops\nhello world\nend\n"


def test_timestamps_prefix_logical_lines(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout P a", f"{T1} stdout F b", f"{T2} stderr F c")
    assert _read(p, timestamps=True) == f"{T0} ab\n{T2} c\n".encode()


@pytest.mark.parametrize("tail,want", [(0, b""), (1, b"l3\n"), (2, b"l2a l2b\nl3\n"), (3, b"l1\nl2a l2b\nl3\n"),
                                       (10, b"l1\nl2a l2b\nl3\n")])
def test_tail_counts_logical_lines(tmp_path, tail, want):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout F l1", f"{T1} stdout P l2a ", f"{T1} stdout F l2b", f"{T2} stdout F l3")
    assert _read(p, tail_lines=tail) == want


def test_tail_across_blocks(tmp_path, monkeypatch):
    import kubelab.kubelet.logs as logs
    monkeypatch.setattr(logs, "TAIL_BLOCK", 7)
    p = tmp_path / "0.log"
    _write(p, *[f"{T0} stdout F line {i}" for i in range(50)])
    assert _read(p, tail_lines=3) == b"line 47\nline 48\nline 49\n"
    with open(p, "rb") as f:
        assert tail_start_offset(f, 50) == 0
        assert tail_start_offset(f, 0) == os.path.getsize(p)


def test_since_skips_older_lines(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout F old", f"{T1} stdout F new", f"{T2} stdout F newer")
    assert _read(p, since_ns=parse_timestamp_ns(T1)) == b"new\nnewer\n"
    assert _read(p, since_ns=parse_timestamp_ns(T2) + 1) == b""


def test_limit_bytes_cuts_the_output(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout F 12345", f"{T1} stdout F 67890")
    assert _read(p, limit_bytes=8) == b"12345\n67"
    assert _read(p, limit_bytes=8, timestamps=True) == T0.encode()[:8]
    assert _read(p, limit_bytes=6, tail_lines=1) == b"67890\n"


def test_file_ending_in_a_partial_line(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout F a", f"{T1} stdout P unfinished")
    assert _read(p) == b"a\nunfinished"


def test_follow_reads_new_lines_survives_rotation_and_stops_when_the_container_stops(tmp_path):
    p = tmp_path / "0.log"
    _write(p, f"{T0} stdout F before")
    state = {"running": True}
    out = bytearray()

    async def running() -> bool:
        return state["running"]

    async def main() -> None:
        async def write(b: bytes) -> None:
            out.extend(b)

        task = asyncio.ensure_future(read_logs(p, LogOptions(follow=True), write, running))

        async def until(needle: bytes) -> None:
            deadline = asyncio.get_running_loop().time() + 5
            while needle not in out:
                assert asyncio.get_running_loop().time() < deadline, f"never saw {needle!r} in {bytes(out)!r}"
                await asyncio.sleep(0.02)

        await until(b"before\n")
        _write(p, f"{T1} stdout P fol", f"{T1} stdout F lowed")
        await until(b"followed\n")
        # rotation as the kubelet does it: rename, then the runtime reopens a new file at the path;
        # a record written to the old file after the rename is still read
        os.rename(p, tmp_path / "0.log.20161006-001710")
        _write(tmp_path / "0.log.20161006-001710", f"{T1} stdout F late in old")
        _write(p, f"{T2} stdout F rotated")
        await until(b"rotated\n")
        assert not task.done()
        state["running"] = False
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert bytes(out) == b"before\nfollowed\nlate in old\nrotated\n"
