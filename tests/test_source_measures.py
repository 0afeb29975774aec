"""The compiled per-source measurements agree with SEP, which computes the same quantities."""

import numpy as np
import pytest
import sep

from skysift.errors import InvalidParameterError
from skysift.source_measures import (
    APERTURE_MASKED,
    APERTURE_TRUNCATED,
    WINDOW_EMPTY,
    WINDOW_TRUNCATED,
    WINDOW_WANDERED,
    aperture_photometry,
    windowed_centroids,
)


def _stars(seed=2_000_400, n=300, size=256, fwhm=3.5, noise=1.0):
    """A field of Gaussian stars: true positions, the noisy image (sky 0)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, size + 3, n)
    y = rng.uniform(-3, size + 3, n)
    flux = 10 ** rng.uniform(1.5, 3.5, n)
    sigma = fwhm / 2.3548
    rows, cols = np.mgrid[:size, :size]
    image = rng.normal(0.0, noise, (size, size))
    for xi, yi, fi in zip(x, y, flux, strict=True):
        near = (np.abs(cols - xi) < 6 * sigma) & (np.abs(rows - yi) < 6 * sigma)
        r2 = (cols[near] - xi) ** 2 + (rows[near] - yi) ** 2
        image[near] += fi / (2 * np.pi * sigma**2) * np.exp(-r2 / (2 * sigma**2))
    return x, y, image.astype(np.float32), sigma


def test_windowed_centroids_match_sep_winpos():
    x, y, image, sigma = _stars()
    start_x, start_y = np.round(x), np.round(y)  # integer peaks, as the localizer starts
    sep_x, sep_y, sep_flag = sep.winpos(image, start_x, start_y, np.full(x.size, sigma), subpix=1)
    ours = windowed_centroids(image, start_x, start_y, sigma)
    both = (ours.flags == 0) & (sep_flag == 0)
    assert both.sum() > 200
    # the same iteration; windows still oscillating after 16 steps differ by rounding
    assert np.max(np.hypot(ours.x - sep_x, ours.y - sep_y)[both]) < 1e-3
    # windows over the edge are flagged, as SEP flags them (a window can reach it on the way)
    edge = (np.minimum(start_x, start_y) < 4 * sigma) | (
        np.maximum(start_x, start_y) > 255 - 4 * sigma
    )
    truncated = (ours.flags & WINDOW_TRUNCATED) != 0
    assert np.all(truncated[edge])
    assert np.mean(truncated == (sep_flag != 0)) > 0.98
    # and the centroid is good (a crowded field: 300 stars in 256 x 256 pixels)
    assert np.median(np.hypot(ours.x - x, ours.y - y)[both]) < 0.15


def test_windowed_centroid_flags_empty_and_wandering_windows_and_keeps_inputs():
    x, y, image, sigma = _stars(n=50)
    blank = np.zeros((64, 64), dtype=np.float32)
    empty = windowed_centroids(blank, [30.0], [30.0], 1.5)
    assert empty.flags[0] & WINDOW_EMPTY
    assert (empty.x[0], empty.y[0]) == (30.0, 30.0)
    # a window 2.5 px off a bright star walks towards it: stopped when max_shift is 1 px
    star = np.argmax(
        [
            image[int(np.clip(round(yi), 0, 255)), int(np.clip(round(xi), 0, 255))]
            for xi, yi in zip(x, y, strict=False)
        ]
    )
    start = (np.array([x[star] + 2.5]), np.array([y[star]]))
    copy = image.copy()
    free = windowed_centroids(image, *start, sigma)
    held = windowed_centroids(image, *start, sigma, max_shift=1.0)
    assert free.flags[0] == 0
    assert abs(free.x[0] - x[star]) < 0.2
    assert held.flags[0] & WINDOW_WANDERED
    assert abs(held.x[0] - start[0][0]) > 1.0
    np.testing.assert_array_equal(image, copy)
    assert windowed_centroids(image, [], [], sigma).x.shape == (0,)


def test_aperture_photometry_matches_sep_sum_circle_with_mask_and_annulus():
    x, y, image, _ = _stars(seed=2_000_401)
    rng = np.random.default_rng(2_000_402)
    mask = np.zeros(image.shape, dtype=bool)
    mask[rng.integers(0, 256, 400), rng.integers(0, 256, 400)] = True  # hot pixels
    mask[100:140, 60:64] = True  # a bad column block
    data = np.where(mask, 0.0, image).astype(np.float32)
    radius, annulus = 3.5, (8.75, 12.25)
    sep_flux, sep_err, sep_flag = sep.sum_circle(
        data, x, y, radius, err=1.3, mask=mask, gain=4.0, bkgann=annulus, subpix=5
    )
    flux, err, flags = aperture_photometry(
        data, x, y, radius, annulus=annulus, noise=1.3, mask=mask, gain=4.0, subpix=5
    )
    np.testing.assert_allclose(flux, sep_flux, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(err, sep_err, rtol=1e-6)
    # SEP's truncation flag comes from a rounded box; ours from the pixels themselves
    truncated = (flags & APERTURE_TRUNCATED) != 0
    assert np.mean(truncated == ((sep_flag & sep.APER_TRUNC) != 0)) > 0.97
    off_edge = np.minimum(np.minimum(x, y), 255 - np.maximum(x, y)) < radius - 0.71
    assert np.all(truncated[off_edge])
    masked = (flags & APERTURE_MASKED) != 0
    # SEP also flags masked pixels of its box that lie outside the circle
    sep_masked = (sep_flag & sep.APER_HASMASKED) != 0
    assert not np.any(masked & ~sep_masked)
    assert np.mean(masked == sep_masked) > 0.95
    assert (flags & APERTURE_MASKED).any()
    assert (flags & APERTURE_TRUNCATED).any()


def test_aperture_photometry_without_annulus_and_with_no_sky_pixels():
    _, _, image, _ = _stars(seed=2_000_403, n=20)
    x, y = np.array([40.5, 128.2]), np.array([60.1, 90.7])
    sep_flux, sep_err, _ = sep.sum_circle(image, x, y, 4.0, err=1.0, subpix=5)
    flux, err, _ = aperture_photometry(image, x, y, 4.0, noise=1.0)
    np.testing.assert_allclose(flux, sep_flux, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(err, sep_err, rtol=1e-6)
    everything_bad = np.ones(image.shape, dtype=bool)
    _, err, flags = aperture_photometry(
        image, x, y, 4.0, annulus=(8, 12), noise=1.0, mask=everything_bad
    )
    assert np.all(np.isnan(err))
    assert np.all(flags & APERTURE_MASKED)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda im: windowed_centroids(im[0], [1.0], [1.0], 1.0), "2-D image"),
        (lambda im: windowed_centroids(im, [1.0, 2.0], [1.0], 1.0), "differ in length"),
        (lambda im: windowed_centroids(im, [1.0], [1.0], 0.0), "sigma"),
        (lambda im: windowed_centroids(im, [1.0], [1.0], 1.0, max_shift=0), "max_shift"),
        (lambda im: aperture_photometry(im, [1.0], [1.0], -1.0, noise=1.0), "radius"),
        (lambda im: aperture_photometry(im, [1.0], [1.0], 2.0, noise=np.nan), "noise"),
        (
            lambda im: aperture_photometry(im, [1.0], [1.0], 2.0, noise=1.0, annulus=(5, 4)),
            "annulus",
        ),
        (lambda im: aperture_photometry(im, [1.0], [1.0], 2.0, noise=1.0, subpix=0), "subpix"),
        (
            lambda im: aperture_photometry(im, [1.0], [1.0], 2.0, noise=1.0, mask=np.ones((4, 4))),
            "mask shape",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(InvalidParameterError, match=message):
        call(np.zeros((16, 16), dtype=np.float32))


def test_calls_from_several_threads_agree_with_one_call():
    from concurrent.futures import ThreadPoolExecutor

    x, y, image, sigma = _stars(seed=2_000_404)
    alone = windowed_centroids(image, np.round(x), np.round(y), sigma)
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(lambda _: windowed_centroids(image, np.round(x), np.round(y), sigma), range(8))
        )
    for run in runs:
        np.testing.assert_array_equal(run.x, alone.x)
        np.testing.assert_array_equal(run.flags, alone.flags)


def test_positions_off_the_image_or_not_finite_give_flags_not_hangs():
    image = np.ones((32, 32), dtype=np.float32)
    x = np.array([np.nan, 1e300, -50.0, 16.0])
    y = np.array([5.0, 5.0, 5.0, np.inf])
    flux, err, flags = aperture_photometry(image, x, y, 3.0, annulus=(6, 9), noise=1.0)
    assert np.all(np.isnan(flux))
    assert np.all(np.isnan(err))
    assert np.all(flags & APERTURE_TRUNCATED)
    centroids = windowed_centroids(image, x, y, 1.5)
    assert np.all(centroids.flags & WINDOW_EMPTY)
