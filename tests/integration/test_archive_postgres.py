"""The KOS archive (DB.SO.22) on a real PostgreSQL server, not only SQLite.

``bff/archive/store.py`` promises "SQLite by default, PostgreSQL by URL": the store round
trip of tests/unit/test_archive.py runs here unchanged against a throw-away cluster
(tests/integration/pg.py), plus what only a real server exercises: timestamptz columns
and a non-UTC session time zone, the row lock and the IntegrityError retry of concurrent
first publications. The access checks (DB.VI-SO.115 idCDA, DB.VI-SO.33 accession/study,
DB.VI-SO.152 INS traits) read this archive, whatever its backend.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from bff.archive.kos import parse_kos
from bff.archive.store import ArchiveStore
from tests.integration.pg import temporary_postgres
from tests.unit import test_archive as sqlite_tests
from tests.unit.test_archive import CDA_ID, make_kos

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with temporary_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture()
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database per test on the module's cluster, dropped afterwards."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"archive_{next(_database_numbers)}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


_database_numbers = itertools.count(1)


@pytest.fixture()
def store(database_url: str) -> Iterator[ArchiveStore]:
    archive = ArchiveStore(database_url)
    archive.create_schema()
    archive.create_schema()  # idempotent on PostgreSQL too
    yield archive
    archive.close()


def test_schema_is_created_on_postgresql(store: ArchiveStore, database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert engine.dialect.name == "postgresql"
        inspector = inspect(engine)
        assert {"kos", "kos_series", "kos_instance"} <= set(inspector.get_table_names())
        columns = {c["name"]: c["type"] for c in inspector.get_columns("kos")}
        assert getattr(columns["published_at"], "timezone", False) is True  # timestamptz
        foreign = inspector.get_foreign_keys("kos_instance")
        assert foreign and foreign[0]["referred_table"] == "kos_series"
    finally:
        engine.dispose()


# The SQLite round trip, unchanged, against PostgreSQL.


def test_store_round_trip(store: ArchiveStore) -> None:
    sqlite_tests.test_store_round_trip(store)


def test_store_republish_unpublish_and_finders(store: ArchiveStore) -> None:
    sqlite_tests.test_store_republish_unpublish_and_finders(store)


def test_preparation_round_trip(store: ArchiveStore) -> None:
    sqlite_tests.test_preparation_round_trip(store)  # issue 16; a BIGINT byte count


def test_timestamps_are_utc_whatever_the_session_time_zone(database_url: str) -> None:
    # psycopg returns timestamptz in the session time zone: the store must hand back UTC.
    paris = make_url(database_url).update_query_dict({"options": "-c TimeZone=Europe/Paris"})
    archive = ArchiveStore(paris.render_as_string(hide_password=False))
    archive.create_schema()
    try:
        record = parse_kos(make_kos())
        before = datetime.now(UTC)
        archive.publish(record, cda_id=CDA_ID, location="*")
        first = archive.get(record.sop_uid)
        assert first is not None
        for stamp in (first.published_at, first.updated_at):
            assert stamp.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= stamp <= datetime.now(UTC)

        archive.publish(record, cda_id="1.2.3.10", location="*")  # re-published in place
        again = archive.get(record.sop_uid)
        assert again is not None and again.cda_id == "1.2.3.10"
        assert again.published_at == first.published_at  # first publication kept
        assert again.updated_at >= first.updated_at
        assert len(archive.list()) == 1

        assert archive.unpublish(record.sop_uid) is True
        gone = archive.get(record.sop_uid)
        assert gone is not None and gone.state == "unpublished"
        assert gone.updated_at >= again.updated_at and gone.updated_at.utcoffset() == timedelta(0)
    finally:
        archive.close()


def test_concurrent_first_publications_of_one_kos(store: ArchiveStore) -> None:
    # Two writers miss each other's row (FOR UPDATE locks no absent row): the loser's
    # INSERT hits the primary key, and publish() retries it as an update.
    record = parse_kos(make_kos())
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def publish(cda_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            store.publish(record, cda_id=cda_id, location="*")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [
        threading.Thread(target=publish, args=(f"1.2.3.{n}",), daemon=True) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    [entry] = store.list()
    assert entry.record == record  # series and instances not duplicated nor lost
    assert entry.cda_id in {f"1.2.3.{n}" for n in range(4)} and entry.state == "published"


def test_cluster_is_stopped_even_when_the_test_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), temporary_postgres(tmp_path) as url:
        port = make_url(url).port
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        raise RuntimeError("boom")
    assert port is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert "database system is shut down" in (tmp_path / "postgres-server.log").read_text()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_nul_in_a_text_value_is_refused_on_every_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # PostgreSQL refuses NUL in text (psycopg DataError, a 500 for the admin API) where
    # SQLite stores it: the store refuses it first, as a ValueError (400 / CLI error).
    if backend == "postgresql":
        url: str = request.getfixturevalue("database_url")
    else:
        url = f"sqlite:///{tmp_path / 'archive.db'}"
    archive = ArchiveStore(url)
    archive.create_schema()
    try:
        ds = make_kos()
        ds.InstitutionName = "Clinique\x00Ambroise^^^^^^^^^101235555"
        record = parse_kos(ds)
        assert "\x00" in record.institution_name
        with pytest.raises(ValueError, match="NUL"):
            archive.publish(record, cda_id=CDA_ID, location="*")
        assert archive.list() == []
        archive.publish(parse_kos(make_kos()), cda_id=CDA_ID, location="*")  # still usable
        assert len(archive.list()) == 1
    finally:
        archive.close()
