"""The mask refiner's stamps and how its masks replace the detector's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from skysift.errors import InvalidParameterError
from skysift.mask_refine import MAX_BOX, STAMP, refinable, refined_masks, refiner_inputs


def _prediction(shape=(128, 128)):
    masks = np.zeros((3, 1, *shape), dtype=np.float32)
    masks[0, 0, 10:20, 12:22] = 0.9  # small, near the corner: its stamp leaves the image
    masks[1, 0, 60:70, 60:72] = 0.8  # small, overlapping the large one
    masks[2, 0, 40:100, 40:100] = 0.7  # large: keeps the detector's mask
    boxes = np.array([[12, 10, 22, 20], [60, 60, 72, 70], [40, 40, 100, 100]], dtype=np.float32)
    return {"boxes": boxes, "masks": masks, "scores": np.array([0.9, 0.8, 0.95])}


def test_stamps_hold_the_bands_own_mask_others_and_psf():
    prediction = _prediction()
    image = np.random.default_rng(0).normal(size=(3, 128, 128)).astype(np.float32)
    stamps, origins = refiner_inputs(image, prediction["masks"], prediction["boxes"], psf_fwhm=4.0)
    assert stamps.shape == (3, 6, STAMP, STAMP)
    # the corner instance's stamp starts off the image and is zero there
    row, col = origins[0]
    assert row < 0
    assert col < 0
    assert np.all(stamps[0, :5, :-row, :] == 0.0)
    np.testing.assert_array_equal(
        stamps[0, :3, -row:, -col:], image[:, : STAMP + row, : STAMP + col]
    )
    # own mask channel and the other instances' strongest mask
    row, col = origins[1]
    np.testing.assert_array_equal(
        stamps[1, 3], prediction["masks"][1, 0, row : row + STAMP, col : col + STAMP]
    )
    assert stamps[1, 4, 65 - row, 65 - col] == np.float32(0.7)  # the large one under it
    assert stamps[2, 4, 65 - origins[2][0], 65 - origins[2][1]] == np.float32(0.8)
    np.testing.assert_allclose(stamps[:, 5], 4.0 / 5.0)
    # the stamps of some instances only: the same stamps, the others still neighbours
    some, where = refiner_inputs(
        image, prediction["masks"], prediction["boxes"], psf_fwhm=4.0, only=[2, 1]
    )
    np.testing.assert_array_equal(some, stamps[[2, 1]])
    np.testing.assert_array_equal(where, origins[[2, 1]])


def test_only_the_chosen_detections_are_redrawn_with_their_neighbours_shown():
    from skysift.mask_refine import redrawn_stamps, whole_image_pieces

    prediction = _prediction()
    image = np.random.default_rng(1).normal(size=(3, 128, 128)).astype(np.float32)
    shown = []

    def recording(stamps):
        shown.append(stamps.copy())
        return np.ones((len(stamps), STAMP, STAMP), dtype=np.float32)

    pieces = whole_image_pieces(prediction["masks"])
    every = redrawn_stamps(
        image, pieces, prediction["boxes"], prediction["scores"], recording, psf_fwhm=4.0
    )
    chosen = redrawn_stamps(
        image,
        pieces,
        prediction["boxes"],
        prediction["scores"],
        recording,
        psf_fwhm=4.0,
        only=np.array([False, True, False]),
    )
    assert set(chosen) == {1} < set(every)
    assert chosen[1][:2] == every[1][:2]
    np.testing.assert_array_equal(shown[1][0], shown[0][list(every).index(1)])
    assert shown[1][0, 4].max() == np.float32(0.7)  # the large one is still its neighbour


def test_refined_masks_replace_small_instances_only():
    prediction = _prediction()
    before = {k: np.copy(v) for k, v in prediction.items()}
    image = np.zeros((3, 128, 128), dtype=np.float32)

    def square(stamps):
        out = np.zeros((len(stamps), STAMP, STAMP), dtype=np.float32)
        out[:, 30:34, 30:34] = 1.0  # a 4x4 mask at the stamp's centre
        return out

    refined = refined_masks(prediction, image, square, psf_fwhm=3.0)
    for key, value in before.items():  # the input is not modified
        np.testing.assert_array_equal(prediction[key], value)
    assert list(refinable(prediction["boxes"])) == [True, True, False]
    assert MAX_BOX < 60
    np.testing.assert_array_equal(refined["masks"][2], prediction["masks"][2])
    for k in (0, 1):
        rows, cols = np.nonzero(refined["masks"][k, 0])
        assert rows.size == 16
        x0, y0, x1, y1 = prediction["boxes"][k]
        # centred on the box (within the half pixel of an even stamp)
        assert abs(cols.mean() - 0.5 * (x0 + x1 - 1)) <= 1.0
        assert abs(rows.mean() - 0.5 * (y0 + y1 - 1)) <= 1.0


def test_no_instances():
    prediction = {
        "boxes": np.zeros((0, 4), dtype=np.float32),
        "masks": np.zeros((0, 1, 32, 32), dtype=np.float32),
        "scores": np.zeros(0),
    }
    refined = refined_masks(prediction, np.zeros((3, 32, 32), np.float32), None, psf_fwhm=3.0)
    assert refined["masks"].shape == (0, 1, 32, 32)


def test_detections_below_the_refiners_score_keep_their_masks():
    prediction = _prediction()
    prediction["scores"] = np.array([0.9, 0.2, 0.95])  # the second is below MIN_SCORE

    def empty(stamps):
        return np.zeros((len(stamps), STAMP, STAMP), dtype=np.float32)

    refined = refined_masks(prediction, np.zeros((3, 128, 128), np.float32), empty, psf_fwhm=3.0)
    assert not refined["masks"][0].any()
    np.testing.assert_array_equal(refined["masks"][1:], prediction["masks"][1:])
    # after a second look the detector's own score is the larger of P(star) and P(galaxy)
    looked = prediction | {
        "scores": np.array([0.1, 0.9, 0.1]),
        "p_star": np.array([0.05, 0.1, 0.1]),
        "p_galaxy": np.array([0.9, 0.2, 0.9]),
    }
    refined = refined_masks(looked, np.zeros((3, 128, 128), np.float32), empty, psf_fwhm=3.0)
    assert not refined["masks"][0].any()
    np.testing.assert_array_equal(refined["masks"][1], prediction["masks"][1])


def _constant_refiner(directory, bias: float, *, max_noise: float | None = None) -> str:
    """The card path of a refiner that answers sigmoid(bias) everywhere (and declines stamps
    noisier than ``max_noise``)."""
    import torch

    from skysift.models.registry import save_model
    from skysift.models.unet import UNet, UNetConfig

    architecture = UNetConfig(in_channels=6, widths=(4, 8))
    network = UNet(architecture)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.head.bias.fill_(bias)
    card = {
        "name": "constant_refiner",
        "architecture": {"kind": "unet", "config": architecture.to_dict()},
        "inputs": {"max_noise": max_noise},
    }
    save_model(network, card, directory, fp16=False)
    return str(directory / "constant_refiner.json")


def test_the_segmenter_paints_the_refiners_masks_of_small_instances(tmp_path):
    from skysift.errors import InvalidParameterError
    from skysift.mask_refine import MaskRefiner
    from skysift.segment import SegmentConfig, Segmenter
    from standins import CARD, ThresholdSegmenter

    rows, cols = np.indices((160, 200))
    light = np.random.default_rng(0).normal(100.0, 5.0, (160, 200))
    for x, y, sigma in ((40.0, 40.0, 2.5), (150.0, 50.0, 2.5), (100.0, 110.0, 14.0)):
        light += 400.0 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    image = np.stack([light] * 3).astype(np.float32)

    def run(refiner):
        config = SegmentConfig(galaxy_types=None, psf_fwhm=4.0, mask_refiner=refiner)
        return Segmenter(config, module=ThresholdSegmenter(), card=CARD)(image)

    plain = run(None)
    box = plain.bbox  # xmin, xmax, ymin, ymax (inclusive)
    sides = np.maximum(box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]) + 1
    assert len(plain) == 3
    assert (sides <= MAX_BOX).sum() == 2
    # a refiner that draws nothing leaves only the large instance, with its own mask
    emptied = run(_constant_refiner(tmp_path, -20.0))
    assert len(emptied) == 1
    assert emptied.area[0] == plain.area[np.argmax(sides)]
    refiner = MaskRefiner(str(tmp_path / "constant_refiner.json"))
    assert refiner.bands == 3
    # stamps noisier than the refiner's limit keep the detector's masks
    declined = run(_constant_refiner(tmp_path / "strict", -20.0, max_noise=1e-6))
    np.testing.assert_array_equal(declined.area, plain.area)
    assert MaskRefiner(str(tmp_path / "strict" / "constant_refiner.json")).max_noise == 1e-6
    with pytest.raises(InvalidParameterError, match="stamps"):
        refiner(np.zeros((1, 4, STAMP, STAMP), np.float32))


def _disc_stamps(n: int, seed: int) -> dict[str, np.ndarray]:
    """Stamps of one disc each, the detector's mask twice its radius, the target the disc."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((STAMP, STAMP))
    radius = rng.uniform(3.0, 8.0, n)
    distance = np.hypot(rows - STAMP / 2, cols - STAMP / 2)
    discs = distance[None] <= radius[:, None, None]
    stamps = np.zeros((n, 6, STAMP, STAMP), np.float32)
    stamps[:, :3] = discs[:, None] * 2.0 + rng.normal(0.0, 0.3, (n, 3, STAMP, STAMP))
    stamps[:, 3] = distance[None] <= 2 * radius[:, None, None]
    stamps[:, 5] = 0.8
    return {
        "stamps": stamps.astype(np.float16),
        "targets": discs.astype(np.uint8),
        "snr": rng.uniform(5.0, 80.0, n),
        "truth_class": rng.integers(1, 5, n),
        "detector_iou": np.full(n, 0.25),
        "seed": np.arange(n),
    }


