"""The audit trail on a real PostgreSQL (issue 15, item 5): the table refuses UPDATE,
DELETE and TRUNCATE (triggers, for a superuser too); a row altered by a superuser past
the triggers is found by ``drimbox-viewer audit verify``, which names its seq; writers
of two replicas keep one valid chain; and, through the real access path on two BFF
replicas (OIDC with the local provider, Orthanc), every event is written with a
pseudonymous actor and no token or patient identity value."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bff.__main__ import main
from bff.app import create_app
from bff.migrations import upgrade
from bff.services import services_of
from bff.state.audit_log import AuditLog
from tests.access import ScriptedBrowser
from tests.conftest import Pacs
from tests.integration.test_archive_postgres import database_url, postgres_url
from tests.integration.test_state_postgres import (
    LOCATION,
    Replicas,
    on,
    replicas,
    serving,
    view_images,
)
from tests.unit.test_audit import entries, raw

pytestmark = pytest.mark.integration

__all__ = ["database_url", "postgres_url", "replicas"]


@pytest.fixture
def audit_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def audit_log(audit_url: str) -> Iterator[AuditLog]:
    log = AuditLog(audit_url)
    yield log
    log.close()


#: SQL run as the cluster's superuser, past the application and its triggers.
superuser = raw


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_entry SET event = 'x'", "DELETE FROM audit_entry", "TRUNCATE audit_entry"],
)
def test_the_table_is_append_only(audit_log: AuditLog, audit_url: str, statement: str) -> None:
    audit_log.append(entries(3))
    with pytest.raises(Exception, match="append-only"):
        superuser(audit_url, statement)
    assert audit_log.verify().ok


def test_a_row_altered_past_the_triggers_is_named_by_verify(
    audit_log: AuditLog,
    audit_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    audit_log.append(entries(5))
    monkeypatch.setenv("DRIMBOX_AUDIT_URL", audit_url)
    assert main(["audit", "verify"]) == 0
    superuser(
        audit_url,
        "SET session_replication_role = replica",  # triggers off: a superuser's power
        "UPDATE audit_entry SET entry = replace(entry, '10:00:03', '11:00:03') WHERE seq = 4",
    )
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at seq 4: its content does not match its hash" in capsys.readouterr().err
    superuser(
        audit_url,
        "SET session_replication_role = replica",
        "DELETE FROM audit_entry WHERE seq = 2",
    )
    assert audit_log.verify().broken_seq == 2


def test_concurrent_writers_of_two_replicas_keep_one_chain(audit_url: str) -> None:
    logs = [AuditLog(audit_url), AuditLog(audit_url)]  # two replicas' engines

    def write(log: AuditLog, offset: int) -> None:
        for i in range(40):
            log.append(entries(1, offset + i))

    threads = [threading.Thread(target=write, args=(logs[n % 2], 100 * n)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = logs[0].verify()
    assert result.ok and result.entries == 160
    for log in logs:
        log.close()


def test_the_access_path_on_two_replicas_is_audited_without_identity_or_token(
    replicas: Replicas, pacs: Pacs, audit_url: str, tmp_path: Path
) -> None:
    key = tmp_path / "audit.key"
    key.write_bytes(b"an-audit-key-of-32-bytes-or-more!")
    settings = dataclasses.replace(replicas.settings, audit_url=audit_url, audit_key_file=str(key))
    a = create_app(settings)
    b = create_app(dataclasses.replace(settings, port=replicas.ports[1]))
    link = replicas.stack.viewer_link(pacs.study, LOCATION)
    browser = ScriptedBrowser()
    try:
        with serving((a, replicas.ports[0]), (b, replicas.ports[1])):
            assert browser.sign_in(link, "psc", "dr.radiologue").status_code == 303  # on A
            base_b = f"http://{LOCATION}:{replicas.ports[1]}"
            view_images(browser, base_b, pacs)
            zipped = browser.get(f"{base_b}/api/download/{pacs.study.study_uid}")
            assert zipped.status_code == 200 and zipped.content[:2] == b"PK"

            def open_links(port: int) -> None:
                other = ScriptedBrowser()
                try:
                    for _ in range(10):
                        assert other.open_link(on(port, link)).status_code == 200
                finally:
                    other.close()

            threads = [threading.Thread(target=open_links, args=(p,)) for p in replicas.ports * 2]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            session = services_of(a).sessions.load(
                browser.client.cookies.get(services_of(a).sessions.cookie_name), touch=False
            )
            assert session is not None and session.subject
            tokens = [str(v) for v in session.tokens.values()]
            for app in (a, b):
                handler = services_of(app).audit_trail.handler
                assert handler is not None
                assert handler.wait_written(30)
            actor = services_of(b).audit_trail.pseudonymizer.actor("psc", session.subject)
    finally:
        browser.close()
    log = AuditLog(audit_url)
    try:
        assert log.verify().ok
        written = log.query(limit=10_000)
    finally:
        log.close()
    events = [e["event"] for e in written]
    assert events.count("link_opened") >= 41
    granted = [e for e in written if e["event"] == "access_granted"]
    downloaded = [e for e in written if e["event"] == "study_downloaded"]
    assert len(granted) == 1 and len(downloaded) == 1
    # The same person on both replicas: one pseudonym (the key is shared), not the subject.
    assert granted[0]["actor"] == downloaded[0]["actor"] == actor
    assert granted[0]["session"] == downloaded[0]["session"]
    assert granted[0]["client_ip"] == "127.0.0.1" and "request_id" in granted[0]
    text_of_all = json.dumps(written, ensure_ascii=False)
    for value in [session.subject, *tokens, "PAT-TROIS", "DOMINIQUE", "279035121518989"]:
        assert value not in text_of_all, value
    for value in ("19790328", "1979-03-28", "RADIOLOGUE", "Camille"):
        assert value not in text_of_all, value
