"""Galaxy-type stamps, re-typing of detector output, the network, its training and shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.morphology import galaxy_stamp, galaxy_stamps, retype_galaxies, type_new_galaxies

CLASSES = ("star", "elliptical", "spiral", "other")


def _gaussian_image(x0: float, y0: float, sigma: float, shape=(120, 160)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-((cols - x0) ** 2 + (rows - y0) ** 2) / (2 * sigma**2))
    return np.stack([blob, 2 * blob]).astype(np.float32)


@pytest.mark.parametrize("sigma", [2.0, 12.0])
def test_stamp_is_centred_on_the_box_and_scaled_to_it(sigma):
    data = _gaussian_image(70.3, 50.0, sigma)
    half = 3 * sigma
    box = (70.3 + 0.5 - half, 50.0 + 0.5 - half, 70.3 + 0.5 + half, 50.0 + 0.5 + half)
    stamp = galaxy_stamp(data, box, size=64)
    assert stamp.shape == (2, 64, 64)
    assert stamp.dtype == np.float32
    np.testing.assert_allclose(stamp[1], 2 * stamp[0], rtol=1e-5, atol=1e-6)
    rows, cols = np.mgrid[:64, :64]
    weight = stamp[0] / stamp[0].sum()
    # the blob sits in the middle of the stamp whatever its size
    assert abs((weight * cols).sum() - 31.5) < 0.3
    assert abs((weight * rows).sum() - 31.5) < 0.3
    # and fills the same fraction of it: 6 sigma of box, 1.25 x that of stamp
    width = np.sqrt((weight * (cols - 31.5) ** 2).sum())
    expected = sigma * 64 / max(6 * sigma * 1.25, 16.0)
    assert width == pytest.approx(expected, rel=0.12)


def test_stamp_shrinking_is_smoothed_and_outside_is_sky():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(1, 400, 400)).astype(np.float32)
    stamp = galaxy_stamp(noise, (0, 0, 320, 320), size=64)
    # 5 pixels per stamp pixel: anti-aliasing averages noise down (no aliasing of single pixels)
    assert stamp[0, 20:44, 20:44].std() < 0.5
    corner = galaxy_stamp(np.ones((1, 50, 50), np.float32), (-30, -30, 10, 10), size=32)
    assert corner[0, 0, 0] == 0.0
    assert corner[0, -1, -1] == pytest.approx(1.0)
    assert galaxy_stamps(noise, np.zeros((0, 4))).shape == (0, 1, 64, 64)
    with pytest.raises(InvalidParameterError, match="bands, height, width"):
        galaxy_stamp(noise[0], (0, 0, 10, 10))


class _FixedTyper:
    """Says 'spiral' with probability 0.8 for every stamp; records what it saw."""

    classes = ("elliptical", "spiral", "other")

    def __init__(self):
        self.boxes = None

    def __call__(self, data, boxes):
        self.boxes = np.asarray(boxes)
        return np.tile(np.array([[0.1, 0.8, 0.1]], np.float32), (len(boxes), 1))


def test_retype_merges_galaxy_duplicates_and_keeps_stars():
    prediction = {
        "boxes": np.array(
            [[10, 10, 30, 30], [11, 10, 30, 31], [60, 60, 70, 70], [10, 10, 30, 30]], float
        ),
        "labels": np.array([2, 3, 1, 1]),  # elliptical, spiral (same object), star, star
        "scores": np.array([0.9, 0.6, 0.95, 0.5], np.float32),
        "masks": np.arange(4).reshape(4, 1, 1, 1),
    }
    before = {k: v.copy() for k, v in prediction.items()}
    typer = _FixedTyper()
    out = retype_galaxies(prediction, np.zeros((3, 80, 80)), typer, classes=CLASSES)
    for key in prediction:  # input untouched
        np.testing.assert_array_equal(prediction[key], before[key])
    # one galaxy left (the higher-scored duplicate), stars kept even where they overlap it
    np.testing.assert_array_equal(out["masks"].ravel(), [0, 2, 3])
    np.testing.assert_array_equal(out["labels"], [3, 1, 1])
    np.testing.assert_allclose(out["scores"], [0.9 * 0.8, 0.95, 0.5], rtol=1e-6)
    assert out["scores"].dtype == np.float32
    np.testing.assert_allclose(out["detection_scores"], [0.9, 0.95, 0.5])  # before typing
    again = retype_galaxies(out, np.zeros((3, 80, 80)), typer, classes=CLASSES)
    np.testing.assert_allclose(again["detection_scores"], [0.9, 0.95, 0.5])
    np.testing.assert_array_equal(typer.boxes, [[10, 10, 30, 30]])
    empty = {k: v[:0] for k, v in prediction.items()}
    assert len(retype_galaxies(empty, np.zeros((3, 8, 8)), typer, classes=CLASSES)["labels"]) == 0


def test_stars_made_galaxies_later_get_a_galaxy_type():
    """A later stage (the colour typer) made the second star a galaxy ('other'): it alone is
    typed, with its detection score times its type's probability; the galaxy that was one
    before and the star that stays one are left alone."""
    before = {
        "boxes": np.array([[10, 10, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], float),
        "labels": np.array([2, 1, 1]),  # elliptical, star, star
        "scores": np.array([0.5, 0.9, 0.8], np.float32),
    }
    after = {
        **before,
        "labels": np.array([2, 4, 1]),  # the middle one made a galaxy, 'other'
        "scores": np.array([0.45, 0.7, 0.95], np.float32),
        "detection_scores": np.array([0.9, 0.7, 0.95], np.float32),
    }
    typer = _FixedTyper()
    out = type_new_galaxies(after, before, np.zeros((3, 80, 80)), typer, classes=CLASSES)
    np.testing.assert_array_equal(typer.boxes, [[40, 40, 50, 50]])
    np.testing.assert_array_equal(out["labels"], [2, 3, 1])
    np.testing.assert_allclose(out["scores"], [0.45, 0.7 * 0.8, 0.95], rtol=1e-6)
    np.testing.assert_array_equal(out["detection_scores"], after["detection_scores"])
    np.testing.assert_array_equal(after["labels"], [2, 4, 1])  # the input is not modified
    same = type_new_galaxies(before, before, np.zeros((3, 80, 80)), _FixedTyper(), classes=CLASSES)
    np.testing.assert_array_equal(same["labels"], before["labels"])


def test_softmax_runner_matches_torch_in_both_backends():
    import torch

    from skysift.models.morphology import MorphologyConfig, MorphologyNet
    from skysift.models.runtime import make_runner

    torch.manual_seed(0)
    module = MorphologyNet(MorphologyConfig(widths=(4, 8), stamp=32)).eval()
    stamps = np.random.default_rng(1).normal(size=(5, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(stamps)), dim=1).numpy()
    for backend in ("torch", "onnx"):
        got = make_runner(module, backend, activation="softmax")(stamps)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        make_runner(module, "torch", activation="relu")


def _tiny_config(tmp_path, name: str = "morphology_tiny", **options):
    """A one-thread type-network config with its data and run under ``tmp_path``."""
    from skysift.train.morphology import MorphologyTrainingConfig

    return MorphologyTrainingConfig(
        name=name,
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "run"),
        threads=1,
        **{"n_val_images": 3, **options},
    )


def _tiny_run(tmp_path, name: str, **options):
    """Prepare, train and finish a tiny type network; returns (config, train stamps, run,
    module, card)."""
    from skysift.models.registry import load_model
    from skysift.train.morphology import (
        finish_morphology,
        load_stamps,
        prepare_data,
        train_morphology,
    )

    config = _tiny_config(tmp_path, name, **options)
    prepare_data(config, progress=False)
    train = load_stamps(config.train_dir)
    run = train_morphology(config, progress=False)
    weights = finish_morphology(
        config,
        run / "best.safetensors",
        out_dir=tmp_path / "weights",
        test_dir=str(tmp_path / "test"),
        n_test=2,
        segmenter_test_dir=None,
        progress=False,
    )
    module, card = load_model(name, directory=weights.parent)
    return config, train, run, module, card


def test_tiny_training_run_writes_a_loadable_typer(tmp_path):
    from skysift.morphology import GalaxyTyper

    _, train, run, module, card = _tiny_run(
        tmp_path, "morphology_tiny", n_train_images=6, epochs=2, batch_size=4
    )
    assert train["stamps"].shape[1:] == (3, 64, 64)
    assert train["central"].sum() == 6  # every image's central galaxy
    # centrals cycle elliptical, spiral, elliptical, spiral, disk, clumpy (disk, clumpy: other)
    central_labels = train["label"][train["central"]]
    assert list(central_labels[[0, 2, 4, 5]]) == [0, 0, 2, 2]
    assert set(central_labels[[1, 3]]) <= {1, 2}  # a spiral smaller than the PSF is "other"
    log = (run / "train.log").read_text().splitlines()
    assert len(log) == 2
    assert "central_accuracy" in log[0]
    assert card["metrics"]["test_stamps"] >= 2
    assert card["training"]["command"] == "skysift train morphology --seed 0"
    typer = GalaxyTyper(module=module, card=card, backend="torch")
    probabilities = typer(np.zeros((1, 100, 100), np.float32), np.array([[40, 40, 60, 60]]))
    assert probabilities.shape == (1, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(InvalidParameterError, match="stamps must be"):
        typer.probabilities(np.zeros((2, 3, 32, 32), np.float32))


def test_tiny_training_run_with_stars_types_every_instance(tmp_path):
    from skysift.models.segmenter import CLASSES
    from skysift.morphology import GalaxyTyper, retype_galaxies

    _, train, run, module, card = _tiny_run(
        tmp_path,
        "sourcetype_tiny",
        n_train_images=4,
        epochs=1,
        batch_size=8,
        min_snr=10.0,
        with_stars=True,
    )
    assert set(np.unique(train["label"])) >= {0, 1}  # stars (0) and galaxies
    assert np.all(train["snr"][~train["central"]] >= 10.0)
    assert "star_galaxy_auc_snr20" in (run / "train.log").read_text()
    assert card["classes"] == list(CLASSES)
    assert card["training"]["command"] == "skysift train morphology --seed 0 --with-stars"
    typer = GalaxyTyper(module=module, card=card, backend="torch")
    # a star instance is re-typed too: every output class is one of the segmenter's
    prediction = {
        "boxes": np.array([[40.0, 40.0, 50.0, 50.0], [10.0, 10.0, 30.0, 30.0]]),
        "labels": np.array([1, 2]),
        "scores": np.array([0.9, 0.8]),
    }
    out = retype_galaxies(prediction, np.zeros((3, 64, 64), np.float32), typer, classes=CLASSES)
    assert len(out["labels"]) == 2
    assert np.all(out["scores"] <= np.array([0.9, 0.8]) + 1e-6)


def test_morphology_training_killed_and_resumed_ends_as_an_uninterrupted_run(tmp_path, monkeypatch):
    from resumption import assert_resumed_copy_matches
    from skysift.train.morphology import prepare_data, train_morphology

    config = _tiny_config(tmp_path, n_train_images=4, n_val_images=2, epochs=3, batch_size=2)
    prepare_data(config, progress=False)
    train_morphology(config, progress=False)
    assert_resumed_copy_matches(monkeypatch, train_morphology, config, tmp_path / "resumed")
