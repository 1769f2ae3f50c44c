"""``drimbox-viewer db upgrade | current``: the schema's migrations, run by the operator
(before starting a new version), never at every start in production; ``drimbox-viewer
audit query | verify | actor``: the audit table (bff/state/audit_log.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from bff.audit import Pseudonymizer
from bff.migrations import current, database_urls, head, upgrade
from bff.settings import Settings
from bff.state.audit_log import AuditLog


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_upgrade(args: argparse.Namespace) -> int:
    for url in database_urls(Settings.from_env()):
        upgrade(url, args.revision)
        print(f"{_redacted(url)}: {current(url)}")
    return 0


def cmd_current(_args: argparse.Namespace) -> int:
    """Each database's revision; exit status 1 when one is not at the head."""
    needed, behind = head(), False
    for url in database_urls(Settings.from_env()):
        found = current(url)
        behind = behind or found != needed
        print(f"{_redacted(url)}: {found or 'none'} (head {needed})")
    if behind:
        print("run 'drimbox-viewer db upgrade'", file=sys.stderr)
    return 1 if behind else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema migrations (DRIMBOX_ARCHIVE_URL, _STATE_URL)")
    commands = db.add_subparsers(dest="db_command", required=True)
    up = commands.add_parser("upgrade", help="migrate every database to the head")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_upgrade)
    cur = commands.add_parser("current", help="each database's revision (1: not at head)")
    cur.set_defaults(func=cmd_current)


# -- drimbox-viewer audit query | verify | actor -------------------------------------------------


def _audit_log() -> AuditLog:
    settings = Settings.from_env()
    if not settings.audit_url:
        raise SystemExit("DRIMBOX_AUDIT_URL is empty: no audit table to read")
    return AuditLog(settings.audit_url)


def _utc(value: str) -> str:
    """An ISO date or time (naive: UTC) as the entries' times are written."""
    stamp = dt.datetime.fromisoformat(value)
    stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    return stamp.isoformat(timespec="microseconds")


def cmd_audit_query(args: argparse.Namespace) -> int:
    """Matching entries as JSON lines, oldest first."""
    log = _audit_log()
    try:
        entries = log.query(
            since=_utc(args.since) if args.since else None,
            until=_utc(args.until) if args.until else None,
            event=args.event,
            study_uid=args.study,
            actor=args.actor,
            limit=args.limit,
        )
    finally:
        log.close()
    for entry in entries:
        print(json.dumps(entry, ensure_ascii=False, sort_keys=True))
    return 0


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    """Exit 0 when the chain holds (and print the head to record elsewhere), 1 with the
    first broken seq otherwise."""
    log = _audit_log()
    try:
        result = log.verify()
    finally:
        log.close()
    if result.ok:
        print(f"OK: {result.entries} entries, head seq {result.head_seq} hash {result.head_hash}")
        return 0
    print(f"BROKEN at seq {result.broken_seq}: {result.reason}", file=sys.stderr)
    return 1


def cmd_audit_actor(args: argparse.Namespace) -> int:
    """The pseudonym a subject is audited under (an investigation: needs the key)."""
    settings = Settings.from_env()
    if not settings.audit_key_file:
        raise SystemExit("DRIMBOX_AUDIT_KEY_FILE is empty: pseudonyms are not reproducible")
    print(Pseudonymizer.from_file(settings.audit_key_file).actor(args.provider, args.subject))
    return 0


def register_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit table (DRIMBOX_AUDIT_URL): query, verify")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    query = commands.add_parser("query", help="entries as JSON lines, oldest first")
    query.add_argument("--since", help="ISO date or time (UTC unless it says)")
    query.add_argument("--until", help="ISO date or time, excluded")
    query.add_argument("--event", help="e.g. access_granted, source_retrieve, study_downloaded")
    query.add_argument("--study", help="StudyInstanceUID")
    query.add_argument("--actor", help="a pseudonym ('drimbox-viewer audit actor')")
    query.add_argument("--limit", type=int, default=1000)
    query.set_defaults(func=cmd_audit_query)
    verify = commands.add_parser("verify", help="check the hash chain (1: broken, and where)")
    verify.set_defaults(func=cmd_audit_verify)
    actor = commands.add_parser("actor", help="the pseudonym of a provider's subject")
    actor.add_argument("provider", choices=["psc", "fcp", "fc"])
    actor.add_argument("subject")
    actor.set_defaults(func=cmd_audit_actor)
