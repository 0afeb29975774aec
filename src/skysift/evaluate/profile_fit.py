"""Instance masks drawn by a classical estimator: the isophote of a fitted profile.

The segmenter's truth mask of a source is the isophote of its own noiseless light at 2 sigma
of the sky noise, and where sources overlap each pixel belongs to the brightest of them. A
profile fit that knows a faint galaxy's profile family, PSF, sky and neighbours draws that
mask far better than the Mask R-CNN (docs/models.md, session 32). This module is the fit a
pipeline can actually make, the baseline the detector's masks are measured against
(``benchmarks/segmenter_profile_masks.py``):

- the instances whose masks come within 2 pixels of each other form a group, fitted jointly
  to the detection band's sky-subtracted pixels (SEP's background and RMS) on a stamp around
  them, every other instance's pixels given no weight;
- a star is the PSF, a galaxy an elliptical exponential or de Vaucouleurs profile (both tried,
  the better kept) convolved with it; the PSF is a Moffat of the image's FWHM;
- each galaxy starts round and small (0.15 times its mask's equivalent diameter in half-light
  radius) at the centre of its positive light, so that a mask drawn too wide does not set the
  size the fit starts from;
- each member's new mask follows the truth masks' rule: its own fitted light at ``nsigma`` sky
  sigmas or more, where it is brighter than every other member's.

Measured on validation fields (docs/models.md, session 33), these masks raise the median IoU of
the detector's galaxy masks with truth but do not lower the number below IoU 0.5, the count
that holds Burke et al.'s figure: the fit has no model of the trails and undetected neighbours
a real field holds, nor of composite galaxies. So the ``Segmenter`` does not use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidParameterError

#: Sersic indices fitted to each galaxy (exponential disk, de Vaucouleurs spheroid).
SERSIC_INDICES = (1.0, 4.0)
#: Sersic profiles are cut at this many half-light radii (GalSim needs a finite extent to
#: draw an n = 4 profile quickly; the isophote lies well inside it).
SERSIC_TRUNCATION = 8.0
#: Function evaluations per profile fit.
MAX_EVALUATIONS = 60
#: Largest group of touching instances fitted jointly.
MAX_GROUP = 5


@dataclass(frozen=True)
class ProfileMaskSettings:
    """How :func:`group_isophotes` fits and draws a group's members.

    Parameters
    ----------
    psf_fwhm : float
        Detection-band PSF FWHM (pixels).
    psf_beta : float
        Moffat index of the PSF (3.5 for the simulated DECaLS fields, 3 for SDSS).
    nsigma : float
        The mask is the fitted profile above this many sky sigmas (the truth masks' 2).
    margin : int
        Pixels added on each side of the instance's box to make the fitted stamp.
    """

    psf_fwhm: float
    psf_beta: float = 3.5
    nsigma: float = 2.0
    margin: int = 6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.psf_fwhm) and self.psf_fwhm > 0):
            raise InvalidParameterError(
                f"psf_fwhm must be a positive number of pixels, got {self.psf_fwhm}"
            )
        if not self.psf_beta > 1.1:
            raise InvalidParameterError(f"psf_beta must be > 1.1, got {self.psf_beta}")
        if not self.nsigma > 0 or self.margin < 0:
            raise InvalidParameterError("nsigma must be positive and margin >= 0")


class _Member:
    """One instance's model in a group fit: a PSF (a star; parameters ``[x, y, ln flux]``)
    or an elliptical Sersic profile convolved with it (a galaxy; ``[x, y, ln hlr, eta1,
    eta2, ln flux]``, ``eta`` being GalSim's conformal shear, ``ln(1 / axis ratio)`` along
    twice the position angle), drawn on the group's stamp."""

    def __init__(self, *, galaxy: bool, sersic_n: float, psf, bounds) -> None:
        import galsim

        self.galaxy = galaxy
        self.psf = psf
        self.bounds = bounds
        self.unit = None
        if galaxy:
            gsparams = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3)
            self.unit = (
                galsim.Exponential(half_light_radius=1.0, gsparams=gsparams)
                if sersic_n == 1.0
                else galsim.Sersic(
                    n=sersic_n, half_light_radius=1.0, trunc=SERSIC_TRUNCATION, gsparams=gsparams
                )
            )

    @property
    def size(self) -> int:
        return 6 if self.galaxy else 3

    def draw(self, params: np.ndarray) -> np.ndarray:
        import galsim

        if self.galaxy:
            x, y, log_hlr, eta1, eta2, log_flux = params
            shape = self.unit.dilate(math.exp(log_hlr)).shear(eta1=eta1, eta2=eta2)
            profile = galsim.Convolve(shape.withFlux(math.exp(log_flux)), self.psf)
        else:
            x, y, log_flux = params
            profile = self.psf.withFlux(math.exp(log_flux))
        stamp = galsim.ImageF(self.bounds, scale=1.0)
        profile.drawImage(image=stamp, center=galsim.PositionD(x, y))
        return stamp.array.astype(np.float64)


