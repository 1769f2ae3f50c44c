"""Metadata describes what the BFF serves (spec 4.3.2; DB.VI-CS.26 relies on the flag)."""

from __future__ import annotations

from typing import Any

from bff.dicomweb.metadata import rewrite_instance
from bff.transcode import HTJ2K_LOSSY

PACS = "http://pacs.local:8042/dicom-web"
INSTANCE = f"{PACS}/studies/1.2/series/1.3/instances/1.4"
BFF = "https://vi1.example/dicomweb/studies/1.2/series/1.3/instances/1.4"


def ct_instance(ts: str = "1.2.840.10008.1.2.4.80") -> dict[str, Any]:
    return {
        "00020010": {"vr": "UI", "Value": [ts]},
        "00080018": {"vr": "UI", "Value": ["1.4"]},
        "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
        "00280100": {"vr": "US", "Value": [16]},
        "00280101": {"vr": "US", "Value": [12]},
        "00280010": {"vr": "US", "Value": [512]},
        "00280011": {"vr": "US", "Value": [512]},
        "7FE00010": {
            "vr": "OB",
            "BulkDataURI": f"{INSTANCE}/bulk/7fe00010",
        },
        "00282110": {"vr": "CS", "Value": ["00"]},
        "00400275": {
            "vr": "SQ",
            "Value": [
                {
                    "00281201": {
                        "vr": "OW",
                        "BulkDataURI": f"{INSTANCE}/bulk/00400275/0/00281201",
                    },
                }
            ],
        },
        "00091010": {"vr": "OB", "BulkDataURI": "http://elsewhere.example/secret"},
    }


def test_lossless_source_is_described_as_served_htj2k() -> None:
    out = rewrite_instance(ct_instance(), instance_url=BFF, upstream_base=PACS, ratio=7.5)
    assert out["00020010"]["Value"] == [HTJ2K_LOSSY]
    assert out["00282110"]["Value"] == ["01"]
    assert out["00282112"]["Value"] == [7.5]
    assert out["00282114"]["Value"] == ["ISO_15444_15"]


def test_bulk_data_uris_point_at_the_bff_only() -> None:
    out = rewrite_instance(ct_instance(), instance_url=BFF, upstream_base=PACS, ratio=None)
    assert out["7FE00010"] == {"vr": "OB", "BulkDataURI": f"{BFF}/bulk/7fe00010"}
    nested = out["00400275"]["Value"][0]["00281201"]["BulkDataURI"]
    assert nested == f"{BFF}/bulk/00400275/0/00281201"
    assert "BulkDataURI" not in out["00091010"]
    assert PACS not in str(out) and "elsewhere" not in str(out)


def test_inline_pixel_data_is_never_sent() -> None:
    instance = ct_instance()
    instance["7FE00010"] = {"vr": "OW", "InlineBinary": "AAAA"}
    out = rewrite_instance(instance, instance_url=BFF, upstream_base=PACS, ratio=None)
    assert "InlineBinary" not in out["7FE00010"]
    assert "00282112" not in out  # no ratio invented before one was measured


def test_lossy_sources_pass_through_and_keep_their_history() -> None:
    instance = ct_instance("1.2.840.10008.1.2.4.50")
    instance["00282110"] = {"vr": "CS", "Value": ["01"]}
    instance["00282112"] = {"vr": "DS", "Value": [10]}
    instance["00282114"] = {"vr": "CS", "Value": ["ISO_10918_1"]}
    out = rewrite_instance(instance, instance_url=BFF, upstream_base=PACS, ratio=3.0)
    assert out["00020010"]["Value"] == ["1.2.840.10008.1.2.4.50"]
    assert out["00282112"]["Value"] == [10]
    assert out["00282114"]["Value"] == ["ISO_10918_1"]


def test_palette_colour_is_never_served_lossy() -> None:
    instance = ct_instance("1.2.840.10008.1.2.1")
    instance["00280004"] = {"vr": "CS", "Value": ["PALETTE COLOR"]}
    out = rewrite_instance(instance, instance_url=BFF, upstream_base=PACS, ratio=None)
    assert out["00020010"]["Value"] == ["1.2.840.10008.1.2.4.201"]
    assert "00282114" not in out


def test_served_bit_depth_is_described() -> None:
    """12 bits stored become 16 in the lossy codestream: the metadata says so."""
    out = rewrite_instance(ct_instance(), instance_url=BFF, upstream_base=PACS, ratio=None)
    assert out["00280101"]["Value"] == [16]
    assert out["00280102"]["Value"] == [15]


def test_objects_without_pixels_keep_their_syntax() -> None:
    kos = {
        "00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]},
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.88.59"]},
    }
    out = rewrite_instance(kos, instance_url=BFF, upstream_base=PACS, ratio=2.0)
    assert out["00020010"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert "00282110" not in out
