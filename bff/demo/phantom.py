"""A synthetic thorax-abdomen CT phantom, in Hounsfield units.

It stands in for the ANS reference performance data set (1300 JPEG-LS lossless CT slices,
about 150 KB a slice; FACTS.md section 1), which cannot be downloaded here. The anatomy is
deliberately crude but has what matters for codecs and viewers: a body outline whose size
changes smoothly along z, fat, soft tissue, organs of different density (liver, spleen,
kidneys, heart, aorta), lungs in the upper part, vertebrae with discs, ribs, a table, air,
a reconstruction circle, a smooth texture and seeded Gaussian noise. The noise level is
calibrated so that a 512x512 slice compresses to about 150 KB with JPEG-LS lossless.

Everything is vectorised numpy; one 512x512 slice takes a few milliseconds. A slice only
depends on ``(index, n_slices, rows, cols, seed)``, so slices can be made in any order or in
several processes and still give the same volume.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

HU_MIN = -1024
HU_MAX = 3071

# Square pixels; the reconstruction field of view is 400 mm across the columns.
FIELD_OF_VIEW_MM = 400.0
# Noise standard deviation (HU) inside the body and in the air around it. Calibrated for
# ~150 KB a 512x512 slice in JPEG-LS lossless (see module docstring).
NOISE_SIGMA_BODY = 12.0
NOISE_SIGMA_AIR = 6.0
# Number of texture "layers" along z; the texture is interpolated between them.
_TEXTURE_LAYERS = 24
_TEXTURE_GRID = 20

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def pixel_spacing_mm(cols: int) -> float:
    """Pixel spacing (mm, square pixels) used by the phantom for ``cols`` columns."""
    return FIELD_OF_VIEW_MM / cols


def _smooth_step(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, smooth (cubic) in between."""
    if hi <= lo:
        return 1.0 if x >= hi else 0.0
    u = min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return u * u * (3.0 - 2.0 * u)


def _bump(x: float, lo: float, peak_lo: float, peak_hi: float, hi: float) -> float:
    """0 outside [lo, hi], 1 on [peak_lo, peak_hi], smooth in between."""
    return _smooth_step(x, lo, peak_lo) * (1.0 - _smooth_step(x, peak_hi, hi))


def _ellipse(x: F32, y: F32, cx: float, cy: float, ax: float, ay: float) -> Mask:
    if ax <= 0.0 or ay <= 0.0:
        return np.zeros((y.shape[0], x.shape[1]), dtype=np.bool_)
    dx = (x - np.float32(cx)) * np.float32(1.0 / ax)
    dy = (y - np.float32(cy)) * np.float32(1.0 / ay)
    result: Mask = (dx * dx + dy * dy) <= 1.0
    return result