def _start_and_bounds(
    light: np.ndarray, own: np.ndarray, *, galaxy: bool, psf_fwhm: float, extent: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One member's start parameters and bounds, from its mask on the stamp: the centre of
    its positive light, a round profile of 0.15 times the mask's equivalent diameter in
    half-light radius (at least a quarter of the PSF FWHM; the fit is bounded by the stamp),
    its summed light."""
    weights = np.where(own, np.maximum(light, 0.0), 0.0)
    total = float(weights.sum())
    rows, cols = np.nonzero(own)
    if total > 0:
        r_idx, c_idx = np.indices(light.shape)
        y = float((weights * r_idx).sum() / total)
        x = float((weights * c_idx).sum() / total)
    else:
        y, x = float(rows.mean()), float(cols.mean())
    log_flux = math.log(max(total, 1e-3))
    # the centre moves by up to 3 pixels, the flux by e^-6 to e^4 times the mask's sum
    if not galaxy:
        start = np.array([x, y, log_flux])
        lower = np.array([x - 3, y - 3, log_flux - 6])
        upper = np.array([x + 3, y + 3, log_flux + 4])
    else:
        diameter = 2.0 * math.sqrt(own.sum() / math.pi)
        low_size, high_size = math.log(0.05 * psf_fwhm), math.log(max(extent, 2.0))
        log_hlr = math.log(max(0.15 * diameter, 0.25 * psf_fwhm))
        start = np.array([x, y, log_hlr, 0.0, 0.0, log_flux])
        lower = np.array([x - 3, y - 3, low_size, -2.5, -2.5, log_flux - 6])
        upper = np.array([x + 3, y + 3, high_size, 2.5, 2.5, log_flux + 4])
    return np.clip(start, lower + 1e-6, upper - 1e-6), lower, upper


def _fit_group(data, weight, members, start, lower, upper):
    """Least squares of the members' summed light to ``data``; the Jacobian by one-sided
    differences, each member's columns from redrawing that member alone. Returns the cost
    and each member's drawn light at the fit."""
    from scipy.optimize import least_squares

    offsets = np.cumsum([0] + [m.size for m in members])
    step = 1e-3

    def parts(params):
        return [m.draw(params[a:b]) for m, a, b in zip(members, offsets, offsets[1:], strict=False)]

    def residuals(params):
        return ((data - sum(parts(params))) * weight).ravel()

    def jacobian(params):
        columns = np.empty((data.size, params.size))
        for m, a, b in zip(members, offsets, offsets[1:], strict=False):
            base = m.draw(params[a:b])
            for j in range(a, b):
                moved = params[a:b].copy()
                h = step if moved[j - a] + step <= upper[j] else -step
                moved[j - a] += h
                columns[:, j] = -((m.draw(moved) - base) * weight).ravel() / h
        return columns

    result = least_squares(
        residuals,
        start,
        jac=jacobian,
        bounds=(lower, upper),
        x_scale="jac",
        max_nfev=MAX_EVALUATIONS,
    )
    return float(result.cost), parts(result.x)


def group_isophotes(
    light: np.ndarray,
    sigma: float,
    masks: list[np.ndarray],
    galaxies: list[bool],
    ignore: np.ndarray,
    *,
    settings: ProfileMaskSettings,
    psf=None,
) -> tuple[list[np.ndarray], float] | None:
    """The masks of a group of touching instances from a joint profile fit, drawn by the
    rule of the truth masks: each member owns the pixels where its own fitted light is at
    least ``settings.nsigma`` sky sigmas and brighter than every other member's.

    Parameters
    ----------
    light : numpy.ndarray
        ``(H, W)`` detection-band pixels with the sky removed (ADU).
    sigma : float
        The sky noise (ADU per pixel) of ``light``.
    masks : list of numpy.ndarray
        The members' current ``(H, W)`` bool masks; their joint box (plus
        ``settings.margin``) is the stamp fitted and drawn.
    galaxies : list of bool
        Per member, a galaxy (an exponential and a de Vaucouleurs profile are tried, the
        better kept) or a star (the PSF).
    ignore : numpy.ndarray
        ``(H, W)`` bool, pixels given no weight (instances outside the group, masked pixels).
    settings : ProfileMaskSettings
    psf : galsim.GSObject, optional
        The PSF at the group, in pixel units (a model of the survey's own); None uses a
        Moffat of ``settings.psf_fwhm`` and ``settings.psf_beta``.

    Returns
    -------
    (list of numpy.ndarray, float) or None
        Each member's ``(H, W)`` bool mask, and the fit's reduced chi-square over the
        stamp's weighted pixels (about 1 where the profiles explain the stamp); None when no
        fit could be made (too few weighted pixels or a failed fit).
    """
    import galsim

    union = np.any(masks, axis=0)
    if not union.any() or not (math.isfinite(sigma) and sigma > 0):
        return None
    rows, cols = stamp_slices(union, settings.margin)
    data = np.asarray(light[rows, cols], dtype=np.float64)
    weight = np.where(ignore[rows, cols] | ~np.isfinite(data), 0.0, 1.0 / sigma)
    data = np.where(weight > 0, data, 0.0)
    if np.count_nonzero(weight) < 12:
        return None
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    starts = [
        _start_and_bounds(data, m[rows, cols], galaxy=g, psf_fwhm=settings.psf_fwhm, extent=extent)
        for m, g in zip(masks, galaxies, strict=True)
    ]
    offset = np.array([cols.start, rows.start], dtype=np.float64)
    for start, lower, upper in starts:  # stamp -> image coordinates
        for vector in (start, lower, upper):
            vector[:2] += offset
    start, lower, upper = (np.concatenate(parts) for parts in zip(*starts, strict=True))
    if psf is None:
        psf = galsim.Moffat(
            beta=settings.psf_beta, fwhm=settings.psf_fwhm, trunc=4.0 * settings.psf_fwhm
        )
    bounds = galsim.BoundsI(cols.start, cols.stop - 1, rows.start, rows.stop - 1)
    best = None
    for sersic_n in SERSIC_INDICES if any(galaxies) else SERSIC_INDICES[:1]:
        members = [_Member(galaxy=g, sersic_n=sersic_n, psf=psf, bounds=bounds) for g in galaxies]
        try:
            cost, drawn = _fit_group(data, weight, members, start, lower, upper)
        except (galsim.GalSimError, ValueError, MemoryError, OverflowError):
            continue
        if np.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, drawn)
    if best is None:
        return None
    drawn = np.stack(best[1])
    chi2 = 2.0 * best[0] / max(np.count_nonzero(weight), 1)
    brightest = np.argmax(drawn, axis=0)
    out = []
    for k in range(len(masks)):
        own = (drawn[k] >= settings.nsigma * sigma) & (brightest == k)
        full = np.zeros(union.shape, dtype=bool)
        full[rows, cols] = own
        out.append(full)
    return out, chi2


