"""OHIF's series metadata answers, built once and shared by the sessions of an exam
(issue 16: the load benchmark's viewers each fetched and built their own;
bff/dicomweb/metadata_ahead.py, Answers)."""

from __future__ import annotations

import asyncio

import pytest

from bff.dicomweb import series_metadata
from bff.dicomweb.metadata_ahead import TTL_S, AnswerKey, Answers
from bff.dicomweb.series_metadata import PreparedMetadata, RewriteContext
from bff.errors import UpstreamUnavailable
from tests.clock import ManualClock
from tests.unit.test_retrieve import STUDY, RecordingPool, make_retriever, metadata_upstream

SERIES_KEY = ("pacs-a", STUDY, "1.2.3.9")
CONTEXT = ("http://bff/dicomweb", "CHU", "", "")
KEY: AnswerKey = (SERIES_KEY, "", CONTEXT)


def prepared(size: int = 10) -> PreparedMetadata:
    return PreparedMetadata(CONTEXT, b"x" * size, b"g" * size, 1, "CT")


def done(value: PreparedMetadata) -> asyncio.Task[PreparedMetadata]:
    async def build() -> PreparedMetadata:
        return value

    return asyncio.ensure_future(build())


@pytest.mark.anyio
async def test_one_build_for_every_asker_of_the_same_series_scope_and_context() -> None:
    answers = Answers(clock=ManualClock())
    gate = asyncio.Event()
    built: list[int] = []

    def build() -> asyncio.Task[PreparedMetadata]:
        async def slow() -> PreparedMetadata:
            built.append(1)
            await gate.wait()
            return prepared()

        return asyncio.ensure_future(slow())

    first = answers.get_or_build(KEY, build)
    second = answers.get_or_build(KEY, build)  # while the first is being built
    assert second is first
    gate.set()
    results = await asyncio.gather(answers.answer(KEY), answers.answer(KEY))
    assert results[0] is results[1] is not None
    assert built == [1] and answers.builds == 1 and answers.reused == 3
    # Another context (another DICOMweb root, institution) or scope: its own answer.
    other_context: AnswerKey = (SERIES_KEY, "", ("http://other/dicomweb", "CHU", "", ""))
    other_scope: AnswerKey = (SERIES_KEY, "kos-2", CONTEXT)
    assert answers.get_or_build(other_context, build) is not first
    assert answers.get_or_build(other_scope, build) is not first
    assert answers.builds == 3


@pytest.mark.anyio
async def test_a_failed_build_is_built_again_by_the_next_asker() -> None:
    answers = Answers(clock=ManualClock())

    async def fail() -> PreparedMetadata:
        raise UpstreamUnavailable("PACS down")

    failed = answers.get_or_build(KEY, lambda: asyncio.ensure_future(fail()))
    assert await answers.answer(KEY) is None
    assert failed.done() and len(answers) == 0
    again = answers.get_or_build(KEY, lambda: done(prepared()))
    assert again is not failed and (await answers.answer(KEY)) is not None


@pytest.mark.anyio
async def test_answers_expire_after_their_last_use_and_stay_within_their_bytes() -> None:
    clock = ManualClock()
    answers = Answers(clock=clock, max_bytes=50)
    keys: list[AnswerKey] = [((f"pacs-{n}", STUDY, "1.2"), "", CONTEXT) for n in range(3)]
    for key in keys[:2]:
        answers.get_or_build(key, lambda: done(prepared(10)))  # 20 bytes each
        assert await answers.answer(key) is not None
    assert answers.nbytes == 40
    assert await answers.answer(keys[0]) is not None  # keys[0] used last
    answers.get_or_build(keys[2], lambda: done(prepared(10)))
    await answers.answer(keys[2])
    assert answers.nbytes <= 50 and len(answers) == 2
    assert answers.get(keys[1]) is None  # the least recently used went first
    assert answers.get(keys[0]) is not None and answers.get(keys[2]) is not None
    clock.advance(TTL_S + 1)
    assert answers.get(keys[0]) is None and len(answers) == 0 and answers.nbytes == 0


@pytest.mark.anyio
async def test_sessions_granted_the_same_exam_fetch_and_build_its_metadata_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retriever.prefetch_metadata at each grant: the first fetches the PACS's metadata
    and builds OHIF's answer, the next ones (same context) share it; another DICOMweb
    root builds its own."""
    upstream, requests = metadata_upstream()
    retriever = make_retriever(RecordingPool())
    context = RewriteContext("http://bff/dicomweb", STUDY, upstream.base_url, "browser", "", "")
    monkeypatch.setattr(series_metadata, "RATIO_WAIT_S", 0)  # no instance comes here
    series = "1.2.3.5"
    key: AnswerKey = (("pacs-a", STUDY, series), "", context.key)
    for _ in range(20):
        retriever.prefetch_metadata(upstream, key, context)
    answer = await retriever.answers.answer(key)
    assert answer is not None and answer.rows == 0
    metadata = f"/dicom-web/studies/{STUDY}/series/{series}/metadata"
    assert requests.count(metadata) == 1 and retriever.answers.builds == 1
    # The next report link of the exam asks the PACS nothing ahead: the answer is built.
    retriever.warm_metadata(upstream, STUDY, series)
    assert retriever.ahead.asked(key[0]) is None
    other = RewriteContext("http://vi2/dicomweb", STUDY, upstream.base_url, "browser", "", "")
    retriever.prefetch_metadata(upstream, (key[0], "", other.key), other)
    assert await retriever.answers.answer((key[0], "", other.key)) is not None
    assert retriever.answers.builds == 2
    await retriever.aclose()
    await upstream.aclose()
