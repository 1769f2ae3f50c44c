"""Key images (DB.VI-SO.196, DB.VI-CO.197) and the series shown first (DB.VI-SO.170, .171).

A Key Image Note (KIN) is a Key Object Selection Document stored in the study whose
document title is a key-image title (113000 "Of Interest", 113004 "For Teaching" ...),
as opposed to the DRIM-M manifest (113030 "Manifest", and the other manifest titles) that
lists the whole exam, and to rejection notes (113001, 113037-113039) that mark images as
*rejected*. Its key images are the ContentSequence IMAGE items; their series come from
its CurrentRequestedProcedureEvidenceSequence, and only from the evidence item of the
study the request is about: a reference to another study is dropped, never followed.

What the facade makes of it (stock OHIF 3.13.2, nothing patched):

- each KO series holding a KIN is offered as a *virtual* image series (same Series
  Instance UID as the KO series, which belongs to the study), described "Images clés",
  whose metadata are those of the key images only; its frames are those of the real
  series, served through the same access check and the same retrieval and cache;
- the virtual series is numbered below every image series of the study (0, or lower when
  the study already uses 0): OHIF's default hanging protocol shows, among series of equal
  score, the lowest SeriesNumber first, and its study browser lists series by number, so
  the key images come first (DB.VI-SO.170) and, without a KIN, the series with the lowest
  SeriesNumber (DB.VI-SO.171, OHIF's own rule);
- ``GET /dicomweb/studies/{study}/key-images`` lists the key images' SOP Instance UIDs
  (after the same access check); ohif-config/app-config.js shows "Image clé" on every
  slice that is one, in its real series and in the virtual one (DB.VI-SO.196). The
  series metadata themselves are left untouched (they may be prepared at grant time).

The index of a study is looked up once (one QIDO series + the metadata of its KO series)
and kept for :data:`INDEX_TTL_S`; a PACS failure gives an empty index (key images are an
option: the viewer still shows the exam).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ViewerError

log = logging.getLogger(__name__)

KOS_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.59"
#: Document titles (CID 7010) that select key images. Manifests (113030-113035), rejection
#: notes (113001, 113037, 113038, 113039), "Quality Issue" (113010) and "Group of Frames
#: for Display" (113036) are not key images.
KEY_IMAGE_TITLES = frozenset(
    {
        "113000",  # Of Interest
        "113002",  # For Referring Provider
        "113003",  # For Surgery
        "113004",  # For Teaching
        "113005",  # For Conference
        "113006",  # For Therapy
        "113007",  # For Patient
        "113008",  # For Peer Review
        "113009",  # For Research
        "113013",  # Best In Set
        "113018",  # For Outcomes
        "113020",  # For Report Attachment
        "113021",  # For Litigation
    }
)
#: What the user reads: the virtual series' description (French).
KEY_IMAGES_DESCRIPTION = "Images clés"
INDEX_TTL_S = 60.0
FAILED_INDEX_TTL_S = 5.0

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SERIES_UID = "0020000E"
SOP_UID = "00080018"
SOP_CLASS_UID = "00080016"
MODALITY = "00080060"
SERIES_NUMBER = "00200011"
SERIES_DESCRIPTION = "0008103E"
NUMBER_OF_INSTANCES = "00201209"


@dataclass(frozen=True)
class KeyImage:
    series_uid: str  # the real series holding the image
    sop_uid: str


@dataclass(frozen=True)
class KeyImageSeries:
    """One KO series holding KIN(s), offered as a virtual series of its key images."""

    series_uid: str  # the KO series' own UID
    images: tuple[KeyImage, ...]  # in the KIN's order, no duplicates

    def real_series_of(self, sop_uid: str) -> str | None:
        for image in self.images:
            if image.sop_uid == sop_uid:
                return image.series_uid
        return None


@dataclass(frozen=True)
class KeyImages:
    """The key images of one study."""

    series: tuple[KeyImageSeries, ...] = ()
    series_number: int = 0  # of the virtual series
    modalities: dict[str, str] = field(default_factory=dict)  # real series -> Modality
    sop_uids: frozenset[str] = frozenset()

    def virtual(self, series_uid: str) -> KeyImageSeries | None:
        for kin_series in self.series:
            if kin_series.series_uid == series_uid:
                return kin_series
        return None


EMPTY = KeyImages()
#: A lookup that failed (kept a few seconds only).
FAILED = KeyImages()


# -- reading DICOM JSON (pure) -------------------------------------------------------------


def _values(item: Any, tag: str) -> list[Any]:
    value = item.get(tag, {}).get("Value") if isinstance(item, dict) else None
    return list(value) if isinstance(value, list) else []


def _first(item: Any, tag: str) -> str:
    values = _values(item, tag)
    return str(values[0]).strip() if values and values[0] is not None else ""


def _uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(_UID.match(value))


def is_key_image_note(instance: dict[str, Any]) -> bool:
    """A KOS whose document title (0040,A043) is a key-image title (DCM scheme)."""
    if _first(instance, SOP_CLASS_UID) != KOS_SOP_CLASS_UID:
        return False
    titles = _values(instance, "0040A043")
    if not titles:
        return False
    return (
        _first(titles[0], "00080100") in KEY_IMAGE_TITLES and _first(titles[0], "00080102") == "DCM"
    )


def kin_references(instance: dict[str, Any], study_uid: str) -> list[KeyImage]:
    """The key images of a KIN (DICOM JSON) that lie in ``study_uid``, in content order.

    A content IMAGE item is kept only when the evidence (0040,A375) item of this study
    names its series: references to another study, or unknown to the evidence, are
    dropped."""
    if not is_key_image_note(instance):
        return []
    series_of: dict[str, str] = {}
    for study in _values(instance, "0040A375"):
        if _first(study, "0020000D") != study_uid:
            continue
        for series in _values(study, "00081115"):
            series_uid = _first(series, SERIES_UID)
            if not _uid(series_uid):
                continue
            for sop in _values(series, "00081199"):
                sop_uid = _first(sop, "00081155")
                if _uid(sop_uid):
                    series_of.setdefault(sop_uid, series_uid)
    images: dict[str, KeyImage] = {}
    for item in _values(instance, "0040A730"):
        if _first(item, "0040A040") != "IMAGE":
            continue
        for sop in _values(item, "00081199"):
            sop_uid = _first(sop, "00081155")
            if sop_uid in series_of and sop_uid not in images:
                images[sop_uid] = KeyImage(series_of[sop_uid], sop_uid)
    return list(images.values())


def virtual_series_number(rows: Iterable[dict[str, Any]]) -> int:
    """Below every image series' number: 0, or (lowest - 1) when the study uses 0 or less."""
    numbers = []
    for row in rows:
        if _first(row, MODALITY) == "KO":
            continue
        try:
            numbers.append(int(_first(row, SERIES_NUMBER)))
        except ValueError:
            continue
    return min([0, *(n - 1 for n in numbers)])


