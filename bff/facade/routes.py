"""The DICOMweb facade OHIF talks to (``/dicomweb``), with ``imageRendering: 'wadors'``.

Every route resolves, through the one access decision (:func:`bff.access.decide.
origin_for`), the origin that answers for the requested study, before anything is
fetched: outside the grant it is a study that does not exist (404); a study opened from a
KOS is answered by its remote Source only, on every route (issue 12). The route then only
calls that origin (:class:`bff.origins.base.StudyOrigin`): QIDO-RS and metadata rewritten
for what the BFF serves; frames from the out-of-order cache fed by one series-level
retrieval (DB.VI-CS.17); key images as a virtual series (:mod:`bff.facade.virtual`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bff.dicomweb.multipart import closing_delimiter, encode_part, new_boundary
from bff.dicomweb.series_metadata import PreparedMetadata
from bff.errors import BadRequest, NotAcceptable, NotFound
from bff.facade import virtual
from bff.origins.base import StudyOrigin, first_value
from bff.services import location_of, services_of, signed_in_session, study_origin, uid_param

log = logging.getLogger(__name__)

FRAMES = re.compile(r"^[1-9][0-9]{0,5}(,[1-9][0-9]{0,5}){0,255}$")
TAG_PATH = re.compile(r"[0-9a-f]{8}(/[0-9]{1,4}/[0-9a-f]{8}){0,8}")
DICOM_JSON = "application/dicom+json"
STUDY_UID_TAG = "0020000D"
MODALITY = "00080060"
MODALITIES_IN_STUDY = "00080061"
PIXEL_DATA = "7fe00010"
#: Every answer carrying patient data (metadata, searches, frames, thumbnails, bulk data,
#: API answers): never in a browser's cache, so the next user of a shared computer finds
#: nothing of it on disk (issue 13). OHIF needs no HTTP cache: cornerstone keeps what it
#: loaded in memory, and a frame asked again is answered from the BFF's frame cache.
NO_STORE = "no-store"
UID_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def dicomweb_root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _json(payload: Any) -> Response:
    return JSONResponse(payload, media_type=DICOM_JSON, headers={"Cache-Control": NO_STORE})


#: QIDO attributes naming upstream URLs (Retrieve URL): never passed to the browser (a
#: PACS address such as http://127.0.0.1:8042/... is nobody's business; issue 13). OHIF
#: builds its WADO-RS URLs from its own configured root.
UPSTREAM_URL_TAGS = ("00081190",)


def _search_answer(rows: list[Any]) -> Response:
    for row in rows:
        for tag in UPSTREAM_URL_TAGS:
            row.pop(tag, None)
    return _json(rows)


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.multi_items()}


def _listed(value: str) -> list[str]:
    return [v for v in value.replace("\\", ",").split(",") if v]


# -- QIDO-RS -----------------------------------------------------------------------------


async def search_studies(request: Request) -> Response:
    """Study search, OHIF's patient-history query by PatientID included: only granted
    studies are ever asked about (one query each, the caller's other filters kept), so a
    search cannot enumerate anything else."""
    services = services_of(request)
    session = signed_in_session(request)
    grant = session.grant if session is not None else None
    location = location_of(request)
    query = _query(request)
    asked = _listed(query.pop("StudyInstanceUID", ""))
    if grant is None:
        if not services.open_access:
            return _json([])
        if not asked:  # the facade's own tests: the location's PACS, as it answers
            rows = await services.origins.pacs(location).search("/studies", query)
            return _search_answer(rows)
        wanted = asked
    else:
        wanted = [uid for uid in grant.study_uids(location) if not asked or uid in asked]
    rows = []
    for study_uid in wanted:
        rows += await (await study_origin(request, study_uid)).study_rows(query)
    for row in rows:
        modalities = row.get(MODALITIES_IN_STUDY, {}).get("Value")
        if modalities and "KO" in modalities and len(modalities) > 1:
            row[MODALITIES_IN_STUDY]["Value"] = [m for m in modalities if m != "KO"]
    return _search_answer(rows)


async def search_series(request: Request) -> Response:
    """Series of a study, without the DRIM-M manifest (KO): it is how the exam was
    published, not something to look at, and stock OHIF can only show it as an error.
    Key images (DB.VI-SO.170, DB.VI-CO.197): the KIN series become the virtual series."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    query = _query(request)
    rows = [row for row in await origin.series_rows(query) if first_value(row, MODALITY) != "KO"]
    return _search_answer(rows + await virtual.series_rows(origin, query))


async def search_instances(request: Request) -> Response:
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid") if "series_uid" in request.path_params else None
    return _search_answer(await origin.instance_rows(series_uid, _query(request)))


# -- metadata ----------------------------------------------------------------------------


async def series_metadata(request: Request) -> Response:
    """Series metadata; also the first need for the series: its retrieval starts now."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    # Key images (DB.VI-SO.196): a KIN's virtual series is answered on its own.
    rows = await virtual.series_metadata(origin, dicomweb_root(request), series_uid)
    if rows is not None:
        return _json(rows)
    prepared = await origin.series_metadata(dicomweb_root(request), series_uid)
    return _prepared_response(request, prepared)


def _prepared_response(request: Request, prepared: PreparedMetadata) -> Response:
    headers = {"Cache-Control": NO_STORE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(prepared.gzipped, media_type=DICOM_JSON, headers=headers)
    return Response(prepared.body, media_type=DICOM_JSON, headers=headers)


async def instance_metadata(request: Request) -> Response:
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    sop_uid = uid_param(request, "sop_uid")
    # Key images (DB.VI-SO.196): an instance of a virtual series is read in its real one.
    real_uid = await virtual.real_series(origin, series_uid, sop_uid)
    rows = await origin.instance_metadata_rows(real_uid, [sop_uid])
    if not rows:
        raise NotFound(f"instance {sop_uid} not found")
    rows = await origin.rewrite(dicomweb_root(request), rows)
    return _json(await virtual.as_virtual(origin, series_uid, rows))


async def study_metadata(request: Request) -> Response:
    origin = await study_origin(request, uid_param(request, "study_uid"))
    rows = await origin.study_metadata_rows()
    return _json(await origin.rewrite(dicomweb_root(request), rows))


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
    request: Request, origin: StudyOrigin, series_uid: str, sop_uid: str, numbers: list[int]
) -> Response:
    # Key images (DB.VI-SO.196): a virtual series' frames are those of the real series.
    real_uid = await virtual.real_series(origin, series_uid, sop_uid)
    session = request.scope.get("session")
    # Bounded per session (issue 13). Without a session only the facade's own
    # open-access tests get here: nothing to bound.
    waits = services_of(request).frame_waits
    with waits.slot(session.id) if session is not None else contextlib.nullcontext():
        frames = await origin.frames(real_uid, sop_uid, numbers)
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
    return Response(body, headers={"Content-Type": media_type, "Cache-Control": NO_STORE})


async def frames(request: Request) -> Response:
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    sop_uid = uid_param(request, "sop_uid")
    raw = str(request.path_params["frames"])
    if not FRAMES.match(raw):
        raise BadRequest("bad frame list")
    if raw.isdigit():
        # Issue 16 item 2: a frame prepared at publication is answered as stored, its
        # multipart framing included (bff/dicomweb/prepared.py): one read, no wait.
        try:
            prepared = origin.prepared_frame(series_uid, sop_uid, int(raw))
        except NotFound:  # e.g. a virtual key-image series: the path below knows it
            prepared = None
        if prepared is not None:
            syntax = prepared.transfer_syntax_uid
            if not _accepts_syntax(request.headers.get("accept", ""), syntax):
                raise NotAcceptable(f"client does not accept {syntax}")
            return Response(
                prepared.body,
                headers={"Content-Type": prepared.media_type, "Cache-Control": NO_STORE},
            )
    numbers = [int(n) for n in raw.split(",")]
    return await _frames_response(request, origin, series_uid, sop_uid, numbers)


async def bulk(request: Request) -> Response:
    """Bulk data: pixel data as the BFF serves it; other bulk values from the origin."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    sop_uid = uid_param(request, "sop_uid")
    tag_path = str(request.path_params["tag_path"]).lower()
    if not TAG_PATH.fullmatch(tag_path):
        raise BadRequest("bad bulk data path")
    real_uid = await virtual.real_series(origin, series_uid, sop_uid)
    if tag_path == PIXEL_DATA:
        count = await origin.frame_count(real_uid, sop_uid)
        return await _frames_response(
            request, origin, series_uid, sop_uid, list(range(1, count + 1))
        )
    accept = request.headers.get("accept", "*/*") or "*/*"
    content_type, body = await origin.bulk(real_uid, sop_uid, tag_path, accept)
    return Response(body, media_type=content_type, headers={"Cache-Control": NO_STORE})


async def thumbnail(request: Request) -> Response:
    """A small rendered JPEG (DB.VI-CS.16); series form uses its middle image."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    sop_uid = uid_param(request, "sop_uid") if "sop_uid" in request.path_params else None
    # Key images (DB.VI-SO.196): a virtual series shows its middle key image.
    sop_uid = sop_uid or await virtual.middle_key_image(origin, series_uid)
    if sop_uid is not None:
        series_uid = await virtual.real_series(origin, series_uid, sop_uid)
    content_type, body = await origin.thumbnail(series_uid, sop_uid)
    return Response(body, media_type=content_type, headers={"Cache-Control": NO_STORE})


async def key_image_list(request: Request) -> Response:
    """The study's key images (SOP Instance UIDs), for the "Image clé" overlay item."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    index = await origin.key_images()
    series = [
        {"series_uid": s.series_uid, "sop_uids": [i.sop_uid for i in s.images]}
        for s in index.series
    ]
    return JSONResponse(
        {"sop_uids": sorted(index.sop_uids), "series": series},
        headers={"Cache-Control": NO_STORE},
    )


# -- the series chosen first (issue 6: DB.VI-SO.189) ----------------------------------------
# The page around OHIF (ohif-config/panel/) offers, at opening, the study's series;
# the one the user picks is displayed first (OHIF's initialSeriesInstanceUID) and its
# retrieval goes first here (note 2). Same access decision as every facade route: a study
# outside the grant is a 404 and nothing is started.


async def series_priority(request: Request) -> Response:
    """``POST /api/priority/{study}/{series}``: retrieve and transcode this series first."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    series_uid = uid_param(request, "series_uid")
    session = request.scope.get("session")
    if session is not None and not services_of(request).sessions.check_csrf(
        session, request.headers.get("x-csrf-token", "")
    ):
        raise BadRequest("csrf token mismatch")
    # A virtual key-image series is shown from its real series: that one goes first.
    series_uid = await virtual.first_real_series(origin, series_uid)
    origin.prefer(series_uid)
    return JSONResponse(
        {"series_uid": series_uid}, status_code=202, headers={"Cache-Control": NO_STORE}
    )


async def prefetch(request: Request) -> Response:
    """``POST /api/prefetch/{study}[?series=]``: the replica that granted the study (the
    login callback, the Consumer's opening) asks this one, the study's owner behind the
    balancer, to start its retrieval now (bff/web/owner.py; DB.VI-CS.17: one retrieval per
    series, on the replica that serves its frames). Decided like every image route, with
    the session just made and its CSRF token; the balancer's public side never routes it."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    session = signed_in_session(request)
    if session is None or not services_of(request).sessions.check_csrf(
        session, request.headers.get("x-csrf-token", "")
    ):
        raise BadRequest("csrf token mismatch")
    series_uid = request.query_params.get("series") or None
    if series_uid is not None and (len(series_uid) > 64 or not UID_TEXT.match(series_uid)):
        raise BadRequest("bad series")
    origin.start_at_grant(dicomweb_root(request), series_uid)
    return Response(status_code=204, headers={"Cache-Control": NO_STORE})


FRAMES_PATH = (
    "/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}"
)


def frames_route() -> BaseRoute:
    """The frames route, which the application lists first (issue 16 item 2, the lean
    path): a viewer asks for every frame on its own, so the router, which tries its routes
    in order (a regular expression each), would otherwise try some forty routes before
    this one on each of them (12 % of the BFF's CPU per prepared frame in
    ``python -m bench.frame_cpu``'s profile). No other route matches its paths."""
    return Route(FRAMES_PATH, frames)


def dicomweb_routes() -> list[BaseRoute]:
    """The DICOMweb facade's other routes (the frames: :func:`frames_route`)."""
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
        Route(instance + "/bulk/{tag_path:path}", bulk),
        # issue 6, DB.VI-SO.189: the series the user chose is retrieved first.
        Route("/api/priority/{study_uid}/{series_uid}", series_priority, methods=["POST"]),
        Route("/api/prefetch/{study_uid}", prefetch, methods=["POST"]),
    ]
