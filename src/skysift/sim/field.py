"""Simulate a whole field: sources, PSF, sky, noise and artifacts, with complete truth.

>>> from skysift.sim import FieldConfig, simulate_field
>>> field = simulate_field(FieldConfig(survey="decals", size=512, density=30, seed=7))
>>> field.image.data.shape, len(field.truth)  # doctest: +SKIP
((3, 512, 512), 97)

Order of operations (electrons until the last step): sources are drawn noiseless with the PSF
at their position; diffraction spikes and satellite trails add light; sky (with a gradient),
hot-pixel dark charge and the light get Poisson noise, read noise is added, cosmic rays deposit
charge, pixels above the full well bleed along columns; the result is divided by the gain,
amplifier offsets are added, bad columns are applied and values are clipped at saturation.
The sky is left in, as in raw frames.

Every field is fixed by its :class:`FieldConfig` (survey, size, density, seed and the switches).
Independent random streams drive the population, the artifacts and the noise, so switching
artifacts off leaves the sources, and every pixel they alone produce, unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skysift.errors import InvalidParameterError
from skysift.image import Image
from skysift.sim.artifacts import (
    ARTIFACT_KINDS,
    ArtifactTruth,
    bad_columns,
    bleed_columns,
    cosmic_rays,
    diffraction_spikes,
    hot_pixels,
    satellite_trail,
)
from skysift.sim.background import amplifier_offsets, sky_model
from skysift.sim.presets import SurveyPreset, get_preset, point_source_depth
from skysift.sim.psf import VaryingPSF
from skysift.sim.render import render_sources
from skysift.sim.sources import (
    GALAXY_TYPES,
    Source,
    count_fraction,
    draw_magnitudes,
    make_galaxy,
    make_star,
)
from skysift.sim.truth import build_truth_table, localization_mask

__all__ = ["BURKE_PEAK_FRACTIONS", "DENSITIES", "FieldConfig", "SimulatedField", "simulate_field"]

#: Named densities (sources per arcmin^2 brighter than the 5-sigma depth).
#: ``FieldConfig.footprint_peak_fractions`` of Burke et al. (2019)'s public code: a star's mask
#: is where its noiseless light reaches 0.5 % of its peak, a galaxy's 8 %.
BURKE_PEAK_FRACTIONS = (0.005, 0.08)

DENSITIES = {"sparse": 3.0, "medium": 40.0, "crowded": 150.0, "cluster": 250.0}

_STAR_SLOPE = 0.25
_GALAXY_SLOPE = 0.4
_DEFAULT_GALAXY_MIX = (
    ("elliptical", 0.25),
    ("spiral", 0.15),
    ("disk", 0.35),
    ("clumpy", 0.10),
    ("compact", 0.15),
)


@dataclass(frozen=True)
class FieldConfig:
    """Everything that fixes a simulated field. Same config, same pixels.

    A setting added later defaults to what fields were simulated without it, so a dataset
    manifest written before it existed still describes its fields
    (:func:`skysift.sim.dataset.write_dataset` reads a missing setting as its default).

    Parameters
    ----------
    survey : str
        Survey preset: ``meerlicht``, ``decals`` or ``sdss``.
    size : int or (int, int)
        Image side, or ``(height, width)``, in pixels.
    density : float or str
        Sources per arcmin^2 brighter than the detection band's 5-sigma point-source depth, or
        one of :data:`DENSITIES` (``sparse`` 3, ``medium`` 40, ``crowded`` 150, ``cluster``
        250). Fainter sources (down to ``faint_margin`` mag below the depth) follow the same
        number counts on top.
    seed : int
        Random seed. See :mod:`skysift.sim.seeds` for the ranges reserved for validation and
        test sets.
    star_fraction : float
        Fraction of the (detectable) sources that are stars.
    galaxy_mix : tuple of (str, float)
        Relative frequency of each galaxy type.
    psf_fwhm : float, optional
        PSF FWHM at the optical centre (arcsec, detection band); drawn from the preset's range
        when not given.
    psf_size_growth, psf_ellipticity_edge, psf_coma_edge : float
        PSF variation at the reference radius: FWHM growth, radial shear and the light fraction
        in a one-sided coma flare (see :class:`~skysift.sim.psf.VaryingPSF`).
    optical_centre : (float, float), optional
        ``(x, y)`` of the optical axis in 0-based pixels; the image centre by default.
    psf_reference_radius : float, optional
        Pixels from the optical centre where the variation reaches its edge value; the image
        half-diagonal by default.
    faint_margin : float
        How many magnitudes below the 5-sigma depth sources continue.
    cluster_fraction : float
        Fraction of stars in a Plummer-profile cluster (a globular-cluster core); 0 for none.
    cluster_radius : float
        Plummer scale radius in arcsec.
    cluster_centre : (float, float), optional
        Cluster centre in pixels; the image centre by default.
    central_galaxy : str, optional
        Put a bright galaxy of this type (one of elliptical, spiral, disk, clumpy, compact) at
        the image centre, as in Galaxy Zoo cutouts.
    central_mag : float, optional
        Its magnitude in the detection band (default 6-8 mag above the depth, drawn).
    sky_gradient : float
        Largest fractional sky change across the image.
    amplifier_offset : float
        Standard deviation (ADU) of the per-amplifier offsets; 0 switches them off.
    cosmic_rays : float
        Mean cosmic-ray hits per megapixel per band; 0 switches them off.
    hot_pixels : float
        Mean hot pixels per megapixel.
    bad_columns : int
        Number of bad columns.
    satellite_trails : int
        Number of satellite trails.
    diffraction_spikes : bool
        Spikes on stars that approach saturation.
    saturation : bool
        Clip at the full well and bleed charge along columns.
    noise : bool
        Poisson and read noise; False gives the expected image.
    footprint_nsigma : float
        Footprint threshold in units of the background noise.
    footprint_peak_fractions : (float, float), optional
        ``(stars, galaxies)``: footprints by Burke et al. (2019)'s rule instead of
        ``footprint_nsigma``: where each source's noiseless light reaches this fraction of its
        own peak, whatever the noise, smoothed by a Gaussian majority of 2 px
        (:mod:`skysift.sim.render`). Their code used ``(0.005, 0.08)``
        (:data:`BURKE_PEAK_FRACTIONS`).
    clumps_in_footprints : bool
        Pixels where a star-forming clump is the brightest source above the footprint
        threshold join its parent galaxy's footprint (a clump is part of its galaxy). Off, a
        clump owns no pixels and the parent's footprint reaches only as far as the parent's
        own light, so a clump outside it lies on sky in the footprint map.
    localization_snr : float
        Sources with ``snr`` at least this get the ASID-L 13-pixel target (3, as in the paper).
    ra, dec : float
        Sky position (deg) of the image centre for the TAN WCS.
    """

    survey: str = "meerlicht"
    size: int | tuple[int, int] = 512
    density: float | str = 30.0
    seed: int = 0
    star_fraction: float = 0.6
    galaxy_mix: tuple[tuple[str, float], ...] = _DEFAULT_GALAXY_MIX
    psf_fwhm: float | None = None
    psf_size_growth: float = 0.15
    psf_ellipticity_edge: float = 0.08
    psf_coma_edge: float = 0.0
    optical_centre: tuple[float, float] | None = None
    psf_reference_radius: float | None = None
    faint_margin: float = 1.0
    cluster_fraction: float = 0.0
    cluster_radius: float = 60.0
    cluster_centre: tuple[float, float] | None = None
    central_galaxy: str | None = None
    central_mag: float | None = None
    sky_gradient: float = 0.1
    amplifier_offset: float = 20.0
    cosmic_rays: float = 30.0
    hot_pixels: float = 10.0
    bad_columns: int = 1
    satellite_trails: int = 1
    diffraction_spikes: bool = True
    saturation: bool = True
    noise: bool = True
    footprint_nsigma: float = 1.0
    footprint_peak_fractions: tuple[float, float] | None = None
    clumps_in_footprints: bool = False
    localization_snr: float = 3.0
    ra: float = 150.0
    dec: float = 2.0

    def __post_init__(self) -> None:
        preset = get_preset(self.survey)
        object.__setattr__(self, "survey", preset.name)
        size = (self.size, self.size) if isinstance(self.size, int | np.integer) else self.size
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 16:
            raise InvalidParameterError(f"size must be >= 16 pixels per side; got {self.size}")
        object.__setattr__(self, "size", size)
        if isinstance(self.density, str):
            if self.density not in DENSITIES:
                raise InvalidParameterError(
                    f"density {self.density!r} is not a number or one of {sorted(DENSITIES)}"
                )
            object.__setattr__(self, "density", DENSITIES[self.density])
        if not 0 <= float(self.density) <= 2000:
            raise InvalidParameterError(
                f"density must be in [0, 2000] sources/arcmin^2; got {self.density}"
            )
        for name in ("star_fraction", "cluster_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidParameterError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            raise InvalidParameterError(f"seed must be a non-negative integer; got {self.seed}")
        unknown = {t for t, _ in self.galaxy_mix} - set(GALAXY_TYPES)
        if unknown or sum(f for _, f in self.galaxy_mix) <= 0:
            raise InvalidParameterError(
                f"galaxy_mix must give positive weights to types among {GALAXY_TYPES}; "
                f"got {self.galaxy_mix}"
            )
        if self.central_galaxy is not None and self.central_galaxy not in GALAXY_TYPES:
            raise InvalidParameterError(
                f"central_galaxy must be one of {GALAXY_TYPES}; got {self.central_galaxy!r}"
            )
        if self.footprint_peak_fractions is not None:
            fractions = tuple(float(f) for f in self.footprint_peak_fractions)
            if len(fractions) != 2 or not all(0.0 < f < 1.0 for f in fractions):
                raise InvalidParameterError(
                    "footprint_peak_fractions must be two fractions in (0, 1) (stars, "
                    f"galaxies); got {self.footprint_peak_fractions}"
                )
            object.__setattr__(self, "footprint_peak_fractions", fractions)
        for name in ("cosmic_rays", "hot_pixels", "sky_gradient", "amplifier_offset"):
            if getattr(self, name) < 0:
                raise InvalidParameterError(f"{name} must be >= 0; got {getattr(self, name)}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.size  # type: ignore[return-value]

    def without_artifacts(self) -> FieldConfig:
        """The same field with every artifact switched off (sources and noise unchanged)."""
        return dataclasses.replace(
            self,
            cosmic_rays=0.0,
            hot_pixels=0.0,
            bad_columns=0,
            satellite_trails=0,
            diffraction_spikes=False,
            saturation=False,
            amplifier_offset=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/YAML friendly)."""
        data = dataclasses.asdict(self)
        data["galaxy_mix"] = [list(pair) for pair in self.galaxy_mix]
        return data


