"""The DICOMweb facade OHIF talks to (``/dicomweb``), with ``imageRendering: 'wadors'``.

QIDO-RS and metadata are proxied from the location's PACS and rewritten; frames come
from the out-of-order cache fed by one series-level retrieval (DB.VI-CS.17). Every
route first asks the one access function (:func:`bff.access.policy.allowed`); a study
outside the grant is answered as a study that does not exist, with nothing fetched.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bff.access.policy import Resource, allowed
from bff.consumer import dicomweb as consumer
from bff.consumer.routes import remote_study
from bff.dicomweb import key_images
from bff.dicomweb.multipart import closing_delimiter, encode_part, new_boundary
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.series_metadata import (
    PreparedMetadata,
    RewriteContext,
    SeriesFacts,
    rewrite_off_loop,
)
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import BadRequest, NotAcceptable, NotFound, UpstreamProtocolError

log = logging.getLogger(__name__)

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
FRAMES = re.compile(r"^[1-9][0-9]{0,5}(,[1-9][0-9]{0,5}){0,255}$")
DICOM_JSON = "application/dicom+json"
STUDY_UID_TAG = "0020000D"
MODALITY = "00080060"
MODALITIES_IN_STUDY = "00080061"


def _uid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if len(value) > 64 or not UID.match(value):
        raise BadRequest(f"bad {name}")
    return value


def _upstream(request: Request) -> DicomwebUpstream:
    """The PACS of the location this request came through (DB.VI-SO.07, .127)."""
    locations: dict[str, DicomwebUpstream] = request.app.state.locations
    host = (request.url.hostname or "").lower()
    upstream = locations.get(host) or locations.get("*")
    if upstream is None:
        raise NotFound(f"no location for host {host!r}")
    return upstream


def _grant(request: Request) -> Any:
    return request.scope.get("session_grant")


def check_study(request: Request, study_uid: str) -> DicomwebUpstream:
    """Ask the access function; refuse as 'not found' (no byte fetched upstream)."""
    upstream = _upstream(request)
    resource = Resource(location=upstream.origin, study_uid=study_uid)
    if not allowed(_grant(request), resource, open_access=request.app.state.open_access):
        raise NotFound(f"study outside the grant: {study_uid}")
    return upstream


def check_series(request: Request, study_uid: str, series_uid: str) -> DicomwebUpstream:
    """The upstream of one series: the location's PACS, or (Consumer) the Source its KOS
    names. Asks the one access function first."""
    upstream = check_study(request, study_uid)
    remote = remote_study(request, study_uid)
    return remote.upstream_for(series_uid) if remote is not None else upstream


def _json(payload: Any) -> Response:
    return JSONResponse(payload, media_type=DICOM_JSON, headers={"Cache-Control": "no-store"})


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.multi_items()}


def _filter_studies(request: Request, upstream: DicomwebUpstream, rows: Iterable[Any]) -> list[Any]:
    grant, open_access = _grant(request), request.app.state.open_access
    kept = []
    for row in rows:
        study_uid = (row.get(STUDY_UID_TAG, {}).get("Value") or [""])[0]
        if allowed(grant, Resource(upstream.origin, study_uid), open_access=open_access):
            kept.append(row)
    return kept


# -- QIDO-RS -----------------------------------------------------------------------------


async def search_studies(request: Request) -> Response:
    """Study search, OHIF's patient-history query by PatientID included. With a session,
    the PACS is only ever asked about granted studies (one query each, the caller's
    other filters kept), so a search cannot enumerate anything else."""
    upstream = _upstream(request)
    grant = _grant(request)
    query = _query(request)
    if grant is None:
        if not request.app.state.open_access:
            return _json([])
        rows = await upstream.search("/studies", query)
    else:
        asked = query.pop("StudyInstanceUID", "")
        wanted = grant.study_uids(upstream.origin)
        if asked:
            wanted = [uid for uid in wanted if uid in asked.replace("\\", ",").split(",")]
        rows = []
        for study_uid in wanted:
            remote = remote_study(request, study_uid)
            if remote is None:
                rows += await upstream.search("/studies", {**query, "StudyInstanceUID": study_uid})
                continue
            row = consumer.study_row(remote)
            patient_id = query.get("PatientID")
            if not patient_id or patient_id == (row["00100020"]["Value"] or [""])[0]:
                rows.append(row)
    rows = _filter_studies(request, upstream, rows)
    for row in rows:
        modalities = row.get(MODALITIES_IN_STUDY, {}).get("Value")
        if modalities and "KO" in modalities and len(modalities) > 1:
            row[MODALITIES_IN_STUDY]["Value"] = [m for m in modalities if m != "KO"]
    return _json(rows)


async def search_series(request: Request) -> Response:
    """Series of a study, without the DRIM-M manifest (KO): it is how the exam was
    published, not something to look at, and stock OHIF can only show it as an error."""
    study_uid = _uid(request, "study_uid")
    upstream = check_study(request, study_uid)
    remote = remote_study(request, study_uid)
    if remote is not None:
        retriever: Retriever = request.app.state.retriever
        timeout = request.app.state.settings.frame_wait_timeout
        # Key images (DB.VI-CO.197): the KOS's KIN series become the virtual series.
        remote_rows, remote_index = await asyncio.gather(
            consumer.series_rows(retriever, remote, timeout=timeout),
            _key_images(request, upstream, study_uid),
        )
        remote_rows = [row for row in remote_rows if _first(row, MODALITY) != "KO"]
        return _json(remote_rows + _key_image_rows(request, study_uid, remote_index))
    # Key images (DB.VI-SO.170): the study's KINs are read while the PACS answers.
    rows, index = await asyncio.gather(
        upstream.search(f"/studies/{study_uid}/series", _query(request)),
        _key_images(request, upstream, study_uid),
    )
    rows = [row for row in rows if _first(row, MODALITY) != "KO"]
    return _json(rows + _key_image_rows(request, study_uid, index))


async def search_instances(request: Request) -> Response:
    study_uid = _uid(request, "study_uid")
    upstream = check_study(request, study_uid)
    path = f"/studies/{study_uid}"
    if "series_uid" in request.path_params:
        path += f"/series/{_uid(request, 'series_uid')}"
    return _json(await upstream.search(f"{path}/instances", _query(request)))


# -- metadata ----------------------------------------------------------------------------


def _dicomweb_root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _kos_institution(request: Request, study_uid: str) -> str:
    """Institution Name of the KOS that opened this study in the session, '' if none
    (DB.VI-CS.29, Tableau 3: (0008,0080) is taken from the KOS, not from the images)."""
    session = request.scope.get("session")
    for opened in session.studies if session is not None else ():
        if opened.study_uid == study_uid:
            return str(opened.display.get("institution") or "")
    return ""


def _rewrite_context(
    request: Request, upstream: DicomwebUpstream, study_uid: str
) -> RewriteContext:
    retriever: Retriever = request.app.state.retriever
    return RewriteContext(
        root=_dicomweb_root(request),
        study_uid=study_uid,
        upstream_base=upstream.base_url,
        serve=upstream.serve,
        codec=retriever.params.codec,
        institution=_kos_institution(request, study_uid),
    )


async def _rewrite(
    request: Request, upstream: DicomwebUpstream, study_uid: str, rows: list[Any]
) -> list[Any]:
    """Rewrite metadata rows for what the BFF serves (:mod:`bff.dicomweb.series_metadata`)."""
    retriever: Retriever = request.app.state.retriever
    facts: dict[str, SeriesFacts] = {}
    for series_uid in {_first(row, "0020000E") for row in rows}:
        retrieval = retriever.find(upstream.origin, study_uid, series_uid)
        if retrieval is not None:
            facts[series_uid] = retrieval.facts_snapshot()
    return await rewrite_off_loop(rows, _rewrite_context(request, upstream, study_uid), facts)


def _first(row: dict[str, Any], tag: str) -> str:
    return str((row.get(tag, {}).get("Value") or [""])[0])


async def series_metadata(request: Request) -> Response:
    """Series metadata; also the first need for the series: its retrieval starts now."""
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    upstream = check_series(request, study_uid, series_uid)
    # Key images (DB.VI-SO.196): a KIN's virtual series is answered on its own.
    virtual = await _virtual_metadata(request, upstream, study_uid, series_uid)
    if virtual is not None:
        return virtual
    retriever: Retriever = request.app.state.retriever
    retrieval = retriever.ensure(upstream, study_uid, series_uid)
    # Prepared while OHIF was loading: at grant time on the Source, when the exam was
    # opened on the Consumer (bff/dicomweb/series_metadata.py). It named the series for
    # the progress already.
    context = _rewrite_context(request, upstream, study_uid)
    prepared = await retriever.prepared_metadata(upstream, study_uid, series_uid, context.key)
    if prepared is None:
        # Nothing prepared for this request (open access, another host, a second tab):
        # built now, the same way, off the event loop.
        remote = remote_study(request, study_uid)
        raw: asyncio.Future[bytes]
        if remote is not None:  # fetched at hand-over (DB.VI-CO.39)
            timeout = request.app.state.settings.frame_wait_timeout
            task = consumer.prefetch_metadata(retriever, remote, series_uid, timeout=timeout)
            raw = asyncio.shield(task)
        else:
            raw = asyncio.ensure_future(
                retriever.series_metadata_bytes(upstream, study_uid, series_uid)
            )
        try:
            prepared = await retriever.prepare_answer(retrieval, raw, context)
        except ValueError as exc:  # not JSON, not an array
            raise UpstreamProtocolError(f"series {series_uid} metadata: {exc}") from exc
    if not prepared.rows:
        raise NotFound("empty series")
    return _prepared_response(request, prepared)


def _prepared_response(request: Request, prepared: PreparedMetadata) -> Response:
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(prepared.gzipped, media_type=DICOM_JSON, headers=headers)
    return Response(prepared.body, media_type=DICOM_JSON, headers=headers)


async def instance_metadata(request: Request) -> Response:
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    sop_uid = _uid(request, "sop_uid")
    upstream = check_study(request, study_uid)
    # Key images (DB.VI-SO.196): an instance of a virtual series is read in its real one.
    real_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
    path = f"/studies/{study_uid}/series/{real_uid}/instances/{sop_uid}/metadata"
    rows = await _rewrite(request, upstream, study_uid, await upstream.get_json(path))
    return _json(await _as_virtual(request, upstream, study_uid, series_uid, rows))


async def study_metadata(request: Request) -> Response:
    study_uid = _uid(request, "study_uid")
    upstream = check_study(request, study_uid)
    rows = await upstream.get_json(f"/studies/{study_uid}/metadata")
    return _json(await _rewrite(request, upstream, study_uid, rows))


# -- frames and bulk data ----------------------------------------------------------------


def _accepts_syntax(accept: str, transfer_syntax_uid: str) -> bool:
    """Does the Accept header admit frames in this syntax? (absent or wildcard: yes)."""
    if not accept or "*/*" in accept:
        return True
    for item in accept.split(","):
        item = item.strip().lower()
        if not item.startswith("multipart/related"):
            continue
        match = re.search(r'transfer-syntax\s*=\s*"?([0-9.*]+)"?', item)
        if match is None or match.group(1) in ("*", transfer_syntax_uid):
            return True
    return False


async def _frames_response(
    request: Request, study_uid: str, series_uid: str, sop_uid: str, numbers: list[int]
) -> Response:
    upstream = check_series(request, study_uid, series_uid)
    # Key images (DB.VI-SO.196): a virtual series' frames are those of the real series.
    real_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
    if real_uid != series_uid:  # DB.VI-CO.197: the Consumer's real series has its upstream
        series_uid, upstream = real_uid, check_series(request, study_uid, real_uid)
    retriever: Retriever = request.app.state.retriever
    frames = await asyncio.gather(
        *(retriever.frame(upstream, study_uid, series_uid, sop_uid, n) for n in numbers)
    )
    syntax = frames[0].transfer_syntax_uid
    if not _accepts_syntax(request.headers.get("accept", ""), syntax):
        raise NotAcceptable(f"client does not accept {syntax}")
    boundary = new_boundary()
    part_type = f"application/octet-stream; transfer-syntax={syntax}"
    body = b"".join(encode_part(f.data, part_type, boundary) for f in frames)
    body += closing_delimiter(boundary)
    media_type = (
        f'multipart/related; type="application/octet-stream"; '
        f"transfer-syntax={syntax}; boundary={boundary}"
    )
    return Response(
        body, headers={"Content-Type": media_type, "Cache-Control": "private, max-age=3600"}
    )


async def frames(request: Request) -> Response:
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    sop_uid = _uid(request, "sop_uid")
    raw = str(request.path_params["frames"])
    if not FRAMES.match(raw):
        raise BadRequest("bad frame list")
    numbers = [int(n) for n in raw.split(",")]
    return await _frames_response(request, study_uid, series_uid, sop_uid, numbers)


async def bulk(request: Request) -> Response:
    """Bulk data: pixel data as the BFF serves it; other bulk values from the PACS."""
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    sop_uid = _uid(request, "sop_uid")
    tag_path = str(request.path_params["tag_path"]).lower()
    if not re.fullmatch(r"[0-9a-f]{8}(/[0-9]{1,4}/[0-9a-f]{8}){0,8}", tag_path):
        raise BadRequest("bad bulk data path")
    if tag_path == "7fe00010":
        retriever: Retriever = request.app.state.retriever
        upstream = check_series(request, study_uid, series_uid)
        # Key images (DB.VI-SO.196): a virtual series' pixels are those of the real one.
        real_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
        upstream = check_series(request, study_uid, real_uid)  # DB.VI-CO.197 (Consumer)
        first = await retriever.frame(upstream, study_uid, real_uid, sop_uid, 1)
        retrieval = retriever.find(upstream.origin, study_uid, real_uid)
        facts = retrieval.delivered.get(sop_uid) if retrieval else None
        count = facts.n_frames if facts else 1
        del first
        return await _frames_response(
            request, study_uid, series_uid, sop_uid, list(range(1, count + 1))
        )
    upstream = check_series(request, study_uid, series_uid)
    series_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulk/{tag_path}"
    content_type, body = await upstream.get_bytes(
        path, request.headers.get("accept", "*/*") or "*/*"
    )
    return Response(body, media_type=content_type, headers={"Cache-Control": "private"})


async def thumbnail(request: Request) -> Response:
    """A small rendered JPEG from the PACS (DB.VI-CS.16); series form uses its middle image."""
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    upstream = check_series(request, study_uid, series_uid)
    # Key images (DB.VI-SO.196): a virtual series shows its middle key image.
    kin_series = (await _key_images(request, upstream, study_uid)).virtual(series_uid)
    if kin_series is not None and "sop_uid" not in request.path_params:
        sop_uid = kin_series.images[len(kin_series.images) // 2].sop_uid
        series_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
    elif "sop_uid" in request.path_params:
        sop_uid = _uid(request, "sop_uid")
        series_uid = await _real_series(request, upstream, study_uid, series_uid, sop_uid)
    else:
        rows = await upstream.search(f"/studies/{study_uid}/series/{series_uid}/instances")
        if not rows:
            raise NotFound("empty series")
        rows.sort(key=lambda r: (r.get("00200013", {}).get("Value") or [0])[0] or 0)
        sop_uid = (rows[len(rows) // 2].get("00080018", {}).get("Value") or [""])[0]
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered"
    content_type, body = await upstream.get_bytes(path + "?viewport=128,128", "image/jpeg")
    return Response(
        body, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"}
    )


# -- key images (issue 6: DB.VI-SO.170, .171, .196) ---------------------------------------
# A KIN's key images as a virtual series (bff/dicomweb/key_images.py). Everything here
# runs after check_study / check_series: a virtual series only ever maps to series of the
# granted study, asked of the PACS under that study's path.


async def _key_images(
    request: Request, upstream: DicomwebUpstream, study_uid: str, series_uid: str | None = None
) -> key_images.KeyImages:
    """The study's key images; with ``series_uid``, only worth reading if that series may
    be a virtual one (the Consumer then never waits for its KINs to serve other series)."""
    remote = remote_study(request, study_uid)
    if remote is not None:
        # DB.VI-CO.197: the KINs of the KOS, read from the Source (bff/consumer/dicomweb.py).
        if series_uid is not None and series_uid not in consumer.ko_series(remote):
            return key_images.EMPTY
        retriever: Retriever = request.app.state.retriever
        timeout = request.app.state.settings.frame_wait_timeout
        return await consumer.key_image_index(retriever, remote, timeout=timeout)
    return await key_images.index_of(request.app.state).get(upstream, study_uid)


def _key_image_rows(
    request: Request, study_uid: str, index: key_images.KeyImages
) -> list[dict[str, Any]]:
    """QIDO rows of the virtual series, unless the search asks for other series."""
    query = _query(request)
    asked = set(query.get("SeriesInstanceUID", "").replace("\\", ",").split(",")) - {""}
    rows = [key_images.virtual_series_row(study_uid, s, index) for s in index.series]
    return [r for r in rows if not asked or _first(r, "0020000E") in asked]


async def _real_series(
    request: Request, upstream: DicomwebUpstream, study_uid: str, series_uid: str, sop_uid: str
) -> str:
    """The series really holding ``sop_uid``: ``series_uid`` itself, or for a virtual
    key-image series the series its KIN names (404 for an instance it does not select)."""
    index = await _key_images(request, upstream, study_uid, series_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is None:
        return series_uid
    real_uid = kin_series.real_series_of(sop_uid)
    if real_uid is None:
        raise NotFound(f"{sop_uid} is not a key image of {series_uid}")
    return real_uid


async def _as_virtual(
    request: Request, upstream: DicomwebUpstream, study_uid: str, series_uid: str, rows: list[Any]
) -> list[Any]:
    """Rows read in a real series, moved into the virtual series asked for (if it is one)."""
    index = await _key_images(request, upstream, study_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is not None:
        for row in rows:
            key_images.as_virtual(row, kin_series, index)
    return rows


async def _virtual_metadata(
    request: Request, upstream: DicomwebUpstream, study_uid: str, series_uid: str
) -> Response | None:
    """The metadata of a virtual key-image series, or None for any other series."""
    index = await _key_images(request, upstream, study_uid, series_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is None:
        return None
    remote = remote_study(request, study_uid)
    if remote is not None:
        return await _remote_virtual_metadata(request, remote, study_uid, kin_series, index)
    retriever: Retriever = request.app.state.retriever
    for real_uid in dict.fromkeys(image.series_uid for image in kin_series.images):
        retriever.ensure(upstream, study_uid, real_uid)  # the frames stream as usual

    async def rewrite(rows: list[Any]) -> list[Any]:
        return await _rewrite(request, upstream, study_uid, rows)

    rows = await key_images.virtual_metadata(upstream, study_uid, kin_series, index, rewrite)
    if not rows:
        raise NotFound("no key image found")
    return _json(rows)


async def _remote_virtual_metadata(
    request: Request,
    remote: Any,
    study_uid: str,
    kin_series: key_images.KeyImageSeries,
    index: key_images.KeyImages,
) -> Response:
    """DB.VI-CO.197: a Source offers no instance metadata; the key images' rows are taken
    from their series' metadata (Source /metadata or the instances received)."""
    retriever: Retriever = request.app.state.retriever
    timeout = request.app.state.settings.frame_wait_timeout
    rows: list[Any] = []
    for real_uid in dict.fromkeys(image.series_uid for image in kin_series.images):
        upstream = check_series(request, study_uid, real_uid)
        retriever.ensure(upstream, study_uid, real_uid)  # the frames stream as usual
        wanted = {i.sop_uid for i in kin_series.images if i.series_uid == real_uid}
        series_rows = await consumer.series_metadata(retriever, remote, real_uid, timeout=timeout)
        kept = [row for row in series_rows if _first(row, "00080018") in wanted]
        rows += await _rewrite(request, upstream, study_uid, kept)
    if not rows:
        raise NotFound("no key image found")
    for row in rows:
        key_images.as_virtual(row, kin_series, index)
    return _json(rows)


