"""The KOS archive of the DRIMbox Source (DB.SO.22): SQLAlchemy Core, SQLite or PostgreSQL.

Publishing a KOS stores its parsed record with the CDA id it was published with and the
location (PACS host name, ``*`` = the default location) that serves its images. The
viewer's access checks (DB.VI-SO.115 idCDA, DB.VI-SO.33 accession/study, DB.VI-SO.152
INS traits) read this archive, never the images. Unpublishing keeps the row (state
``unpublished``) for the audit trail; **callers granting access must check
``state == "published"``** (or pass ``state="published"`` to the finders).

Tables (portable SQL only: no SQLite- or PostgreSQL-specific syntax)::

    kos           one row per KOS SOP instance (sop_uid PK), INS traits, link, state
    kos_series    (kos_sop_uid FK, series_uid) PK, retrieve_url, position
    kos_instance  (kos_sop_uid, series_uid) FK, sop_uid; PK (kos_sop_uid, series_uid,
                  sop_uid), sop_class_uid, position
    kos_preparation  kos_sop_uid PK: the preparation of its served form (issue 16):
                  state, instances prepared / referenced, bytes, for which publication

Methods are synchronous and keep transactions short; async callers run them through a
thread (``starlette.concurrency.run_in_threadpool``).
"""

from __future__ import annotations

import builtins
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from bff.archive.kos import InsTraits, KosRecord, KosSeries
from bff.state.sql import make_engine

STATES = ("published", "unpublished")
DEFAULT_LOCATION = "*"