@dataclass(eq=False)
class SimulatedField:
    """A simulated image with its complete truth.

    Attributes
    ----------
    config : FieldConfig
    preset : SurveyPreset
    image : Image
        The observed image in ADU, ``(bands, height, width)``, with a TAN WCS.
    noiseless : numpy.ndarray
        Light of the truth sources alone (no sky, spikes or trails), ADU.
    background : numpy.ndarray
        Expected background (sky + amplifier offsets), ADU.
    noise_sigma : numpy.ndarray
        Expected standard deviation of the background-only pixels, ADU.
    truth : astropy.table.QTable
        One row per source (see :func:`~skysift.sim.truth.build_truth_table`).
    footprints : numpy.ndarray
        int32 label map of source ids (0 = no source).
    localization_mask : numpy.ndarray
        ASID-L target: 13-pixel cross-disc at every source with ``snr >= localization_snr``.
    artifacts : ArtifactTruth
        Artifact records and pixel map.
    psf : VaryingPSF
        The PSF model used (detection band).
    info : dict
        Drawn field-level values (PSF FWHM, sky gradient, depth, counts).
    """

    config: FieldConfig
    preset: SurveyPreset
    image: Image
    noiseless: np.ndarray
    background: np.ndarray
    noise_sigma: np.ndarray
    truth: Any
    footprints: np.ndarray
    localization_mask: np.ndarray
    artifacts: ArtifactTruth
    psf: VaryingPSF
    info: dict[str, Any] = field(default_factory=dict)

    def artifact_mask(self, kind: str) -> np.ndarray:
        """Boolean mask of the pixels of one artifact kind (see ``ARTIFACT_KINDS``)."""
        return self.artifacts.mask(kind)

    def write(self, out_dir, *, name: str = "field", overwrite: bool = False) -> dict[str, Path]:
        """Write images, truth, masks, config and a PNG preview into ``out_dir``.

        See :func:`skysift.sim.output.write_field` for the files.
        """
        from skysift.sim.output import write_field

        return write_field(self, out_dir, name=name, overwrite=overwrite)


