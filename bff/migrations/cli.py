"""``drimbox-viewer db upgrade | current``: the schema's migrations, run by the operator
(before starting a new version), never at every start in production."""

from __future__ import annotations

import argparse
import sys

from bff.migrations import current, database_urls, head, upgrade
from bff.settings import Settings


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
