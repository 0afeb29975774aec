"""The segmenter's star/galaxy second look: cutouts, the relabelling rule, training, shipping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.mask_refine import STAMP
from skysift.second_look import (
    SecondLook,
    instance_cutouts,
    instance_zooms,
    look_inputs,
    mask_coverage,
    relook,
)
from skysift.train.second_look import architecture_for

CLASSES = ("star", "elliptical", "spiral", "other")


def _look(bias: float, *, neighbours: bool = False) -> SecondLook:
    """A second look on 3 bands whose P(star) is sigmoid(bias) for every input (with the
    neighbours' channel when told)."""
    import torch

    from skysift.models.stargalaxy import StarGalaxyNet

    architecture = architecture_for(3, neighbours=neighbours)
    network = StarGalaxyNet(architecture)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.head[-1].bias.fill_(bias)
    card = {"name": "test_look", "architecture": {"config": architecture.to_dict()}}
    return SecondLook(module=network, card=card | ({"neighbours": True} if neighbours else {}))


def _prediction():
    masks = np.zeros((3, 1, 64, 64), dtype=np.float32)
    masks[0, 0, 10:14, 10:14] = 0.9
    masks[1, 0, 30:40, 30:40] = 0.9
    masks[2, 0, 50:54, 2:6] = 0.9
    return {
        "boxes": np.array([[10, 10, 14, 14], [30, 30, 40, 40], [2, 50, 6, 54]], dtype=np.float32),
        "labels": np.array([1, 3, 2]),  # star, spiral, elliptical
        "scores": np.array([0.9, 0.6, 0.7], dtype=np.float32),
        "p_star": np.array([0.9, 0.3, 0.2], dtype=np.float32),
        "p_galaxy": np.array([0.05, 0.6, 0.7], dtype=np.float32),
        "masks": masks,
    }


def test_cutouts_centre_the_mask_and_carry_it_as_a_channel():
    bands = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    masks = np.zeros((3, 40, 50), dtype=bool)
    masks[0, 20:23, 25:28] = True  # centre (21, 26)
    masks[1, 0:2, 0:2] = True  # at the corner: the rest is zero
    cutouts = instance_cutouts(bands, masks)
    assert cutouts.shape == (3, 4, 32, 32)
    np.testing.assert_array_equal(cutouts[0, :3], bands[:, 5:37, 10:42])
    assert cutouts[0, 3].sum() == 9
    assert cutouts[0, 3, 15:18, 15:18].all()
    assert cutouts[1, 3].sum() == 4
    assert cutouts[1, :3, :16].sum() == 0
    np.testing.assert_array_equal(cutouts[1, :3, 16:, 16:], bands[:, :16, :16])
    assert not cutouts[2].any()  # an empty mask gives an empty cutout


def test_zooms_fit_the_whole_instance_with_a_margin():
    masks = np.zeros((4, 120, 120), dtype=bool)
    masks[0, 10:35, 10:12] = True  # 25 px tall: fits at the image's scale (31.25 <= 32)
    masks[1, 10:36, 10:12] = True  # 26 px: 32.5 > 32, zoom 2
    masks[2, 5:110, 50:60] = True  # 105 px: 131.25 / 32 -> 5
    assert instance_zooms(masks).tolist() == [1, 2, 5, 1]  # an empty mask stays at 1
    assert instance_zooms(masks, margin=1.0).tolist() == [1, 1, 4, 1]


def test_zoomed_cutouts_average_blocks_and_keep_the_mask_fraction():
    rng = np.random.default_rng(2_000_002)
    bands = rng.normal(size=(3, 100, 100)).astype(np.float32)
    masks = np.zeros((2, 100, 100), dtype=bool)
    masks[0, 40:61, 30:71] = True  # centre (50, 50), 41 px wide
    masks[1, 0:3, 0:3] = True
    zooms = np.array([2, 1])
    cutouts = instance_cutouts(bands, masks, zooms=zooms)
    window = bands[:, 18:82, 18:82]  # 64 px around the centre of area
    expected = window.reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(cutouts[0, :3], expected, rtol=1e-6)
    assert cutouts[0, 3].sum() == pytest.approx(masks[0].sum() / 4)
    assert set(np.unique(cutouts[0, 3])) == {0.0, 0.25, 0.5, 1.0}  # edge and corner blocks
    np.testing.assert_array_equal(cutouts[1], instance_cutouts(bands, masks[1:])[0])
    with pytest.raises(ValueError, match="whole numbers"):
        instance_cutouts(bands, masks, zooms=np.array([0, 1]))


def test_a_zoomed_second_look_sees_the_psf_in_its_cutout_pixels(monkeypatch):
    """A zoomed look cuts each instance at its own zoom, and its seeing input is the FWHM
    over that zoom; a card with an unknown cutout is refused."""
    import skysift.second_look as second_look

    look = _look(0.0)
    zoomed = SecondLook(module=look.module, card=look.card | {"cutout": "zoomed"})
    assert (zoomed.cutout, look.cutout) == ("zoomed", "native")
    seen = {}

    def recording(module, cutouts, context):
        seen["cutouts"], seen["context"] = cutouts, context
        return np.full((len(cutouts), 2), 0.5)

    monkeypatch.setattr(second_look, "predict_probabilities", recording)
    masks = np.zeros((2, 128, 128), dtype=bool)
    masks[0, 10:14, 10:14] = True
    masks[1, 20:100, 30:90] = True  # 80 px tall: zoom 4
    zoomed.probabilities(np.ones((3, 128, 128), np.float32), masks, psf_fwhm=4.0)
    features = zoomed.config.seeing_feature(np.array([4.0, 1.0]))
    np.testing.assert_allclose(seen["context"][:, 0], features)
    assert seen["cutouts"][1, 3].sum() == pytest.approx(masks[1].sum() / 16)
    with pytest.raises(InvalidParameterError, match="unknown cutout"):
        SecondLook(module=look.module, card=look.card | {"cutout": "fitted"})


def test_relook_makes_stars_with_scores_from_the_source_probability():
    prediction = _prediction()
    before = {k: v.copy() for k, v in prediction.items()}
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    out = relook(prediction, bands, _look(np.log(4.0)), psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_array_equal(out["labels"], [1, 1, 1])
    source = before["p_star"] + before["p_galaxy"]
    np.testing.assert_allclose(out["scores"], source * 0.8, rtol=1e-5)
    np.testing.assert_allclose(out["detection_scores"], out["scores"])
    np.testing.assert_allclose(out["p_star_second_look"], 0.8, rtol=1e-5)
    for key, value in before.items():  # the input is left as it was
        np.testing.assert_array_equal(prediction[key], value)


def test_relook_makes_galaxies_keeping_their_types():
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    out = relook(_prediction(), bands, _look(-np.log(3.0)), psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_array_equal(out["labels"], [4, 3, 2])  # star -> other; types kept
    source = np.array([0.95, 0.9, 0.9])
    np.testing.assert_allclose(out["scores"], source * 0.75, rtol=1e-5)


def test_relook_leaves_an_instance_larger_than_its_cutout_to_the_detector():
    """A native look sees 32 px: a 40-px instance keeps the detector's class and score (its
    look probabilities are NaN), a 32-px one is decided; ``only_whole=False`` decides both,
    and a zoomed look, which holds every instance, decides both too."""
    prediction = _prediction()
    prediction["masks"][1, 0, 10:50, 10:50] = 0.9  # the spiral: 40 px across
    prediction["masks"][0, 0, 0:32, 20:22] = 0.9  # the star: 32 px tall, fits
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    look = _look(np.log(4.0))  # P(star) = 0.8 for everything
    np.testing.assert_array_equal(
        look.sees_whole(prediction["masks"][:, 0] >= 0.5), [True, False, True]
    )
    out = relook(prediction, bands, look, psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_array_equal(out["labels"], [1, 3, 1])  # the spiral stays a spiral
    assert out["scores"][1] == pytest.approx(0.6)
    assert out["detection_scores"][1] == pytest.approx(0.6)
    assert np.isnan(out["p_star_second_look"][1])
    np.testing.assert_allclose(out["p_star_second_look"][[0, 2]], 0.8, rtol=1e-5)
    every = relook(prediction, bands, look, psf_fwhm=4.0, classes=CLASSES, only_whole=False)
    np.testing.assert_array_equal(every["labels"], [1, 1, 1])
    zoomed = SecondLook(module=look.module, card=look.card | {"cutout": "zoomed"})
    assert zoomed.sees_whole(prediction["masks"][:, 0] >= 0.5).all()
    # pixel lists, as the Segmenter passes them, give the same answer
    pixels = [np.nonzero(m[0] >= 0.5) for m in prediction["masks"]]
    np.testing.assert_array_equal(look.sees_whole(pixels), [True, False, True])


def test_relook_needs_the_heads_group_probabilities_and_matching_bands():
    prediction = _prediction()
    del prediction["p_galaxy"]
    with pytest.raises(InvalidParameterError, match="p_galaxy"):
        relook(prediction, np.zeros((3, 64, 64)), _look(0.0), psf_fwhm=4.0, classes=CLASSES)
    with pytest.raises(InvalidParameterError, match="takes 3 bands"):
        _look(0.0).probabilities(np.zeros((1, 64, 64)), np.zeros((1, 64, 64), bool), psf_fwhm=4.0)


def test_a_classifier_with_a_position_input_is_not_a_second_look():
    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.models.stargalaxy_inputs import StarGalaxyConfig

    config = StarGalaxyConfig()
    card = {"name": "stargalaxy", "architecture": {"config": config.to_dict()}}
    with pytest.raises(InvalidParameterError, match="not a second look"):
        SecondLook(module=StarGalaxyNet(config), card=card)


@pytest.mark.parametrize("reject", [False, True])
def test_training_on_cached_stamps_keeps_the_best_epoch(tmp_path, reject):
    """A tiny run on a stamps cache: stars are points, galaxies wide blobs, false detections
    masks on empty sky. Three epochs are logged, and the best weights tell the classes apart
    on the validation stamps (without ``reject``, the false ones are not trained on)."""
    from safetensors.torch import load_file

    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.second_look import predict_probabilities
    from skysift.train.second_look import (
        _STAMP_ARRAYS,
        _STAMP_SETTINGS,
        SecondLookTrainingConfig,
        train_second_look,
    )

    # the three-class run also anneals its learning rate (the cosine schedule)
    schedule = "cosine" if reject else "constant"
    config = SecondLookTrainingConfig(
        run_dir=str(tmp_path),
        epochs=3,
        batch_size=32,
        threads=1,
        reject=reject,
        schedule=schedule,
    )
    rng = np.random.default_rng(2_000_001)
    yy, xx = np.mgrid[:32, :32] - 15.5

    def stamps(n):
        label = rng.integers(0, 3, n)
        sigma = np.where(label == 1, 1.0, 4.0)[:, None, None]
        light = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
        cutouts = np.repeat(light[:, None], 4, axis=1).astype(np.float32)
        cutouts[label == 2, :3] = 0.0
        cutouts[:, :3] += rng.normal(0, 0.05, cutouts[:, :3].shape).astype(np.float32)
        cutouts[:, 3] = light > 0.1
        return cutouts, np.full(n, 4.0), np.ones(n, np.int64), label

    settings = json.dumps({k: config.to_dict()[k] for k in _STAMP_SETTINGS}, sort_keys=True)
    train, val = stamps(384), stamps(192)
    np.savez_compressed(
        tmp_path / "stamps.npz",
        settings=np.array(settings),
        **{f"train_{k}": v for k, v in zip(_STAMP_ARRAYS, train, strict=True)},
        **{f"val_{k}": v for k, v in zip(_STAMP_ARRAYS, val, strict=True)},
    )
    best = train_second_look(config, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2, 3]
    rates = [entry["learning_rate"] for entry in log]
    if schedule == "cosine":  # lr/2 * (1 + cos(pi * epoch / 3))
        assert rates == pytest.approx([1e-3, 7.5e-4, 2.5e-4])
    else:
        assert rates == [1e-3] * 3
    architecture = architecture_for(3, reject=reject)
    network = StarGalaxyNet(architecture)
    network.load_state_dict(load_file(str(best)))
    context = architecture.context(np.zeros((192, 2)), seeing_fwhm=4.0)
    p = predict_probabilities(network, val[0], context)
    assert p.shape == (192, 3 if reject else 2)
    scored = val[3] < (3 if reject else 2)
    assert np.mean(p.argmax(axis=1)[scored] == val[3][scored]) > 0.9


def test_a_stamps_cache_cut_with_other_settings_is_refused(tmp_path):
    from skysift.train.second_look import SecondLookTrainingConfig, build_stamps

    np.savez_compressed(tmp_path / "stamps.npz", settings=np.array("{}"))
    with pytest.raises(InvalidParameterError, match="other settings"):
        build_stamps(SecondLookTrainingConfig(run_dir=str(tmp_path)), progress=False)


class _RecordingLook(SecondLook):
    """A constant second look that keeps the instance pixels it was shown."""

    def __init__(self, bias: float, *, neighbours: bool = False) -> None:
        constant = _look(bias, neighbours=neighbours)
        super().__init__(module=constant.module, card=constant.card)
        self.shown: list = []
        self.neighbours_shown: list = []  # per call, the other detections' masks it was given

    def probabilities(self, bands, masks, *, psf_fwhm, star_fraction=None, neighbours=()):
        self.shown += [tuple(map(np.asarray, m)) for m in masks]
        self.neighbours_shown.append(list(neighbours))
        assert psf_fwhm == 4.0
        return super().probabilities(
            bands, masks, psf_fwhm=psf_fwhm, star_fraction=star_fraction, neighbours=neighbours
        )


def test_the_segmenter_shows_the_second_look_each_instance_across_tiles():
    """With a second look, every instance (one of them on a tile seam) takes its group, and
    its score is P(source) x P(group); the look saw each instance's own pixels."""
    from test_segment import _blobs, _segmenter

    centres = [(192.0, 100.0), (60.0, 60.0), (330.0, 200.0)]
    image = _blobs((300, 400), centres)
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    look = _RecordingLook(np.log(4.0))  # P(star) = 0.8
    segmenter.second_looks = (look,)
    instances = segmenter(image)
    assert len(instances) == 3
    # the one on the seam lies in two tiles; only the tile that keeps it shows it the look
    assert len(look.shown) == 3
    assert set(instances.classes) == {"star"}
    np.testing.assert_allclose(instances.scores, (0.9 + 0.05) * 0.8, rtol=1e-5)
    from skysift.tiling import tile_grid

    origins = {(t.rows.start, t.cols.start) for t in tile_grid(image.shape, tile=256, margin=64)}
    shown = [
        {(int(r) + dy, int(c) + dx) for r, c in zip(rows, cols, strict=True)}
        for rows, cols in look.shown
        for dy, dx in origins
    ]
    for k in range(len(instances)):
        rows, cols = np.nonzero(instances.labels == k + 1)
        own = set(zip(rows.tolist(), cols.tolist(), strict=True))
        assert own in shown  # some tile showed the look this instance's own pixels
    galaxies = _segmenter(tile=256, psf_fwhm=4.0)
    galaxies.second_looks = (_RecordingLook(-np.log(3.0)),)  # P(star) = 0.25
    typed = galaxies(image)
    assert set(typed.classes) == {"elliptical"}  # a galaxy keeps its type
    np.testing.assert_allclose(typed.scores, 0.95 * 0.75, rtol=1e-5)


def test_the_segmenter_reweights_its_second_look_to_the_star_fraction_it_is_given():
    """P(star) 0.8 from a look trained on 70 % stars is a star at the training mix, and a
    galaxy in a field of 10 % stars (0.8 x 1/7 against 0.2 x 3)."""
    import dataclasses

    from test_segment import _blobs, _segmenter

    image = _blobs((200, 200), [(60.0, 60.0), (140.0, 130.0)])
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    look = _RecordingLook(np.log(4.0))
    look.card = {**look.card, "trained_on": {"star_fraction": 0.7}}
    segmenter.second_looks = (look,)
    assert set(segmenter(image).classes) == {"star"}
    segmenter.config = dataclasses.replace(
        segmenter.config, second_look="second_look_reject", star_fraction=0.1
    )
    reweighted = segmenter(image)
    assert set(reweighted.classes) == {"elliptical"}
    p_galaxy = 0.2 * 3 / (0.2 * 3 + 0.8 / 7)
    np.testing.assert_allclose(reweighted.scores, 0.95 * p_galaxy, rtol=1e-5)


def test_a_second_look_of_another_segmenter_is_run_with_a_warning(caplog):
    """``second_look`` learned ``segmenter_psf``'s catalog; paired with the stand-in it still
    runs, and says that its figures do not hold."""
    from test_segment import _segmenter

    with caplog.at_level("WARNING", logger="skysift"):
        segmenter = _segmenter(tile=256, psf_fwhm=4.0, second_look="second_look")
    assert segmenter.second_looks[0].card["segmenter"]["name"] == "segmenter_psf"
    assert "learned the mistakes of 'segmenter_psf'" in caplog.text


def test_a_zoomed_second_look_is_named_and_carded_as_such():
    from skysift.train.second_look import SecondLookTrainingConfig, card_for

    config = SecondLookTrainingConfig.named(reject=True, cutout="zoomed", threads=1)
    assert (config.name, config.run_dir) == (
        "second_look_reject_zoomed",
        "runs/second_look_reject_zoomed",
    )
    card = card_for(config, architecture_for(3, reject=True), {"sha256": "0" * 64})
    assert card["cutout"] == "zoomed"
    assert card["training"]["command"] == (
        "skysift train second-look --seed 0 --reject --cutout zoomed --threads 1"
    )
    native = card_for(SecondLookTrainingConfig.named(), architecture_for(3), {"sha256": ""})
    assert native["cutout"] == "native"
    # a card says which instances its look decides: the shipped ones say so too
    assert "holds whole" in native["decides"]
    assert "every instance" in card["decides"]
    for name in ("second_look", "second_look_reject"):
        assert SecondLook(name).card["decides"] == native["decides"]

    with pytest.raises(InvalidParameterError, match="cutout must be one of"):
        SecondLookTrainingConfig.named(cutout="fitted")


def test_a_second_look_card_names_its_image_count_and_schedule():
    from skysift.train.second_look import SecondLookTrainingConfig, card_for

    config = SecondLookTrainingConfig.named(n_images=(600, 300), schedule="cosine")
    card = card_for(config, architecture_for(3), {"sha256": "0" * 64})
    assert card["training"]["command"] == (
        "skysift train second-look --seed 0 --images 600 --schedule cosine"
    )
    assert card["trained_on"]["images"]["data/segmenter_train"] == 600
    default = card_for(SecondLookTrainingConfig.named(), architecture_for(3), {"sha256": "0"})
    assert default["training"]["command"] == "skysift train second-look --seed 0"
    assert default["trained_on"]["images"]["data/segmenter_train"] == 1500
    typical = SecondLookTrainingConfig.named(n_images=(1500, 1200))
    card = card_for(typical, architecture_for(3), {"sha256": "0"})
    assert card["training"]["command"] == "skysift train second-look --seed 0 --typical-fields 1200"
    assert card["trained_on"]["images"]["data/segmenter_train_typical"] == 1200
    clumps = SecondLookTrainingConfig.named(
        segmenter="runs/clumps/weights/segmenter_psf.json", clumps_in_footprints=True
    )
    assert card_for(clumps, architecture_for(3), {"sha256": "0"})["training"]["command"] == (
        "skysift train second-look --seed 0 --segmenter runs/clumps/weights/segmenter_psf.json "
        "--clumps-in-footprints"
    )
    burke = SecondLookTrainingConfig.named(
        segmenter="runs/burke/segmenter_psf_burke.json", burke_masks=True
    )
    assert card_for(burke, architecture_for(3), {"sha256": "0"})["training"]["command"] == (
        "skysift train second-look --seed 0 --segmenter runs/burke/segmenter_psf_burke.json "
        "--burke-masks"
    )
    with pytest.raises(InvalidParameterError, match="schedule must be one of"):
        SecondLookTrainingConfig.named(schedule="step")
    repainted = SecondLookTrainingConfig.named(reject=True, paint_by="detection_scores")
    assert card_for(repainted, architecture_for(3), {"sha256": "0"})["training"]["command"] == (
        "skysift train second-look --seed 0 --reject --paint-by detection_scores"
    )
    with pytest.raises(InvalidParameterError, match="paint_by must be one of"):
        SecondLookTrainingConfig.named(paint_by="area")


def test_a_wider_second_look_is_built_named_and_refused_below_one_filter():
    """``filters`` widens the image branch's convolutions: the network has them, the card's
    command carries them (the default is left out), and the stamps do not depend on them."""
    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.train.second_look import (
        SecondLookTrainingConfig,
        _architecture,
        _stamp_settings,
        card_for,
    )

    config = SecondLookTrainingConfig.named(reject=True, filters=64)
    default = SecondLookTrainingConfig.named(reject=True)
    cutouts = np.zeros((2, 4, 32, 32), np.float32)
    architecture = _architecture(config, cutouts)
    assert architecture.filters == 64
    network = StarGalaxyNet(architecture)
    assert network.image[0].out_channels == 64
    assert network.image[3].out_channels == 64
    narrow = StarGalaxyNet(_architecture(default, cutouts))
    assert network.num_parameters() > narrow.num_parameters()
    assert card_for(config, architecture, {"sha256": "0"})["training"]["command"] == (
        "skysift train second-look --seed 0 --reject --filters 64"
    )
    assert _stamp_settings(config) == _stamp_settings(default)
    with pytest.raises(InvalidParameterError, match="filters must be >= 1"):
        SecondLookTrainingConfig.named(filters=0)


def test_a_second_look_trained_on_another_segmenter_can_be_named():
    from skysift.train.second_look import SecondLookTrainingConfig, card_for

    config = SecondLookTrainingConfig.named(
        reject=True, segmenter="segmenter_psf_typical", name="second_look_reject_typical"
    )
    assert (config.name, config.run_dir) == (
        "second_look_reject_typical",
        "runs/second_look_reject_typical",
    )
    card = card_for(config, architecture_for(3, reject=True), {"sha256": "0"})
    assert card["name"] == "second_look_reject_typical"
    assert card["training"]["command"] == (
        "skysift train second-look --seed 0 --segmenter segmenter_psf_typical --reject "
        "--name second_look_reject_typical"
    )
    # the default name is left out of the command; a zoomed look keeps its suffix
    zoomed = SecondLookTrainingConfig.named(cutout="zoomed", name="second_look_zoomed")
    assert (
        "--name"
        not in card_for(zoomed, architecture_for(3), {"sha256": "0"})["training"]["command"]
    )


def test_a_second_look_of_the_augmented_detector_says_so_in_its_card_and_stamps():
    """``augment`` fuses the segmenter's views before the stamps are cut: the card's command
    carries it, the stamps' settings change (a cache cut without it is refused), the
    settings of a one-view run stay as they were, and a bad value is refused by name."""
    from skysift.errors import InvalidParameterError
    from skysift.train.second_look import SecondLookTrainingConfig, _stamp_settings, card_for

    config = SecondLookTrainingConfig.named(
        reject=True,
        segmenter="segmenter_psf_typical",
        augment="flips",
        name="second_look_reject_flips",
    )
    command = card_for(config, architecture_for(3, reject=True), {"sha256": "0"})["training"][
        "command"
    ]
    assert command == (
        "skysift train second-look --seed 0 --segmenter segmenter_psf_typical --reject "
        "--augment flips --name second_look_reject_flips"
    )
    plain = SecondLookTrainingConfig.named(reject=True, segmenter="segmenter_psf_typical")
    assert _stamp_settings(config) == _stamp_settings(plain) | {"augment": "flips"}
    assert "augment" not in _stamp_settings(plain)
    with pytest.raises(InvalidParameterError, match="augment must be one of"):
        SecondLookTrainingConfig.named(augment="rotate")


def test_the_star_fraction_trained_on_counts_stars_among_stars_and_galaxies():
    from skysift.train.second_look import training_star_fraction

    # galaxy, star, false: the false stamps are not part of the mix
    assert training_star_fraction(np.array([0, 1, 1, 2, 2, 2])) == pytest.approx(2 / 3, abs=1e-4)


def test_a_star_fraction_reweights_the_look_by_bayes_rule():
    from skysift.second_look import with_star_fraction

    p = np.array([[0.3, 0.5, 0.2], [0.1, 0.1, 0.8]])  # galaxy, star, false
    before = p.copy()
    classes = ("galaxy", "star", "false")
    same = with_star_fraction(p, classes, trained=0.7, expected=0.7)
    np.testing.assert_allclose(same, p)
    out = with_star_fraction(p, classes, trained=0.7, expected=0.3)
    weighted = p * [0.7 / 0.3, 0.3 / 0.7, 1.0]
    np.testing.assert_allclose(out, weighted / weighted.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out[0].argmax() == 0  # fewer stars expected: the first turns galaxy
    np.testing.assert_array_equal(p, before)
    # a binary look's columns, in its own order
    binary = with_star_fraction(
        np.array([[0.4, 0.6]]), ("galaxy", "star"), trained=0.5, expected=0.2
    )
    np.testing.assert_allclose(binary, [[0.4 * 0.8 / (0.32 + 0.12), 0.6 * 0.2 / (0.32 + 0.12)]])
    with pytest.raises(InvalidParameterError, match="expected star fraction must be in"):
        with_star_fraction(p, classes, trained=0.7, expected=1.0)


def test_relook_at_a_star_fraction_decides_by_the_new_mix():
    """P(star) 0.6 from a look trained on 70 % stars: a star as it is, a galaxy where 30 %
    are expected; a card without its training mix refuses the option by name."""
    look = _look(np.log(1.5))
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match=r"trained_on\.star_fraction"):
        relook(_prediction(), bands, look, psf_fwhm=4.0, classes=CLASSES, star_fraction=0.3)
    card = {**look.card, "trained_on": {"star_fraction": 0.7}}
    look = SecondLook(module=look.module, card=card)
    kept = relook(_prediction(), bands, look, psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_array_equal(kept["labels"], [1, 1, 1])
    out = relook(_prediction(), bands, look, psf_fwhm=4.0, classes=CLASSES, star_fraction=0.3)
    np.testing.assert_array_equal(out["labels"], [4, 3, 2])  # star -> other; types kept
    p_star = 0.6 * (0.3 / 0.7) / (0.6 * 0.3 / 0.7 + 0.4 * 0.7 / 0.3)
    np.testing.assert_allclose(out["p_star_second_look"], p_star, rtol=1e-5)
    source = np.array([0.95, 0.9, 0.9])
    np.testing.assert_allclose(out["scores"], source * (1 - p_star), rtol=1e-5)


def test_both_views_stack_the_native_and_the_zoomed_cutouts():
    """``cutout="both"``: the native channels, then the zoomed ones, with the image's FWHM;
    a look trained that way takes the same bands."""
    rng = np.random.default_rng(2_000_003)
    bands = rng.normal(size=(3, 128, 128)).astype(np.float32)
    masks = np.zeros((2, 128, 128), dtype=bool)
    masks[0, 60:64, 60:64] = True
    masks[1, 20:100, 30:90] = True  # zoom 4
    both, fwhm = look_inputs(bands, masks, psf_fwhm=4.0, cutout="both")
    assert both.shape == (2, 8, 32, 32)
    np.testing.assert_array_equal(fwhm, [4.0, 4.0])
    np.testing.assert_array_equal(both[:, :4], instance_cutouts(bands, masks))
    zoomed, zoomed_fwhm = look_inputs(bands, masks, psf_fwhm=4.0, cutout="zoomed")
    np.testing.assert_array_equal(both[:, 4:], zoomed)
    np.testing.assert_array_equal(zoomed_fwhm, [4.0, 1.0])
    import torch

    from skysift.models.stargalaxy import StarGalaxyNet

    architecture = architecture_for(3, reject=True, cutout="both")
    assert architecture.in_channels == 8
    card = {"name": "t", "cutout": "both", "classes": ["galaxy", "star", "false"]}
    look = SecondLook(
        module=StarGalaxyNet(architecture),
        card=card | {"architecture": {"config": architecture.to_dict()}},
    )
    assert look.bands == 3
    with torch.no_grad():
        p = look.probabilities(bands, masks, psf_fwhm=4.0)
    assert p.shape == (2, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_a_second_look_runs_quietly_with_a_detector_fine_tuned_from_its_own(caplog):
    """``segmenter_psf_typical`` continues ``segmenter_psf``, whose catalog the looks learned,
    and was measured with them (docs/models.md, session 26): no pairing warning."""
    from skysift.models.registry import load_card
    from skysift.segment import SegmentConfig, Segmenter

    card = load_card("segmenter_psf_typical")
    assert card["training"]["initialized_from"]["name"] == "segmenter_psf"
    with caplog.at_level("WARNING", logger="skysift"):
        Segmenter(
            SegmentConfig(
                model="segmenter_psf_typical", psf_fwhm=4.0, second_look="second_look_reject"
            )
        )
    assert "learned the mistakes" not in caplog.text


def _refined_look(tmp_path, bias: float) -> _RecordingLook:
    """A recording look trained, its card says, on the masks of a refiner that draws its
    whole stamp (sigmoid(+20) everywhere)."""
    from skysift.mask_refine import MaskRefiner
    from test_mask_refine import _constant_refiner

    path = _constant_refiner(tmp_path, 20.0)
    look = _RecordingLook(bias)
    look.card = {
        **look.card,
        "mask_refiner": {"name": path, "sha256": MaskRefiner(path).card["sha256"]},
    }
    return look


def _counted_refiner_calls(monkeypatch) -> list:
    """The stamp counts of every call of a :class:`MaskRefiner` from now on."""
    from skysift.mask_refine import MaskRefiner

    calls = []
    original = MaskRefiner.__call__
    monkeypatch.setattr(
        MaskRefiner,
        "__call__",
        lambda self, stamps: calls.append(len(stamps)) or original(self, stamps),
    )
    return calls


def test_relook_shows_a_refined_look_the_masks_its_refiner_draws(tmp_path):
    """A look trained on a refiner's masks sees, without ``masks``, the masks that refiner
    draws (here its whole 64-px stamp, cut by the image), not the detector's; the prediction
    keeps the detector's masks."""
    prediction = _prediction()
    bands = np.random.default_rng(1).normal(0.0, 0.1, (3, 64, 64)).astype(np.float32)
    look = _refined_look(tmp_path, np.log(4.0))
    out = relook(prediction, bands, look, psf_fwhm=4.0, classes=CLASSES)
    shown = [sum(int(np.count_nonzero(row)) for row in m) for m in look.shown]
    detector = [int((m[0] >= 0.5).sum()) for m in prediction["masks"]]
    assert detector == [16, 100, 16]
    assert all(s > d for s, d in zip(shown, detector, strict=True))
    np.testing.assert_array_equal(out["masks"], prediction["masks"])
    plain = _RecordingLook(np.log(4.0))
    relook(prediction, bands, plain, psf_fwhm=4.0, classes=CLASSES)
    assert [sum(int(np.count_nonzero(row)) for row in m) for m in plain.shown] == detector


def test_a_look_whose_refiner_is_not_the_one_it_learned_on_is_refused(tmp_path):
    look = _refined_look(tmp_path, 0.0)
    look.card["mask_refiner"] = {**look.card["mask_refiner"], "sha256": "0" * 64}
    with pytest.raises(InvalidParameterError, match="trained on the masks of mask refiner"):
        _ = look.mask_refiner


def test_the_segmenter_shows_a_refined_look_its_refiners_masks_and_paints_them_once(
    tmp_path, monkeypatch
):
    """The look sees the refiner's masks; the label map keeps the detector's without a
    ``mask_refiner`` and, with the same refiner as the look's, the refiner runs once a tile."""
    from test_segment import _blobs, _segmenter

    calls = _counted_refiner_calls(monkeypatch)
    image = _blobs((200, 200), [(60.0, 60.0), (140.0, 130.0)])
    plain = _segmenter(tile=256, psf_fwhm=4.0)(image)
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    look = _refined_look(tmp_path, np.log(4.0))
    segmenter.second_looks = (look,)
    looked = segmenter(image)
    assert [rows.size for rows, _ in look.shown] == [STAMP * STAMP] * 2
    np.testing.assert_array_equal(np.sort(looked.area), np.sort(plain.area))
    assert len(calls) == 1
    both = _segmenter(tile=256, psf_fwhm=4.0)
    both.second_looks = (_refined_look(tmp_path, np.log(4.0)),)
    both.mask_refiner = both.second_looks[0].mask_refiner
    painted = both(image)
    assert len(calls) == 2  # one more tile, one more call: the label map reused the look's
    assert (painted.area > plain.area.max()).all()


def test_a_look_on_refined_masks_names_its_refiner_in_its_command_card_and_stamps():
    from skysift.mask_refine import MaskRefiner
    from skysift.train.second_look import SecondLookTrainingConfig, _stamp_settings, card_for

    config = SecondLookTrainingConfig.named(reject=True, mask_refiner="mask_refiner")
    card = card_for(config, architecture_for(3, reject=True), {"sha256": "0"})
    assert card["training"]["command"] == (
        "skysift train second-look --seed 0 --reject --mask-refiner mask_refiner"
    )
    assert card["mask_refiner"] == {
        "name": "mask_refiner",
        "sha256": MaskRefiner("mask_refiner").card["sha256"],
    }
    assert "drawn again by mask refiner 'mask_refiner'" in card["trained_on"]["stamps"]
    plain = SecondLookTrainingConfig.named(reject=True)
    assert _stamp_settings(config) == _stamp_settings(plain) | {"mask_refiner": "mask_refiner"}
    assert "mask_refiner" not in card_for(plain, architecture_for(3, reject=True), {"sha256": "0"})
    assert SecondLook("second_look_reject").mask_refiner is None


def test_relook_with_two_looks_decides_by_the_mean_of_their_probabilities():
    """P(star) 0.9 and 0.3 average to 0.6: a star whose score is P(source) x 0.6; two looks
    of other classes are refused by name."""
    prediction = _prediction()
    bands = np.zeros((3, 64, 64), dtype=np.float32)
    sure, doubtful = _RecordingLook(np.log(9.0)), _RecordingLook(-np.log(7.0 / 3.0))
    out = relook(prediction, bands, (sure, doubtful), psf_fwhm=4.0, classes=CLASSES)
    np.testing.assert_allclose(out["p_star_second_look"], 0.6, rtol=1e-5)
    assert out["labels"].tolist() == [1, 1, 1]
    source = prediction["p_star"] + prediction["p_galaxy"]
    np.testing.assert_allclose(out["scores"], source * 0.6, rtol=1e-5)
    assert len(sure.shown) == len(doubtful.shown) == 3  # each saw every instance
    with pytest.raises(InvalidParameterError, match="masks for 1 looks; there are 2"):
        relook(prediction, bands, (sure, doubtful), psf_fwhm=4.0, classes=CLASSES, masks=[None])
    from skysift.models.stargalaxy import StarGalaxyNet

    architecture = architecture_for(3, reject=True)
    card = {
        "name": "reject_look",
        "classes": ["galaxy", "star", "false"],
        "architecture": {"config": architecture.to_dict()},
    }
    reject = SecondLook(module=StarGalaxyNet(architecture), card=card)
    with pytest.raises(InvalidParameterError, match="'reject_look' decides"):
        relook(prediction, bands, (sure, reject), psf_fwhm=4.0, classes=CLASSES)


def test_the_segmenter_shows_each_of_two_looks_its_own_masks_drawing_each_refiner_once(
    tmp_path, monkeypatch
):
    """A look on the detector's masks and one on a refiner's: each is shown the masks it
    learned on, the mean decides, and with that refiner for the label map too it runs once
    a tile."""
    from test_segment import _blobs, _segmenter

    calls = _counted_refiner_calls(monkeypatch)
    image = _blobs((200, 200), [(60.0, 60.0), (140.0, 130.0)])
    plain = _segmenter(tile=256, psf_fwhm=4.0)(image)
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    detector_look = _RecordingLook(np.log(9.0))  # P(star) 0.9
    refined_look = _refined_look(tmp_path, -np.log(7.0 / 3.0))  # P(star) 0.3
    segmenter.second_looks = (detector_look, refined_look)
    segmenter.mask_refiner = refined_look.mask_refiner
    instances = segmenter(image)
    assert sorted(rows.size for rows, _ in detector_look.shown) == sorted(plain.area.tolist())
    assert [rows.size for rows, _ in refined_look.shown] == [STAMP * STAMP] * 2
    assert set(instances.classes) == {"star"}
    np.testing.assert_allclose(instances.scores, (0.9 + 0.05) * 0.6, rtol=1e-5)
    assert len(calls) == 1  # one tile, one refiner call for the look and the label map


def test_second_look_takes_several_names_and_keeps_one_as_a_name():
    from skysift.config import PipelineConfig
    from skysift.segment import SegmentConfig

    pair = SegmentConfig(second_look=["second_look_reject", "second_look_reject_seed1"])
    assert pair.second_look == ("second_look_reject", "second_look_reject_seed1")
    assert SegmentConfig(second_look=("second_look",)).second_look == "second_look"
    config = PipelineConfig(segment=pair)
    assert PipelineConfig.from_yaml(config.to_yaml()).segment.second_look == pair.second_look
    for bad in ([], ["second_look", ""], [3]):
        with pytest.raises(InvalidParameterError, match="second_look must be a model name"):
            SegmentConfig(second_look=bad)


def test_the_neighbours_channel_shows_the_other_detections_masks_not_the_instances_own():
    """Where another detection's mask covers a cutout pixel the last channel is 1, the
    instance's own pixels included when the two overlap; the coverage counts the same from
    boolean masks and from pixel lists, and one of another shape is refused."""
    bands = np.ones((3, 60, 60), dtype=np.float32)
    masks = np.zeros((3, 60, 60), dtype=bool)
    masks[0, 28:32, 28:32] = True
    masks[1, 30:40, 31:40] = True  # overlaps the first on rows 30-31, columns 31
    masks[2, 0:3, 55:60] = True  # outside the first's cutout
    coverage = mask_coverage(masks, (60, 60))
    assert coverage.max() == 2
    np.testing.assert_array_equal(coverage, mask_coverage([np.nonzero(m) for m in masks], (60, 60)))
    cutouts = instance_cutouts(bands, masks, coverage=coverage)
    plain = instance_cutouts(bands, masks)
    assert cutouts.shape == (3, 5, 32, 32)
    np.testing.assert_array_equal(cutouts[:, :4], plain)
    # the first's cutout starts at (14, 14): the second's 90 pixels, overlap included
    np.testing.assert_array_equal(cutouts[0, 4], masks[1, 14:46, 14:46])
    assert cutouts[1, 4].sum() == masks[0].sum()  # the first, whole in the window
    assert not cutouts[2, 4].any()  # nobody near the third
    with pytest.raises(ValueError, match="masks of shape"):
        mask_coverage(masks, (50, 72))
    with pytest.raises(ValueError, match="coverage must be the image's shape"):
        instance_cutouts(bands, masks, coverage=coverage[:50])
    both, _ = look_inputs(bands, masks, psf_fwhm=3.0, cutout="both", coverage=coverage)
    assert both.shape == (3, 10, 32, 32)


def test_a_look_with_the_neighbours_channel_sees_the_given_and_the_other_masks(monkeypatch):
    """Such a look takes bands + 2 channels per view; its neighbours' channel shows the
    other looked-at instances and the ``neighbours`` it is given (a tile's margin), and a
    look without it is shown neither."""
    import skysift.second_look as second_look

    seen = []

    def capture(module, cutouts, context, **_):
        seen.append(cutouts)
        return np.full((len(cutouts), 2), 0.5)

    monkeypatch.setattr(second_look, "predict_probabilities", capture)
    look = _look(0.0, neighbours=True)
    assert (look.bands, look.neighbours) == (3, True)
    assert look.config.in_channels == 5
    bands = np.ones((3, 64, 64), dtype=np.float32)
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, 30:34, 30:34] = True
    masks[1, 30:34, 40:44] = True
    margin = [(np.arange(20, 23), np.full(3, 31))]  # three pixels above the first
    look.probabilities(bands, masks, psf_fwhm=3.0, neighbours=margin)
    first = seen[-1][0, 4]
    assert first.sum() == 16 + 3  # the second instance and the margin's three pixels
    assert first[20 - 16 : 23 - 16, 31 - 16].all()
    plain = _look(0.0)
    assert not plain.neighbours
    plain.probabilities(bands, masks, psf_fwhm=3.0, neighbours=margin)
    assert seen[-1].shape[1] == 4


def test_a_neighbours_look_is_built_carded_and_cut_so():
    """``neighbours`` adds a channel to the network, ``--neighbours`` to the card's command,
    ``neighbours`` to its card (which a ``SecondLook`` reads) and to the stamps' settings."""
    from skysift.train.second_look import (
        SecondLookTrainingConfig,
        _architecture,
        _stamp_settings,
        card_for,
    )

    config = SecondLookTrainingConfig.named(reject=True, neighbours=True)
    default = SecondLookTrainingConfig.named(reject=True)
    architecture = _architecture(config, np.zeros((2, 5, 32, 32), np.float32))
    assert architecture.in_channels == 5
    card = card_for(config, architecture, {"sha256": "0"})
    assert card["neighbours"] is True
    assert "neighbours" not in card_for(default, architecture, {"sha256": "0"})
    assert card["training"]["command"] == (
        "skysift train second-look --seed 0 --reject --neighbours"
    )
    assert "other detections' masks" in card["normalization"]["formula"]
    assert _stamp_settings(config) == _stamp_settings(default) | {"neighbours": True}


def test_the_segmenter_shows_a_neighbours_look_the_detections_in_a_tiles_margin():
    """A blob on a tile seam is kept by one tile and lies in the other's margin: the look
    that decides the other tile's instances is shown it as a neighbour there, and a look
    without the channel is shown no neighbour."""
    from test_segment import _blobs, _segmenter

    image = _blobs((300, 400), [(192.0, 100.0), (60.0, 60.0), (330.0, 200.0)])
    segmenter = _segmenter(tile=256, psf_fwhm=4.0)
    look = _RecordingLook(np.log(4.0), neighbours=True)
    segmenter.second_looks = (look,)
    segmenter(image)
    given = [masks for masks in look.neighbours_shown if masks]
    assert given  # some tile held a detection outside its own region
    assert all(len(rows) > 20 for masks in given for rows, _ in masks)
    plain = _segmenter(tile=256, psf_fwhm=4.0)
    plain.second_looks = (_RecordingLook(np.log(4.0)),)
    plain(image)
    assert not any(plain.second_looks[0].neighbours_shown)


def test_mask_jitter_moves_only_each_views_mask_channel_and_is_named():
    """``mask_jitter`` erodes or dilates the instance's mask channel of every view of a
    training stamp (bands, and the neighbours' channel, untouched); the card's command
    carries it, the stamps do not depend on it, and a negative one is refused."""
    import torch

    from skysift.train.second_look import (
        SecondLookTrainingConfig,
        _stamp_settings,
        _with_jittered_masks,
        card_for,
        mask_channels,
    )

    native = SecondLookTrainingConfig.named(reject=True, mask_jitter=2)
    assert mask_channels(4, native) == [3]
    both = SecondLookTrainingConfig.named(cutout="both", neighbours=True, mask_jitter=1)
    assert mask_channels(10, both) == [3, 8]  # per view: 3 bands, the mask, the neighbours'

    rng = np.random.default_rng(0)
    stamps = torch.from_numpy(rng.normal(size=(64, 10, 32, 32)).astype(np.float32))
    disc = (np.hypot(*np.indices((32, 32)) - 15.5) < 6).astype(np.float32)
    stamps[:, [3, 8]] = torch.from_numpy(disc)
    jittered = _with_jittered_masks(np.random.default_rng(1), stamps, both)
    untouched = [c for c in range(10) if c not in (3, 8)]
    assert torch.equal(jittered[:, untouched], stamps[:, untouched])
    for channel in (3, 8):
        areas = jittered[:, channel].sum(dim=(1, 2)).numpy()
        # jitter 1: each stamp's mask eroded once, left as cut, or dilated once
        assert len(np.unique(areas)) == 3
        assert (areas < disc.sum()).any()
        assert (areas == disc.sum()).any()
        assert (areas > disc.sum()).any()

    assert (
        card_for(native, architecture_for(3, reject=True), {"sha256": "0"})["training"]["command"]
        == "skysift train second-look --seed 0 --reject --mask-jitter 2"
    )
    assert _stamp_settings(native) == _stamp_settings(SecondLookTrainingConfig.named(reject=True))
    with pytest.raises(InvalidParameterError, match="mask_jitter must be >= 0"):
        SecondLookTrainingConfig.named(mask_jitter=-1)