def simulate_field(config: FieldConfig | None = None, *, progress: bool = False, **overrides):
    """Simulate one field.

    Parameters
    ----------
    config : FieldConfig, optional
        The field; keyword ``overrides`` replace its fields (``simulate_field(seed=3)``).
    progress : bool
        Show a progress bar while drawing sources.

    Returns
    -------
    SimulatedField
    """
    config = config or FieldConfig()
    if overrides:
        config = dataclasses.replace(config, **overrides)
    preset = get_preset(config.survey)
    height, width = config.shape
    streams = np.random.SeedSequence(config.seed).spawn(5)
    rng_population, rng_psf, rng_artifacts, rng_noise, rng_sky = (
        np.random.default_rng(s) for s in streams
    )
    det = preset.band_names.index(preset.detection_band)

    fwhm = config.psf_fwhm or float(rng_psf.uniform(*preset.psf_fwhm_range))
    centre = config.optical_centre or ((width - 1) / 2, (height - 1) / 2)
    psf = VaryingPSF(
        fwhm_centre=fwhm,
        beta=preset.psf_beta,
        centre=tuple(float(c) for c in centre),
        reference_radius=config.psf_reference_radius or math.hypot(width, height) / 2,
        size_growth=config.psf_size_growth,
        ellipticity_edge=config.psf_ellipticity_edge,
        coma_edge=config.psf_coma_edge,
        pixel_scale=preset.pixel_scale,
    )
    depth = point_source_depth(preset, preset.detection_band, fwhm=fwhm)
    sources = _draw_population(config, preset, psf, depth, rng_population)

    sky_e, sky_info = sky_model(preset, (height, width), rng_sky, gradient=config.sky_gradient)
    rendered = render_sources(
        sources,
        preset=preset,
        psf=psf,
        shape=(height, width),
        sky=sky_e,
        footprint_nsigma=config.footprint_nsigma,
        footprint_peak_fractions=config.footprint_peak_fractions,
        clumps_in_footprints=config.clumps_in_footprints,
        progress=progress,
    )
    noise_e = np.sqrt(sky_e + preset.read_noise**2)
    artifacts = ArtifactTruth((height, width))
    light = rendered.noiseless.copy()
    full_well = preset.saturation * preset.gain

    if config.diffraction_spikes:
        angle = float(rng_artifacts.uniform(0, 90))
        bright = [
            i
            for i, s in enumerate(sources)
            if s.kind == "star" and rendered.peak[i] > 0.3 * full_well
        ]
        for b, band in enumerate(preset.band_names):
            stars = [
                (
                    sources[i].id,
                    sources[i].x,
                    sources[i].y,
                    float(rendered.flux[i, b]),
                    float(rendered.psf_fwhm[i]) / preset.pixel_scale,
                )
                for i in bright
            ]
            light[b] += diffraction_spikes(
                stars,
                shape=(height, width),
                pixel_scale=preset.pixel_scale,
                angle=angle,
                noise_sigma=noise_e[b],
                nsigma=config.footprint_nsigma,
                footprints=rendered.footprints,
                band=band,
                truth=artifacts if b == det else ArtifactTruth((height, width)),
            )
    for _ in range(config.satellite_trails):
        b = det if preset.band_names.__len__() == 1 else int(rng_artifacts.integers(len(light)))
        light[b] += satellite_trail(
            rng_artifacts,
            (height, width),
            psf_sigma_px=fwhm / preset.pixel_scale / 2.355,
            noise_sigma=noise_e[b],
            nsigma=config.footprint_nsigma,
            band=preset.band_names[b],
            truth=artifacts,
        )
    dark = np.zeros((height, width), dtype=np.float32)
    if config.hot_pixels:
        dark = hot_pixels(
            rng_artifacts,
            (height, width),
            per_megapixel=config.hot_pixels,
            sigma=float(np.median(noise_e[det])),
            truth=artifacts,
        )

    observed = np.empty_like(light)
    for b, band in enumerate(preset.band_names):
        expected = sky_e[b] + light[b] + dark
        if config.noise:
            counts = rng_noise.poisson(np.maximum(expected, 0.0)).astype(np.float32)
            counts += rng_noise.normal(0.0, preset.read_noise, expected.shape).astype(np.float32)
        else:
            counts = expected.astype(np.float32)
        if config.cosmic_rays:
            counts += cosmic_rays(
                rng_artifacts,
                (height, width),
                per_megapixel=config.cosmic_rays,
                threshold=config.footprint_nsigma * float(np.median(noise_e[b])),
                band=band,
                truth=artifacts,
            )
        if config.saturation:
            counts = bleed_columns(
                counts,
                full_well,
                band=band,
                truth=artifacts if b == det else ArtifactTruth((height, width)),
            )
        observed[b] = counts / preset.gain

    offsets = (
        amplifier_offsets(preset, (height, width), rng_sky, scale=config.amplifier_offset)
        if config.amplifier_offset
        else np.zeros((height, width), dtype=np.float32)
    )
    observed += offsets
    if config.bad_columns:
        typical = float(np.median(noise_e[det]))
        for column, rows, kind, level in bad_columns(
            rng_artifacts,
            (height, width),
            count=config.bad_columns,
            sigma=typical,
            truth=artifacts,
        ):
            for b in range(len(observed)):
                if kind == "dead":
                    n_rows = len(range(*rows.indices(height)))
                    observed[b, rows, column] = offsets[rows, column] + rng_artifacts.normal(
                        0.0, preset.read_noise / preset.gain, n_rows
                    )
                else:
                    observed[b, rows, column] += level / preset.gain
    if config.saturation:
        np.minimum(observed, preset.saturation, out=observed)

    from skysift.sim.output import field_wcs

    wcs = field_wcs(config, preset)
    truth = build_truth_table(sources, rendered, preset=preset, sky_electrons=sky_e, wcs=wcs)
    localizable = np.asarray(truth["snr"]) >= config.localization_snr
    loc_mask = localization_mask(
        np.asarray(truth["x"])[localizable], np.asarray(truth["y"])[localizable], (height, width)
    )
    image = Image.from_array(
        observed,
        wcs=wcs,
        bands=preset.band_names,
        pixel_scale=preset.pixel_scale,
        min_size=16,
        copy=False,
    )
    info = {
        "psf_fwhm": fwhm,
        "depth_5sigma": depth,
        "n_sources": len(sources),
        "n_stars": int(np.sum(truth["class"] == "star")),
        "n_galaxies": int(np.sum((truth["class"] == "galaxy") & ~truth["is_shred"])),
        "n_shreds": int(np.sum(truth["is_shred"])),
        "n_artifacts": len(artifacts.records),
        **sky_info,
    }
    return SimulatedField(
        config=config,
        preset=preset,
        image=image,
        noiseless=rendered.noiseless / preset.gain,
        background=sky_e / preset.gain + offsets,
        noise_sigma=noise_e / preset.gain,
        truth=truth,
        footprints=rendered.footprints,
        localization_mask=loc_mask,
        artifacts=artifacts,
        psf=psf,
        info=info,
    )


