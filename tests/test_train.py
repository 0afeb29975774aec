"""Training recipes: seeds stay in their roles, a few optimizer steps run end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from resumption import assert_resumed_copy_matches
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


def test_tiny_training_run_writes_log_checkpoint_and_resumes(tmp_path, monkeypatch):
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
    # killed after its first checkpoint and resumed, a run ends where this one did
    assert_resumed_copy_matches(monkeypatch, train_localizer, config, tmp_path / "resumed")


def test_peaked_target_keeps_close_pairs_apart():
    from skysift.train.localizer import peaked_target

    target = peaked_target(
        (12, 16), np.array([5.0, 8.0, 15.8]), np.array([6.0, 6.0, 0.3]), sigma=1.0
    )
    assert target.dtype == np.float32
    assert target[6, 5] == pytest.approx(1.0)
    assert target[6, 8] == pytest.approx(1.0)
    # 3 px apart: a clear dip between the two maxima (the 13-px disc target would merge them)
    assert target[6, 6] < 0.7
    assert target[6, 6] == pytest.approx(np.exp(-0.5), rel=1e-5)
    # sub-pixel position near the corner: the nearest pixel holds the maximum
    assert target[0, 15] == pytest.approx(np.exp(-(0.8**2 + 0.3**2) / 2), rel=1e-5)
    assert target[11, 0] == 0.0


def test_peak_target_needs_fields_with_truth(tmp_path):
    from skysift.sim import FieldConfig
    from skysift.sim.dataset import LocalizerPatches, write_dataset
    from skysift.train.localizer import LocalizerTrainingConfig, train_localizer

    write_dataset(
        tmp_path / "train",
        [FieldConfig(survey="meerlicht", size=64, density=40, seed=3)],
        LocalizerPatches(size=64, detection_band_only=True),
        progress=False,
    )
    config = LocalizerTrainingConfig(
        target="peak", train_dir=str(tmp_path / "train"), run_dir=str(tmp_path / "run")
    )
    with pytest.raises(ValueError, match="peaked targets need fields written with truth"):
        train_localizer(config, progress=False)
    with pytest.raises(ValueError, match="target must be one of"):
        LocalizerTrainingConfig(target="ring")


@pytest.mark.parametrize(
    ("masks", "psf_channel"),
    [(True, False), (False, False), (True, True)],
    ids=["mask_rcnn", "box_only", "psf_channel"],
)
def test_tiny_segmenter_training_runs_in_stages_and_resumes(
    tmp_path, monkeypatch, masks, psf_channel
):
    from skysift.models.segmenter import SegmenterConfig
    from skysift.sim import FieldConfig
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter import SegmenterTrainingConfig, Stage, train_segmenter
    from skysift.train.segmenter_data import SegmenterSamples

    def images(seeds):
        return [
            FieldConfig(survey="sdss", size=64, density=60, seed=s, central_galaxy="elliptical")
            for s in seeds
        ]

    write_dataset(tmp_path / "train", images([11, 12]), SegmenterSamples(), progress=False)
    write_dataset(tmp_path / "val", images([900_011]), SegmenterSamples(), progress=False)
    config = SegmenterTrainingConfig(
        architecture=SegmenterConfig(
            widths=(8, 8, 8, 8, 8),
            blocks=(1, 1, 1, 1),
            fpn_channels=8,
            box_head_width=16,
            image_size=64,
            masks=masks,
            psf_channel=psf_channel,
        ),
        stages=(
            Stage("scratch", 2, 1e-3, ("early", "deep", "heads")),
            Stage("heads", 2, 1e-4, ("heads",)),
        ),
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        run_dir=str(tmp_path / "run"),
        batch_size=2,
        val_every=2,
        threads=1,
    )
    best = train_segmenter(config, progress=False)
    assert best.exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert [(entry["step"], entry["stage"]) for entry in log] == [(2, "scratch"), (4, "heads")]
    assert all(np.isfinite(entry["loss"]) for entry in log)
    # a box-only model is validated (and its weights kept) on box mAP alone
    assert all(("mask_map_50" in entry) == masks and "box_map_50" in entry for entry in log)
    train_segmenter(config, progress=False)
    assert len((tmp_path / "run" / "train.log").read_text().splitlines()) == 2
    # killed after its first checkpoint and resumed, a run ends with the same bytes (torch's
    # random state draws the RPN's and RoI heads' samples: the checkpoint carries it)
    assert_resumed_copy_matches(monkeypatch, train_segmenter, config, tmp_path / "resumed")
    # the evaluation scores the detections, and for a mask model the catalog's instances too
    from safetensors.torch import load_file

    from skysift.models.segmenter import build_segmenter
    from skysift.train.segmenter import evaluate_segmenter, load_images

    model = build_segmenter(config.architecture)
    model.load_state_dict(load_file(str(best)))
    metrics = evaluate_segmenter(model.eval(), load_images(str(tmp_path / "val")))
    assert len(metrics["precision_at_80_recall_by_snr"]) == 5
    assert ("catalog" in metrics) == masks
    if masks:
        assert len(metrics["catalog"]["precision_at_80_recall_by_snr"]) == 5
        assert "mask_map_50" in metrics["catalog"]["central_map"]
    if psf_channel:  # images without a recorded PSF FWHM are refused, by name
        import shutil

        from skysift.train import segmenter as module

        shutil.rmtree(tmp_path / "run")
        original = module.load_images

        def without_fwhm(directory, **options):
            return [
                {k: v for k, v in s.items() if k != "psf_fwhm"}
                for s in original(directory, **options)
            ]

        module.load_images = without_fwhm
        try:
            with pytest.raises(ValueError, match="no recorded PSF FWHM"):
                train_segmenter(config, progress=False)
        finally:
            module.load_images = original


def test_segmenter_typical_fields_join_the_training_images_and_the_card(tmp_path):
    from skysift.errors import SkysiftError
    from skysift.models.segmenter import SegmenterConfig
    from skysift.sim.dataset import write_dataset
    from skysift.sim.seeds import SEED_RANGES
    from skysift.train.segmenter import (
        LONG_STAGES,
        SegmenterTrainingConfig,
        _training_images,
        card_for,
    )
    from skysift.train.segmenter_data import (
        SegmenterSamples,
        segmenter_field_configs,
        typical_field_configs,
    )

    typical = typical_field_configs("train", 3)
    assert all(c.survey == "decals" and c.central_galaxy is None for c in typical)
    assert all(c.density == pytest.approx(35.0) for c in typical)
    assert all(c.star_fraction == pytest.approx(5 / 35) for c in typical)
    seeds = {c.seed for c in typical}
    assert all(seed in SEED_RANGES["train"] for seed in seeds)
    assert not seeds & {c.seed for c in segmenter_field_configs("train", 1500)}
    assert {c.seed for c in typical_field_configs("test", 3)} <= set(SEED_RANGES["test"])
    small = [dataclasses.replace(c, size=64) for c in typical[:2]]
    standard = [dataclasses.replace(c, size=64) for c in segmenter_field_configs("train", 2)]
    # each folder holds one field more than the config names (another run's data)
    write_dataset(tmp_path / "typical", small, SegmenterSamples(), progress=False)
    write_dataset(tmp_path / "train", standard, SegmenterSamples(), progress=False)
    config = SegmenterTrainingConfig(
        train_dir=str(tmp_path / "train"),
        typical_dir=str(tmp_path / "typical"),
        n_train=1,
        n_typical=1,
        stages=LONG_STAGES,
    )
    images = _training_images(config)
    assert [s["seed"] for s in images] == [standard[0].seed, small[0].seed]
    assert len(_training_images(dataclasses.replace(config, n_typical=0))) == 1
    assert len(_training_images(dataclasses.replace(config, n_train=2, n_typical=2))) == 4
    with pytest.raises(SkysiftError, match="holds 2 of the 3 fields"):
        _training_images(dataclasses.replace(config, n_train=3))
    card = card_for(config)
    assert card["training"]["command"].endswith("--schedule long --typical-fields 1")
    from skysift.train.segmenter import checked_model_name

    assert checked_model_name("segmenter_renamed") == "segmenter_renamed"
    for bad in ("Segmenter", "../weights", "2nd", "a-b"):
        with pytest.raises(SkysiftError, match="lower-case letters"):
            checked_model_name(bad)
    renamed = card_for(dataclasses.replace(config, name="segmenter_renamed"))
    assert renamed["name"] == "segmenter_renamed"
    assert renamed["training"]["command"].endswith("--typical-fields 1 --name segmenter_renamed")
    with_psf = dataclasses.replace(
        config, name="segmenter_psf", architecture=SegmenterConfig(psf_channel=True)
    )
    assert card_for(with_psf)["training"]["command"].endswith("--psf-channel")
    # a PSF model called 'segmenter' is not the default name: the command must say it
    misnamed = dataclasses.replace(with_psf, name="segmenter")
    assert card_for(misnamed)["training"]["command"].endswith("--psf-channel --name segmenter")
    assert "typical DECaLS fields" in card["trained_on"]["images"]
    assert card_for(SegmenterTrainingConfig())["training"]["command"] == (
        "skysift train segmenter --seed 0"
    )
    # another thread count sums in another order: the command must say it
    one_thread = card_for(SegmenterTrainingConfig(threads=1))["training"]["command"]
    assert one_thread == "skysift train segmenter --seed 0 --threads 1"


def test_segmenter_images_with_clumps_in_footprints_differ_only_in_their_masks():
    from skysift.train.segmenter import SegmenterTrainingConfig, card_for
    from skysift.train.segmenter_data import segmenter_field_configs, typical_field_configs

    for make in (segmenter_field_configs, typical_field_configs):
        apart, joined = make("validation", 4), make("validation", 4, clumps_in_footprints=True)
        assert not any(c.clumps_in_footprints for c in apart)
        assert all(c.clumps_in_footprints for c in joined)
        assert [dataclasses.replace(c, clumps_in_footprints=False) for c in joined] == apart
    card = card_for(SegmenterTrainingConfig(clumps_in_footprints=True))
    assert card["training"]["command"].endswith("--clumps-in-footprints")
    assert "clumps' pixels in their parent" in card["trained_on"]["instances"]
    assert "clumps" not in card_for(SegmenterTrainingConfig())["trained_on"]["instances"]


def test_segmenter_images_with_burke_masks_differ_only_in_their_masks():
    from skysift.sim import BURKE_PEAK_FRACTIONS
    from skysift.train.segmenter import SegmenterTrainingConfig, card_for
    from skysift.train.segmenter_data import segmenter_field_configs, typical_field_configs

    for make in (segmenter_field_configs, typical_field_configs):
        isophote, burke = make("validation", 4), make("validation", 4, burke_masks=True)
        assert all(c.footprint_peak_fractions is None for c in isophote)
        assert all(c.footprint_peak_fractions == BURKE_PEAK_FRACTIONS for c in burke)
        assert [dataclasses.replace(c, footprint_peak_fractions=None) for c in burke] == isophote
    config = SegmenterTrainingConfig(burke_masks=True)
    assert config.truth_masks == {"clumps_in_footprints": False, "burke_masks": True}
    card = card_for(config)
    assert card["training"]["command"].endswith("--burke-masks")
    assert "Burke et al.'s rule" in card["trained_on"]["instances"]
    assert "Burke" not in card_for(SegmenterTrainingConfig())["trained_on"]["instances"]


def test_segmenter_trunk_options_build_the_network_and_its_card_command():
    """--widths, --blocks and --fpn-channels size the trunk; the card's command carries the
    ones that differ from the default, so it builds the same network again."""
    from skysift.errors import InvalidParameterError
    from skysift.models.segmenter import SegmenterConfig, build_segmenter
    from skysift.train.segmenter import SegmenterTrainingConfig, card_for, trunk_architecture

    assert trunk_architecture() == {}
    options = trunk_architecture(widths="32,48,96,192,256", blocks="2,2,2,2", fpn_channels=96)
    wide = SegmenterConfig(psf_channel=True, **options)
    config = SegmenterTrainingConfig(name="segmenter_psf", architecture=wide)
    command = card_for(config)["training"]["command"]
    assert command.endswith(
        "--psf-channel --widths 32,48,96,192,256 --blocks 2,2,2,2 --fpn-channels 96"
    )
    narrow = SegmenterConfig(**trunk_architecture(blocks="1,1,1,1"))
    assert card_for(SegmenterTrainingConfig(architecture=narrow))["training"]["command"].endswith(
        "--seed 0 --blocks 1,1,1,1"
    )
    params = sum(p.numel() for p in build_segmenter(wide).parameters())
    assert params > sum(p.numel() for p in build_segmenter(SegmenterConfig()).parameters())
    for bad in ({"widths": "32,48,96"}, {"widths": "a,b,c,d,e"}, {"blocks": "1,2,0,1"}):
        with pytest.raises(InvalidParameterError, match="positive whole numbers"):
            trunk_architecture(**bad)
    with pytest.raises(InvalidParameterError, match="fpn-channels"):
        trunk_architecture(fpn_channels=0)


def test_comma_separated_options_are_read_or_refused_clearly():
    from skysift.errors import InvalidParameterError
    from skysift.train.segmenter import positive_integers

    assert positive_integers("16,32,64,128", "--widths") == (16, 32, 64, 128)
    assert positive_integers("2,2,2,2", "--blocks", count=4) == (2, 2, 2, 2)
    for bad in ("16", "16,x", "16,0", "", "8,-8"):
        with pytest.raises(InvalidParameterError, match="--widths takes two or more"):
            positive_integers(bad, "--widths")
    with pytest.raises(InvalidParameterError, match="--blocks takes 4"):
        positive_integers("1,1,1", "--blocks", count=4)


def test_segmenter_finetune_starts_from_the_packaged_model_with_a_silent_psf_channel():
    import torch

    from skysift.errors import InvalidParameterError
    from skysift.models.registry import load_card, load_model
    from skysift.models.segmenter import SegmenterConfig, build_segmenter, with_psf_channel
    from skysift.train.segmenter import (
        FINETUNE_STAGES,
        SegmenterTrainingConfig,
        card_for,
        initial_state,
    )

    base, _ = load_model("segmenter")
    architecture = dataclasses.replace(base.skysift_config, psf_channel=True)
    state = initial_state("segmenter", architecture)
    sha256 = load_card("segmenter")["sha256"]
    model = build_segmenter(architecture)
    model.load_state_dict(state)
    model.eval()
    image = np.random.default_rng(2_000_310).normal(size=(3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        before = base([torch.from_numpy(image)])[0]
        after = model([torch.from_numpy(with_psf_channel(image, 5.5))])[0]
    assert len(before["scores"]) > 0
    torch.testing.assert_close(after["scores"], before["scores"])
    # a zero-weight input channel changes the order convolutions sum in: mask probabilities
    # (thresholded at 0.5) have been seen to move by 1.3e-5, so compare them to 1e-4
    torch.testing.assert_close(after["masks"], before["masks"], atol=1e-4, rtol=0)

    config = SegmenterTrainingConfig(
        name="segmenter_psf",
        architecture=architecture,
        stages=FINETUNE_STAGES,
        init_from="segmenter",
    )
    card = card_for(config)
    assert card["training"]["command"].endswith(
        "--schedule finetune --psf-channel --init-from segmenter"
    )
    assert card["training"]["initialized_from"]["sha256"] == sha256
    with pytest.raises(InvalidParameterError, match="finetune"):
        SegmenterTrainingConfig(stages=FINETUNE_STAGES)
    with pytest.raises(InvalidParameterError, match="finetune"):
        SegmenterTrainingConfig(init_from="segmenter")
    narrower = SegmenterConfig(widths=(8, 8, 8, 8, 8), fpn_channels=8)
    with pytest.raises(InvalidParameterError, match="widths"):
        initial_state("segmenter", narrower)
    with pytest.raises(InvalidParameterError, match="not a segmenter"):
        initial_state("localizer", architecture)


def test_segmenter_finetune_starts_from_a_model_written_elsewhere(tmp_path):
    """``--init-from`` takes the card of a model written by ``--out`` as well as a name."""
    import shutil

    import torch

    from skysift.models.registry import load_card, load_model, weights_dir
    from skysift.train.segmenter import (
        FINETUNE_STAGES,
        SegmenterTrainingConfig,
        card_for,
        initial_state,
    )

    for suffix in (".json", ".safetensors"):
        shutil.copy(weights_dir() / f"segmenter{suffix}", tmp_path / f"segmenter{suffix}")
    base, _ = load_model("segmenter")
    card_path = str(tmp_path / "segmenter.json")
    state = initial_state(card_path, base.skysift_config)
    for key, value in base.state_dict().items():
        assert torch.equal(state[key], value), key
    config = SegmenterTrainingConfig(stages=FINETUNE_STAGES, init_from=card_path)
    started = card_for(config)["training"]["initialized_from"]
    assert started["sha256"] == load_card("segmenter")["sha256"]
    assert started["name"] == card_path


def test_segmenter_parameter_groups_partition_the_model():
    import torch

    from skysift.models.segmenter import SegmenterConfig, build_segmenter
    from skysift.train.segmenter import parameter_groups

    model = build_segmenter(SegmenterConfig(widths=(8, 8, 8, 8, 8), fpn_channels=8))
    groups = parameter_groups(model)
    total = sum(len(v) for v in groups.values())
    assert total == len(list(model.parameters()))
    ids = [id(p) for v in groups.values() for p in v]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(p, torch.nn.Parameter) for p in groups["heads"])


def test_otsu_annotations_keep_only_the_central_galaxy(tmp_path):
    from skysift.annotate import otsu_central_mask
    from skysift.errors import InvalidParameterError
    from skysift.image import Image
    from skysift.sim import FieldConfig
    from skysift.sim.dataset import iter_shards, write_dataset
    from skysift.train.segmenter import SegmenterTrainingConfig, load_images
    from skysift.train.segmenter_data import SegmenterSamples

    fields = [
        FieldConfig(survey="sdss", size=96, density=40, seed=21, central_galaxy="spiral"),
        FieldConfig(survey="decals", size=96, density=60, seed=22),  # no central galaxy
    ]
    write_dataset(tmp_path / "images", fields, SegmenterSamples(), progress=False)
    truth = load_images(str(tmp_path / "images"))
    otsu = load_images(str(tmp_path / "images"), annotations="otsu")
    assert len(truth) == 2
    assert len(otsu) == 1  # the blended field has no central galaxy to annotate
    (only,) = load_images(str(tmp_path / "images"), seeds=[22])
    assert only["seed"] == 22
    # each sample carries its survey's band names (the colour typer reads only g, r, z)
    assert only["bands"] == ("g", "r", "z")
    assert {s["seed"]: s["bands"] for s in truth}[21] == ("g", "r", "i")
    (sample,) = otsu
    (full,) = [s for s in truth if s["seed"] == 21]
    assert full["ids"].size > 1
    assert sample["ids"].tolist() == full["ids"][full["central"]].tolist()
    assert sample["classes"].tolist() == full["classes"][full["central"]].tolist()
    shard = next(s for s in iter_shards(str(tmp_path / "images")) if s["seed"][0] == 21)
    expected = otsu_central_mask(
        Image.from_array(shard["image"][0], mask=shard["mask"][0].astype(bool))
    )
    np.testing.assert_array_equal(sample["labels"] == sample["ids"][0], expected)
    assert set(np.unique(sample["labels"])) <= {0, int(sample["ids"][0])}
    np.testing.assert_array_equal(sample["image"], full["image"])
    with pytest.raises(ValueError, match="annotations must be"):
        load_images(str(tmp_path / "images"), annotations="manual")
    with pytest.raises(InvalidParameterError, match="masks must be"):
        SegmenterTrainingConfig(masks="manual")


def _square(shape, x0, y0, size):
    mask = np.zeros(shape, bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def _prediction(masks, labels, scores):
    masks = np.asarray(masks)
    boxes = []
    for m in masks:
        rows, cols = np.nonzero(m)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, np.int64),
        "scores": np.asarray(scores, np.float32),
        "masks": masks[:, None].astype(np.float32),
    }


def test_central_galaxy_map_ignores_neighbours_but_not_false_positives():
    from skysift.train.segmenter import central_galaxy_map

    shape = (64, 64)
    central, neighbour = _square(shape, 20, 20, 16), _square(shape, 2, 2, 8)
    labels = np.where(central, 1, 0) + np.where(neighbour, 7, 0)
    sample = {
        "labels": labels,
        "ids": np.array([1, 7]),
        "classes": np.array([3, 1]),  # a central spiral and a star
        "central": np.array([True, False]),
    }
    exact = _prediction([central, neighbour], [3, 1], [0.9, 0.95])
    assert central_galaxy_map([exact], [sample])["mask_map_50"] == pytest.approx(1.0)
    # the neighbour predicted as a spiral with a higher score: another source, not counted
    neighbour_as_spiral = _prediction([central, neighbour], [3, 3], [0.9, 0.95])
    result = central_galaxy_map([neighbour_as_spiral], [sample])
    assert result["mask_map_50"] == pytest.approx(1.0)
    # a spiral where there is nothing, scored above the central: a real false positive
    spurious = _prediction([central, _square(shape, 44, 44, 10)], [3, 3], [0.9, 0.95])
    assert central_galaxy_map([spurious], [sample])["mask_map_50"] < 0.9
    # images without a central galaxy are not part of this score
    blended = {**sample, "central": np.array([False, False])}
    assert central_galaxy_map([exact], [blended]) == {}


def test_box_only_segmenter_is_faster_rcnn_with_the_same_trunk():
    from torchvision.models.detection import FasterRCNN, MaskRCNN

    from skysift.models.segmenter import SegmenterConfig, build_segmenter

    small = {"widths": (8, 8, 8, 8, 8), "fpn_channels": 8, "box_head_width": 16}
    boxes = build_segmenter(SegmenterConfig(masks=False, **small))
    full = build_segmenter(SegmenterConfig(**small))
    assert isinstance(boxes, FasterRCNN)
    assert not isinstance(boxes, MaskRCNN)
    assert isinstance(full, MaskRCNN)
    box_keys = set(boxes.state_dict())
    assert box_keys < set(full.state_dict())
    assert not any("mask" in key for key in box_keys)


def test_central_galaxy_map_by_box_matches_boxes():
    from skysift.train.segmenter import central_galaxy_map

    shape = (64, 64)
    central, neighbour = _square(shape, 20, 20, 16), _square(shape, 2, 2, 8)
    sample = {
        "labels": np.where(central, 1, 0) + np.where(neighbour, 7, 0),
        "ids": np.array([1, 7]),
        "classes": np.array([3, 1]),
        "central": np.array([True, False]),
    }
    neighbour_as_spiral = _prediction([central, neighbour], [3, 3], [0.9, 0.95])
    del neighbour_as_spiral["masks"]  # a box-only model has none
    result = central_galaxy_map([neighbour_as_spiral], [sample], by="box")
    assert result["box_map_50"] == pytest.approx(1.0)
    assert "mask_map_50" not in result
    shifted = {**neighbour_as_spiral, "boxes": neighbour_as_spiral["boxes"] + [12, 12, 12, 12]}
    assert central_galaxy_map([shifted], [sample], by="box")["box_map_50"] < 0.5


def test_a_checkpoint_restores_both_random_streams_and_warns_without_torchs(caplog):
    import torch

    from skysift.train.checkpoints import random_state, restore_random_state

    rng = np.random.default_rng(3)
    state = random_state(rng)
    expected, torch_expected = rng.random(3), torch.rand(3)
    rng.random(5)
    restore_random_state(rng, state)
    np.testing.assert_array_equal(rng.random(3), expected)
    assert torch.equal(torch.rand(3), torch_expected)
    with caplog.at_level("WARNING"):
        restore_random_state(rng, {"rng": state["rng"]})  # a checkpoint from before
    assert "not be bit-identical" in caplog.text
    np.testing.assert_array_equal(rng.random(3), expected)
