"""Segmenter inference (tiles, seams, label map, catalog ids), targets and metrics.

Tile merging is tested with a stand-in for the network (``standins.ThresholdSegmenter``) that
finds every object in every tile that sees part of it; the segmenter must report it once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.models.segmenter import SegmenterConfig, build_segmenter
from skysift.segment import SegmentConfig, Segmenter, segment
from standins import CARD, ThresholdSegmenter


def _blobs(shape, centres, *, sigma=3.0, amplitude=400.0, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    image = rng.normal(100.0, 5.0, shape)
    for x, y in centres:
        image += amplitude * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return image.astype(np.float32)


def _segmenter(**options):
    """The stand-in detector, keeping its own class ("elliptical") unless told otherwise."""
    options = {"galaxy_types": None, **options}
    return Segmenter(SegmentConfig(**options), module=ThresholdSegmenter(), card=CARD)


def test_galaxy_instances_are_retyped_by_the_shipped_typer():
    """Default config: every galaxy instance goes through the galaxy-type network, which sets
    its class and scales its class score by the class probability; stars would be left
    alone. The detection score, which the score cut and the paint order use, is not scaled:
    an uncertain type does not drop a confident detection."""
    image = _blobs((200, 260), [(60.0, 60.0), (190.0, 130.0)], sigma=6.0)
    plain = _segmenter()(image)
    typed = _segmenter(galaxy_types="morphology", score_threshold=0.85)(image)
    assert set(plain.classes) == {"elliptical"}
    assert len(typed) == len(plain) == 2
    assert set(typed.classes) <= {"elliptical", "spiral", "other"}
    assert typed.scores.tolist() == pytest.approx([0.9, 0.9])  # the stand-in's score
    # 0.9 times a class probability of at least 1/3
    assert (typed.class_scores < 0.9).all()
    assert (typed.class_scores >= 0.3).all()
    np.testing.assert_array_equal(plain.class_scores, plain.scores)


def test_object_on_a_tile_seam_is_found_once():
    # 400 px wide: tiles of 256 with a 64 px margin start at 0 and 144, seam near x = 192
    centres = [(192.0, 100.0), (60.0, 60.0), (330.0, 200.0)]
    image = _blobs((300, 400), centres)
    instances = _segmenter(tile=256)(image)
    assert len(instances) == 3
    found = sorted(zip(instances.x, instances.y, strict=True))
    for (x, y), (tx, ty) in zip(found, sorted(centres), strict=True):
        assert abs(x - tx) < 0.3
        assert abs(y - ty) < 0.3
    assert set(np.unique(instances.labels)) == {0, 1, 2, 3}
    assert (instances.area > 20).all()


def test_image_smaller_than_a_tile_and_without_sources():
    empty = np.random.default_rng(1).normal(100.0, 5.0, (90, 120)).astype(np.float32)
    with pytest.warns(UserWarning, match="no sources"):
        catalog, segmentation = segment(empty, segmenter=_segmenter())
    assert len(catalog) == 0
    assert "morphology" in catalog.colnames
    assert segmentation.shape == (90, 120)
    assert not segmentation.any()


def test_labels_are_catalog_ids_and_unmatched_instances_are_added():
    from skysift.catalog import FLAGS, make_catalog

    image = _blobs((200, 200), [(50.0, 50.0), (150.0, 120.0)])
    # the localizer found the first object (and a faint source outside any instance)
    catalog = make_catalog(
        {"id": [7, 9], "x": [50.2, 10.0], "y": [49.8, 180.0], "flux": [1000.0, 5.0]}
    )
    out, segmentation = segment(image, catalog, segmenter=_segmenter())
    assert len(out) == 3
    assert list(catalog["id"]) == [7, 9]  # input untouched
    assert "morphology" not in catalog.meta
    first = out[out["id"] == 7][0]
    assert first["morphology"] == "elliptical"
    assert first["area"] == (segmentation == 7).sum() > 0
    assert first["bbox_xmin"] <= 50 <= first["bbox_xmax"]
    # the instance's own centroid beside the localizer's position, which is kept
    assert first["x"].value == 50.2
    assert abs(first["x_segment"].value - 50.0) < 0.1
    assert abs(first["y_segment"].value - 50.0) < 0.1
    assert out[out["id"] == 9][0]["area"] == -1  # no instance there
    assert np.isnan(out[out["id"] == 9][0]["x_segment"].value)
    added = out[out["id"] == 10][0]
    assert added["flags"] & FLAGS["unmatched_instance"]
    assert abs(added["x"].value - 150.0) < 0.3
    assert set(np.unique(segmentation)) == {0, 7, 10}


def test_brightest_source_inside_a_mask_owns_it():
    from skysift.catalog import make_catalog

    image = _blobs((160, 160), [(80.0, 80.0)], sigma=6.0)
    catalog = make_catalog(
        {"id": [1, 2], "x": [80.0, 84.0], "y": [80.0, 80.0], "flux": [10.0, 900.0]}
    )
    out, segmentation = segment(image, catalog, segmenter=_segmenter())
    assert set(np.unique(segmentation)) == {0, 2}
    assert out[out["id"] == 1][0]["area"] == -1
    # the fainter peak lies inside the brighter source's footprint: flagged blended
    from skysift.catalog import FLAGS

    blended = (np.asarray(out["flags"]) & FLAGS["blended"]) > 0
    np.testing.assert_array_equal(blended, np.asarray(out["id"]) == 1)


def test_wrong_band_count_is_a_clear_error():
    from skysift.errors import InvalidParameterError

    cube = np.zeros((2, 64, 64), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="3 bands or 1 band"):
        _segmenter()(cube)


def test_margin_must_leave_a_kept_region():
    from skysift.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="margin"):
        _segmenter(tile=256, margin=128)
    with pytest.raises(InvalidParameterError, match="multiple of 32"):
        SegmentConfig(tile=300)


def test_mask_boxes_grow_about_their_centre_from_the_given_side():
    import torch

    from skysift.errors import InvalidParameterError
    from skysift.segment import grown_boxes

    boxes = torch.tensor([[10.0, 20.0, 40.0, 30.0], [0.0, 0.0, 8.0, 8.0]])
    out, grown = grown_boxes(boxes, scale=1.2, min_side=24)
    assert grown.tolist() == [True, False]
    np.testing.assert_allclose(out[0].numpy(), [7.0, 19.0, 43.0, 31.0])
    np.testing.assert_array_equal(out[1].numpy(), boxes[1].numpy())
    with pytest.raises(InvalidParameterError, match="mask_box_scale"):
        SegmentConfig(mask_box_scale=0.8)
    with pytest.raises(InvalidParameterError, match="mask_box_scale"):
        SegmentConfig(mask_box_scale=2.0)
    with pytest.raises(InvalidParameterError, match="mask_box_side"):
        SegmentConfig(mask_box_scale=1.2, mask_box_side=-1)


def test_a_star_fraction_needs_a_second_look_and_a_fraction():
    from skysift.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="set second_look too"):
        SegmentConfig(star_fraction=0.3)
    with pytest.raises(InvalidParameterError, match=r"star_fraction must be in \(0, 1\)"):
        SegmentConfig(second_look="second_look_reject", star_fraction=30.0)
    SegmentConfig(second_look="second_look_reject", star_fraction=0.27)


def test_mask_rcnn_runs_on_tiles_of_any_image():
    torch.manual_seed(0)
    architecture = SegmenterConfig(detections_per_image=5)
    model = build_segmenter(architecture)
    card = {**CARD, "architecture": {"kind": "segmenter", "config": architecture.to_dict()}}
    segmenter = Segmenter(SegmentConfig(tile=256, score_threshold=0.0), module=model, card=card)
    image = _blobs((100, 300), [(40.0, 40.0)])
    instances = segmenter(np.stack([image] * 3))
    assert instances.labels.shape == (100, 300)
    assert len(instances) <= 5 * 2  # at most 5 per tile, two tiles
    large = Segmenter(SegmentConfig(tile=512), module=model, card=card)
    assert large.module.transform.min_size == (512,)
    assert large.module.roi_heads.detections_per_img == 20
    assert large(image).labels.shape == (100, 300)
    # each segmenter keeps its own settings; the caller's module is left as it was
    assert segmenter.module.transform.min_size == (256,)
    assert segmenter.module.roi_heads.detections_per_img == 5
    assert segmenter.module.roi_heads.score_thresh == architecture.score_threshold
    assert large.module.roi_heads.score_thresh == pytest.approx(0.5)
    assert model.transform.min_size == build_segmenter(architecture).transform.min_size
    assert model.roi_heads.detections_per_img == 5
    assert model.roi_heads.score_thresh == architecture.score_threshold
    assert large.module.backbone is model.backbone  # the weights are shared, not copied


def test_a_model_with_a_psf_channel_is_given_the_psf_fwhm(moffat_star_field):
    from astropy.io import fits

    from skysift.errors import InvalidParameterError
    from skysift.image import Image
    from skysift.models.segmenter import PSF_CHANNEL_OFFSET, with_psf_channel

    bands = np.ones((3, 8, 8), np.float32)
    stacked = with_psf_channel(bands, 5.5)
    assert stacked.shape == (4, 8, 8)
    assert np.all(stacked[3] == 5.5 - PSF_CHANNEL_OFFSET)
    assert np.all(stacked[:3] == bands)
    assert bands.shape == (3, 8, 8)  # the input is left alone
    with pytest.raises(InvalidParameterError, match="psf_fwhm"):
        with_psf_channel(bands, float("nan"))
    with pytest.raises(InvalidParameterError, match="psf_fwhm"):
        SegmentConfig(psf_fwhm=-1.0)

    torch.manual_seed(0)
    architecture = SegmenterConfig(
        widths=(8, 8, 8, 8, 8), fpn_channels=8, detections_per_image=5, psf_channel=True
    )
    model = build_segmenter(architecture)
    assert model.backbone.body.stem[0].in_channels == 4
    card = {**CARD, "architecture": {"kind": "segmenter", "config": architecture.to_dict()}}
    data = np.stack([_blobs((64, 64), [(30.0, 30.0)])] * 3)
    given = Segmenter(SegmentConfig(tile=64, margin=0, psf_fwhm=4.5), module=model, card=card)
    assert given.network_input(Image.from_array(data))[3].max() == pytest.approx(0.5)
    assert given(data).labels.shape == (64, 64)
    from_header = Segmenter(SegmentConfig(tile=64, margin=0), module=model, card=card)
    header = fits.Header({"SEEING": 1.2})
    image = Image.from_array(data, header=header, pixel_scale=0.4)
    assert from_header.network_input(image)[3].max() == pytest.approx(3.0 - PSF_CHANNEL_OFFSET)
    assert given(data).meta == {"psf_fwhm_pixels": 4.5, "psf_fwhm_from": "config"}
    # neither given nor in the header: measured on the image's stars, when it has enough
    stars, _, fwhm = moffat_star_field
    measured, origin = from_header.psf_fwhm(stars)
    assert origin == "measured"
    assert measured == pytest.approx(fwhm, rel=0.03)
    with pytest.raises(InvalidParameterError, match="could not be measured on this image"):
        from_header(data)  # one blob: nothing to measure it on


def test_box_only_model_is_refused_for_segmentation_maps():
    from skysift.errors import InvalidParameterError

    architecture = SegmenterConfig(widths=(8, 8, 8, 8, 8), fpn_channels=8, masks=False)
    card = {
        **CARD,
        "name": "segmenter_boxes",
        "architecture": {"kind": "segmenter", "config": architecture.to_dict()},
    }
    with pytest.raises(InvalidParameterError, match="box-only Faster R-CNN"):
        Segmenter(module=build_segmenter(architecture), card=card)


def test_sample_targets_boxes_follow_masks():
    from skysift.train.segmenter import sample_targets

    labels = np.zeros((20, 30), dtype=np.int32)
    labels[2:5, 3:9] = 11
    labels[10:18, 20:22] = 4
    target = sample_targets(labels, np.array([4, 11, 99]), np.array([1, 3, 2]))
    assert target["boxes"].tolist() == [[20, 10, 22, 18], [3, 2, 9, 5]]
    assert target["labels"].tolist() == [1, 3]  # id 99 has no pixels: dropped
    assert target["masks"].shape == (2, 20, 30)
    assert int(target["masks"][1].sum()) == 18


def test_instance_targets_of_a_galaxy_zoo_like_cutout():
    from skysift.sim import FieldConfig, simulate_field
    from skysift.train.segmenter_data import SegmenterSamples, instance_targets, unmasked_sources

    field = simulate_field(
        FieldConfig(survey="sdss", size=128, density=20, seed=2_000_301, central_galaxy="spiral")
    )
    labels, instances = instance_targets(field)
    central = instances["central"]
    assert central.sum() == 1
    assert instances["id"][central][0] == 1
    assert instances["label"][central][0] in (3, 4)  # spiral, or "other" if drawn armless
    assert (labels == 1).sum() > 100
    present = set(np.unique(labels)) - {0}
    assert present == set(instances["id"].tolist())
    truth = field.truth
    clumps = np.asarray(truth["id"])[np.asarray(truth["is_shred"])]
    assert not set(clumps.tolist()) & present
    # every other source with S/N >= 2 is recorded as a source without a mask
    unmasked = unmasked_sources(field, instances["id"])
    others = (np.asarray(truth["snr"]) >= 2.0) & ~np.asarray(truth["is_shred"])
    others &= ~np.isin(np.asarray(truth["id"]), instances["id"])
    assert len(unmasked["x"]) == int(others.sum()) > 0
    assert (unmasked["snr"] >= 2.0).all()
    assert set(map(float, unmasked["x"])) == set(map(float, np.asarray(truth["x"])[others]))
    # the sample records the detection band's PSF FWHM (pixels) at the image centre
    sample = SegmenterSamples()(field)
    fwhm = float(sample["psf_fwhm"][0])
    assert fwhm == pytest.approx(float(field.psf.fwhm_at(63.5, 63.5)) / field.psf.pixel_scale)
    median_star = np.median(np.asarray(truth["psf_fwhm"].value)) / field.psf.pixel_scale
    assert fwhm == pytest.approx(median_star, rel=0.2)


def test_fragments_painted_over_are_dropped_from_the_catalog():
    from skysift.evaluate.segmentation import as_catalog, kept_instances
    from skysift.segment import _paint, painted_map

    shape = (64, 64)
    masks = np.zeros((4, *shape), dtype=bool)
    masks[0, 20:40, 20:40] = True  # a bright galaxy
    masks[1, 25:35, 25:35] = True  # a fragment of it, all inside
    masks[2, 30:50, 36:56] = True  # a neighbour: 40 of its 400 pixels under the galaxy
    masks[3, 10:50, 10:50] = True  # a looser mask around it: 960 of 1600 pixels its own
    scores = np.array([0.9, 0.6, 0.7, 0.5], np.float32)
    found = [
        {"rows": r, "cols": c, "class": "elliptical", "score": float(score), "class_score": 0.5}
        for (r, c), score in zip((np.nonzero(m) for m in masks), scores, strict=True)
    ]
    instances = _paint(found, np.zeros(shape, np.float32), shape)
    assert instances.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert instances.area.tolist() == [400, 360, 960]
    # the evaluation's view of the label map keeps the same instances with the same pixels
    prediction = {
        "masks": masks[:, None].astype(np.float32),
        "scores": scores,
        "labels": np.array([2, 2, 2, 2]),
    }
    catalog = as_catalog(prediction)
    assert catalog["scores"].tolist() == pytest.approx([0.9, 0.7, 0.5])
    # a type network's rescaled scores do not change the paint order: detection scores rule
    typed = as_catalog({**prediction, "scores": scores[::-1], "detection_scores": scores})
    np.testing.assert_array_equal(typed["masks"], catalog["masks"])
    painted = np.zeros(shape, np.int32)
    for k, mask in enumerate(catalog["masks"][:, 0] > 0):
        painted[mask] = k + 1
    np.testing.assert_array_equal(painted, instances.labels)
    assert prediction["masks"].shape == (4, 1, *shape)  # the input is left alone
    # which instances survive, as the colour typer's rule reads it (in tiles and in refine)
    labels, area, survives = painted_map([np.nonzero(m) for m in masks], scores, shape)
    assert survives.tolist() == [True, False, True, True]
    assert area.tolist() == [400, 0, 360, 960]
    assert [labels[30, 30], labels[45, 45], labels[12, 12]] == [1, 3, 4]
    np.testing.assert_array_equal(kept_instances(prediction), [0, 2, 3])
    # painted in the other order the loose mask, last, leaves the others too little
    reversed_order = {**prediction, "detection_scores": scores[::-1]}
    np.testing.assert_array_equal(kept_instances(reversed_order), [3])
    assert kept_instances({"scores": scores}).tolist() == [0, 1, 2, 3]  # no masks: all
    assert painted_map([], [], shape)[2].size == 0


def test_detection_map_perfect_and_missing():
    from skysift.evaluate.segmentation import detection_map

    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 2:8, 2:8] = True
    masks[1, 20:30, 20:30] = True
    truth = {"boxes": [[2, 2, 8, 8], [20, 20, 30, 30]], "labels": [1, 2], "masks": masks}
    perfect = {**truth, "scores": [0.9, 0.8]}
    assert detection_map([perfect], [truth])["mask_map_50"] == pytest.approx(1.0)
    half = {"boxes": [[2, 2, 8, 8]], "labels": [1], "masks": masks[:1], "scores": [0.9]}
    result = detection_map([half], [truth], class_metrics=True)
    assert result["mask_map_50_per_class"][1] == pytest.approx(1.0)
    assert result["mask_map_50_per_class"][2] == pytest.approx(0.0)


def test_match_instances_and_mask_centroid():
    from skysift.evaluate.segmentation import mask_centroid, match_instances

    true = np.zeros((2, 10, 10), dtype=bool)
    true[0, :5, :5] = True
    true[1, 5:, 5:] = True
    pred = np.stack([true[1], true[0] & (np.arange(10) < 4)[:, None]])
    p, t, iou = match_instances(pred, np.array([0.9, 0.5]), true)
    assert p.tolist() == [0, 1]
    assert t.tolist() == [1, 0]
    assert iou[0] == pytest.approx(1.0)
    assert iou[1] == pytest.approx(20 / 25)
    nothing = match_instances(np.zeros((0, 10, 10), dtype=bool), np.zeros(0), true)
    assert all(len(part) == 0 for part in nothing)
    image = np.zeros((10, 10))
    image[2, 3] = 1.0
    image[2, 5] = 3.0
    assert mask_centroid(image, image > 0) == pytest.approx((4.5, 2.0))


def test_box_matching_and_box_only_scores():
    from skysift.evaluate.segmentation import confusion_statistics, detection_map, match_boxes

    truth_boxes = np.array([[0, 0, 5, 5], [5, 5, 10, 10]], dtype=np.float32)
    predicted = np.array([[5, 5, 10, 10], [0, 0, 5, 4]], dtype=np.float32)
    p, t, iou = match_boxes(predicted, np.array([0.9, 0.5]), truth_boxes)
    assert p.tolist() == [0, 1]
    assert t.tolist() == [1, 0]
    assert iou.tolist() == pytest.approx([1.0, 20 / 25])
    assert all(len(part) == 0 for part in match_boxes(np.zeros((0, 4)), np.zeros(0), truth_boxes))
    # box-only predictions (no masks) are scored on boxes
    prediction = {"boxes": predicted, "labels": [2, 1], "scores": [0.9, 0.5]}
    truth = {"boxes": truth_boxes, "labels": [1, 2]}
    result = detection_map([prediction], [truth], class_metrics=True, masks=False)
    assert result["box_map_50"] == pytest.approx(1.0)
    assert "mask_map_50" not in result
    stats = confusion_statistics([prediction], [truth], ("star", "galaxy"), by="box")
    assert stats["confusion"][0][:2] == [1, 0]
    assert stats["confusion"][1][:2] == [0, 1]
    with pytest.raises(ValueError, match="by must be"):
        confusion_statistics([prediction], [truth], ("star", "galaxy"), by="pixel")


def test_precision_at_recall_by_snr_treats_faint_truth_as_neutral():
    from skysift.evaluate.segmentation import precision_at_recall_by_snr

    truth_boxes = np.array([[0, 0, 5, 5], [10, 10, 15, 15], [20, 20, 25, 25]], np.float32)
    truth = {"boxes": truth_boxes, "labels": [1, 2, 1]}  # star, galaxy, faint star
    snr = [np.array([50.0, 50.0, 3.0])]
    prediction = {
        "boxes": np.array(
            [[20, 20, 25, 25], [0, 0, 5, 5], [30, 30, 35, 35], [10, 10, 15, 15]], np.float32
        ),
        "labels": [1, 1, 2, 2],  # the faint star, the star, a spurious galaxy, the galaxy
        "scores": [0.95, 0.9, 0.99, 0.8],
    }
    rows = precision_at_recall_by_snr(
        [prediction], [truth], snr, ("star", "galaxy"), cuts=(1.0, 5.0, 60.0), by="box"
    )
    assert [r["snr_min"] for r in rows] == [1.0, 5.0, 60.0]
    # S/N >= 1: both stars required, both found first
    assert rows[0]["star_n"] == 2
    assert rows[0]["star_precision"] == 1.0
    # S/N >= 5: the faint star's match is neutral, not a false positive
    assert rows[1]["star_n"] == 1
    assert rows[1]["star_precision"] == 1.0
    assert rows[1]["star_max_recall"] == 1.0
    # the spurious galaxy ranks first: 80 % recall of one galaxy at precision 1/2
    assert rows[1]["galaxy_precision"] == 0.5
    assert np.isnan(rows[2]["star_precision"])
    assert rows[2]["galaxy_n"] == 0
    # ranked by the detection scores where a type network rescaled the scores
    typed = {**prediction, "detection_scores": [0.95, 0.9, 0.5, 0.8]}
    (row,) = precision_at_recall_by_snr(
        [typed], [truth], snr, ("star", "galaxy"), cuts=(5.0,), by="box"
    )
    assert row["galaxy_precision"] == 1.0  # the galaxy now ranks above the spurious one


def test_detections_of_sources_without_a_mask_are_neutral():
    from skysift.evaluate.segmentation import (
        confusion_statistics,
        precision_at_recall_by_snr,
        unmasked_detections,
    )

    truth = {"boxes": np.array([[0, 0, 5, 5]], np.float32), "labels": [2]}  # one galaxy
    snr = [np.array([50.0])]
    prediction = {
        "boxes": np.array(
            [[19, 19, 22, 22], [19, 20, 22, 23], [40, 40, 43, 43], [0, 0, 5, 5]], np.float32
        ),  # two on a faint source without a mask (centre (20, 20)), one on nothing, the galaxy
        "labels": [2, 2, 2, 2],
        "scores": [0.99, 0.98, 0.5, 0.9],
    }
    faint = {"x": np.array([20.0]), "y": np.array([20.2]), "snr": np.array([3.0])}
    matched = np.array([False, False, False, True])
    # one detection per source, the nearer; never one already matched to an instance
    found = unmasked_detections(prediction, matched, faint)
    assert found.tolist() == [True, False, False, False]
    assert not unmasked_detections(prediction, matched, None).any()
    assert not unmasked_detections(prediction, ~matched, faint).any()
    args = ([prediction], [truth], snr, ("star", "galaxy"))
    (strict,) = precision_at_recall_by_snr(*args, cuts=(5.0,), by="box")
    (lenient,) = precision_at_recall_by_snr(*args, cuts=(5.0,), by="box", unmasked=[faint])
    assert strict["galaxy_precision"] == pytest.approx(1 / 3)  # two false ones above it
    assert lenient["galaxy_precision"] == pytest.approx(1 / 2)  # the duplicate stays false
    stats = confusion_statistics(
        [prediction], [truth], ("star", "galaxy"), by="box", unmasked=[faint]
    )
    assert stats["confusion"][2][:2] == [0, 2]  # spurious: the duplicate and the empty one
    assert stats["on_unmasked"] == 1
    assert stats["precision_at_80_recall"]["galaxy"] == pytest.approx(1 / 2)


def test_loose_detections_of_instances_below_the_cut_are_neutral():
    from skysift.evaluate.segmentation import precision_at_recall_by_snr

    truth = {  # a bright galaxy and a faint one
        "boxes": np.array([[0, 0, 5, 5], [30, 30, 34, 34]], np.float32),
        "labels": [2, 2],
    }
    prediction = {  # the bright one, and the faint one with a box too wide (IoU 0.44)
        "boxes": np.array([[0, 0, 5, 5], [29, 29, 35, 35]], np.float32),
        "labels": [2, 2],
        "scores": [0.9, 0.97],
    }
    args = ([prediction], [truth], [np.array([50.0, 3.0])], ("star", "galaxy"))
    bright, both = precision_at_recall_by_snr(*args, cuts=(5.0, 1.0), by="box")
    assert bright["galaxy_n"] == 1
    assert bright["galaxy_precision"] == 1.0  # on a galaxy below the cut: neutral
    assert both["galaxy_n"] == 2  # required now: a false detection, the faint one missed
    assert both["galaxy_max_recall"] == 0.5
    assert np.isnan(both["galaxy_precision"])
    # an image without truth instances: its detections are false, nothing breaks
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": []}
    (row,) = precision_at_recall_by_snr(
        [prediction, prediction],
        [truth, empty],
        [np.array([50.0, 3.0]), np.zeros(0)],
        ("star", "galaxy"),
        cuts=(5.0,),
        by="box",
        unmasked=[None, {"x": np.zeros(0), "y": np.zeros(0), "snr": np.zeros(0)}],
    )
    assert row["galaxy_n"] == 1
    assert row["galaxy_precision"] == pytest.approx(1 / 2)  # its 0.97 ranks above the galaxy


def test_a_faint_instance_takes_the_detection_overlapping_it_most_whatever_its_centre():
    """A mask drawn much too wide over a faint instance, reaching to one side so that its
    box centre is far from the instance's, is that instance's detection: neutral above the
    instance's S/N. A second such detection, or one on an instance already found, counts."""
    from skysift.evaluate.segmentation import counted_detections, figure_matches

    def box_mask(x0, y0, x1, y1):
        mask = np.zeros((40, 40), bool)
        mask[y0:y1, x0:x1] = True
        return mask

    truth = {  # a bright galaxy, a faint one, a second faint one
        "masks": np.stack([box_mask(0, 0, 6, 6), box_mask(20, 20, 24, 24), box_mask(30, 2, 33, 5)]),
        "boxes": np.array([[0, 0, 6, 6], [20, 20, 24, 24], [30, 2, 33, 5]], np.float32),
        "labels": [2, 2, 2],
    }
    masks = np.stack(
        [
            box_mask(0, 0, 6, 6),  # the bright galaxy
            box_mask(19, 19, 31, 25),  # the first faint one, 4.5x too wide, centre 5 px off
            box_mask(22, 14, 23, 22),  # a second, smaller overlap with it
            box_mask(30, 2, 33, 5),  # the second faint one, matched
            box_mask(29, 1, 34, 6),  # a duplicate of it
        ]
    )
    prediction = {
        "masks": masks[:, np.newaxis].astype(np.float32),
        "boxes": np.array(
            [[0, 0, 6, 6], [19, 19, 31, 25], [22, 14, 23, 22], [30, 2, 33, 5], [29, 1, 34, 6]],
            np.float32,
        ),
        "labels": [2, 2, 2, 2, 2],
        "scores": [0.9, 0.8, 0.7, 0.6, 0.5],
    }
    (truth_index,), (found,) = figure_matches([prediction], [truth])
    assert truth_index.tolist() == [0, -1, -1, 2, -1]
    required = np.array([True, False, False])
    counts = counted_detections(prediction, truth, truth_index, found, required)
    assert counts.tolist() == [True, False, True, False, True]
    everything = counted_detections(prediction, truth, truth_index, found, np.ones(3, bool))
    assert everything.all()
    by_box = counted_detections(prediction, truth, truth_index, found, required, by="box")
    assert by_box.tolist() == [True, False, True, False, True]


