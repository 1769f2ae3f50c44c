"""The demo and test stack around the BFF: local identity provider, KOS archive, links.

Used by ``drimbox-viewer demo`` and by the test fixtures, so that both run the same
configuration: locations under ``.localhost`` (Chromium resolves them to loopback), a
local provider behaving like ProSantéConnect and FranceConnect+, a throw-away client
secret made at start, the demo KOS published in the archive with a fictitious CDA id.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from bff.access.params import AccessionNumber, ViewerLink
from bff.archive.kos import read_kos
from bff.archive.store import ArchiveStore
from bff.demo.dataset import DemoStudy
from bff.idp.app import IdpClient
from bff.settings import PROJECT_ROOT

#: The CDA id (idCDA) the demo report would carry: a fictitious OID under 1.2.250.1.999.
DEMO_CDA_ID = "1.2.250.1.999.1.1.101"
DEMO_USERS_FILE = PROJECT_ROOT / "bff" / "idp" / "demo-users.json"
CLIENT_ID = "drimbox-viewer"
#: Demo users printed by ``scripts/demo`` (profile, username).
DEMO_USERS = (
    ("patient", "dominique.pat-trois"),
    ("patient", "jean.martin"),
    ("professional", "dr.radiologue"),
)


@dataclass(frozen=True)
class Stack:
    bff_port: int
    idp_port: int
    hosts: tuple[str, ...]  # the locations, e.g. ("vi1.localhost",)
    client_secret: str
    #: Other viewers using the same provider client (the demo Consumer): their base URLs.
    extra_origins: tuple[str, ...] = ()

    @property
    def issuer_base(self) -> str:
        return f"http://localhost:{self.idp_port}"

    def bff_url(self, host: str) -> str:
        return f"http://{host}:{self.bff_port}"

    def idp_clients(self) -> dict[str, IdpClient]:
        urls = [self.bff_url(h) for h in self.hosts] + list(self.extra_origins)
        return {
            CLIENT_ID: IdpClient(
                client_id=CLIENT_ID,
                client_secret=self.client_secret,
                redirect_uris=tuple(f"{u}/auth/callback" for u in urls),
                post_logout_redirect_uris=tuple(f"{u}/auth/logged-out" for u in urls),
                # The provider fetches our encryption key server to server, on loopback.
                jwks_uri=f"http://127.0.0.1:{self.bff_port}/auth/jwks",
            )
        }

    def bff_overrides(self) -> dict[str, object]:
        """Settings of the BFF that go with this stack (merge with the rest)."""
        return {
            "port": self.bff_port,
            "mode": "demo",
            "psc_issuer": f"{self.issuer_base}/psc",
            "fcp_issuer": f"{self.issuer_base}/fcp",
            "fc_issuer": f"{self.issuer_base}/fc",
            "psc_client_id": CLIENT_ID,
            "fcp_client_id": CLIENT_ID,
            "fc_client_id": CLIENT_ID,
            "psc_client_secret": self.client_secret,
            "fcp_client_secret": self.client_secret,
            "fc_client_secret": self.client_secret,
            "fc_enabled": True,
            # Besides the locations: the provider fetches our JWKS at 127.0.0.1, Consumers
            # reach the Source API at localhost (the test PKI's server name).
            "trusted_hosts": "localhost,127.0.0.1",
        }

    def viewer_link(self, study: DemoStudy, host: str, *, cda_id: str = DEMO_CDA_ID) -> str:
        link = ViewerLink(
            study_uid=study.study_uid,
            accession=AccessionNumber(study.accession_number, study.accession_issuer),
            cda_id=cda_id,
        )
        return f"{self.bff_url(host)}/IHEInvokeImageDisplay?{link.query()}"


def new_stack(
    bff_port: int, idp_port: int, hosts: tuple[str, ...], extra_origins: tuple[str, ...] = ()
) -> Stack:
    return Stack(bff_port, idp_port, hosts, secrets.token_urlsafe(24), extra_origins)


def publish_demo_kos(archive_url: str, kos_path: Path, *, location: str, cda_id: str) -> str:
    """Publish a KOS in the archive as the DRIMbox's publication step would (DB.SO.22)."""
    store = ArchiveStore(archive_url)
    try:
        store.create_schema()
        record = read_kos(kos_path)
        store.publish(record, cda_id=cda_id, location=location)
        return record.sop_uid
    finally:
        store.close()
