"""Alembic migrations (issue 15, item 1) on SQLite: an empty database upgraded to the
head has exactly the models' schema; a database made by ``create_all`` before the
migrations is adopted; ``drimbox-viewer db upgrade|current``; production refuses to
start on a database that is behind (and never changes the schema itself).
tests/integration/test_state_postgres.py runs the same checks on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from starlette.testclient import TestClient

from bff.__main__ import main
from bff.app import create_app
from bff.archive.kos import parse_kos
from bff.archive.store import ArchiveStore
from bff.migrations import SchemaNotCurrent, current, head, require_head, upgrade
from bff.migrations.env_metadata import target_metadata
from bff.settings import Settings
from tests.unit.test_archive import CDA_ID, make_kos


def schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            return list(compare_metadata(context, target_metadata))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_an_empty_database_upgraded_has_the_models_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert current(url) is None
    upgrade(url)
    assert current(url) == head()
    assert schema_diff(url) == []
    upgrade(url)  # idempotent
    require_head(url)


def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    archive = ArchiveStore(url)
    archive.create_schema()
    ds = make_kos()
    archive.publish(parse_kos(ds), cda_id=CDA_ID, location="*")
    archive.close()
    upgrade(url)
    assert current(url) == head() and schema_diff(url) == []
    archive = ArchiveStore(url)
    assert archive.get(ds.SOPInstanceUID) is not None  # its rows kept
    archive.close()


def test_a_database_behind_is_refused_and_the_cli_upgrades_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'behind.sqlite'}"
    upgrade(url, "0001")
    with pytest.raises(SchemaNotCurrent, match="drimbox-viewer db upgrade"):
        require_head(url)
    assert "state_entry" not in inspect(create_engine(url)).get_table_names()
    monkeypatch.setenv("DRIMBOX_ARCHIVE_URL", url)
    monkeypatch.setenv("DRIMBOX_STATE_URL", "memory")
    assert main(["db", "current"]) == 1
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "current"]) == 0
    assert f"{head()} (head {head()})" in capsys.readouterr().out
    require_head(url)


def test_production_does_not_start_on_a_database_behind(tmp_path: Path) -> None:
    archive_url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    upgrade(archive_url)
    upgrade(state_url, "0001")  # the state's database not migrated to the head
    key = tmp_path / "state.key"
    key.write_bytes(b"k" * 32)
    settings = Settings.from_env(
        {},
        mode="production",
        session_secret="s" * 40,
        psc_issuer="https://psc.example.fr/auth/realms/esante-wallet",
        fcp_issuer="https://fcp.example.fr",
        locations="vi1.example.fr=https://pacs.example.fr/dicom-web",
        archive_url=archive_url,
        state_url=state_url,
        state_key_file=str(key),
        audit_url=archive_url,
        audit_key_file=str(key),
        audit_log=tmp_path / "audit.jsonl",
        frame_disk_cache_dir=str(tmp_path / "frames"),
        prepared_dir=str(tmp_path / "prepared"),
    )
    with pytest.raises(SchemaNotCurrent, match="0001"), TestClient(create_app(settings)):
        pass
    assert current(state_url) == "0001"  # production never migrates at start
