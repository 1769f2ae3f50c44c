"""``scripts/bench``: Source, Consumer and baseline openings of the performance CT in
Debian's Chromium, unthrottled and at 20 Mbit/s + 20 ms; a table and ``--json``."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import (
    World,
    run_baseline,
    run_consumer,
    run_load,
    run_memory,
    run_source,
    run_source_prepared,
)
from bench.stacks import CONSUMER_HOST, SOURCE_LOCATION, free_port, thread_server
from bff.demo.perf import DEFAULT_OUT, DEFAULT_SEED, DEFAULT_SLICES, make_perf_dataset

RUNS = (
    "source",
    "source_prepared",
    "source_http2",
    "consumer",
    "consumer_lossy",
    "baseline",
    "source_warm",
)
#: Simulated viewers of the load run when neither --runs nor --load is given.
DEFAULT_LOAD_VIEWERS = 20
#: Keys of every row of --json (issue 16 item 6), beside the details and the samples.
ROW_KEYS = ("t_first_s", "t_all_s", "wire_bytes", "cpu_s")
LOAD_KEYS = ("viewers", "frames_per_s", "p50_ms", "p99_ms", "bff_cpu_s", "nginx_frames_per_s")
CONDITIONS = ("unthrottled", "throttled_20mbit")
#: --load-client: what replays the frames of the load run (bench.load.load_run).
LOAD_CLIENTS = ("auto", "wrk", "python")
CHROMIUM = "/usr/bin/chromium"


def _summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the successful repeats; every sample kept."""
    ok = [s for s in samples if s.get("t_all_s") is not None]
    out: dict[str, Any] = {"t_first_s": None, "t_all_s": None, "wire_bytes": None}
    if ok:
        for key in ("t_first_s", "t_all_s", "wire_bytes"):
            out[key] = round(statistics.median(s[key] for s in ok), 3)
    else:
        firsts = [s["t_first_s"] for s in samples if s.get("t_first_s") is not None]
        out["t_first_s"] = round(statistics.median(firsts), 3) if firsts else None
    for key in ("bff", "source_bff", "proxy", "orthanc_cpu_s", "frames_received", "frames_decoded"):
        if key in samples[-1]:
            out[key] = samples[-1][key]
    # The BFF's CPU seconds of the row (issue 16 item 6): the median over the samples
    # (the baseline's: its proxy's).
    cpus = [(s.get("bff") or s.get("proxy") or {}).get("cpu_s") for s in samples]
    known = [c for c in cpus if c is not None]
    out["cpu_s"] = round(statistics.median(known), 2) if known else None
    opening = [(s.get("bff") or {}).get("opening_cpu_s") for s in samples]
    if any(c is not None for c in opening):
        out["opening_cpu_s"] = round(statistics.median(c for c in opening if c is not None), 2)
    errors = [s["error"] for s in samples if s.get("error")]
    if errors:
        out["errors"] = errors
    out["samples"] = samples
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{'run':<14} {'network':<17} {'t_first_s':>9} {'t_all_s':>8} {'wire MB':>8} "
        f"{'BFF RSS MB':>10} {'BFF CPU s':>9} {'PACS CPU s':>10}"
    )
    for run in RUNS:
        for cond in CONDITIONS:
            row = report.get(run, {}).get(cond)
            if row is None:
                continue
            bff = row.get("bff") or row.get("proxy") or {}
            wire = row.get("wire_bytes")
            rss = bff.get("peak_rss_bytes")
            print(
                f"{run:<14} {cond:<17} {_fmt(row['t_first_s']):>9} {_fmt(row['t_all_s']):>8} "
                f"{_fmt(wire / 1e6 if wire else None, 1):>8} "
                f"{_fmt(rss / 2**20 if rss else None, 0):>10} {_fmt(bff.get('cpu_s'), 1):>9} "
                f"{_fmt(row.get('orthanc_cpu_s'), 1):>10}"
                + (f"  ERROR: {row['errors'][-1]}" if row.get("errors") else "")
            )
    quality = report.get("quality") or {}
    print(f"\nquality: {json.dumps(quality)}")
    print(f"bff_peak_rss_bytes: {report.get('bff_peak_rss_bytes')}")
    load = report.get("load")
    if load and load.get("error"):
        print(f"load: ERROR {load['error']}")
    elif load:
        print(
            f"load: {load.get('viewers')} viewers, {load.get('frames_per_s')} frames/s, "
            f"{load.get('mb_per_s')} MB/s, p50 {load.get('p50_ms')} ms, p99 "
            f"{load.get('p99_ms')} ms, BFF {load.get('bff_cpu_s')} CPU-s "
            f"({load.get('bff_cpu_ms_per_frame')} ms a frame); nginx static "
            f"{load.get('nginx_frames_per_s')} frames/s; client {load.get('client')} "
            f"{load.get('client_cpu_s')} CPU-s"
            + (f"  ERRORS: {load['errors'][:2]}" if load.get("errors") else "")
        )
    memory = report.get("memory")
    if memory:
        mib = [round(b / 2**20) for b in memory["successive_rss_bytes"]]
        print(
            f"memory: BFF tree RSS {round(memory['rss_bytes_before'] / 2**20)} MiB at start, "
            f"after each of {len(mib)} successive openings {mib} MiB, "
            f"{round(memory['rss_bytes_after_parallel'] / 2**20)} MiB after "
            f"{len(memory['parallel_t_all_s'])} at once (all images in "
            f"{memory['parallel_t_all_s']} s), peak {round(memory['peak_rss_bytes'] / 2**20)} MiB"
        )


