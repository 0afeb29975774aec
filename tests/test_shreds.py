"""The shred classifier: its two views, the score rule in the segmenter, training, shipping."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.shreds import CONTEXT_ZOOM, CUTOUT, ShredClassifier, shred_inputs, unshred
from skysift.train.shred import architecture, prior_shift

CLASSES = ("star", "elliptical", "spiral", "other")


def _shreds(bias: float, *, bands: int = 3) -> ShredClassifier:
    """A shred classifier on ``bands`` bands whose P(shred) is sigmoid(bias) for every input."""
    import torch

    from skysift.models.stargalaxy import StarGalaxyNet

    config = architecture(bands, 8)
    network = StarGalaxyNet(config)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.head[-1].bias.fill_(bias)
    card = {
        "name": "test_shreds",
        "architecture": {"config": config.to_dict()},
        "normalization": {"softening": 4.0},
    }
    return ShredClassifier(module=network, card=card)


def test_the_two_views_centre_the_source_at_two_scales():
    """The native view holds the source's pixel at index 16; the context view averages 4x4
    blocks of a 128-pixel window centred on the same pixel."""
    bands = np.zeros((2, 200, 300), dtype=np.float32)
    bands[0, 80, 150] = 16.0  # a point at x = 150, y = 80
    bands[1, 80:84, 150:154] = 1.0  # a 4x4 block starting there
    views = shred_inputs(bands, [150.2], [79.8])
    assert views.shape == (1, 4, CUTOUT, CUTOUT)
    assert views[0, 0, 16, 16] == 16.0
    assert views[0, 0].sum() == 16.0
    half = CUTOUT // 2
    assert views[0, 2, half // CONTEXT_ZOOM + 12, half // CONTEXT_ZOOM + 12] == 1.0  # 16 / 16
    assert views[0, 3, 16, 16] == 1.0  # the block fills one context pixel
    assert views[0, 3].sum() == 1.0
    # beyond the image the views are zero, never dropped
    edge = shred_inputs(bands, [2.0], [2.0])
    assert edge.shape == (1, 4, CUTOUT, CUTOUT)
    assert np.isfinite(edge).all()
    assert shred_inputs(bands, [], []).shape == (0, 4, CUTOUT, CUTOUT)


def test_the_context_view_is_the_block_mean_of_the_zero_filled_window():
    """The running-mean shortcut gives each 4x4 block's mean of the 128-pixel window, also
    where the window reaches past the image (zeros there)."""
    from skysift.cutouts import extract_cutouts

    rng = np.random.default_rng(0)
    bands = rng.normal(size=(2, 150, 130)).astype(np.float32)
    x, y = rng.uniform(-5, 135, 200), rng.uniform(-5, 155, 200)
    views = shred_inputs(bands, x, y)
    for b in range(2):
        window = extract_cutouts(bands[b], x, y, size=CUTOUT * CONTEXT_ZOOM)[0]
        blocks = window.reshape(-1, CUTOUT, CONTEXT_ZOOM, CUTOUT, CONTEXT_ZOOM).mean(axis=(2, 4))
        np.testing.assert_allclose(views[:, 2 + b], blocks, atol=1e-5)
        np.testing.assert_array_equal(views[:, b], extract_cutouts(bands[b], x, y, size=CUTOUT)[0])


def test_unshred_lowers_the_galaxies_scores_by_their_shred_probability():
    from test_second_look import _prediction

    prediction = _prediction()
    before = {k: v.copy() for k, v in prediction.items()}
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    out = unshred(prediction, bands, _shreds(math.log(1 / 3)), psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_allclose(out["scores"], [0.9, 0.6 * 0.75, 0.7 * 0.75], rtol=1e-5)
    np.testing.assert_allclose(out["detection_scores"], out["scores"])
    assert np.isnan(out["p_shred"][0])
    np.testing.assert_allclose(out["p_shred"][1:], 0.25, rtol=1e-5)
    np.testing.assert_array_equal(out["labels"], before["labels"])
    for key, value in before.items():  # the input is left as it was
        np.testing.assert_array_equal(prediction[key], value)
    # a second look's detection scores are scaled as well, not replaced
    relooked = prediction | {"detection_scores": np.array([0.5, 0.4, 0.2], np.float32)}
    out = unshred(relooked, bands, _shreds(0.0), psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_allclose(out["detection_scores"], [0.5, 0.2, 0.1], rtol=1e-5)


def test_a_shred_classifier_needs_its_bands_and_a_shred_card():
    shreds = _shreds(0.0)
    assert shreds.bands == 3
    assert shreds.softening == 4.0
    with pytest.raises(InvalidParameterError, match="takes 3 normalized bands"):
        shreds.probabilities(np.zeros((1, 64, 64), np.float32), [10], [10], psf_fwhm=4.0)
    with pytest.raises(InvalidParameterError, match="takes 3 bands; the image has 1"):
        shreds(np.zeros((64, 64), np.float32), [10], [10], psf_fwhm=4.0)
    from skysift.train.second_look import architecture_for

    look = architecture_for(3, reject=True)
    import torch

    from skysift.models.stargalaxy import StarGalaxyNet

    with pytest.raises(InvalidParameterError, match="not a shred classifier"):
        ShredClassifier(
            module=StarGalaxyNet(look),
            card={"name": "look", "architecture": {"config": look.to_dict()}},
        )
    with pytest.raises(InvalidParameterError, match="needs its model card"):
        ShredClassifier(module=torch.nn.Linear(1, 1))


def test_the_prior_shift_is_bayes_rule_for_a_sigmoid():
    """P'(shred) from the shifted logit equals Bayes' rule with the new priors."""
    p, trained, expected = 0.6, 0.12, 0.01
    shifted = 1 / (1 + math.exp(-(math.log(p / (1 - p)) + prior_shift(trained, expected))))
    odds = p * expected / trained
    assert shifted == pytest.approx(odds / (odds + (1 - p) * (1 - expected) / (1 - trained)))
    assert prior_shift(0.3, 0.3) == 0.0
    with pytest.raises(InvalidParameterError, match="in \\(0, 1\\)"):
        prior_shift(0.0, 0.5)


def test_the_segmenter_drops_likely_shreds_and_fills_p_shred(caplog):
    """With a shred classifier, each galaxy's score is times 1 - P(shred): at P(shred) 0.25
    the stand-in's 0.9 becomes 0.675 and passes a 0.5 cut; at 0.75 it falls to 0.225 and the
    instance is dropped. The catalog's p_shred holds P(shred)."""
    from skysift.segment import segment
    from test_segment import _blobs, _segmenter

    image = np.stack([_blobs((200, 200), [(60.0, 60.0), (140.0, 130.0)])] * 3)  # g, r, z
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    assert segmenter(image).p_shred is None
    segmenter.shreds = _shreds(math.log(1 / 3))
    instances = segmenter(image)
    assert len(instances) == 2
    np.testing.assert_allclose(instances.scores, 0.9 * 0.75, rtol=1e-5)
    np.testing.assert_allclose(instances.p_shred, 0.25, rtol=1e-5)
    catalog, _ = segment(image, segmenter=segmenter)
    np.testing.assert_allclose(np.asarray(catalog["p_shred"]), 0.25, rtol=1e-5)
    assert catalog.meta["segmenter_shreds"] == "test_shreds"
    # one band, which the detector reads repeated, holds no colours: the classifier is left
    # out (the scores stay the stand-in's), with a warning and the reason in the meta
    single = image[1]
    with caplog.at_level(logging.WARNING, logger="skysift.segment"):
        alone = segmenter(single)
    assert "shred classifier 'test_shreds' left out" in caplog.text
    assert alone.p_shred is None
    np.testing.assert_allclose(alone.scores, 0.9, rtol=1e-5)
    reason = "the image has 1 band(s) (band0); the shred classifier reads 3 bands"
    assert alone.meta["shreds_skipped"] == reason
    catalog, _ = segment(single, segmenter=segmenter)
    assert catalog.meta["segmenter_shreds_skipped"] == reason
    assert "segmenter_shreds" not in catalog.meta
    assert np.isnan(np.asarray(catalog["p_shred"], dtype=float)).all()
    segmenter.shreds = _shreds(math.log(3))
    assert len(segmenter(image)) == 0