async def key_image_list(request: Request) -> Response:
    """The study's key images (SOP Instance UIDs), for the "Image clé" overlay item."""
    study_uid = _uid(request, "study_uid")
    upstream = check_study(request, study_uid)
    index = await _key_images(request, upstream, study_uid)
    series = [
        {"series_uid": s.series_uid, "sop_uids": [i.sop_uid for i in s.images]}
        for s in index.series
    ]
    return JSONResponse(
        {"sop_uids": sorted(index.sop_uids), "series": series},
        headers={"Cache-Control": "no-store"},
    )


# -- the series chosen first (issue 6: DB.VI-SO.189) ----------------------------------------
# The page around OHIF (ohif-config/drimbox-panel.js) offers, at opening, the study's series;
# the one the user picks is displayed first (OHIF's initialSeriesInstanceUID) and its
# retrieval goes first here (note 2). Same access decision as every facade route: a study
# outside the grant is a 404 and nothing is started.


async def series_priority(request: Request) -> Response:
    """``POST /api/priority/{study}/{series}``: retrieve and transcode this series first."""
    study_uid = _uid(request, "study_uid")
    series_uid = _uid(request, "series_uid")
    upstream = check_series(request, study_uid, series_uid)
    session = request.scope.get("session")
    if session is not None and not request.app.state.sessions.check_csrf(
        session, request.headers.get("x-csrf-token", "")
    ):
        raise BadRequest("csrf token mismatch")
    # A virtual key-image series is shown from its real series: that one goes first.
    index = await _key_images(request, upstream, study_uid, series_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is not None:
        series_uid = kin_series.images[0].series_uid
        upstream = check_series(request, study_uid, series_uid)
    retriever: Retriever = request.app.state.retriever
    retriever.prefer(upstream, study_uid, series_uid)
    return JSONResponse(
        {"series_uid": series_uid}, status_code=202, headers={"Cache-Control": "no-store"}
    )


def dicomweb_routes() -> list[BaseRoute]:
    study = "/dicomweb/studies/{study_uid}"
    series = study + "/series/{series_uid}"
    instance = series + "/instances/{sop_uid}"
    return [
        Route("/dicomweb/studies", search_studies),
        Route(study + "/metadata", study_metadata),
        Route(study + "/series", search_series),
        Route(study + "/key-images", key_image_list),  # issue 6, DB.VI-SO.196
        Route(study + "/instances", search_instances),
        Route(series + "/metadata", series_metadata),
        Route(series + "/instances", search_instances),
        Route(series + "/thumbnail", thumbnail),
        Route(instance + "/metadata", instance_metadata),
        Route(instance + "/thumbnail", thumbnail),
        Route(instance + "/frames/{frames}", frames),
        Route(instance + "/bulk/{tag_path:path}", bulk),
        # issue 6, DB.VI-SO.189: the series the user chose is retrieved first.
        Route("/api/priority/{study_uid}/{series_uid}", series_priority, methods=["POST"]),
    ]