def _draw_population(
    config: FieldConfig,
    preset: SurveyPreset,
    psf: VaryingPSF,
    depth: float,
    rng: np.random.Generator,
) -> list[Source]:
    """Stars and galaxies with positions, magnitudes and shapes (no pixels yet)."""
    height, width = config.shape
    area_arcmin2 = height * width * (preset.pixel_scale / 60.0) ** 2
    detectable = float(config.density) * area_arcmin2
    faint = depth + config.faint_margin
    star_bright, galaxy_bright = depth - 13.0, depth - 9.0
    n_stars = rng.poisson(
        detectable * config.star_fraction / count_fraction(_STAR_SLOPE, star_bright, depth, faint)
    )
    n_galaxies = rng.poisson(
        detectable
        * (1 - config.star_fraction)
        / count_fraction(_GALAXY_SLOPE, galaxy_bright, depth, faint)
    )
    star_mags = draw_magnitudes(rng, n_stars, bright=star_bright, faint=faint, slope=_STAR_SLOPE)
    galaxy_mags = draw_magnitudes(
        rng, n_galaxies, bright=galaxy_bright, faint=faint, slope=_GALAXY_SLOPE
    )
    star_x, star_y = _star_positions(config, preset, n_stars, rng)
    galaxy_x = rng.uniform(-0.5, width - 0.5, n_galaxies)
    galaxy_y = rng.uniform(-0.5, height - 0.5, n_galaxies)
    types, weights = zip(*config.galaxy_mix, strict=True)
    galaxy_types = rng.choice(types, size=n_galaxies, p=np.array(weights) / sum(weights))

    sources: list[Source] = []
    clumps: list[Source] = []
    next_id = 1

    def add_galaxy(x: float, y: float, mag: float, kind: str) -> None:
        nonlocal next_id
        made = make_galaxy(
            rng,
            next_id,
            x,
            y,
            mag,
            kind,
            preset,
            psf_fwhm=float(psf.fwhm_at(x, y)),
            first_clump_id=-1,
        )
        sources.append(made[0])
        clumps.extend(made[1:])
        next_id += 1

    if config.central_galaxy is not None:
        mag = config.central_mag or float(rng.uniform(depth - 8.0, depth - 6.0))
        offset = rng.uniform(-1.0, 1.0, 2)
        add_galaxy(
            (width - 1) / 2 + offset[0], (height - 1) / 2 + offset[1], mag, config.central_galaxy
        )
    for x, y, mag in zip(star_x, star_y, star_mags, strict=True):
        sources.append(make_star(rng, next_id, float(x), float(y), float(mag), preset))
        next_id += 1
    for x, y, mag, kind in zip(galaxy_x, galaxy_y, galaxy_mags, galaxy_types, strict=True):
        add_galaxy(float(x), float(y), float(mag), str(kind))
    # clumps are numbered after every parent; drop those that fall off the image
    inside = [c for c in clumps if -0.5 <= c.x < width - 0.5 and -0.5 <= c.y < height - 0.5]
    for clump in inside:
        clump.id = next_id
        next_id += 1
    return sources + inside