def test_a_star_instance_keeps_the_p_shred_the_catalog_had():
    """The segmenter gives P(shred) to galaxies only: a source it calls a star keeps the
    value the ``shreds`` stage gave it."""
    from skysift.catalog import make_catalog
    from skysift.segment import segment
    from test_second_look import _RecordingLook
    from test_segment import _blobs, _segmenter

    image = _blobs((200, 200), [(60.0, 60.0), (140.0, 130.0)])
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    segmenter.second_looks = (_RecordingLook(np.log(4.0)),)  # P(star) = 0.8: both are stars
    segmenter.shreds = _shreds(0.0)
    catalog = make_catalog(
        {"id": [1, 2], "x": [60.0, 140.0], "y": [60.0, 130.0], "flux": [5.0, 5.0]}
    )
    catalog["p_shred"] = np.array([0.1, 0.2], np.float32)
    out, _ = segment(image, catalog, segmenter=segmenter)
    assert list(out["morphology"]) == ["star", "star"]
    np.testing.assert_allclose(np.asarray(out["p_shred"]), [0.1, 0.2], rtol=1e-6)


def test_a_shred_classifier_on_other_bands_is_refused(monkeypatch):
    import skysift.shreds
    from test_segment import _segmenter

    monkeypatch.setattr(skysift.shreds, "ShredClassifier", lambda name: _shreds(0.0, bands=1))
    with pytest.raises(InvalidParameterError, match="shred classifier 'shred' takes 1 bands"):
        _segmenter(shreds="shred")


