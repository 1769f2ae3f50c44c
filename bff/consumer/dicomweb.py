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
from bff.dicomweb import key_images
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
    retriever: Retriever,
    remote: RemoteStudy,
    series_uid: str,
    *,
    timeout: float,
    from_instances: bool = True,
) -> asyncio.Task[bytes]:
    """Fetch the series metadata once (kept as JSON bytes); a failed fetch is retried by
    the next call. Called at hand-over and when the study is opened, so that OHIF's
    metadata request (its first image waits for it) finds it ready (issue 5,
    DB.VI-CO.39). ``from_instances``: a Source without metadata (E205) gets it built
    from the instances' headers, which means pulling the series: not before the opening
    (the hand-over passes False; the opening's call then asks again)."""
    task = remote.metadata_tasks.get(series_uid)
    if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
        task = asyncio.create_task(
            _load_metadata(retriever, remote, series_uid, timeout, from_instances),
            name=f"consumer metadata {series_uid}",
        )
        task.add_done_callback(_consume_exception)
        remote.metadata_tasks[series_uid] = task
    return task


def _consume_exception(task: asyncio.Task[bytes]) -> None:
    if not task.cancelled():
        task.exception()


async def _load_metadata(
    retriever: Retriever,
    remote: RemoteStudy,
    series_uid: str,
    timeout: float,
    from_instances: bool = True,
) -> bytes:
    record = remote.record
    upstream = remote.upstream_for(series_uid)
    retrieval = retriever.ensure(upstream, record.study_uid, series_uid, start=False)
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
        if exc.code != "E205" or not from_instances:
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
    retrieval.start()  # the headers come with the series itself
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


# -- key images (issue 6: DB.VI-CO.197) ------------------------------------------------------
# A KO series of the DRIM-M manifest that is a Key Image Note is retrieved from the Source
# like any series (its metadata from the Source's /metadata, else from the header of the
# KO instance received); the index is then built as for the Source viewer
# (bff/dicomweb/key_images.py), from the KOS's series and their metadata only.


def ko_series(remote: RemoteStudy) -> list[str]:
    """The KOS's series made of Key Object Selection Documents only (KINs, maybe)."""
    return [
        s.series_uid
        for s in remote.record.series
        if s.instances and all(c == key_images.KOS_SOP_CLASS_UID for c, _ in s.instances)
    ]


def _index_row(remote: RemoteStudy, series_uid: str, is_ko: bool) -> dict[str, Any]:
    rows = remote.metadata.get(series_uid) or [{}]
    row: dict[str, Any] = {
        key_images.SERIES_UID: {"vr": "UI", "Value": [series_uid]},
        key_images.MODALITY: {
            "vr": "CS",
            "Value": ["KO" if is_ko else _value(rows[0], "00080060") or "OT"],
        },
    }
    if key_images.SERIES_NUMBER in rows[0]:
        row[key_images.SERIES_NUMBER] = rows[0][key_images.SERIES_NUMBER]
    return row


async def key_image_index(
    retriever: Retriever, remote: RemoteStudy, *, timeout: float
) -> key_images.KeyImages:
    """The key images of a KOS-opened study: its KIN series' metadata, read from the Source
    (a KIN that cannot be read leaves the exam viewable without it)."""
    ko_uids = ko_series(remote)
    if not ko_uids:
        return key_images.EMPTY
    # Every series' metadata (fetched since the hand-over): the KINs', and the others'
    # modality and number, which the virtual series row takes from the series it shows.
    series_uids = [s.series_uid for s in remote.record.series]
    results = await asyncio.gather(
        *(_shared_rows(retriever, remote, uid, timeout) for uid in series_uids),
        return_exceptions=True,
    )
    kos: dict[str, list[Any]] = {}
    for uid, result in zip(series_uids, results, strict=True):
        if uid not in ko_uids:
            continue
        if isinstance(result, list):
            kos[uid] = result
        else:
            log.warning("key images of KO series %s not read: %r", uid, result)
    rows = [_index_row(remote, s.series_uid, s.series_uid in ko_uids) for s in remote.record.series]
    return key_images.build_index(remote.record.study_uid, rows, kos)
