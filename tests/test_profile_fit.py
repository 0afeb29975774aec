"""The classical profile-fit masks (skysift.evaluate.profile_fit) on seeded GalSim stamps."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy import ndimage

from skysift.errors import InvalidParameterError
from skysift.evaluate.profile_fit import (
    ProfileMaskSettings,
    group_isophotes,
    redraw_galaxy_masks,
    touching_groups,
)
from skysift.evaluate.segmentation import mask_iou_matrix

SHAPE = (64, 64)
FWHM = 3.5
SIGMA = 5.0
SKY = 100.0


def _galaxy(x: float, y: float, flux: float, hlr: float, *, e1: float = 0.0) -> np.ndarray:
    psf = galsim.Moffat(beta=3.5, fwhm=FWHM)
    profile = galsim.Exponential(half_light_radius=hlr, flux=flux).shear(g1=e1, g2=0.0)
    stamp = galsim.ImageF(galsim.BoundsI(0, SHAPE[1] - 1, 0, SHAPE[0] - 1), scale=1.0)
    galsim.Convolve(profile, psf).drawImage(image=stamp, center=galsim.PositionD(x, y))
    return stamp.array.astype(np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(mask_iou_matrix(a[None], b[None])[0, 0])


def _noisy(light: np.ndarray, seed: int) -> np.ndarray:
    return light + SKY + np.random.default_rng(seed).normal(0.0, SIGMA, light.shape)


def test_a_mask_drawn_too_wide_is_redrawn_near_the_true_isophote():
    truth_light = _galaxy(31.3, 30.6, 4000.0, 2.5, e1=0.3)
    truth = truth_light >= 2 * SIGMA
    wide = ndimage.binary_dilation(truth, iterations=4)  # the detector's, 4 pixels too wide
    plane = _noisy(truth_light, 3)
    before = [wide.copy()]
    (redrawn,) = redraw_galaxy_masks(
        plane, [wide], [True], [0], settings=ProfileMaskSettings(psf_fwhm=FWHM)
    )
    assert _iou(wide, truth) < 0.6
    assert _iou(redrawn, truth) > 0.8
    np.testing.assert_array_equal(wide, before[0])  # the input is not modified


def test_a_group_is_partitioned_by_the_brighter_fitted_light():
    first, second = _galaxy(24.0, 32.0, 6000.0, 2.0), _galaxy(38.0, 33.0, 3000.0, 2.0)
    truth_first = (first >= 2 * SIGMA) & (first > second)
    truth_second = (second >= 2 * SIGMA) & (second > first)
    plane = _noisy(first + second, 7)
    light = plane - SKY
    # the detector drew one mask per galaxy, split down a wrong column
    union = ndimage.binary_dilation(truth_first | truth_second)
    left = union & (np.arange(SHAPE[1])[None, :] < 34)
    right = union & ~left
    fitted = group_isophotes(
        light,
        SIGMA,
        [left, right],
        [True, True],
        np.zeros(SHAPE, dtype=bool),
        settings=ProfileMaskSettings(psf_fwhm=FWHM),
    )
    assert fitted is not None
    (mask_first, mask_second), chi2 = fitted
    assert _iou(mask_first, truth_first) > 0.8
    assert _iou(mask_second, truth_second) > 0.7
    assert not (mask_first & mask_second).any()
    assert 0.7 < chi2 < 1.4  # the two profiles explain the stamp


def test_touching_groups_joins_masks_within_the_gap_only():
    masks = [np.zeros((20, 20), dtype=bool) for _ in range(3)]
    masks[0][2:6, 2:6] = True
    masks[1][2:6, 7:10] = True  # one pixel of sky between it and the first
    masks[2][15:18, 15:18] = True
    assert touching_groups(masks, gap=2) == [[0, 1], [2]]
    assert touching_groups(masks, gap=0) == [[0], [1], [2]]
    assert touching_groups([], gap=2) == []


def test_redraw_keeps_every_mask_not_asked_for_and_checks_its_input():
    plane = _noisy(_galaxy(32.0, 32.0, 3000.0, 2.0), 1)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[28:36, 28:36] = True
    settings = ProfileMaskSettings(psf_fwhm=FWHM)
    (kept,) = redraw_galaxy_masks(plane, [mask], [True], [], settings=settings)
    assert kept is mask
    with pytest.raises(InvalidParameterError, match="2-D"):
        redraw_galaxy_masks(plane[None], [mask], [True], [0], settings=settings)
    with pytest.raises(InvalidParameterError, match="redraw indices"):
        redraw_galaxy_masks(plane, [mask], [True], [1], settings=settings)
    with pytest.raises(InvalidParameterError, match="galaxy flags"):
        redraw_galaxy_masks(plane, [mask], [True, False], [0], settings=settings)
    with pytest.raises(InvalidParameterError, match="psf_fwhm"):
        ProfileMaskSettings(psf_fwhm=0.0)
