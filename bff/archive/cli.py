"""``drimbox-viewer kos ...``: publish, unpublish and list KOS of the archive (DB.SO.22).

    kos add FILE --cda-id OID [--location HOST]   publish (or publish again) a KOS file
    kos remove SOP_UID                            unpublish (the row stays, for the audit)
    kos list [--state S] [--show-identity]        a table of the archive, with how far
                                                  each KOS's images are prepared (issue 16)

``--location`` is the host name of the viewer location whose PACS holds the images
(e.g. ``vi1.999.mesimagesmedicales.fr``); the default ``*`` means the default location.
The listing shows no patient identity unless ``--show-identity`` is given. The archive is
``DRIMBOX_ARCHIVE_URL``; exit status 0 on success, 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bff.archive.kos import KosError, read_kos
from bff.archive.store import DEFAULT_LOCATION, STATES, ArchivedKos, ArchiveStore, Preparation
from bff.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kos = subparsers.add_parser("kos", help="manage the KOS archive (publication, listing)")
    sub = kos.add_subparsers(dest="kos_command", required=True)

    add = sub.add_parser("add", help="publish a KOS file with the id of its CDA")
    add.add_argument("file", type=Path, metavar="FILE", help="DICOM Part-10 KOS file")
    add.add_argument("--cda-id", required=True, metavar="OID", help="CDA id/@root (an OID)")
    add.add_argument(
        "--location",
        default=DEFAULT_LOCATION,
        metavar="HOST",
        help="viewer location (host name) serving the images; '*' (default) = default one",
    )
    add.set_defaults(func=cmd_add)

    remove = sub.add_parser("remove", help="unpublish a KOS (kept in the archive for audit)")
    remove.add_argument("sop_uid", metavar="SOP_UID")
    remove.set_defaults(func=cmd_remove)

    listing = sub.add_parser("list", help="list the archive")
    listing.add_argument("--state", choices=STATES, default=None)
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument(
        "--show-identity",
        action="store_true",
        help="also show the patient identity (INS traits, INS, IPP): sensitive",
    )
    listing.set_defaults(func=cmd_list)


def _store() -> ArchiveStore:
    store = ArchiveStore(Settings.from_env().archive_url)
    store.create_schema()
    return store


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_add(args: argparse.Namespace) -> int:
    try:
        record = read_kos(args.file)
    except KosError as exc:
        return _fail(f"{args.file}: {exc}")
    store = _store()
    try:
        store.publish(record, cda_id=args.cda_id, location=args.location)
    except ValueError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    print(f"published {record.sop_uid} (study {record.study_uid}, CDA {args.cda_id})")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    store = _store()
    try:
        found = store.unpublish(args.sop_uid)
    finally:
        store.close()
    if not found:
        return _fail(f"unknown KOS SOP instance UID {args.sop_uid}")
    print(f"unpublished {args.sop_uid}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        entries = store.list(state=args.state, limit=args.limit)
        preparations = store.preparations()
    finally:
        store.close()
    print(format_table(entries, show_identity=args.show_identity, preparations=preparations))
    return 0


COLUMNS = (
    "SOP UID",
    "STUDY UID",
    "ACCESSION^ISSUER",
    "CDA ID",
    "LOCATION",
    "STATE",
    "PREPARED",
    "INSTITUTION",
)
IDENTITY_COLUMNS = ("BIRTH NAME", "GIVEN NAMES", "SEX", "BORN", "BIRTHPLACE", "INS", "IPP")


def _cell(value: str) -> str:
    # Values come from DICOM files: no control characters reach the terminal.
    return "".join(ch if ch.isprintable() else "?" for ch in value)


def prepared_cell(preparation: Preparation | None) -> str:
    """How far the served form of a KOS's instances is prepared (issue 16), e.g.
    ``prepared 1300/1300``, ``preparing 125/1300``, ``full 800/1300``; '-' for none."""
    if preparation is None:
        return "-"
    return f"{preparation.state} {preparation.prepared}/{preparation.total}"


def _row(entry: ArchivedKos, show_identity: bool, preparation: Preparation | None) -> list[str]:
    record = entry.record
    row = [
        record.sop_uid,
        record.study_uid,
        f"{record.accession_number}^{record.accession_issuer}",
        entry.cda_id,
        entry.location,
        entry.state,
        prepared_cell(preparation) if entry.state == "published" else "-",
        record.institution_name,
    ]
    if show_identity:
        traits = record.traits
        row += [
            traits.birth_name,
            " ".join(traits.given_names),
            traits.sex,
            traits.birth_date,
            traits.birthplace,
            record.ins or "",
            record.local_patient_id or "",
        ]
    return [_cell(value) for value in row]


def format_table(
    entries: Sequence[ArchivedKos],
    *,
    show_identity: bool = False,
    preparations: Mapping[str, Preparation] | None = None,
) -> str:
    """A plain-text table, one KOS a line; patient identity only with ``show_identity``."""
    header = list(COLUMNS) + (list(IDENTITY_COLUMNS) if show_identity else [])
    found = preparations or {}
    rows = [header] + [
        _row(entry, show_identity, found.get(entry.record.sop_uid)) for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not entries:
        lines.append("(no KOS)")
    return "\n".join(lines)