def test_centroids_are_measured_onsky_subtracted_light():
    from skysift.evaluate.segmentation import mask_centroid
    from skysift.image import Image
    from skysift.segment import sky_subtracted_light

    image = _blobs((100, 100), [(50.0, 50.0)], amplitude=1000.0)  # sky level 100, noise 5
    mask = np.zeros((100, 100), bool)
    mask[38:75, 38:75] = True  # a mask reaching further on one side than the other
    x, y = mask_centroid(sky_subtracted_light(Image.from_array(image)), mask)
    assert abs(x - 50.0) < 0.3
    assert abs(y - 50.0) < 0.3
    raw_x, _ = mask_centroid(image, mask)
    assert raw_x > 52.0  # the sky would drag it towards the middle of the mask


def test_box_pasting_matches_torchvision_at_the_tile_edges():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from skysift.segment import _mask_pixels

    rng = np.random.default_rng(2_000_300)
    masks = rng.random((6, 1, 28, 28)).astype(np.float32)
    boxes = np.array(
        [
            [0, 0, 10, 12],
            [50.3, 40.7, 63.9, 63.9],
            [20, 30, 21, 31],
            [5.5, 60, 40.2, 64],
            [0, 0, 64, 64],
            [63, 2, 64, 9],
        ],
        dtype=np.float32,
    )
    whole = paste_masks_in_image(torch.from_numpy(masks), torch.from_numpy(boxes), (64, 64))
    expected = _mask_pixels(whole.numpy(), boxes, (64, 64), 0.5)
    assert sum(r.size for r, _ in expected) > 0
    for (rows, cols), (rows_tv, cols_tv) in zip(
        _mask_pixels(masks, boxes, (64, 64), 0.5), expected, strict=True
    ):
        np.testing.assert_array_equal(rows, rows_tv)
        np.testing.assert_array_equal(cols, cols_tv)
    assert _mask_pixels(masks[:0], boxes[:0], (64, 64), 0.5) == []


