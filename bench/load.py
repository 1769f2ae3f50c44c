"""``scripts/bench --load N`` (issue 16 item 5): N simulated viewers, no browser.

Each viewer signs in through the real login flow (report link, profile choice,
FranceConnect+ at the local identity provider: tests.access.ScriptedBrowser), then replays
OHIF 3.13.2's request pattern against ONE BFF (/work/shared/reference/FACTS.md section 3):
the study search, the series search, every series' ``/metadata`` at once, then the frames
of the opened series middle-out (the first image, then its neighbours, nearest first:
cornerstone's stack prefetch around the displayed slice) with OHIF's concurrency: over
HTTP/1.1 the browser's six connections per origin carry the requests
(``maxNumRequests.prefetch`` 25 in ohif-config/app-config.js, so six are on the wire).

Reported: frames/s and MB/s over all viewers, p50/p99 frame latency (request sent to
body received), the BFF's CPU seconds (its process tree, bench.procstat). In the same run
the frames one viewer received are written to a directory as the files of the same URLs
and served by Debian's nginx (static files, sendfile), fetched by the same client with
the same pattern: ``nginx_frames_per_s``, the practical ceiling of this machine for that
work.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

#: OHIF's frame Accept (ohif-config/app-config.js: acceptHeader, sent verbatim).
FRAME_ACCEPT = ", ".join(
    (
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.81",
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.203",
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    )
)
#: Frame requests on the wire at once per viewer over HTTP/1.1: the browser's six
#: connections per origin (OHIF queues up to maxNumRequests.prefetch = 25 behind them).
HTTP1_CONNECTIONS = 6
NGINX = Path("/usr/sbin/nginx")
#: The boundary of the multipart answers nginx serves (the BFF's, re-wrapped).
STATIC_BOUNDARY = "drimbox-bench-static"
STATIC_TYPE = f'multipart/related; type="application/octet-stream"; boundary={STATIC_BOUNDARY}'
#: Longest wait for one answer; a viewer that exceeds it fails the run (reported).
REQUEST_TIMEOUT_S = 120.0


def middle_out(count: int, start: int | None = None) -> list[int]:
    """Frame indexes in the order a stack viewer fetches them: ``start`` (the displayed
    slice, the middle by default), then its neighbours nearest first, after before
    before, until both ends (cornerstone's stack prefetch around the current image)."""
    if count <= 0:
        return []
    first = count // 2 if start is None else start
    if not 0 <= first < count:
        raise ValueError(f"start {first} outside 0..{count - 1}")
    order = [first]
    for step in range(1, count):
        for index in (first + step, first - step):
            if 0 <= index < count:
                order.append(index)
    return order


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method (an observed value:
    p99 of 100 samples is the 99th smallest); None for no values."""
    if not values:
        return None
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass
class ViewerRun:
    """What one simulated viewer saw."""

    latencies_s: list[float] = field(default_factory=list)
    frame_bytes: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    error: str | None = None
    #: requests sent again on a new connection (see RETRIED)
    retries: int = 0


@dataclass
class LoadResult:
    viewers: int
    frames: int
    wall_s: float
    bytes: int
    latencies_s: list[float]
    errors: list[str]
    retries: int = 0

    def summary(self) -> dict[str, Any]:
        p50, p99 = percentile(self.latencies_s, 50), percentile(self.latencies_s, 99)
        return {
            "viewers": self.viewers,
            "frames": self.frames,
            "wall_s": round(self.wall_s, 3),
            "frames_per_s": round(self.frames / self.wall_s, 1) if self.wall_s > 0 else None,
            "mb_per_s": round(self.bytes / 1e6 / self.wall_s, 2) if self.wall_s > 0 else None,
            "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "errors": self.errors,
            "retries": self.retries,
        }


def combine(viewers: int, runs: Sequence[ViewerRun]) -> LoadResult:
    """All viewers' frames over the wall time from the first frame asked by any viewer
    to the last frame received by any."""
    starts = [r.first_frame_at for r in runs if r.first_frame_at is not None]
    ends = [r.last_frame_at for r in runs if r.last_frame_at is not None]
    wall = (max(ends) - min(starts)) if starts and ends else 0.0
    latencies = [lat for r in runs for lat in r.latencies_s]
    return LoadResult(
        viewers=viewers,
        frames=len(latencies),
        wall_s=wall,
        bytes=sum(r.frame_bytes for r in runs),
        latencies_s=latencies,
        errors=[r.error for r in runs if r.error],
        retries=sum(r.retries for r in runs),
    )


def load_keys(bff: LoadResult, bff_cpu_s: float | None, nginx: LoadResult | None) -> dict[str, Any]:
    """The ``load`` object of ``scripts/bench --json`` (issue 16 item 6): ``viewers``,
    ``frames_per_s``, ``p50_ms``, ``p99_ms``, ``bff_cpu_s``, ``nginx_frames_per_s``, and
    the details beside them."""
    return keys_of(bff.summary(), bff_cpu_s, nginx.summary() if nginx is not None else None)


def keys_of(
    bff: dict[str, Any], bff_cpu_s: float | None, nginx: dict[str, Any] | None
) -> dict[str, Any]:
    """:func:`load_keys` from the summaries (a Python or a wrk frame phase)."""
    out = dict(bff)
    frames = out.get("frames")
    out["bff_cpu_s"] = round(bff_cpu_s, 2) if bff_cpu_s is not None else None
    out["bff_cpu_ms_per_frame"] = (
        round(bff_cpu_s * 1000 / frames, 2) if bff_cpu_s is not None and frames else None
    )
    out["nginx_frames_per_s"] = nginx["frames_per_s"] if nginx else None
    out["nginx"] = nginx
    return out


def check_multipart(content_type: str, body: bytes, url: str) -> None:
    """A frame answer is a multipart/related body opening with its boundary (what OHIF
    parses): a malformed served form fails the run instead of being counted."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/related") or match is None:
        raise RuntimeError(f"frame answer is not multipart/related ({content_type[:80]}): {url}")
    if not body.startswith(b"--" + match.group(1).encode()):
        raise RuntimeError(f"frame answer does not open with its boundary: {url}")


