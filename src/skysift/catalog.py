"""The skysift catalog schema: columns, units, flag bits, and empty catalogs with full schema.

Integer pixel columns (peaks, bounding boxes, areas) carry no astropy unit: a unit would turn
them into float Quantities. Their descriptions say they are pixels.

Every detector (the skysift localizer, Mask R-CNN, SEP, photutils) returns a
:class:`~astropy.table.QTable` with these columns, so benchmarks and writers need no special
cases. Columns a detector cannot fill hold their missing value (NaN, -1, "" or 0); sky columns
(``ra``, ``dec``) are present only when a WCS is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COLUMNS",
    "FLAGS",
    "Column",
    "decode_flags",
    "empty_catalog",
    "make_catalog",
    "source_groups",
]


@dataclass(frozen=True)
class Column:
    """One catalog column: dtype, unit, missing value and meaning."""

    name: str
    dtype: str
    unit: str | None
    missing: Any
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("id", "i8", None, -1, "source id; equals the label in the segmentation map"),
    Column("x", "f8", "pix", np.nan, "0-based column of the source centre"),
    Column("y", "f8", "pix", np.nan, "0-based row of the source centre"),
    Column("x_peak", "i8", None, -1, "column (pixel) of the brightest pixel / probability peak"),
    Column("y_peak", "i8", None, -1, "row (pixel) of the brightest pixel / probability peak"),
    Column("ra", "f8", "deg", np.nan, "right ascension (only with a WCS)"),
    Column("dec", "f8", "deg", np.nan, "declination (only with a WCS)"),
    Column("score", "f4", None, np.nan, "detector confidence (probability peak for the U-Net)"),
    Column("snr", "f4", None, np.nan, "signal-to-noise of the flux measurement"),
    Column("flux", "f8", "adu", np.nan, "background-subtracted flux in image units"),
    Column("flux_err", "f8", "adu", np.nan, "1-sigma uncertainty of flux"),
    Column("p_star", "f4", None, np.nan, "calibrated probability that the source is a star"),
    Column(
        "p_shred",
        "f4",
        None,
        np.nan,
        "probability that the source is a clump (shred) of a larger galaxy",
    ),
    Column("morphology", "U10", None, "", "star, elliptical, spiral or other"),
    Column("morphology_score", "f4", None, np.nan, "confidence of the morphology class"),
    Column(
        "p_star_segment",
        "f4",
        None,
        np.nan,
        "the segmenter's probability that the source is a star, given that it is one",
    ),
    Column("bbox_xmin", "i8", None, -1, "bounding box, first column (pixel)"),
    Column("bbox_xmax", "i8", None, -1, "bounding box, last column (pixel)"),
    Column("bbox_ymin", "i8", None, -1, "bounding box, first row (pixel)"),
    Column("bbox_ymax", "i8", None, -1, "bounding box, last row (pixel)"),
    Column("area", "i8", None, -1, "number of pixels in the source's segmentation footprint"),
    Column(
        "x_segment",
        "f8",
        "pix",
        np.nan,
        "column of the windowed centroid of the segmenter instance's sky-subtracted light",
    ),
    Column(
        "y_segment",
        "f8",
        "pix",
        np.nan,
        "row of the windowed centroid of the segmenter instance's sky-subtracted light",
    ),
    Column("flags", "i4", None, 0, "bit mask; see skysift.catalog.FLAGS and decode_flags"),
)
_SKY = ("ra", "dec")

#: Flag bits of the ``flags`` column.
FLAGS: dict[str, int] = {
    "edge": 1,  # cutout or aperture truncated by the image edge
    "masked": 2,  # masked pixels inside the aperture/cutout
    "tile_seam": 4,  # merged across a tile seam
    "blended": 8,  # a neighbour's aperture overlaps, or a footprint touches or holds it
    "saturated": 16,  # saturated pixels in the source
    "unmatched_instance": 32,  # segmenter instance with no localized source
    "truncated_footprint": 64,  # segmenter footprint at the image's edge or masked pixels
}


def source_groups(catalog) -> np.ndarray:
    """Each source's group as the outputs show it: ``"shred"``, ``"star"``, ``"galaxy"`` or
    ``""`` (not classified).

    A source with ``p_shred`` >= 0.5 is a shred (a clump of a larger galaxy). Otherwise the
    segmenter's call where it segmented the source (``morphology``: star, or a galaxy type),
    which reads each instance's mask, PSF and colours; else the classify stage's (``p_star``
    >= 0.5 is a star); else not classified.

    Parameters
    ----------
    catalog : astropy.table.Table or QTable
        Any subset of the ``p_star``, ``morphology`` and ``p_shred`` columns.

    Returns
    -------
    numpy.ndarray
        ``(len(catalog),)`` strings.
    """

    def values(name: str, missing):  # a catalog read back from a file has masked entries
        return np.ma.filled(np.ma.asanyarray(catalog[name]), missing)

    groups = np.full(len(catalog), "", dtype="U6")
    if "p_star" in catalog.colnames:
        p = values("p_star", np.nan).astype(float)
        known = np.isfinite(p)
        groups[known] = np.where(p[known] >= 0.5, "star", "galaxy")
    if "morphology" in catalog.colnames:
        morphology = values("morphology", "").astype(str)
        segmented = morphology != ""
        groups[segmented] = np.where(morphology[segmented] == "star", "star", "galaxy")
    if "p_shred" in catalog.colnames:
        with np.errstate(invalid="ignore"):
            groups[values("p_shred", np.nan).astype(float) >= 0.5] = "shred"  # NaN: not one
    return groups


def decode_flags(flags: int) -> list[str]:
    """Names of the bits set in a ``flags`` value: ``decode_flags(17) -> ['edge', 'saturated']``."""
    return [name for name, bit in FLAGS.items() if int(flags) & bit]


def empty_catalog(*, with_sky: bool = False, meta: dict | None = None):
    """A catalog with the full schema and no rows."""
    return make_catalog({}, length=0, with_sky=with_sky, meta=meta)


def make_catalog(
    values: dict[str, Any],
    *,
    length: int | None = None,
    with_sky: bool | None = None,
    meta: dict | None = None,
):
    """Build a catalog in the skysift schema from the columns a detector measured.

    Parameters
    ----------
    values : dict
        Column name -> values (array-like, plain numbers or Quantities). Schema columns not
        given are filled with their missing value; extra columns are appended after the schema.
    length : int, optional
        Number of rows when ``values`` is empty.
    with_sky : bool, optional
        Include ``ra``/``dec``; default: when they are in ``values``.
    meta : dict, optional
        Table metadata (skysift version, detector, configuration).
    """
    import astropy.units as u
    from astropy.table import QTable

    from skysift import __version__

    n = length if length is not None else (len(next(iter(values.values()))) if values else 0)
    with_sky = ("ra" in values) if with_sky is None else with_sky
    table = QTable(meta={"skysift_version": __version__, **(meta or {})})
    for column in COLUMNS:
        if column.name in _SKY and not with_sky:
            continue
        if column.name in values:
            data = values[column.name]
            if isinstance(data, u.Quantity):
                data = data.to_value(column.unit) if column.unit else data.value
            array = np.asarray(data).astype(column.dtype)
        else:
            array = np.full(n, column.missing, dtype=column.dtype)
        if array.shape != (n,):
            raise ValueError(f"column {column.name}: {array.shape[0]} values for {n} rows")
        table[column.name] = array * u.Unit(column.unit) if column.unit else array
        table[column.name].info.description = column.description
    for name, data in values.items():
        if name not in table.colnames and name not in _SKY:
            table[name] = data
    if n and (table["id"] < 0).all():
        table["id"] = np.arange(1, n + 1, dtype=np.int64)
    return table
