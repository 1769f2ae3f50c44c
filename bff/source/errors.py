"""Errors of the Source WADO-RS API (this DRIMbox answering Consumer DRIMboxes).

The Consumer maps our HTTP status to its own codes (spec Tableau 2, DB.VI-CO.27), so the
status is the contract; the ``S`` codes name the Source-side cause in our logs, the audit
trail and the JSON body ``{"code", "message"}``::

    403 S403  bearer token missing, malformed, inactive or expired    -> Consumer E204
    404 S404  KOS unknown, or inconsistent with the request           -> Consumer E205
    410 S410  KOS unpublished, or exam / series gone from the PACS    -> Consumer E206
    406 S406  patient id (INS / IPP) archive vs PACS mismatch         -> Consumer E209
    502 S502  PACS connection problem (refused, reset, bad answer)    -> Consumer E207
    504 S504  PACS timeout                                            -> Consumer E208
    503 S503  ProSantéConnect introspection unavailable (fail closed)

406 is reserved by DRIM-M for the patient id check: it is never used for content
negotiation here (see :mod:`bff.source.accept`).
"""

from __future__ import annotations

from bff.errors import ViewerError


class SourceTokenInvalid(ViewerError):
    status = 403
    code = "S403"
    message = "Jeton d'accès invalide ou expiré."


class SourceKosNotFound(ViewerError):
    status = 404
    code = "S404"
    message = "KOS introuvable ou incohérent avec la demande."


class SourceGone(ViewerError):
    status = 410
    code = "S410"
    message = "L'examen n'est plus disponible (KOS dépublié, examen ou série supprimé)."


class SourcePatientMismatch(ViewerError):
    status = 406
    code = "S406"
    message = "Les identifiants patient (INS/IPP) de l'archive et du PACS ne concordent pas."


class SourcePacsUnavailable(ViewerError):
    status = 502
    code = "S502"
    message = "Le PACS de la DRIMbox source est injoignable."


class SourcePacsTimeout(ViewerError):
    status = 504
    code = "S504"
    message = "Le PACS de la DRIMbox source n'a pas répondu à temps."


class SourceIntrospectionUnavailable(ViewerError):
    status = 503
    code = "S503"
    message = "La vérification du jeton d'accès est momentanément impossible."