def plan(runs: str | None, load: int | None) -> tuple[list[str], int]:
    """(browser runs, simulated viewers of the load run, 0 for none) from --runs and
    --load: neither given, everything; one given, that one only."""
    if runs is None and load is None:
        return list(RUNS), DEFAULT_LOAD_VIEWERS
    return [r for r in (runs or "").split(",") if r], max(load or 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--slices", type=int, default=DEFAULT_SLICES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT, help="perf data set root")
    parser.add_argument(
        "--runs",
        default=None,
        help="comma list of " + ",".join(RUNS) + " (default: all, unless --load alone)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=None,
        metavar="N",
        help="N simulated viewers at once on one BFF, no browser, then the same frames "
        f"from nginx (default {DEFAULT_LOAD_VIEWERS} when neither --runs nor --load is "
        "given; --load alone runs only this)",
    )
    parser.add_argument(
        "--load-client",
        choices=LOAD_CLIENTS,
        default="auto",
        help="what replays the frames of --load: wrk (Debian's, one thread per viewer), "
        "python (asyncio + httpx), or auto: wrk when installed (default)",
    )
    parser.add_argument(
        "--network", default=",".join(CONDITIONS), help="comma list of " + ",".join(CONDITIONS)
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also open the study 5 times in a row, then in 5 browsers at once, on one "
        "Source BFF, and report its RSS (issue 5: flat memory)",
    )
    args = parser.parse_args(argv)
    runs, load_viewers = plan(args.runs, args.load)
    conditions = [c for c in args.network.split(",") if c]
    if set(runs) - set(RUNS) or set(conditions) - set(CONDITIONS):
        parser.error("unknown run or network condition")

    from playwright.sync_api import sync_playwright

    from bff.demo.orthanc import OrthancProcess
    from bff.demo.pki import make_test_pki, make_whitelist_signer
    from bff.demo.stack import DEMO_CDA_ID, DEMO_USERS_FILE, new_stack, publish_demo_kos
    from bff.idp.app import create_idp_app
    from bff.idp.users import load_users

    study = make_perf_dataset(args.data, n_slices=args.slices, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="drimbox-bench-"))
    print(f"[bench] work directory {work}", file=sys.stderr)
    report: dict[str, Any] = {
        "slices": args.slices,
        "study_uid": study.study_uid,
        "dataset_bytes": sum(p.stat().st_size for p in study.instance_files),
    }
    with OrthancProcess(work / "orthanc") as pacs:
        started = time.perf_counter()
        pacs.upload([*study.instance_files, study.kos_path])
        print(f"[bench] PACS loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        bff_port, idp_port, co_port = free_port(), free_port(), free_port()
        balancer_port = free_port()
        stack = new_stack(
            bff_port,
            idp_port,
            (SOURCE_LOCATION,),
            extra_origins=(
                f"http://{CONSUMER_HOST}:{co_port}",
                f"https://{SOURCE_LOCATION}:{balancer_port}",  # the HTTP/2 row's balancer
            ),
        )
        archive_url = f"sqlite:///{work / 'source-archive.db'}"
        publish_demo_kos(archive_url, study.kos_path, location=SOURCE_LOCATION, cda_id=DEMO_CDA_ID)
        idp = create_idp_app(
            load_users(DEMO_USERS_FILE), stack.idp_clients(), issuer_base=stack.issuer_base
        )
        pki = make_test_pki(work / "pki", server_names=("localhost",))
        pki["whitelist_signer"] = make_whitelist_signer(work / "pki")
        # The load benchmark alone needs no browser (nor Playwright's event loop).
        needs_browser = bool(runs) or args.memory
        with (
            thread_server(idp, idp_port),
            sync_playwright() if needs_browser else contextlib.nullcontext() as playwright,
        ):
            from bench.browser import CHROMIUM_ARGS

            browser = None
            if playwright is not None:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=False, args=CHROMIUM_ARGS, timeout=60_000
                )
                report["chromium"] = browser.version
            assert pacs.pid is not None
            world = World(
                study=study,
                pacs_dicomweb=pacs.dicomweb_url,
                orthanc_pid=pacs.pid,
                stack=stack,
                archive_url=archive_url,
                pki=pki,
                work=work,
                browser=browser,
                timeout=args.timeout,
                consumer_port=co_port,
                balancer_port=balancer_port,
            )
            samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for repeat in range(args.repeat):
                for run in runs:
                    for cond in conditions:
                        throttled = cond == "throttled_20mbit"
                        print(f"[bench] {run} {cond} #{repeat + 1}", file=sys.stderr, flush=True)
                        try:
                            if run == "source":
                                wants_quality = repeat == 0 and "quality" not in report
                                result = run_source(world, throttled, wants_quality)
                                if "quality" in result:
                                    report["quality"] = result.pop("quality")
                            elif run in ("source_prepared", "source_http2"):
                                result = run_source_prepared(
                                    world, throttled, http2=run == "source_http2"
                                )
                            elif run == "source_warm":
                                result = run_source(world, throttled, False, warm=True)
                            elif run in ("consumer", "consumer_lossy"):
                                result = run_consumer(world, throttled, run == "consumer_lossy")
                            else:
                                result = run_baseline(world, throttled)
                        except Exception as exc:  # reported per run, the bench goes on
                            result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                        print(
                            f"[bench]   t_first={result.get('t_first_s')} "
                            f"t_all={result.get('t_all_s')} error={result.get('error')}",
                            file=sys.stderr,
                            flush=True,
                        )
                        samples.setdefault((run, cond), []).append(result)
            if load_viewers:
                print(f"[bench] load: {load_viewers} simulated viewers", file=sys.stderr)
                try:
                    report["load"] = run_load(world, load_viewers, args.load_client)
                except Exception as exc:  # reported, the bench goes on
                    report["load"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"[bench]   {json.dumps(report['load'])[:400]}", file=sys.stderr)
            if args.memory:
                print("[bench] memory: 5 successive openings, then 5 at once", file=sys.stderr)
                report["memory"] = run_memory(world)
                print(f"[bench]   {json.dumps(report['memory'])}", file=sys.stderr)
            if browser is not None:
                browser.close()
    for (run, cond), values in samples.items():
        report.setdefault(run, {})[cond] = _summary(values)
    peaks = [
        s["bff"]["peak_rss_bytes"]
        for (run, _), values in samples.items()
        if run == "source"
        for s in values
        if s.get("bff")
    ]
    report["bff_peak_rss_bytes"] = max(peaks) if peaks else None
    cpus = [
        s["bff"]["cpu_s"]
        for (run, _), values in samples.items()
        if run == "source"
        for s in values
        if s.get("bff")
    ]
    report["bff_cpu_s"] = max(cpus) if cpus else None
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"[bench] wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
