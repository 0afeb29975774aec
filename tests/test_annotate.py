"""Otsu auto-annotation of the central object (the Mask Galaxy paper's labelling)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.annotate import mask_iou, otsu_central_mask
from skysift.errors import InvalidParameterError


@pytest.fixture(scope="module")
def isolated_galaxy():
    from skysift.sim import FieldConfig, simulate_field

    config = FieldConfig(
        survey="sdss", size=128, density=0, seed=2_000_402, central_galaxy="spiral"
    )
    return simulate_field(config.without_artifacts())


def test_otsu_mask_is_the_bright_part_of_the_true_footprint(isolated_galaxy):
    from scipy import ndimage

    mask = otsu_central_mask(isolated_galaxy.image)
    truth = isolated_galaxy.footprints == 1
    assert mask[63, 63] or mask[64, 64]
    assert ndimage.label(mask)[1] == 1
    # Otsu stops well inside the 1-sigma isophote: nearly all of it is galaxy, not all galaxy
    assert (mask & truth).sum() / mask.sum() > 0.95
    assert 0.1 < mask.sum() / truth.sum() < 0.8
    assert 0.1 < mask_iou(mask, truth) < 0.8


def test_otsu_mask_of_an_empty_centre_is_empty():
    rng = np.random.default_rng(4)
    image = rng.normal(100.0, 5.0, (64, 64)).astype(np.float32)
    rows, cols = np.indices(image.shape)
    image += 500 * np.exp(-((cols - 8) ** 2 + (rows - 8) ** 2) / 8.0)  # a source in a corner
    assert not otsu_central_mask(image).any()
    assert otsu_central_mask(image, centre=(8.0, 8.0)).sum() > 5


def test_otsu_errors_name_the_problem():
    with pytest.raises(InvalidParameterError, match="flat"):
        otsu_central_mask(np.ones((32, 32), dtype=np.float32))
    image = np.random.default_rng(5).normal(0, 1, (32, 32)).astype(np.float32)
    with pytest.raises(InvalidParameterError, match="outside"):
        otsu_central_mask(image, centre=(40.0, 3.0))


def test_mask_iou_hand_cases():
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    assert mask_iou(a, b) == 1.0
    a[:2, :2] = True
    b[:2, :] = True
    assert mask_iou(a, b) == pytest.approx(4 / 8)
    with pytest.raises(InvalidParameterError, match="shape"):
        mask_iou(a, b[:3])