def test_training_writes_a_refiner_the_segmenter_can_load(tmp_path):
    import json

    from skysift.mask_refine import MaskRefiner
    from skysift.train.mask_refiner import (
        MaskRefinerTrainingConfig,
        finish_mask_refiner,
        stamp_metrics,
        train_mask_refiner,
        write_stamp_cache,
    )

    run = tmp_path / "run"
    config = MaskRefinerTrainingConfig(
        run_dir=str(run),
        widths=(4, 8),
        epochs=2,
        noise_max=0.1,
        noise_fraction=0.5,
        noise_channel=True,
        mask_jitter=2,
        batch_size=16,
        threads=1,
    )
    # the stamps as cut from a segmenter's detections
    for role, seed in (("train", 0), ("validation", 1), ("test", 4)):
        write_stamp_cache(config, role, _disc_stamps(48, seed))
    best = train_mask_refiner(config, progress=False) / "best.safetensors"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    written = finish_mask_refiner(config, best, out_dir=tmp_path / "out", progress=False)
    card = json.loads((tmp_path / "out" / "mask_refiner.json").read_text())
    assert written.exists()
    # the command builds the same network again
    assert card["training"]["command"] == (
        "skysift train mask-refiner --seed 0 --epochs 2 --noise-max 0.1 --noise-fraction 0.5 "
        "--noise-channel --mask-jitter 2 --widths 4,8 --threads 1"
    )
    assert card["inputs"]["noise_channel"] is True
    assert card["architecture"]["config"]["in_channels"] == 7
    assert [row["n"] for row in card["metrics"]["test_stamps_sky_noise_added"]] == [
        row["n"] for row in card["metrics"]["test_stamps"]
    ]
    assert card["trained_on"]["samples"].startswith("48 training and 48 validation")
    assert {row["n"] for row in card["metrics"]["test_stamps"]} - {0}
    refiner = MaskRefiner(str(tmp_path / "out" / "mask_refiner.json"))
    # it takes the stamps refiner_inputs cuts and adds the noise channel itself
    assert refiner.noise_channel
    assert refiner.bands == 3
    probabilities = refiner(_disc_stamps(4, 2)["stamps"])
    assert probabilities.shape == (4, STAMP, STAMP)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    # the metrics: a perfect refiner beats the detector's doubled discs in every bin
    data = _disc_stamps(40, 3)
    rows = stamp_metrics(data["targets"].astype(np.float32), data)
    filled = [row for row in rows if row["n"]]
    assert filled
    assert all(row["refined_median_iou"] == 1.0 for row in filled)
    assert all(
        row["detector_below_half"] == 1.0 and row["refined_below_half"] == 0.0 for row in filled
    )


