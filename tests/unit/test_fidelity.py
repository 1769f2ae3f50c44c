"""The lossy bound of each modality is set against its usual display window, never the
stored range (issue 14, bff/transcode/fidelity.py, docs/transcoding.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bff.transcode import EncodeParams, decode_served_frame, transcode_instance
from bff.transcode.fidelity import CT_STEP_HU, Fidelity, used_range
from tests.unit.test_transcode import dataset, part10

JPEGLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
CR = "1.2.840.10008.5.1.4.1.1.1"


def cr_16_bit(seed: int = 0, n: int = 768) -> NDArray[np.uint16]:
    """A 16-bit CR like the real-world one where NEAR reached 171 (pydicom-data RG1:
    15 bits stored, values ~900 to ~26 500, noise sigma ~120): a body of soft tissue and
    bone over a bright unexposed border, smooth anatomy, quantum noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n].astype(np.float64) / n
    body = ((x - 0.5) / 0.38) ** 2 + ((y - 0.55) / 0.45) ** 2 < 1
    value = np.where(body, 9000.0, 25000.0)
    value += 4000 * np.sin(6 * x) * np.cos(4 * y) * body  # soft-tissue thickness
    bone = body & (np.abs(x - 0.5) < 0.05)
    value[bone] += 7000
    lungs = body & (((x - 0.33) / 0.1) ** 2 + ((y - 0.45) / 0.25) ** 2 < 1)
    value[lungs] -= 6500
    value += rng.normal(0, 120, value.shape)
    return np.clip(np.rint(value), 900, 26500).astype(np.uint16)


def instance(frame: NDArray[Any], modality: str, **attrs: Any) -> Dataset:
    """A CR-class instance of ``modality`` (MONOCHROME1, or RGB for 3 samples)."""
    photometric = "RGB" if frame.ndim == 3 else "MONOCHROME1"
    return dataset(frame, photometric=photometric, sop_class_uid=CR, Modality=modality, **attrs)


def jpegls_near_of(codestream: bytes) -> int:
    """NEAR as written in the JPEG-LS scan header (ISO 14495-1 C.2.3: SOS, FFDA)."""
    sos = codestream.index(b"\xff\xda")
    components = codestream[sos + 4]
    return codestream[sos + 5 + 2 * components]


def test_16_bit_cr_near_is_set_against_its_display_window() -> None:
    """Issue 14: on a 16-bit CR the range rule gave NEAR 171 (20/3000 of ~25 600); now a
    projection radiograph's bound is 1/512 of its window (its Window Width 30000, here
    wider than the values it uses, so the used range): at most 2 grey levels of 256 on a
    window narrowed 4x. The scan header says so, and every decoded pixel is within it."""
    stored = cr_16_bit()
    ds = instance(stored, "CR", WindowCenter=15000, WindowWidth=30000)
    ds.BitsStored, ds.HighBit = 15, 14
    inst = transcode_instance(part10(ds), EncodeParams("balanced", codec="jpegls"))
    assert inst.transfer_syntax_uid == JPEGLS_NEAR_LOSSLESS
    near = jpegls_near_of(inst.frames[0])
    low, high = np.percentile(stored, (1, 99))
    window = min(30000.0, float(high - low))
    assert window > 20000  # what the range rule turned into NEAR 171
    assert 1 <= near <= window / 512 + 1, near
    assert near * 256 / (window / 4) <= 2.1  # grey levels on a window narrowed 4x
    back = decode_served_frame(inst.frames[0], inst.transfer_syntax_uid)
    error = np.abs(back.astype(np.int64) - stored.astype(np.int64))
    assert int(error.max()) <= near
    assert inst.compression_ratio >= 3  # still well compressed


@pytest.mark.parametrize(
    ("modality", "fraction"), [("CR", 512), ("DX", 512), ("MG", 512), ("MR", 256), ("US", 128)]
)
def test_bound_is_a_fraction_of_the_instances_narrowest_window(
    modality: str, fraction: int
) -> None:
    """The narrowest Window Width, over the Rescale Slope (the window is in modality
    values), when narrower than the values the frame uses."""
    frame = np.tile(np.arange(4096, dtype=np.uint16), (16, 1))
    ds = instance(frame, modality, WindowWidth=[6000, 4096], RescaleSlope=2, RescaleIntercept=0)
    fidelity = Fidelity.from_dataset(ds)
    assert fidelity.window == 2048
    assert fidelity.step("balanced", frame) == pytest.approx(2048 / fraction)
    assert fidelity.step("high", frame) == pytest.approx(0.4 * 2048 / fraction)
    assert fidelity.step("small", frame) == pytest.approx(2 * 2048 / fraction)


def test_without_a_window_the_used_range_counts_not_the_bit_depth() -> None:
    """No window: the 1st-99th percentile of the values, so neither 16 bits allocated
    nor a burned-in annotation at full scale widens it."""
    frame = np.tile(np.linspace(1000, 1512, 256).astype(np.uint16), (256, 1))
    frame[:2, :8] = 65535  # text burned in at full scale
    fidelity = Fidelity.from_dataset(instance(frame, "MR"))
    assert fidelity.window is None
    assert 490 <= used_range(frame) <= 512
    assert fidelity.step("balanced", frame) == pytest.approx(used_range(frame) / 256)


def test_a_voi_lut_gives_the_window() -> None:
    frame = np.tile(np.arange(4096, dtype=np.uint16), (16, 1))
    lut = Dataset()
    lut.LUTDescriptor = [1024, 0, 12]
    lut.LUTData = list(range(1024))
    ds = instance(frame, "DX", VOILUTSequence=Sequence([lut]))
    assert Fidelity.from_dataset(ds).step("balanced", frame) == pytest.approx(1024 / 512)


def test_enhanced_images_give_their_window_in_the_shared_functional_groups() -> None:
    frame = np.tile(np.arange(4096, dtype=np.uint16), (16, 1))
    voi, transform, shared = Dataset(), Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = 1500, 1000
    transform.RescaleSlope, transform.RescaleIntercept = 4, 0
    shared.FrameVOILUTSequence = Sequence([voi])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds = instance(frame, "MR", SharedFunctionalGroupsSequence=Sequence([shared]))
    assert Fidelity.from_dataset(ds).window == 250


def test_ct_keeps_its_bound_in_hu() -> None:
    """CT: 20 HU at 'balanced' whatever the window, in stored values through the slope."""
    frame = np.zeros((8, 8), np.uint16)
    ds = instance(frame, "CT", RescaleSlope=0.5, RescaleIntercept=-1024, WindowWidth=80)
    fidelity = Fidelity.from_dataset(ds)
    for quality, hu in CT_STEP_HU.items():
        assert fidelity.step(quality, frame) == pytest.approx(hu / 0.5)


def test_ultrasound_and_colour_keep_about_two_grey_levels() -> None:
    """8-bit images read as they are: 2 of 256 levels (NEAR 2, as before issue 14)."""
    grey = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    assert round(Fidelity.from_dataset(instance(grey, "US")).step("balanced", grey)) == 2
    rgb = np.stack([grey, grey[:, ::-1], grey], axis=-1)
    colour = Fidelity.from_dataset(instance(rgb, "US"), samples_per_pixel=3)
    assert colour.group == "colour"
    assert round(colour.step("balanced", rgb)) == 2


def test_a_flat_frame_gets_the_smallest_bound() -> None:
    frame = np.full((32, 32), 700, np.uint16)
    assert Fidelity.from_dataset(instance(frame, "CR")).step("small", frame) == 0.5
