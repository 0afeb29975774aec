"""The PSF FWHM measured on an image's own stars (skysift.seeing)."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.seeing import fwhm_from_stamps, measure_psf_fwhm


def _moffat_stamps(rng, fwhm: float, beta: float, n: int = 40) -> np.ndarray:
    """Pixelated Moffat stars at random sub-pixel positions, peaks 30-300 sigma, unit noise."""
    profile = galsim.Moffat(beta=beta, fwhm=fwhm)
    stamps = []
    for _ in range(n):
        offset = tuple(rng.uniform(-0.5, 0.5, 2))
        star = profile.drawImage(nx=34, ny=34, scale=1.0, offset=offset).array
        stamps.append(star / star.max() * rng.uniform(30, 300) + rng.normal(size=star.shape))
    return np.array(stamps, np.float32)


@pytest.mark.parametrize(("fwhm", "beta"), [(2.5, 2.5), (2.5, 4.5), (5.0, 3.0)])
def test_calibrated_fwhm_is_unbiased_where_whole_pixels_are_not(rng, fwhm, beta):
    stamps = _moffat_stamps(rng, fwhm, beta)
    assert fwhm_from_stamps(stamps, method="calibrated") == pytest.approx(fwhm, rel=0.02)
    if fwhm < 3:  # whole pixels above half the brightest one: 10-15 % high at 2.5 px
        assert fwhm_from_stamps(stamps) > 1.08 * fwhm


def test_fwhm_needs_enough_bright_sources(rng):
    stamps = _moffat_stamps(rng, 4.0, 3.0, n=12)
    assert np.isfinite(fwhm_from_stamps(stamps, min_sources=12))
    assert np.isnan(fwhm_from_stamps(stamps, min_sources=13))
    assert np.isnan(fwhm_from_stamps(stamps[:0], method="calibrated"))
    with pytest.raises(InvalidParameterError, match="method"):
        fwhm_from_stamps(stamps, method="fit")
    with pytest.raises(InvalidParameterError, match=r"\(n, size, size\)"):
        fwhm_from_stamps(stamps[0])


def test_the_psf_fwhm_is_measured_past_cosmic_rays(moffat_star_field):
    image, middle_band, fwhm = moffat_star_field
    # cosmic rays are bright in one band only: the other bands reject them
    assert measure_psf_fwhm(image) == pytest.approx(fwhm, rel=0.03)
    # a single band cannot tell them from stars, and they outnumber the stars here
    assert measure_psf_fwhm(middle_band) < 0.8 * fwhm
    assert measure_psf_fwhm(image, band=0) == pytest.approx(fwhm, rel=0.03)
    assert np.isnan(measure_psf_fwhm(image, min_sources=100))
    with pytest.raises(InvalidParameterError, match="band 'z' not in this image"):
        measure_psf_fwhm(image, band="z")