def test_training_noise_touches_the_bands_only():
    import torch

    from skysift.train.mask_refiner import _noisier

    stamps = torch.zeros(8, 6, STAMP, STAMP)
    noisy = _noisier(np.random.default_rng(0), stamps, bands=3, noise_max=0.2)
    assert not stamps.any()  # the input is not modified
    assert noisy[:, :3].std() > 0.05
    assert not noisy[:, 3:].any()  # masks and PSF channel as they were
    spread = noisy[:, :3].flatten(1).std(dim=1)
    assert spread.max() <= 0.2 * 1.1


def test_mask_jitter_erodes_or_dilates_the_instance_channel_alone():
    import torch

    from skysift.errors import InvalidParameterError
    from skysift.train.mask_refiner import MaskRefinerTrainingConfig, jittered_masks

    stamps = torch.zeros(200, 6, 16, 16)
    stamps[:, :3] = 0.5
    stamps[:, 3, 5:11, 5:11] = 1.0  # a 6x6 instance mask
    stamps[:, 4, 0:3, 0:3] = 1.0  # a neighbour
    jittered = jittered_masks(np.random.default_rng(0), stamps, channel=3, jitter=2)
    assert float(stamps[:, 3].sum()) == 200 * 36  # the input is not modified
    areas = jittered[:, 3].flatten(1).sum(dim=1).int().tolist()
    # eroded by 2 or 1, as drawn, or dilated by 1 or 2: 2x2, 4x4, 6x6, 8x8, 10x10
    assert set(areas) == {4, 16, 36, 64, 100}
    assert torch.equal(jittered[:, [0, 1, 2, 4, 5]], stamps[:, [0, 1, 2, 4, 5]])
    with pytest.raises(InvalidParameterError, match="mask_jitter must be >= 0"):
        MaskRefinerTrainingConfig(mask_jitter=-1)


