"""The BFF's own French pages (profile choice, logout, errors): one layout, no JavaScript.

Every dynamic value is escaped here; callers pass plain text.
"""

from __future__ import annotations

import html

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #0b1220;
       color: #e6edf7; display: flex; min-height: 100vh; align-items: center;
       justify-content: center; margin: 0; }
main { max-width: 40rem; padding: 2rem 2.2rem; background: #14203a; border-radius: 12px;
       box-shadow: 0 8px 30px rgba(0,0,0,.35); }
h1 { font-size: 1.45rem; margin-top: 0; }
p { line-height: 1.5; }
.code { color: #9fb3d1; font-size: .9rem; }
.choices { display: grid; gap: .9rem; margin: 1.5rem 0; }
.choices form { margin: 0; }
button { width: 100%; padding: .95rem 1rem; font-size: 1.05rem; border-radius: 8px;
         border: 1px solid #3b5b95; background: #1d4ed8; color: #fff; cursor: pointer;
         text-align: left; }
button.secondary { background: transparent; color: #e6edf7; }
button small { display: block; opacity: .85; font-size: .85rem; margin-top: .2rem; }
.notice { border-left: 4px solid #f2b705; padding: .6rem .9rem; background: #1a2744;
          font-size: .92rem; }
"""


def layout(title: str, body: str, *, role: str = "main", head: str = "") -> str:
    """A full page; ``body`` and ``head`` are trusted HTML built by this module's callers
    with escape() (``head``: extra tags such as bff.web.boot.before_viewer_head)."""
    return (
        '<!doctype html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} – Visionneuse DRIMbox</title>\n<style>{STYLE}</style>\n"
        + (f"{head}\n" if head else "")
        + f'</head>\n<body>\n<main role="{role}">\n<h1>{escape(title)}</h1>\n{body}\n</main>\n'
        "</body>\n</html>\n"
    )


def escape(value: str) -> str:
    return html.escape(value, quote=True)


def error_page(title: str, message: str, code: str, *, contact: str = "", site: str = "") -> str:
    """``contact``: the invitation to contact the producing site (DB.VI-SO.28); ``site``:
    its name (the KOS's Institution Name), shown when known."""
    body = f"<p>{escape(message)}</p>\n"
    if contact:
        body += f"<p>{escape(contact)}</p>\n"
    if site:
        body += f"<p>Site qui a réalisé l'examen : <strong>{escape(site)}</strong></p>\n"
    body += f'<p class="code">Code d\'erreur : {escape(code)}</p>'
    return layout(title, body, role="alert")


#: The notice required after DB.VI-SO.137 (transitional patient identification).
TRANSITION_NOTICE = (
    "Information : l'identification des patients par l'application carte Vitale n'est pas "
    "encore disponible. En attendant, la visionneuse vous propose de vous identifier avec "
    "FranceConnect+, un moyen d'identification électronique de transition qui garantit "
    "que vous êtes bien la personne qui a passé l'examen."
)


def profile_page(*, csrf_token: str, fc_enabled: bool, head: str = "") -> str:
    """DB.VI-SO.08: Patient or Professionnel de santé, each with its own login.
    ``head``: the viewer's files fetched and compiled meanwhile
    (bff.web.boot.before_viewer_head)."""

    def choice(profile: str, provider: str, label: str, hint: str, css: str = "") -> str:
        return (
            '<form method="post" action="/auth/login">'
            f'<input type="hidden" name="csrf" value="{escape(csrf_token)}">'
            f'<input type="hidden" name="profile" value="{escape(profile)}">'
            f'<input type="hidden" name="provider" value="{escape(provider)}">'
            f'<button type="submit" class="{css}" data-provider="{escape(provider)}">'
            f"{escape(label)}<small>{escape(hint)}</small></button></form>"
        )

    choices = [
        choice("patient", "fcp", "Je suis le patient", "Connexion avec FranceConnect+"),
        choice(
            "professional",
            "psc",
            "Je suis un professionnel de santé",
            "Connexion avec Pro Santé Connect (carte CPS ou e-CPS)",
        ),
    ]
    if fc_enabled:
        choices.insert(
            1,
            choice(
                "patient",
                "fc",
                "Je suis le patient (autre moyen)",
                "Connexion avec FranceConnect et une double authentification",
                "secondary",
            ),
        )
    body = (
        "<p>Vous allez consulter les images d'un examen d'imagerie médicale. "
        "Pour protéger ces données, indiquez qui vous êtes puis identifiez-vous.</p>\n"
        f'<div class="choices">{"".join(choices)}</div>\n'
        f'<p class="notice">{escape(TRANSITION_NOTICE)}</p>'
    )
    return layout("Accès à votre examen d'imagerie", body, head=head)


def logged_out_page() -> str:
    body = (
        "<p>Vous êtes déconnecté. Pour revoir l'examen, rouvrez le lien figurant dans "
        "votre compte rendu d'imagerie.</p>"
    )
    return layout("Déconnexion", body)
