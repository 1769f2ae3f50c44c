"""DICOMweb answers for a study opened from a KOS (the Consumer).

A DRIMbox Source offers series-level WADO-RS, not QIDO: the study and series searches
OHIF makes are answered from the KOS and from the series metadata. Series metadata comes
from the Source's ``/metadata`` when it offers it; otherwise it is built from the
headers of the instances received by the series retrieval (which then has to finish
first: a documented limitation of Sources without ``/metadata``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bff.consumer.errors import SourceError
from bff.consumer.remote import RemoteStudy
from bff.dicomweb.retrieve import Retriever, retrieval_error
from bff.errors import UpstreamProtocolError, UpstreamTimeout, ViewerError

log = logging.getLogger(__name__)


def _value(row: dict[str, Any], tag: str) -> Any:
    return (row.get(tag, {}).get("Value") or [None])[0]


async def series_metadata(
    retriever: Retriever, remote: RemoteStudy, series_uid: str, *, timeout: float
) -> list[Any]:
    """The series' metadata rows (a fresh copy: callers rewrite them). Starts the
    retrieval; shares the fetch started at hand-over (:func:`prefetch_metadata`)."""
    raw = await asyncio.shield(prefetch_metadata(retriever, remote, series_uid, timeout=timeout))
    rows: list[Any] = await asyncio.to_thread(json.loads, raw)
    return rows


async def _shared_rows(
    retriever: Retriever, remote: RemoteStudy, series_uid: str, timeout: float
) -> list[Any]:
    """The rows as received, not copied: for reading only."""
    await asyncio.shield(prefetch_metadata(retriever, remote, series_uid, timeout=timeout))
    return remote.metadata[series_uid]


def prefetch_metadata(
    retriever: Retriever, remote: RemoteStudy, series_uid: str, *, timeout: float
) -> asyncio.Task[bytes]:
    """Fetch the series metadata once (kept as JSON bytes); a failed fetch is retried by
    the next call. Called when the study is opened, so that OHIF's metadata request
    (its first image waits for it) finds it ready (issue 5, DB.VI-CO.39)."""
    task = remote.metadata_tasks.get(series_uid)
    if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
        task = asyncio.create_task(
            _load_metadata(retriever, remote, series_uid, timeout),
            name=f"consumer metadata {series_uid}",
        )
        task.add_done_callback(_consume_exception)
        remote.metadata_tasks[series_uid] = task
    return task


def _consume_exception(task: asyncio.Task[bytes]) -> None:
    if not task.cancelled():
        task.exception()


async def _load_metadata(
    retriever: Retriever, remote: RemoteStudy, series_uid: str, timeout: float
) -> bytes:
    record = remote.record
    upstream = remote.upstream_for(series_uid)
    retrieval = retriever.ensure(upstream, record.study_uid, series_uid)
    kos_series = next(s for s in record.series if s.series_uid == series_uid)
    retrieval.expected = len(kos_series.instances)
    path = f"/studies/{record.study_uid}/series/{series_uid}/metadata"
    try:
        raw = await upstream.get_json_bytes(path)
        try:
            rows = await asyncio.to_thread(json.loads, raw)
        except ValueError as exc:
            raise UpstreamProtocolError(f"series {series_uid} metadata: invalid JSON") from exc
    except SourceError as exc:
        if exc.code != "E205":
            raise
        rows = await _from_received_headers(retrieval, timeout)
        raw = (await asyncio.to_thread(json.dumps, rows)).encode()
    if not isinstance(rows, list):
        raise UpstreamProtocolError(f"series {series_uid} metadata is not a JSON array")
    if not rows:
        raise SourceError("E205", f"no metadata for {series_uid}")
    remote.metadata[series_uid] = rows
    return raw


async def _from_received_headers(retrieval: Any, timeout: float) -> list[Any]:
    try:
        await asyncio.wait_for(retrieval.done.wait(), timeout)
    except TimeoutError as exc:
        raise UpstreamTimeout("series not received in time") from exc
    if not retrieval.headers:
        if retrieval.refused:  # every instance refused on arrival (E301 / E302)
            raise next(iter(retrieval.refused.values()))
        raise retrieval_error(retrieval)
    rows: list[Any] = await asyncio.to_thread(retrieval.json_headers)
    return rows


def study_row(remote: RemoteStudy) -> dict[str, Any]:
    """A QIDO study answer built from the KOS (what the DMP published)."""
    record = remote.record
    traits = record.traits
    modalities = sorted(
        {str(_value(rows[0], "00080060")) for rows in remote.metadata.values() if rows} - {"None"}
    )
    row: dict[str, Any] = {
        "0020000D": {"vr": "UI", "Value": [record.study_uid]},
        "00080050": {"vr": "SH", "Value": [record.accession_number]},
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": f"{traits.birth_name}^{' '.join(traits.given_names)}"}],
        },
        "00100020": {"vr": "LO", "Value": [record.ins or record.local_patient_id or ""]},
        "00100030": {"vr": "DA", "Value": [traits.birth_date]},
        "00100040": {"vr": "CS", "Value": [traits.sex]},
        "00080080": {"vr": "LO", "Value": [record.institution_name]},
        "00201206": {"vr": "IS", "Value": [len(record.series)]},
        "00201208": {"vr": "IS", "Value": [sum(len(s.instances) for s in record.series)]},
    }
    if record.description:
        row["00081030"] = {"vr": "LO", "Value": [record.description[:64]]}
    if modalities:
        row["00080061"] = {"vr": "CS", "Value": modalities}
    return row


async def series_rows(retriever: Retriever, remote: RemoteStudy, *, timeout: float) -> list[Any]:
    """QIDO series answers: one per KOS series, filled from its metadata when it comes."""
    record = remote.record
    results = await asyncio.gather(
        *(_shared_rows(retriever, remote, s.series_uid, timeout) for s in record.series),
        return_exceptions=True,
    )
    rows = []
    for series, result in zip(record.series, results, strict=True):
        row: dict[str, Any] = {
            "0020000D": {"vr": "UI", "Value": [record.study_uid]},
            "0020000E": {"vr": "UI", "Value": [series.series_uid]},
            "00201209": {"vr": "IS", "Value": [len(series.instances)]},
        }
        if isinstance(result, list) and result:
            first = result[0]
            for tag in ("00080060", "00200011", "0008103E", "00080021", "00080031"):
                if tag in first:
                    row[tag] = first[tag]
        else:
            code = result.code if isinstance(result, ViewerError) else "E500"
            log.warning("series %s unavailable: %r", series.series_uid, result)
            row["0008103E"] = {"vr": "LO", "Value": [f"Série indisponible ({code})"]}
            row["00080060"] = {"vr": "CS", "Value": ["OT"]}
        rows.append(row)
    return rows