def test_training_noise_spares_the_stamps_outside_its_fraction():
    import torch

    from skysift.train.mask_refiner import _noisier

    stamps = torch.zeros(400, 4, 8, 8)
    noisy = _noisier(np.random.default_rng(1), stamps, bands=1, noise_max=0.2, fraction=0.25)
    touched = noisy[:, 0].flatten(1).abs().amax(dim=1) > 0
    assert 0.15 < float(touched.float().mean()) < 0.35


def test_stamp_noise_is_measured_off_every_mask_and_off_the_image():
    from skysift.mask_refine import NOISE_SCALE, stamp_noise, with_noise_channel

    rng = np.random.default_rng(3)
    stamps = np.zeros((3, 6, STAMP, STAMP), np.float32)
    stamps[:, :3] = rng.normal(0.0, 0.5, (3, 3, STAMP, STAMP))
    stamps[:, :3, 20:40, 20:40] += 30.0  # the instance, under its mask
    stamps[:, 3, 20:40, 20:40] = 0.9
    stamps[:, :3, 0:10, 0:10] -= 30.0  # a neighbour, under the neighbours' mask
    stamps[:, 4, 0:10, 0:10] = 0.7
    stamps[1, :3, :, 32:] = 0.0  # half of the stamp off the image
    stamps[2, 3] = 1.0  # the whole stamp masked: nothing to measure
    stamps[:, 5] = 0.8
    original = stamps.copy()
    noise = stamp_noise(stamps, bands=3)
    assert noise[:2] == pytest.approx([0.5, 0.5], rel=0.06)
    assert noise[2] == NOISE_SCALE
    seen = with_noise_channel(stamps, bands=3)
    np.testing.assert_array_equal(stamps, original)  # not modified
    assert seen.shape == (3, 7, STAMP, STAMP)
    np.testing.assert_array_equal(seen[:, :6], stamps)
    np.testing.assert_allclose(seen[:, 6, 5, 5], noise / NOISE_SCALE)
    assert np.ptp(seen[:, 6], axis=(1, 2)).max() == 0  # one value per stamp


