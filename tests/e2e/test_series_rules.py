"""The series rules in Chromium (issue 6; docs/series.md): thumbnails of every series
(DB.VI-CS.16), the key-image series shown first when the study has a KIN (DB.VI-SO.170),
else the lowest SeriesNumber (DB.VI-SO.171), key images marked "Image clé" in their own
series and viewable on their own (DB.VI-SO.196), and the series the user picks loading
first (DB.VI-SO.189). Studies built with pydicom (tests/series_data.py), opened in the
open-access viewer."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from tests.conftest import Pacs
from tests.e2e.conftest import record_fetches, wait_answered
from tests.e2e.test_overlays import read_overlays
from tests.e2e.test_viewer import wait_for_image
from tests.series_data import MANIFEST, OF_INTEREST, Study, add_kos, add_series
from tests.waiting import poll

pytestmark = pytest.mark.e2e

THUMBNAIL = '[data-cy="study-browser-thumbnail"]'
#: Each thumbnail's series number (OHIF's data-series) and whether its image is drawn.
READ_THUMBNAILS = """(selector) => Array.from(document.querySelectorAll(selector))
  .map((t) => {
    const img = t.querySelector('img');
    return {series: t.getAttribute('data-series'),
            drawn: !!img && img.complete && img.naturalWidth > 0,
            text: t.textContent.replace(/\\s+/g, ' ').trim()};
  })"""
LOAD_SLICES = 30


@pytest.fixture(scope="module")
def studies(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Study]:
    out: Path = tmp_path_factory.mktemp("series-rules")
    # No KIN, only the DRIM-M manifest: lowest SeriesNumber first (stored in another order).
    plain = Study(generate_uid())
    for number, name in ((7, "Sept"), (3, "Trois"), (9, "Neuf")):
        add_series(plain, out, number, name, 2)
    add_kos(
        plain, out, MANIFEST, [(plain.study_uid, s.series_uid, s.sop_uids[0]) for s in plain.series]
    )
    # A KIN selecting slices 5 and 2 of "Abdomen".
    kin = Study(generate_uid())
    add_series(kin, out, 2, "Thorax", 3)
    abdomen = add_series(kin, out, 5, "Abdomen", 6)
    add_kos(kin, out, MANIFEST, [(kin.study_uid, abdomen.series_uid, u) for u in abdomen.sop_uids])
    add_kos(
        kin,
        out,
        OF_INTEREST,
        [(kin.study_uid, abdomen.series_uid, abdomen.sop_uids[i]) for i in (4, 1)],
    )
    # Three series big enough to take a while (noise costs the transcoder).
    load = Study(generate_uid())
    for number in (1, 2, 3):
        add_series(load, out, number, f"Série {number}", LOAD_SLICES, size=384, seed=number)
    for study in (plain, kin, load):
        pacs.process.upload(study.files)
    return {"plain": plain, "kin": kin, "load": load}


def open_study(page: Any, viewer_url: str, study: Study) -> None:
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}")
    wait_for_image(page, timeout=60)


def thumbnails(page: Any, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = page.evaluate(READ_THUMBNAILS, THUMBNAIL)
    while time.monotonic() < deadline and not (
        len(found) == count and all(t["drawn"] for t in found)
    ):
        page.wait_for_timeout(250)
        found = page.evaluate(READ_THUMBNAILS, THUMBNAIL)
    return found


def shown(page: Any, description: str) -> dict[str, Any]:
    """The single viewport's overlay once it shows the series ``description``."""
    item = f"Description : {description}"
    # The overlay fills in as OHIF learns the stack: wait for its slice counter too.
    overlays = read_overlays(
        page,
        lambda o: (
            len(o) == 1
            and item in o[0]["topLeft"]
            and any(i.startswith("Coupe : ") for i in o[0]["bottomRight"])
        ),
    )
    assert len(overlays) == 1 and item in overlays[0]["topLeft"], overlays
    return overlays[0]


def test_thumbnails_of_every_series(studies: dict[str, Study], viewer_url: str, page: Any) -> None:
    """DB.VI-CS.16: one drawn thumbnail per displayable series, in series-number order;
    the manifest (KO) is not one, the key-image series is."""
    open_study(page, viewer_url, studies["plain"])
    found = thumbnails(page, 3)
    assert [t["series"] for t in found] == ["3", "7", "9"], found
    assert all(t["drawn"] for t in found), found
    open_study(page, viewer_url, studies["kin"])
    found = thumbnails(page, 3)
    assert [t["series"] for t in found] == ["0", "2", "5"], found
    assert all(t["drawn"] for t in found), found
    assert "Images clés" in found[0]["text"]


def test_lowest_series_number_first_without_kin(
    studies: dict[str, Study], viewer_url: str, page: Any
) -> None:
    """DB.VI-SO.171: no KIN (only the DRIM-M manifest): series 3 of (7, 3, 9) first."""
    open_study(page, viewer_url, studies["plain"])
    overlay = shown(page, "Trois")
    assert "Série : 3" in overlay["topLeft"]
    assert "Image clé" not in overlay["topRight"]