def instance_order(metadata: list[dict[str, Any]]) -> list[str]:
    """SOP Instance UIDs of a series' metadata sorted as OHIF's stack shows them (by
    Instance Number, then the UID)."""

    def key(record: dict[str, Any]) -> tuple[int, str]:
        number = record.get("00200013", {}).get("Value") or [0]
        return int(number[0]), str(record["00080018"]["Value"][0])

    return [str(r["00080018"]["Value"][0]) for r in sorted(metadata, key=key)]


def frame_urls(
    base: str, study_uid: str, series_uid: str, sops: list[str], start: int | None = None
) -> list[str]:
    series = f"{base}/dicomweb/studies/{study_uid}/series/{series_uid}"
    return [f"{series}/instances/{sops[i]}/frames/1" for i in middle_out(len(sops), start)]


class AsyncLoopbackTransport(httpx.AsyncBaseTransport):
    """``*.localhost`` -> 127.0.0.1 keeping the Host header (as tests.access's transport,
    for the asyncio client)."""

    def __init__(self, **options: Any) -> None:
        self._inner = httpx.AsyncHTTPTransport(**options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "localhost" or host.endswith(".localhost"):
            request = httpx.Request(
                request.method,
                request.url.copy_with(host="127.0.0.1"),
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def new_client(cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
    """A viewer's HTTP/1.1 client: six keep-alive connections, like a browser."""
    limits = httpx.Limits(
        max_connections=HTTP1_CONNECTIONS, max_keepalive_connections=HTTP1_CONNECTIONS
    )
    return httpx.AsyncClient(
        transport=AsyncLoopbackTransport(limits=limits),
        cookies=cookies,
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
    )


#: What a browser retries once on a reused keep-alive connection the server closed
#: (uvicorn closes idle ones after 5 s) before any answer byte: the request never reached
#: the application, so a GET is sent again on a new connection.
RETRIED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


async def get(client: httpx.AsyncClient, url: str, run: ViewerRun, **kwargs: Any) -> httpx.Response:
    """GET with the browser's one retry on a connection closed under it."""
    try:
        return await client.get(url, **kwargs)
    except RETRIED:
        run.retries += 1
        return await client.get(url, **kwargs)


async def fetch_frames(
    client: httpx.AsyncClient,
    urls: list[str],
    run: ViewerRun,
    keep: Callable[[str, httpx.Response], None] | None = None,
) -> None:
    """The frames in order, ``HTTP1_CONNECTIONS`` at once (each worker takes the next
    URL as soon as its answer is in: the browser's connection pool)."""
    queue = list(reversed(urls))

    async def worker() -> None:
        while queue:
            url = queue.pop()
            sent = time.perf_counter()
            if run.first_frame_at is None:
                run.first_frame_at = sent
            answer = await get(client, url, run, headers={"Accept": FRAME_ACCEPT})
            if answer.status_code != 200:
                raise RuntimeError(f"frame answered HTTP {answer.status_code}: {url}")
            check_multipart(answer.headers.get("content-type", ""), answer.content, url)
            done = time.perf_counter()
            run.latencies_s.append(done - sent)
            run.frame_bytes += len(answer.content)
            run.last_frame_at = done
            if keep is not None:
                keep(url, answer)

    await asyncio.gather(*(worker() for _ in range(HTTP1_CONNECTIONS)))


async def open_viewer(
    client: httpx.AsyncClient, base: str, study_uid: str, series_uid: str, run: ViewerRun
) -> list[str]:
    """What OHIF asks before the frames: the study search (twice, as OHIF validates the
    study), the series search, every series' metadata at once; the opened series' frame
    URLs in the order OHIF asks them."""
    qido = f"{base}/dicomweb/studies"
    for _ in range(2):
        study = await get(client, qido, run, params={"StudyInstanceUID": study_uid})
        study.raise_for_status()
    series = await get(client, f"{qido}/{study_uid}/series", run)
    series.raise_for_status()
    uids = [str(s["0020000E"]["Value"][0]) for s in series.json()]
    answers = await asyncio.gather(
        *(get(client, f"{qido}/{study_uid}/series/{uid}/metadata", run) for uid in uids)
    )
    by_series = {}
    for uid, answer in zip(uids, answers, strict=True):
        answer.raise_for_status()
        by_series[uid] = answer.json()
    return frame_urls(base, study_uid, series_uid, instance_order(by_series[series_uid]))


async def replay_viewer(
    client: httpx.AsyncClient,
    base: str,
    study_uid: str,
    series_uid: str,
    start: asyncio.Event,
    keep: Callable[[str, httpx.Response], None] | None = None,
) -> ViewerRun:
    """One OHIF opening (:func:`open_viewer`), then the opened series' frames."""
    run = ViewerRun()
    await start.wait()
    try:
        urls = await open_viewer(client, base, study_uid, series_uid, run)
        await fetch_frames(client, urls, run, keep)
    except Exception as exc:  # reported with the run
        run.error = f"{type(exc).__name__}: {exc}"[:300]
    return run


@dataclass
class Opened:
    """A viewer after :func:`open_viewer`: its frame URLs and the Cookie header its
    client sends them with (None when the opening failed: ``run.error``)."""

    run: ViewerRun
    urls: list[str]
    cookie: str | None


async def open_viewers(
    jars: list[httpx.Cookies], base: str, study_uid: str, series_uid: str
) -> list[Opened]:
    """Every viewer's searches and metadata at once (released together), as the Python
    client does before its frames; the frames are left to wrk (bench.wrk)."""
    from bench.wrk import cookie_header

    clients = [new_client(jar) for jar in jars]
    start = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> Opened:
        run = ViewerRun()
        await start.wait()
        try:
            urls = await open_viewer(client, base, study_uid, series_uid, run)
        except Exception as exc:  # reported with the run
            run.error = f"{type(exc).__name__}: {exc}"[:300]
            return Opened(run, [], None)
        return Opened(run, urls, cookie_header(client.cookies, urls[0]) if urls else None)

    try:
        tasks = [asyncio.create_task(one(c)) for c in clients]
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def fetch_once(jar: httpx.Cookies, urls: list[str], keep: FrameKeeper) -> ViewerRun:
    """Each frame once, kept for the static nginx (after the measured phase)."""
    run = ViewerRun()
    async with new_client(jar) as client:
        await fetch_frames(client, urls, run, keep)
    return run


async def run_viewers(
    clients: list[httpx.AsyncClient],
    base: str,
    study_uid: str,
    series_uid: str,
    keep: Callable[[str, httpx.Response], None] | None = None,
) -> LoadResult:
    """Every viewer at once (released together); the first one's frames are kept."""
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(
            replay_viewer(c, base, study_uid, series_uid, start, keep if i == 0 else None)
        )
        for i, c in enumerate(clients)
    ]
    start.set()
    runs = await asyncio.gather(*tasks)
    return combine(len(clients), runs)


class FrameKeeper:
    """Keeps each frame answer (in memory during the run: no disk writes on the measured
    cores), then writes it as a static file at its URL's path, re-wrapped as a
    multipart/related answer with one fixed boundary (nginx serves one Content-Type)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kept: list[tuple[str, bytes]] = []

    def __call__(self, url: str, answer: httpx.Response) -> None:
        match = re.search(r'boundary="?([^";]+)"?', answer.headers.get("content-type", ""))
        if match is None:
            raise RuntimeError("frame answer without a multipart boundary")
        body = answer.content.replace(match.group(1).encode(), STATIC_BOUNDARY.encode())
        self.kept.append((httpx.URL(url).path, body))

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.kept]

    def write(self) -> None:
        for path, body in self.kept:
            target = self.root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)


def nginx_static_conf(prefix: Path, root: Path, port: int) -> str:
    """Debian's nginx serving ``root`` as static files on loopback, HTTP/1.1 keep-alive."""
    return f"""worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 65s;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        types {{ }}
        default_type '{STATIC_TYPE}';
        # echoed as the BFF echoes it: bench.wrk matches each answer to its request
        add_header X-Request-ID $http_x_request_id;
    }}
}}
"""


class StaticNginx:
    """nginx on a rendered static configuration, in its own process group."""

    def __init__(self, prefix: Path, root: Path, port: int) -> None:
        self.prefix, self.root, self.port = prefix, root, port
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def __enter__(self) -> StaticNginx:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        # nginx's workers run as nobody: the synthetic frames must be readable by them.
        for directory, _, files in os.walk(self.root):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        for parent in self.root.parents:
            if parent == Path("/tmp") or parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_static_conf(self.prefix, self.root, self.port), encoding="utf-8")
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        from bench.stacks import _wait_port

        _wait_port(self.port, self.process, timeout=30)
        self.pid = self.process.pid
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


async def run_static(base: str, paths: list[str], viewers: int) -> LoadResult:
    """The kept frames from nginx, ``viewers`` clients at once, same order and pattern."""
    clients = [new_client() for _ in range(viewers)]
    try:
        start = asyncio.Event()

        async def one(client: httpx.AsyncClient) -> ViewerRun:
            run = ViewerRun()
            await start.wait()
            try:
                await fetch_frames(client, [base + p for p in paths], run)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"[:300]
            return run

        tasks = [asyncio.create_task(one(c)) for c in clients]
        start.set()
        return combine(viewers, await asyncio.gather(*tasks))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run`` in a thread of its own: the bench's main thread already runs
    Playwright's event loop (its sync API)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_call(factory))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="bench-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def sign_in_many(link: str, count: int, patient: str) -> list[httpx.Cookies]:
    """``count`` sessions through the real login (report link, profile, FranceConnect+ at
    the local provider); the session cookies of each."""
    from tests.access import ScriptedBrowser

    jars = []
    for _ in range(count):
        scripted = ScriptedBrowser()
        try:
            answer = scripted.sign_in(link, "fcp", patient)
            if answer.status_code != 303:
                raise RuntimeError(f"login of a simulated viewer: HTTP {answer.status_code}")
            jars.append(httpx.Cookies(scripted.client.cookies))
        finally:
            scripted.close()
    return jars


async def _with_clients(
    jars: list[httpx.Cookies],
    body: Callable[[list[httpx.AsyncClient]], Awaitable[LoadResult]],
) -> LoadResult:
    clients = [new_client(jar) for jar in jars]
    try:
        return await body(clients)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def load_run(
    *,
    link: str,
    base: str,
    study_uid: str,
    series_uid: str,
    viewers: int,
    patient: str,
    work: Path,
    sampler_cpu: Callable[[], float],
    client: str = "auto",
) -> dict[str, Any]:
    """Sign ``viewers`` in, replay their openings at once against the BFF (its CPU
    measured over the frames), then the same frames from nginx; the ``load`` keys.
    The frames go through wrk (bench.wrk: ``client`` "wrk") when ``client`` is "wrk", or
    "auto" and wrk is installed; else through the Python client (``client`` "python")."""
    from bench import wrk

    if client == "wrk" and not wrk.available():
        raise RuntimeError(f"--load-client wrk: {wrk.WRK} is missing (scripts/install)")
    jars = sign_in_many(link, viewers, patient)
    target = Target(base, study_uid, series_uid, work, sampler_cpu)
    if client == "wrk" or (client == "auto" and wrk.available()):
        return _load_run_wrk(jars, target)
    return _load_run_python(jars, target)


@dataclass(frozen=True)
class Target:
    """The BFF a load run replays against, the series it opens, where the run writes,
    and the BFF's CPU sampler."""

    base: str
    study_uid: str
    series_uid: str
    work: Path
    sampler_cpu: Callable[[], float]


def _load_run_python(jars: list[httpx.Cookies], target: Target) -> dict[str, Any]:
    """The whole replay in this process (asyncio + httpx); the first viewer's frames
    kept for nginx."""
    viewers, t = len(jars), target
    static_root = t.work / "static-frames"
    keeper = FrameKeeper(static_root)
    cpu_before, client_before = t.sampler_cpu(), time.process_time()
    bff = run_async(
        lambda: _with_clients(
            jars, lambda cs: run_viewers(cs, t.base, t.study_uid, t.series_uid, keeper)
        )
    )
    bff_cpu = t.sampler_cpu() - cpu_before
    client_cpu = time.process_time() - client_before
    nginx: LoadResult | None = None
    if keeper.kept and NGINX.exists():
        with _static_nginx(t.work, keeper) as port:
            nginx = run_async(lambda: run_static(f"http://127.0.0.1:{port}", keeper.paths, viewers))
    out = load_keys(bff, bff_cpu, nginx)
    out["client"] = "python"
    # the bench's own process: the client, and the bench's sampler threads beside it
    out["client_cpu_s"] = round(client_cpu, 2)
    shutil.rmtree(static_root, ignore_errors=True)
    return out


def _load_run_wrk(jars: list[httpx.Cookies], target: Target) -> dict[str, Any]:
    """Searches and metadata of every viewer at once from this process, then every
    viewer's frames at once from one wrk process (bench.wrk); then each frame once more
    from this process, kept as static files, and the same wrk pattern on nginx."""
    from bench import wrk

    viewers, t = len(jars), target
    opened_at, cpu_before = time.monotonic(), t.sampler_cpu()
    opened = run_async(lambda: open_viewers(jars, t.base, t.study_uid, t.series_uid))
    open_s, open_cpu = time.monotonic() - opened_at, t.sampler_cpu() - cpu_before
    errors = [f"viewer {i + 1}: {o.run.error}" for i, o in enumerate(opened) if o.run.error]
    ready = [o for o in opened if not o.run.error and o.urls]
    retries = sum(o.run.retries for o in opened)
    url = httpx.URL(t.base)
    connect = f"http://127.0.0.1:{url.port}/"
    outcome = wrk.run_wrk(
        connect,
        url.netloc.decode("ascii"),
        [wrk.WrkViewer(tuple(_path(u) for u in o.urls), o.cookie) for o in ready],
        t.work,
        server_cpu=t.sampler_cpu,
    )
    bff = wrk.summary(outcome)
    nginx: dict[str, Any] | None = None
    static_root = t.work / "static-frames"
    if ready and NGINX.exists():
        keeper = FrameKeeper(static_root)
        first = opened.index(ready[0])
        kept = run_async(lambda: fetch_once(jars[first], ready[0].urls, keeper))
        if kept.error is None and keeper.kept:
            paths = tuple(keeper.paths)
            with _static_nginx(t.work, keeper) as port:
                static = wrk.run_wrk(
                    f"http://127.0.0.1:{port}/",
                    f"127.0.0.1:{port}",
                    [wrk.WrkViewer(paths, None)] * viewers,
                    t.work,
                )
            nginx = wrk.summary(static)
        else:
            errors.append(f"frames for nginx: {kept.error}")
    out = keys_of(bff, outcome.server_cpu_s, nginx)
    out["viewers"] = viewers
    out["errors"] = errors + list(out.get("errors") or [])
    out["retries"] = retries
    out["client"] = "wrk"
    out["open_s"] = round(open_s, 2)
    out["bff_cpu_s_open"] = round(open_cpu, 2)
    shutil.rmtree(static_root, ignore_errors=True)
    return out


def _path(url: str) -> str:
    return httpx.URL(url).raw_path.decode("ascii")


@contextlib.contextmanager
def _static_nginx(work: Path, keeper: FrameKeeper) -> Iterator[int]:
    """The kept frames written as files and served by nginx; its port."""
    from bench.stacks import free_port

    keeper.write()
    port = free_port()
    prefix = work / "nginx-static"
    prefix.mkdir(parents=True, exist_ok=True)
    with StaticNginx(prefix, keeper.root, port):
        yield port