def _tiny_dataset(directory, role: str, n: int) -> None:
    """``n`` small fields rich in clumpy disks, cut as the shred classifier's samples."""
    from dataclasses import replace

    from skysift.sim.dataset import write_dataset
    from skysift.train.shred_data import ShredStamps, shred_field_configs

    configs = [
        replace(c, size=256, galaxy_mix=(("clumpy", 0.8), ("disk", 0.2)), cosmic_rays=0.0)
        for c in shred_field_configs(role, n)
    ]
    write_dataset(directory, configs, ShredStamps(min_snr=3.0), progress=False)


def test_training_keeps_the_best_epoch_and_ships_a_card_that_loads(tmp_path):
    from skysift.models.registry import load_model
    from skysift.train.shred import ShredTrainingConfig, finish_shred, train_shred

    dirs = {role: tmp_path / role for role in ("train", "validation", "test")}
    for role, directory in dirs.items():
        _tiny_dataset(directory, role, 2)
    config = ShredTrainingConfig(
        train_dir=str(dirs["train"]),
        val_dir=str(dirs["validation"]),
        test_dir=str(dirs["test"]),
        run_dir=str(tmp_path / "run"),
        epochs=2,
        filters=4,
        batch_size=64,
        threads=1,
    )
    run = train_shred(config, progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert (run / "best.safetensors").exists()
    weights = finish_shred(config, run / "best.safetensors", out_dir=tmp_path / "out")
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["command"] == "skysift train shred --seed 0 --threads 1"
    shift = card["trained_on"]["output_prior"]["logit_shift"]
    prior = card["trained_on"]["output_prior"]["shred_fraction"]
    assert shift == pytest.approx(prior_shift(card["trained_on"]["shred_fraction"], prior))
    assert {"auc", "accuracy", "shred_precision"} <= card["metrics"]["test"]["all_sources"].keys()
    module, loaded = load_model("shred", directory=tmp_path / "out")
    shreds = ShredClassifier(module=module, card=loaded)
    p = shreds.probabilities(np.zeros((3, 64, 64), np.float32), [20, 40], [30, 30], psf_fwhm=4.0)
    assert p.shape == (2,)
    assert ((p >= 0) & (p <= 1)).all()


def test_the_shipped_model_tells_clumps_from_galaxies_in_a_held_out_field():
    """A seeded test-seed field rich in clumpy disks: the shipped classifier ranks its
    clumps above its galaxies and stars (AUC 0.991 when written, 0.976 for the 120-field
    model) and flags few of the others (none of 109); at the typical field's share of
    shreds it flags only the surest clumps."""
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from skysift.sim.field import simulate_field
    from skysift.train.shred_data import shred_field_configs

    mix = (("clumpy", 0.6), ("disk", 0.2), ("elliptical", 0.2))
    config = replace(shred_field_configs("test", 1, mix_seed=7)[0], size=512, galaxy_mix=mix)
    field = simulate_field(config)
    truth = field.truth
    snr = np.asarray(truth["snr"], float)
    chosen = snr >= 5
    shred = np.asarray(truth["is_shred"], bool)[chosen]
    assert shred.sum() >= 15
    assert (~shred).sum() >= 100
    p = ShredClassifier()(
        field.image,
        np.asarray(truth["x"], float)[chosen],
        np.asarray(truth["y"], float)[chosen],
        psf_fwhm=float(field.psf.fwhm_at(255.5, 255.5) / field.psf.pixel_scale),
    )
    assert roc_auc_score(shred, p) > 0.93
    assert np.mean(p[~shred] >= 0.5) < 0.05
    assert np.mean(p[shred] >= 0.5) > 0.15


def test_the_pipeline_shreds_stage_fills_p_shred_on_a_grz_image():
    """On a g, r, z field the stage runs with the PSF FWHM from the config and fills
    ``p_shred`` for every source; the catalog names the model."""
    from dataclasses import replace

    import skysift
    from skysift.config import PipelineConfig
    from skysift.shreds import ShredsConfig
    from skysift.sim.field import simulate_field
    from skysift.train.shred_data import shred_field_configs

    field = simulate_field(replace(shred_field_configs("test", 1, mix_seed=3)[0], size=256))
    fwhm = float(field.psf.fwhm_at(127.5, 127.5) / field.psf.pixel_scale)
    config = PipelineConfig(stages=("localize", "shreds"), shreds=ShredsConfig(psf_fwhm=fwhm))
    result = skysift.Pipeline(config)(field.image)
    assert "shreds" not in result.skipped
    assert len(result.catalog) > 5
    p_shred = np.asarray(result.catalog["p_shred"])
    assert np.isfinite(p_shred).all()
    assert ((p_shred >= 0) & (p_shred <= 1)).all()
    assert result.catalog.meta["shred_model"] == "shred"
    assert result.catalog.meta["stages_run"] == ["localize", "shreds"]
