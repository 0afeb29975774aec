"""Test-time augmentation: views of the pixel grid mapped back, and segmenter detections fused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.augmentation import (
    AUGMENTATIONS,
    boxes_from_view,
    check_augment,
    from_view,
    to_view,
)
from skysift.errors import InvalidParameterError
from skysift.segment_augment import fuse_views


def _box_of(array: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(array)
    return np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], dtype=float)


@pytest.mark.parametrize("view", AUGMENTATIONS["d4"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_box_and_its_contents_found_in_a_view_map_back_to_the_image(view, as_tensor):
    """A patch of distinct values in a non-square image: its box found in each of the 8
    views maps back to the patch's box, and the view's crop of that box maps back to the
    patch itself."""
    quarter_turns, flip = view
    image = np.zeros((20, 31))
    image[3:7, 10:18] = np.arange(32).reshape(4, 8) + 1
    seen = to_view(torch.from_numpy(image), *view).numpy() if as_tensor else to_view(image, *view)
    box = _box_of(seen)
    x0, y0, x1, y1 = box[0].astype(int)
    crop = seen[y0:y1, x0:x1].copy()
    if as_tensor:
        back_box = boxes_from_view(torch.from_numpy(box), *view, shape=image.shape).numpy()
        back_crop = from_view(torch.from_numpy(crop), quarter_turns, flip).numpy()
    else:
        back_box = boxes_from_view(box, *view, shape=image.shape)
        back_crop = from_view(crop, quarter_turns, flip)
    np.testing.assert_array_equal(back_box, [[10, 3, 18, 7]])
    np.testing.assert_array_equal(back_crop, image[3:7, 10:18])
    np.testing.assert_array_equal(from_view(to_view(image, *view), *view), image)


def test_unknown_augmentations_are_refused_by_name():
    for bad in ("rot", ["flips"], 4):
        with pytest.raises(InvalidParameterError, match="augment must be one of"):
            check_augment(bad)
    check_augment(None)
    check_augment("d4")


def _view(boxes, labels, scores, p_star, masks=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    scores = torch.tensor(scores, dtype=torch.float32)
    p_star = torch.tensor(p_star, dtype=torch.float32)
    if masks is None:
        masks = torch.ones((n, 1, 28, 28))
    return {
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": scores,
        "p_star": p_star,
        "p_galaxy": torch.where(p_star == scores, 1 - scores, scores),
        "masks": masks,
        "mask_boxes": boxes.clone(),
    }


def test_views_of_one_source_fuse_into_one_detection_scored_over_every_view():
    """Two views: one source found in both (a star in one, a galaxy in the other), one
    galaxy found in one view only, and a faint detection found once. The shared source
    becomes one detection with P(star) and P(galaxy) averaged over both views, its box the
    mean box and its mask box their union; the lone galaxy keeps half its score and its
    class; the lone faint one falls below the score cut."""
    star, spiral, other = 1, 3, 4
    first = _view(
        [[10, 10, 20, 20], [40, 40, 50, 52], [70, 5, 74, 9]],
        [star, spiral, spiral],
        [0.9, 0.8, 0.08],
        [0.9, 0.1, 0.0],
    )
    second = _view([[11, 10, 21, 20]], [spiral], [0.6], [0.35])
    fused = fuse_views(
        [first, second], shape=(64, 96), star_label=star, galaxy_label=other, score_threshold=0.05
    )
    assert len(fused["scores"]) == 2
    shared, lone = 0, 1
    assert fused["p_star"][shared].item() == pytest.approx((0.9 + 0.35) / 2)
    assert fused["p_galaxy"][shared].item() == pytest.approx((0.1 + 0.6) / 2)
    assert fused["labels"][shared].item() == star
    assert fused["scores"][shared].item() == pytest.approx(0.625)
    np.testing.assert_allclose(fused["boxes"][shared], [10.5, 10, 20.5, 20])
    np.testing.assert_allclose(fused["mask_boxes"][shared], [10, 10, 21, 20])
    assert fused["labels"][lone].item() == spiral
    assert fused["scores"][lone].item() == pytest.approx(0.4)
    assert fused["masks"].shape == (2, 1, 28, 28)
    # inside the union of the members' boxes the shared mask is 1 where both cover it,
    # 1/2 where only one does
    mask = fused["masks"][shared, 0].numpy()
    assert mask[14, 14] == pytest.approx(1.0)
    assert mask[14, 0] == pytest.approx(0.5, abs=0.05)
    assert mask[14, -1] == pytest.approx(0.5, abs=0.05)


def test_detections_overlapping_too_little_stay_apart_and_a_view_gives_one_member():
    """Two views whose detections overlap with mask IoU 1/3 are two sources; a view's two
    detections of one source are never fused with each other."""
    star, other = 1, 4
    first = _view([[0, 0, 10, 10], [0, 0, 10, 10]], [other, other], [0.9, 0.7], [0.05, 0.1])
    second = _view([[5, 0, 15, 10]], [other], [0.8], [0.1])
    fused = fuse_views([first, second], shape=(32, 32), star_label=star, galaxy_label=other)
    assert len(fused["scores"]) == 3
    np.testing.assert_allclose(sorted(fused["scores"].tolist()), [0.35, 0.4, 0.45], atol=1e-6)


def test_a_galaxy_whose_views_all_said_star_gets_the_catch_all_class():
    star, other = 1, 4
    first = _view([[0, 0, 10, 10]], [star], [0.5], [0.5])  # P(galaxy) 0.5 too
    second = _view([[0, 0, 10, 10]], [star], [0.45], [0.45])
    second["p_galaxy"] = torch.tensor([0.55])
    second["scores"] = torch.tensor([0.55])
    second["labels"] = torch.tensor([star])
    fused = fuse_views([first, second], shape=(16, 16), star_label=star, galaxy_label=other)
    assert fused["labels"].tolist() == [other]
    assert fused["scores"].item() == pytest.approx(0.525)


def test_no_detections_in_any_view_fuse_to_none():
    empty = _view(np.zeros((0, 4)), [], [], [], masks=torch.zeros((0, 1, 28, 28)))
    fused = fuse_views([empty, empty], shape=(16, 16), star_label=1, galaxy_label=4)
    assert {key: len(value) for key, value in fused.items()} == dict.fromkeys(fused, 0)


def test_views_of_a_box_only_detector_are_refused_by_name():
    from skysift.models.segmenter import SegmenterConfig, build_segmenter
    from skysift.train.segmenter import predict

    model = build_segmenter(SegmenterConfig(masks=False))
    image = np.zeros((3, 256, 256), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="augment='flips' fuses"):
        predict(model, [image], augment="flips")
