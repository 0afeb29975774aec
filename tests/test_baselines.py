"""SEP and photutils baselines on a small synthetic image with known positions."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.catalog import COLUMNS, FLAGS, decode_flags, empty_catalog
from skysift.errors import EmptyCatalogWarning
from skysift.evaluate.baselines import DaoStarFinderDetector, SepDetector, SourceFinderDetector
from skysift.evaluate.matching import match_catalogs
from skysift.evaluate.metrics import detection_metrics
from skysift.image import Image


@pytest.fixture(scope="module")
def synthetic():
    """Twenty Gaussian stars (S/N ~ 50-200) on a sloped sky with known positions."""
    import galsim

    rng = np.random.default_rng(7)
    size = 160
    image = galsim.ImageF(size, size, scale=1.0, xmin=0, ymin=0)
    positions = []
    grid = [(x, y) for x in range(20, 150, 30) for y in range(20, 150, 32)]
    for x0, y0 in grid:
        x, y = x0 + rng.uniform(-0.5, 0.5), y0 + rng.uniform(-0.5, 0.5)
        galsim.Gaussian(fwhm=3.0, flux=float(rng.uniform(3000, 12000))).drawImage(
            image=image, center=galsim.PositionD(x, y), add_to_image=True, method="no_pixel"
        )
        positions.append((x, y))
    _yy, xx = np.mgrid[0:size, 0:size]
    sky = 200.0 + 0.1 * xx
    data = image.array + sky + rng.normal(0, 10.0, (size, size))
    return Image.from_array(data.astype(np.float32)), np.array(positions)


@pytest.mark.parametrize(
    "detector",
    [
        SepDetector.sextractor_defaults(),
        SepDetector.asid_l_comparison(),
        SourceFinderDetector(fwhm=3.0),
        DaoStarFinderDetector(fwhm=3.0),
    ],
    ids=lambda d: d.name,
)
def test_baselines_find_known_stars(synthetic, detector):
    image, truth = synthetic
    catalog = detector(image)
    schema = [c.name for c in COLUMNS if c.name not in ("ra", "dec")]
    assert catalog.colnames[: len(schema)] == schema
    match = match_catalogs(
        catalog["x"].value, catalog["y"].value, truth[:, 0], truth[:, 1], radius=1.0
    )
    metrics = detection_metrics(match)
    assert metrics["recall"] == 1.0
    # low thresholds (1.5 sigma, 3 px) pick up some noise peaks; none of them is significant
    assert np.all(catalog["snr"][match.fp_detections] < 6)
    assert metrics["centroid_rms"] < 0.15
    assert np.all(catalog["snr"][match.tp_detections] > 20)
    assert catalog.meta["detector"] == detector.name


def test_masked_region_yields_no_detections(synthetic):
    image, _truth = synthetic
    mask = np.zeros(image.shape, dtype=bool)
    mask[:, :80] = True
    catalog = SepDetector()(image, mask=mask)
    assert np.all(catalog["x"].value >= 78)


def test_blank_image_gives_empty_catalog_with_schema_and_warning(rng):
    blank = rng.normal(0, 1, (64, 64)).astype(np.float32)
    for detector in (
        SepDetector(threshold=8.0),
        SourceFinderDetector(fwhm=3.0, threshold=8.0),
        DaoStarFinderDetector(fwhm=3.0, threshold=8.0),
    ):
        with pytest.warns(EmptyCatalogWarning, match=detector.name):
            catalog = detector(blank)
        assert len(catalog) == 0
        assert catalog.colnames[:3] == ["id", "x", "y"]


def test_multiband_image_uses_chosen_band(synthetic):
    image, truth = synthetic
    cube = np.stack([np.zeros(image.shape, np.float32) + 5, image.data[0]])
    two_band = Image.from_array(cube, bands=["g", "r"])
    catalog = SepDetector(band="r")(two_band)
    assert len(catalog) >= len(truth)


def test_flags_and_empty_catalog():
    assert decode_flags(FLAGS["edge"] | FLAGS["saturated"]) == ["edge", "saturated"]
    table = empty_catalog(with_sky=True)
    assert "ra" in table.colnames
    assert len(table) == 0
    assert table["flux"].unit == "adu"


def test_integer_pixel_columns_stay_integers(synthetic):
    image, _ = synthetic
    catalog = SepDetector()(image)
    for name in ("id", "x_peak", "y_peak", "bbox_xmin", "bbox_ymax", "area", "flags"):
        assert catalog[name].dtype.kind == "i", name
