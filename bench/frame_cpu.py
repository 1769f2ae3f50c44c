"""BFF CPU per frame, without a browser (issue 16 item 2): ``python -m bench.frame_cpu``.

A real Orthanc loaded with a demo CT of ``--slices`` slices, the BFF in its own process
(``python -m bench.serve bff``, open access: the facade's routes without a login), the
KOS published through the admin API. Then, measured as the CPU time of the BFF's main
process (``/proc/<pid>/stat``, utime + stime) around the requests:

- ``prepared``: the study prepared at publication (waited for), then ``--requests``
  single-frame requests over the series with ``--concurrency`` clients (OHIF uses 6
  connections): the lean path;
- ``memory``: preparation off, the series opened once (frames in the memory cache),
  then the same requests: the live path's answer for a frame already transcoded;
- ``opening``: per opening, metadata and every frame once: prepared, and with the
  preparation off on a BFF restarted with the disk cache an earlier opening filled
  (what issue 16 measured at 7.5 CPU-s for 1300 slices).

Prints one JSON object. ``BENCH_PROFILE=PATH`` profiles the BFF's main process
(cProfile, stats in PATH.<pid>).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.stacks import ServerProcess, free_port, settings_env
from bff.demo.dataset import DemoStudy, write_demo_study
from bff.demo.orthanc import OrthancProcess

ADMIN = "bench-admin-secret-frame-cpu"
ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
TICKS = 100.0  # os.sysconf("SC_CLK_TCK") on Linux


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def bff(work: Path, pacs: str, tag: str, *, prepare: bool, frames_dir: Path) -> ServerProcess:
    port = free_port()
    values: dict[str, object] = {
        "port": port,
        "upstream_url": pacs,
        "open_access": True,
        "admin_secret": ADMIN,
        "archive_url": f"sqlite:///{work / f'archive-{tag}.db'}",
        "audit_log": work / f"audit-{tag}.jsonl",
        "frame_disk_cache_dir": frames_dir,
        "prepare_at_publication": prepare,
        "prepared_dir": work / f"prepared-{tag}",
        "log_level": "warning",
    }
    return ServerProcess(["bff"], port, settings_env(values), work / f"bff-{tag}.log")


def publish(client: httpx.Client, study: DemoStudy) -> None:
    response = client.post(
        "/api/admin/kos",
        content=study.kos_path.read_bytes(),
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/dicom"},
        params={"cda_id": "1.2.250.1.999.1.1.16"},
    )
    response.raise_for_status()


def wait_prepared(client: httpx.Client, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.get("/api/admin/kos", headers={"authorization": f"Bearer {ADMIN}"}).json()
        prepared = rows[0].get("prepared") if rows else None
        if prepared and prepared["state"] != "preparing":
            return dict(prepared)
        time.sleep(0.5)
    raise TimeoutError("preparation did not finish")


def frame_urls(client: httpx.Client, study: DemoStudy) -> tuple[list[str], float]:
    """The CT series' frame URLs, from its metadata; and the metadata request's BFF CPU
    is left to the caller."""
    series_uid = study.series_uids[-1]
    base = f"/dicomweb/studies/{study.study_uid}/series/{series_uid}"
    rows = client.get(base + "/metadata", timeout=120).json()
    sop_uids = [row["00080018"]["Value"][0] for row in rows]
    return [f"{base}/instances/{sop}/frames/1" for sop in sop_uids], 0.0


def fetch_all(url: str, paths: list[str], concurrency: int) -> int:
    def worker(chunk: list[str]) -> int:
        n = 0
        with httpx.Client(base_url=url, timeout=120) as client:
            for path in chunk:
                response = client.get(path, headers={"Accept": ACCEPT})
                response.raise_for_status()
                n += len(response.content)
        return n

    chunks = [paths[i::concurrency] for i in range(concurrency)]
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(worker, chunks))


def measure_requests(
    server: ServerProcess, url: str, paths: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    wanted = (paths * (requests // len(paths) + 1))[:requests]
    assert server.proc is not None
    before, tree_before = cpu_s(server.proc.pid), tree_cpu_s(server)
    nbytes = fetch_all(url, wanted, concurrency)
    used = cpu_s(server.proc.pid) - before
    tree = tree_cpu_s(server) - tree_before
    return {
        "requests": requests,
        "bytes": nbytes,
        "bff_cpu_s": round(used, 3),
        "ms_per_frame": round(1000 * used / requests, 3),
        "bff_tree_cpu_s": round(tree, 3),
    }


def tree_cpu_s(server: ServerProcess) -> float:
    """CPU seconds of the BFF's whole tree (main process and transcoding workers)."""
    assert server.sampler is not None
    return server.sampler.snapshot()[1]


def opening(server: ServerProcess, url: str, study: DemoStudy, concurrency: int) -> dict[str, Any]:
    """Metadata and every frame once; CPU of the main process and of the whole tree."""
    assert server.proc is not None
    before, tree_before = cpu_s(server.proc.pid), tree_cpu_s(server)
    with httpx.Client(base_url=url, timeout=120) as client:
        paths, _ = frame_urls(client, study)
    fetch_all(url, paths, concurrency)
    used = cpu_s(server.proc.pid) - before
    tree = tree_cpu_s(server) - tree_before
    return {
        "frames": len(paths),
        "bff_cpu_s": round(used, 3),
        "bff_tree_cpu_s": round(tree, 3),
        "tree_ms_per_frame": round(1000 * tree / len(paths), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frame_cpu")
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--runs", default="prepared,memory,opening")
    args = parser.parse_args(argv)
    runs = set(args.runs.split(","))
    out: dict[str, Any] = {"slices": args.slices, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory(prefix="frame-cpu-") as tmp:
        work = Path(tmp)
        study = write_demo_study(work / "data", n_slices=args.slices, seed=0, topogram=False)
        with OrthancProcess(work / "orthanc") as orthanc:
            orthanc.upload([*study.instance_files, study.kos_path])
            pacs = orthanc.dicomweb_url
            if runs & {"prepared", "opening"}:
                with bff(work, pacs, "p", prepare=True, frames_dir=work / "frames-p") as server:
                    url = f"http://127.0.0.1:{server.port}"
                    with httpx.Client(base_url=url, timeout=120) as client:
                        publish(client, study)
                        out["preparation"] = wait_prepared(client)
                        paths, _ = frame_urls(client, study)
                    if "opening" in runs:
                        out["opening_prepared"] = opening(server, url, study, args.concurrency)
                    if "prepared" in runs:
                        out["prepared"] = measure_requests(
                            server, url, paths, args.requests, args.concurrency
                        )
            if runs & {"memory", "opening"}:
                frames = work / "frames-m"
                with bff(work, pacs, "m", prepare=False, frames_dir=frames) as server:
                    url = f"http://127.0.0.1:{server.port}"
                    first = opening(server, url, study, args.concurrency)
                    out["opening_cold"] = first
                    if "memory" in runs:
                        with httpx.Client(base_url=url, timeout=120) as client:
                            paths, _ = frame_urls(client, study)
                        out["memory"] = measure_requests(
                            server, url, paths, args.requests, args.concurrency
                        )
                if "opening" in runs:
                    with bff(work, pacs, "w", prepare=False, frames_dir=frames) as server:
                        url = f"http://127.0.0.1:{server.port}"
                        out["opening_disk_cache"] = opening(server, url, study, args.concurrency)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
