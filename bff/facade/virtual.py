"""Key images as a virtual series (issue 6: DB.VI-SO.170, .171, .196; DB.VI-CO.197).

A KO series holding a Key Image Note is offered as an image series of its key images
(:mod:`bff.dicomweb.key_images`). Everything here runs on the origin the access decision
resolved: a virtual series only ever maps to series of the granted study, asked of that
origin (the location's PACS, or the KOS's Source) under that study.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bff.dicomweb import key_images
from bff.errors import NotFound
from bff.origins.base import Row, StudyOrigin, first_value


async def series_rows(origin: StudyOrigin, query: Mapping[str, str]) -> list[Row]:
    """QIDO rows of the virtual series, unless the search asks for other series."""
    index = await origin.key_images()
    asked = set(query.get("SeriesInstanceUID", "").replace("\\", ",").split(",")) - {""}
    rows = [key_images.virtual_series_row(origin.study_uid, s, index) for s in index.series]
    return [r for r in rows if not asked or first_value(r, key_images.SERIES_UID) in asked]


async def real_series(origin: StudyOrigin, series_uid: str, sop_uid: str) -> str:
    """The series really holding ``sop_uid``: ``series_uid`` itself, or for a virtual
    key-image series the series its KIN names (404 for an instance it does not select)."""
    kin_series = (await origin.key_images(series_uid)).virtual(series_uid)
    if kin_series is None:
        return series_uid
    real_uid = kin_series.real_series_of(sop_uid)
    if real_uid is None:
        raise NotFound(f"{sop_uid} is not a key image of {series_uid}")
    return real_uid


async def first_real_series(origin: StudyOrigin, series_uid: str) -> str:
    """The series shown first for ``series_uid``: itself, or a virtual series' first
    key image's series."""
    kin_series = (await origin.key_images(series_uid)).virtual(series_uid)
    return kin_series.images[0].series_uid if kin_series is not None else series_uid


async def middle_key_image(origin: StudyOrigin, series_uid: str) -> str | None:
    """A virtual series' middle key image (its thumbnail), None for any other series."""
    kin_series = (await origin.key_images(series_uid)).virtual(series_uid)
    if kin_series is None:
        return None
    return kin_series.images[len(kin_series.images) // 2].sop_uid


async def as_virtual(origin: StudyOrigin, series_uid: str, rows: list[Any]) -> list[Any]:
    """Rows read in a real series, moved into the virtual series asked for (if it is one)."""
    index = await origin.key_images(series_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is not None:
        for row in rows:
            key_images.as_virtual(row, kin_series, index)
    return rows


async def series_metadata(origin: StudyOrigin, root: str, series_uid: str) -> list[Row] | None:
    """The metadata of a virtual key-image series (each key image's row, read in its real
    series and rewritten like any served instance), or None for any other series. The
    real series stream as usual."""
    index = await origin.key_images(series_uid)
    kin_series = index.virtual(series_uid)
    if kin_series is None:
        return None
    rows: list[Row] = []
    for real_uid in dict.fromkeys(image.series_uid for image in kin_series.images):
        origin.start_series(real_uid)  # the frames stream as usual
        wanted = [i.sop_uid for i in kin_series.images if i.series_uid == real_uid]
        rows += await origin.instance_metadata_rows(real_uid, wanted)
    if not rows:
        raise NotFound("no key image found")
    order = {image.sop_uid: n for n, image in enumerate(kin_series.images)}
    rows.sort(key=lambda row: order.get(first_value(row, "00080018"), len(order)))
    rows = await origin.rewrite(root, rows)
    for row in rows:
        key_images.as_virtual(row, kin_series, index)
    return rows
