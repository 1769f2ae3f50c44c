"""DB.VI-SO.152: the FranceConnect+ identity against the KOS INS traits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bff.access.identity import (
    TRAITS,
    FcIdentity,
    KosTraits,
    match_identity,
    normalize_name,
)

# The ANS test patient (FACTS section 1): PAT-TROIS^DOMINIQUE, F, 19790328, 63220.
KOS = KosTraits(
    birth_name="PAT-TROIS",
    given_names=("DOMINIQUE",),
    sex="F",
    birth_date="19790328",
    birthplace="63220",
)
CLAIMS: dict[str, Any] = {
    "sub": "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1",
    "family_name": "PAT-TROIS",
    "given_name": "DOMINIQUE",
    "gender": "female",
    "birthdate": "1979-03-28",
    "birthplace": "63220",
    "birthcountry": "99100",
    "preferred_username": "",
}
FC = FcIdentity.from_claims(CLAIMS)


def fc_with(**claims: Any) -> FcIdentity:
    return FcIdentity.from_claims({**CLAIMS, **claims})


# --- the ANS patient ------------------------------------------------------------------


def test_ans_test_patient_matches() -> None:
    identity = FcIdentity.from_claims(CLAIMS)
    assert identity == FcIdentity(
        family_name="PAT-TROIS",
        given_names=("DOMINIQUE",),
        gender="female",
        birthdate="1979-03-28",
        birthplace="63220",
        birthcountry="99100",
    )
    assert match_identity(identity, KOS) == []


@pytest.mark.parametrize(
    ("claims", "trait"),
    [
        ({"family_name": "PAT-QUATRE"}, "birth_name"),
        ({"given_name": "DOMINIQUES"}, "given_names"),
        ({"gender": "male"}, "sex"),
        ({"birthdate": "1979-03-29"}, "birth_date"),
        ({"birthplace": "63221"}, "birthplace"),
        ({"birthcountry": "99134"}, "birthplace"),  # commune in France but country Spain
    ],
)
def test_each_wrong_fc_trait_is_reported_alone(claims: dict[str, str], trait: str) -> None:
    assert match_identity(fc_with(**claims), KOS) == [trait]


@pytest.mark.parametrize(
    ("changes", "trait"),
    [
        ({"birth_name": "PAT-DEUX"}, "birth_name"),
        ({"given_names": ("DOMINIQUE", "MARIE")}, "given_names"),
        ({"sex": "M"}, "sex"),
        ({"birth_date": "19790329"}, "birth_date"),
        ({"birthplace": "63113"}, "birthplace"),
    ],
)
def test_each_wrong_kos_trait_is_reported_alone(changes: dict[str, Any], trait: str) -> None:
    assert match_identity(FC, replace(KOS, **changes)) == [trait]


def test_all_mismatches_are_reported_in_order() -> None:
    other = FcIdentity.from_claims(
        {
            "family_name": "MARTIN",
            "given_name": "PAUL",
            "gender": "male",
            "birthdate": "1980-01-01",
            "birthplace": "75056",
            "birthcountry": "99100",
        }
    )
    assert match_identity(other, KOS) == list(TRAITS)
    assert TRAITS == ("birth_name", "given_names", "sex", "birth_date", "birthplace")


# --- names that must still match ------------------------------------------------------


@pytest.mark.parametrize(
    ("fc_name", "kos_name"),
    [
        ("PAT TROIS", "PAT-TROIS"),  # hyphen vs space
        ("pat-trois", "PAT-TROIS"),  # case
        ("Pat-Trois", "PAT TROIS"),
        ("  PAT   -  TROIS ", "PAT-TROIS"),  # extra spaces
        ("PAT\u2010TROIS", "PAT-TROIS"),  # Unicode hyphen
        ("PAT\u2013TROIS", "PAT-TROIS"),  # en dash
        ("Hélène", "HELENE"),  # accents
        ("HÉLÈNE", "Helene"),
        ("He\u0301le\u0300ne", "HÉLÈNE"),  # decomposed accents
        ("FRANÇOIS", "FRANCOIS"),
        ("D'ARTAGNAN", "DARTAGNAN"),  # apostrophes
        ("d’Artagnan", "D'ARTAGNAN"),
        ("Dʼartagnan", "DARTAGNAN"),
        ("D`ARTAGNAN", "DARTAGNAN"),
        ("D´ARTAGNAN", "DARTAGNAN"),
        ("Cœur", "COEUR"),  # ligatures
        ("LÆTITIA", "LAETITIA"),
        ("Weiß", "WEISS"),
        ("ST. JEAN", "ST JEAN"),  # dots removed
        ("O\u00adNEIL", "ONEIL"),  # soft hyphen is invisible
    ],
)
def test_birth_names_that_must_match(fc_name: str, kos_name: str) -> None:
    fc = fc_with(family_name=fc_name)
    kos = replace(KOS, birth_name=kos_name)
    assert match_identity(fc, kos) == []


@pytest.mark.parametrize(
    ("fc_given", "kos_given"),
    [
        ("MARIE CLAIRE", ("MARIE", "CLAIRE")),  # FC one string, KOS a list
        ("Marie Claire", ("MARIE", "CLAIRE")),
        ("MARIE CLAIRE", ("MARIE CLAIRE",)),
        ("JEAN-PIERRE", ("JEAN PIERRE",)),
        ("JEAN PIERRE", ("JEAN-PIERRE",)),
        ("Jean-Pierre Éric", ("JEAN", "PIERRE", "ERIC")),
        ("  MARIE   CLAIRE  ", ("MARIE", "CLAIRE")),
        ("MARIE\tCLAIRE", ("MARIE", " CLAIRE ")),
    ],
)
def test_given_names_that_must_match(fc_given: str, kos_given: tuple[str, ...]) -> None:
    fc = fc_with(given_name=fc_given)
    kos = replace(KOS, given_names=kos_given)
    assert match_identity(fc, kos) == []


# --- names that must NOT match --------------------------------------------------------


@pytest.mark.parametrize(
    ("fc_given", "kos_given"),
    [
        ("MARIE", ("MARIE", "CLAIRE")),  # second given name missing on FC
        ("MARIE CLAIRE", ("MARIE",)),  # second given name missing in the KOS
        ("CLAIRE MARIE", ("MARIE", "CLAIRE")),  # swapped
        ("MARIECLAIRE", ("MARIE", "CLAIRE")),
        ("MARIE CLAIRE", ("MARIE", "CLARE")),
    ],
)
def test_given_names_that_must_not_match(fc_given: str, kos_given: tuple[str, ...]) -> None:
    fc = fc_with(given_name=fc_given)
    kos = replace(KOS, given_names=kos_given)
    assert match_identity(fc, kos) == ["given_names"]


@pytest.mark.parametrize(
    ("fc_name", "kos_name"),
    [
        ("PAT-TROIS", "PAT-DEUX"),
        ("PATTROIS", "PAT-TROIS"),  # a hyphen separates words, it is not removed
        ("PAT-TROIS-MARTIN", "PAT-TROIS"),  # double name vs single
        ("MULLER", "MÜLLERS"),
    ],
)
def test_birth_names_that_must_not_match(fc_name: str, kos_name: str) -> None:
    fc = fc_with(family_name=fc_name)
    kos = replace(KOS, birth_name=kos_name)
    assert match_identity(fc, kos) == ["birth_name"]


# --- sex, date, place -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gender", "sex"),
    [("female", "M"), ("male", "F"), ("female", "O"), ("female", "f"), ("Female", "F")],
)
def test_sex_mismatches(gender: str, sex: str) -> None:
    assert match_identity(fc_with(gender=gender), replace(KOS, sex=sex)) == ["sex"]


def test_male_matches_m() -> None:
    assert match_identity(fc_with(gender="male"), replace(KOS, sex="M")) == []


@pytest.mark.parametrize(
    ("birthdate", "birth_date"),
    [
        ("1979-03-28", "1979-03-28"),  # KOS not in DICOM DA form
        ("19790328", "19790328"),  # FC not in ISO form
        ("1979-3-28", "1979328"),
        ("1979-03-28T00:00:00", "19790328"),
        ("1979/03/28", "19790328"),
        ("1979-03-28", "19790328 "),
        ("1979-00-00", "19790101"),  # partial date on one side only
    ],
)
def test_birth_date_mismatches(birthdate: str, birth_date: str) -> None:
    fc = fc_with(birthdate=birthdate)
    assert match_identity(fc, replace(KOS, birth_date=birth_date)) == ["birth_date"]


def test_partial_birth_date_matches_only_when_written_identically() -> None:
    fc = fc_with(birthdate="1979-00-00")
    assert match_identity(fc, replace(KOS, birth_date="19790000")) == []


def test_born_abroad_matches_on_country() -> None:
    fc = fc_with(birthplace="", birthcountry="99134")  # Spain
    assert match_identity(fc, replace(KOS, birthplace="99134")) == []


def test_born_abroad_without_birthplace_claim_matches() -> None:
    claims = {key: value for key, value in CLAIMS.items() if key != "birthplace"}
    fc = FcIdentity.from_claims({**claims, "birthcountry": "99134"})
    assert fc.birthplace == ""
    assert match_identity(fc, replace(KOS, birthplace="99134")) == []


@pytest.mark.parametrize(
    ("birthplace", "birthcountry"),
    [
        ("", "99109"),  # another country (Germany)
        ("63220", "99134"),  # FC gives a French commune for someone born abroad
        ("", "99100"),  # FC says France
        ("", ""),
    ],
)
def test_born_abroad_mismatches(birthplace: str, birthcountry: str) -> None:
    fc = fc_with(birthplace=birthplace, birthcountry=birthcountry)
    assert match_identity(fc, replace(KOS, birthplace="99134")) == ["birthplace"]


@pytest.mark.parametrize("code", ["2A004", "2B033"])
def test_corsica_communes(code: str) -> None:
    fc = fc_with(birthplace=code)
    assert match_identity(fc, replace(KOS, birthplace=code)) == []
    assert match_identity(fc_with(birthplace=code.lower()), replace(KOS, birthplace=code)) == [
        "birthplace"
    ]


@pytest.mark.parametrize("code", ["6322", "632200", "2C004", "ABCDE", " 63220"])
def test_malformed_kos_birthplace_never_matches(code: str) -> None:
    fc = fc_with(birthplace=code)
    assert match_identity(fc, replace(KOS, birthplace=code)) == ["birthplace"]


# --- missing data never matches -------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "trait"),
    [
        ({"birth_name": ""}, "birth_name"),
        ({"birth_name": " - ' . "}, "birth_name"),  # empty after normalization
        ({"given_names": ()}, "given_names"),
        ({"given_names": ("",)}, "given_names"),
        ({"sex": ""}, "sex"),
        ({"birth_date": ""}, "birth_date"),
        ({"birthplace": ""}, "birthplace"),
    ],
)
def test_empty_traits_on_both_sides_never_match(changes: dict[str, Any], trait: str) -> None:
    fc = FcIdentity(
        family_name=changes.get("birth_name", FC.family_name),
        given_names=changes.get("given_names", FC.given_names),
        gender=changes.get("sex", FC.gender),
        birthdate=changes.get("birth_date", FC.birthdate),
        birthplace=changes.get("birthplace", FC.birthplace),
        birthcountry="" if "birthplace" in changes else FC.birthcountry,
    )
    assert match_identity(fc, replace(KOS, **changes)) == [trait]


@pytest.mark.parametrize(
    ("claim", "trait"),
    [
        ("family_name", "birth_name"),
        ("given_name", "given_names"),
        ("gender", "sex"),
        ("birthdate", "birth_date"),
        ("birthplace", "birthplace"),
        ("birthcountry", "birthplace"),
    ],
)
def test_empty_fc_claim_is_a_mismatch(claim: str, trait: str) -> None:
    assert match_identity(fc_with(**{claim: ""}), KOS) == [trait]


# --- claims ---------------------------------------------------------------------------


def test_given_name_claim_is_split_on_spaces() -> None:
    assert fc_with(given_name=" MARIE  CLAIRE ").given_names == ("MARIE", "CLAIRE")


@pytest.mark.parametrize(
    "claim", ["family_name", "given_name", "gender", "birthdate", "birthcountry"]
)
def test_missing_claim_is_an_error(claim: str) -> None:
    claims = {key: value for key, value in CLAIMS.items() if key != claim}
    with pytest.raises(ValueError, match=claim):
        FcIdentity.from_claims(claims)
    with pytest.raises(ValueError, match=claim):
        FcIdentity.from_claims({**CLAIMS, claim: None})


@pytest.mark.parametrize("claim", ["family_name", "birthdate", "birthplace"])
def test_non_string_claim_is_an_error(claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        FcIdentity.from_claims({**CLAIMS, claim: 63220})


def test_identity_values_stay_out_of_repr_and_errors() -> None:
    assert "PAT" not in repr(FC)
    assert "DOMINIQUE" not in repr(KOS)
    with pytest.raises(ValueError) as caught:
        FcIdentity.from_claims({**CLAIMS, "gender": ["SECRET"]})
    assert "SECRET" not in str(caught.value)


# --- normalize_name -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Hélène", "HELENE"),
        ("Çà", "CA"),
        ("JEAN-PIERRE", "JEAN PIERRE"),
        ("d’Artagnan", "DARTAGNAN"),
        ("Œdipe", "OEDIPE"),
        ("Cæsar", "CAESAR"),
        ("Strauß", "STRAUSS"),
        ("ﬁlou", "FILOU"),  # NFKD compatibility ligature
        ("  A \t\n B  ", "A B"),
        ("A.B.", "AB"),
        ("A -- B", "A B"),
        ("", ""),
    ],
)
def test_normalize_name(raw: str, normalized: str) -> None:
    assert normalize_name(raw) == normalized
