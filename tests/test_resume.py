"""A training run killed right after a checkpoint and resumed ends with the same bytes as a
run never interrupted: the checkpoint carries every random stream (numpy's and torch's), so
a shipped model's command reproduces its weights even when its run was resumed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.sim import FieldConfig
from skysift.sim.dataset import write_dataset


class _Killed(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def _kill_after_checkpoint(monkeypatch, after: int = 1) -> None:
    """The next ``after``-th ``torch.save`` writes its file, then the run dies."""
    real = torch.save
    calls = {"n": 0}

    def save_then_die(obj, path, *args, **kwargs):
        real(obj, path, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == after:
            monkeypatch.setattr(torch, "save", real)
            raise _Killed

    monkeypatch.setattr(torch, "save", save_then_die)


def _interrupted_then_resumed(monkeypatch, train, config):
    _kill_after_checkpoint(monkeypatch)
    with pytest.raises(_Killed):
        train(config, progress=False)
    return train(config, progress=False)


def _assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def _last_model(run_dir) -> dict:
    return torch.load(f"{run_dir}/last.pt", weights_only=False)["model"]


def test_segmenter_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    import dataclasses

    from skysift.models.segmenter import SegmenterConfig
    from skysift.train.segmenter import SegmenterTrainingConfig, Stage, train_segmenter
    from skysift.train.segmenter_data import SegmenterSamples

    def images(seeds):
        return [
            FieldConfig(survey="sdss", size=64, density=60, seed=s, central_galaxy="spiral")
            for s in seeds
        ]

    write_dataset(tmp_path / "train", images([21, 22, 23]), SegmenterSamples(), progress=False)
    write_dataset(tmp_path / "val", images([900_021]), SegmenterSamples(), progress=False)
    config = SegmenterTrainingConfig(
        architecture=SegmenterConfig(
            widths=(8, 8, 8, 8, 8),
            blocks=(1, 1, 1, 1),
            fpn_channels=8,
            box_head_width=16,
            image_size=64,
        ),
        stages=(
            Stage("scratch", 4, 1e-3, ("early", "deep", "heads")),
            Stage("heads", 2, 1e-4, ("heads",)),
        ),
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "straight"),
        batch_size=2,
        val_every=2,
        threads=1,
    )
    train_segmenter(config, progress=False)
    resumed = dataclasses.replace(config, run_dir=str(tmp_path / "resumed"))
    _interrupted_then_resumed(monkeypatch, train_segmenter, resumed)
    _assert_same_weights(_last_model(config.run_dir), _last_model(resumed.run_dir))


def test_localizer_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    import dataclasses

    from skysift.sim.dataset import LocalizerPatches
    from skysift.train.localizer import LocalizerTrainingConfig, train_localizer

    def fields(seeds):
        return [FieldConfig(survey="meerlicht", size=64, density=40, seed=s) for s in seeds]

    patches = LocalizerPatches(size=64, detection_band_only=True)
    write_dataset(tmp_path / "train", fields([31, 32]), patches, progress=False)
    write_dataset(
        tmp_path / "val",
        fields([900_031]),
        LocalizerPatches(size=64, detection_band_only=True, with_truth=True),
        progress=False,
    )
    config = LocalizerTrainingConfig(
        widths=(4, 8),
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "straight"),
        patch=32,
        batch_size=2,
        steps=4,
        val_every=2,
        threads=1,
    )
    train_localizer(config, progress=False)
    resumed = dataclasses.replace(config, run_dir=str(tmp_path / "resumed"))
    _interrupted_then_resumed(monkeypatch, train_localizer, resumed)
    _assert_same_weights(_last_model(config.run_dir), _last_model(resumed.run_dir))


def test_stargalaxy_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from skysift.train.stargalaxy import StarGalaxyTrainingConfig, train_stargalaxy

    rng = np.random.default_rng(5)
    n = 300
    labels = (rng.random(n) < 0.5).astype(np.uint8)
    cutouts = rng.normal(size=(n, 34, 34)).astype(np.float16)
    cutouts[labels == 1, 16:18, 16:18] += 4.0
    data = {
        "cutout": cutouts,
        "position": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "label": labels,
        "snr": rng.uniform(3, 100, n).astype(np.float32),
        "seeing": rng.uniform(3.5, 6.5, n).astype(np.float32),
    }

    def config(run: str) -> StarGalaxyTrainingConfig:
        return StarGalaxyTrainingConfig(
            run_dir=str(tmp_path / run), max_epochs=3, batch_size=64, threads=1
        )

    straight, _ = train_stargalaxy(config("straight"), data, progress=False)

    def train(cfg, *, progress):
        return train_stargalaxy(cfg, data, progress=progress)

    resumed, history = _interrupted_then_resumed(monkeypatch, train, config("resumed"))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    _assert_same_weights(straight.state_dict(), resumed.state_dict())


def test_morphology_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    import dataclasses

    from skysift.train.morphology import MorphologyTrainingConfig, prepare_data, train_morphology

    config = MorphologyTrainingConfig(
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "straight"),
        n_train_images=4,
        n_val_images=2,
        epochs=3,
        batch_size=2,
        threads=1,
    )
    prepare_data(config, progress=False)
    train_morphology(config, progress=False)
    resumed = dataclasses.replace(config, run_dir=str(tmp_path / "resumed"))
    _interrupted_then_resumed(monkeypatch, train_morphology, resumed)
    _assert_same_weights(_last_model(config.run_dir), _last_model(resumed.run_dir))


def test_a_checkpoint_without_torch_state_still_resumes_with_a_warning(caplog):
    from skysift.train.checkpoints import random_state, restore_random_state

    rng = np.random.default_rng(3)
    state = random_state(rng)
    expected = rng.random(3)
    torch_expected = torch.rand(3)
    rng.random(5)
    restore_random_state(rng, state)
    np.testing.assert_array_equal(rng.random(3), expected)
    assert torch.equal(torch.rand(3), torch_expected)
    with caplog.at_level("WARNING"):
        restore_random_state(rng, {"rng": state["rng"]})
    assert "not be bit-identical" in caplog.text
    np.testing.assert_array_equal(rng.random(3), expected)
