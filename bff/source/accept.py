"""The Consumer's Accept header for a WADO-RS instance retrieval, and the syntax chosen.

A DRIM-M Consumer lists ``multipart/related; type="application/dicom";
transfer-syntax=<uid>; q=<q>`` ranges for 1.2.840.10008.1.2.4.70, .4.80, .4.91, .4.50,
.4.51, .4.100, .4.101, .4.102, .4.103 and 1.2.840.10008.1.2.1 (q values vary). Parameters
may be quoted or not, in any order; q defaults to 1; ``transfer-syntax=*`` means any;
a ``multipart/related`` range without transfer-syntax means Explicit VR Little Endian
(PS3.18 8.7.3.5.2); ``*/*``, ``multipart/*`` and a missing Accept mean any syntax.
A more specific range wins over ``*`` (so ``q=0`` on a syntax refuses it).

What the Source can produce for one instance is its stored syntax as is, or Explicit VR
Little Endian decoded losslessly from it (:mod:`bff.source.native`). :meth:`choose` takes
the one with the higher q (a tie keeps the stored bytes). When the Consumer accepts
neither, the stored syntax is sent anyway: HTTP lets a server disregard Accept
(RFC 9110 12.5.1) and 406 is reserved by DRIM-M for the patient id check (E209); the
Consumer then reports E302 ("syntaxe de transfert non proposée"), which is exactly the
case that code exists for.
"""

from __future__ import annotations

from dataclasses import dataclass

from bff.dicomweb.multipart import MultipartError, parse_content_type

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
ANY = "*"
DICOM = "application/dicom"


@dataclass(frozen=True)
class AcceptedSyntaxes:
    """Accepted transfer syntaxes (or ``*``) with their q, best first."""

    ranked: tuple[tuple[str, float], ...]

    def quality(self, transfer_syntax_uid: str) -> float:
        """q of this syntax: its own range if listed (highest one), else ``*``'s, else 0."""
        own = [q for ts, q in self.ranked if ts == transfer_syntax_uid]
        if own:
            return max(own)
        return max((q for ts, q in self.ranked if ts == ANY), default=0.0)

    def accepts(self, transfer_syntax_uid: str) -> bool:
        return self.quality(transfer_syntax_uid) > 0

    def choose(self, stored_uid: str, *, can_decode: bool) -> str:
        """The syntax to send an instance stored in ``stored_uid`` (see the module doc)."""
        stored_q = self.quality(stored_uid)
        native_q = self.quality(EXPLICIT_VR_LE) if can_decode else 0.0
        if native_q > stored_q:
            return EXPLICIT_VR_LE
        return stored_uid

    @property
    def only(self) -> str | None:
        """The one syntax every part will have when the Consumer accepts exactly one and
        it is not ``*``; None otherwise (each part then says its own)."""
        accepted = {ts for ts, q in self.ranked if q > 0}
        if len(accepted) == 1:
            (uid,) = accepted
            return None if uid == ANY else uid
        return None


def parse_accept(values: list[str]) -> AcceptedSyntaxes:
    """Parse every Accept header of the request; unusable ranges are ignored."""
    ranges = [r for value in values for r in _split_ranges(value) if r.strip()]
    if not ranges:
        return AcceptedSyntaxes(((ANY, 1.0),))
    found: list[tuple[int, str, float]] = []
    for index, text in enumerate(ranges):
        parsed = _parse_range(text)
        if parsed is not None:
            found.append((index, *parsed))
    found.sort(key=lambda item: (-item[2], item[0]))  # q descending, stable
    return AcceptedSyntaxes(tuple((ts, q) for _, ts, q in found))


def _parse_range(text: str) -> tuple[str, float] | None:
    try:
        media_type, params = parse_content_type(text)
    except MultipartError:
        return None
    q = _quality(params.pop("q", "1"))
    if q is None:
        return None
    if media_type in ("*/*", "multipart/*"):
        return ANY, q
    if media_type != "multipart/related":
        return None
    if params.get("type", DICOM).strip().lower() != DICOM:
        return None
    syntax = params.get("transfer-syntax", EXPLICIT_VR_LE).strip()
    if not syntax or (syntax != ANY and not _is_uid(syntax)):
        return None
    return syntax, q


def _quality(value: str) -> float | None:
    try:
        q = float(value)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None


def _is_uid(value: str) -> bool:
    return len(value) <= 64 and all(part.isdigit() for part in value.split("."))


def _split_ranges(value: str) -> list[str]:
    """Split on commas outside quoted strings."""
    out: list[str] = []
    start, quoted, escaped = 0, False, False
    for pos, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out.append(value[start:pos])
            start = pos + 1
    out.append(value[start:])
    return out
