"""One measured opening in Debian's Chromium (Playwright, fresh context per run).

Clock: the page's own clock (``performance.now()``), zero at the ``fetchStart`` of the
viewer document (Source: the navigation to /viewer that follows the login callback, i.e.
once profile choice and login are done, spec 4.6.1) or at the start of the navigation to
the given URL (Consumer's hand-over URL, baseline's /viewer).

- ``t_first_s``: first poll (every 50 ms) where the main cornerstone canvas has more than
  5 % lit pixels (the CANVAS_PIXELS probe of tests/e2e/test_viewer.py).
- ``t_all_s``: (1) the browser received every frame of the series (distinct ``/frames/``
  URLs of the series answered 200, the page's Resource Timing entries), (2) cornerstone
  decoded every one (distinct imageIds of the series in cornerstone's ``IMAGE_LOADED``
  events, fired after the decoder produced the image; hooked on ``window.cornerstone``,
  which OHIF 3.13 exposes), then (3) the stack viewport is moved to the last slice
  (``setImageIdIndex(n - 1)``, what the End key does) and the canvas shows it lit.
  Timed by the page: the last of (1) and (2) (their own timestamps), plus (3)'s duration.
- ``wire_bytes``: sum of ``transferSize`` (bytes received, headers included) of the viewer
  document and everything it loaded (Navigation and Resource Timing).

All of it is collected in the page by the browser itself and read with a few
evaluations: the bench's own CPU stays off the two cores it measures.
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

#: Everything the bench measures is collected in the page, by the browser itself (Resource
#: Timing, cornerstone's events), and read in a few evaluations: no DevTools event stream
#: (some 9000 Network events an opening, each serialized to Playwright's driver and to
#: Python: ~3 CPU-s taken from the system under test on 2 cores).
HOOK_JS = """(() => {
  const st = window.__bench = {loaded: new Map(), failed: 0, framesOk: new Map(), frameErrors: 0};
  try { performance.setResourceTimingBufferSize(100000); } catch (e) {}
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (!e.name.includes('/frames/')) continue;
        if (e.responseStatus === 200) {
          if (!st.framesOk.has(e.name)) st.framesOk.set(e.name, e.responseEnd);
        } else st.frameErrors++;
      }
    }).observe({type: 'resource', buffered: true});
  } catch (e) {}
  const attach = () => {
    const cs = window.cornerstone;
    if (!cs || !cs.eventTarget || !cs.EVENTS) return false;
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOADED, (e) => {
      const id = e.detail && e.detail.image && e.detail.image.imageId;
      if (id && !st.loaded.has(id)) st.loaded.set(id, performance.now());
    });
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOAD_FAILED, () => { st.failed++; });
    return true;
  };
  if (!attach()) { const t = setInterval(() => { if (attach()) clearInterval(t); }, 5); }
})();"""

#: The page clock's zero: the viewer document's fetchStart, or the navigation's start.
ZERO_JS = """const nav = performance.getEntriesByType('navigation')[0];
  const zero = nav && fromFetch ? nav.fetchStart : 0;"""

#: Lit fraction of the main cornerstone canvas (costs the page's main thread: only until
#: the first image, and once at the end).
LIT_JS = """const c = Array.from(document.querySelectorAll('canvas.cornerstone-canvas'))
    .find((x) => x.width > 300);
  let lit = 0;
  if (c && withLit) {
    const probe = document.createElement('canvas');
    probe.width = c.width; probe.height = c.height;
    const ctx = probe.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) n++;
    lit = n / (c.width * c.height);
  }"""

#: now and ``ready`` (ms on the page clock: when the last frame of the series was received
#: or decoded, whichever came last), lit fraction (when asked), frames of the series
#: received (200) and decoded.
POLL_JS = f"""([series, fromFetch, withLit]) => {{
  {ZERO_JS}
  {LIT_JS}
  const st = window.__bench;
  let decoded = 0, received = 0, ready = 0;
  if (st) {{
    for (const [id, at] of st.loaded) {{
      if (id.includes(series)) {{ decoded++; ready = Math.max(ready, at); }}
    }}
    for (const [url, at] of st.framesOk) {{
      if (url.includes(series)) {{ received++; ready = Math.max(ready, at); }}
    }}
  }}
  return {{now: performance.now() - zero, ready: ready - zero, lit, decoded, received,
    frameErrors: st ? st.frameErrors : 0, failed: st ? st.failed : 0,
    hooked: !!window.cornerstone}};
}}"""

#: Move the viewport showing the series to its last slice, wait two frames and probe the
#: canvas; resolves to the index and how long that took (ms).
LAST_SLICE_JS = f"""async (series) => {{
  const t0 = performance.now();
  const withLit = true;
  const cs = window.cornerstone;
  for (const engine of cs.getRenderingEngines()) {{
    for (const vp of engine.getViewports()) {{
      const ids = vp.getImageIds ? vp.getImageIds() : [];
      if (ids.length && ids[0].includes(series)) {{
        await vp.setImageIdIndex(ids.length - 1);
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        {LIT_JS}
        return {{index: vp.getCurrentImageIdIndex(), last: ids.length - 1, lit,
          took: performance.now() - t0}};
      }}
    }}
  }}
  return null;
}}"""

#: Every request of the viewer document (Resource Timing, Navigation Timing): path, asked,
#: finished (ms on the page clock), bytes on the wire (headers included), HTTP status.
ENTRIES_JS = f"""(fromFetch) => {{
  {ZERO_JS}
  const all = [...performance.getEntriesByType('navigation'),
               ...performance.getEntriesByType('resource')];
  return all.map((e) => [e.name, e.startTime - zero, e.responseEnd - zero, e.transferSize,
                         e.responseStatus || 0]);
}}"""


@dataclass
class Network:
    """What the viewer document loaded, from the page's Resource Timing entries."""

    series_uid: str
    entries: list[list[Any]] = field(default_factory=list)

    def frames(self) -> list[list[Any]]:
        return [e for e in self.entries if "/frames/" in e[0]]

    def wire_bytes(self) -> int:
        return sum(int(e[3]) for e in self.entries)

    def frame_bytes(self) -> int:
        return sum(int(e[3]) for e in self.frames())

    def frames_ok(self) -> int:
        return len({e[0] for e in self.frames() if self.series_uid in e[0] and e[4] == 200})

    def timeline(self) -> dict[str, float]:
        """Seconds on the page clock: when the viewer document, the first DICOMweb
        request, the series metadata, the first and last frame were asked / finished."""
        marks: dict[str, float] = {}
        navigation = [e for e in self.entries if "/viewer" in e[0]][:1]
        dicomweb = [e for e in self.entries if "/dicomweb/" in e[0] or "/dicom-web/" in e[0]]
        metadata = [e for e in dicomweb if e[0].endswith(f"{self.series_uid}/metadata")]
        frames = self.frames()
        for name, rows, column, pick in (
            ("viewer_requested", navigation, 1, min),
            ("first_dicomweb_request", dicomweb, 1, min),
            ("series_metadata_requested", metadata, 1, min),
            ("series_metadata_received", metadata, 2, min),
            ("first_frame_requested", frames, 1, min),
            ("last_frame_requested", frames, 1, max),
            ("first_frame_received", frames, 2, min),
            ("last_frame_received", frames, 2, max),
        ):
            if rows:
                marks[name] = round(pick(float(r[column]) for r in rows) / 1000.0, 3)
        return marks

    def others(self) -> list[list[Any]]:
        """The requests but frames: [path, asked, finished (s), bytes]."""
        rows = []
        for url, asked, done, size, _ in self.entries:
            if "/frames/" in url:
                continue
            path = "/" + url.split("://", 1)[-1].split("/", 1)[-1][:100]
            rows.append([path, round(asked / 1000, 3), round(done / 1000, 3), int(size)])
        return sorted(rows, key=lambda row: row[1])


