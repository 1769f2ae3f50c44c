"""What differs between the three simulated providers: algorithms, acr, scopes, lifetimes.

* ``psc``: ProSanteConnect (a Keycloak realm): RS256, ``acr_values=eidas1``,
  ``scope=openid scope_all``, JSON userinfo, RFC 7662 introspection.
* ``fcp``: FranceConnect+: ES256 tokens *encrypted* to the client's RSA key
  (RSA-OAEP + A256GCM), ``acr_values`` eidas2/eidas3, identity scopes, 60 s access
  token, 30 s code (FC+ partner documentation, "Les données de FranceConnect+ qui
  expirent").
* ``fc``: FranceConnect (optional in the BFF): ES256, signed but not encrypted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CODE_LIFETIME = 30  # seconds, as FranceConnect+ documents for its authorization code
PENDING_LIFETIME = 30 * 60  # a login form stays usable as long as a FC+ web session

#: FranceConnect identity scopes: each releases the claim of the same name.
FC_CLAIM_SCOPES = (
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "birthplace",
    "birthcountry",
    "preferred_username",
    "email",
)
#: FranceConnect scope aliases (FC+ partner documentation, "Les alias").
FC_ALIASES: dict[str, tuple[str, ...]] = {
    "profile": ("given_name", "family_name", "birthdate", "gender", "preferred_username"),
    "birth": ("birthplace", "birthcountry"),
    "identite_pivot": (
        "given_name",
        "family_name",
        "birthdate",
        "gender",
        "preferred_username",
        "birthplace",
        "birthcountry",
    ),
}
PSC_CLAIMS = (
    "sub",
    "SubjectNameID",
    "preferred_username",
    "given_name",
    "family_name",
    "SubjectOrganization",
    "SubjectOrganizationID",
    "SubjectRole",
    "SubjectRefPro",
    "Secteur_Activite",
    "Palier_Authentification",
    "otherIds",
)


@dataclass(frozen=True)
class Realm:
    name: str
    title: str  # shown to people (French)
    signing_alg: str
    encrypts: bool  # id_token and userinfo as JWE (FranceConnect+)
    acr_values: tuple[str, ...]  # weakest first
    default_acr: str | None  # None: acr_values is mandatory
    access_token_lifetime: int
    scopes: tuple[str, ...]
    claims: tuple[str, ...]
    introspection: bool
    sends_amr: bool

    def choose_acr(self, acr_values: str | None) -> str | None:
        """The strongest requested level this realm supports; None when none fits."""
        requested = (acr_values or "").split()
        if not requested:
            return self.default_acr
        supported = [acr for acr in requested if acr in self.acr_values]
        return max(supported, key=self.acr_values.index) if supported else None

    def grant(self, scopes: Iterable[str]) -> tuple[tuple[str, ...], frozenset[str]]:
        """(granted scopes, released claims) for the requested scopes.

        Raises ValueError naming the first unknown scope."""
        granted: list[str] = []
        claims: set[str] = {"sub"}
        for scope in scopes:
            if scope not in self.scopes:
                raise ValueError(scope)
            if scope not in granted:
                granted.append(scope)
            if self.name == "psc":
                if scope == "scope_all":
                    claims.update(PSC_CLAIMS)
            elif scope in FC_ALIASES:
                claims.update(FC_ALIASES[scope])
            elif scope in FC_CLAIM_SCOPES:
                claims.add(scope)
        return tuple(granted), frozenset(claims)


_FC_SCOPES = ("openid", *FC_CLAIM_SCOPES, *FC_ALIASES)
_FC_CLAIMS = ("sub", *FC_CLAIM_SCOPES)

REALMS: dict[str, Realm] = {
    "psc": Realm(
        name="psc",
        title="ProSantéConnect",
        signing_alg="RS256",
        encrypts=False,
        acr_values=("eidas1",),
        default_acr="eidas1",
        access_token_lifetime=120,
        scopes=("openid", "scope_all"),
        claims=PSC_CLAIMS,
        introspection=True,
        sends_amr=False,
    ),
    "fcp": Realm(
        name="fcp",
        title="FranceConnect+",
        signing_alg="ES256",
        encrypts=True,
        acr_values=("eidas2", "eidas3"),
        default_acr=None,
        access_token_lifetime=60,
        scopes=_FC_SCOPES,
        claims=_FC_CLAIMS,
        introspection=False,
        sends_amr=True,
    ),
    "fc": Realm(
        name="fc",
        title="FranceConnect",
        signing_alg="ES256",
        encrypts=False,
        acr_values=("eidas1", "eidas2"),
        default_acr="eidas1",
        access_token_lifetime=60,
        scopes=_FC_SCOPES,
        claims=_FC_CLAIMS,
        introspection=False,
        sends_amr=True,
    ),
}
