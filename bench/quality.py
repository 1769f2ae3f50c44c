"""Image quality of the frames a BFF serves, against the lossless originals, in HU.

Frames are fetched through the BFF as OHIF asks for them (same Accept header), decoded
with bff.transcode.decode_served_frame, and compared with the JPEG-LS originals decoded
by imagecodecs, both through their own Rescale Slope/Intercept (the served ones from the
BFF's metadata)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import generate_frames

from bff.transcode.encoder import decode_served_frame

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def _first_part(response: httpx.Response) -> tuple[str, bytes]:
    match = re.search(r'boundary="?([^";]+)"?', response.headers["content-type"])
    if match is None:
        raise ValueError("frame answer without a multipart boundary")
    boundary = b"--" + match.group(1).encode()
    part = response.content.split(boundary)[1]
    head, _, data = part.partition(b"\r\n\r\n")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    syntax = re.search(rb"transfer-syntax=([0-9.]+)", head)
    return (syntax.group(1).decode() if syntax else ""), data


def _value(record: dict[str, Any], tag: str, default: float) -> float:
    values = record.get(tag, {}).get("Value")
    return float(values[0]) if values else default


def measure_quality(
    client: httpx.Client,
    base_url: str,
    study_uid: str,
    series_uid: str,
    files: list[Path],
    samples: int = 50,
) -> dict[str, Any]:
    series = f"{base_url}/dicomweb/studies/{study_uid}/series/{series_uid}"
    metadata = client.get(f"{series}/metadata")
    metadata.raise_for_status()
    by_sop = {r["00080018"]["Value"][0]: r for r in metadata.json()}
    picked = sorted({round(i) for i in np.linspace(0, len(files) - 1, min(samples, len(files)))})
    raw_bytes = served_bytes = 0
    squared = 0.0
    count = 0
    max_err = 0.0
    syntaxes: set[str] = set()
    bits: set[int] = set()
    for index in picked:
        ds = pydicom.dcmread(files[index])
        sop_uid = str(ds.SOPInstanceUID)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        original = np.asarray(imagecodecs.jpegls_decode(frame)).astype(np.float64)
        original = original * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        answer = client.get(
            f"{series}/instances/{sop_uid}/frames/1", headers={"Accept": FRAME_ACCEPT}
        )
        answer.raise_for_status()
        syntax, data = _first_part(answer)
        syntaxes.add(syntax)
        record = by_sop[sop_uid]
        bits.add(int(_value(record, "00280101", 0)))
        served = decode_served_frame(data, syntax).astype(np.float64).reshape(original.shape)
        served = served * _value(record, "00281053", 1.0) + _value(record, "00281052", 0.0)
        diff = served - original
        squared += float(np.sum(diff * diff))
        count += diff.size
        max_err = max(max_err, float(np.max(np.abs(diff))))
        raw_bytes += int(ds.Rows) * int(ds.Columns) * 2
        served_bytes += len(data)
    return {
        "ratio": round(raw_bytes / max(1, served_bytes), 2),
        "rmse_hu": round((squared / max(1, count)) ** 0.5, 2),
        "max_err_hu": round(max_err, 1),
        "frames_sampled": len(picked),
        "served_transfer_syntaxes": sorted(syntaxes),
        "served_bits_stored": sorted(bits),
        "served_kb_per_frame": round(served_bytes / max(1, len(picked)) / 1000, 1),
    }
