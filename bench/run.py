"""The three measured openings (source, consumer, baseline), each on fresh servers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.browser import Measure, measure, open_many
from bench.procstat import TreeSampler, rss_bytes
from bench.quality import measure_quality
from bench.stacks import (
    CONSUMER_HOST,
    SOURCE_LOCATION,
    ServerProcess,
    baseline_config,
    free_port,
    settings_env,
)
from bff.demo.dataset import DemoStudy
from bff.demo.kos import retarget_kos
from bff.demo.pki import TlsFiles
from bff.demo.stack import Stack
from bff.demo.whitelist import write_test_whitelist
from tests.access import LoopbackTransport, ScriptedBrowser, psc_access_token

PATIENT = "dominique.pat-trois"


@dataclass
class World:
    """What every run shares: the PACS, the provider stack, the PKI, the browser."""

    study: DemoStudy
    pacs_dicomweb: str
    orthanc_pid: int
    stack: Stack
    archive_url: str
    pki: dict[str, TlsFiles]
    work: Path
    browser: Any
    timeout: float
    consumer_port: int  # fixed: the Consumer's origin is registered at the provider
    #: the HTTP/2 balancer's public port (its https origin is registered at the provider)
    balancer_port: int = 0
    #: the exam's preparation at publication, once done (bench.run.prepare_frames)
    preparation: dict[str, Any] | None = None

    @property
    def series_uid(self) -> str:
        return self.study.series_uids[-1]

    @property
    def n_frames(self) -> int:
        return len(self.study.instance_files)


def _whitelist(world: World) -> dict[str, object]:
    """The signed test whitelist both roles load (the Source, 'localhost', and the
    Consumer's client certificate), and the pinned signer."""
    signer = world.pki["whitelist_signer"]
    path = world.work / "whitelist.xml"
    if not path.exists():
        write_test_whitelist(path, ["localhost", "consumer.localhost"], signer)
    return {"whitelist_file": path, "whitelist_signer_cert": signer.cert}


def _source_server(
    world: World,
    api_port: int,
    tag: str,
    frames_dir: str | None = None,
    prepared_dir: str | None = None,
) -> ServerProcess:
    """``prepared_dir``: the BFF prepares the published KOS at start into it (issue 16),
    or serves what an earlier BFF prepared there; None: no preparation (a cold opening)."""
    values: dict[str, object] = {
        **_whitelist(world),
        **world.stack.bff_overrides(),
        "upstream_url": world.pacs_dicomweb,
        "open_access": False,
        "locations": f"{SOURCE_LOCATION}={world.pacs_dicomweb}",
        "archive_url": world.archive_url,
        "audit_log": world.work / f"audit-{tag}.jsonl",
        # Each run starts cold (its own, empty disk cache of transcoded frames) unless
        # it is given the cache an earlier opening filled.
        "frame_disk_cache_dir": frames_dir or str(world.work / f"frames-{tag}"),
        # Transcoding at publication (issue 16) only where a run asks for it.
        "prepare_at_publication": prepared_dir is not None,
        "prepared_dir": prepared_dir or str(world.work / f"prepared-{tag}"),
        "source_api_port": api_port,
        "tls_cert": world.pki["server"].cert,
        "tls_key": world.pki["server"].key,
        "tls_client_ca": world.pki["client"].ca_cert,
        "log_level": "warning",
    }
    return ServerProcess(
        ["bff"], world.stack.bff_port, settings_env(values), world.work / f"bff-{tag}.log"
    )


def _measure(world: World, throttled: bool, open_viewer: Any, from_fetch: bool) -> Measure:
    return measure(
        world.browser,
        series_uid=world.series_uid,
        n_frames=world.n_frames,
        throttled=throttled,
        open_viewer=open_viewer,
        timeout=world.timeout,
        from_fetch_start=from_fetch,
    )


def _orthanc_cpu(world: World) -> float:
    sampler = TreeSampler(world.orthanc_pid)
    sampler.sample()
    return sampler.cpu_seconds


#: Resolves once the page's boot service worker is active (bff/web/boot.py: OHIF's files
#: cached and compiled), or after 30 s; to the seconds waited, or -1 without one.
BOOT_WORKER_READY_JS = """async () => {
  if (!('serviceWorker' in navigator)) return -1;
  const t0 = performance.now();
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 30000));
  const ready = await Promise.race([navigator.serviceWorker.ready, timeout]);
  return ready ? (performance.now() - t0) / 1000 : -1;
}"""


def _think(page: Any) -> None:
    """A person takes seconds to read the page before the viewer and choose; meanwhile the
    page prefetches the viewer's files and installs the boot worker (bff/web/boot.py).
    The bench waits for both instead of an arbitrary think time."""
    page.wait_for_load_state("networkidle", timeout=60_000)
    waited = page.evaluate(BOOT_WORKER_READY_JS)
    print(f"[bench]   boot worker ready after {waited:.2f} s on {page.url.split('?')[0]}")


def _patient_opens(link: str, *, think: bool = False) -> Callable[[Any], None]:
    """The patient opens the report's link, chooses the profile and signs in with
    FranceConnect+ (before the clock, spec 4.6.1); returns once /viewer is navigated to."""

    def open_viewer(page: Any) -> None:
        page.goto(link)
        page.get_by_text("Accès à votre examen d'imagerie").wait_for(timeout=30_000)
        if think:
            _think(page)
        page.click("button[data-provider=fcp]")
        page.fill("input[name=username]", PATIENT)
        page.keyboard.press("Enter")
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", wait_until="commit", timeout=30_000)

    return open_viewer


def run_source(
    world: World, throttled: bool, with_quality: bool, *, warm: bool = False
) -> dict[str, Any]:
    """One opening through the Source. ``warm``: a second opening after a restart of the
    BFF: the exam was opened once before (untimed) with the same disk cache of
    transcoded frames, which the measured BFF process starts with (memory cache empty)."""
    tag = f"source-{secrets.token_hex(3)}"
    link = world.stack.viewer_link(world.study, SOURCE_LOCATION)
    open_viewer = _patient_opens(link, think=True)
    out: dict[str, Any] = {}
    frames_dir = str(world.work / f"frames-{tag}")
    if warm:
        with _source_server(world, free_port(), f"{tag}-first", frames_dir):
            first = _measure(world, False, open_viewer, from_fetch=True)
            out["first_opening_t_all_s"] = first.t_all_s
    orthanc_before = _orthanc_cpu(world)
    with _source_server(world, free_port(), tag, frames_dir) as bff:
        cpu_at_start = bff.stats().get("cpu_s", 0.0)
        result = _measure(world, throttled, open_viewer, from_fetch=True)
        out.update(result.as_dict())
        out["bff"] = bff.stats()
        out["bff"]["opening_cpu_s"] = round(out["bff"]["cpu_s"] - cpu_at_start, 2)
        out["orthanc_cpu_s"] = round(_orthanc_cpu(world) - orthanc_before, 2)
        if with_quality:
            out["quality"] = _quality(world, link)
    return out


def run_memory(world: World, openings: int = 5, parallel: int = 5) -> dict[str, Any]:
    """Issue 5: the BFF's memory stays flat over ``openings`` successive openings of the
    study (one browser after the other, each signing in anew) and with ``parallel``
    browsers opening it at once, all on ONE BFF process (its caches warm after the first).
    RSS of the BFF tree (main process + transcoding workers) after each opening and the
    largest tree RSS sampled every 0.25 s (a simultaneous peak, not a sum of maxima)."""
    open_viewer = _patient_opens(world.stack.viewer_link(world.study, SOURCE_LOCATION))
    out: dict[str, Any] = {"successive_rss_bytes": [], "successive_t_all_s": []}
    with _source_server(world, free_port(), f"memory-{secrets.token_hex(3)}") as bff:
        assert bff.sampler is not None and bff.proc is not None
        out["rss_bytes_before"] = rss_bytes(bff.proc.pid)
        for _ in range(openings):
            result = _measure(world, False, open_viewer, from_fetch=True)
            out["successive_t_all_s"].append(result.t_all_s)
            time.sleep(1.0)
            out["successive_rss_bytes"].append(rss_bytes(bff.proc.pid))
        before = bff.sampler.peak_rss_now
        out["parallel_t_all_s"] = open_many(
            world.browser,
            count=parallel,
            series_uid=world.series_uid,
            n_frames=world.n_frames,
            open_viewer=open_viewer,
            timeout=world.timeout * 2,
        )
        time.sleep(1.0)
        out["rss_bytes_after_parallel"] = rss_bytes(bff.proc.pid)
        out["peak_rss_bytes"] = max(before, bff.sampler.peak_rss_now)
        out["bff"] = bff.stats()
    return out


def _quality(world: World, link: str) -> dict[str, Any]:
    scripted = ScriptedBrowser()
    try:
        answer = scripted.sign_in(link, "fcp", PATIENT)
        if answer.status_code != 303:
            raise RuntimeError(f"login for the quality check: HTTP {answer.status_code}")
        return measure_quality(
            scripted.client,
            world.stack.bff_url(SOURCE_LOCATION),
            world.study.study_uid,
            world.series_uid,
            list(world.study.instance_files),
        )
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        scripted.close()


def run_consumer(world: World, throttled: bool, lossy: bool = False) -> dict[str, Any]:
    """One opening through Consumer -> Source -> PACS. ``lossy``: the Consumer set to
    transcode for the browser (DRIMBOX_CONSUMER_IMAGES=lossy) instead of passing the
    Source's lossless images through."""
    tag = f"consumer-{secrets.token_hex(3)}"
    api_port, co_port = free_port(), world.consumer_port
    consumer_url = f"http://{CONSUMER_HOST}:{co_port}"
    secret = "handover-" + world.stack.client_secret
    unused = "http://127.0.0.1:9/unused"
    values: dict[str, object] = {
        **world.stack.bff_overrides(),
        "port": co_port,
        "upstream_url": unused,
        "open_access": False,
        "locations": f"{CONSUMER_HOST}={unused}",
        "archive_url": f"sqlite:///{world.work / f'{tag}-archive.db'}",
        "audit_log": world.work / f"audit-{tag}.jsonl",
        # Each run starts cold: its own, empty disk cache of transcoded frames.
        "frame_disk_cache_dir": str(world.work / f"frames-{tag}"),
        "prepare_at_publication": False,
        "prepared_dir": str(world.work / f"prepared-{tag}"),
        "consumer_enabled": True,
        "consumer_handover_secret": secret,
        "consumer_images": "lossy" if lossy else "lossless",
        "source_client_cert": world.pki["client"].cert,
        "source_client_key": world.pki["client"].key,
        "source_ca_bundle": world.pki["server"].ca_cert,
        **_whitelist(world),
        "source_ports": str(api_port),
        "log_level": "warning",
    }
    consumer = ServerProcess(["bff"], co_port, settings_env(values), world.work / f"{tag}.log")
    out: dict[str, Any] = {}
    orthanc_before = _orthanc_cpu(world)
    with _source_server(world, api_port, tag) as source, consumer:
        kos = retarget_kos(
            world.study.kos_path.read_bytes(), f"https://localhost:{api_port}/api/source"
        )
        with httpx.Client(transport=LoopbackTransport(), timeout=60) as client:
            answer = client.post(
                consumer_url + "/api/consumer/kos",
                content=kos,
                headers={
                    "Authorization": f"Bearer {secret}",
                    "X-PSC-Access-Token": psc_access_token(world.stack),
                    "Content-Type": "application/dicom",
                },
            )
        if answer.status_code != 201:
            return {"error": f"hand-over refused: HTTP {answer.status_code} {answer.text[:200]}"}
        viewer_url = str(answer.json()["viewer_url"])

        def open_viewer(page: Any) -> None:
            # The spec's test (4.6.2): a browser open on the Consumer's interface, the user
            # signed in; the Consumer's page fetches the viewer's files meanwhile, like the
            # Source's profile page (bff/web/boot.py). The clock starts at the opening.
            page.goto(consumer_url + "/consumer", timeout=30_000)
            _think(page)
            page.goto(viewer_url, wait_until="commit", timeout=30_000)

        result = _measure(world, throttled, open_viewer, from_fetch=False)
        out.update(result.as_dict())
        out["bff"] = consumer.stats()
        out["source_bff"] = source.stats()
        out["orthanc_cpu_s"] = round(_orthanc_cpu(world) - orthanc_before, 2)
    return out


def run_baseline(world: World, throttled: bool) -> dict[str, Any]:
    tag = f"baseline-{secrets.token_hex(3)}"
    port = free_port()
    config_dir = baseline_config(world.work / tag)
    server = ServerProcess(
        [
            "baseline",
            "--port",
            str(port),
            "--pacs",
            world.pacs_dicomweb,
            "--config-dir",
            str(config_dir),
        ],
        port,
        {},
        world.work / f"{tag}.log",
    )
    url = f"http://127.0.0.1:{port}/viewer?StudyInstanceUIDs={world.study.study_uid}"

    def open_viewer(page: Any) -> None:
        page.goto(url, wait_until="commit", timeout=30_000)

    orthanc_before = _orthanc_cpu(world)
    with server as proxy:
        out: dict[str, Any] = _measure(world, throttled, open_viewer, from_fetch=False).as_dict()
        out["proxy"] = proxy.stats()
        out["orthanc_cpu_s"] = round(_orthanc_cpu(world) - orthanc_before, 2)
    return out


#: Longest wait for the preparation at publication of the benchmark CT.
PREPARE_TIMEOUT_S = 900.0
#: The preparation's final states (bff.archive.store.PREPARATION_STATES).
PREPARATION_DONE = ("prepared", "partial", "full", "failed")


def prepare_frames(world: World) -> dict[str, Any]:
    """The exam prepared at publication (issue 16 item 1, bff/origins/preparation.py),
    once per bench: a BFF with ``prepare_at_publication`` starts on the published KOS,
    prepares the served form of every instance into ``world.work/prepared`` and records
    its progress in the archive; it is stopped once the archive says 'prepared'. The
    measured BFFs of the prepared rows and of the load start on that directory (their
    memory caches empty). Returns the preparation's state, size and duration."""
    if world.preparation is not None:
        return world.preparation
    from bff.archive.store import ArchiveStore

    prepared_dir = str(world.work / "prepared")
    kos = world.study.kos_sop_uid
    store = ArchiveStore(world.archive_url)
    tag = f"prepare-{secrets.token_hex(3)}"
    started = time.perf_counter()
    try:
        with _source_server(world, free_port(), tag, prepared_dir=prepared_dir) as bff:
            deadline = time.monotonic() + PREPARE_TIMEOUT_S
            row = store.preparations().get(kos)
            while row is None or row.state not in PREPARATION_DONE:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"preparation not done after {PREPARE_TIMEOUT_S} s: {row}")
                if bff.proc is not None and bff.proc.poll() is not None:
                    raise RuntimeError("the preparing BFF exited")
                time.sleep(0.5)  # a bench's wait on the archive's row, not a test
                row = store.preparations().get(kos)
            took = time.perf_counter() - started
            stats = bff.stats()
    finally:
        store.close()
    if row.state != "prepared":
        raise RuntimeError(f"preparation ended {row.state}: {row.detail}")
    world.preparation = {
        "prepared_dir": prepared_dir,
        "state": row.state,
        "instances": row.total,
        "bytes": row.nbytes,
        "seconds": round(took, 1),
        "bff_cpu_s": stats.get("cpu_s"),
    }
    return world.preparation