def _star_positions(
    config: FieldConfig, preset: SurveyPreset, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform field stars plus a projected Plummer cluster, all inside the image."""
    height, width = config.shape
    n_cluster = round(n * config.cluster_fraction)
    x = rng.uniform(-0.5, width - 0.5, n)
    y = rng.uniform(-0.5, height - 0.5, n)
    if n_cluster:
        cx, cy = config.cluster_centre or ((width - 1) / 2, (height - 1) / 2)
        scale_px = config.cluster_radius / preset.pixel_scale
        placed = 0
        while placed < n_cluster:
            u = rng.random(n_cluster - placed)
            radius = scale_px * np.sqrt(u / (1 - u))  # projected Plummer profile
            angle = rng.uniform(0, 2 * np.pi, radius.size)
            px, py = cx + radius * np.cos(angle), cy + radius * np.sin(angle)
            keep = (px >= -0.5) & (px < width - 0.5) & (py >= -0.5) & (py < height - 0.5)
            count = int(keep.sum())
            x[placed : placed + count] = px[keep]
            y[placed : placed + count] = py[keep]
            placed += count
    return x, y


def config_json(config: FieldConfig) -> str:
    """JSON text of a config, for writing next to a field."""
    return json.dumps(config.to_dict(), indent=2)


__all__ += ["ARTIFACT_KINDS", "config_json"]
