"""The frame phase of ``scripts/bench --load N`` replayed by ``wrk`` (Debian's wrk 4.1.0,
LuaJIT scripting), so that the client is not the ceiling (issue 16 item 5).

The Python client (bench.load) still signs every viewer in, runs its searches and its
series metadata; then every viewer's frames go out at once from ONE wrk process:

- one wrk thread per viewer (``-t N``), six connections per thread (``-c 6N``: the
  browser's six HTTP/1.1 connections per origin), a long ``--timeout`` (no wrk-side
  timeout counted), a ``-d`` longer than the bench's own bound (the bench stops wrk);
- a Lua script generated here (:func:`lua_script`, written mode 0600 into the bench's work
  directory because it holds the session cookies, deleted after the run): ``setup``
  numbers the threads (thread k is viewer k); ``init`` builds that viewer's requests, its
  frames in OHIF's middle-out order (bench.load.frame_urls) with OHIF's Accept and its
  Cookie; ``delay`` hands out the frames one by one to the six connections (wrk calls it
  before every request once the script defines it) and parks a connection for a day once
  the list is exhausted; ``response`` counts the answers (an answer that is not a 200
  ``multipart/related`` opening with its boundary is an error) and, when the viewer has
  all its frames, writes ONE line to stdout (:data:`VIEWER_TAG`);
- the bench reads those lines; when every viewer's is in (bounded: an error rather than a
  hang) it sends SIGINT and wrk runs ``done``, which prints one line (:data:`DONE_TAG`)
  with wrk's latency histogram (p50, p99), its requests, bytes and socket errors.

frames/s is total frames / (last answer of any viewer - first request of any viewer), from
the viewers' lines (CLOCK_MONOTONIC, LuaJIT ffi): not wrk's Requests/sec, which spans its
whole duration. The frame latency (request handed to the socket -> answer complete) is
measured per request in Lua: each request carries ``X-Request-ID: drimbox-bench-V-I``,
which the BFF echoes (bff/requestid.py; the static nginx echoes it too), so the answer
finds its request among the six in flight. wrk's own histogram is reported beside it
(``wrk_p50_ms``/``wrk_p99_ms``): wrk 4.1.0 applies its coordinated-omission correction
(stats_correct) before ``done``, adding synthetic samples for every answer slower than
twice ``duration x connections / requests``; a replay with at most six requests per
viewer in flight (a closed loop, as the browser) has no omitted requests to add, so the
per-request latencies are the ones comparable with the Python client's.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load import FRAME_ACCEPT, HTTP1_CONNECTIONS, LoadResult

WRK = Path("/usr/bin/wrk")
#: Prefix of a viewer's line (written by its thread when it has all its frames).
VIEWER_TAG = "drimbox-wrk-viewer"
#: Prefix of the line ``done()`` prints after SIGINT.
DONE_TAG = "drimbox-wrk-done"
#: wrk's ``--timeout``: an answer slower than this would count as a wrk timeout (and its
#: latency histogram is sized by it: 8 bytes a microsecond, touched sparsely).
WRK_TIMEOUT_S = 120
#: The bench's bound on the whole frame phase: past it, the run is an error, not a hang.
PHASE_TIMEOUT_S = 600.0
#: How long a finished connection is parked (ms): longer than any run.
IDLE_MS = 86_400_000
#: After SIGINT: how long to wait for wrk's ``done`` line before killing it.
STOP_TIMEOUT_S = 30.0
REQUEST_ID_PREFIX = "drimbox-bench"
_SAFE = re.compile(r"[\x20-\x7e]*")


def available() -> bool:
    return WRK.is_file() and os.access(WRK, os.X_OK)


@dataclass(frozen=True)
class WrkViewer:
    """One simulated viewer's frame phase: its frame paths in order, its Cookie header
    (None for the static nginx)."""

    paths: tuple[str, ...]
    cookie: str | None = None


def lua_string(value: str) -> str:
    """A Lua string literal of a header value or path: printable ASCII only (a CR/LF would
    split the request: refused), backslash and quote escaped."""
    if not _SAFE.fullmatch(value):
        raise ValueError("only printable ASCII goes into a wrk request")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lua_script(viewers: Sequence[WrkViewer], *, host: str, accept: str = FRAME_ACCEPT) -> str:
    """The Lua script of one wrk run: thread k (1-based, in setup order) replays
    ``viewers[k-1]``. Identical path lists are written once."""
    if not viewers:
        raise ValueError("no viewer")
    lists: list[tuple[str, ...]] = []
    index: dict[tuple[str, ...], int] = {}
    rows = []
    for viewer in viewers:
        if not viewer.paths:
            raise ValueError("a viewer without frames")
        if viewer.paths not in index:
            lists.append(viewer.paths)
            index[viewer.paths] = len(lists)
        cookie = lua_string(viewer.cookie) if viewer.cookie is not None else "nil"
        rows.append(f"  {{ list = {index[viewer.paths]}, cookie = {cookie} }},")
    paths = "\n".join(
        "  {\n" + "\n".join(f"    {lua_string(p)}," for p in group) + "\n  }," for group in lists
    )
    return _LUA.format(
        host=lua_string(host),
        accept=lua_string(accept),
        idle_ms=IDLE_MS,
        prefix=lua_string(REQUEST_ID_PREFIX),
        viewer_tag=VIEWER_TAG,
        done_tag=DONE_TAG,
        paths=paths,
        viewers="\n".join(rows),
    )


_LUA = """\
-- Generated by bench/wrk.py for scripts/bench --load (issue 16 item 5). It holds session
-- cookies: written mode 0600, deleted after the run. One wrk thread per viewer.
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} drimbox_timespec;
int clock_gettime(int clk_id, drimbox_timespec *tp);
]]
local clock = ffi.new("drimbox_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC, Python's time.monotonic()
  return tonumber(clock.tv_sec) * 1000000 + math.floor(tonumber(clock.tv_nsec) / 1000)
end

local HOST = {host}
local ACCEPT = {accept}
local IDLE_MS = {idle_ms}
local PREFIX = {prefix}
local PATHS = {{
{paths}
}}
local VIEWERS = {{
{viewers}
}}

-- The main state: thread k (in setup order) is viewer k.
local numbered = 0
function setup(thread)
  numbered = numbered + 1
  thread:set("viewer", numbered)
end

-- Each thread's state.
local requests, sent_at, latencies = {{}}, {{}}, {{}}
local total, reserved, sent, answered, bytes, errors = 0, 0, 0, 0, 0, 0
local first_us, last_us = 0, 0

function init(args)
  local spec = VIEWERS[viewer]
  local paths = PATHS[spec.list]
  total = #paths
  for i = 0, total do
    -- request 0: what wrk's check of the script and a resend after a socket error get
    local headers = {{ Host = HOST, Accept = ACCEPT }}
    headers["X-Request-ID"] = PREFIX .. "-" .. viewer .. "-" .. i
    if spec.cookie then headers["Cookie"] = spec.cookie end
    requests[i] = wrk.format("GET", paths[math.max(i, 1)], headers)
  end
end

-- Called before every request of a connection: a frame is reserved for it, or, the list
-- exhausted, the connection is parked (sends nothing more).
function delay()
  if reserved < total then
    reserved = reserved + 1
    return 0
  end
  return IDLE_MS
end

function request()
  if sent < reserved then
    sent = sent + 1
    local t = now_us()
    sent_at[sent] = t
    if sent == 1 then first_us = t end
    return requests[sent]
  end
  return requests[0]
end

local function header(headers, name)
  for key, value in pairs(headers) do
    if string.lower(key) == name then return value end
  end
  return nil
end

local function is_frame(status, headers, body)
  if status ~= 200 then return false end
  local kind = header(headers, "content-type") or ""
  if string.sub(kind, 1, 17) ~= "multipart/related" then return false end
  local boundary = string.match(kind, 'boundary="?([^";]+)"?')
  return boundary ~= nil and string.sub(body, 1, #boundary + 2) == "--" .. boundary
end

function response(status, headers, body)
  local t = now_us()
  answered = answered + 1
  bytes = bytes + #body
  last_us = t
  local id = header(headers, "x-request-id") or ""
  local index = nil
  if string.sub(id, 1, #PREFIX + 1) == PREFIX .. "-" then
    index = tonumber(string.match(string.sub(id, #PREFIX + 2), "^%d+%-(%d+)$") or "")
  end
  if index and index >= 1 and sent_at[index] then
    latencies[#latencies + 1] = t - sent_at[index]
    sent_at[index] = nil
  end
  if index == 0 or not is_frame(status, headers, body) then errors = errors + 1 end
  if answered == total then
    io.write(string.format(
      "{viewer_tag} viewer=%d frames=%d bytes=%d errors=%d"
        .. " first_us=%d last_us=%d latencies_us=%s\\n",
      viewer, answered, bytes, errors, first_us, last_us, table.concat(latencies, ",")))
    io.flush()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{done_tag} requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d"
      .. " connect=%d read=%d write=%d status=%d timeout=%d\\n",
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
  io.flush()
end
"""


@dataclass(frozen=True)
class ViewerLine:
    """What one viewer's wrk thread wrote when it had all its frames."""

    viewer: int
    frames: int
    bytes: int
    errors: int
    first_us: int
    last_us: int
    latencies_us: tuple[int, ...]


@dataclass(frozen=True)
class DoneLine:
    """wrk's ``done``: its (coordinated-omission corrected) histogram and its counters."""

    requests: int
    bytes: int
    duration_us: int
    p50_us: int
    p99_us: int
    socket_errors: dict[str, int]


_INT = r"(\d+)"
_VIEWER = re.compile(
    rf"{VIEWER_TAG} viewer={_INT} frames={_INT} bytes={_INT} errors={_INT} "
    rf"first_us={_INT} last_us={_INT} latencies_us=([\d,]*)"
)
_DONE = re.compile(
    rf"{DONE_TAG} requests={_INT} bytes={_INT} duration_us={_INT} p50_us={_INT} p99_us={_INT} "
    rf"connect={_INT} read={_INT} write={_INT} status={_INT} timeout={_INT}"
)


def parse_viewer_line(line: str) -> ViewerLine | None:
    match = _VIEWER.fullmatch(line.strip())
    if match is None:
        return None
    viewer, frames, size, errors, first_us, last_us = (int(g) for g in match.groups()[:6])
    latencies = tuple(int(v) for v in match.group(7).split(",") if v)
    return ViewerLine(viewer, frames, size, errors, first_us, last_us, latencies)


def parse_done_line(line: str) -> DoneLine | None:
    match = _DONE.fullmatch(line.strip())
    if match is None:
        return None
    v = [int(g) for g in match.groups()]
    names = ("connect", "read", "write", "status", "timeout")
    return DoneLine(v[0], v[1], v[2], v[3], v[4], dict(zip(names, v[5:], strict=True)))


@dataclass
class WrkOutcome:
    viewers: int
    lines: dict[int, ViewerLine] = field(default_factory=dict)
    done: DoneLine | None = None
    #: wrk's CPU seconds (utime + stime from /proc/<pid>/stat) over the frame phase
    client_cpu_s: float | None = None
    #: the measured server's CPU seconds over the frame phase (the caller's sampler)
    server_cpu_s: float | None = None
    errors: list[str] = field(default_factory=list)
    #: wrk's exit status (0 after SIGINT and done())
    returncode: int | None = None


def load_result(outcome: WrkOutcome) -> LoadResult:
    """The viewers' lines as one :class:`bench.load.LoadResult`: frames and bytes summed,
    the wall time from the first request of any viewer to the last answer of any, every
    per-request latency; errors for every viewer line missing or counting errors, and for
    wrk's socket errors."""
    lines = list(outcome.lines.values())
    errors = list(outcome.errors)
    for viewer in range(1, outcome.viewers + 1):
        line = outcome.lines.get(viewer)
        if line is None:
            errors.append(f"viewer {viewer}: no line from wrk (its frames did not all come)")
        elif line.errors:
            errors.append(
                f"viewer {viewer}: {line.errors} answers not a 200 multipart/related frame"
            )
    if outcome.done is not None:
        socket = {k: v for k, v in outcome.done.socket_errors.items() if v and k != "status"}
        if socket:
            errors.append(f"wrk socket errors: {socket}")
    wall_us = (max(x.last_us for x in lines) - min(x.first_us for x in lines)) if lines else 0
    return LoadResult(
        viewers=outcome.viewers,
        frames=sum(x.frames for x in lines),
        wall_s=wall_us / 1e6,
        bytes=sum(x.bytes for x in lines),
        latencies_s=[us / 1e6 for x in lines for us in x.latencies_us],
        errors=errors,
    )


def summary(outcome: WrkOutcome) -> dict[str, Any]:
    """The load keys of a wrk run (bench.load.LoadResult.summary) plus wrk's own: its
    histogram's p50/p99, its socket errors, the client's CPU. Without per-request
    latencies (a server that does not echo X-Request-ID) p50/p99 are wrk's."""
    result = load_result(outcome)
    out: dict[str, Any] = dict(result.summary())
    done = outcome.done
    out["wrk_p50_ms"] = round(done.p50_us / 1000, 1) if done else None
    out["wrk_p99_ms"] = round(done.p99_us / 1000, 1) if done else None
    out["latency_source"] = "per-request" if result.latencies_s else "wrk-histogram"
    if not result.latencies_s:
        out["p50_ms"], out["p99_ms"] = out["wrk_p50_ms"], out["wrk_p99_ms"]
    out["wrk_socket_errors"] = dict(done.socket_errors) if done else None
    cpu = outcome.client_cpu_s
    out["client_cpu_s"] = round(cpu, 2) if cpu is not None else None
    return out


def cookie_header(cookies: httpx.Cookies, url: str) -> str | None:
    """The Cookie header a client with ``cookies`` sends to ``url`` (the jar's own
    domain and path rules)."""
    request = httpx.Request("GET", url)
    cookies.set_cookie_header(request)
    value: str | None = request.headers.get("cookie")
    return value


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    from bench.procstat import TICKS, _stat

    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk_command(script: Path, url: str, viewers: int, phase_timeout_s: float) -> list[str]:
    return [
        str(WRK),
        "-t",
        str(viewers),
        "-c",
        str(HTTP1_CONNECTIONS * viewers),
        "-d",
        f"{int(phase_timeout_s) + 60}s",
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def run_wrk(
    url: str,
    host: str,
    viewers: Sequence[WrkViewer],
    work: Path,
    *,
    server_cpu: Callable[[], float] | None = None,
    phase_timeout_s: float = PHASE_TIMEOUT_S,
) -> WrkOutcome:
    """Every viewer's frames at once from one wrk process connected to ``url`` (the
    requests carry ``Host: host``); stopped by SIGINT once every viewer's line is in, or
    after ``phase_timeout_s`` (then an error). ``server_cpu`` is sampled right before wrk
    starts and when the last viewer's line is in."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / f"wrk-{secrets.token_hex(4)}.lua"
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(lua_script(viewers, host=host))
    stderr_path = work / f"{script.stem}.stderr"
    outcome = WrkOutcome(viewers=len(viewers))
    try:
        with open(stderr_path, "wb") as stderr:
            cpu_before = server_cpu() if server_cpu is not None else None
            process = subprocess.Popen(
                wrk_command(script, url, len(viewers), phase_timeout_s),
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            reader = None
            try:
                reader = _drive(process, outcome, phase_timeout_s, server_cpu, cpu_before)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
                if reader is not None:
                    reader.join(timeout=10)
                if process.stdout is not None:
                    process.stdout.close()
        outcome.returncode = process.returncode
        if process.returncode != 0 or outcome.done is None:
            tail = stderr_path.read_text(errors="replace")[-300:].strip()
            outcome.errors.append(
                f"wrk exited with {process.returncode}, done line "
                f"{'in' if outcome.done else 'missing'}" + (f": {tail}" if tail else "")
            )
    finally:
        script.unlink(missing_ok=True)
        stderr_path.unlink(missing_ok=True)
    return outcome


def _drive(
    process: subprocess.Popen[str],
    outcome: WrkOutcome,
    phase_timeout_s: float,
    server_cpu: Callable[[], float] | None,
    cpu_before: float | None,
) -> threading.Thread:
    """Reads wrk's lines into ``outcome`` until every viewer's is in (or the bound), then
    stops wrk; the reader thread (to join once wrk is gone)."""
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.put(line)
        except (OSError, ValueError):  # the pipe closed under it
            pass
        lines.put(None)

    thread = threading.Thread(target=reader, name="bench-wrk-stdout", daemon=True)
    thread.start()
    deadline = time.monotonic() + phase_timeout_s
    eof = False
    while len(outcome.lines) < outcome.viewers and not eof:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            outcome.errors.append(
                f"wrk: {len(outcome.lines)} of {outcome.viewers} viewers had all their "
                f"frames after {phase_timeout_s:.0f} s"
            )
            break
        if line is None:
            eof = True
        elif (viewer := parse_viewer_line(line)) is not None:
            outcome.lines[viewer.viewer] = viewer
    if server_cpu is not None and cpu_before is not None:
        outcome.server_cpu_s = server_cpu() - cpu_before
    outcome.client_cpu_s = process_cpu_s(process.pid)
    if eof:
        return thread
    # SIGINT: wrk joins its threads and runs done(). A SIGINT that came before wrk set its
    # handler (it ignores SIGINT while it starts its threads) is sent again.
    stop_by = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < stop_by:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            line = lines.get(timeout=min(2.0, max(stop_by - time.monotonic(), 0.0)))
        except queue.Empty:
            continue
        if line is None:
            break
        if (done := parse_done_line(line)) is not None:
            outcome.done = done
        elif (viewer := parse_viewer_line(line)) is not None:
            outcome.lines.setdefault(viewer.viewer, viewer)
    return thread
