"""The performance data set: the equivalent of the ANS reference CT (FACTS.md 1), which
is not available here: ONE axial CT series of 1300 slices, 512x512, JPEG-LS lossless,
about 150 KB a slice (about 200 MB), seeded and reproducible, with its DRIM-M KOS.

Written outside the repository (default ``/var/tmp/drimbox-perf``), one directory per
parameter set; a directory that already holds the same parameters is reused. Optionally
loaded into a running PACS (``--pacs-url``, Orthanc REST ``/instances``).

``python -m bff.demo.perf --out DIR --slices 1300 --seed 0 [--pacs-url URL]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

from bff.demo.dataset import DemoStudy, write_demo_study

DEFAULT_OUT = Path("/var/tmp/drimbox-perf")
DEFAULT_SLICES = 1300
DEFAULT_SEED = 0
#: Bump when the writer changes in a way that changes the files.
FORMAT_VERSION = 1
PARAMS_FILE = "params.json"
STUDY_FILE = "study.json"


def dataset_dir(out: Path, n_slices: int, seed: int) -> Path:
    return Path(out) / f"ct-{n_slices}-seed{seed}"


def _params(n_slices: int, seed: int) -> dict[str, object]:
    return {
        "version": FORMAT_VERSION,
        "n_slices": n_slices,
        "seed": seed,
        "rows": 512,
        "cols": 512,
        "topogram": False,
    }


def _describe(study: DemoStudy) -> dict[str, object]:
    return {
        "study_uid": study.study_uid,
        "accession_number": study.accession_number,
        "accession_issuer": study.accession_issuer,
        "series_uids": list(study.series_uids),
        "instance_files": [str(p) for p in study.instance_files],
        "kos_path": str(study.kos_path),
        "kos_sop_uid": study.kos_sop_uid,
        "institution_name": study.institution_name,
        "n_instances": study.n_instances,
    }


def _load(directory: Path) -> DemoStudy | None:
    from bff.demo.identity import ANS_TEST_PATIENT

    try:
        raw = json.loads((directory / STUDY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = tuple(Path(p) for p in raw["instance_files"])
    if not all(p.is_file() for p in (*files, Path(raw["kos_path"]))):
        return None
    return DemoStudy(
        study_uid=raw["study_uid"],
        accession_number=raw["accession_number"],
        accession_issuer=raw["accession_issuer"],
        series_uids=tuple(raw["series_uids"]),
        instance_files=files,
        kos_path=Path(raw["kos_path"]),
        kos_sop_uid=raw["kos_sop_uid"],
        patient=ANS_TEST_PATIENT,
        institution_name=raw["institution_name"],
        n_instances=raw["n_instances"],
    )


def make_perf_dataset(
    out: Path = DEFAULT_OUT,
    *,
    n_slices: int = DEFAULT_SLICES,
    seed: int = DEFAULT_SEED,
    workers: int = 2,
) -> DemoStudy:
    """Write (or reuse) the performance set; returns its description."""
    directory = dataset_dir(out, n_slices, seed)
    params_path = directory / PARAMS_FILE
    wanted = _params(n_slices, seed)
    if params_path.is_file():
        try:
            same = json.loads(params_path.read_text(encoding="utf-8")) == wanted
        except ValueError:
            same = False
        study = _load(directory) if same else None
        if study is not None:
            return study
    params_path.unlink(missing_ok=True)
    study = write_demo_study(
        directory, n_slices=n_slices, seed=seed, workers=workers, topogram=False
    )
    (directory / STUDY_FILE).write_text(json.dumps(_describe(study), indent=1), encoding="utf-8")
    # Written last: its presence means the set is complete.
    params_path.write_text(json.dumps(wanted), encoding="utf-8")
    return study


def load_into_pacs(study: DemoStudy, pacs_url: str) -> int:
    """POST every file (images, then the KOS) to an Orthanc's ``/instances``."""
    count = 0
    with httpx.Client(base_url=pacs_url.rstrip("/"), timeout=60) as client:
        for path in (*study.instance_files, study.kos_path):
            response = client.post(
                "/instances",
                content=path.read_bytes(),
                headers={"Content-Type": "application/dicom"},
            )
            response.raise_for_status()
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make-perf-dataset",
        description="Write the 1300-slice JPEG-LS CT performance set (and its KOS).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--slices", type=int, default=DEFAULT_SLICES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pacs-url", default=None, help="Orthanc REST base URL to load it into")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    study = make_perf_dataset(args.out, n_slices=args.slices, seed=args.seed, workers=args.workers)
    total = sum(p.stat().st_size for p in study.instance_files)
    print(
        f"study {study.study_uid}: {len(study.instance_files)} slices, {total / 1e6:.1f} MB "
        f"({total / max(1, len(study.instance_files)) / 1e3:.0f} KB/slice) in "
        f"{dataset_dir(args.out, args.slices, args.seed)} ({time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    if args.pacs_url:
        loaded = load_into_pacs(study, args.pacs_url)
        print(f"loaded {loaded} files into {args.pacs_url}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