def _disc_probabilities(shape, centre, radius, falloff):
    """A mask probability falling from 1 at the centre to 0 at radius + falloff."""
    rows, cols = np.indices(shape)
    distance = np.hypot(cols - centre[0], rows - centre[1])
    return np.clip((radius + falloff - distance) / (2 * falloff), 0, 1).astype(np.float32)


def test_large_instances_are_painted_at_their_own_mask_threshold():
    """An instance of large_mask_area pixels or more (at mask_threshold) is painted at
    large_mask_threshold; a small one keeps mask_threshold, in the catalog view of the
    benchmarks and in the Segmenter's own painting alike."""
    from skysift.errors import InvalidParameterError
    from skysift.evaluate.segmentation import as_catalog

    shape = (120, 120)
    masks = np.stack(
        [_disc_probabilities(shape, (40, 40), 18, 6), _disc_probabilities(shape, (95, 95), 4, 3)]
    )[:, np.newaxis]
    prediction = {"masks": masks, "scores": np.array([0.9, 0.8]), "labels": np.array([2, 1])}
    plain = as_catalog(prediction)
    grown = as_catalog(prediction, large_mask_threshold=0.2, large_mask_area=300)
    areas = [m[0].sum() for m in plain["masks"]], [m[0].sum() for m in grown["masks"]]
    assert areas[0][0] > 300  # the large instance
    assert areas[1][0] > areas[0][0]  # grew at the lower threshold
    assert areas[1][1] == areas[0][1]  # the small one did not
    segmenter = _segmenter(large_mask_threshold=0.2, large_mask_area=300)
    pixels = [tuple(np.nonzero(m[0] >= 0.5)) for m in masks]
    redrawn = segmenter._large_masks_redrawn(pixels, masks, np.zeros((2, 4)), shape)
    assert [r.size for r, _ in redrawn] == [int(a) for a in areas[1]]
    assert _segmenter()._large_masks_redrawn(pixels, masks, np.zeros((2, 4)), shape) == pixels
    with pytest.raises(InvalidParameterError, match="large_mask_threshold must be in"):
        SegmentConfig(large_mask_threshold=1.5)
    with pytest.raises(InvalidParameterError, match="large_mask_area must be"):
        SegmentConfig(large_mask_area=0)


