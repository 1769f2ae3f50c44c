"""Spec Tableau 2 (DB.VI-CO.27): what can go wrong when the Consumer retrieves images
from a DRIMbox Source, each case with its code and the French message the viewer shows.

The HTTP status the browser gets is 502 (504 for E208): the Consumer is a gateway.
"""

from __future__ import annotations

import ssl

from bff.errors import UpstreamError

MESSAGES = {
    "E201": "Problème de connexion vers la DRIMbox Source.",
    "E202": "Erreur lors de l'établissement de la connexion sécurisée avec la DRIMbox Source.",
    "E203": (
        "Connexion refusée : la DRIMbox Source ne fait pas partie de la liste blanche de l'ANS."
    ),
    "E204": (
        "Connexion refusée par la DRIMbox Source : jeton d'accès non valide pour la "
        "récupération des images."
    ),
    "E205": (
        "Erreur lors de la récupération des images : KOS introuvable à la source ou "
        "incohérence du KOS-SOPInstanceUID."
    ),
    "E206": ("Erreur lors de la récupération des images : KOS dépublié ou examen/série supprimé."),
    "E207": (
        "Erreur lors de la récupération des images : problème de connexion avec le PACS source."
    ),
    "E208": "Erreur lors de la récupération des images : délai d'attente dépassé sur le PACS.",
    "E209": (
        "Erreur lors de la récupération des images : incohérence des identifiants patient "
        "(IPP/INS) entre l'archive de la DRIMbox Source et le PACS."
    ),
    "E301": "Les images référencées dans le KOS sont dans une classe SOP non supportée.",
    "E302": (
        "La syntaxe de transfert choisie par la DRIMbox Source ne fait pas partie de la "
        "liste des syntaxes acceptées."
    ),
}

#: HTTP status of the Source -> Tableau 2 code.
STATUS_CODES = {
    403: "E204",
    401: "E204",
    404: "E205",
    410: "E206",
    502: "E207",
    504: "E208",
    406: "E209",
}


class SourceError(UpstreamError):
    """A Tableau 2 case. ``code`` is E201-E209 or E301-E302. The spec gives each its
    message; none adds the Source viewer's "contact the producing site" (DB.VI-SO.28)."""

    contact_site = False

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code, message=MESSAGES[code])
        self.code = code
        if code == "E208":
            self.status = 504


def is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        text = str(current)
        if "SSL" in text or "CERTIFICATE" in text.upper() or "TLS" in text:
            return True
        current = current.__cause__ or current.__context__
    return False
