"""Training recipes: seeds stay in their roles, a few optimizer steps run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skysift.sim.seeds import seed_role
from skysift.train.fields import localizer_field_configs


@pytest.mark.parametrize("role", ["train", "validation", "test"])
def test_field_configs_use_only_their_seed_range(role):
    configs = localizer_field_configs(role, 50, size=128)
    assert {seed_role(c.seed) for c in configs} == {role}
    assert len({c.seed for c in configs}) == 50
    assert {c.survey for c in configs} == {"meerlicht", "decals", "sdss"}
    densities = [float(c.density) for c in configs]
    assert min(densities) < 5
    assert max(densities) > 100


def test_field_configs_are_reproducible():
    assert localizer_field_configs("train", 5) == localizer_field_configs("train", 5)


def test_tiny_training_run_writes_log_checkpoint_and_resumes(tmp_path):
    from skysift.sim import FieldConfig
    from skysift.sim.dataset import LocalizerPatches, write_dataset
    from skysift.train.localizer import LocalizerTrainingConfig, train_localizer

    def fields(seeds):
        return [FieldConfig(survey="meerlicht", size=64, density=40, seed=s) for s in seeds]

    write_dataset(
        tmp_path / "train",
        fields([1, 2]),
        LocalizerPatches(size=64, detection_band_only=True),
        progress=False,
    )
    write_dataset(
        tmp_path / "val",
        fields([900_001]),
        LocalizerPatches(size=64, detection_band_only=True, with_truth=True),
        progress=False,
    )
    config = LocalizerTrainingConfig(
        widths=(4, 8),
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "run"),
        patch=32,
        batch_size=2,
        steps=4,
        val_every=2,
        threads=1,
    )
    best = train_localizer(config, progress=False)
    assert best.exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [2, 4]
    assert all(np.isfinite(entry["loss"]) for entry in log)
    # a second call resumes from the checkpoint: nothing left to do, no new log lines
    train_localizer(config, progress=False)
    assert len((tmp_path / "run" / "train.log").read_text().splitlines()) == 2