class _WideSegmenter(ThresholdSegmenter):
    """The stand-in with boxes and masks 6 px wider than the bright regions: a mask drawn
    at an edge of the data reaches past it, as the network's can (it reads masked pixels
    as zero)."""

    def forward(self, images):
        from scipy import ndimage

        outputs = super().forward(images)
        for out in outputs:
            masks = out["masks"].numpy()[:, 0] > 0.5
            grown = [ndimage.binary_dilation(m, iterations=6) for m in masks]
            out["masks"] = torch.from_numpy(np.array(grown, np.float32)).reshape(out["masks"].shape)
            out["boxes"] = out["boxes"] + torch.tensor([-6.0, -6.0, 6.0, 6.0])
        return outputs


def test_footprints_hold_only_pixels_with_data():
    """A source at the edge of flagged (or non-finite) pixels keeps only its pixels with data
    in the label map, its area counts those, and a wider mask does not claim the rest."""
    from skysift.image import Image

    pixels = _blobs((120, 160), [(40.0, 60.0), (110.0, 60.0)], sigma=4.0)
    flagged = np.zeros(pixels.shape, bool)
    flagged[:, 44:70] = True  # the first source's right side, off the detector
    pixels[:, 150:] = np.nan  # and a dead edge far from both
    segmenter = Segmenter(
        SegmentConfig(galaxy_types=None, tile=128, margin=16), module=_WideSegmenter(), card=CARD
    )
    catalog, labels = segment(Image.from_array(pixels, mask=flagged), segmenter=segmenter)
    assert len(catalog) == 2
    assert not labels[flagged].any()
    assert not labels[:, 150:].any()
    np.testing.assert_array_equal(
        np.sort(np.asarray(catalog["area"])), np.sort(np.bincount(labels.ravel())[1:])
    )
    # the source cut by the flags is flagged so; the other is whole
    from skysift.catalog import FLAGS

    cut = (np.asarray(catalog["flags"]) & FLAGS["truncated_footprint"]) > 0
    np.testing.assert_array_equal(cut, np.asarray(catalog["x_segment"]) < 80)
    # without the flags the same source's footprint reaches into those columns, and no
    # footprint is cut
    catalog, unflagged = segment(np.nan_to_num(pixels, nan=100.0), segmenter=segmenter)
    assert unflagged[:, 44:70].any()
    assert not (np.asarray(catalog["flags"]) & FLAGS["truncated_footprint"]).any()


