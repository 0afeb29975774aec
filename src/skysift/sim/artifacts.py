"""Detector and sky artifacts, each with its own truth so false detections on it can be counted.

Every artifact gets an id, a kind, a band ("" when it touches every band) and a position, and
its pixels are labelled with that id in an artifact map. Smooth artifacts (satellite trails,
diffraction spikes) own the pixels where they are at least ``nsigma`` times the background
noise; sharp ones (cosmic rays, hot pixels, bad columns) own every pixel they change.

Kinds and models
----------------
``cosmic_ray``
    Straight tracks 1-30 px long (exponential, mean 3 px) at random angles, 1-2 px wide,
    depositing log-normally distributed charge (median 1500 e-/px); not convolved with the PSF.
``hot_pixel``
    Single pixels with extra dark charge (log-normal, median 30 sigma of the sky noise).
``bad_column``
    A column, from a random row to one end of the detector, either dead (no signal: only the
    amplifier offset and read noise) or hot (a constant 50-200 sigma added).
``satellite_trail``
    A straight line across the image with a Gaussian cross-section 1-2x the PSF sigma and a peak
    of 3-30 sigma per pixel; it is light, so it gets Poisson noise.
``diffraction_spike``
    Four spikes (two perpendicular elongated Gaussians) on stars bright enough to approach
    saturation, carrying 0.5 % of the star's flux each pair; the spike angle is fixed per field.
``saturated`` / ``bleed``
    Pixels above the full well are clipped and the excess charge bleeds up and down the column
    (charge conserving); ``saturated`` are the pixels over the limit before bleeding, ``bleed``
    those that received charge from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ARTIFACT_KINDS",
    "ArtifactTruth",
    "bad_columns",
    "bleed_columns",
    "cosmic_rays",
    "diffraction_spikes",
    "hot_pixels",
    "satellite_trail",
]

ARTIFACT_KINDS = (
    "cosmic_ray",
    "hot_pixel",
    "bad_column",
    "satellite_trail",
    "diffraction_spike",
    "saturated",
    "bleed",
)


@dataclass
class ArtifactTruth:
    """Artifacts of one field: a record per artifact and a map of their pixels.

    Pixels touched by several artifacts keep the label of the last one; the per-kind masks in
    :meth:`mask` are unions and lose nothing.
    """

    shape: tuple[int, int]
    records: list[dict] = field(default_factory=list)
    label_map: np.ndarray = field(init=False)
    _kind_masks: dict[str, np.ndarray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.label_map = np.zeros(self.shape, dtype=np.int32)

    def add(self, kind: str, band: str, rows: np.ndarray, cols: np.ndarray, **info) -> int:
        """Record one artifact covering pixels ``(rows, cols)``; returns its id (1-based)."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        artifact_id = len(self.records) + 1
        rows, cols = np.asarray(rows), np.asarray(cols)
        x = float(info.pop("x", cols.mean() if cols.size else np.nan))
        y = float(info.pop("y", rows.mean() if rows.size else np.nan))
        self.records.append(
            {
                "id": artifact_id,
                "kind": kind,
                "band": band,
                "x": x,
                "y": y,
                "npix": int(rows.size),
                **info,
            }
        )
        self.label_map[rows, cols] = artifact_id
        mask = self._kind_masks.setdefault(kind, np.zeros(self.shape, dtype=bool))
        mask[rows, cols] = True
        return artifact_id

    def mask(self, kind: str) -> np.ndarray:
        """Boolean mask of every pixel of artifacts of ``kind``."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; expected one of {ARTIFACT_KINDS}")
        return self._kind_masks.get(kind, np.zeros(self.shape, dtype=bool))

    def table(self):
        """Artifact records as an astropy Table (id, kind, band, x, y, npix, ...)."""
        from astropy.table import Table

        columns = {
            "id": [],
            "kind": [],
            "band": [],
            "x": [],
            "y": [],
            "npix": [],
            "length": [],
            "angle": [],
            "peak": [],
        }
        for record in self.records:
            for name in columns:
                columns[name].append(record.get(name, np.nan))
        table = Table(
            columns, dtype=[np.int32, "U17", "U8", float, float, np.int32, float, float, float]
        )
        table["x"].description = "0-based column of the artifact centre"
        table["y"].description = "0-based row of the artifact centre"
        table["length"].description = "track length in pixels (cosmic rays, trails, columns)"
        table["angle"].description = "track angle in degrees from +x"
        table["peak"].description = "peak added signal in electrons"
        return table


def cosmic_rays(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    per_megapixel: float,
    threshold: float,
    band: str,
    truth: ArtifactTruth,
) -> np.ndarray:
    """Cosmic-ray charge in electrons, ``(height, width)``; records each hit in ``truth``."""
    height, width = shape
    deposit = np.zeros(shape, dtype=np.float32)
    count = rng.poisson(per_megapixel * height * width / 1e6)
    for _ in range(count):
        length = float(min(1.0 + rng.exponential(3.0), 30.0))
        angle = float(rng.uniform(0, np.pi))
        x0, y0 = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        steps = np.linspace(-length / 2, length / 2, max(int(length * 3), 2))
        xs = np.rint(x0 + steps * math.cos(angle)).astype(int)
        ys = np.rint(y0 + steps * math.sin(angle)).astype(int)
        if rng.random() < 0.3:  # a wider track
            xs, ys = np.concatenate([xs, xs + 1]), np.concatenate([ys, ys])
        inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
        pixels = np.unique(np.stack([ys[inside], xs[inside]]), axis=1)
        if pixels.size == 0:
            continue
        charge = float(rng.lognormal(math.log(1500.0), 0.7))
        values = charge * rng.uniform(0.6, 1.4, pixels.shape[1])
        keep = values >= threshold
        if not keep.any():
            continue
        rows, cols = pixels[0][keep], pixels[1][keep]
        deposit[rows, cols] += values[keep]
        truth.add(
            "cosmic_ray",
            band,
            rows,
            cols,
            x=x0,
            y=y0,
            length=length,
            angle=math.degrees(angle),
            peak=float(values.max()),
        )
    return deposit


def hot_pixels(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    per_megapixel: float,
    sigma: float,
    truth: ArtifactTruth,
) -> np.ndarray:
    """Dark charge of hot pixels in electrons (same pixels in every band)."""
    height, width = shape
    charge = np.zeros(shape, dtype=np.float32)
    count = rng.poisson(per_megapixel * height * width / 1e6)
    rows = rng.integers(0, height, count)
    cols = rng.integers(0, width, count)
    values = rng.lognormal(math.log(30.0 * sigma), 0.8, count)
    for row, col, value in zip(rows, cols, values, strict=True):
        charge[row, col] += value
        truth.add("hot_pixel", "", np.array([row]), np.array([col]), peak=float(value))
    return charge


def bad_columns(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    count: int,
    sigma: float,
    truth: ArtifactTruth,
) -> list[tuple[int, slice, str, float]]:
    """Choose bad columns: ``(column, rows, 'dead'|'hot', added electrons)`` per column."""
    height, width = shape
    columns = []
    for column in rng.choice(width, size=min(count, width), replace=False):
        start = int(rng.integers(0, height // 2))
        rows = slice(start, height) if rng.random() < 0.5 else slice(0, height - start)
        kind = "dead" if rng.random() < 0.5 else "hot"
        level = 0.0 if kind == "dead" else float(rng.uniform(50, 200)) * sigma
        columns.append((int(column), rows, kind, level))
        row_index = np.arange(height)[rows]
        truth.add(
            "bad_column",
            "",
            row_index,
            np.full(row_index.size, column),
            x=float(column),
            y=float(row_index.mean()),
            length=float(row_index.size),
            angle=90.0,
            peak=level,
        )
    return columns


def satellite_trail(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    psf_sigma_px: float,
    noise_sigma: np.ndarray,
    nsigma: float,
    band: str,
    truth: ArtifactTruth,
) -> np.ndarray:
    """Light of one satellite trail in electrons, crossing the whole image."""
    height, width = shape
    angle = float(rng.uniform(0, np.pi))
    x0, y0 = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
    width_sigma = psf_sigma_px * float(rng.uniform(1.0, 2.0))
    typical = float(np.median(noise_sigma))
    peak = float(rng.uniform(3.0, 30.0)) * typical
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.abs((x - x0) * math.sin(angle) - (y - y0) * math.cos(angle))
    light = (peak * np.exp(-0.5 * (distance / width_sigma) ** 2)).astype(np.float32)
    light[distance > 6 * width_sigma] = 0.0
    rows, cols = np.nonzero(light >= nsigma * noise_sigma)
    truth.add(
        "satellite_trail",
        band,
        rows,
        cols,
        x=x0,
        y=y0,
        length=float(math.hypot(height, width)),
        angle=math.degrees(angle),
        peak=peak,
    )
    return light


def diffraction_spikes(
    stars: list[tuple[int, float, float, float, float]],
    *,
    shape: tuple[int, int],
    pixel_scale: float,
    angle: float,
    noise_sigma: np.ndarray,
    nsigma: float,
    footprints: np.ndarray,
    band: str,
    truth: ArtifactTruth,
) -> np.ndarray:
    """Spike light in electrons for ``stars`` = ``(id, x, y, flux_e, fwhm_px)`` tuples.

    Each spike pair is an elongated Gaussian through the star; its length grows with the square
    root of the flux. Pixels inside the star's own footprint are not counted as spike.
    """
    import galsim

    height, width = shape
    light = np.zeros(shape, dtype=np.float32)
    full = galsim.BoundsI(0, width - 1, 0, height - 1)
    for star_id, x, y, flux, fwhm_px in stars:
        length_px = min(3.0 * fwhm_px * math.sqrt(flux / 2e5), 250.0)
        length_px = max(length_px, 3.0 * fwhm_px)
        across = 0.3 * fwhm_px
        spike = galsim.Sum(
            [
                galsim.Gaussian(sigma=math.sqrt(length_px * across) * pixel_scale).shear(
                    q=across / length_px, beta=(angle + turn) * galsim.degrees
                )
                for turn in (0.0, 90.0)
            ]
        ).withFlux(0.005 * flux)
        half = int(3 * length_px)
        bounds = (
            galsim.BoundsI(round(x) - half, round(x) + half, round(y) - half, round(y) + half)
            & full
        )
        if not bounds.isDefined():
            continue
        stamp = galsim.ImageF(bounds, scale=pixel_scale)
        spike.drawImage(image=stamp, method="no_pixel", center=galsim.PositionD(x, y))
        rows = slice(bounds.ymin, bounds.ymax + 1)
        cols = slice(bounds.xmin, bounds.xmax + 1)
        light[rows, cols] += stamp.array
        owned = (stamp.array >= nsigma * noise_sigma[rows, cols]) & (
            footprints[rows, cols] != star_id
        )
        spike_rows, spike_cols = np.nonzero(owned)
        if spike_rows.size:
            truth.add(
                "diffraction_spike",
                band,
                spike_rows + bounds.ymin,
                spike_cols + bounds.xmin,
                x=x,
                y=y,
                length=2 * length_px,
                angle=angle,
                peak=float(stamp.array.max()),
                star_id=star_id,
            )
    return light


def bleed_columns(
    image: np.ndarray, full_well: float, *, band: str, truth: ArtifactTruth
) -> np.ndarray:
    """Clip ``image`` (electrons) at ``full_well`` and bleed the excess along columns.

    Each run of over-full pixels in a column gives half of its excess charge to the pixels
    above it and half to those below, filling each to the full well in turn (charge is
    conserved until it runs off the detector). Returns a new array.
    """
    result = image.astype(np.float64, copy=True)
    over = result > full_well
    if not over.any():
        return result.astype(np.float32)
    saturated_cols = np.nonzero(over)[1]
    bled = np.zeros(image.shape, dtype=bool)
    height = image.shape[0]
    for col in np.unique(saturated_cols):
        column = result[:, col]
        flags = np.concatenate([[False], column > full_well, [False]])
        starts = np.nonzero(flags[1:] & ~flags[:-1])[0]
        ends = np.nonzero(~flags[1:] & flags[:-1])[0]  # exclusive
        for start, end in zip(starts, ends, strict=True):
            excess = float(np.sum(column[start:end] - full_well))
            column[start:end] = full_well
            for direction, first in ((-1, start - 1), (1, end)):
                remaining, row = excess / 2, first
                while remaining > 0 and 0 <= row < height:
                    room = full_well - column[row]
                    if room > 0:
                        taken = min(room, remaining)
                        column[row] += taken
                        remaining -= taken
                        bled[row, col] = True
                    row += direction
    bled &= ~over
    _record_regions(over, bled, band, truth)
    return result.astype(np.float32)


def _record_regions(over: np.ndarray, bled: np.ndarray, band: str, truth: ArtifactTruth) -> None:
    """One ``saturated`` and one ``bleed`` record per connected saturated region."""
    from scipy import ndimage

    labels, _ = ndimage.label(over | bled)
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[box] == number
        for kind, pixels in (("saturated", over), ("bleed", bled)):
            rows, cols = np.nonzero(region & pixels[box])
            if rows.size:
                truth.add(kind, band, rows + box[0].start, cols + box[1].start)
