"""Interoperability with a certified OpenID provider (issue 13, item 9): panva's
``oidc-provider`` from npm (the library FranceConnect's platform is built on, pinned in
tests/interop/oidc-provider/package-lock.json, installed by scripts/install), configured
like FranceConnect+ (ES256-signed, RSA-OAEP/A256GCM-encrypted id_token and userinfo,
acr eidas2, the identity claims, client_secret_basic with a secret holding "+" and "/")
and like ProSantéConnect (scope_all, acr eidas1, RS256, client_secret_post only), on
loopback. Chromium signs in through the BFF, as people do, beside the look-alike tests
(test_source_flow.py): what the look-alike never does, this provider does (replicated
claims in the JWE header, its own choice of client authentication, RP-initiated logout
that needs the signed id_token as hint)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bff.app import create_app
from bff.auth.oidc import generate_encryption_key, public_jwks
from bff.demo.stack import DEMO_CDA_ID, Stack, new_stack, publish_demo_kos
from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs, make_settings
from tests.e2e.test_viewer import wait_for_image
from tests.servers import free_port, live_server
from tests.source_stack import PIVOT

pytestmark = pytest.mark.e2e

INTEROP = PROJECT_ROOT / "tests" / "interop" / "oidc-provider"
LOCATION = "vi1.localhost"
FCP_CLIENT = "drimbox-viewer-fcp"
PSC_CLIENT = "drimbox-viewer-psc"
#: "+" and "/" broke client_secret_basic without form encoding (RFC 6749 §2.3.1).
FCP_SECRET = "fc+secret/with+plus/and:colon=="
PSC_SECRET = "psc+secret/for/post+"
USERS = {
    "fcp": {"dominique.pat-trois": PIVOT, "jean.martin": {**PIVOT, "family_name": "MARTIN"}},
    "psc": {
        "dr.radiologue": {
            "SubjectNameID": "810001234567",
            "given_name": "Camille",
            "family_name": "RADIOLOGUE",
        }
    },
}


@dataclass(frozen=True)
class Interop:
    stack: Stack
    pacs: Pacs
    fcp_issuer: str
    psc_issuer: str

    def link(self) -> str:
        return self.stack.viewer_link(self.pacs.study, LOCATION)


def _client(client_id: str, secret: str, bff: str, auth_method: str, **more: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{bff}/auth/callback"],
        "post_logout_redirect_uris": [f"{bff}/auth/logged-out"],
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": auth_method,
        **more,
    }


@pytest.fixture(scope="module")
def interop(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("node or tests/interop/oidc-provider/node_modules missing: scripts/install")
    work = tmp_path_factory.mktemp("oidc-interop")
    bff_port, fcp_port, psc_port = free_port(), free_port(), free_port()
    stack = new_stack(bff_port, 0, (LOCATION,))
    bff = stack.bff_url(LOCATION)
    archive_url = f"sqlite:///{work / 'archive.db'}"
    publish_demo_kos(archive_url, pacs.study.kos_path, location=LOCATION, cda_id=DEMO_CDA_ID)
    key = generate_encryption_key()
    (our_key,) = public_jwks(key)["keys"]
    fcp_client = _client(
        FCP_CLIENT,
        FCP_SECRET,
        bff,
        "client_secret_basic",
        id_token_signed_response_alg="ES256",
        id_token_encrypted_response_alg="RSA-OAEP",
        id_token_encrypted_response_enc="A256GCM",
        userinfo_signed_response_alg="ES256",
        userinfo_encrypted_response_alg="RSA-OAEP",
        userinfo_encrypted_response_enc="A256GCM",
        require_auth_time=True,
        jwks={"keys": [our_key]},
    )
    psc_client = _client(
        PSC_CLIENT, PSC_SECRET, bff, "client_secret_post", id_token_signed_response_alg="RS256"
    )
    config = {
        "profiles": [
            {
                "name": "fcp",
                "port": fcp_port,
                "acr": "eidas2",
                "clientAuthMethod": "client_secret_basic",
                "client": fcp_client,
                "users": USERS["fcp"],
            },
            {
                "name": "psc",
                "port": psc_port,
                "acr": "eidas1",
                "clientAuthMethod": "client_secret_post",
                "client": psc_client,
                "users": USERS["psc"],
            },
        ]
    }
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    log = (work / "oidc-provider.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [node, "server.mjs", str(config_file)],
        cwd=INTEROP,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        _wait_ready(process, work / "oidc-provider.log")
        fcp_issuer, psc_issuer = f"http://127.0.0.1:{fcp_port}", f"http://127.0.0.1:{psc_port}"
        settings = make_settings(
            pacs.dicomweb_url,
            port=bff_port,
            mode="demo",
            open_access=False,
            locations=f"{LOCATION}={pacs.dicomweb_url}",
            archive_url=archive_url,
            audit_log=work / "audit.jsonl",
            fcp_issuer=fcp_issuer,
            fcp_client_id=FCP_CLIENT,
            fcp_client_secret=FCP_SECRET,
            fcp_encryption_key=json.dumps(key.as_dict(private=True)),
            psc_issuer=psc_issuer,
            psc_client_id=PSC_CLIENT,
            psc_client_secret=PSC_SECRET,
            fc_enabled=False,
        )
        with live_server(create_app(settings), port=bff_port):
            yield Interop(stack, pacs, fcp_issuer, psc_issuer)
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()
        log.close()


def _wait_ready(process: subprocess.Popen[str], log: Path) -> None:
    """Read the provider's stdout until it says every profile listens (or it died)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "READY":
            return
    raise RuntimeError(f"oidc-provider did not start: {log.read_text(encoding='utf-8')}")