_OID = re.compile(r"^[0-9]+(?:\.[0-9]+)+$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_IN_CHUNK = 500  # bound on the size of an IN (...) list

metadata = MetaData()

kos_table = Table(
    "kos",
    metadata,
    Column("sop_uid", String(64), primary_key=True),
    Column("cda_id", String(128), nullable=False, index=True),
    Column("study_uid", String(64), nullable=False, index=True),
    Column("accession_number", String(), nullable=False),
    Column("accession_issuer", String(), nullable=False),
    Column("accession_issuer_type", String(), nullable=False),
    Column("birth_name", String(), nullable=False),
    Column("given_names", Text(), nullable=False),  # JSON array of strings
    Column("sex", String(1), nullable=False),
    Column("birth_date", String(8), nullable=False),
    Column("birthplace", String(5), nullable=False),
    Column("ins", String(15)),
    Column("ins_oid", String(64)),
    Column("local_patient_id", String()),
    Column("institution_name", String(), nullable=False),
    Column("institution_raw", String(), nullable=False),
    Column("is_key_image_note", Boolean(), nullable=False),
    Column("description", Text(), nullable=False),
    Column("location", String(253), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

kos_series_table = Table(
    "kos_series",
    metadata,
    Column("kos_sop_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("retrieve_url", Text()),
    Column("position", Integer(), nullable=False),
    PrimaryKeyConstraint("kos_sop_uid", "series_uid"),
    ForeignKeyConstraint(["kos_sop_uid"], ["kos.sop_uid"], ondelete="CASCADE"),
)

kos_instance_table = Table(
    "kos_instance",
    metadata,
    Column("kos_sop_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("sop_class_uid", String(64), nullable=False),
    Column("sop_uid", String(64), nullable=False),
    Column("position", Integer(), nullable=False),
    PrimaryKeyConstraint("kos_sop_uid", "series_uid", "sop_uid"),
    ForeignKeyConstraint(
        ["kos_sop_uid", "series_uid"],
        ["kos_series.kos_sop_uid", "kos_series.series_uid"],
        ondelete="CASCADE",
    ),
)

kos_preparation_table = Table(
    "kos_preparation",
    metadata,
    Column("kos_sop_uid", String(64), primary_key=True),
    #: the publication prepared (the KOS row's updated_at): a new one prepares anew
    Column("publication", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("prepared", Integer(), nullable=False),
    Column("total", Integer(), nullable=False),
    Column("nbytes", BigInteger(), nullable=False),
    Column("detail", String(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: States of a preparation (issue 16).
PREPARATION_STATES = ("preparing", "prepared", "partial", "full", "failed")


@dataclass(frozen=True)
class Preparation:
    """How far the served form of a published KOS's instances is prepared (issue 16)."""

    kos_sop_uid: str
    publication: str
    state: str
    prepared: int
    total: int
    nbytes: int
    detail: str
    updated_at: datetime


@dataclass(frozen=True)
class ArchivedKos:
    record: KosRecord
    cda_id: str
    location: str  # PACS host name, '*' = the default location
    state: str  # 'published' | 'unpublished'
    published_at: datetime  # UTC, first publication
    updated_at: datetime  # UTC, last publication or unpublication


def validate_cda_id(cda_id: str) -> str:
    """The CDA ``id/@root``: an OID (digits and dots)."""
    if not isinstance(cda_id, str) or len(cda_id) > 128 or not _OID.fullmatch(cda_id):
        raise ValueError("cda_id must be an OID (digits and dots)")
    return cda_id


def validate_location(location: str) -> str:
    """``*`` (the default location) or a host name; returned lower-case."""
    location = location.strip().lower()
    if location != DEFAULT_LOCATION and not _HOST.fullmatch(location):
        raise ValueError("location must be '*' or a host name")
    return location


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ArchiveStore:
    """The KOS archive. ``url``: ``sqlite:///path/archive.db`` or
    ``postgresql+psycopg://user:password@host/db``."""

    def __init__(self, url: str) -> None:
        # SQLite: directory made, WAL, foreign keys; every wait bounded (bff/state/sql.py).
        self._engine: Engine = make_engine(url)

    def create_schema(self) -> None:
        """Tables made directly (unit tests); deployments run the migrations
        (``drimbox-viewer db upgrade``, bff/migrations)."""
        metadata.create_all(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """One round trip to the database (readiness, bff/web/probes.py)."""
        with self._engine.connect() as conn:
            conn.execute(select(literal(1)))

    # -- writes ---------------------------------------------------------------------------

    def publish(self, record: KosRecord, *, cda_id: str, location: str) -> None:
        """Insert, or replace a KOS published again (same sop_uid): state 'published'."""
        values = _kos_values(record, validate_cda_id(cda_id), validate_location(location))
        _refuse_nul(record, values)
        try:
            self._publish_once(record, values)
        except IntegrityError:
            # A concurrent first publication of the same KOS won the insert: update it.
            self._publish_once(record, values)

    def _publish_once(self, record: KosRecord, values: dict[str, Any]) -> None:
        now = _now()
        sop_uid = record.sop_uid
        with self._engine.begin() as conn:
            exists = conn.execute(
                select(kos_table.c.sop_uid).where(kos_table.c.sop_uid == sop_uid).with_for_update()
            ).first()
            if exists is None:
                conn.execute(insert(kos_table).values(**values, published_at=now, updated_at=now))
            else:
                # Children first (explicit: no reliance on ON DELETE CASCADE support).
                conn.execute(
                    delete(kos_instance_table).where(kos_instance_table.c.kos_sop_uid == sop_uid)
                )
                conn.execute(
                    delete(kos_series_table).where(kos_series_table.c.kos_sop_uid == sop_uid)
                )
                conn.execute(
                    update(kos_table)
                    .where(kos_table.c.sop_uid == sop_uid)
                    .values(**values, updated_at=now)
                )
            _insert_series(conn, record)

    def unpublish(self, sop_uid: str) -> bool:
        """State -> 'unpublished' (the row stays for the audit trail); False if unknown."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(kos_table)
                .where(kos_table.c.sop_uid == sop_uid)
                .values(state="unpublished", updated_at=_now())
            )
            return bool(result.rowcount)

    # -- reads ----------------------------------------------------------------------------

    # -- preparation at publication (issue 16) ---------------------------------------------

    def set_preparation(self, preparation: Preparation) -> None:
        """Record (replace) the preparation of one KOS."""
        if preparation.state not in PREPARATION_STATES:
            raise ValueError(f"state must be one of {PREPARATION_STATES}")
        table = kos_preparation_table
        values = {
            "kos_sop_uid": preparation.kos_sop_uid,
            "publication": preparation.publication,
            "state": preparation.state,
            "prepared": preparation.prepared,
            "total": preparation.total,
            "nbytes": preparation.nbytes,
            "detail": preparation.detail[:500],
            "updated_at": _utc(preparation.updated_at),
        }
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.kos_sop_uid == preparation.kos_sop_uid))
            conn.execute(insert(table).values(**values))

    def drop_preparation(self, kos_sop_uid: str) -> None:
        table = kos_preparation_table
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.kos_sop_uid == kos_sop_uid))

    def preparations(self) -> dict[str, Preparation]:
        """Every KOS's preparation, by KOS SOP Instance UID."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(kos_preparation_table)).all()
        return {
            row.kos_sop_uid: Preparation(
                kos_sop_uid=row.kos_sop_uid,
                publication=row.publication,
                state=row.state,
                prepared=row.prepared,
                total=row.total,
                nbytes=row.nbytes,
                detail=row.detail,
                updated_at=_utc(row.updated_at),
            )
            for row in rows
        }

    def get(self, sop_uid: str) -> ArchivedKos | None:
        found = self._select([kos_table.c.sop_uid == sop_uid], limit=1)
        return found[0] if found else None

    def find_by_cda_id(
        self, cda_id: str, *, state: str | None = None
    ) -> builtins.list[ArchivedKos]:
        return self._select([kos_table.c.cda_id == cda_id], state=state)

    def find_by_study(
        self, study_uid: str, *, state: str | None = None
    ) -> builtins.list[ArchivedKos]:
        return self._select([kos_table.c.study_uid == study_uid], state=state)

    def list(self, *, state: str | None = None, limit: int = 1000) -> builtins.list[ArchivedKos]:
        return self._select([], state=state, limit=limit)

    def _select(
        self, where: builtins.list[Any], *, state: str | None = None, limit: int | None = None
    ) -> builtins.list[ArchivedKos]:
        if state is not None:
            if state not in STATES:
                raise ValueError(f"state must be one of {STATES}")
            where = [*where, kos_table.c.state == state]
        query = select(kos_table).where(*where)
        query = query.order_by(kos_table.c.published_at.desc(), kos_table.c.sop_uid)
        if limit is not None:
            query = query.limit(max(0, limit))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            series = _load_series(conn, [row.sop_uid for row in rows])
        return [_archived(row, series.get(row.sop_uid, ())) for row in rows]


# -- row <-> record --------------------------------------------------------------------------


def _kos_values(record: KosRecord, cda_id: str, location: str) -> dict[str, Any]:
    traits = record.traits
    return {
        "sop_uid": record.sop_uid,
        "cda_id": cda_id,
        "study_uid": record.study_uid,
        "accession_number": record.accession_number,
        "accession_issuer": record.accession_issuer,
        "accession_issuer_type": record.accession_issuer_type,
        "birth_name": traits.birth_name,
        "given_names": json.dumps(list(traits.given_names), ensure_ascii=False),
        "sex": traits.sex,
        "birth_date": traits.birth_date,
        "birthplace": traits.birthplace,
        "ins": record.ins,
        "ins_oid": record.ins_oid,
        "local_patient_id": record.local_patient_id,
        "institution_name": record.institution_name,
        "institution_raw": record.institution_raw,
        "is_key_image_note": record.is_key_image_note,
        "description": record.description,
        "location": location,
        "state": "published",
    }


def _refuse_nul(record: KosRecord, values: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): refuse it alike on every backend."""
    texts = [*values.values(), *record.traits.given_names, *(s.retrieve_url for s in record.series)]
    if any(isinstance(text, str) and "\x00" in text for text in texts):
        raise ValueError("the KOS has a text value containing a NUL character")


def _insert_series(conn: Connection, record: KosRecord) -> None:
    series_rows = [
        {
            "kos_sop_uid": record.sop_uid,
            "series_uid": s.series_uid,
            "retrieve_url": s.retrieve_url,
            "position": i,
        }
        for i, s in enumerate(record.series)
    ]
    instance_rows = [
        {
            "kos_sop_uid": record.sop_uid,
            "series_uid": s.series_uid,
            "sop_class_uid": sop_class_uid,
            "sop_uid": sop_uid,
            "position": j,
        }
        for s in record.series
        for j, (sop_class_uid, sop_uid) in enumerate(s.instances)
    ]
    if series_rows:
        conn.execute(insert(kos_series_table), series_rows)
    if instance_rows:
        conn.execute(insert(kos_instance_table), instance_rows)


def _chunks(items: builtins.list[str]) -> Iterable[builtins.list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _load_series(
    conn: Connection, kos_sop_uids: builtins.list[str]
) -> dict[str, tuple[KosSeries, ...]]:
    series_rows: builtins.list[Row[Any]] = []
    instance_rows: builtins.list[Row[Any]] = []
    for chunk in _chunks(kos_sop_uids):
        series_rows += conn.execute(
            select(kos_series_table)
            .where(kos_series_table.c.kos_sop_uid.in_(chunk))
            .order_by(kos_series_table.c.kos_sop_uid, kos_series_table.c.position)
        ).all()
        instance_rows += conn.execute(
            select(kos_instance_table)
            .where(kos_instance_table.c.kos_sop_uid.in_(chunk))
            .order_by(
                kos_instance_table.c.kos_sop_uid,
                kos_instance_table.c.series_uid,
                kos_instance_table.c.position,
            )
        ).all()
    instances: dict[tuple[str, str], builtins.list[tuple[str, str]]] = defaultdict(list)
    for row in instance_rows:
        instances[(row.kos_sop_uid, row.series_uid)].append((row.sop_class_uid, row.sop_uid))
    by_kos: dict[str, builtins.list[KosSeries]] = defaultdict(list)
    for row in series_rows:
        by_kos[row.kos_sop_uid].append(
            KosSeries(
                series_uid=row.series_uid,
                retrieve_url=row.retrieve_url,
                instances=tuple(instances[(row.kos_sop_uid, row.series_uid)]),
            )
        )
    return {sop_uid: tuple(series) for sop_uid, series in by_kos.items()}


def _archived(row: Row[Any], series: tuple[KosSeries, ...]) -> ArchivedKos:
    record = KosRecord(
        sop_uid=row.sop_uid,
        study_uid=row.study_uid,
        accession_number=row.accession_number,
        accession_issuer=row.accession_issuer,
        accession_issuer_type=row.accession_issuer_type,
        traits=InsTraits(
            birth_name=row.birth_name,
            given_names=tuple(json.loads(row.given_names)),
            sex=row.sex,
            birth_date=row.birth_date,
            birthplace=row.birthplace,
        ),
        ins=row.ins,
        ins_oid=row.ins_oid,
        local_patient_id=row.local_patient_id,
        institution_name=row.institution_name,
        institution_raw=row.institution_raw,
        series=series,
        is_key_image_note=bool(row.is_key_image_note),
        description=row.description,
    )
    return ArchivedKos(
        record=record,
        cda_id=row.cda_id,
        location=row.location,
        state=row.state,
        published_at=_utc(row.published_at),
        updated_at=_utc(row.updated_at),
    )
