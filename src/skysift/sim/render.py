"""Draw truth sources onto pixels and measure what the truth table needs from each stamp.

Every source is drawn once per band on its own stamp, convolved with the PSF at its position,
and added to the noiseless image. While the stamp is at hand its optimal S/N and its footprint
are computed, so nothing is drawn twice.

* **S/N** is the PSF-optimal (matched-filter) signal-to-noise of the isolated source:
  ``sqrt(sum_i s_i**2 / (b_i + s_i + read_noise**2))`` with ``s`` the noiseless source and ``b``
  the sky, in electrons. Neighbours are not counted as noise.
* **Footprints** form one label map (detection band): a pixel belongs to the source that
  contributes most light to it, among those whose noiseless light there is at least
  ``footprint_nsigma`` times the local background noise. Shreds (star-forming clumps) have no
  footprint of their own: they own no pixels, or (``clumps_in_footprints``) the pixels where
  a clump is the brightest source go to its parent galaxy.

  With ``footprint_peak_fractions`` the footprint rule is instead the one of Burke et al.
  (2019)'s public code (``astro_rcnn.py``, ``load_mask_disk``): a source's candidate pixels are
  those where its noiseless light reaches a fixed fraction of its own peak (there 0.5 % for
  stars, 8 % for galaxies), whatever the noise, and that mask is smoothed by a Gaussian
  majority (sigma 2 px, 9 x 9 pixels: OpenCV's ``GaussianBlur`` of the 0/1 mask, rounded).
  A pixel claimed by several sources still goes to the one that contributes most light.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from dataclasses import dataclass

import numpy as np

from skysift.sim.presets import SurveyPreset
from skysift.sim.psf import TRUNCATION_FWHM, VaryingPSF
from skysift.sim.sources import Source

__all__ = ["RenderedSources", "render_sources"]

#: Largest stamp half-size in pixels (bright saturated stars, big galaxies).
MAX_HALF_SIZE = 320
#: Stamps extend until the source falls below this fraction of the background noise per pixel.
STAMP_NOISE_FRACTION = 0.02


@dataclass
class RenderedSources:
    """What drawing the sources produced.

    Attributes
    ----------
    noiseless : numpy.ndarray
        ``(bands, height, width)`` float32, source light only, electrons.
    snr : numpy.ndarray
        ``(n_sources, bands)`` optimal S/N of each isolated source.
    flux : numpy.ndarray
        ``(n_sources, bands)`` electrons of each source (its full model flux).
    peak : numpy.ndarray
        ``(n_sources,)`` brightest noiseless pixel in the detection band, electrons.
    psf_fwhm : numpy.ndarray
        ``(n_sources,)`` PSF FWHM at the source in the detection band, arcsec.
    footprints : numpy.ndarray
        ``(height, width)`` int32 label map of source ids, 0 where no source.
    """

    noiseless: np.ndarray
    snr: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    psf_fwhm: np.ndarray
    footprints: np.ndarray


def render_sources(
    sources: list[Source],
    *,
    preset: SurveyPreset,
    psf: VaryingPSF,
    shape: tuple[int, int],
    sky: np.ndarray,
    footprint_nsigma: float = 1.0,
    footprint_peak_fractions: tuple[float, float] | None = None,
    clumps_in_footprints: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> RenderedSources:
    """Draw ``sources`` into a noiseless ``(bands, height, width)`` image in electrons.

    Parameters
    ----------
    sources : list of Source
        Truth sources; ``x, y`` are 0-based pixel positions.
    preset : SurveyPreset
        Bands, zero points, pixel scale and read noise.
    psf : VaryingPSF
        PSF as a function of position (detection band; other bands are scaled).
    shape : (int, int)
        ``(height, width)``.
    sky : numpy.ndarray
        ``(bands, height, width)`` sky in electrons, used for S/N and footprint thresholds.
    footprint_nsigma : float
        Footprint threshold in units of the background noise per pixel.
    footprint_peak_fractions : (float, float), optional
        ``(stars, galaxies)``: instead of ``footprint_nsigma``, footprints where each source's
        noiseless light reaches this fraction of its own peak, smoothed (module notes).
    clumps_in_footprints : bool
        Pixels where a clump is the brightest source above the threshold join its parent's
        footprint; otherwise clumps own no pixels.
    progress : bool
        Show a progress bar.
    workers : int, optional
        Processes drawing in parallel (default: up to 2, the CPU count). Large fields are
        always split into the same chunks, summed in the same order, so the pixels do not
        depend on ``workers``.
    """
    n_chunks = PARALLEL_CHUNKS if len(sources) >= PARALLEL_MIN_SOURCES else 1
    chunks = [list(range(k, len(sources), n_chunks)) for k in range(n_chunks)]
    workers = min(workers or min(os.cpu_count() or 1, 2), n_chunks)
    global _JOB
    rule = (footprint_nsigma, footprint_peak_fractions)
    _JOB = (sources, preset, psf, shape, sky, rule, clumps_in_footprints, progress)
    try:
        if workers > 1:
            context = multiprocessing.get_context("fork")
            with context.Pool(workers) as pool:
                parts = pool.map(_render_chunk, [(k, c) for k, c in enumerate(chunks)])
        else:
            parts = [_render_chunk((k, c)) for k, c in enumerate(chunks)]
    finally:
        _JOB = None
    return _merge(parts, chunks, len(sources))


#: Fields with at least this many sources are drawn in PARALLEL_CHUNKS interleaved chunks.
PARALLEL_MIN_SOURCES = 2000
PARALLEL_CHUNKS = 2
_JOB = None  # the job a forked worker reads (sources hold GalSim objects; fork avoids pickling)


def _merge(parts, chunks, n: int) -> RenderedSources:
    first = parts[0]
    if len(parts) == 1:
        return first[0]
    total = RenderedSources(
        noiseless=first[0].noiseless.copy(),
        snr=np.zeros((n, first[0].snr.shape[1])),
        flux=np.zeros((n, first[0].flux.shape[1])),
        peak=np.zeros(n),
        psf_fwhm=np.zeros(n),
        footprints=first[0].footprints.copy(),
    )
    strongest = first[1].copy()
    for k, ((part, part_strongest), indices) in enumerate(zip(parts, chunks, strict=True)):
        if k:
            total.noiseless += part.noiseless
            wins = part_strongest > strongest
            total.footprints[wins] = part.footprints[wins]
            strongest[wins] = part_strongest[wins]
        for name in ("snr", "flux", "peak", "psf_fwhm"):
            getattr(total, name)[indices] = getattr(part, name)
    return total


def _render_chunk(task) -> tuple[RenderedSources, np.ndarray]:
    import galsim

    from skysift.progress import progress_iter

    chunk_number, indices = task
    sources, preset, psf, shape, sky, rule, clumps_in_footprints, progress = _JOB
    height, width = shape
    bands = preset.band_names
    det = bands.index(preset.detection_band)
    n = len(indices)
    noiseless = np.zeros((len(bands), height, width), dtype=np.float32)
    background_var = sky + preset.read_noise**2
    typical_sigma = float(np.sqrt(np.median(background_var[det])))
    snr = np.zeros((n, len(bands)))
    flux = np.zeros((n, len(bands)))
    peak = np.zeros(n)
    fwhm_at = np.zeros(n)
    footprints = np.zeros(shape, dtype=np.int32)
    strongest = np.zeros(shape, dtype=np.float32)
    full_bounds = galsim.BoundsI(0, width - 1, 0, height - 1)
    band_scale = [preset.fwhm_in_band(1.0, b) for b in bands]
    chunk = [sources[i] for i in indices]
    show = progress and chunk_number == 0

    for index, source in enumerate(progress_iter(chunk, "drawing sources", enabled=show)):
        fwhm = float(psf.fwhm_at(source.x, source.y))
        fwhm_at[index] = fwhm
        fluxes = [sum(preset.electrons(c.mags[b], b) for c in source.components) for b in bands]
        flux[index] = fluxes
        half = _stamp_half_size(source, fwhm, fluxes[det], preset, typical_sigma)
        ix, iy = round(source.x), round(source.y)
        bounds = galsim.BoundsI(ix - half, ix + half, iy - half, iy + half) & full_bounds
        if not bounds.isDefined():
            continue
        rows = slice(bounds.ymin, bounds.ymax + 1)
        cols = slice(bounds.xmin, bounds.xmax + 1)
        centre = galsim.PositionD(source.x, source.y)
        for b, band in enumerate(bands):
            local_psf = psf.at(source.x, source.y, fwhm_scale=band_scale[b])
            if source.kind == "star":
                profile = local_psf.withFlux(fluxes[b])
            else:
                light = galsim.Add(
                    [
                        c.profile.withFlux(preset.electrons(c.mags[band], band))
                        for c in source.components
                    ]
                )
                profile = galsim.Convolve(light, local_psf)
            stamp = galsim.ImageF(bounds, scale=preset.pixel_scale)
            profile.drawImage(image=stamp, method="no_pixel", center=centre)
            pixels = stamp.array
            noiseless[b, rows, cols] += pixels
            variance = background_var[b, rows, cols] + np.maximum(pixels, 0.0)
            snr[index, b] = math.sqrt(float(np.sum(pixels.astype(np.float64) ** 2 / variance)))
            if b == det:
                peak[index] = float(pixels.max())
                owner = source.parent_id if source.is_shred else source.id
                if owner > 0 and (clumps_in_footprints or not source.is_shred):
                    candidate = _footprint_candidate(
                        pixels, background_var[b, rows, cols], rule, star=source.kind == "star"
                    )
                    owned = candidate & (pixels > strongest[rows, cols])
                    footprints[rows, cols][owned] = owner
                    strongest[rows, cols][owned] = pixels[owned]
    rendered = RenderedSources(
        noiseless=noiseless,
        snr=snr,
        flux=flux,
        peak=peak,
        psf_fwhm=fwhm_at,
        footprints=footprints,
    )
    return rendered, strongest


#: Burke et al. (2019)'s smoothing of a peak-fraction mask: a Gaussian of this sigma (px) ...
PEAK_FRACTION_SMOOTHING = 2.0
#: ... over a square of this half-size (their 9 x 9 kernel).
PEAK_FRACTION_KERNEL_HALF = 4


def _footprint_candidate(
    pixels: np.ndarray, background_var: np.ndarray, rule, *, star: bool
) -> np.ndarray:
    """The stamp pixels a source may own: at least ``nsigma`` times the background noise, or
    (peak fractions given) at least its fraction of the source's peak, smoothed."""
    nsigma, peak_fractions = rule
    if peak_fractions is None:
        return pixels >= nsigma * np.sqrt(background_var)
    from scipy import ndimage

    fraction = peak_fractions[0] if star else peak_fractions[1]
    above = (pixels >= fraction * float(pixels.max())).astype(np.float32)
    smoothed = ndimage.gaussian_filter(
        above,
        PEAK_FRACTION_SMOOTHING,
        mode="nearest",
        truncate=PEAK_FRACTION_KERNEL_HALF / PEAK_FRACTION_SMOOTHING,
    )
    return smoothed >= 0.5


def _stamp_half_size(
    source: Source, fwhm: float, flux_e: float, preset: SurveyPreset, sigma: float
) -> int:
    """Half-size (pixels) of a stamp that holds the source down to a small fraction of noise."""
    fwhm_px = fwhm / preset.pixel_scale
    beta = preset.psf_beta
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    central = flux_e * (beta - 1.0) / (math.pi * alpha**2)
    floor = STAMP_NOISE_FRACTION * sigma
    radius = alpha * math.sqrt(max((central / floor) ** (1.0 / beta) - 1.0, 0.0))
    radius = min(max(radius, 2.5 * fwhm_px, 8.0), TRUNCATION_FWHM * fwhm_px + 2.0)
    if source.kind != "star":
        hlr_px = math.hypot(source.hlr / preset.pixel_scale, 0.5 * fwhm_px)
        extent = 8.0 if source.sersic_n >= 3 else 5.0
        radius = max(radius, extent * hlr_px) if central > floor else max(2.5 * hlr_px, radius)
    return int(min(math.ceil(radius), MAX_HALF_SIZE))