def _sign_in_at_provider(page: Any, interop: Interop, provider: str, username: str) -> None:
    issuer = interop.fcp_issuer if provider == "fcp" else interop.psc_issuer
    page.goto(interop.link())
    page.get_by_text("Accès à votre examen d'imagerie").wait_for()
    page.click(f"button[data-provider={provider}]")
    page.wait_for_url(f"{issuer}/interaction/**")
    page.fill("input[name=username]", username)
    page.get_by_role("button", name="Se connecter").click()


def _identity_shown(page: Any) -> str:
    """The viewer opened on the exam: the identity dialog's text (DB.VI-CS.29)."""
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    dialog = page.get_by_role("dialog", name="Identité du patient")
    dialog.wait_for(timeout=30_000)
    text: str = dialog.inner_text()
    return text


def test_patient_signs_in_with_franceconnect_plus_and_logs_out_at_the_provider(
    interop: Interop, page: Any
) -> None:
    _sign_in_at_provider(page, interop, "fcp", "dominique.pat-trois")
    assert "PAT-TROIS" in _identity_shown(page)
    # Logout ends the session here and at the provider (RP-initiated logout).
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(f"{interop.fcp_issuer}/**")
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url("**/auth/logged-out", timeout=30_000)
    assert "déconnecté" in page.content()
    # The provider's session is gone: signing in again asks who you are.
    page.goto(interop.link())
    page.click("button[data-provider=fcp]")
    page.wait_for_url(f"{interop.fcp_issuer}/interaction/**")
    page.locator("input[name=username]").wait_for()


def test_professional_signs_in_with_prosanteconnect(interop: Interop, page: Any) -> None:
    _sign_in_at_provider(page, interop, "psc", "dr.radiologue")
    assert "Dr Camille RADIOLOGUE" in _identity_shown(page)
    page.get_by_role("button", name="Voir les images").click()
    wait_for_image(page)


def test_another_person_at_the_certified_provider_is_refused(interop: Interop, page: Any) -> None:
    _sign_in_at_provider(page, interop, "fcp", "jean.martin")
    page.get_by_text("Accès refusé").wait_for(timeout=30_000)
    # The one public code of a refused check (issue 13); the reason, E423, is audited.
    assert "E420" in page.content()