def test_key_image_series_first_with_a_kin(
    studies: dict[str, Study], viewer_url: str, page: Any
) -> None:
    """DB.VI-SO.170, .196: the KIN's key images first, on their own, each marked."""
    open_study(page, viewer_url, studies["kin"])
    overlay = shown(page, "Images clés")
    assert "Coupe : 1/2" in overlay["bottomRight"], overlay
    assert "Image clé" in overlay["topRight"], overlay
    # OHIF orders the key images by position: slice 2 of the abdomen, with its own number.
    assert "Image : 2" in overlay["bottomRight"], overlay


def test_key_images_are_marked_in_their_series(
    studies: dict[str, Study], viewer_url: str, page: Any
) -> None:
    """DB.VI-SO.196: in the full series, only slices 2 and 5 say "Image clé"."""
    record_fetches(page)
    open_study(page, viewer_url, studies["kin"])
    shown(page, "Images clés")
    # The overlay marks a slice from the study's key-image list, asked while OHIF boots:
    # every slice drawn once it is in says whether it is one.
    wait_answered(page, f"/studies/{studies['kin'].study_uid}/key-images")
    page.locator(f'{THUMBNAIL}[data-series="5"]').dblclick()
    seen = {}
    overlay = shown(page, "Abdomen")
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for slice_number in range(1, 7):
        if slice_number > 1:
            page.mouse.wheel(0, 120)
        wanted = f"Image : {slice_number}"
        overlays = read_overlays(page, lambda o, w=wanted: bool(o) and w in o[0]["bottomRight"])
        overlay = overlays[0]
        assert wanted in overlay["bottomRight"], overlay
        seen[slice_number] = "Image clé" in overlay["topRight"]
    assert seen == {1: False, 2: True, 3: False, 4: False, 5: True, 6: False}, seen


def frame_times(page: Any, study: Study) -> dict[int, list[int]]:
    """Series number -> the rank (1st, 2nd ... frame answer of the study to arrive) of
    each of its frame answers: an order of events, not a clock.

    Counted when the answer arrives (the BFF sends a frame's answer whole, once the frame
    is ready), not when Chromium calls the request finished: cornerstone reads the shown
    stack's frames as a stream and stops at Content-Length, never reading the stream's
    end, so Chromium reports those requests aborted (net::ERR_ABORTED) although every
    byte arrived and the image is shown. A cacheable answer hid this (the HTTP cache reads
    each answer to its end to store it); frames are ``no-store`` (issue 13)."""
    series_of = {s.series_uid: s.number for s in study.series}
    done: dict[int, list[int]] = {s.number: [] for s in study.series}
    rank = itertools.count(1)

    def arrived(response: Any) -> None:
        url = response.url
        if "/frames/" in url and response.status == 200:
            series_uid = url.split("/series/")[1].split("/")[0]
            if series_uid in series_of:
                done[series_of[series_uid]].append(next(rank))

    page.on("response", arrived)
    return done


#: How many images of the single viewport's stack cornerstone holds at full resolution:
#: the stack is loaded, not only asked for.
STACK_LOADED = """() => {
  const cs = window.cornerstone;
  const full = cs.Enums.ImageQualityStatus.FULL_RESOLUTION;
  const [element] = cs.getEnabledElements();
  return element.viewport.getImageIds()
    .filter((id) => (cs.cache.getImage(id) || {}).imageQualityStatus === full).length;
}"""


def wait_stack_loaded(page: Any) -> None:
    loaded = poll(lambda: page.evaluate(STACK_LOADED) == LOAD_SLICES, timeout=60)
    assert loaded, page.evaluate(STACK_LOADED)


def wait_complete(page: Any, done: dict[int, list[int]], number: int) -> int:
    """The rank at which the last of the series' LOAD_SLICES frames arrived."""
    deadline = time.monotonic() + 90
    while len(done[number]) < LOAD_SLICES and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(done[number]) >= LOAD_SLICES, {n: len(t) for n, t in done.items()}
    return sorted(done[number])[LOAD_SLICES - 1]


def test_the_series_named_in_the_link_loads_first(
    studies: dict[str, Study], viewer_url: str, page: Any
) -> None:
    """DB.VI-SO.189: the series chosen before loading (initialSeriesInstanceUID) is shown
    first and all its images arrive before those of any other series."""
    load = studies["load"]
    done = frame_times(page, load)
    chosen = load.series[2]
    page.goto(
        f"{viewer_url}/viewer?StudyInstanceUIDs={load.study_uid}"
        f"&initialSeriesInstanceUID={chosen.series_uid}"
    )
    shown(page, "Série 3")
    chosen_done = wait_complete(page, done, 3)
    wait_stack_loaded(page)
    counts = {n: len([t for t in ts if t <= chosen_done]) for n, ts in done.items()}
    assert counts[1] < LOAD_SLICES and counts[2] < LOAD_SLICES, counts


def test_a_thumbnail_picked_right_away_is_shown_and_loaded(
    studies: dict[str, Study], viewer_url: str, page: Any
) -> None:
    """DB.VI-SO.189 in the viewer: double-clicking the last series' thumbnail as soon as
    it appears shows that series and loads all its images."""
    load = studies["load"]
    done = frame_times(page, load)
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={load.study_uid}")
    last = page.locator(f'{THUMBNAIL}[data-series="3"]')
    last.wait_for(timeout=60_000)
    last.dblclick()
    shown(page, "Série 3")
    wait_complete(page, done, 3)
    wait_stack_loaded(page)
