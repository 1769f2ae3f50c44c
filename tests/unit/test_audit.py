"""The audit trail for a hospital (issue 15, item 5) on SQLite: the hash chain verifies,
a row altered or removed is found and named by its seq, the writer never makes a request
wait for the database (bounded queue), the Source API's durable write fails closed, the
actor is a pseudonym (HMAC), and the CLI queries and verifies.
tests/integration/test_audit_postgres.py: the same on PostgreSQL with its triggers,
concurrent replicas, and the real access path."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bff.__main__ import main
from bff.audit import AUDIT_LOGGER, Pseudonymizer, audit, bind, reset
from bff.errors import StateUnavailable
from bff.migrations import upgrade
from bff.state.audit_log import AuditLog, AuditTrail, SqlAuditHandler


def entries(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "time": f"2026-12-05T10:00:{i:02d}.000000+00:00",
            "event": "access_granted" if i % 2 else "link_opened",
            "study_uid": f"1.2.3.{i % 3}",
            "actor": "a" * 32,
            "code": f"E42{i % 5}",
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def url(tmp_path: Path) -> str:
    made = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    upgrade(made)
    return made


@pytest.fixture
def audit_log(url: str) -> Iterator[AuditLog]:
    log = AuditLog(url)
    yield log
    log.close()


def raw(url: str, *statements: str) -> None:
    """SQL as someone with the database file in hand (past the app, past the triggers)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def unreachable_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://drimbox@127.0.0.1:{port}/drimbox"


def test_the_chain_verifies_and_entries_are_queried(audit_log: AuditLog) -> None:
    assert audit_log.append(entries(5)) == 5
    assert audit_log.append(entries(5, 5)) == 10
    result = audit_log.verify()
    assert result.ok and result.entries == 10 and result.head_seq == 10
    assert [e["seq"] for e in audit_log.query(event="link_opened")] == [1, 3, 5, 7, 9]
    assert [e["seq"] for e in audit_log.query(study_uid="1.2.3.1")] == [2, 5, 8]
    since = audit_log.query(since="2026-12-05T10:00:08.000000+00:00")
    assert [e["seq"] for e in since] == [9, 10]


def test_an_update_or_delete_is_refused_by_the_table(audit_log: AuditLog, url: str) -> None:
    audit_log.append(entries(2))
    for statement in ("UPDATE audit_entry SET event = 'x'", "DELETE FROM audit_entry"):
        with pytest.raises(Exception, match="append-only"):
            raw(url, statement)


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        ("UPDATE audit_entry SET entry = replace(entry, 'E422', 'E420') WHERE seq = 3", 3, "hash"),
        ("UPDATE audit_entry SET event = 'logout' WHERE seq = 4", 4, "columns"),
        ("DELETE FROM audit_entry WHERE seq = 2", 2, "missing"),
        ("DELETE FROM audit_entry WHERE seq = 6", 6, "removed"),
    ],
)
def test_a_row_altered_or_removed_is_named_by_its_seq(
    audit_log: AuditLog, url: str, tamper: str, seq: int, reason: str
) -> None:
    audit_log.append(entries(6))
    raw(url, "DROP TRIGGER audit_entry_no_update", "DROP TRIGGER audit_entry_no_delete", tamper)
    result = audit_log.verify()
    assert not result.ok and result.broken_seq == seq and reason in result.reason


def test_the_cli_verifies_and_queries(
    audit_log: AuditLog,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DRIMBOX_AUDIT_URL", url)
    audit_log.append(entries(4))
    assert main(["audit", "verify"]) == 0
    assert "OK: 4 entries" in capsys.readouterr().out
    assert main(["audit", "query", "--event", "access_granted", "--since", "2026-12-05"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all('"event": "access_granted"' in line for line in lines)
    raw(
        url,
        "DROP TRIGGER audit_entry_no_update",
        "UPDATE audit_entry SET actor = NULL WHERE seq = 3",
    )
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at seq 3" in capsys.readouterr().err


def test_entries_carry_the_request_context_with_pseudonyms(audit_log: AuditLog) -> None:
    pseudonyms = Pseudonymizer(b"k" * 32)
    trail = AuditTrail(pseudonyms, audit_log, SqlAuditHandler(audit_log, sink := object()))
    assert trail.handler is not None
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.addHandler(trail.handler)
    logger.setLevel(logging.INFO)
    token = bind(client_ip="192.0.2.7", request_id="req-1", sink=sink)
    try:
        trail.bind_session("the-session-id", "psc", "the-psc-subject")
        audit("access_granted", study_uid="1.2.3")
        bind(sink=object())  # another app's request: not this table's
        audit("link_opened", study_uid="9.9.9")
    finally:
        reset(token)
        logger.removeHandler(trail.handler)
    assert trail.handler.wait_written(10)
    trail.handler.stop()
    (entry,) = audit_log.query()
    actor = pseudonyms.actor("psc", "the-psc-subject")
    assert entry["actor"] == actor and len(actor or "") == 32
    assert entry["session"] == pseudonyms.session("the-session-id")
    assert (entry["client_ip"], entry["request_id"]) == ("192.0.2.7", "req-1")
    assert "the-psc-subject" not in str(entry) and "the-session-id" not in str(entry)
    assert Pseudonymizer(b"o" * 32).actor("psc", "the-psc-subject") != actor


def test_a_database_outage_never_blocks_the_request_and_the_queue_is_bounded() -> None:
    """The handler only queues (the request goes on); what does not fit is counted."""
    audit_log = AuditLog(unreachable_url())
    handler = SqlAuditHandler(audit_log, sink := object(), max_queued=2)
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.addHandler(handler)
    token = bind(sink=sink)
    try:
        for _ in range(4):  # the writer holds one, retrying; two wait; the last is dropped
            audit("link_opened", study_uid="1.2.3")
    finally:
        reset(token)
        logger.removeHandler(handler)
    assert handler.dropped >= 1
    assert not handler.wait_written(0)  # kept, not lost: written when the database is back
    handler.stop(timeout=0)
    audit_log.close()


def test_a_durable_entry_fails_closed_when_the_table_cannot_take_it() -> None:
    audit_log = AuditLog(unreachable_url())
    trail = AuditTrail(Pseudonymizer.ephemeral(), audit_log)
    with pytest.raises(StateUnavailable) as raised:
        asyncio.run(trail.durable("source_retrieve", study_uid="1.2.3"))
    assert raised.value.status == 503 and raised.value.code == "E508"
    audit_log.close()