def build_index(study_uid: str, rows: list[dict[str, Any]], kos: dict[str, list[Any]]) -> KeyImages:
    """The study's key images from its QIDO series rows and each KO series' metadata."""
    # Only series the PACS lists in this study: a KIN naming another study's series
    # under this study's UID is not followed.
    image_series = {_first(r, SERIES_UID) for r in rows if _first(r, MODALITY) != "KO"}
    found = []
    for series_uid, instances in kos.items():
        images: dict[str, KeyImage] = {}
        for instance in instances:
            for image in kin_references(instance, study_uid):
                if image.series_uid in image_series:
                    images.setdefault(image.sop_uid, image)
        if images:
            found.append(KeyImageSeries(series_uid, tuple(images.values())))
    modalities = {_first(r, SERIES_UID): _first(r, MODALITY) for r in rows}
    sops = frozenset(i.sop_uid for s in found for i in s.images)
    return KeyImages(tuple(found), virtual_series_number(rows), modalities, sops)


def virtual_series_row(
    study_uid: str, kin_series: KeyImageSeries, index: KeyImages
) -> dict[str, Any]:
    """The QIDO series row of a virtual key-image series."""
    modality = index.modalities.get(kin_series.images[0].series_uid) or "OT"
    return {
        "0020000D": {"vr": "UI", "Value": [study_uid]},
        SERIES_UID: {"vr": "UI", "Value": [kin_series.series_uid]},
        MODALITY: {"vr": "CS", "Value": [modality]},
        SERIES_NUMBER: {"vr": "IS", "Value": [index.series_number]},
        SERIES_DESCRIPTION: {"vr": "LO", "Value": [KEY_IMAGES_DESCRIPTION]},
        NUMBER_OF_INSTANCES: {"vr": "IS", "Value": [len(kin_series.images)]},
    }


