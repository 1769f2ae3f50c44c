"""One measured opening in Debian's Chromium (Playwright, fresh context per run).

Clock: the page's own clock (``performance.now()``), zero at the ``fetchStart`` of the
viewer document (Source: the navigation to /viewer that follows the login callback, i.e.
once profile choice and login are done, spec 4.6.1) or at the start of the navigation to
the given URL (Consumer's hand-over URL, baseline's /viewer).

- ``t_first_s``: first poll (every 50 ms) where the main cornerstone canvas has more than
  5 % lit pixels (the CANVAS_PIXELS probe of tests/e2e/test_viewer.py).
- ``t_all_s``: (1) the browser received every frame of the series (distinct ``/frames/``
  URLs of the series answered 200, seen through the DevTools protocol), (2) cornerstone
  decoded every one (distinct imageIds of the series in cornerstone's ``IMAGE_LOADED``
  events, fired after the decoder produced the image; hooked on ``window.cornerstone``,
  which OHIF 3.13 exposes), then (3) the stack viewport is moved to the last slice
  (``setImageIdIndex(n - 1)``, what the End key does) and the canvas shows it lit.
- ``wire_bytes``: sum of ``encodedDataLength`` of ``Network.loadingFinished`` (bytes on
  the wire, headers included) over everything the page loaded after the clock's zero
  (``wire_bytes_total`` also counts the login pages).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Debian's Chromium with the same flags as the end-to-end tests (one place for both).
from tests.e2e.conftest import CHROMIUM as _CHROMIUM_PATH
from tests.e2e.conftest import CHROMIUM_ARGS as CHROMIUM_ARGS

CHROMIUM = str(_CHROMIUM_PATH)
THROTTLE_20MBIT = {
    "offline": False,
    "latency": 20,
    "downloadThroughput": 20e6 / 8,
    "uploadThroughput": 20e6 / 8,
}

HOOK_JS = """(() => {
  const st = window.__bench = {loaded: new Set(), failed: 0};
  const attach = () => {
    const cs = window.cornerstone;
    if (!cs || !cs.eventTarget || !cs.EVENTS) return false;
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOADED, (e) => {
      const id = e.detail && e.detail.image && e.detail.image.imageId;
      if (id) st.loaded.add(id);
    });
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOAD_FAILED, () => { st.failed++; });
    return true;
  };
  if (!attach()) { const t = setInterval(() => { if (attach()) clearInterval(t); }, 5); }
})();"""

#: now (ms since the viewer document's fetchStart), lit fraction of the main canvas (only
#: when asked: the canvas read-back costs the page's main thread, so it is not done
#: between the first image and the end), decoded images of the series.
POLL_JS = """([series, fromFetch, withLit]) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const now = performance.now() - (nav && fromFetch ? nav.fetchStart : 0);
  let lit = 0;
  const c = Array.from(document.querySelectorAll('canvas.cornerstone-canvas'))
    .find((x) => x.width > 300);
  if (c && withLit) {
    const probe = document.createElement('canvas');
    probe.width = c.width; probe.height = c.height;
    const ctx = probe.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) n++;
    lit = n / (c.width * c.height);
  }
  const st = window.__bench;
  let decoded = 0;
  if (st) for (const id of st.loaded) if (id.includes(series)) decoded++;
  return {now, lit, decoded, failed: st ? st.failed : 0, hooked: !!window.cornerstone};
}"""

#: Move the viewport showing the series to its last slice; resolves to the index.
LAST_SLICE_JS = """async (series) => {
  const cs = window.cornerstone;
  for (const engine of cs.getRenderingEngines()) {
    for (const vp of engine.getViewports()) {
      const ids = vp.getImageIds ? vp.getImageIds() : [];
      if (ids.length && ids[0].includes(series)) {
        await vp.setImageIdIndex(ids.length - 1);
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        return {index: vp.getCurrentImageIdIndex(), last: ids.length - 1};
      }
    }
  }
  return null;
}"""


@dataclass
class Network:
    urls: dict[str, str] = field(default_factory=dict)
    frames_ok: set[str] = field(default_factory=set)
    frame_errors: int = 0
    wire_bytes_total: int = 0
    wire_bytes_viewer: int = 0
    frame_bytes: int = 0
    viewer_started: bool = False
    series_uid: str = ""
    #: DevTools timestamps (s): when the viewer document, the first DICOMweb request,
    #: the series metadata, the first and last frame were asked for / finished.
    marks: dict[str, float] = field(default_factory=dict)
    #: Every request but frames once the viewer is asked for: [path, asked, finished, bytes].
    others: dict[str, list[Any]] = field(default_factory=dict)
    #: Frame requests: request id -> [asked, finished] (DevTools clock).
    frame_times: dict[str, list[float]] = field(default_factory=dict)

    def _mark(self, name: str, timestamp: float, *, last: bool = False) -> None:
        if last or name not in self.marks:
            self.marks[name] = timestamp

    def on_request(self, event: dict[str, Any]) -> None:
        url = event["request"]["url"]
        self.urls[event["requestId"]] = url
        stamp = float(event.get("timestamp", 0))
        if "/viewer" in url and event.get("type") == "Document":
            self.viewer_started = True
            self._mark("viewer_requested", stamp)
        if "/dicomweb/" in url or "/dicom-web/" in url:
            self._mark("first_dicomweb_request", stamp)
        if url.endswith(f"{self.series_uid}/metadata"):
            self._mark("series_metadata_requested", stamp)
        if "/frames/" in url:
            self._mark("first_frame_requested", stamp)
            self._mark("last_frame_requested", stamp, last=True)
            self.frame_times[event["requestId"]] = [stamp, 0.0]
        elif self.viewer_started:
            path = url.split("://", 1)[-1].split("/", 1)[-1][:100]
            self.others[event["requestId"]] = ["/" + path, stamp, None, 0]

    def on_response(self, event: dict[str, Any]) -> None:
        url = event["response"]["url"]
        if "/frames/" in url and self.series_uid in url:
            if event["response"]["status"] == 200:
                self.frames_ok.add(url)
            else:
                self.frame_errors += 1

    def on_finished(self, event: dict[str, Any]) -> None:
        size = int(event.get("encodedDataLength", 0))
        url = self.urls.get(event["requestId"], "")
        stamp = float(event.get("timestamp", 0))
        if url.endswith(f"{self.series_uid}/metadata"):
            self._mark("series_metadata_received", stamp)
        if "/frames/" in url:
            self._mark("first_frame_received", stamp)
            self._mark("last_frame_received", stamp, last=True)
        if event["requestId"] in self.frame_times:
            self.frame_times[event["requestId"]][1] = stamp
        if event["requestId"] in self.others:
            self.others[event["requestId"]][2:] = [stamp, size]
        self.wire_bytes_total += size
        if self.viewer_started:
            self.wire_bytes_viewer += size
        if "/frames/" in self.urls.get(event["requestId"], ""):
            self.frame_bytes += size


@dataclass
class Measure:
    t_first_s: float | None = None
    t_all_s: float | None = None
    wire_bytes: int = 0
    wire_bytes_total: int = 0
    frame_bytes: int = 0
    frames_received: int = 0
    frames_decoded: int = 0
    #: seconds after the viewer document was asked for (DevTools clock), see Network.marks
    timeline: dict[str, float] = field(default_factory=dict)
    #: the other requests of the opening: [path, asked, finished (s on that clock), bytes]
    requests: list[list[Any]] = field(default_factory=list)
    #: frame requests: median and 90th percentile asked -> finished (s), most in flight
    frame_latency: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _latency(times: list[list[float]]) -> dict[str, float]:
    done = sorted(end - start for start, end in times if end)
    if not done:
        return {}
    edges = sorted([(s, 1) for s, e in times if e] + [(e, -1) for s, e in times if e])
    in_flight = most = 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    return {
        "median_s": round(done[len(done) // 2], 4),
        "p90_s": round(done[int(len(done) * 0.9)], 4),
        "max_in_flight": float(most),
    }


def measure(
    browser: Any,
    *,
    series_uid: str,
    n_frames: int,
    throttled: bool,
    open_viewer: Callable[[Any], None],
    timeout: float = 180.0,
    on_page: Callable[[Any], None] | None = None,
    from_fetch_start: bool = False,
) -> Measure:
    """Open the viewer with ``open_viewer(page)`` (which returns once the navigation to
    the measured URL has started) and measure it. ``from_fetch_start``: the clock's zero
    is the fetchStart of the viewer document (after cross-origin redirects: the login),
    else the start of the navigation. Never raises: errors go in ``error``."""
    result = Measure()
    net = Network(series_uid=series_uid)
    context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 800})
    try:
        context.add_init_script(HOOK_JS)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", net.on_request)
        cdp.on("Network.responseReceived", net.on_response)
        cdp.on("Network.loadingFinished", net.on_finished)
        cdp.send("Network.enable")
        if throttled:
            cdp.send("Network.emulateNetworkConditions", THROTTLE_20MBIT)
        trace = os.environ.get("BENCH_TRACE")
        if trace:  # a Chromium performance trace of the opening, for diagnosis
            browser.start_tracing(
                page=page,
                path=trace,
                categories=["devtools.timeline", "toplevel", "v8", "blink", "cc", "gpu"],
            )
        cpu_profile = os.environ.get("BENCH_CPU_PROFILE")
        if cpu_profile:  # the page's main-thread JavaScript profile, for diagnosis
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
            cdp.send("Profiler.start")
        deadline = time.monotonic() + timeout
        open_viewer(page)
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            want_lit = result.t_first_s is None
            try:
                state = page.evaluate(POLL_JS, [series_uid, from_fetch_start, want_lit])
            except Exception:  # navigation in progress: the context was replaced
                page.wait_for_timeout(50)
                continue
            if result.t_first_s is None and state["lit"] > 0.05:
                result.t_first_s = state["now"] / 1000.0
            if (
                result.t_first_s is not None
                and len(net.frames_ok) >= n_frames
                and state["decoded"] >= n_frames
            ):
                last = page.evaluate(LAST_SLICE_JS, series_uid)
                if last is None or last["index"] != last["last"]:
                    raise RuntimeError(f"could not show the last slice: {last}")
                state = page.evaluate(POLL_JS, [series_uid, from_fetch_start, True])
                if state["lit"] > 0.05:
                    result.t_all_s = state["now"] / 1000.0
                    break
            page.wait_for_timeout(50)
        result.frames_received = len(net.frames_ok)
        result.frames_decoded = int(state.get("decoded", 0))
        if result.t_all_s is None:
            result.error = (
                f"timeout after {timeout:.0f} s: {result.frames_received}/{n_frames} frames "
                f"received, {result.frames_decoded} decoded, {net.frame_errors} frame errors, "
                f"{state.get('failed')} load failures, hooked={state.get('hooked')}"
            )
        if trace:
            browser.stop_tracing()
        if cpu_profile:
            profile = cdp.send("Profiler.stop")["profile"]
            Path(cpu_profile).write_text(json.dumps(profile))
        if on_page is not None:
            on_page(page)
    except Exception as exc:  # one failed run must not stop the bench
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        result.wire_bytes = net.wire_bytes_viewer
        result.wire_bytes_total = net.wire_bytes_total
        result.frame_bytes = net.frame_bytes
        result.frames_received = len(net.frames_ok)
        zero = net.marks.get("viewer_requested")
        if zero is not None:
            result.timeline = {k: round(v - zero, 3) for k, v in net.marks.items()}
            result.frame_latency = _latency(list(net.frame_times.values()))
            result.requests = [
                [path, round(asked - zero, 3), round(done - zero, 3) if done else None, size]
                for path, asked, done, size in net.others.values()
            ]
        context.close()
    return result


#: Decoded images of the series so far (HOOK_JS), cheap enough to poll many pages.
DECODED_JS = """(series) => {
  const st = window.__bench;
  let decoded = 0;
  if (st) for (const id of st.loaded) if (id.includes(series)) decoded++;
  return decoded;
}"""


def open_many(
    browser: Any,
    *,
    count: int,
    series_uid: str,
    n_frames: int,
    open_viewer: Callable[[Any], None],
    timeout: float = 300.0,
) -> list[float | None]:
    """``count`` people opening the viewer at once (one browser context each): each one
    signs in and opens it (one after the other, a few seconds), then all load together.
    Returns, per context, the seconds from the first opening until all ``n_frames``
    images were decoded there (None: not within ``timeout``)."""
    contexts = [
        browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 800})
        for _ in range(count)
    ]
    done: list[float | None] = [None] * count
    try:
        pages = []
        started = time.monotonic()
        for context in contexts:
            context.add_init_script(HOOK_JS)
            page = context.new_page()
            open_viewer(page)
            pages.append(page)
        deadline = started + timeout
        while time.monotonic() < deadline and any(d is None for d in done):
            for index, page in enumerate(pages):
                if done[index] is not None:
                    continue
                try:
                    decoded = int(page.evaluate(DECODED_JS, series_uid))
                except Exception:  # still navigating
                    continue
                if decoded >= n_frames:
                    done[index] = round(time.monotonic() - started, 2)
            time.sleep(0.25)
    finally:
        for context in contexts:
            context.close()
    return done
