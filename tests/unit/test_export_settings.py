"""DRIMBOX_EXPORT_DESTINATIONS (DB.VI-CO.42): checked at start, refused when malformed,
and production refuses credentials sent in clear text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bff.settings import Settings, parse_export_destinations
from tests.unit.test_settings import production

STOW = {"name": "PACS du cabinet", "protocol": "stow", "url": "https://pacs.cabinet.fr/dicom-web/"}
CSTORE = {
    "name": "Station",
    "protocol": "cstore",
    "host": "10.0.0.5",
    "port": 104,
    "called_ae": "STATION",
    "calling_ae": "DRIMBOX",
}


def test_destinations_are_parsed_with_ids_in_order() -> None:
    parsed = parse_export_destinations(json.dumps([STOW, CSTORE]))
    assert [(d.id, d.name, d.protocol) for d in parsed] == [
        ("1", "PACS du cabinet", "stow"),
        ("2", "Station", "cstore"),
    ]
    assert parsed[0].url == "https://pacs.cabinet.fr/dicom-web"
    assert (parsed[1].host, parsed[1].port, parsed[1].called_ae) == ("10.0.0.5", 104, "STATION")
    assert parse_export_destinations("") == ()


@pytest.mark.parametrize(
    "entry",
    [
        {**STOW, "url": "ftp://pacs/dicom-web"},
        {**STOW, "url": "https://user:pw@pacs/dicom-web"},
        {**STOW, "url": "https://pacs/dicom-web?x=1"},
        {**STOW, "name": ""},
        {**STOW, "name": "a\nb"},
        {**STOW, "protocol": "ftp"},
        {**STOW, "extra": 1},
        {**STOW, "url": "http://pacs/dicom-web", "ca_file": "/etc/ca.pem"},
        {**STOW, "ca_file": 3},
        {**CSTORE, "port": 0},
        {**CSTORE, "port": "104"},
        {**CSTORE, "called_ae": "A" * 17},
        {**CSTORE, "calling_ae": "BACK\\SLASH"},
        {**CSTORE, "host": ""},
    ],
)
def test_a_malformed_destination_stops_the_start(entry: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="EXPORT_DESTINATIONS"):
        Settings.from_env({}, export_destinations=json.dumps([entry]))


def test_not_json_or_twice_the_same_name_stops_the_start() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        Settings.from_env({}, export_destinations="[")
    with pytest.raises(ValueError, match="twice"):
        Settings.from_env({}, export_destinations=json.dumps([STOW, STOW]))


def test_production_refuses_credentials_over_plain_http() -> None:
    plain = {**STOW, "url": "http://pacs.cabinet.lan/dicom-web", "auth_file": "/run/pacs"}
    with pytest.raises(ValueError, match="plain http"):
        production(export_destinations=json.dumps([plain]))
    # Without credentials, a hospital LAN's plain-http PACS is allowed; https always.
    assert production(export_destinations=json.dumps([{**plain, "auth_file": ""}]))
    assert production(export_destinations=json.dumps([{**STOW, "auth_file": "/run/pacs"}]))
    # The demo mode allows it (a loopback PACS, test set-ups).
    assert Settings.from_env({}, export_destinations=json.dumps([plain]))
