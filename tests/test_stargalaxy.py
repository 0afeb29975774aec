"""Star/galaxy classification: cutouts, training pieces, the API and the pipeline stage."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import skysift
from resumption import assert_same_weights
from skysift.catalog import FLAGS, make_catalog
from skysift.cutouts import extract_cutouts
from skysift.errors import EmptyCatalogWarning, InvalidParameterError
from skysift.image import Image
from skysift.models.stargalaxy import StarGalaxyNet
from skysift.stargalaxy import ClassifyConfig, DetectorGeometry, StarGalaxyClassifier
from skysift.train.stargalaxy import (
    SNR_BINS,
    StarGalaxyTrainingConfig,
    _augment,
    field_seeing,
    focal_loss,
    network_context,
    split_indices,
    train_stargalaxy,
)


def test_interior_cutouts_equal_slices(rng):
    data = rng.normal(size=(50, 60)).astype(np.float32)
    cutouts, edge = extract_cutouts(data, [20.4, 30.6], [25.0, 10.2], size=8)
    assert cutouts.shape == (2, 8, 8)
    assert not edge.any()
    np.testing.assert_array_equal(cutouts[0], data[21:29, 16:24])  # round(20.4) = 20 -> 16..23
    np.testing.assert_array_equal(cutouts[1], data[6:14, 27:35])
    assert cutouts[0][4, 4] == data[25, 20]  # the source pixel sits at index size // 2


def test_edge_cutouts_are_padded_and_flagged_never_dropped(rng):
    data = rng.normal(size=(40, 40)).astype(np.float32) + 10.0
    cutouts, edge = extract_cutouts(data, [0.0, 39.0, 20.0, -50.0], [0.0, 20.0, 20.0, 5.0], size=10)
    assert edge.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(cutouts[0][:5, :5], 0.0)
    np.testing.assert_array_equal(cutouts[0][5:, 5:], data[:5, :5])
    np.testing.assert_array_equal(cutouts[1][:, 6:], 0.0)  # columns 34..43, image ends at 39
    np.testing.assert_array_equal(cutouts[1][:, :6], data[15:25, 34:40])
    np.testing.assert_array_equal(cutouts[3], 0.0)  # entirely outside: all fill


def test_masked_pixels_are_filled_and_inputs_untouched(rng):
    data = rng.normal(size=(30, 30)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[15, 15] = True
    before = data.copy()
    cutouts, _ = extract_cutouts(data, [15.0], [15.0], size=6, mask=mask, fill=-1.0)
    assert cutouts[0][3, 3] == -1.0
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 7}, "even"),
        ({"size": 8, "x": [np.nan]}, "finite"),
        ({"size": 8, "mask": np.zeros((3, 3), bool)}, "mask shape"),
    ],
)
def test_cutout_errors(kwargs, message):
    args = {"x": [5.0], "y": [5.0], **kwargs}
    with pytest.raises(InvalidParameterError, match=message):
        extract_cutouts(np.zeros((20, 20)), args.pop("x"), args.pop("y"), **args)


def test_focal_loss_is_bce_at_alpha_1_gamma_0_and_hand_checked():
    logits = torch.tensor([2.0, -1.0, 0.5])
    target = torch.tensor([1.0, 0.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.isclose(focal_loss(logits, target), bce)
    # one positive with p = sigmoid(2): FL = -alpha (1 - p)^gamma log p
    p = 1 / (1 + math.exp(-2.0))
    expected = -0.25 * (1 - p) ** 2 * math.log(p)
    value = focal_loss(torch.tensor([2.0]), torch.tensor([1.0]), alpha=0.25, gamma=2.0)
    assert math.isclose(float(value), expected, rel_tol=1e-5)


def test_augmentation_mirrors_cutout_and_position_together():
    # a bright pixel on the side of the cutout that points away from the optical axis
    n = 64
    rng = np.random.default_rng(3)
    positions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    cutouts = np.zeros((n, 34, 34), np.float16)
    for k, (px, py) in enumerate(positions):
        cutouts[k, 17 + int(8 * np.sign(py)), 17 + int(8 * np.sign(px))] = 1.0
    for seed in range(8):
        out, pos = _augment(np.random.default_rng(seed), cutouts, positions)
        assert out.shape == (n, 32, 32)
        for k in range(n):
            row, col = np.unravel_index(np.argmax(out[k]), out[k].shape)
            assert np.sign(col - 16) == np.sign(pos[k, 0])
            assert np.sign(row - 16) == np.sign(pos[k, 1])


def test_split_is_stratified_and_disjoint(rng):
    labels = (rng.random(4000) < 0.9).astype(np.uint8)
    snr = rng.uniform(3, 200, 4000)
    splits = split_indices(labels, snr)
    sizes = {k: v.size for k, v in splits.items()}
    assert sizes == {"train": 2500, "validation": 1000, "calibration": 500}
    assert np.unique(np.concatenate(list(splits.values()))).size == 4000
    for index in splits.values():
        assert abs(labels[index].mean() - labels.mean()) < 0.01


def test_training_runs_and_resumes(tmp_path, rng):
    n = 600
    labels = (rng.random(n) < 0.5).astype(np.uint8)
    cutouts = rng.normal(size=(n, 34, 34)).astype(np.float16)
    cutouts[labels == 1, 16:18, 16:18] += 4.0  # "stars": a bright point at the centre
    data = {
        "cutout": cutouts,
        "position": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "label": labels,
        "snr": rng.uniform(3, 100, n).astype(np.float32),
        "seeing": rng.uniform(3.5, 6.5, n).astype(np.float32),
    }
    config = StarGalaxyTrainingConfig(run_dir=str(tmp_path / "run"), max_epochs=2, batch_size=64)
    module, history = train_stargalaxy(config, data, progress=False)
    assert module.config.seeing_input
    assert module.config.context_size == 3
    assert [h["epoch"] for h in history] == [1, 2]
    longer = StarGalaxyTrainingConfig(run_dir=str(tmp_path / "run"), max_epochs=3, batch_size=64)
    resumed, history = train_stargalaxy(longer, data, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]  # resumed, not restarted
    assert history[-1]["val_loss"] < 0.69  # learned something beyond chance
    # the resumed run ends with the bytes of one that ran its three epochs at once
    straight = StarGalaxyTrainingConfig(
        run_dir=str(tmp_path / "straight"), max_epochs=3, batch_size=64
    )
    uninterrupted, _ = train_stargalaxy(straight, data, progress=False)
    assert_same_weights(resumed.state_dict(), uninterrupted.state_dict())


def _tiny_classifier() -> StarGalaxyClassifier:
    torch.manual_seed(0)
    card = {
        "normalization": {"softening": 4.0},
        "calibration": {"a": -1.0, "b": 0.0, "logit_input": True},
    }
    return StarGalaxyClassifier(module=StarGalaxyNet(), card=card)


def test_classify_stars_adds_p_star_without_touching_the_input(rng):
    image = Image.from_array(rng.normal(100, 5, (64, 80)).astype(np.float32))
    catalog = make_catalog({"x": [1.0, 40.0, 70.0], "y": [2.0, 30.0, 60.0], "flags": [0, 0, 0]})
    before = catalog.copy()
    out = skysift.classify_stars(image, catalog, classifier=_tiny_classifier())
    assert np.all((out["p_star"] >= 0) & (out["p_star"] <= 1))
    assert out["flags"][0] & FLAGS["edge"]
    assert not out["flags"][1] & FLAGS["edge"]
    assert np.isnan(np.asarray(before["p_star"])).all()
    assert np.isnan(np.asarray(catalog["p_star"])).all()  # the input was not modified


def test_an_image_of_another_pixel_scale_is_classified_with_a_warning(rng, caplog):
    """The classifier learned MeerLICHT's 0.56"/px: on a 0.262"/px image p_star is outside
    what it learned, and the run says so (log and meta); within 25 % of 0.56, or with no
    known scale, it does not."""
    import logging

    from skysift.stargalaxy import pixel_scale_note

    card = {"name": "stargalaxy", "trained_on": {"preset": "meerlicht"}}
    assert pixel_scale_note(card, 0.56) is None
    assert pixel_scale_note(card, 0.45) is None
    assert pixel_scale_note(card, None) is None
    assert pixel_scale_note({"trained_on": {"preset": "hubble"}}, 0.05) is None
    assert '0.56"/px and this image has 0.262"/px' in pixel_scale_note(card, 0.262)
    assert pixel_scale_note(card, 1.2) is not None
    classifier = _tiny_classifier()
    classifier.card |= card
    catalog = make_catalog({"x": [40.0], "y": [30.0]})
    pixels = rng.normal(100, 5, (64, 80)).astype(np.float32)
    for scale, expected in ((0.262, True), (0.6, False)):
        image = Image.from_array(pixels, pixel_scale=scale)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="skysift.stargalaxy"):
            out = skysift.classify_stars(image, catalog, classifier=classifier)
        assert ("stargalaxy_out_of_domain" in out.meta) == expected
        assert ("read its p_star as indicative" in caplog.text) == expected
        assert out.meta["stargalaxy_model"] == "stargalaxy"


def test_classify_stars_on_an_empty_catalog_warns_and_keeps_the_schema(rng):
    image = Image.from_array(rng.normal(size=(64, 64)).astype(np.float32))
    empty = make_catalog({"x": [], "y": []})
    with pytest.warns(EmptyCatalogWarning):
        out = skysift.classify_stars(image, empty, classifier=_tiny_classifier())
    assert len(out) == 0
    assert "p_star" in out.colnames


def test_classify_config_geometry():
    config = ClassifyConfig(detector_size=(1000, 800), origin=(500, 400))
    geometry = config.geometry((100, 100))
    assert isinstance(geometry, DetectorGeometry)
    # image pixel (0, 0) is detector pixel (500, 400): the detector centre (499.5, 399.5)
    np.testing.assert_allclose(geometry.normalized([0.0], [0.0]), [[0.001, 0.00125]])
    whole = ClassifyConfig().geometry((100, 200))
    np.testing.assert_allclose(whole.normalized([199.5], [99.5]), [[1.0, 1.0]], atol=0.01)
    with pytest.raises(InvalidParameterError, match="two numbers"):
        ClassifyConfig(origin=(1, 2, 3))


def test_snr_bins_cover_the_paper_bins():
    centres = [0.84, 1.12, 1.40, 1.69, 1.98]  # log10 S/N of the paper's Table I
    edges = np.log10(SNR_BINS[1:-1])
    for centre in centres:
        assert np.sum(edges <= centre) in range(1, len(SNR_BINS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(SNR_BINS) == 7


def test_chunked_classification_equals_one_pass(rng, monkeypatch):
    import skysift.stargalaxy as module

    image = Image.from_array(rng.normal(100, 5, (96, 96)).astype(np.float32))
    x, y = rng.uniform(0, 95, 50), rng.uniform(0, 95, 50)
    classifier = _tiny_classifier()
    whole, whole_edge = classifier(image, x, y)
    monkeypatch.setattr(module, "SOURCE_CHUNK", 7)
    chunked, chunked_edge = classifier(image, x, y)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(chunked_edge, whole_edge)


def test_bad_catalog_or_band_is_a_clear_error(rng):
    image = Image.from_array(rng.normal(size=(64, 64)).astype(np.float32))
    with pytest.raises(InvalidParameterError, match="no 'y' column"):
        skysift.classify_stars(
            image, make_catalog({"x": [3.0]}).copy()[["x"]], classifier=_tiny_classifier()
        )
    catalog = make_catalog({"x": [30.0], "y": [30.0]})
    with pytest.raises(InvalidParameterError, match="band 'r' not in this image"):
        skysift.classify_stars(image, catalog, band="r", classifier=_tiny_classifier())
    with pytest.raises(InvalidParameterError, match="out of range"):
        skysift.classify_stars(image, catalog, band=3, classifier=_tiny_classifier())


def _stars_image(rng, fwhm: float, *, n: int = 40, size: int = 256) -> tuple[Image, np.ndarray]:
    """Gaussian stars of one FWHM (peaks 30-300 sigma) on unit noise; returns image and x, y."""
    sigma = fwhm / 2.3548
    yy, xx = np.mgrid[:size, :size]
    data = rng.normal(0.0, 1.0, (size, size))
    xy = rng.uniform(20, size - 20, (n, 2))
    for (x, y), peak in zip(xy, rng.uniform(30, 300, n), strict=True):
        data += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return Image.from_array(data.astype(np.float32)), xy


@pytest.mark.parametrize("fwhm", [3.0, 4.5, 6.5])
def test_seeing_is_measured_from_the_sources(rng, fwhm):
    from skysift.stargalaxy import classifier_inputs, seeing_from_cutouts

    image, xy = _stars_image(rng, fwhm)
    cutouts, _ = classifier_inputs(image, xy[:, 0], xy[:, 1], softening=4.0)
    assert seeing_from_cutouts(cutouts, softening=4.0) == pytest.approx(fwhm, rel=0.08)
    # too few bright sources: no estimate rather than a wrong one
    assert np.isnan(seeing_from_cutouts(cutouts[:4], softening=4.0))
    assert np.isnan(seeing_from_cutouts(np.zeros((50, 34, 34), np.float32), softening=4.0))
    assert np.isnan(seeing_from_cutouts(cutouts[:0], softening=4.0))  # no cutouts at all


def test_seeing_input_network_and_classifier(rng):
    from skysift.models.stargalaxy import StarGalaxyConfig

    torch.manual_seed(0)
    config = StarGalaxyConfig(seeing_input=True)
    net = StarGalaxyNet(config).eval()
    cutout = torch.randn(1, 1, 32, 32)
    good, bad = (
        net(cutout, torch.tensor([[0.3, 0.3, -0.2]])),
        net(cutout, torch.tensor([[0.3, 0.3, 0.3]])),
    )
    assert not torch.allclose(good, bad)
    assert StarGalaxyConfig(position_input=False, seeing_input=True).context_size == 1
    with pytest.raises(ValueError, match="position branch"):
        StarGalaxyConfig(position_widths=(), seeing_input=True)
    with pytest.raises(ValueError, match="position_input or seeing_input"):
        StarGalaxyConfig(position_input=False)
    np.testing.assert_allclose(config.seeing_feature(config.seeing_reference), 0.0, atol=1e-7)

    card = {"normalization": {"softening": 4.0}}
    classifier = StarGalaxyClassifier(module=net, card=card, calibrated=False)
    image, xy = _stars_image(rng, 5.0)
    p_star, edge = classifier(image, xy[:, 0], xy[:, 1])
    assert p_star.shape == (len(xy),)
    assert not edge.any()
    assert classifier.seeing_fwhm == pytest.approx(5.0, rel=0.08)
    with pytest.raises(InvalidParameterError, match="3 context columns"):
        classifier.raw_scores(np.zeros((2, 32, 32), np.float32), np.zeros((2, 2), np.float32))
    # a blank image has nothing to measure: the reference seeing is used, with a log message
    blank = Image.from_array(rng.normal(size=(64, 64)).astype(np.float32))
    p_blank, _ = classifier(blank, [30.0], [30.0])
    assert np.isnan(classifier.seeing_fwhm)
    assert np.isfinite(p_blank).all()


def test_field_seeing_and_context_columns(rng):
    from skysift.models.stargalaxy import StarGalaxyConfig
    from skysift.stargalaxy import classifier_inputs

    parts = []
    for seed, fwhm in ((10, 4.0), (11, 6.0)):
        image, xy = _stars_image(rng, fwhm, n=30)
        cutouts, edge = classifier_inputs(image, xy[:, 0], xy[:, 1], softening=4.0)
        parts.append((cutouts.astype(np.float16), edge, np.full(len(xy), seed)))
    data = {
        "cutout": np.concatenate([p[0] for p in parts]),
        "edge": np.concatenate([p[1] for p in parts]),
        "seed": np.concatenate([p[2] for p in parts]),
        "position": rng.uniform(-1, 1, (60, 2)).astype(np.float32),
    }
    seeing = field_seeing(data)
    assert seeing[:30] == pytest.approx(np.full(30, 4.0), rel=0.08)
    assert seeing[30:] == pytest.approx(np.full(30, 6.0), rel=0.08)
    data["seeing"] = seeing.copy()
    data["seeing"][:5] = np.nan  # no estimate: the reference (input 0)
    both = network_context(StarGalaxyConfig(seeing_input=True), data)
    assert both.shape == (60, 3)
    np.testing.assert_array_equal(both[:, :2], data["position"])
    np.testing.assert_allclose(both[:5, 2], 0.0, atol=1e-7)
    only = network_context(StarGalaxyConfig(position_input=False, seeing_input=True), data)
    np.testing.assert_array_equal(only[:, 0], both[:, 2])
    assert network_context(StarGalaxyConfig(), data).shape == (60, 2)


def test_augmentation_leaves_the_seeing_column_alone():
    rng = np.random.default_rng(0)
    cutouts = rng.normal(size=(16, 34, 34)).astype(np.float16)
    context = np.column_stack([rng.uniform(-1, 1, (16, 2)), np.full(16, 0.25)]).astype(np.float32)
    for seed in range(6):
        _, pos = _augment(np.random.default_rng(seed), cutouts, context)
        np.testing.assert_array_equal(pos[:, 2], 0.25)
        np.testing.assert_allclose(np.abs(pos[:, :2]).sum(1), np.abs(context[:, :2]).sum(1))
        _, seeing_only = _augment(
            np.random.default_rng(seed), cutouts, context[:, 2:], position=False
        )
        np.testing.assert_array_equal(seeing_only, context[:, 2:])