def stamp_slices(own: np.ndarray, margin: int) -> tuple[slice, slice]:
    """``(rows, cols)`` of the box of ``own``'s pixels grown by ``margin``, inside the image."""
    rows, cols = np.nonzero(own)
    height, width = own.shape
    return (
        slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, height)),
        slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, width)),
    )


def sky_and_noise(plane: np.ndarray, *, ignore: np.ndarray) -> tuple[np.ndarray, float]:
    """``plane`` minus SEP's 64-pixel mesh background, and the sky noise (SEP's global RMS),
    both measured without the ``ignore`` pixels (sources, masked pixels)."""
    import sep

    data = np.array(plane, dtype=np.float64, order="C")
    bad = ignore | ~np.isfinite(data)
    filled = np.where(bad, 0.0, data)
    background = sep.Background(filled, mask=bad, bw=64, bh=64)
    return data - background.back(), float(background.globalrms)


def touching_groups(masks: list[np.ndarray], *, gap: int) -> list[list[int]]:
    """Indices of ``masks`` in groups whose masks come within ``gap`` pixels of each other
    (connected through any chain of members)."""
    from scipy import ndimage
    from scipy.sparse.csgraph import connected_components

    n = len(masks)
    grown = [ndimage.binary_dilation(m, iterations=gap) if gap else m for m in masks]
    touching = np.zeros((n, n), dtype=bool)
    for a in range(n):
        for b in range(a + 1, n):
            touching[a, b] = touching[b, a] = bool((grown[a] & masks[b]).any())
    _, labels = connected_components(touching, directed=False)
    return [list(np.flatnonzero(labels == g)) for g in range(labels.max() + 1)] if n else []


