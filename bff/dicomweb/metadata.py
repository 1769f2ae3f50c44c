"""Rewrite upstream DICOM JSON metadata so it describes what the BFF actually serves.

- (0002,0010) TransferSyntaxUID: the syntax of the served frames;
- (0028,2110/2112/2114) LossyImageCompression "01", ratio and method when frames are
  served lossy (spec 4.3.2: lossy streaming; DB.VI-CS.26 relies on it);
- the pixel module of what is served (a palette image becomes RGB, its palette gone);
- every BulkDataURI points at the BFF, never at the PACS; no inline pixel data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bff.transcode.plan import Action, plan_from_json

PIXEL_DATA = "7FE00010"
TRANSFER_SYNTAX = "00020010"
LOSSY_FLAG = "00282110"
LOSSY_RATIO = "00282112"
LOSSY_METHOD = "00282114"


def _iter_bulk(dataset: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The elements holding a BulkDataURI, sequences included (only SQ values nest)."""
    for element in dataset.values():
        if not isinstance(element, dict):
            continue
        if "BulkDataURI" in element:
            yield element
        elif element.get("vr") == "SQ":
            for item in element.get("Value") or ():
                if isinstance(item, dict):
                    yield from _iter_bulk(item)


def rewrite_instance(
    instance: dict[str, Any],
    *,
    instance_url: str,
    upstream_base: str,
    ratio: float | None,
    serve: str = "lossy",
    codec: str = "htj2k",
) -> dict[str, Any]:
    """Rewrite one instance's metadata in place and return it.

    ``instance_url`` is the BFF URL of this instance (``.../instances/{sop}``);
    ``ratio`` the compression ratio measured on the series so far (None: unknown yet).
    """
    decision = plan_from_json(instance, serve=serve, codec=codec)
    has_pixels = decision.action is not Action.NONE
    if decision.action is not Action.NONE:
        instance[TRANSFER_SYNTAX] = {"vr": "UI", "Value": [decision.transfer_syntax_uid]}
        instance.update(decision.overrides)
        for tag in decision.removed:  # e.g. the palette of an image served as RGB
            instance.pop(tag, None)
    if decision.lossy and decision.lossy_method:
        instance[LOSSY_FLAG] = {"vr": "CS", "Value": ["01"]}
        methods = list(instance.get(LOSSY_METHOD, {}).get("Value") or [])
        ratios = list(instance.get(LOSSY_RATIO, {}).get("Value") or [])
        if decision.action is not Action.PASS_THROUGH or not methods:
            # A new lossy step (ours) is appended to the history (PS3.3 C.7.6.1.1.5).
            methods.append(decision.lossy_method)
            if decision.action in (Action.HTJ2K_LOSSY, Action.JPEGLS_NEAR) and ratio is not None:
                ratios.append(round(ratio, 2))
        instance[LOSSY_METHOD] = {"vr": "CS", "Value": methods}
        if ratios:
            instance[LOSSY_RATIO] = {"vr": "DS", "Value": ratios}
    # Pixel data: never inline; its bulk URI serves the frames as the BFF serves them.
    if has_pixels:
        instance[PIXEL_DATA] = {
            "vr": instance.get(PIXEL_DATA, {}).get("vr", "OW"),
            "BulkDataURI": f"{instance_url}/bulk/{PIXEL_DATA.lower()}",
        }
    prefix = upstream_base.rstrip("/")
    for node in _iter_bulk(instance):
        uri = str(node["BulkDataURI"])
        if uri.startswith(instance_url):
            continue
        marker = uri.find("/bulk/")
        if uri.startswith(prefix) and marker != -1:
            node["BulkDataURI"] = instance_url + uri[marker:]
        else:
            del node["BulkDataURI"]  # unknown origin: never send the browser to the PACS
    return instance