@lru_cache(maxsize=8)
def _interp_matrix(n_out: int, n_in: int) -> F32:
    """Linear interpolation matrix (n_out, n_in) from a coarse grid onto ``n_out`` samples."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(np.intp), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    m[rows, lo] = 1.0 - frac
    m[rows, lo + 1] = frac
    m.flags.writeable = False  # shared through the cache
    return m


def _texture(t: float, rows: int, cols: int, seed: int) -> F32:
    """A smooth random field (unit amplitude) that varies smoothly with ``t`` in [0, 1]."""
    layer_pos = t * (_TEXTURE_LAYERS - 1)
    k = min(int(layer_pos), _TEXTURE_LAYERS - 2)
    w = np.float32(layer_pos - k)
    g0 = np.random.default_rng([seed, 1, k]).standard_normal(
        (_TEXTURE_GRID, _TEXTURE_GRID), dtype=np.float32
    )
    g1 = np.random.default_rng([seed, 1, k + 1]).standard_normal(
        (_TEXTURE_GRID, _TEXTURE_GRID), dtype=np.float32
    )
    grid = (1.0 - w) * g0 + w * g1
    field: F32 = _interp_matrix(rows, _TEXTURE_GRID) @ grid @ _interp_matrix(cols, _TEXTURE_GRID).T
    return field


def make_ct_slice(
    index: int, n_slices: int, rows: int = 512, cols: int = 512, seed: int = 0
) -> npt.NDArray[np.int16]:
    """Slice ``index`` (0 = most cranial) of an ``n_slices`` phantom, int16 HU (rows, cols)."""
    if n_slices < 1 or not 0 <= index < n_slices:
        raise ValueError(f"slice {index} out of range for {n_slices} slices")
    t = (index + 0.5) / n_slices  # 0 = lung apex, 1 = lower abdomen
    spacing = pixel_spacing_mm(cols)
    x: F32 = ((np.arange(cols, dtype=np.float32) - (cols - 1) / 2.0) * spacing)[None, :]
    y: F32 = ((np.arange(rows, dtype=np.float32) - (rows - 1) / 2.0) * spacing)[:, None]

    # Body outline (patient supine; +x = patient left = image right, +y = posterior = down).
    half_width = 150.0 + 22.0 * math.sin(math.pi * (0.25 + 0.75 * t)) + 4.0 * math.sin(7.0 * t)
    half_depth = 100.0 + 14.0 * math.sin(math.pi * t) + 3.0 * math.cos(5.0 * t)
    table_top = 130.0
    cy = table_top - half_depth - 2.0
    body = _ellipse(x, y, 0.0, cy, half_width, half_depth)
    fat = 10.0 + 8.0 * t
    inner = _ellipse(x, y, 0.0, cy, half_width - fat, half_depth - fat * 0.8)

    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    np.copyto(hu, np.float32(-100.0), where=body)
    np.copyto(hu, np.float32(40.0), where=inner)

    # Organs, from the largest to the smallest (later ones overwrite earlier ones).
    liver = _bump(t, 0.33, 0.45, 0.62, 0.75)
    np.copyto(
        hu,
        np.float32(60.0),
        where=inner
        & _ellipse(
            x,
            y,
            -0.38 * half_width,
            cy - 0.05 * half_depth,
            0.48 * half_width * liver,
            0.62 * half_depth * liver,
        ),
    )
    spleen = _bump(t, 0.38, 0.45, 0.52, 0.6)
    np.copyto(
        hu,
        np.float32(48.0),
        where=inner
        & _ellipse(
            x,
            y,
            0.55 * half_width,
            cy + 0.25 * half_depth,
            0.18 * half_width * spleen,
            0.3 * half_depth * spleen,
        ),
    )
    kidney = _bump(t, 0.55, 0.62, 0.74, 0.82)
    for side in (-1.0, 1.0):
        np.copyto(
            hu,
            np.float32(30.0),
            where=_ellipse(
                x, y, side * 0.36 * half_width, cy + 0.42 * half_depth, 26.0 * kidney, 34.0 * kidney
            ),
        )
    heart = _bump(t, 0.12, 0.22, 0.36, 0.44)
    np.copyto(
        hu,
        np.float32(45.0),
        where=_ellipse(
            x,
            y,
            0.12 * half_width,
            cy - 0.2 * half_depth,
            0.3 * half_width * heart,
            0.38 * half_depth * heart,
        ),
    )
    lung = _bump(t, -0.05, 0.18, 0.3, 0.47)
    lung_mask = np.zeros((rows, cols), dtype=np.bool_)
    for side in (-1.0, 1.0):
        lung_mask |= _ellipse(
            x,
            y,
            side * 0.45 * half_width,
            cy - 0.02 * half_depth,
            0.36 * half_width * lung,
            0.66 * half_depth * lung,
        )
    lung_mask &= ~_ellipse(
        x,
        y,
        0.12 * half_width,
        cy - 0.2 * half_depth,
        0.3 * half_width * heart,
        0.38 * half_depth * heart,
    )
    np.copyto(hu, np.float32(-850.0), where=lung_mask)
    # Aorta, left-anterior of the spine.
    np.copyto(hu, np.float32(50.0), where=_ellipse(x, y, 18.0, cy + half_depth - 78.0, 12.0, 12.0))

    # Spine: vertebral bodies separated by discs (period ~ 28 mm over a ~600 mm torso).
    spine_y = cy + half_depth - 48.0
    disc = math.cos(2.0 * math.pi * t * 20.0) > 0.75
    vertebra = _ellipse(x, y, 0.0, spine_y, 19.0, 16.0)
    np.copyto(hu, np.float32(90.0 if disc else 1200.0), where=vertebra)
    if not disc:
        np.copyto(hu, np.float32(700.0), where=_ellipse(x, y, 0.0, spine_y, 15.5, 12.5))
    np.copyto(hu, np.float32(1000.0), where=_ellipse(x, y, 0.0, spine_y + 26.0, 15.0, 12.0))
    np.copyto(hu, np.float32(20.0), where=_ellipse(x, y, 0.0, spine_y + 24.0, 7.0, 6.5))
    np.copyto(hu, np.float32(900.0), where=_ellipse(x, y, 0.0, spine_y + 44.0, 5.0, 11.0))

    # Ribs: 14 cross-sections on a ring inside the body wall, drifting with z.
    ribs = 1.0 - _smooth_step(t, 0.55, 0.68)
    if ribs > 0.0:
        nx = x * np.float32(1.0 / (half_width - fat - 4.0))
        ny = (y - np.float32(cy)) * np.float32(1.0 / (half_depth - fat * 0.8 - 4.0))
        radius = np.sqrt(nx * nx + ny * ny)
        theta = np.arctan2(ny, nx)
        rib_ring = (np.abs(radius - 0.93) < 0.045 * ribs) & (np.abs(ny) < 0.93)
        rib_ring &= np.cos(14.0 * theta + np.float32(9.0 * t)) > 0.78
        np.copyto(hu, np.float32(1000.0), where=rib_ring & body)

    # Table (carbon shell, foam core) under the body.
    table_half = 0.42 * cols * spacing
    tx = np.abs(x) < table_half
    np.copyto(hu, np.float32(350.0), where=tx & (y > table_top) & (y < table_top + 16.0))
    np.copyto(hu, np.float32(-700.0), where=tx & (y > table_top + 2.0) & (y < table_top + 14.0))

    # Texture: stronger in the lungs (vessels, parenchyma) than in soft tissue.
    amplitude = np.where(lung_mask, np.float32(35.0), np.where(body, np.float32(6.0), 0.0))
    hu += amplitude * _texture(t, rows, cols, seed)

    # Quantum noise, stronger through the body than in the air around it.
    noise = np.random.default_rng([seed, 2, index]).standard_normal((rows, cols), dtype=np.float32)
    sigma = np.where(body, np.float32(NOISE_SIGMA_BODY), np.float32(NOISE_SIGMA_AIR))
    hu += sigma * noise

    # Outside the reconstruction circle: the lowest value, no noise.
    fov_radius = 0.5 * min(rows, cols) * spacing
    outside = (x * x + y * y) > np.float32(fov_radius * fov_radius)
    np.copyto(hu, np.float32(HU_MIN), where=outside)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    result: npt.NDArray[np.int16] = np.rint(hu).astype(np.int16)
    return result


def make_ct_volume(
    n_slices: int, rows: int = 512, cols: int = 512, seed: int = 0
) -> npt.NDArray[np.int16]:
    """The whole phantom, int16 HU of shape ``(n_slices, rows, cols)``; same seed, same array."""
    volume = np.empty((n_slices, rows, cols), dtype=np.int16)
    for index in range(n_slices):
        volume[index] = make_ct_slice(index, n_slices, rows, cols, seed)
    return volume
