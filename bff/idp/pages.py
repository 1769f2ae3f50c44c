"""The provider's pages: plain French HTML, no JavaScript, nothing taken from the request.

Only values the provider generated itself (the pending request id) and fixed texts are
written into pages, always through :func:`html.escape`.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

#: No script can run, no frame can embed the page, nothing leaks through Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "color:#161616}h1{font-size:1.4rem}.erreur{color:#ce0500;font-weight:bold}"
    "label{display:block;margin:1rem 0 .3rem}input[type=text]{width:100%;padding:.4rem}"
    "button{margin-top:1rem;padding:.5rem 1.2rem}.note{color:#666;font-size:.9rem}"
)


def _page(title: str, body: str, status: int) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def provider_title(realm_title: str) -> str:
    return f"Fournisseur d'identité de démonstration – {realm_title}"


def login_page(realm_title: str, request_id: str, *, error: str | None = None) -> HTMLResponse:
    title = provider_title(realm_title)
    error_html = f'<p class="erreur" role="alert">{escape(error)}</p>' if error else ""
    body = (
        f"<h1>{escape(title)}</h1>"
        "<p>Ce fournisseur d'identité sert uniquement à la démonstration et aux tests. "
        "Il n'utilise que des identités fictives.</p>"
        f"{error_html}"
        '<form method="post" action="authorize">'
        f'<input type="hidden" name="request_id" value="{escape(request_id)}">'
        '<label for="username">Identifiant de test</label>'
        '<input type="text" id="username" name="username" autocomplete="off" '
        'autocapitalize="none" spellcheck="false" required autofocus>'
        '<button type="submit">Se connecter</button>'
        "</form>"
        '<p class="note">Les identifiants de test figurent dans le fichier des '
        "utilisateurs de démonstration.</p>"
    )
    return _page(title, body, 401 if error else 200)


def error_page(realm_title: str, message: str, *, status: int = 400) -> HTMLResponse:
    """An error shown to the person, without redirecting (the redirect_uri is not trusted)."""
    title = provider_title(realm_title)
    body = (
        f"<h1>{escape(title)}</h1>"
        f'<p class="erreur" role="alert">{escape(message)}</p>'
        "<p>Veuillez revenir au service en ligne et recommencer la connexion.</p>"
    )
    return _page(f"Erreur – {title}", body, status)


def logged_out_page(realm_title: str) -> HTMLResponse:
    title = provider_title(realm_title)
    body = f"<h1>{escape(title)}</h1><p>Vous êtes déconnecté.</p>"
    return _page(title, body, 200)
