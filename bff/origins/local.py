"""The Source viewer's origin: the PACS of the location the report link came through
(DB.VI-SO.07, .127). Every upstream path is under the granted study's own path, so the
PACS itself scopes what it answers to that study.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bff.dicomweb import key_images
from bff.dicomweb.key_images import KeyImageIndex
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.series_stream import series_path
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import NotFound
from bff.origins.base import ExportPlan, Row, SeriesProgress, StudyOrigin, first_value

log = logging.getLogger(__name__)

#: The series search OHIF 3.13.2 makes first (seen in its requests, docs/performance.md).
OHIF_SERIES_SEARCH = {"includefield": "00080021,00080031,0008103E,00200011"}
#: Instance metadata asked at once (the key images of a virtual series).
METADATA_CONCURRENCY = 8
SERIES_NUMBER = "00200011"
SERIES_UID = "0020000E"


def _log_search_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("series search ahead of OHIF failed: %r", task.exception())


def _series_order(row: Row) -> tuple[int, str]:
    number = first_value(row, SERIES_NUMBER)
    try:
        return int(float(number)), first_value(row, SERIES_UID)
    except ValueError:
        return 1 << 30, first_value(row, SERIES_UID)


class LocalPacsOrigin(StudyOrigin):
    def __init__(
        self,
        upstream: DicomwebUpstream,
        study_uid: str,
        retriever: Retriever,
        kin_index: KeyImageIndex,
        background: set[asyncio.Task[Any]],
        *,
        institution: str = "",
        kos_series: Sequence[str] = (),
        max_part_bytes: int,
    ) -> None:
        super().__init__(
            study_uid, retriever, institution=institution, max_part_bytes=max_part_bytes
        )
        self.upstream = upstream
        self._kos_series = tuple(kos_series)
        #: KO series of the study seen in the PACS's answers (the DRIM-M manifest, KINs):
        #: part of the exam, exported with it, never a source of frames.
        self._ko_series: set[str] = set()
        self._kin_index = kin_index
        self._background = background

    def _granted(self, series_uid: str) -> bool:
        return (
            not self._kos_series or series_uid in self._kos_series or series_uid in self._ko_series
        )

    def upstream_for(self, series_uid: str) -> DicomwebUpstream:
        """The PACS, for a series the KOS references: a request for any other series of
        the study starts nothing upstream (404, issue 13; spec Note 2)."""
        if not self._granted(series_uid):
            raise NotFound(f"series {series_uid} is not referenced by the KOS")
        return self.upstream

    def _path(self, series_uid: str | None = None, sop_uid: str | None = None) -> str:
        if series_uid is None:
            return f"/studies/{self.study_uid}"
        self.upstream_for(series_uid)  # the same refusal on every path
        return series_path(self.study_uid, series_uid, sop_uid)

    def _kept(self, rows: list[Row]) -> list[Row]:
        """Rows of the series the grant covers, and of the study's KO series (which the
        facade turns into key images or leaves out, and the export includes)."""
        self._ko_series |= {
            first_value(r, SERIES_UID) for r in rows if first_value(r, "00080060") == "KO"
        }
        return [r for r in rows if self._granted(first_value(r, SERIES_UID))]

    # -- searches --------------------------------------------------------------------------

    async def study_rows(self, query: Mapping[str, str]) -> list[Row]:
        rows: list[Row] = await self.upstream.search(
            "/studies", {**query, "StudyInstanceUID": self.study_uid}
        )
        return [r for r in rows if first_value(r, "0020000D") == self.study_uid]

    async def series_rows(self, query: Mapping[str, str]) -> list[Row]:
        rows: list[Row] = await self.upstream.search(self._path() + "/series", query)
        return self._kept(rows)

    async def instance_rows(self, series_uid: str | None, query: Mapping[str, str]) -> list[Row]:
        rows: list[Row] = await self.upstream.search(self._path(series_uid) + "/instances", query)
        return self._kept(rows)

    async def key_images(self, series_uid: str | None = None) -> key_images.KeyImages:
        return await self._kin_index.get(self.upstream, self.study_uid)

    # -- metadata, bulk data, thumbnails ------------------------------------------------------

    def raw_series_metadata(self, series_uid: str) -> asyncio.Future[bytes]:
        self.upstream_for(series_uid)
        return asyncio.ensure_future(
            self.retriever.series_metadata_bytes(self.upstream, self.study_uid, series_uid)
        )

    async def instance_metadata_rows(self, series_uid: str, sop_uids: Sequence[str]) -> list[Row]:
        """Each instance's metadata, asked under this study's and series' path (an
        instance the PACS does not find there is left out)."""
        limit = asyncio.Semaphore(METADATA_CONCURRENCY)

        async def one(sop_uid: str) -> list[Row]:
            async with limit:
                try:
                    rows: list[Row] = await self.upstream.get_json(
                        self._path(series_uid, sop_uid) + "/metadata"
                    )
                except NotFound:
                    log.warning("instance %s not found in its series", sop_uid)
                    return []
            return [r for r in rows if first_value(r, "00080018") == sop_uid][:1]

        answers = await asyncio.gather(*(one(sop_uid) for sop_uid in sop_uids))
        return [row for answer in answers for row in answer]

    async def study_metadata_rows(self) -> list[Row]:
        rows: list[Row] = await self.upstream.get_json(self._path() + "/metadata")
        return self._kept(rows)

    async def bulk(
        self, series_uid: str, sop_uid: str, tag_path: str, accept: str
    ) -> tuple[str, bytes]:
        path = self._path(series_uid, sop_uid) + f"/bulk/{tag_path}"
        return await self.upstream.get_bytes(path, accept or "*/*")

    async def thumbnail(self, series_uid: str, sop_uid: str | None) -> tuple[str, bytes]:
        if sop_uid is None:  # the series' middle image
            rows = await self.upstream.search(self._path(series_uid) + "/instances")
            if not rows:
                raise NotFound("empty series")
            rows.sort(key=lambda r: (r.get("00200013", {}).get("Value") or [0])[0] or 0)
            sop_uid = first_value(rows[len(rows) // 2], "00080018")
        path = self._path(series_uid, sop_uid) + "/rendered?viewport=128,128"
        return await self.upstream.get_bytes(path, "image/jpeg")

    # -- the grant, progress, export -------------------------------------------------------------

    def ask_ahead(self) -> None:
        """While the user signs in: the series metadata of the KOS's series only (never
        served before the grant, no retrieval; bff/dicomweb/metadata_ahead.py)."""
        for series_uid in self._kos_series:
            self.retriever.warm_metadata(self.upstream, self.study_uid, series_uid)

    def start_at_grant(self, root: str, series_uid: str | None = None) -> None:
        """Start pulling and transcoding the exam, and fetching its series metadata, now,
        while the browser loads OHIF (about 3 s on a 2-core client): by OHIF's first
        requests, metadata and images are already waiting. The metadata answer is
        prepared as OHIF will ask for it (``root``: the viewer follows the grant's
        redirect on the location's host; institution from the KOS). A report link opens
        a study: ``series_uid`` is not used."""
        for kos_series_uid in self._kos_series:
            context = self.context(root, kos_series_uid)
            self.retriever.prefetch_metadata(
                self.upstream, self.answer_key(kos_series_uid, context), context
            )
        self._kin_index.warm(self.upstream, self.study_uid)
        # OHIF's series search, asked now and shared when OHIF asks it (DicomwebUpstream
        # .search): its metadata request, hence its first image, waits for it. Another
        # query shape (another OHIF version) only misses.
        search = asyncio.create_task(
            self.upstream.search(self._path() + "/series", OHIF_SERIES_SEARCH)
        )
        self._background.add(search)
        search.add_done_callback(self._background.discard)
        search.add_done_callback(_log_search_failure)

    def progress(self) -> list[SeriesProgress]:
        return [
            SeriesProgress(r.key.series_uid, r, None)
            for r in self.retriever.for_study(self.upstream.origin, self.study_uid)
        ]

    async def export_plan(self) -> ExportPlan:
        """The study row and ALL its series from the PACS (the DRIM-M KOS series included,
        unlike the viewer's series list), in series-number order."""
        studies = await self.upstream.get_json("/studies", {"StudyInstanceUID": self.study_uid})
        if not studies:
            raise NotFound("study not in the PACS")
        rows = self._kept(await self.upstream.get_json(self._path() + "/series"))
        series_uids = tuple(
            uid
            for uid in (first_value(r, SERIES_UID) for r in sorted(rows, key=_series_order))
            if uid
        )
        if not series_uids:
            raise NotFound("study without series")
        return ExportPlan(studies[0], series_uids)
