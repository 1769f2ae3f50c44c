"""Transcode once, at publication (issue 16 item 1).

When a KOS is published (``drimbox-viewer kos add``, the admin API), the BFF prepares the
served form of every instance of the series it references, in the background, into the
prepared store (:mod:`bff.dicomweb.prepared`): one series-level WADO-RS stream from the
location's PACS, each instance transcoded exactly as an opening would (the same pool, the
same encoding settings) but in the pool's background lane, which hands work to the
workers only while no opening waits (:class:`bff.transcode.TranscodePool`). An opening of
a prepared study then streams nothing and transcodes nothing
(:meth:`bff.dicomweb.retrieve.SeriesRetrieval._deliver_prepared`).

The :class:`Preparer` looks at the archive, which is the one place publications are
written (the CLI is another process): at start (a restart resumes what is missing: each
instance already in the store is skipped, each complete series too), every
``DRIMBOX_PREPARE_SCAN_INTERVAL`` seconds, and at once when the admin API publishes or
unpublishes. One KOS at a time. Progress is written to the archive (``kos_preparation``:
``kos list`` shows "prepared N/M") and counted here (:attr:`Preparer.stats`).

A KOS published again (a new ``updated_at``) is prepared anew from the PACS (its
instances re-sent under the same UIDs are replaced). A KOS unpublished stops its
preparation and drops its series from the store, unless another published KOS references
them. docs/transcoding.md states the staleness rule and its safety argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bff.archive.store import ArchivedKos, ArchiveStore, Preparation
from bff.dicomweb.prepared import PreparedStore, StoreFull, form_of
from bff.dicomweb.retrieve import peek_header
from bff.dicomweb.series_stream import series_parts, series_path
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ViewerError
from bff.transcode import EncodeParams, TranscodedInstance, TranscodePool
from bff.transcode.errors import TranscodeError

log = logging.getLogger(__name__)

#: How many instances between two progress writes to the archive.
PROGRESS_EVERY = 25
#: KOS looked at per scan (the archive's listing bound).
MAX_KOS_PER_SCAN = 100_000


class Stopped(Exception):
    """The KOS being prepared was unpublished (or published again) meanwhile."""


def _facts(instance: TranscodedInstance) -> dict[str, Any]:
    facts = dataclasses.asdict(instance)
    facts["n_frames"] = len(facts.pop("frames"))
    return facts


def _now() -> datetime:
    return datetime.now(UTC)


class Preparer:
    """Prepares published KOS, one at a time, below interactive openings."""

    def __init__(
        self,
        archive: ArchiveStore,
        locations: Mapping[str, DicomwebUpstream],
        store: PreparedStore,
        pool: TranscodePool,
        params: EncodeParams,
        *,
        max_part_bytes: int,
        scan_interval: float,
    ) -> None:
        self._archive = archive
        self._locations = locations
        self._store = store
        self._pool = pool
        self._params = params
        self._max_part_bytes = max_part_bytes
        self._scan_interval = scan_interval
        self._wake = asyncio.Event()
        #: KOS whose state changed here (admin API): re-read before the next instance
        self._changed: set[str] = set()
        #: counters for logs, tests and metrics
        self.stats = {"instances_prepared": 0, "instances_skipped": 0, "scans": 0, "dropped": 0}
        #: set after every scan (tests wait on it)
        self.scanned = asyncio.Event()

    # -- driving ----------------------------------------------------------------------------

    def changed(self, kos_sop_uid: str) -> None:
        """A KOS was published or unpublished in this process: look at once."""
        self._changed.add(kos_sop_uid)
        self._wake.set()

    async def run(self) -> None:
        """Scan, then wait for a change or the interval; until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.scan()
            except Exception:  # a database or disk failure: try again at the next scan
                log.exception("preparation scan failed")
            self.scanned.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._scan_interval):
                    await self._wake.wait()

    async def scan(self) -> None:
        """Drop what unpublished KOS alone referenced; prepare what is missing."""
        self.stats["scans"] += 1
        entries = await asyncio.to_thread(self._archive.list, limit=MAX_KOS_PER_SCAN)
        preparations = await asyncio.to_thread(self._archive.preparations)
        published = [e for e in entries if e.state == "published"]
        kept = {key for e in published for key in self._series_keys(e)}
        for entry in entries:
            if entry.state != "published" and entry.record.sop_uid in preparations:
                self._drop(entry, kept)
                await asyncio.to_thread(self._archive.drop_preparation, entry.record.sop_uid)
        for entry in published:
            done = preparations.get(entry.record.sop_uid)
            if done is not None and done.publication != self._publication(entry):
                # Published again: what the PACS holds now is prepared anew (instances
                # re-sent under the same UIDs are not kept from the earlier publication).
                self._drop(entry, set())
            elif done is not None and done.state != "preparing":
                continue  # done for this publication ("preparing": a restart resumes it)
            await self.prepare(entry)

    # -- one KOS ----------------------------------------------------------------------------

    @staticmethod
    def _publication(entry: ArchivedKos) -> str:
        return entry.updated_at.isoformat()

    def _upstream(self, entry: ArchivedKos) -> DicomwebUpstream | None:
        return self._locations.get(entry.location)

    def _form(self, upstream: DicomwebUpstream) -> str:
        return form_of(dataclasses.replace(self._params, serve=upstream.serve))

    def _series_keys(self, entry: ArchivedKos) -> set[tuple[str, str, str, str]]:
        upstream = self._upstream(entry)
        if upstream is None:
            return set()
        form = self._form(upstream)
        return {
            (form, upstream.origin, entry.record.study_uid, s.series_uid)
            for s in entry.record.series
        }

    def _drop(self, entry: ArchivedKos, kept: set[tuple[str, str, str, str]]) -> None:
        for key in self._series_keys(entry) - kept:
            freed = self._store.drop_series(*key)
            self.stats["dropped"] += 1
            log.info("prepared series %s dropped (KOS unpublished): %d bytes", key[3], freed)

    def _referenced(self, entry: ArchivedKos) -> set[tuple[str, str]]:
        return {(s.series_uid, sop_uid) for s in entry.record.series for _, sop_uid in s.instances}

    def _prepared_count(self, entry: ArchivedKos, form: str, origin: str) -> int:
        study_uid = entry.record.study_uid
        return sum(
            self._store.has_instance(form, origin, study_uid, series_uid, sop_uid)
            for series_uid, sop_uid in self._referenced(entry)
        )

    async def _record(
        self, entry: ArchivedKos, state: str, prepared: int, detail: str = ""
    ) -> None:
        preparation = Preparation(
            kos_sop_uid=entry.record.sop_uid,
            publication=self._publication(entry),
            state=state,
            prepared=prepared,
            total=len(self._referenced(entry)),
            nbytes=self._store.nbytes,
            detail=detail,
            updated_at=_now(),
        )
        await asyncio.to_thread(self._archive.set_preparation, preparation)

    async def _check_still_published(self, entry: ArchivedKos) -> None:
        sop_uid = entry.record.sop_uid
        if sop_uid not in self._changed:
            return
        self._changed.discard(sop_uid)
        now = await asyncio.to_thread(self._archive.get, sop_uid)
        if now is None or now.state != "published" or now.updated_at != entry.updated_at:
            raise Stopped(sop_uid)

    async def prepare(self, entry: ArchivedKos) -> None:
        """Prepare every series of one published KOS (what is in the store is kept)."""
        upstream = self._upstream(entry)
        if upstream is None:
            await self._record(entry, "failed", 0, f"unknown location {entry.location}")
            return
        form = self._form(upstream)
        params = dataclasses.replace(self._params, serve=upstream.serve)
        await self._record(entry, "preparing", self._prepared_count(entry, form, upstream.origin))
        state, detail = "prepared", ""
        try:
            for series in entry.record.series:
                complete = await self._prepare_series(
                    entry, upstream, form, params, series.series_uid
                )
                if not complete:
                    state = "partial"
        except Stopped:
            log.info(
                "preparation of KOS %s stopped: no longer this publication", entry.record.sop_uid
            )
            return
        except StoreFull as exc:
            state, detail = "full", str(exc)
        except ViewerError as exc:
            state, detail = "failed", f"{exc.code}: {exc.detail}"[:500]
        prepared = self._prepared_count(entry, form, upstream.origin)
        await self._record(entry, state, prepared, detail)
        log.info(
            "KOS %s %s: %d/%d instances, store %d bytes",
            entry.record.sop_uid,
            state,
            prepared,
            len(self._referenced(entry)),
            self._store.nbytes,
        )

    async def _prepare_series(
        self,
        entry: ArchivedKos,
        upstream: DicomwebUpstream,
        form: str,
        params: EncodeParams,
        series_uid: str,
    ) -> bool:
        """One series: streamed once, each instance not yet in the store transcoded in
        the background lane and written. True when every instance delivered is prepared."""
        origin, study_uid = upstream.origin, entry.record.study_uid
        if self._store.series_facts(form, origin, study_uid, series_uid) is not None:
            return True
        facts: dict[str, dict[str, Any]] = {}
        complete = True
        done = self._prepared_count(entry, form, origin)
        async with series_parts(
            upstream, series_path(study_uid, series_uid), max_part_bytes=self._max_part_bytes
        ) as parts:
            async for part in parts:
                await self._check_still_published(entry)
                sop_uid = str(peek_header(part.body).SOPInstanceUID)
                known = await asyncio.to_thread(
                    self._store.instance_facts, form, origin, study_uid, series_uid, sop_uid
                )
                if known is not None:
                    facts[sop_uid] = known
                    self.stats["instances_skipped"] += 1
                    continue
                try:
                    instance = await self._pool.transcode(part.body, params, background=True)
                except TranscodeError as exc:
                    log.warning("instance %s not prepared: %s", sop_uid, exc)
                    complete = False
                    continue
                if (instance.study_uid, instance.series_uid) != (study_uid, series_uid):
                    log.warning("instance %s is not of series %s: skipped", sop_uid, series_uid)
                    complete = False
                    continue
                await asyncio.to_thread(self._store.put, form, origin, instance)
                facts[sop_uid] = _facts(instance)
                self.stats["instances_prepared"] += 1
                done += 1
                if done % PROGRESS_EVERY == 0:
                    # A KOS unpublished by another process (kos remove) stops it too.
                    self._changed.add(entry.record.sop_uid)
                    await self._record(
                        entry, "preparing", self._prepared_count(entry, form, origin)
                    )
        if complete and facts:
            await asyncio.to_thread(
                self._store.complete, form, origin, study_uid, series_uid, facts
            )
        return complete and bool(facts)