def test_a_detection_is_matched_to_the_truth_source_it_overlaps_most():
    from skysift.train.mask_refiner import _matched_truth

    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 7  # 16 px
    labels[10:18, 10:18] = 3  # 64 px
    mask = np.zeros((20, 20), bool)
    mask[4:6, 4:6] = True  # 4 px of source 7
    mask[10:14, 10:20] = True  # 32 px of source 3, 8 px of sky
    truth_id, iou = _matched_truth(mask, labels)
    assert truth_id == 3
    assert iou == pytest.approx(32 / (44 + 64 - 32))
    assert _matched_truth(np.zeros((20, 20), bool), labels) == (0, 0.0)


def test_the_shipped_refiner_draws_faint_galaxies_closer_to_their_truth():
    """Seeded typical fields (free seeds): with the recommended chain, the shipped refiner
    leaves fewer galaxies of S/N 10-50 without a mask of IoU >= 0.5 than the detector's own
    masks, and no fewer found above S/N 50."""
    import dataclasses

    from skysift.annotate import mask_iou
    from skysift.image import Image
    from skysift.segment import SegmentConfig, Segmenter
    from skysift.sim import simulate_field
    from skysift.train.segmenter_data import SegmenterSamples, typical_field_configs

    extract = SegmenterSamples()
    found = {"detector": {"faint": 0, "bright": 0}, "refined": {"faint": 0, "bright": 0}}
    total = {"faint": 0, "bright": 0}
    for k, config in enumerate(typical_field_configs("test", 10)):
        field = simulate_field(dataclasses.replace(config, seed=2_300_000 + k))
        sample = extract(field)
        height, width = field.image.data.shape[-2:]
        fwhm = field.psf.fwhm_at((width - 1) / 2, (height - 1) / 2) / field.psf.pixel_scale
        image = Image.from_array(field.image.data, mask=field.image.mask)
        truth = sample["labels"][0]
        galaxies = (sample["inst_label"] != 1) & (sample["inst_snr"] >= 10)
        snr = sample["inst_snr"][galaxies]
        kinds = np.where(snr < 50, "faint", "bright")
        for kind in kinds:
            total[kind] += 1
        for name, refiner in (("detector", None), ("refined", "mask_refiner")):
            chain = SegmentConfig.recommended(psf_fwhm=float(fwhm), mask_refiner=refiner)
            labels = Segmenter(chain)(image).labels
            for ident, kind in zip(sample["inst_id"][galaxies], kinds, strict=True):
                true_mask = truth == ident
                owners = labels[true_mask]
                if (owners > 0).any():
                    owner = int(np.bincount(owners[owners > 0]).argmax())
                    found[name][kind] += mask_iou(labels == owner, true_mask) >= 0.5
    # seeded: 79 faint galaxies, 36 found by the detector's masks and 46 by the refined ones;
    # 13 of 14 bright ones with either
    assert total["faint"] >= 60
    missed = {name: total["faint"] - found[name]["faint"] for name in found}
    assert missed["refined"] < missed["detector"], (missed, total)
    assert found["refined"]["bright"] >= found["detector"]["bright"] - 1, found


