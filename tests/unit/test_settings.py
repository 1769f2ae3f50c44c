"""Settings: typed, validated, secret files, and documented (each one in the docs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bff.settings import PROJECT_ROOT, SETTINGS, Settings, markdown_table


def test_defaults_work_for_the_demo() -> None:
    settings = Settings.from_env({})
    assert settings.mode == "demo"
    assert settings.port == 8080
    assert settings.workers >= 1


def test_environment_and_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("user:s3cret\n")
    settings = Settings.from_env(
        {"DRIMBOX_PORT": "9000", "DRIMBOX_UPSTREAM_AUTH_FILE": str(secret)}
    )
    assert settings.port == 9000
    assert settings.upstream_auth == "user:s3cret"
    assert "s3cret" not in repr(settings)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"DRIMBOX_MODE": "open-bar"})
    with pytest.raises(ValueError):
        Settings.from_env({"DRIMBOX_LOSSY_QUALITY": "ultra"})
    with pytest.raises(TypeError):
        Settings.from_env({}, no_such_setting=1)


def test_every_setting_is_a_field_and_documented() -> None:
    field_names = set(Settings.__dataclass_fields__)
    assert {s.name.lower() for s in SETTINGS} == field_names
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, (
        "run: python -c 'from bff.settings import markdown_table; print(markdown_table())'"
    )


# -- the ANS whitelist and Sources' ports (issue 13 item 6) ------------------------------


#: Production writes outside the code (issue 15).
DATA_PATHS: dict[str, object] = {
    "archive_url": "sqlite:////var/lib/drimbox-viewer/archive.db",
    "audit_log": Path("/var/lib/drimbox-viewer/audit.jsonl"),
    "frame_disk_cache_dir": "/var/cache/drimbox-viewer/frames",
    "prepared_dir": "/var/lib/drimbox-viewer/prepared",
}


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "mode": "production",
        "session_secret": "s" * 40,
        "psc_issuer": "https://psc.example.fr/auth/realms/esante-wallet",
        "fcp_issuer": "https://fcp.example.fr",
        "whitelist_file": "/etc/drimbox/liste-blanche.xml",
        "whitelist_signer_cert": "/etc/drimbox/ans-signature.pem",
        "locations": "vi1.example.fr=https://pacs.example.fr/dicom-web",
        "state_url": "postgresql+psycopg://drimbox@db.example.fr/drimbox",
        "state_key_file": "/run/secrets/state-key",
        "audit_url": "postgresql+psycopg://drimbox@db.example.fr/drimbox",
        "audit_key_file": "/run/secrets/audit-key",
        **DATA_PATHS,
        **overrides,
    }
    return Settings.from_env({}, **values)


def test_a_whitelist_needs_its_signer_in_every_mode() -> None:
    with pytest.raises(ValueError, match="WHITELIST_SIGNER_CERT"):
        Settings.from_env({}, whitelist_file="/tmp/liste.xml")
    with pytest.raises(ValueError, match="WHITELIST_SIGNER_CERT"):
        production(whitelist_signer_cert="")


def test_production_needs_the_whitelist_for_either_role() -> None:
    assert production(consumer_enabled=True, source_api_port=8443).whitelist_file
    for role in ({"consumer_enabled": True}, {"source_api_port": 8443}):
        with pytest.raises(ValueError, match="WHITELIST_FILE"):
            production(whitelist_file="", whitelist_signer_cert="", **role)


def test_source_ports() -> None:
    assert Settings.from_env({}).source_port_set() == {443}
    assert Settings.from_env({}, source_ports="443, 8443").source_port_set() == {443, 8443}
    for bad in ("", "x", "0", "65536", "443;8443"):
        with pytest.raises(ValueError, match="SOURCE_PORTS"):
            Settings.from_env({}, source_ports=bad)
    assert production(source_ports="443").source_port_set() == {443}
    with pytest.raises(ValueError, match="SOURCE_PORTS"):
        production(source_ports="443,8443")


# -- the practice's local patient id (DB.VI-CS.32) -----------------------------------------


def test_local_patient_id_issuers_are_oids_and_test_ones_are_refused_in_production() -> None:
    default = Settings.from_env({})
    assert default.local_patient_id_url == ""  # off unless configured
    assert "1.2.250.1.213.1.4.8" in default.local_patient_id_issuer_set()
    with pytest.raises(ValueError, match="LOCAL_PATIENT_ID_ISSUERS"):
        Settings.from_env({}, local_patient_id_issuers="1.2.250.1.213.1.4.8,ASIP-SANTE-INS-NIR")
    with pytest.raises(ValueError, match="LOCAL_PATIENT_ID_TIMEOUT"):
        Settings.from_env({}, local_patient_id_timeout="0")
    url = "https://pacs-cabinet.example.fr/dicom-web"
    # Production with the default issuers (the DRIM-M test OIDs among them): refused.
    with pytest.raises(ValueError, match="test INS OIDs"):
        production(local_patient_id_url=url)
    real = "1.2.250.1.213.1.4.8,1.2.250.1.213.1.4.9"
    kept = production(local_patient_id_url=url, local_patient_id_issuers=real)
    assert kept.local_patient_id_issuer_set() == {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9"}
    assert production().local_patient_id_url == ""  # off: the default issuers are harmless


# -- operations (issue 15 items 2 and 4) -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("archive_url", f"sqlite:///{PROJECT_ROOT / 'var' / 'archive.db'}"),
        ("audit_log", PROJECT_ROOT / "var" / "audit.jsonl"),
        ("frame_disk_cache_dir", str(PROJECT_ROOT / "var" / "frame-cache")),
        ("prepared_dir", str(PROJECT_ROOT / "var" / "prepared")),  # issue 16
    ],
)
def test_production_refuses_data_paths_inside_the_code(name: str, inside: object) -> None:
    with pytest.raises(ValueError, match=f"DRIMBOX_{name.upper()} is inside the code"):
        production(**{name: inside})
    # The demo writes into var/ of the checkout, as before.
    Settings.from_env({}, **{name: inside})


def test_production_defaults_write_into_the_code_and_are_refused() -> None:
    values = {k: v for k, v in DATA_PATHS.items() if k != "audit_log"}
    with pytest.raises(ValueError, match="DRIMBOX_AUDIT_LOG is inside the code"):
        production(**values, audit_log=Settings.from_env({}).audit_log)
    assert production().data_paths()["ARCHIVE_URL"] == Path("/var/lib/drimbox-viewer/archive.db")
    # A PostgreSQL archive is no path; an empty disk cache dir writes nothing.
    paths = production(
        archive_url="postgresql+psycopg://db/drimbox", frame_disk_cache_dir="", prepared_dir=""
    )
    assert set(paths.data_paths()) == {"AUDIT_LOG"}


def test_metrics_never_on_the_public_listener_in_production() -> None:
    assert Settings.from_env({}).metrics_on_main_listener()  # demo: /metrics on the BFF
    assert not Settings.from_env({}, metrics_port=9100).metrics_on_main_listener()
    assert not production().metrics_on_main_listener()
    assert not production(metrics_port=9100).metrics_on_main_listener()
    with pytest.raises(ValueError, match="METRICS_PORT must differ"):
        production(metrics_port=8080)
    with pytest.raises(ValueError, match="METRICS_PORT must differ"):
        Settings.from_env({}, source_api_port=8443, metrics_port=8443)


def test_log_format_json_in_production_text_in_the_demo() -> None:
    assert production().resolved_log_format == "json"
    assert Settings.from_env({}).resolved_log_format == "text"
    assert Settings.from_env({}, log_format="json").resolved_log_format == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        Settings.from_env({}, log_format="xml")


def test_production_believes_forwarded_headers_from_named_proxies_only() -> None:
    """Behind the balancer (docs/deployment.md): X-Forwarded-For/-Proto from any peer would
    let a client choose its address and scheme."""
    assert production(forwarded_allow_ips="10.0.0.5").forwarded_allow_ips == "10.0.0.5"
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS"):
        production(forwarded_allow_ips="10.0.0.5, *")


def test_the_owner_url_is_an_http_url() -> None:
    assert production(owner_url="http://10.0.0.5:8081").owner_url == "http://10.0.0.5:8081"
    with pytest.raises(ValueError, match="DRIMBOX_OWNER_URL"):
        production(owner_url="10.0.0.5:8081")


def test_the_server_believes_the_configured_proxies_only() -> None:
    from bff.__main__ import _servers

    (server,) = _servers(object(), production(forwarded_allow_ips="10.0.0.5"))
    assert server.config.proxy_headers
    assert server.config.forwarded_allow_ips == "10.0.0.5"


# -- shared state and the audit table (issue 15 items 1 and 5) ----------------------------------


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"state_url": "memory"}, "DRIMBOX_STATE_URL"),
        ({"state_key_file": ""}, "DRIMBOX_STATE_KEY_FILE"),
        ({"audit_url": ""}, "DRIMBOX_AUDIT_URL"),
        ({"audit_key_file": ""}, "DRIMBOX_AUDIT_KEY_FILE"),
    ],
)
def test_production_needs_a_shared_state_and_an_audit_table(
    missing: dict[str, str], named: str
) -> None:
    assert production().state_url.startswith("postgresql")
    with pytest.raises(ValueError, match=named):
        production(**missing)
    Settings.from_env({}, **missing)  # the demo may
