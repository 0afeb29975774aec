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
