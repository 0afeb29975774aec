"""Amplifier-offset removal: steps found where they are, sized right, and nothing else."""

import numpy as np
import pytest

from skysift.amplifiers import find_amplifier_steps, remove_amplifier_offsets
from skysift.errors import InvalidParameterError
from skysift.image import Image
from skysift.segment import sky_subtracted_light


def _sky(shape, seed, *, level=100.0, gradient=0.02, noise=3.0):
    rng = np.random.default_rng(seed)
    height, width = shape
    y, x = np.mgrid[:height, :width]
    return (level + gradient * (x + 0.5 * y) + rng.normal(0, noise, shape)).astype(np.float32)


def _gaussian(shape, x0, y0, sigma, flux):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (
        flux / (2 * np.pi * sigma**2) * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    ).astype(np.float32)


def test_grid_of_amplifiers_found_and_sized():
    shape = (400, 600)
    rows, cols = [170], [150, 330, 470]
    offsets = np.array([[12.0, -8.0, 25.0, 3.0], [-15.0, 6.0, -4.0, 18.0]])
    row_block = np.searchsorted(rows, np.arange(shape[0]), side="right")
    col_block = np.searchsorted(cols, np.arange(shape[1]), side="right")
    plane = _sky(shape, 1) + offsets[row_block[:, None], col_block[None, :]].astype(np.float32)
    for x0, y0 in ((80, 60), (400, 300), (250, 180)):
        plane += _gaussian(shape, x0, y0, 3.0, 5e4)
    original = plane.copy()

    steps = find_amplifier_steps(plane)

    np.testing.assert_array_equal(steps.columns, cols)
    np.testing.assert_array_equal(steps.rows, rows)
    np.testing.assert_allclose(steps.offsets, offsets - offsets.mean(), atol=0.5)
    np.testing.assert_array_equal(plane, original)  # input untouched
    flat = remove_amplifier_offsets(plane)
    assert flat.dtype == np.float32
    residual = flat - (original - offsets[row_block[:, None], col_block[None, :]])
    assert np.ptp(residual) < 1.0  # only the arbitrary common level is left


def test_no_steps_in_a_smooth_sky_with_sources_and_a_trail():
    shape = (300, 300)
    plane = _sky(shape, 2, gradient=0.1)
    rng = np.random.default_rng(3)
    for x0, y0 in rng.uniform(10, 290, (40, 2)):
        plane += _gaussian(shape, x0, y0, 2.0, rng.uniform(1e3, 5e4))
    plane[:, 140:150] += 15.0  # a satellite trail along the columns: a bump, not a step
    plane[:, 60:64] += 8.0

    steps = find_amplifier_steps(plane)

    assert steps.columns.size == 0
    assert steps.rows.size == 0
    np.testing.assert_array_equal(remove_amplifier_offsets(plane), plane)


def test_masked_and_nan_pixels_are_ignored():
    shape = (256, 256)
    plane = _sky(shape, 4)
    plane[:, 128:] += 20.0
    plane[100:110, :] = np.nan
    mask = np.zeros(shape, dtype=bool)
    mask[:, 120:124] = True
    plane[mask] = 1e6  # garbage under the mask

    steps = find_amplifier_steps(plane, mask=mask)

    np.testing.assert_array_equal(steps.columns, [128])
    assert steps.offsets[0, 1] - steps.offsets[0, 0] == pytest.approx(20.0, abs=0.6)


def test_windowed_centroid_of_a_galaxy_on_the_boundary():
    """The case that motivated the module: a mesh background alone turns the step into a
    ramp under the galaxy and moves its windowed centroid."""
    import sep

    shape = (256, 256)
    x0, y0 = 127.6, 131.2
    sky = _sky(shape, 5)
    galaxy = _gaussian(shape, x0, y0, 6.0, 4e5)
    plane = sky + galaxy
    plane[:, 128:] += 25.0
    y, x = np.mgrid[: shape[0], : shape[1]]
    exact = (sky - 100.0 - 0.02 * (x + 0.5 * y) + galaxy).astype(np.float64)  # true sky removed

    def offset(light):
        xw, yw, _ = sep.winpos(
            np.ascontiguousarray(light, dtype=np.float64),
            np.array([128.0]),
            np.array([131.0]),
            np.array([1.5]),
        )
        return np.hypot(xw[0] - x0, yw[0] - y0)

    light = sky_subtracted_light(Image.from_array(plane), sources=galaxy > 1.0)
    assert offset(light) == pytest.approx(offset(exact), abs=0.01)

    mesh_only = plane.copy()
    sep.Background(mesh_only, bw=64, bh=64).subfrom(mesh_only)
    assert offset(mesh_only) > offset(exact) + 0.1  # what the step costs without the removal


def test_bad_input_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="2-D"):
        find_amplifier_steps(np.zeros((2, 64, 64)))
    with pytest.raises(InvalidParameterError, match="mask shape"):
        find_amplifier_steps(np.zeros((64, 64)), mask=np.zeros((32, 64), dtype=bool))
    with pytest.raises(InvalidParameterError, match="sources mask shape"):
        sky_subtracted_light(
            Image.from_array(np.zeros((64, 64), np.float32)), sources=np.zeros((3, 3), bool)
        )


def test_small_image_has_no_steps():
    steps = find_amplifier_steps(_sky((20, 20), 6))
    assert steps.offsets.shape == (1, 1)
    assert steps.offsets[0, 0] == 0.0


@pytest.fixture(scope="module")
def crowded_field():
    import dataclasses

    from skysift.sim import FieldConfig, simulate_field

    config = FieldConfig(
        survey="meerlicht", size=512, density=150, star_fraction=0.9, seed=2_000_731
    )
    field = simulate_field(config)
    flat = simulate_field(dataclasses.replace(config, amplifier_offset=0.0).without_artifacts())
    return field, field.background[0] - flat.background[0]


@pytest.mark.parametrize("masked", [False, True])
def test_crowded_field_estimate_is_never_worse_than_none(crowded_field, masked):
    """In a crowded simulated field (confusion, saturated stars, bleed trails) the steps may
    go unfound, but what is subtracted must not be further from the true offsets than
    subtracting nothing; also with half the image masked around sources."""
    from scipy import ndimage

    field, true_offsets = crowded_field
    assert np.ptp(true_offsets) > 10  # the field has steps to find
    plane = field.image.data[0]
    mask = np.asarray(field.image.mask).copy()
    if masked:
        mask |= ndimage.binary_dilation(field.footprints > 0, iterations=3)
    fitted = find_amplifier_steps(plane, mask=mask).map(plane.shape)

    def rms(offsets):
        residual = true_offsets - offsets
        return float(np.sqrt(np.mean((residual - residual.mean()) ** 2)))

    assert rms(fitted) <= rms(np.zeros_like(fitted)) + 0.5
