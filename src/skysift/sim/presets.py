"""Survey presets: the instrument and sky that a simulated field imitates.

A preset fixes the pixel scale, the bands, the PSF, the sky brightness and the detector (gain,
read noise, saturation, amplifier layout). Fluxes follow ``electrons = exptime * 10**(-0.4 *
(mag - zero_point))``; images are in ADU (electrons / gain), as raw-ish survey frames are.

Where the numbers come from
---------------------------
Pixel scales, bands, PSF ranges, exposure times and amplifier layouts are the published ones
(MeerLICHT: Bloemen et al. 2016, Groot 2019, and the ASID-L/ASID-C papers in
``shared/papers``; DECaLS: Dey et al. 2019; SDSS: Gunn et al. 1998, 2006, Stoughton et al. 2002).
Zero points (electrons/s for a 0 mag AB source), sky brightnesses, gains, read noises and
saturation levels are *representative* values of the right order for each instrument, chosen
so that the 5-sigma point-source depth at the median seeing lands near the published depth
(``reference_depth``); ``tests/sim/test_presets.py`` checks that it does, within 0.3 mag. They
are not a calibration of any particular exposure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from skysift.errors import InvalidParameterError

__all__ = ["PRESETS", "BandSpec", "SurveyPreset", "get_preset", "point_source_depth"]


@dataclass(frozen=True)
class BandSpec:
    """One filter of a survey.

    Attributes
    ----------
    name : str
        Filter name (``"g"``, ``"r"``, ``"q"`` ...).
    wavelength : float
        Effective wavelength in nm; the PSF FWHM scales as ``wavelength**-0.2`` (Kolmogorov).
    zero_point : float
        AB magnitude that gives 1 electron per second.
    sky_brightness : float
        Sky surface brightness in AB mag/arcsec^2.
    reference_depth : float
        Published 5-sigma point-source depth the preset aims at (AB mag).
    """

    name: str
    wavelength: float
    zero_point: float
    sky_brightness: float
    reference_depth: float


@dataclass(frozen=True)
class SurveyPreset:
    """Everything fixed by a survey: optics, detector and sky.

    Attributes
    ----------
    name : str
        Preset name.
    pixel_scale : float
        Arcsec per pixel.
    bands : tuple of BandSpec
        Filters; the first band listed in ``detection_band`` drives source counts and ``snr``.
    detection_band : str
        Band whose magnitudes follow the number counts and whose S/N is the truth ``snr``.
    psf_fwhm_range : (float, float)
        Range of the PSF FWHM at the optical centre, arcsec, in the detection band; each field
        draws one value from it.
    psf_beta : float
        Moffat index of the PSF.
    exposure_time : float
        Seconds.
    gain : float
        Electrons per ADU.
    read_noise : float
        Electrons per pixel, rms.
    saturation : float
        ADU at which pixels saturate (and charge bleeds along columns).
    amplifiers : (int, int)
        Read-out amplifiers as (rows, columns) of equal blocks; each gets its own offset.
    reference : str
        Where the fixed numbers come from.
    """

    name: str
    pixel_scale: float
    bands: tuple[BandSpec, ...]
    detection_band: str
    psf_fwhm_range: tuple[float, float]
    psf_beta: float
    exposure_time: float
    gain: float
    read_noise: float
    saturation: float
    amplifiers: tuple[int, int] = (1, 2)
    reference: str = ""
    band_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "band_names", tuple(b.name for b in self.bands))
        if self.detection_band not in self.band_names:
            raise InvalidParameterError(
                f"preset {self.name}: detection_band {self.detection_band!r} is not one of "
                f"{self.band_names}"
            )

    def band(self, name: str) -> BandSpec:
        """Return the :class:`BandSpec` called ``name``."""
        for spec in self.bands:
            if spec.name == name:
                return spec
        raise InvalidParameterError(f"preset {self.name} has no band {name!r}; {self.band_names}")

    def electrons(self, mag: float, band: str) -> float:
        """Electrons collected in one exposure from a source of AB magnitude ``mag``."""
        return self.exposure_time * 10.0 ** (-0.4 * (mag - self.band(band).zero_point))

    def magnitude(self, electrons: float, band: str) -> float:
        """Inverse of :meth:`electrons`."""
        return self.band(band).zero_point - 2.5 * math.log10(electrons / self.exposure_time)

    def sky_electrons(self, band: str) -> float:
        """Sky electrons per pixel in one exposure."""
        spec = self.band(band)
        per_arcsec2 = self.electrons(spec.sky_brightness, band)
        return per_arcsec2 * self.pixel_scale**2

    def zero_point_adu(self, band: str) -> float:
        """Magnitude of a source giving 1 ADU in the whole exposure (the image's MAGZP)."""
        spec = self.band(band)
        return spec.zero_point + 2.5 * math.log10(self.exposure_time / self.gain)

    def fwhm_in_band(self, fwhm: float, band: str) -> float:
        """Scale a detection-band FWHM to ``band`` with the Kolmogorov ``lambda**-0.2`` law."""
        reference = self.band(self.detection_band).wavelength
        return fwhm * (reference / self.band(band).wavelength) ** 0.2


def point_source_depth(
    preset: SurveyPreset, band: str, *, fwhm: float | None = None, nsigma: float = 5.0
) -> float:
    """Magnitude of a point source detected at ``nsigma`` with PSF-optimal weighting.

    Background-limited estimate for the preset's Moffat PSF at ``fwhm`` (arcsec, default the
    middle of the preset's range): noise-equivalent area ``A = 1 / sum(p_i^2)`` of the
    pixelated PSF ``p``, then ``F = nsigma * sqrt(A * (sky + read_noise**2))``, solved with the
    source's own Poisson noise included.
    """
    import galsim
    import numpy as np

    if fwhm is None:
        fwhm = sum(preset.psf_fwhm_range) / 2
    fwhm = preset.fwhm_in_band(fwhm, band)
    from skysift.sim.psf import TRUNCATION_FWHM

    psf = galsim.Moffat(beta=preset.psf_beta, fwhm=fwhm, trunc=TRUNCATION_FWHM * fwhm)
    size = int(8 * fwhm / preset.pixel_scale) | 1
    stamp = psf.drawImage(nx=size, ny=size, scale=preset.pixel_scale, method="no_pixel").array
    profile = stamp / stamp.sum()
    background = preset.sky_electrons(band) + preset.read_noise**2
    # S/N(F)^2 = sum (F p)^2 / (B + F p) = nsigma^2; solve for F by bisection in log space.
    lo, hi = 1e-3, 1e9
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        snr = math.sqrt(float(np.sum((mid * profile) ** 2 / (background + mid * profile))))
        lo, hi = (mid, hi) if snr < nsigma else (lo, mid)
    return preset.magnitude(math.sqrt(lo * hi), band)


MEERLICHT = SurveyPreset(
    name="meerlicht",
    pixel_scale=0.56,
    bands=(BandSpec("q", 580.0, 24.7, 20.5, 21.3),),
    detection_band="q",
    psf_fwhm_range=(2.0, 3.0),
    psf_beta=3.0,
    exposure_time=60.0,
    gain=1.0,
    read_noise=10.0,
    saturation=60000.0,
    amplifiers=(2, 8),
    reference=(
        "MeerLICHT 0.65 m, STA1600 10.5k CCD read by 16 amplifiers, 0.56 arcsec/px, 60 s "
        "exposures, image quality 2-3 arcsec, q band (440-720 nm) 5-sigma limit ~21.3 in 60 s "
        "(Bloemen et al. 2016; Groot 2019; Stoppa et al. 2022, 2023)"
    ),
)

DECALS = SurveyPreset(
    name="decals",
    pixel_scale=0.262,
    bands=(
        BandSpec("g", 477.0, 26.45, 22.0, 24.4),
        BandSpec("r", 623.0, 26.1, 21.0, 23.8),
        BandSpec("z", 913.0, 26.5, 18.6, 22.9),
    ),
    detection_band="r",
    psf_fwhm_range=(1.0, 1.6),
    psf_beta=3.5,
    exposure_time=240.0,
    gain=4.0,
    read_noise=7.0,
    saturation=30000.0,
    amplifiers=(1, 2),
    reference=(
        "DECam on the Blanco 4 m, 0.262 arcsec/px, g r z, seeing ~1.0-1.6 arcsec; depths near "
        "the Legacy Surveys DR9 targets (Dey et al. 2019); 240 s stands for a ~3-pass coadd"
    ),
)

SDSS = SurveyPreset(
    name="sdss",
    pixel_scale=0.396,
    bands=(
        BandSpec("g", 469.0, 24.35, 21.9, 22.2),
        BandSpec("r", 617.0, 24.95, 20.9, 22.2),
        BandSpec("i", 748.0, 23.85, 20.2, 21.3),
    ),
    detection_band="r",
    psf_fwhm_range=(1.2, 1.6),
    psf_beta=3.0,
    exposure_time=53.9,
    gain=4.7,
    read_noise=5.0,
    saturation=55000.0,
    amplifiers=(1, 2),
    reference=(
        "SDSS 2.5 m drift scan, 0.396 arcsec/px, 53.9 s, median seeing 1.4 arcsec, 95% "
        "completeness g 22.2, r 22.2, i 21.3 (York et al. 2000; Stoughton et al. 2002)"
    ),
)

PRESETS: dict[str, SurveyPreset] = {p.name: p for p in (MEERLICHT, DECALS, SDSS)}


def get_preset(name: str | SurveyPreset) -> SurveyPreset:
    """Return a survey preset by name (``meerlicht``, ``decals``, ``sdss``)."""
    if isinstance(name, SurveyPreset):
        return name
    try:
        return PRESETS[name.lower()]
    except (KeyError, AttributeError):
        raise InvalidParameterError(
            f"unknown survey preset {name!r}; choose one of {sorted(PRESETS)}"
        ) from None