def run_source_prepared(world: World, throttled: bool, *, http2: bool = False) -> dict[str, Any]:
    """Issue 16 item 6: an opening of a study whose frames are prepared (the served form
    on the BFF's disk before the opening, nothing transcoded in it). ``http2``: the browser
    goes through the production balancer (deploy/nginx, TLS + HTTP/2) to the BFF."""
    tag = f"prepared-{secrets.token_hex(3)}"
    preparation = prepare_frames(world)
    out: dict[str, Any] = {"preparation": preparation}
    orthanc_before = _orthanc_cpu(world)
    with _source_server(world, free_port(), tag, prepared_dir=preparation["prepared_dir"]) as bff:
        # The BFF's CPU from its start includes its boot (imports, pool workers): the
        # opening's own share is kept beside it.
        cpu_at_start = bff.stats().get("cpu_s", 0.0)
        if http2:
            from bench.balancer import through_balancer

            with through_balancer(world) as (browser, link, protocols):
                result = measure(
                    browser,
                    series_uid=world.series_uid,
                    n_frames=world.n_frames,
                    throttled=throttled,
                    open_viewer=_patient_opens(link, think=True),
                    timeout=world.timeout,
                    from_fetch_start=True,
                )
                out["balancer_protocols"] = protocols()
        else:
            link = world.stack.viewer_link(world.study, SOURCE_LOCATION)
            result = _measure(world, throttled, _patient_opens(link, think=True), True)
        out.update(result.as_dict())
        out["bff"] = bff.stats()
        out["bff"]["opening_cpu_s"] = round(out["bff"]["cpu_s"] - cpu_at_start, 2)
        out["orthanc_cpu_s"] = round(_orthanc_cpu(world) - orthanc_before, 2)
    return out


def run_load(world: World, viewers: int, client: str = "auto") -> dict[str, Any]:
    """Issue 16 item 5: ``viewers`` simulated viewers at once on ONE Source BFF serving
    prepared frames, then the same frames from nginx (bench.load); the frames replayed by
    ``client`` (wrk, python, or auto: wrk when installed)."""
    from bench.load import load_run

    tag = f"load-{secrets.token_hex(3)}"
    preparation = prepare_frames(world)
    with _source_server(world, free_port(), tag, prepared_dir=preparation["prepared_dir"]) as bff:
        assert bff.sampler is not None
        sampler = bff.sampler

        def cpu() -> float:
            sampler.sample()
            return sampler.cpu_seconds

        out = load_run(
            link=world.stack.viewer_link(world.study, SOURCE_LOCATION),
            base=world.stack.bff_url(SOURCE_LOCATION),
            study_uid=world.study.study_uid,
            series_uid=world.series_uid,
            viewers=viewers,
            patient=PATIENT,
            work=world.work / tag,
            sampler_cpu=cpu,
            client=client,
        )
        out["bff_peak_rss_bytes"] = bff.stats().get("peak_rss_bytes")
    out["preparation"] = preparation
    return out
