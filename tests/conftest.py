"""Shared, seeded fixtures. Fields are small so the whole suite stays fast."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Exported ONNX graphs go to a temporary cache, never to the user's ~/.cache."""
    import os

    previous = os.environ.get("SKYSIFT_CACHE_DIR")
    os.environ["SKYSIFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("SKYSIFT_CACHE_DIR", None)
    else:
        os.environ["SKYSIFT_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def clean_field():
    """A small meerlicht field without artifacts (seed from the free range)."""
    from skysift.sim import FieldConfig, simulate_field

    config = FieldConfig(survey="meerlicht", size=192, density=20, seed=2_000_101)
    return simulate_field(config.without_artifacts())


@pytest.fixture(scope="session")
def artifact_field():
    """A small field with every artifact switched on, many of them."""
    from skysift.sim import FieldConfig, simulate_field

    return simulate_field(
        FieldConfig(
            survey="meerlicht",
            size=256,
            density=100,
            seed=2_000_102,
            cosmic_rays=400.0,
            hot_pixels=200.0,
            bad_columns=2,
            satellite_trails=1,
            star_fraction=0.9,
        )
    )


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def moffat_star_field():
    """``(image, middle_band, fwhm)``: three bands of the same 40 Moffat stars (FWHM 3.5 px,
    beta 3) and 150 cosmic rays (sharp, 2 x 3 pixels) in the middle band only, which then
    outnumber the stars; and that middle band alone."""
    import galsim

    from skysift.image import Image

    rng = np.random.default_rng(2_000_103)
    size, fwhm = 384, 3.5
    profile = galsim.Moffat(beta=3.0, fwhm=fwhm)
    bands = rng.normal(100.0, 1.0, (3, size, size)).astype(np.float32)
    for x, y in rng.uniform(20, size - 20, (40, 2)):
        star = profile.drawImage(nx=34, ny=34, scale=1.0, offset=(x % 1 - 0.5, y % 1 - 0.5))
        row, col = int(y) - 17, int(x) - 17
        bands[:, row : row + 34, col : col + 34] += rng.uniform(2e3, 2e4) * star.array
    for x, y in rng.uniform(10, size - 10, (150, 2)).astype(int):
        bands[1, y : y + 2, x : x + 3] += rng.uniform(200, 2000)
    return Image.from_array(bands), Image.from_array(bands[1]), fwhm
