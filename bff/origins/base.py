"""Where the DICOMweb answers of one granted study come from: the :class:`StudyOrigin`.

The facade (:mod:`bff.facade.routes`) never asks "is this study local or remote?": the
access decision (:mod:`bff.access.decide`) resolves, once per request, the one origin
that answers for the study, and the route only calls it (STYLE.md, "Variation behind an
interface"). Two implementations:

- :class:`~bff.origins.local.LocalPacsOrigin`: the PACS of the location the report link
  came through (the Source viewer, DB.VI-SO.07, .127);
- :class:`~bff.origins.remote.RemoteSourceOrigin`: the DRIMbox Source(s) a KOS from the
  DMP points to (the Consumer viewer: ANS whitelist, mutual TLS, the user's PSC token,
  ``KOS-SOPInstanceUID``; DB.VI-CO.27). It never reads a local PACS.

What is common (frames through the out-of-order cache, the metadata rewrite, the series
chosen first, the series pulled only when the user displays them, progress, the series
stream for the export) is written once here, over :meth:`StudyOrigin.upstream_for`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from bff.dicomweb import key_images
from bff.dicomweb.cache import CachedFrame
from bff.dicomweb.metadata_ahead import AnswerKey
from bff.dicomweb.multipart import Part
from bff.dicomweb.prepared import PreparedFrame
from bff.dicomweb.retrieve import Retriever, SeriesRetrieval
from bff.dicomweb.series_metadata import (
    PreparedMetadata,
    RewriteContext,
    SeriesFacts,
    rewrite_off_loop,
)
from bff.dicomweb.series_stream import series_parts, series_path
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import NotFound, UpstreamProtocolError, ViewerError

Row = dict[str, Any]
SERIES_UID = "0020000E"


def first_value(row: Mapping[str, Any], tag: str) -> str:
    return str((row.get(tag, {}).get("Value") or [""])[0])


@dataclass(frozen=True)
class ExportPlan:
    """What a study download needs up front: the study row (for the file name) and the
    series to stream, in order; ``extra``: Part-10 files added as they are (the KOS the
    Consumer opened, which no Source streams)."""

    study_row: Row
    series_uids: tuple[str, ...]
    extra: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class SeriesProgress:
    series_uid: str
    retrieval: SeriesRetrieval | None
    total: int | None
    #: why the series cannot come at all (a refused Source), shown as its error
    error: ViewerError | None = None
    #: not pulled until the user displays it (a series-level opening, DB.VI-CS.05)
    on_demand: bool = False


class StudyOrigin(ABC):
    """The source of every answer about one study, for one request."""

    #: DB.VI-CO.42: whether the viewer offers to export this study to the practice's
    #: PACS (the Consumer's studies opened from a KOS; not the Source viewer's).
    exports_to_pacs: bool = False

    def __init__(
        self,
        study_uid: str,
        retriever: Retriever,
        *,
        institution: str = "",
        patient_id: str = "",
        patient_issuer: str = "",
        max_part_bytes: int,
    ) -> None:
        self.study_uid = study_uid
        self.retriever = retriever
        #: Institution Name from the KOS (DB.VI-CS.29, Tableau 3); '' keeps the images'.
        self.institution = institution
        #: The practice's local patient id and its issuer, in place of the images'
        #: PatientID (Consumer, DB.VI-CS.32); '' keeps the images'.
        self.patient_id = patient_id
        self.patient_issuer = patient_issuer
        self._max_part_bytes = max_part_bytes
        #: Why nothing of this study may be fetched (a refused remote Source), or None.
        self.refusal: ViewerError | None = None
        #: Series pulled only once the user displays one (a series-level opening,
        #: DB.VI-CS.05), each with the instances asked of it so far.
        self._on_demand: dict[str, set[str]] = {}

    # -- what differs ------------------------------------------------------------------

    @abstractmethod
    def upstream_for(self, series_uid: str) -> DicomwebUpstream:
        """The upstream of one series (404 for a series the study does not have)."""

    @abstractmethod
    async def study_rows(self, query: Mapping[str, str]) -> list[Row]:
        """QIDO-RS study rows of this study that match ``query`` (0 or 1 row)."""

    @abstractmethod
    async def series_rows(self, query: Mapping[str, str]) -> list[Row]:
        """QIDO-RS rows of the study's series, the DRIM-M manifest (KO) included."""

    @abstractmethod
    async def instance_rows(self, series_uid: str | None, query: Mapping[str, str]) -> list[Row]:
        """QIDO-RS instance rows of the study (or of one of its series)."""

    @abstractmethod
    async def key_images(self, series_uid: str | None = None) -> key_images.KeyImages:
        """The study's key images (DB.VI-SO.196, DB.VI-CO.197); with ``series_uid``,
        EMPTY unless that series may be a virtual one (saves a wait)."""

    @abstractmethod
    def raw_series_metadata(self, series_uid: str) -> asyncio.Future[bytes]:
        """The upstream's series metadata, JSON bytes (shared with what was asked ahead)."""

    @abstractmethod
    async def instance_metadata_rows(self, series_uid: str, sop_uids: Sequence[str]) -> list[Row]:
        """Upstream metadata rows of these instances of one series (not rewritten)."""

    @abstractmethod
    async def study_metadata_rows(self) -> list[Row]:
        """Upstream metadata rows of the whole study (not rewritten)."""

    @abstractmethod
    async def bulk(
        self, series_uid: str, sop_uid: str, tag_path: str, accept: str
    ) -> tuple[str, bytes]:
        """A bulk data value other than the pixel data: (content type, bytes)."""

    @abstractmethod
    async def thumbnail(self, series_uid: str, sop_uid: str | None) -> tuple[str, bytes]:
        """A small rendered JPEG (DB.VI-CS.16): of the instance, or the series' middle one."""

    @abstractmethod
    def start_at_grant(self, root: str, series_uid: str | None = None) -> None:
        """Start what the viewer will ask first (metadata, images), while OHIF boots
        (``series_uid``: a series-level opening, DB.VI-CS.05)."""

    @abstractmethod
    async def export_plan(self) -> ExportPlan:
        """What the study download streams (DB.VI-SO.176)."""

    @abstractmethod
    def progress(self) -> list[SeriesProgress]:
        """Each series of the study and its retrieval so far (DB.VI-CS.18)."""

    # -- written once ------------------------------------------------------------------

    def context(self, root: str, series_uid: str) -> RewriteContext:
        """How metadata of ``series_uid`` is rewritten for a viewer at DICOMweb ``root``."""
        upstream = self.upstream_for(series_uid)
        return RewriteContext(
            root=root,
            study_uid=self.study_uid,
            upstream_base=upstream.base_url,
            serve=upstream.serve,
            codec=self.retriever.params.codec,
            institution=self.institution,
            patient_id=self.patient_id,
            patient_issuer=self.patient_issuer,
        )

    def answer_scope(self, series_uid: str) -> str:
        """What, beyond the study, series and rewrite context, the series metadata answer
        depends on: sessions with the same scope share one built answer (issue 16). The
        Source answers a granted series whole: nothing more."""
        return ""

    def answer_key(self, series_uid: str, context: RewriteContext) -> AnswerKey:
        """The key of this series' OHIF answer in the retriever's shared answers."""
        origin = self.upstream_for(series_uid).origin
        return ((origin, self.study_uid, series_uid), self.answer_scope(series_uid), context.key)

    def pull_on_demand(self, series_uids: Iterable[str]) -> None:
        """A series-level opening (DB.VI-CS.05): these series, the exam's others, are
        listed, their metadata read, but their images are pulled only when the user
        displays one (:meth:`frames`). An empty list: every series is pulled as usual."""
        self._on_demand = {uid: set() for uid in series_uids}

    def waits_for_user(self, series_uid: str) -> bool:
        """Whether this series is pulled only once the user displays it."""
        return series_uid in self._on_demand

    def _alone(self, series_uid: str, sop_uid: str) -> bool:
        """Whether this instance of a series waiting for the user comes alone: the first
        one asked is its thumbnail's (DB.VI-CS.16: OHIF draws one image per series);
        another one means the user displays the series, which is then pulled whole."""
        asked = self._on_demand.get(series_uid)
        if asked is None:
            return False
        asked.add(sop_uid)
        if len(asked) == 1:
            return True
        del self._on_demand[series_uid]
        return False

    def start_series(self, series_uid: str) -> None:
        """Start retrieving a series now (once), as its first frame request would; a
        series waiting for the user is only registered."""
        self.retrieval(series_uid, start=not self.waits_for_user(series_uid))

    def retrieval(self, series_uid: str, *, start: bool = True) -> SeriesRetrieval:
        return self.retriever.ensure(
            self.upstream_for(series_uid), self.study_uid, series_uid, start=start
        )

    async def series_metadata(self, root: str, series_uid: str) -> PreparedMetadata:
        """OHIF's series metadata answer; also the first need for the series, whose
        retrieval starts now. Prepared ahead (at grant time on the Source, at the
        opening on the Consumer) when it was built for this root, else built now the
        same way, in a pool worker. (A series waiting for the user is not pulled for
        its metadata: DB.VI-CS.05.)"""
        retrieval = self.retrieval(series_uid, start=not self.waits_for_user(series_uid))
        context = self.context(root, series_uid)
        key = self.answer_key(series_uid, context)
        prepared = await self.retriever.answers.answer(key)
        if prepared is None:
            task = self.retriever.answer(
                key, retrieval, lambda: self.raw_series_metadata(series_uid), context
            )
            try:
                prepared = await asyncio.shield(task)  # shared: a viewer leaving keeps it
            except ValueError as exc:  # not JSON, not an array
                raise UpstreamProtocolError(f"series {series_uid} metadata: {exc}") from exc
        if not prepared.rows:
            raise NotFound("empty series")
        return prepared

    async def rewrite(self, root: str, rows: list[Row]) -> list[Row]:
        """Rewrite metadata rows for what the BFF serves (BulkDataURIs to ``root``, the
        served syntax, the KOS's institution, the practice's patient id), series by series."""
        by_series: dict[str, list[Row]] = {}
        for row in rows:
            by_series.setdefault(first_value(row, SERIES_UID), []).append(row)
        for series_uid, series_rows in by_series.items():
            facts: dict[str, SeriesFacts] = {}
            found = self.retriever.find(
                self.upstream_for(series_uid).origin, self.study_uid, series_uid
            )
            if found is not None:
                facts[series_uid] = found.facts_snapshot()
            await rewrite_off_loop(series_rows, self.context(root, series_uid), facts)
        return rows

    async def frames(
        self, series_uid: str, sop_uid: str, numbers: Sequence[int]
    ) -> list[CachedFrame]:
        """Served frames, from the out-of-order cache fed by the series retrieval (for a
        series waiting for the user, its thumbnail's instance alone: :meth:`_alone`)."""
        upstream = self.upstream_for(series_uid)
        alone = self._alone(series_uid, sop_uid)
        return list(
            await asyncio.gather(
                *(
                    self.retriever.frame(
                        upstream, self.study_uid, series_uid, sop_uid, n, alone=alone
                    )
                    for n in numbers
                )
            )
        )

    def prepared_frame(self, series_uid: str, sop_uid: str, number: int) -> PreparedFrame | None:
        """The whole answer of a frame prepared at publication (issue 16), or None."""
        return self.retriever.prepared_frame(
            self.upstream_for(series_uid), self.study_uid, series_uid, sop_uid, number
        )

    async def frame_count(self, series_uid: str, sop_uid: str) -> int:
        """How many frames an instance has (known once its first frame is served)."""
        upstream = self.upstream_for(series_uid)
        prepared = self.retriever.prepared_frame_count(
            upstream, self.study_uid, series_uid, sop_uid
        )
        if prepared is not None:  # prepared at publication (issue 16): nothing to wait for
            return prepared
        await self.retriever.frame(upstream, self.study_uid, series_uid, sop_uid, 1)
        found = self.retriever.find(upstream.origin, self.study_uid, series_uid)
        facts = found.delivered.get(sop_uid) if found else None
        return facts.n_frames if facts else 1

    def prefer(self, series_uid: str) -> None:
        """DB.VI-SO.189: the user chose this series to see first; it is retrieved first."""
        self._on_demand.pop(series_uid, None)
        self.retriever.prefer(self.upstream_for(series_uid), self.study_uid, series_uid)

    def stream_series(self, series_uid: str) -> AbstractAsyncContextManager[AsyncIterator[Part]]:
        """The series' instances as stored (lossless), one upstream stream (the export)."""
        return series_parts(
            self.upstream_for(series_uid),
            series_path(self.study_uid, series_uid),
            max_part_bytes=self._max_part_bytes,
        )
