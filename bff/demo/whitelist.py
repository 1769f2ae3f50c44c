"""A test ANS whitelist, signed at write time (demo, tests, bench).

Written in the ANS layout (:mod:`bff.origins.whitelist`), one ``Domaine`` per host, and
signed like ANS signs it: enveloped XAdES, here with a throw-away key
(:func:`bff.demo.pki.make_whitelist_signer`) that the demo or test then pins
(DRIMBOX_WHITELIST_SIGNER_CERT). The application verifies it the same way as a real list:
there is no unsigned path anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lxml import etree
from signxml.algorithms import SignatureMethod
from signxml.xades.xades import XAdESSigner

from bff.demo.pki import TlsFiles, subject
from bff.origins.whitelist import normalize_host
from bff.origins.whitelist_file import ROOT_TAG, VERSION_FORMAT


def _viewer_name(db: str) -> str:
    first, _, rest = db.partition(".")
    first = "vi" + first[2:] if first.startswith("db") else "vi-" + first
    return f"{first}.{rest}" if rest else first


def whitelist_xml(hosts: Sequence[str], dns: Mapping[str, str] | None = None) -> bytes:
    """The unsigned document: ``vi`` derived from ``db`` (``db1.x`` -> ``vi1.x``), the
    operator certificate DN that of a test certificate for the host (``dns`` overrides)."""
    root = etree.Element(ROOT_TAG, versionFormat=VERSION_FORMAT)
    root.append(etree.Comment(" Liste blanche de TEST : ne pas utiliser en production. "))
    etree.SubElement(root, "DateDeGeneration").text = "2025-01-15T09:30:00+01:00"
    domaines = etree.SubElement(root, "ListeDomaines")
    for index, host in enumerate(hosts, start=1):
        db = normalize_host(host)
        if db is None:
            raise ValueError(f"not a host name: {host!r}")
        domaine = etree.SubElement(domaines, "Domaine")
        values = {
            "Identifiant": f"DRIMBOX-TEST-{index:03d}",
            "db": db,
            "vi": _viewer_name(db),
            "Denomination": f"DRIMbox de test n°{index}",
            "DNCertificatOperateur": (dns or {}).get(host, subject(db).rfc4514_string()),
            "SupportContact": "support-drimbox@example.invalid",
            "DateMAJ": "2025-01-15",
        }
        for name, value in values.items():
            etree.SubElement(domaine, name).text = value
    etree.indent(root)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def sign_whitelist(data: bytes, signer: TlsFiles) -> bytes:
    """``data`` with an enveloped XAdES signature by ``signer`` (EC P-256)."""
    root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False))
    signed = XAdESSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256).sign(
        root, key=signer.key.read_bytes(), cert=[signer.cert.read_text(encoding="ascii")]
    )
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


def write_test_whitelist(
    path: Path,
    hosts: Sequence[str],
    signer: TlsFiles,
    *,
    dns: Mapping[str, str] | None = None,
) -> None:
    """Write a whitelist listing ``hosts``, signed by ``signer``."""
    path.write_bytes(sign_whitelist(whitelist_xml(hosts, dns), signer))