def fitted_groups(
    light: np.ndarray,
    sigma: float,
    masks: list[np.ndarray],
    galaxies: list[bool],
    *,
    settings: ProfileMaskSettings,
    masked: np.ndarray,
    max_group: int = MAX_GROUP,
    wanted: set[int] | None = None,
    psf_at=None,
):
    """Fit each group of touching instances that holds a galaxy (one of ``wanted``, when
    given) and has at most ``max_group`` members, by :func:`group_isophotes`; the pixels of
    the instances outside a group get no weight in its fit.

    ``light`` and ``sigma`` are as :func:`sky_and_noise` gives them; ``psf_at``, when given,
    maps a group's joint mask to its PSF (pixel units). Yields ``(member indices, their
    fitted masks, reduced chi-square)`` for every group whose fit succeeded.
    """
    sources = np.any(masks, axis=0)
    for group in touching_groups(masks, gap=2):
        chosen = wanted if wanted is not None else {k for k in group if galaxies[k]}
        if chosen.isdisjoint(group) or len(group) > max_group:
            continue
        inside = np.any([masks[k] for k in group], axis=0)
        fitted = group_isophotes(
            light,
            sigma,
            [masks[k] for k in group],
            [bool(galaxies[k]) for k in group],
            (sources & ~inside) | masked,
            settings=settings,
            psf=psf_at(inside) if psf_at is not None else None,
        )
        if fitted is not None:
            yield group, fitted[0], fitted[1]


def redraw_galaxy_masks(
    plane: np.ndarray,
    masks: list[np.ndarray],
    galaxies: list[bool],
    redraw: list[int],
    *,
    settings: ProfileMaskSettings,
    masked: np.ndarray | None = None,
    max_group: int = MAX_GROUP,
    max_chi2: float = math.inf,
) -> list[np.ndarray]:
    """Instance masks with the galaxies of ``redraw`` drawn again by :func:`group_isophotes`.

    Instances whose masks come within 2 pixels of each other are fitted together (a group
    of more than ``max_group``, or whose fit's reduced chi-square exceeds ``max_chi2``, keeps
    its masks); only the masks of ``redraw`` change.

    Parameters
    ----------
    plane : numpy.ndarray
        ``(H, W)`` detection band of the image (ADU, sky included).
    masks : list of numpy.ndarray
        Every instance's ``(H, W)`` bool mask.
    galaxies : list of bool
        Per instance, a galaxy (True) or a star.
    redraw : list of int
        Indices into ``masks`` of the galaxies to draw again.
    settings : ProfileMaskSettings
    masked : numpy.ndarray, optional
        ``(H, W)`` bool, pixels of no value (bad columns, saturation).
    max_group : int
        Largest group fitted.
    max_chi2 : float
        Largest reduced chi-square of a fit whose masks are used (infinite: every fit).

    Returns
    -------
    list of numpy.ndarray
        New list; an instance whose fit fails keeps its mask. ``masks`` is not modified.
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise InvalidParameterError(f"plane must be 2-D, got shape {plane.shape}")
    if len(galaxies) != len(masks):
        raise InvalidParameterError(f"{len(masks)} masks but {len(galaxies)} galaxy flags")
    masked = np.zeros(plane.shape, dtype=bool) if masked is None else np.asarray(masked, bool)
    out = list(masks)
    wanted = {int(k) for k in redraw}
    if not wanted <= set(range(len(masks))):
        raise InvalidParameterError(
            f"redraw indices {sorted(wanted)} are not all among the {len(masks)} masks"
        )
    if not wanted:
        return out
    masks = [np.asarray(m, dtype=bool) for m in masks]
    light, sigma = sky_and_noise(plane, ignore=np.any(masks, axis=0) | masked)
    groups = fitted_groups(
        light,
        sigma,
        masks,
        galaxies,
        settings=settings,
        masked=masked,
        max_group=max_group,
        wanted=wanted,
    )
    for group, drawn, chi2 in groups:
        if chi2 > max_chi2:
            continue
        for k, mask in zip(group, drawn, strict=True):
            if k in wanted and mask.any():
                out[k] = mask
    return out
