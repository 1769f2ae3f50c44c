"""Test identities of the local identity provider (:mod:`bff.idp`).

File format (JSON, UTF-8; test identities only, never real people nor secrets)::

    {"users": [
        {"username": "dominique.pat-trois",      # what is typed in the login form
         "realm": "fcp",                         # "psc", "fcp" or "fc"
         "claims": {"given_name": "DOMINIQUE", "family_name": "PAT-TROIS", ...},
         "acr": "eidas1"}                        # optional: forces a weaker assurance
    ]}

``claims`` are the user's claims as the real provider would release them, without
``sub`` (the provider derives a pairwise ``sub`` per client):

* ``fcp`` / ``fc`` (FranceConnect+ / FranceConnect): the "identité pivot"
  ``given_name`` (all birth given names, space separated), ``family_name`` (birth
  name), ``birthdate`` (``YYYY-MM-DD``), ``gender`` (``male``/``female``),
  ``birthplace`` (5-character INSEE code, ``""`` when born abroad), ``birthcountry``
  (5 digits, ``99100`` = France), optionally ``preferred_username`` (usage name) and
  ``email``. Each is released only when its scope was granted.
* ``psc`` (ProSanteConnect): ``SubjectNameID`` (national id: ``8`` + RPPS),
  ``given_name``, ``family_name`` and the other PSC userinfo claims
  (``SubjectRefPro`` with ``exercices[]``, ``SubjectOrganization`` ...), released
  with the ``scope_all`` scope.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REALM_NAMES = ("psc", "fcp", "fc")
ACR_NAMES = ("eidas1", "eidas2", "eidas3")

_PIVOT_CLAIMS = ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry")
_PSC_CLAIMS = ("SubjectNameID", "given_name", "family_name")
_BIRTHDATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BIRTHPLACE = re.compile(r"(?:[0-9][0-9AB][0-9]{3})?")  # INSEE commune (Corsica 2A/2B) or ""
_BIRTHCOUNTRY = re.compile(r"99[0-9]{3}")


@dataclass(frozen=True)
class IdpUser:
    username: str
    realm: str  # 'psc' | 'fcp' | 'fc'
    claims: dict[str, Any]
    acr: str | None = None  # acr override, to simulate a weaker assurance


def load_users(path: Path) -> dict[str, IdpUser]:
    """Read and check a users file; username -> user. Raises ValueError on bad content."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise ValueError(f"{path}: expected an object with a 'users' list")
    users: dict[str, IdpUser] = {}
    for index, entry in enumerate(data["users"]):
        user = parse_user(entry, where=f"{path}: users[{index}]")
        if user.username in users:
            raise ValueError(f"{path}: duplicate username {user.username!r}")
        users[user.username] = user
    return users


def parse_user(entry: Any, *, where: str = "user") -> IdpUser:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    username, realm, claims, acr = (
        entry.get("username"),
        entry.get("realm"),
        entry.get("claims"),
        entry.get("acr"),
    )
    if not isinstance(username, str) or not username or username != username.strip():
        raise ValueError(f"{where}: 'username' must be a non-empty string without spaces around")
    if realm not in REALM_NAMES:
        raise ValueError(f"{where}: 'realm' must be one of {REALM_NAMES}")
    if not isinstance(claims, dict):
        raise ValueError(f"{where}: 'claims' must be an object")
    if "sub" in claims:
        raise ValueError(f"{where}: 'sub' is derived by the provider, do not set it")
    if acr is not None and acr not in ACR_NAMES:
        raise ValueError(f"{where}: 'acr' must be one of {ACR_NAMES}")
    _check_claims(realm, claims, where)
    return IdpUser(username=username, realm=realm, claims=claims, acr=acr)


def _check_claims(realm: str, claims: dict[str, Any], where: str) -> None:
    required = _PSC_CLAIMS if realm == "psc" else _PIVOT_CLAIMS
    missing = [name for name in required if not isinstance(claims.get(name), str)]
    if missing:
        raise ValueError(f"{where}: missing string claims {missing}")
    if realm == "psc":
        return
    if not _BIRTHDATE.fullmatch(claims["birthdate"]):
        raise ValueError(f"{where}: 'birthdate' must be YYYY-MM-DD")
    if claims["gender"] not in ("male", "female"):
        raise ValueError(f"{where}: 'gender' must be 'male' or 'female'")
    if not _BIRTHPLACE.fullmatch(claims["birthplace"]):
        raise ValueError(f"{where}: 'birthplace' must be a 5-character INSEE code or ''")
    if not _BIRTHCOUNTRY.fullmatch(claims["birthcountry"]):
        raise ValueError(f"{where}: 'birthcountry' must be 5 digits starting with 99")
    if (claims["birthcountry"] == "99100") != (claims["birthplace"] != ""):
        raise ValueError(f"{where}: 'birthplace' is set exactly when born in France (99100)")
