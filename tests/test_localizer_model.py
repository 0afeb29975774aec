"""The shipped localizer weights: integrity, card, and accuracy on a seeded small field."""

from __future__ import annotations

import pytest

from skysift.evaluate.matching import match_to_truth
from skysift.evaluate.metrics import detection_metrics
from skysift.localizer import LocalizeConfig, Localizer
from skysift.models.registry import list_models, load_card
from skysift.sim import FieldConfig, simulate_field


@pytest.fixture(scope="module")
def localizer():
    return Localizer(LocalizeConfig())


def test_card_documents_reproduction_and_held_out_metrics():
    card = load_card("localizer")
    assert card["training"]["command"].startswith("skysift train localizer")
    assert "seed" in card["training"]
    # regression guard on held-out test fields (mixed presets, 1-300/arcmin^2, all artifacts)
    assert card["metrics"]["test_f1"] > 0.65
    assert card["normalization"]["kind"] == "asinh_mad"
    assert any(c["name"] == "localizer" for c in list_models())


@pytest.mark.parametrize(("survey", "density"), [("meerlicht", 20), ("decals", 20)])
def test_shipped_model_finds_sources_on_a_seeded_field(localizer, survey, density):
    field = simulate_field(FieldConfig(survey=survey, size=256, density=density, seed=2_000_401))
    band = field.image.bands.index(field.preset.detection_band)
    catalog, _ = localizer(field.image.data[band])
    truth = field.truth
    match, _ = match_to_truth(
        catalog["x"].value, catalog["y"].value, truth["x"], truth["y"], truth["snr"]
    )
    metrics = detection_metrics(match)
    # Regression guard: the first shipped model reaches 0.74-0.76 here. Issue 7 asks for 0.9;
    # docs/models.md says what limits it (blends and offsets > 1.5 px on galaxies).
    assert metrics["f1"] >= 0.7, metrics
    assert metrics["precision"] >= 0.75, metrics
    assert metrics["centroid_rms"] < 0.8


def test_augmented_passes_do_not_lose_sources_on_a_seeded_field():
    """The d4 test-time augmentation (8 passes) on the seeded MeerLICHT field: at least as
    good as one pass, within the field's noise (validation fields gain 0.005-0.03 F1)."""
    field = simulate_field(FieldConfig(survey="meerlicht", size=256, density=20, seed=2_000_401))
    band = field.image.bands.index(field.preset.detection_band)
    truth = field.truth
    f1 = {}
    for augment in (None, "d4"):
        catalog, _ = Localizer(LocalizeConfig(augment=augment))(field.image.data[band])
        match, _ = match_to_truth(
            catalog["x"].value, catalog["y"].value, truth["x"], truth["y"], truth["snr"]
        )
        f1[augment] = detection_metrics(match)["f1"]
    assert f1["d4"] >= f1[None] - 0.02, f1
    assert f1["d4"] >= 0.7, f1
