"""A PSF that changes across the field, as wide-field optics make it.

The PSF is a Moffat profile truncated at ``TRUNCATION_FWHM`` times its FWHM. It is the
*effective* PSF (atmosphere, optics and pixel response together), so sources are drawn with
``method="no_pixel"``. Its size and elongation grow with the distance ``rho`` from the optical
centre, measured in units of ``reference_radius``::

    fwhm(rho) = fwhm_centre * (1 + size_growth * rho**2)
    |e|(rho)  = ellipticity_edge * rho**2          (distortion-style shear e, not axis ratio)
    f(rho)    = coma_edge * rho                    (flux in the one-sided coma flare)

The elongation points radially (towards the optical centre), as field curvature and
astigmatism make it. Coma, which grows linearly with field angle, makes the PSF lopsided: a
fraction ``f`` of the light sits in a wider flare (``COMA_WIDTH`` x the FWHM) displaced
radially outwards by ``COMA_OFFSET`` FWHM, and the core moves inwards so that the light's
centroid stays at the source position (the truth position is the centroid). ASID-C describes
MeerLICHT's sources as symmetric at the centre and asymmetric and elongated towards the edges;
this position dependence is why the star/galaxy classifier takes the position as input.
``size_growth = ellipticity_edge = coma_edge = 0`` gives a constant PSF.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["COMA_OFFSET", "COMA_WIDTH", "TRUNCATION_FWHM", "VaryingPSF"]

#: The Moffat is truncated at this many FWHM (flux renormalized). For beta = 3 that drops about
#: 0.2 % of the light and halves the FFT cost of every galaxy convolution.
TRUNCATION_FWHM = 5.0
#: FWHM of the coma flare relative to the core's, and its radial offset in units of the FWHM.
COMA_WIDTH = 1.6
COMA_OFFSET = 0.6


@dataclass(frozen=True)
class VaryingPSF:
    """Moffat PSF whose FWHM and ellipticity grow away from the optical centre.

    Parameters
    ----------
    fwhm_centre : float
        FWHM at the optical centre, arcsec.
    beta : float
        Moffat index.
    centre : (float, float)
        Optical centre ``(x, y)`` in 0-based pixels; may lie outside the image (a field cut
        from the corner of a large detector).
    reference_radius : float
        Pixels from the centre at which ``rho = 1`` (typically the half-diagonal of the
        detector).
    size_growth : float
        Fractional FWHM increase at ``rho = 1``.
    ellipticity_edge : float
        Shear ``|e|`` at ``rho = 1`` (0 <= e < 1).
    coma_edge : float
        Fraction of the light in the coma flare at ``rho = 1`` (0 <= f < 0.5); 0 keeps the PSF
        point-symmetric everywhere.
    pixel_scale : float
        Arcsec per pixel.
    """

    fwhm_centre: float
    beta: float
    centre: tuple[float, float]
    reference_radius: float
    size_growth: float = 0.15
    ellipticity_edge: float = 0.08
    coma_edge: float = 0.0
    pixel_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.fwhm_centre > 0:
            raise InvalidParameterError(f"fwhm_centre must be > 0 arcsec; got {self.fwhm_centre}")
        if not self.beta > 1.1:
            raise InvalidParameterError(f"Moffat beta must be > 1.1; got {self.beta}")
        if not self.reference_radius > 0:
            raise InvalidParameterError(
                f"reference_radius must be > 0 pixels; got {self.reference_radius}"
            )
        if self.size_growth < 0:
            raise InvalidParameterError(f"size_growth must be >= 0; got {self.size_growth}")
        if not 0 <= self.ellipticity_edge < 1:
            raise InvalidParameterError(
                f"ellipticity_edge must be in [0, 1); got {self.ellipticity_edge}"
            )
        if not 0 <= self.coma_edge < 0.5:
            raise InvalidParameterError(f"coma_edge must be in [0, 0.5); got {self.coma_edge}")

    def rho(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """Distance from the optical centre in units of ``reference_radius``."""
        return np.hypot(x - self.centre[0], y - self.centre[1]) / self.reference_radius

    def fwhm_at(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """FWHM in arcsec at pixel position(s) ``(x, y)``."""
        return self.fwhm_centre * (1.0 + self.size_growth * self.rho(x, y) ** 2)

    def shear_at(self, x: float, y: float) -> tuple[float, float]:
        """Distortion-style shear ``(e1, e2)`` at ``(x, y)``, pointing radially."""
        e = min(self.ellipticity_edge * float(self.rho(x, y)) ** 2, 0.9)
        angle = math.atan2(y - self.centre[1], x - self.centre[0])
        return e * math.cos(2 * angle), e * math.sin(2 * angle)

    def coma_at(self, x: float, y: float) -> float:
        """Fraction of the light in the coma flare at ``(x, y)``."""
        return min(self.coma_edge * float(self.rho(x, y)), 0.49)

    def at(self, x: float, y: float, *, fwhm_scale: float = 1.0):
        """GalSim profile (unit flux) of the PSF at pixel ``(x, y)``.

        ``fwhm_scale`` rescales the size, e.g. for another band (see
        :meth:`SurveyPreset.fwhm_in_band`).
        """

        import galsim

        fwhm = float(self.fwhm_at(x, y)) * fwhm_scale
        e1, e2 = self.shear_at(x, y)
        unit = _unit_moffat(self.beta)
        psf = unit.dilate(fwhm)
        coma = self.coma_at(x, y)
        if coma > 0:
            dx, dy = x - self.centre[0], y - self.centre[1]
            norm = math.hypot(dx, dy)
            ux, uy = dx / norm, dy / norm
            offset = COMA_OFFSET * fwhm  # flare-to-core distance, arcsec
            flare = unit.dilate(COMA_WIDTH * fwhm).shift(
                ux * (1 - coma) * offset, uy * (1 - coma) * offset
            )
            core = psf.shift(-ux * coma * offset, -uy * coma * offset)
            psf = galsim.Add([core.withFlux(1 - coma), flare.withFlux(coma)])
        if e1 or e2:
            psf = psf.shear(e1=e1, e2=e2)
        return psf


@functools.lru_cache(maxsize=8)
def _unit_moffat(beta: float):
    """Truncated Moffat of FWHM 1; every local PSF is this profile dilated and sheared.

    Deriving them from one object lets GalSim compute the expensive Fourier-space extent
    (``maxk``) of the truncated Moffat once per field instead of once per source.
    """
    import galsim

    return galsim.Moffat(beta=beta, fwhm=1.0, trunc=TRUNCATION_FWHM)
