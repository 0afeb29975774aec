"""Truth products of a simulated field: the source table and the ASID-L localization mask."""

from __future__ import annotations

import numpy as np

from skysift.sim.presets import SurveyPreset
from skysift.sim.render import RenderedSources
from skysift.sim.sources import Source

__all__ = ["LOCALIZATION_STENCIL", "build_truth_table", "localization_mask"]

#: The 13-pixel target of ASID-L: a 3x3 square plus one pixel at distance 2 in each cardinal
#: direction, as (row, column) offsets from the source's pixel.
LOCALIZATION_STENCIL = np.array(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] + [(-2, 0), (2, 0), (0, -2), (0, 2)],
    dtype=np.intp,
)


def localization_mask(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(height, width)`` mask with the 13-pixel ASID-L cross-disc at each position.

    Positions are 0-based ``x`` (column) and ``y`` (row); each is rounded to its pixel.
    Stencil pixels outside the image are dropped.
    """
    mask = np.zeros(shape, dtype=bool)
    if len(x) == 0:
        return mask
    rows = np.rint(np.asarray(y)).astype(np.intp)[:, np.newaxis] + LOCALIZATION_STENCIL[:, 0]
    cols = np.rint(np.asarray(x)).astype(np.intp)[:, np.newaxis] + LOCALIZATION_STENCIL[:, 1]
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    mask[rows[inside], cols[inside]] = True
    return mask


def build_truth_table(
    sources: list[Source],
    rendered: RenderedSources,
    *,
    preset: SurveyPreset,
    sky_electrons: np.ndarray,
    wcs=None,
):
    """One row per truth source, with the columns documented in ``docs/simulation.md``.

    Fluxes are in ADU (the image's units), magnitudes AB, sizes in arcsec, positions 0-based
    pixels. ``snr`` is the optimal S/N in the detection band; ``snr_<band>`` in each band.
    """
    import astropy.units as u
    from astropy.table import QTable

    bands = preset.band_names
    det = bands.index(preset.detection_band)
    n = len(sources)
    x = np.array([s.x for s in sources], dtype=float)
    y = np.array([s.y for s in sources], dtype=float)
    table = QTable()
    table["id"] = np.array([s.id for s in sources], dtype=np.int64)
    table["x"] = x
    table["y"] = y
    if wcs is not None and n:
        sky = wcs.pixel_to_world(x, y)
        table["ra"] = sky.ra.to(u.deg)
        table["dec"] = sky.dec.to(u.deg)
    table["class"] = np.array([s.kind for s in sources], dtype="U6")
    table["morphology"] = np.array([s.morphology for s in sources], dtype="U10")
    table["galaxy_type"] = np.array([s.galaxy_type for s in sources], dtype="U10")
    table["is_shred"] = np.array([s.is_shred for s in sources], dtype=bool)
    table["parent_id"] = np.array([s.parent_id for s in sources], dtype=np.int64)
    for band in bands:
        table[f"mag_{band}"] = np.array([s.mags[band] for s in sources], dtype=float) * u.ABmag
    for b, band in enumerate(bands):
        table[f"flux_{band}"] = rendered.flux[:, b] / preset.gain * u.adu
    table["snr"] = rendered.snr[:, det]
    for b, band in enumerate(bands):
        table[f"snr_{band}"] = rendered.snr[:, b]
    table["hlr"] = np.array([s.hlr for s in sources], dtype=float) * u.arcsec
    table["axis_ratio"] = np.array([s.axis_ratio for s in sources], dtype=float)
    table["ellipticity"] = 1.0 - table["axis_ratio"]
    table["position_angle"] = np.array([s.position_angle for s in sources]) * u.deg
    table["sersic_n"] = np.array([s.sersic_n for s in sources], dtype=float)
    table["psf_fwhm"] = rendered.psf_fwhm * u.arcsec
    table["peak"] = rendered.peak / preset.gain * u.adu
    rows = np.clip(np.rint(y).astype(int), 0, sky_electrons.shape[1] - 1) if n else []
    cols = np.clip(np.rint(x).astype(int), 0, sky_electrons.shape[2] - 1) if n else []
    full_well = preset.saturation * preset.gain
    table["saturated"] = (
        (rendered.peak + sky_electrons[det][rows, cols]) > full_well
        if n
        else (np.zeros(0, dtype=bool))
    )
    areas = np.bincount(rendered.footprints.ravel(), minlength=int(table["id"].max(initial=0)) + 1)
    table["footprint_area"] = areas[table["id"]].astype(np.int64) if n else np.zeros(0, np.int64)
    _describe_columns(table)
    return table


_DESCRIPTIONS = {
    "id": "source id (1-based); the label of the source in the footprint map",
    "x": "0-based column of the source centre (pixel centres are integers)",
    "y": "0-based row of the source centre",
    "class": "star or galaxy (shreds are galaxy light)",
    "morphology": "star, elliptical, spiral, other (galaxy), or clump (a shred)",
    "galaxy_type": "star, elliptical, spiral, disk, clumpy, compact, or clump",
    "is_shred": "a star-forming clump of a larger galaxy (a shred if catalogued)",
    "parent_id": "id of the galaxy a shred belongs to, -1 otherwise",
    "snr": "optimal (matched-filter) S/N of the isolated source in the detection band",
    "hlr": "intrinsic half-light radius before the PSF",
    "axis_ratio": "minor/major axis ratio of the intrinsic light",
    "ellipticity": "1 - axis_ratio",
    "position_angle": "major axis angle counter-clockwise from +x",
    "sersic_n": "Sersic index of the main component (0 for stars)",
    "psf_fwhm": "PSF FWHM at the source position, detection band",
    "peak": "brightest noiseless pixel of the source alone, detection band",
    "saturated": "peak plus sky exceeds the full well",
    "footprint_area": "pixels in the footprint map labelled with this id",
}


def _describe_columns(table) -> None:
    for name, text in _DESCRIPTIONS.items():
        if name in table.colnames:
            table[name].info.description = text
