"""The BFF's error tree, each class with its HTTP status, a stable code and a French message.

    ViewerError                      500 E500  generic (details only in the log)
    ├── BadRequest                   400 E400
    ├── NotFound                     404 E404  unknown, or outside the session's grant
    ├── NotAcceptable                406 E406
    └── UpstreamError                502 E502  the PACS / Source failed
        ├── UpstreamUnavailable      502 E503  connection refused / DNS / reset
        ├── UpstreamTimeout          504 E504  no answer within the configured timeout
        ├── UpstreamProtocolError    502 E505  malformed multipart, DICOM or JSON
        └── IncompleteSeries         502 E506  the series stream ended without this frame

Errors are raised anywhere and rendered in exactly one place (:mod:`bff.web.errors`):
JSON ``{"code", "message"}`` for DICOMweb/machines, a French HTML page for people.
Messages are fixed French sentences; raw input never goes into them.
"""

from __future__ import annotations


class ViewerError(Exception):
    status: int = 500
    code: str = "E500"
    message: str = "Une erreur inattendue est survenue. Veuillez réessayer plus tard."

    def __init__(self, detail: str = "", *, message: str | None = None) -> None:
        # ``detail`` is for the log only; it never reaches a response body.
        super().__init__(detail or self.code)
        self.detail = detail
        if message is not None:
            self.message = message


class BadRequest(ViewerError):
    status = 400
    code = "E400"
    message = "La demande est invalide."


class NotFound(ViewerError):
    status = 404
    code = "E404"
    message = "L'élément demandé est introuvable."


class NotAcceptable(ViewerError):
    status = 406
    code = "E406"
    message = "Le format demandé n'est pas disponible."


class UpstreamError(ViewerError):
    status = 502
    code = "E502"
    message = "Le serveur d'images a renvoyé une erreur."


class UpstreamUnavailable(UpstreamError):
    code = "E503"
    message = "Le serveur d'images est injoignable."


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "E504"
    message = "Le serveur d'images n'a pas répondu à temps."


class UpstreamProtocolError(UpstreamError):
    code = "E505"
    message = "Le serveur d'images a envoyé une réponse illisible."


class IncompleteSeries(UpstreamError):
    code = "E506"
    message = "La série n'a pas été reçue en entier ; cette image est manquante."