@dataclass
class Measure:
    t_first_s: float | None = None
    t_all_s: float | None = None
    wire_bytes: int = 0
    frame_bytes: int = 0
    frames_received: int = 0
    frames_decoded: int = 0
    #: seconds on the page clock, see Network.timeline
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
        "median_s": round(done[len(done) // 2] / 1000, 4),
        "p90_s": round(done[int(len(done) * 0.9)] / 1000, 4),
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
        if throttled:  # works without Network.enable, hence without its event stream
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
                and state["received"] >= n_frames
                and state["decoded"] >= n_frames
            ):
                # Polled every 0.5 s, but timed by the page: everything was in at
                # ``ready``; then the last slice is shown, which takes ``took``.
                last = page.evaluate(LAST_SLICE_JS, series_uid)
                if last is None or last["index"] != last["last"]:
                    raise RuntimeError(f"could not show the last slice: {last}")
                if last["lit"] > 0.05:
                    result.t_all_s = (state["ready"] + last["took"]) / 1000.0
                    break
            # 50 ms polls (a canvas probe each) until the first image; then every
            # 0.5 s, as t_all is taken from the page's own timestamps.
            page.wait_for_timeout(50 if result.t_first_s is None else 500)
        result.frames_decoded = int(state.get("decoded", 0))
        net.entries = page.evaluate(ENTRIES_JS, from_fetch_start)
        if result.t_all_s is None:
            result.error = (
                f"timeout after {timeout:.0f} s: {state.get('received')}/{n_frames} frames "
                f"received, {result.frames_decoded} decoded, {state.get('frameErrors')} "
                f"frame errors, {state.get('failed')} load failures, "
                f"hooked={state.get('hooked')}"
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
        result.wire_bytes = net.wire_bytes()
        result.frame_bytes = net.frame_bytes()
        result.frames_received = net.frames_ok()
        result.timeline = net.timeline()
        result.frame_latency = _latency([[e[1], e[2]] for e in net.frames()])
        result.requests = net.others()
        context.close()
    return result


#: Decoded images of the series so far (HOOK_JS), cheap enough to poll many pages.
DECODED_JS = """(series) => {
  const st = window.__bench;
  let decoded = 0;
  if (st) for (const id of st.loaded.keys()) if (id.includes(series)) decoded++;
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
