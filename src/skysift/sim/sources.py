"""Who is in a simulated field: stars, galaxies of several kinds, and the clumps that shred them.

A population is drawn as a list of :class:`Source` records, each with GalSim profiles (unit
flux, arcsec, centred on the source) and a magnitude per band. Nothing is drawn on pixels here;
:mod:`skysift.sim.render` does that.

Models
------
* Number counts: ``dN/dm ∝ 10**(slope * m)`` between a bright and a faint limit, separately for
  stars (slope 0.25) and galaxies (slope 0.4).
* Colours: each population has a blue and a red end of its colours relative to r; every source
  draws a position between them (stars by temperature, galaxies by stellar population). The
  MeerLICHT q band (440-720 nm) is taken as halfway between g and r.
* Galaxy sizes: ``log10(hlr / arcsec) = log10(1.0) - 0.15 * (m - 21) ± 0.2 dex`` (fainter is
  smaller), ellipticals x0.8, clumpy disks x1.3; "compact" galaxies are 0.1-0.4 PSF FWHM,
  barely resolved (ASID-C's hard case).
* Types: ``elliptical`` (de Vaucouleurs), ``spiral`` (bulge + disk with two logarithmic arms,
  rendered with :class:`galsim.InterpolatedImage`), ``disk`` (Sersic n 0.8-1.5, random
  inclination), ``clumpy`` (exponential disk + :class:`galsim.RandomKnots` texture + 2-6 bright
  compact star-forming clumps, each its own truth row with ``is_shred`` and ``parent_id``), and
  ``compact``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GALAXY_TYPES",
    "MORPHOLOGY_OF_TYPE",
    "Component",
    "Source",
    "draw_magnitudes",
    "make_galaxy",
    "make_star",
]

#: Galaxy types and the morphology class each belongs to (the segmenter's classes).
MORPHOLOGY_OF_TYPE = {
    "elliptical": "elliptical",
    "spiral": "spiral",
    "disk": "other",
    "clumpy": "other",
    "compact": "other",
}
GALAXY_TYPES = tuple(MORPHOLOGY_OF_TYPE)

# Colour ranges (blue end, red end) of mag(band) - mag(r) per population.
_COLOURS = {
    "star": {"g": (0.2, 1.5), "i": (-0.05, -0.6), "z": (-0.05, -1.0)},
    "elliptical": {"g": (0.7, 0.95), "i": (-0.3, -0.45), "z": (-0.6, -0.9)},
    "disk": {"g": (0.35, 0.7), "i": (-0.15, -0.35), "z": (-0.25, -0.6)},
    "clump": {"g": (-0.1, 0.3), "i": (0.05, -0.1), "z": (0.1, -0.2)},
}


@dataclass(frozen=True)
class Component:
    """One light component: a unit-flux GalSim profile and its magnitude in each band."""

    profile: Any
    mags: dict[str, float]


@dataclass
class Source:
    """One truth source and how to draw it.

    Attributes mirror the truth table columns; ``components`` hold the light (convolved with
    the local PSF at drawing time; a star has one component, the PSF itself, ``profile=None``).
    """

    id: int
    x: float
    y: float
    kind: str  # "star" | "galaxy"
    galaxy_type: str  # "star", one of GALAXY_TYPES, or "clump"
    components: list[Component]
    hlr: float = 0.0  # arcsec, intrinsic (before PSF)
    axis_ratio: float = 1.0
    position_angle: float = 0.0  # degrees, counter-clockwise from +x
    sersic_n: float = 0.0
    is_shred: bool = False
    parent_id: int = -1
    mags: dict[str, float] = field(default_factory=dict)

    @property
    def morphology(self) -> str:
        if self.kind == "star":
            return "star"
        if self.is_shred:
            return "clump"
        return MORPHOLOGY_OF_TYPE[self.galaxy_type]

    def __post_init__(self) -> None:
        if not self.mags:
            self.mags = combined_mags(self.components)


def combined_mags(components: list[Component]) -> dict[str, float]:
    """Total magnitude per band of several components."""
    bands = components[0].mags.keys()
    return {b: -2.5 * math.log10(sum(10 ** (-0.4 * c.mags[b]) for c in components)) for b in bands}


def draw_magnitudes(
    rng: np.random.Generator, n: int, *, bright: float, faint: float, slope: float
) -> np.ndarray:
    """Draw ``n`` magnitudes from ``dN/dm ∝ 10**(slope*m)`` on ``[bright, faint]``."""
    lo, hi = 10 ** (slope * bright), 10 ** (slope * faint)
    return np.log10(lo + rng.random(n) * (hi - lo)) / slope


def count_fraction(slope: float, bright: float, limit: float, faint: float) -> float:
    """Fraction of sources in ``[bright, faint]`` that are brighter than ``limit``."""
    lo = 10 ** (slope * bright)
    return (10 ** (slope * limit) - lo) / (10 ** (slope * faint) - lo)


def band_mags(
    rng: np.random.Generator, population: str, mag: float, detection_band: str, bands
) -> dict[str, float]:
    """Magnitudes in ``bands`` of a source with ``mag`` in ``detection_band``."""
    t = rng.random()
    table = _COLOURS[population]

    def offset(band: str) -> float:
        if band == "r":
            return 0.0
        if band == "q":
            return 0.5 * offset("g")
        blue, red = table.get(band, (0.0, 0.0))
        return blue + t * (red - blue)

    mag_r = mag - offset(detection_band)
    return {b: mag_r + offset(b) for b in bands}


def make_star(
    rng: np.random.Generator, source_id: int, x: float, y: float, mag: float, preset
) -> Source:
    """A star: one PSF component with stellar colours."""
    mags = band_mags(rng, "star", mag, preset.detection_band, preset.band_names)
    return Source(
        id=source_id,
        x=x,
        y=y,
        kind="star",
        galaxy_type="star",
        components=[Component(None, mags)],
    )


def galaxy_size(rng: np.random.Generator, mag: float) -> float:
    """Half-light radius in arcsec from the size-magnitude relation, with scatter."""
    log_hlr = -0.15 * (mag - 21.0) + rng.normal(0.0, 0.2)
    return float(np.clip(10**log_hlr, 0.05, 20.0))


def make_galaxy(
    rng: np.random.Generator,
    source_id: int,
    x: float,
    y: float,
    mag: float,
    galaxy_type: str,
    preset,
    *,
    psf_fwhm: float,
    first_clump_id: int,
) -> list[Source]:
    """A galaxy of ``galaxy_type`` (plus its clumps, for ``clumpy``), as truth sources.

    Parameters
    ----------
    psf_fwhm : float
        Local PSF FWHM in arcsec (sets the size of ``compact`` galaxies and whether spiral arms
        are worth rendering).
    first_clump_id : int
        Id of the first clump; clumps are numbered consecutively from it.
    """
    import galsim

    bands = preset.band_names
    det = preset.detection_band
    pa = float(rng.uniform(0.0, 180.0))
    hlr = galaxy_size(rng, mag)

    def colours(population: str, m: float) -> dict[str, float]:
        return band_mags(rng, population, m, det, bands)

    def orient(profile, q: float):
        return profile.shear(q=q, beta=pa * galsim.degrees)

    clumps: list[Source] = []
    if galaxy_type == "elliptical":
        hlr *= 0.8
        q = float(rng.uniform(0.5, 1.0))
        n = 4.0
        components = [
            Component(orient(_unit_sersic(4.0).dilate(hlr), q), colours("elliptical", mag))
        ]
    elif galaxy_type == "compact":
        hlr = float(rng.uniform(0.1, 0.4)) * psf_fwhm
        q = float(rng.uniform(0.5, 1.0))
        n = _sersic_index(rng.uniform(1.0, 2.5))
        profile = _unit_sersic(n).dilate(hlr)
        components = [Component(orient(profile, q), colours("disk", mag))]
    elif galaxy_type == "disk":
        q = _inclined_axis_ratio(rng)
        n = _sersic_index(rng.uniform(0.8, 1.5))
        profile = _unit_sersic(n).dilate(hlr)
        components = [Component(orient(profile, q), colours("disk", mag))]
    elif galaxy_type == "spiral":
        q = float(rng.uniform(0.5, 1.0))
        n = 1.0
        bulge_fraction = float(rng.uniform(0.05, 0.35))
        disk = _spiral_disk(rng, hlr, preset.pixel_scale, psf_fwhm)
        bulge = _unit_sersic(4.0).dilate(0.25 * hlr)
        disk_mag = mag - 2.5 * math.log10(1 - bulge_fraction)
        bulge_mag = mag - 2.5 * math.log10(bulge_fraction)
        components = [
            Component(orient(disk, q), colours("disk", disk_mag)),
            Component(orient(bulge, q), colours("elliptical", bulge_mag)),
        ]
    elif galaxy_type == "clumpy":
        hlr *= 1.3
        q = float(rng.uniform(0.45, 1.0))
        n = 1.0
        n_clumps = int(rng.integers(2, 7))
        clump_fractions = rng.uniform(0.03, 0.12, n_clumps)
        knot_fraction = 0.15
        disk_fraction = 1.0 - knot_fraction - clump_fractions.sum()
        knots = galsim.RandomKnots(
            npoints=30,
            half_light_radius=hlr,
            flux=1.0,
            rng=galsim.BaseDeviate(int(rng.integers(1, 2**31))),
        )
        components = [
            Component(
                orient(_unit_sersic(1.0).dilate(hlr), q),
                colours("disk", mag - 2.5 * math.log10(disk_fraction)),
            ),
            Component(orient(knots, q), colours("clump", mag - 2.5 * math.log10(knot_fraction))),
        ]
        scale_length = hlr / 1.678
        for k, fraction in enumerate(clump_fractions):
            radius = float(np.clip(rng.gamma(2.0, scale_length), 0.3 * hlr, 2.5 * hlr))
            angle = float(rng.uniform(0, 2 * math.pi))
            # position in the disk plane, inclined (squashed by q) and rotated by pa
            u, v = radius * math.cos(angle), radius * math.sin(angle) * q
            c, s = math.cos(math.radians(pa)), math.sin(math.radians(pa))
            dx, dy = (u * c - v * s) / preset.pixel_scale, (u * s + v * c) / preset.pixel_scale
            sigma = float(rng.uniform(0.08, 0.25))
            clump_mag = mag - 2.5 * math.log10(fraction)
            clumps.append(
                Source(
                    id=first_clump_id + k,
                    x=x + dx,
                    y=y + dy,
                    kind="galaxy",
                    galaxy_type="clump",
                    components=[
                        Component(galsim.Gaussian(sigma=sigma), colours("clump", clump_mag))
                    ],
                    hlr=sigma * 1.1774,
                    sersic_n=0.5,
                    is_shred=True,
                    parent_id=source_id,
                )
            )
    else:
        raise ValueError(f"unknown galaxy type {galaxy_type!r}; expected one of {GALAXY_TYPES}")
    parent = Source(
        id=source_id,
        x=x,
        y=y,
        kind="galaxy",
        galaxy_type=galaxy_type,
        components=components,
        hlr=hlr,
        axis_ratio=q,
        position_angle=pa,
        sersic_n=n,
    )
    return [parent, *clumps]


def _sersic_index(value: float) -> float:
    """Round a Sersic index to 0.1: GalSim caches its expensive tables per distinct index."""
    return round(float(value), 1)


@functools.lru_cache(maxsize=64)
def _unit_sersic(n: float):
    """Sersic profile of half-light radius 1 arcsec; galaxies are this, dilated and sheared."""
    import galsim

    if n == 1.0:
        return galsim.Exponential(half_light_radius=1.0)
    return galsim.Sersic(n=n, half_light_radius=1.0)


def _inclined_axis_ratio(rng: np.random.Generator, thickness: float = 0.15) -> float:
    """Projected axis ratio of a thin disk seen at a random inclination."""
    cos_i = rng.random()
    return float(math.sqrt(cos_i**2 * (1 - thickness**2) + thickness**2))


def _spiral_disk(rng: np.random.Generator, hlr: float, pixel_scale: float, psf_fwhm: float):
    """Exponential disk with two logarithmic arms, as a unit-flux GalSim profile.

    Arms are rendered only when the disk is larger than about two PSF FWHM; a smaller spiral
    is indistinguishable from a plain disk at this resolution and is drawn as one.
    """
    import galsim

    if hlr < 1.0 * psf_fwhm:
        return _unit_sersic(1.0).dilate(hlr)
    scale_length = hlr / 1.678
    grid_scale = max(pixel_scale / 2.0, 12.0 * hlr / 256.0)
    half = math.ceil(6.0 * hlr / grid_scale)
    coords = (np.arange(-half, half + 1)) * grid_scale
    xx, yy = np.meshgrid(coords, coords)
    r = np.hypot(xx, yy)
    theta = np.arctan2(yy, xx)
    pitch = math.radians(float(rng.uniform(12.0, 30.0)))
    amplitude = float(rng.uniform(0.5, 0.9))
    phase = float(rng.uniform(0, 2 * math.pi))
    winding = np.log(np.maximum(r, grid_scale) / scale_length) / math.tan(pitch)
    arms = ((1.0 + np.cos(2.0 * (theta - winding) + phase)) / 2.0) ** 3
    # arms fade in outside the centre so the inner disk stays smooth
    weight = amplitude * (1.0 - np.exp(-((r / scale_length) ** 2)))
    light = np.exp(-r / scale_length) * (1.0 - weight + 2.0 * weight * arms)
    image = galsim.Image(light.astype(np.float64), scale=grid_scale)
    return galsim.InterpolatedImage(image, flux=1.0, x_interpolant="lanczos3")
