"""DB.VI-SO.152: the FranceConnect+ identity must be that of the KOS INS traits.

The five traits compared, and how (all five always; every mismatch is reported):

    birth_name    FC ``family_name``  vs KOS birth name      normalized names, equal
    given_names   FC ``given_name``   vs KOS given names     normalized word lists, equal
    sex           FC ``gender``       vs KOS sex             female <-> F, male <-> M
    birth_date    FC ``birthdate``    vs KOS birth date      YYYY-MM-DD vs YYYYMMDD, equal
    birthplace    FC ``birthplace`` + ``birthcountry`` vs KOS birthplace code (see below)

Name normalization (:func:`normalize_name`), applied to both sides, in this order:

 1. the acute accent sign ``´`` is removed (it would otherwise decompose to a space);
 2. Unicode NFKD, then every combining mark is removed (É -> E, Ç -> C, ﬁ -> FI);
 3. upper case (ß -> SS);
 4. ligatures Œ -> OE and Æ -> AE;
 5. apostrophes are removed: ' ’ ‘ ʼ and the backtick (D'ARTAGNAN -> DARTAGNAN);
 6. hyphens and dashes (Unicode Pd) and any whitespace run become one space
    (JEAN-PIERRE -> JEAN PIERRE);
 7. other punctuation (Unicode P*, e.g. dots, commas) and invisible format characters
    (Unicode Cf, e.g. soft hyphen, zero-width space) are removed;
 8. leading and trailing spaces are removed.

Given names: FC+ sends all birth given names in one string separated by spaces; the KOS
gives a tuple. Both sides are normalized then split on spaces, and the word lists must be
equal, in order: "Marie Claire" matches ("MARIE", "CLAIRE"), "JEAN-PIERRE" matches
"JEAN PIERRE"; a missing, extra or swapped given name does not match.

Sex: FC ``female`` (``male``) matches KOS ``F`` (``M``) exactly; any other value on either
side (``O``, ``U``, empty, other case) is a mismatch.

Birth date: both must be well-formed (``YYYY-MM-DD``, ``YYYYMMDD``, ASCII digits) and
equal digit for digit. INS allows a partially unknown date written with ``00`` for the
day or month; whether FC+ writes those the same way is not documented in what we could
read, so we require exact equality: an identity with such a date matches only if both
sides write the same digits (a refusal, never a false match).

Birthplace: a KOS code starting with ``99`` is a country (born abroad): it must equal FC
``birthcountry`` and FC ``birthplace`` must be empty. Otherwise the KOS code is an INSEE
commune (5 characters: 5 digits, or ``2A``/``2B`` + 3 digits for Corsica): it must equal
FC ``birthplace`` exactly and FC ``birthcountry`` must be ``99100`` (France).

Missing data never matches: an empty (or, after normalization, empty) trait on either side
is a mismatch. Nothing here logs or raises with identity values: callers get trait names.
The dataclasses keep their fields out of ``repr`` for the same reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRAITS = ("birth_name", "given_names", "sex", "birth_date", "birthplace")
"""Trait names, in the order :func:`match_identity` reports them."""

FRANCE = "99100"
"""INSEE country code of France (FC ``birthcountry``)."""

_SEXES = {"F": "female", "M": "male"}
_FC_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KOS_DATE = re.compile(r"[0-9]{8}")
_COMMUNE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}")
_COUNTRY = re.compile(r"99[0-9]{3}")

_APOSTROPHES = "'\u2019\u2018\u02bc`"  # ' ’ ‘ ʼ `
_LIGATURES = str.maketrans({"Œ": "OE", "Æ": "AE"})
_FC_CLAIMS = ("family_name", "given_name", "gender", "birthdate", "birthcountry")


@dataclass(frozen=True)
class FcIdentity:
    """The FranceConnect+ identity pivot of the logged-in person."""

    family_name: str = field(repr=False)
    given_names: tuple[str, ...] = field(repr=False)
    gender: str = field(repr=False)  # 'female' | 'male'
    birthdate: str = field(repr=False)  # YYYY-MM-DD
    birthplace: str = field(repr=False)  # INSEE commune code, '' when born abroad
    birthcountry: str = field(repr=False)  # INSEE country code, 99100 = France

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> FcIdentity:
        """Build from FC+ id_token/userinfo claims.

        :raises ValueError: a claim is missing or not a string (the message names the
            claim, never its value). Formats are not checked here: a malformed value is
            reported by :func:`match_identity` as a mismatch of its trait. ``birthplace``
            absent or null is taken as empty (born abroad): that can only make a match
            stricter, since a French-born KOS identity then mismatches.
        """
        values: dict[str, str] = {}
        for name in _FC_CLAIMS:
            value = claims.get(name)
            if value is None:
                raise ValueError(f"FranceConnect claim {name!r} is missing")
            if not isinstance(value, str):
                raise ValueError(f"FranceConnect claim {name!r} is not a string")
            values[name] = value
        birthplace = claims.get("birthplace")
        if birthplace is None:
            birthplace = ""
        if not isinstance(birthplace, str):
            raise ValueError("FranceConnect claim 'birthplace' is not a string")
        return cls(
            family_name=values["family_name"],
            given_names=tuple(values["given_name"].split()),
            gender=values["gender"],
            birthdate=values["birthdate"],
            birthplace=birthplace,
            birthcountry=values["birthcountry"],
        )


@dataclass(frozen=True)
class KosTraits:
    """The INS traits of the patient as published in the KOS."""

    birth_name: str = field(repr=False)
    given_names: tuple[str, ...] = field(repr=False)
    sex: str = field(repr=False)  # DICOM (0010,0040): 'F' | 'M' | 'O'
    birth_date: str = field(repr=False)  # DICOM DA: YYYYMMDD
    birthplace: str = field(repr=False)  # INSEE commune code, or 99xxx country code


def normalize_name(value: str) -> str:
    """Normalize a name for comparison (rules in the module docstring)."""
    text = unicodedata.normalize("NFKD", value.replace("\u00b4", ""))
    text = "".join(char for char in text if not unicodedata.category(char).startswith("M"))
    text = text.upper().translate(_LIGATURES)
    kept: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char in _APOSTROPHES or category == "Cf":
            continue
        if char.isspace() or category == "Pd":
            kept.append(" ")
        elif not category.startswith("P"):
            kept.append(char)
    return " ".join("".join(kept).split())


def _words(names: tuple[str, ...]) -> list[str]:
    return normalize_name(" ".join(names)).split()


def _birthplace_matches(fc: FcIdentity, kos_code: str) -> bool:
    if _COUNTRY.fullmatch(kos_code):
        return fc.birthplace == "" and fc.birthcountry == kos_code
    return (
        _COMMUNE.fullmatch(kos_code) is not None
        and fc.birthplace == kos_code
        and fc.birthcountry == FRANCE
    )


def match_identity(fc: FcIdentity, kos: KosTraits) -> list[str]:
    """The names of the traits that differ (in :data:`TRAITS` order); [] if all match."""
    mismatches: list[str] = []
    birth_name = normalize_name(kos.birth_name)
    if not birth_name or birth_name != normalize_name(fc.family_name):
        mismatches.append("birth_name")
    given_names = _words(kos.given_names)
    if not given_names or given_names != _words(fc.given_names):
        mismatches.append("given_names")
    if _SEXES.get(kos.sex) != fc.gender:  # None (unknown KOS sex) never equals a str
        mismatches.append("sex")
    if not (
        _KOS_DATE.fullmatch(kos.birth_date)
        and _FC_DATE.fullmatch(fc.birthdate)
        and fc.birthdate.replace("-", "") == kos.birth_date
    ):
        mismatches.append("birth_date")
    if not _birthplace_matches(fc, kos.birthplace):
        mismatches.append("birthplace")
    return mismatches