def test_footprints_at_the_image_edge_are_flagged_truncated():
    from skysift.catalog import FLAGS, decode_flags
    from skysift.segment import truncated_footprints

    labels = np.zeros((20, 30), np.int32)
    labels[0:3, 5:8] = 1  # touches the first row
    labels[8:12, 10:14] = 2  # whole
    labels[15:19, 26:30] = 3  # touches the last column
    labels[8:10, 20:22] = 4  # next to a masked pixel
    masked = np.zeros(labels.shape, bool)
    masked[10, 21] = True
    np.testing.assert_array_equal(truncated_footprints(labels, masked), [True, False, True, True])
    np.testing.assert_array_equal(
        truncated_footprints(labels, np.zeros_like(masked)), [True, False, True, False]
    )
    assert truncated_footprints(np.zeros((5, 5), np.int32), masked[:5, :5]).size == 0
    assert decode_flags(FLAGS["truncated_footprint"]) == ["truncated_footprint"]


def test_footprints_that_touch_are_flagged_blended():
    """Footprints that meet at a side or a corner were divided between two sources; one
    with a pixel of sky between it and the next was not."""
    from skysift.segment import touching_footprints

    labels = np.zeros((12, 12), np.int32)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:6] = 2  # side by side with 1
    labels[6:8, 6:8] = 3
    labels[8:10, 8:10] = 4  # corner to corner with 3
    labels[6:8, 11:12] = 5  # a column of sky from 4, three from 3
    np.testing.assert_array_equal(touching_footprints(labels), [True, True, True, True, False])
    assert touching_footprints(np.zeros((3, 3), np.int32)).size == 0


def test_the_chains_star_probability_is_its_last_calls():
    """P(star | source): the colour typer's where it typed, else the looks' where they
    decided, else the heads'; the looks' and the typer's P(false) divided out."""
    from skysift.segment import star_probabilities

    heads = {
        "labels": np.array([1, 2, 2, 1]),
        "p_star": np.array([0.6, 0.1, 0.2, 0.0]),
        "p_galaxy": np.array([0.2, 0.8, 0.6, 0.0]),
    }
    np.testing.assert_allclose(star_probabilities(heads), [0.75, 1 / 9, 0.25, np.nan])
    looked = heads | {
        "p_star_second_look": np.array([np.nan, 0.3, 0.5, np.nan]),
        "p_false_second_look": np.array([np.nan, 0.4, 0.0, np.nan]),
    }
    np.testing.assert_allclose(star_probabilities(looked), [0.75, 0.5, 0.5, np.nan])
    typed = looked | {
        "p_star_colour": np.array([0.1, np.nan, 0.9, np.nan]),
        "p_false_colour": np.array([0.5, np.nan, 0.1, np.nan]),
    }
    np.testing.assert_allclose(star_probabilities(typed), [0.2, 0.5, 1.0, np.nan])
