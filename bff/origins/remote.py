"""The Consumer's origin: a study opened from a KOS of the DMP, answered by the DRIMbox
Source(s) its RetrieveURLs point to (spec 4.2.1, 4.3.1; DB.VI-CS.17, DB.VI-CO.27).

For each series of the KOS, one upstream: the series-level WADO-RS URL of the KOS, asked
with the DRIM-M transfer syntaxes and q-values, ``Authorization: Bearer <the user's PSC
access token>``, ``KOS-SOPInstanceUID``, over mutual TLS (our client certificate, the
configured CA bundle). A RetrieveURL the ANS whitelist does not cover (host, scheme, port,
user info, query, fragment: :meth:`Whitelist.source_for`), or that is not a DRIMbox series
URL, refuses the whole study (E203 / E205) on every route, before any connection
(:attr:`RemoteSourceOrigin.refusal`, checked by the access decision). A Source whose TLS
certificate is not its whitelisted operator certificate is refused (E203) before the
request is sent (:mod:`bff.origins.pinning`).

A Source offers series-level WADO-RS and series metadata, not QIDO nor rendered images:
the searches OHIF makes are answered from the KOS and from the series metadata (asked
ahead at the hand-over, :mod:`bff.dicomweb.metadata_ahead`); without ``/metadata`` it is
built from the headers of the instances received (the series must then arrive first).
Nothing of such a study is ever asked of a local PACS (issue 12: a forged KOS opened on
the Consumer read the study from the Consumer's own PACS).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bff.archive.kos import KosRecord
from bff.audit import audit
from bff.dicomweb import key_images
from bff.dicomweb.observe import ErrorSink, ObservedTransport
from bff.dicomweb.retrieve import Retriever, SeriesRetrieval, retrieval_error
from bff.dicomweb.series_stream import series_path
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import NotFound, UpstreamProtocolError, UpstreamTimeout, ViewerError
from bff.origins.base import ExportPlan, Row, SeriesProgress, StudyOrigin, first_value
from bff.origins.conformance import ConsumerErrorPolicy, accept_header
from bff.origins.errors import SourceError
from bff.origins.pinning import PinnedSourceTransport
from bff.origins.tls import harden
from bff.origins.whitelist import NotWhitelisted, Whitelist
from bff.settings import Settings

log = logging.getLogger(__name__)

MODALITY = "00080060"
SOP_UID = "00080018"
#: Tags of a series row taken from the first row of its metadata.
SERIES_ROW_TAGS = ("00080060", "00200011", "0008103E", "00080021", "00080031")
#: Tags of an instance row (QIDO-RS) taken from the metadata.
INSTANCE_ROW_TAGS = ("00080016", "00080018", "0020000D", "0020000E", "00200013", "00280008")


class RefusedSource(DicomwebUpstream):
    """A Source we must not contact (E203): every use answers the error, nothing is sent."""

    def __init__(self, base_url: str, *, origin: str, error: SourceError) -> None:
        super().__init__(base_url, origin=origin, serve="browser")
        self.error = error

    # The places every upstream request goes through (get_json, get_json_bytes, search
    # and get_bytes all use _get; get_json_bounded and stream stream): nothing can reach
    # the network.
    async def _get(self, path: str, accept: str, params: Any) -> httpx.Response:
        raise self.error

    async def get_json_bounded(self, path: str, params: Any = None, *, max_bytes: int) -> Any:
        raise self.error

    @asynccontextmanager
    async def stream(
        self, path: str, accept: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        raise self.error
        yield  # pragma: no cover


def source_client(
    settings: Settings, whitelist: Whitelist | None, *, on_error: ErrorSink | None = None
) -> httpx.AsyncClient:
    """The Consumer's client towards Sources: mutual TLS, CA bundle, Source timeout, and
    only towards whitelisted Sources holding their operator certificate
    (:class:`PinnedSourceTransport`). ``on_error``: told each failed call (metrics), the
    request id travels with each call (bff/dicomweb/observe.py)."""
    transport: httpx.AsyncBaseTransport = PinnedSourceTransport(
        httpx.AsyncHTTPTransport(
            verify=client_tls_context(settings),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        ),
        whitelist,
        settings.source_port_set(),
    )
    transport = ObservedTransport(transport, "source", on_error or (lambda _u, _c: None))
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.source_timeout, connect=min(settings.source_timeout, 10)),
        trust_env=False,
    )


def client_tls_context(settings: Settings) -> ssl.SSLContext:
    """Mutual TLS towards Sources: the configured CA bundle and our client certificate,
    TLS 1.2+ with the DRIMbox cipher list (:mod:`bff.origins.tls`)."""
    context = harden(ssl.create_default_context(cafile=str(settings.source_ca_bundle) or None))
    if str(settings.source_client_cert):
        context.load_cert_chain(str(settings.source_client_cert), str(settings.source_client_key))
    return context


def source_base(
    url: str,
    study_uid: str,
    series_uid: str,
    whitelist: Whitelist | None,
    ports: frozenset[int],
) -> str:
    """The Source's WADO-RS base from a series RetrieveURL (``<base>/studies/S/series/SE``),
    rebuilt from the parts the whitelist check accepted: E203 for an address the whitelist
    does not cover (:meth:`Whitelist.source_for`), E205 for another URL shape."""
    if whitelist is None:
        raise SourceError("E203", "no ANS whitelist configured")
    try:
        address, path = whitelist.source_for(url, ports)
    except NotWhitelisted as exc:
        raise SourceError("E203", str(exc)) from None
    suffix = f"/studies/{study_uid}/series/{series_uid}"
    clean = path.rstrip("/")
    if not clean.endswith(suffix):
        raise SourceError("E205", "the RetrieveURL is not a DRIMbox series URL")
    return address.origin + clean[: -len(suffix)]


def source_upstreams(
    record: KosRecord,
    *,
    access_token: str,
    serve: str,
    whitelist: Whitelist | None,
    ports: frozenset[int],
    client: httpx.AsyncClient,
) -> dict[str, DicomwebUpstream]:
    """One upstream per series of the KOS; a refused one for a Source we must not contact.
    ``serve``: what the browser gets (DRIMBOX_CONSUMER_IMAGES: 'browser' as received,
    'lossy' transcoded like the Source viewer's frames for a slow link)."""
    upstreams: dict[str, DicomwebUpstream] = {}
    # Cache keys (frames, retrievals, metadata ahead) name the Source and the KOS (another
    # Source may serve the same KOS), what the browser gets, and the user's token: a
    # session is only ever served what the Source answered to its own token, so a Source
    # that refuses it (or unpublished the KOS since) is never bypassed by what another
    # session's token fetched (issue 13, item 10). The token itself is never a key.
    grant = hashlib.sha256(access_token.encode()).hexdigest()[:32]
    for series in record.series:
        origin = f"{series.retrieve_url}#kos={record.sop_uid}&serve={serve}&grant={grant}"
        try:
            base = source_base(
                series.retrieve_url or "", record.study_uid, series.series_uid, whitelist, ports
            )
        except SourceError as exc:
            if exc.code == "E203":
                audit(
                    "consumer_source_refused",
                    code=exc.code,
                    reason=exc.detail,
                    kos_sop_uid=record.sop_uid,
                    series_uid=series.series_uid,
                )
            upstreams[series.series_uid] = RefusedSource(
                "https://invalid", origin=origin, error=exc
            )
            continue
        upstreams[series.series_uid] = DicomwebUpstream(
            base,
            origin=origin,
            headers={
                "Authorization": f"Bearer {access_token}",
                "KOS-SOPInstanceUID": record.sop_uid,
            },
            client=client,
            series_accept=accept_header(),
            policy=ConsumerErrorPolicy(),
            serve=serve,
            keep_headers=True,
        )
    return upstreams


class RemoteSourceOrigin(StudyOrigin):
    """A KOS-opened study: kept across the requests of its session (the access decision
    finds it again), so its Source's answers are asked once."""

    exports_to_pacs = True  # DB.VI-CO.42: the Consumer viewer exports what it opened

    def __init__(
        self,
        record: KosRecord,
        upstreams: dict[str, DicomwebUpstream],
        retriever: Retriever,
        *,
        max_part_bytes: int,
        frame_timeout: float,
        kos_bytes: bytes = b"",
        patient_id: str = "",
        patient_issuer: str = "",
    ) -> None:
        super().__init__(
            record.study_uid,
            retriever,
            institution=record.institution_name,
            patient_id=patient_id,
            patient_issuer=patient_issuer,
            max_part_bytes=max_part_bytes,
        )
        self.record = record
        self.upstreams = upstreams
        self._timeout = frame_timeout
        self._kos_bytes = kos_bytes
        #: What the searches need of each series' metadata, read once it came.
        self._first_rows: dict[str, Row] = {}
        self._ko_rows: dict[str, list[Row]] = {}
        refused = [u.error for u in upstreams.values() if isinstance(u, RefusedSource)]
        self.refusal = refused[0] if refused else None

    # -- upstreams and metadata ----------------------------------------------------------

    def upstream_for(self, series_uid: str) -> DicomwebUpstream:
        try:
            return self.upstreams[series_uid]
        except KeyError:
            raise NotFound(f"series {series_uid} is not in the KOS") from None

    def answer_scope(self, series_uid: str) -> str:
        """The KOS's instances of the series: the Source answers what that KOS grants, so
        sessions share a built answer only for the same instances (issue 16)."""
        series = next((s for s in self.record.series if s.series_uid == series_uid), None)
        uids = sorted(sop_uid for _, sop_uid in series.instances) if series is not None else []
        return hashlib.sha256("\n".join(uids).encode()).hexdigest()[:32]

    def _key(self, series_uid: str) -> tuple[str, str, str]:
        return (self.upstream_for(series_uid).origin, self.study_uid, series_uid)

    def ask_metadata(self, series_uid: str, *, from_instances: bool = True) -> asyncio.Task[bytes]:
        """The Source's series metadata, asked once and shared (a failed fetch is asked
        again by the next call). ``from_instances``: a Source without metadata (E205)
        gets it built from the instances' headers, which means pulling the series: not
        before the opening (the hand-over passes False)."""
        load = functools.partial(self._load_metadata, series_uid, from_instances)
        return self.retriever.ahead.ask(self._key(series_uid), load)

    def raw_series_metadata(self, series_uid: str) -> asyncio.Future[bytes]:
        return asyncio.shield(self.ask_metadata(series_uid))

    async def _rows(self, series_uid: str) -> list[Row]:
        raw = await asyncio.shield(self.ask_metadata(series_uid))
        rows: list[Row] = await asyncio.to_thread(json.loads, raw)
        return rows

    async def _load_metadata(self, series_uid: str, from_instances: bool) -> bytes:
        upstream = self.upstream_for(series_uid)
        retrieval = self.retrieval(series_uid, start=False)
        kos_series = next(s for s in self.record.series if s.series_uid == series_uid)
        retrieval.expected = len(kos_series.instances)
        try:
            raw = await upstream.get_json_bytes(
                series_path(self.study_uid, series_uid) + "/metadata"
            )
            try:
                rows = await asyncio.to_thread(json.loads, raw)
            except ValueError as exc:
                raise UpstreamProtocolError(f"series {series_uid} metadata: invalid JSON") from exc
        except SourceError as exc:
            if exc.code != "E205" or not from_instances:
                raise
            rows = await self._from_received_headers(retrieval)
            raw = (await asyncio.to_thread(json.dumps, rows)).encode()
        if not isinstance(rows, list):
            raise UpstreamProtocolError(f"series {series_uid} metadata is not a JSON array")
        if not rows:
            raise SourceError("E205", f"no metadata for {series_uid}")
        self._remember(series_uid, rows)
        return raw

    def _remember(self, series_uid: str, rows: list[Row]) -> None:
        if rows:
            self._first_rows[series_uid] = rows[0]
        if series_uid in self._ko_series():
            self._ko_rows[series_uid] = rows

    async def _from_received_headers(self, retrieval: SeriesRetrieval) -> list[Row]:
        retrieval.start()  # the headers come with the series itself
        try:
            await asyncio.wait_for(retrieval.done.wait(), self._timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout("series not received in time") from exc
        if not retrieval.headers:
            if retrieval.refused:  # every instance refused on arrival (E301 / E302)
                raise next(iter(retrieval.refused.values()))
            raise retrieval_error(retrieval)
        rows: list[Row] = await asyncio.to_thread(retrieval.json_headers)
        return rows

    async def _first_rows_of(self, series_uids: Sequence[str]) -> list[Row | BaseException]:
        async def first(series_uid: str) -> Row:
            raw = await asyncio.shield(self.ask_metadata(series_uid))
            if series_uid not in self._first_rows:  # fetched for an earlier origin object
                self._remember(series_uid, await asyncio.to_thread(json.loads, raw))
            return self._first_rows.get(series_uid, {})

        return list(
            await asyncio.gather(*(first(uid) for uid in series_uids), return_exceptions=True)
        )

    # -- searches --------------------------------------------------------------------------

    async def study_rows(self, query: Mapping[str, str]) -> list[Row]:
        """A QIDO study row built from the KOS (what the DMP published)."""
        record = self.record
        traits = record.traits
        modalities = sorted(
            {first_value(row, MODALITY) for row in self._first_rows.values()} - {""}
        )
        row: Row = {
            "0020000D": {"vr": "UI", "Value": [record.study_uid]},
            "00080050": {"vr": "SH", "Value": [record.accession_number]},
            "00100010": {
                "vr": "PN",
                "Value": [{"Alphabetic": f"{traits.birth_name}^{' '.join(traits.given_names)}"}],
            },
            # The practice's local id when it was found (DB.VI-CS.32), else the Source's.
            "00100020": {
                "vr": "LO",
                "Value": [self.patient_id or record.ins or record.local_patient_id or ""],
            },
            "00100030": {"vr": "DA", "Value": [traits.birth_date]},
            "00100040": {"vr": "CS", "Value": [traits.sex]},
            "00080080": {"vr": "LO", "Value": [record.institution_name]},
            "00201206": {"vr": "IS", "Value": [len(record.series)]},
            "00201208": {"vr": "IS", "Value": [sum(len(s.instances) for s in record.series)]},
        }
        if self.patient_issuer:
            row["00100021"] = {"vr": "LO", "Value": [self.patient_issuer]}
        if record.description:
            row["00081030"] = {"vr": "LO", "Value": [record.description[:64]]}
        if modalities:
            row["00080061"] = {"vr": "CS", "Value": modalities}
        patient_id = query.get("PatientID")
        if patient_id and patient_id != first_value(row, "00100020"):
            return []
        return [row]

    async def series_rows(self, query: Mapping[str, str]) -> list[Row]:
        """One row per KOS series, filled from its metadata when it comes."""
        record = self.record
        results = await self._first_rows_of([s.series_uid for s in record.series])
        rows = []
        for series, result in zip(record.series, results, strict=True):
            row: Row = {
                "0020000D": {"vr": "UI", "Value": [record.study_uid]},
                "0020000E": {"vr": "UI", "Value": [series.series_uid]},
                "00201209": {"vr": "IS", "Value": [len(series.instances)]},
            }
            if isinstance(result, dict) and result:
                for tag in SERIES_ROW_TAGS:
                    if tag in result:
                        row[tag] = result[tag]
            else:
                code = result.code if isinstance(result, ViewerError) else "E500"
                log.warning("series %s unavailable: %r", series.series_uid, result)
                row["0008103E"] = {"vr": "LO", "Value": [f"Série indisponible ({code})"]}
                row["00080060"] = {"vr": "CS", "Value": ["OT"]}
            rows.append(row)
        return rows

    async def instance_rows(self, series_uid: str | None, query: Mapping[str, str]) -> list[Row]:
        """Instance rows from the series metadata (a Source has no QIDO)."""
        series_uids = [series_uid] if series_uid else [s.series_uid for s in self.record.series]
        rows: list[Row] = []
        for uid in series_uids:
            self.upstream_for(uid)  # 404 for a series outside the KOS
            for row in await self._rows(uid):
                rows.append({tag: row[tag] for tag in INSTANCE_ROW_TAGS if tag in row})
        return rows

    # -- key images (DB.VI-CO.197) -----------------------------------------------------------
    # A KO series of the DRIM-M manifest that is a Key Image Note is retrieved from the Source
    # like any series; the index is then built as for the Source viewer
    # (bff/dicomweb/key_images.py), from the KOS's series and their metadata only.

    def _ko_series(self) -> list[str]:
        """The KOS's series made of Key Object Selection Documents only (KINs, maybe)."""
        return [
            s.series_uid
            for s in self.record.series
            if s.instances and all(c == key_images.KOS_SOP_CLASS_UID for c, _ in s.instances)
        ]

    async def key_images(self, series_uid: str | None = None) -> key_images.KeyImages:
        ko_uids = self._ko_series()
        if not ko_uids or (series_uid is not None and series_uid not in ko_uids):
            return key_images.EMPTY
        # Every series' metadata (asked since the hand-over): the KINs', and the others'
        # modality and number, which the virtual series row takes from the series it shows.
        series_uids = [s.series_uid for s in self.record.series]
        results = await self._first_rows_of(series_uids)
        for uid, result in zip(series_uids, results, strict=True):
            if uid in ko_uids and not isinstance(result, dict):
                log.warning("key images of KO series %s not read: %r", uid, result)
        rows = []
        for uid in series_uids:
            first = self._first_rows.get(uid, {})
            row: Row = {
                key_images.SERIES_UID: {"vr": "UI", "Value": [uid]},
                key_images.MODALITY: {
                    "vr": "CS",
                    "Value": ["KO" if uid in ko_uids else first_value(first, MODALITY) or "OT"],
                },
            }
            if key_images.SERIES_NUMBER in first:
                row[key_images.SERIES_NUMBER] = first[key_images.SERIES_NUMBER]
            rows.append(row)
        kos = {uid: self._ko_rows[uid] for uid in ko_uids if uid in self._ko_rows}
        return key_images.build_index(self.study_uid, rows, kos)

    # -- metadata, bulk data, thumbnails ------------------------------------------------------

    async def instance_metadata_rows(self, series_uid: str, sop_uids: Sequence[str]) -> list[Row]:
        """A Source offers no instance metadata: the rows come from the series'."""
        wanted = set(sop_uids)
        return [row for row in await self._rows(series_uid) if first_value(row, SOP_UID) in wanted]

    async def study_metadata_rows(self) -> list[Row]:
        rows: list[Row] = []
        for series in self.record.series:
            rows += await self._rows(series.series_uid)
        return rows

    async def bulk(
        self, series_uid: str, sop_uid: str, tag_path: str, accept: str
    ) -> tuple[str, bytes]:
        raise NotFound("a DRIMbox Source offers no bulk data other than the images")

    async def thumbnail(self, series_uid: str, sop_uid: str | None) -> tuple[str, bytes]:
        raise NotFound("a DRIMbox Source offers no rendered thumbnails")

    # -- opening, progress, export -------------------------------------------------------------

    def ask_ahead(self) -> None:
        """At the hand-over: the series metadata only, no image (issue 5, DB.VI-CO.39)."""
        if self.refusal is None:
            for series in self.record.series:
                self.ask_metadata(series.series_uid, from_instances=False)

    def start_at_grant(self, root: str, series_uid: str | None = None) -> None:
        """Pull from the Source now, images and metadata, while the browser loads OHIF
        (DB.VI-CS.17). Each series streams once its metadata is in
        (SeriesRetrieval.start_after), and OHIF's answer is built from it as OHIF will ask
        for it: same host, institution from the KOS.

        ``series_uid``: a series-level opening (DB.VI-CS.05): that series is pulled now;
        the others only have their metadata read (the series tree lists them), and each
        is pulled when the user displays it (:meth:`StudyOrigin.pull_on_demand`)."""
        self.pull_on_demand(
            s.series_uid for s in self.record.series if series_uid not in (None, s.series_uid)
        )
        if self.refusal is not None:
            return  # nothing is fetched from a Source we must not contact
        for series in self.record.series:
            uid = series.series_uid
            metadata = self.ask_metadata(uid)
            retrieval = self.retrieval(uid, start=False)
            if not self.waits_for_user(uid):
                retrieval.start_after(metadata)
            context = self.context(root, uid)
            self.retriever.answer(
                self.answer_key(uid, context),
                retrieval,
                functools.partial(asyncio.shield, metadata),
                context,
            )

    def progress(self) -> list[SeriesProgress]:
        out = []
        for series in self.record.series:
            upstream = self.upstreams[series.series_uid]
            found = self.retriever.find(upstream.origin, self.study_uid, series.series_uid)
            on_demand = self.waits_for_user(series.series_uid) and not (found and found.started)
            out.append(
                SeriesProgress(
                    series.series_uid, found, len(series.instances), self.refusal, on_demand
                )
            )
        return out

    async def export_plan(self) -> ExportPlan:
        """Every series of the KOS, from its Source, in series-number order when known,
        and the KOS itself as the Consumer received it."""
        series_uids = [s.series_uid for s in self.record.series]
        await self._first_rows_of(series_uids)

        def order(uid: str) -> tuple[int, str]:
            number = first_value(self._first_rows.get(uid, {}), "00200011")
            try:
                return int(float(number)), uid
            except ValueError:
                return 1 << 30, uid

        row = (await self.study_rows({}))[0]
        extra = (self._kos_bytes,) if self._kos_bytes else ()
        return ExportPlan(row, tuple(sorted(series_uids, key=order)), extra)