def as_virtual(row: dict[str, Any], kin_series: KeyImageSeries, index: KeyImages) -> None:
    """Turn one key image's (already rewritten) metadata into an instance of the virtual
    series. Its BulkDataURIs keep pointing at the real series (same study, same checks)."""
    row[SERIES_UID] = {"vr": "UI", "Value": [kin_series.series_uid]}
    row[SERIES_NUMBER] = {"vr": "IS", "Value": [index.series_number]}
    row[SERIES_DESCRIPTION] = {"vr": "LO", "Value": [KEY_IMAGES_DESCRIPTION]}


# -- the per-study index -------------------------------------------------------------------


async def lookup(upstream: DicomwebUpstream, study_uid: str) -> KeyImages:
    """Ask the PACS for the study's KO series and read their KINs (study-scoped paths)."""
    rows = await upstream.search(f"/studies/{study_uid}/series")
    ko_series = [
        _first(r, SERIES_UID)
        for r in rows
        if _first(r, MODALITY) == "KO" and _uid(_first(r, SERIES_UID))
    ]
    answers = await asyncio.gather(
        *(upstream.get_json(f"/studies/{study_uid}/series/{uid}/metadata") for uid in ko_series)
    )
    return build_index(study_uid, rows, dict(zip(ko_series, answers, strict=True)))


class KeyImageIndex:
    """Key images per (PACS, study), looked up once and shared by concurrent requests."""

    def __init__(self, ttl: float = INDEX_TTL_S) -> None:
        self._ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, asyncio.Task[KeyImages]]] = {}

    async def get(self, upstream: DicomwebUpstream, study_uid: str) -> KeyImages:
        """The study's key images. An expired entry is answered while a new lookup runs
        (stale while revalidating), so frame requests never wait for a refresh."""
        key = (upstream.origin, study_uid)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] < now and entry[1].done():
            previous = entry[1].result()
            self._start(key, upstream, study_uid, now)
            if previous is not FAILED:
                return previous
            entry = self._entries[key]
        if entry is None:
            entry = self._start(key, upstream, study_uid, now)
        task = entry[1]
        index = task.result() if task.done() else await asyncio.shield(task)
        return EMPTY if index is FAILED else index

    def warm(self, upstream: DicomwebUpstream, study_uid: str) -> None:
        """Start the lookup now unless one is known (at grant time: OHIF's series search
        and metadata requests then find it done, issue 5)."""
        if (upstream.origin, study_uid) not in self._entries:
            self._start((upstream.origin, study_uid), upstream, study_uid, time.monotonic())

    def _start(
        self, key: tuple[str, str], upstream: DicomwebUpstream, study_uid: str, now: float
    ) -> tuple[float, asyncio.Task[KeyImages]]:
        for stale in [k for k, (expires, t) in self._entries.items() if expires < now and t.done()]:
            del self._entries[stale]
        task = asyncio.create_task(self._lookup(upstream, study_uid), name=f"kin {study_uid}")
        entry = (now + self._ttl, task)
        self._entries[key] = entry
        return entry

    async def _lookup(self, upstream: DicomwebUpstream, study_uid: str) -> KeyImages:
        try:
            return await lookup(upstream, study_uid)
        except ViewerError as exc:
            # Key images are an option: the exam is still shown; look again soon.
            log.warning("key images of %s not read: %s", study_uid, exc)
            self._entries[(upstream.origin, study_uid)] = (
                time.monotonic() + FAILED_INDEX_TTL_S,
                asyncio.current_task(),  # type: ignore[assignment]
            )
            return FAILED