def test_a_refiner_trained_without_noise_declines_stamps_noisier_than_its_training(tmp_path):
    import torch

    from skysift.models.unet import UNet, UNetConfig
    from skysift.train.mask_refiner import (
        MaskRefinerTrainingConfig,
        noise_limit,
        refined_stamp_masks,
        write_stamp_cache,
    )

    run = tmp_path / "run"
    write_stamp_cache(MaskRefinerTrainingConfig(run_dir=str(run)), "train", _disc_stamps(48, 0))
    limit = noise_limit(MaskRefinerTrainingConfig(run_dir=str(run)))  # sky noise 0.3
    assert limit == pytest.approx(0.3, rel=0.1)
    assert noise_limit(MaskRefinerTrainingConfig(run_dir=str(run), noise_max=0.1)) is None
    stamps = _disc_stamps(4, 1)["stamps"].astype(np.float32)
    noisy = stamps.copy()
    noisy[:, :3] += np.random.default_rng(2).normal(0.0, 1.0, noisy[:, :3].shape)
    network = UNet(UNetConfig(in_channels=6, widths=(4, 8)))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.head.bias.fill_(20.0)  # draws every pixel
    masks = refined_stamp_masks(network, np.concatenate([stamps, noisy]), max_noise=limit)
    assert (masks[:4] > 0.99).all()
    np.testing.assert_array_equal(masks[4:], noisy[:, 3])  # the detector's masks kept


class _Ramp(torch.nn.Module):
    """A stand-in refiner whose logit is the instance channel plus a left-to-right ramp: the
    ramp is the kind of orientation-bound answer test-time augmentation averages away."""

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1]).expand(x.shape[-2], -1)
        return (x[:, 3:4] + ramp).float()


def test_test_time_augmentation_averages_the_views_taken_back_to_the_stamp():
    from skysift.mask_refine import MaskRefiner

    card = {"architecture": {"config": {"in_channels": 6}}, "inputs": {}}
    stamps = np.zeros((2, 6, STAMP, STAMP), dtype=np.float32)
    stamps[0, 3, 10:20, 30:34] = 4.0  # an off-centre instance: it must come back in place
    plain = MaskRefiner("x", module=_Ramp(), card=card)(stamps)
    views = MaskRefiner("x", module=_Ramp(), card=card, augment="d4")(stamps)
    flips = MaskRefiner("x", module=_Ramp(), card=card, augment="flips")(stamps)
    # one view: the ramp shows; averaged over mirror images of it, it cancels
    assert plain[1, 32, 0] < 0.3 < 0.7 < plain[1, 32, -1]
    np.testing.assert_allclose(views[1], 0.5, atol=1e-6)
    np.testing.assert_allclose(flips[1], 0.5, atol=1e-6)
    # the instance's own channel, equivariant, lands where it was
    assert views[0, 15, 32] > 0.97
    assert views[0, 40, 32] < 0.51
    with pytest.raises(InvalidParameterError, match="augment"):
        MaskRefiner("x", module=_Ramp(), card=card, augment="spin")


def test_stamps_cut_for_other_fields_or_another_segmenter_are_refused(tmp_path):
    from skysift.train.mask_refiner import (
        MaskRefinerTrainingConfig,
        cached_stamps,
        write_stamp_cache,
    )

    config = MaskRefinerTrainingConfig(run_dir=str(tmp_path), n_train_fields=4)
    write_stamp_cache(config, "train", _disc_stamps(8, 0))
    kept = cached_stamps(config, "train")
    np.testing.assert_array_equal(kept["stamps"], _disc_stamps(8, 0)["stamps"])
    for other in (
        dataclasses.replace(config, n_train_fields=5),
        dataclasses.replace(config, segmenter="segmenter_psf"),
    ):
        with pytest.raises(InvalidParameterError, match=r"stamps_train\.npz: computed by"):
            cached_stamps(other, "train")
