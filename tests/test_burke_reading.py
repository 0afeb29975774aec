"""Burke et al.'s reading of their figure: per-image curves, resampled and averaged."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.evaluate.burke_reading import (
    image_curves,
    image_rankings,
    mean_curve_interval,
    pooled_in_groups,
    ranking_curve,
    read_mean_curve,
)

CLASSES = ("star", "elliptical", "spiral", "other")
STAR, ELLIPTICAL, SPIRAL = 1, 2, 3


def squares(corners, size=40, side=4):
    """Boolean ``(n, size, size)`` masks: a ``side``-pixel square at each (row, col)."""
    masks = np.zeros((len(corners), size, size), dtype=bool)
    for k, (row, col) in enumerate(corners):
        masks[k, row : row + side, col : col + side] = True
    return masks


def prediction(masks, labels, scores):
    return {
        "masks": masks[:, None].astype(np.float32),
        "labels": np.asarray(labels),
        "scores": np.asarray(scores, dtype=float),
    }


def their_curve(right, n_true, points=50):
    """The published algorithm, step by step (loops as written in their code)."""
    precisions = [0.0]
    recalls = [0.0]
    hits = 0
    for k, hit in enumerate(right):
        hits += bool(hit)
        precisions.append(hits / (k + 1))
        recalls.append(hits / n_true)
    precisions.append(0.0)
    recalls.append(1.0)
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    where = np.linspace(0, len(precisions), points)
    index = np.arange(len(precisions))
    return np.interp(where, index, precisions), np.interp(where, index, recalls)


def assert_curve(curve, right, n_true):
    precision, recall = their_curve(right, n_true)
    np.testing.assert_allclose(curve.precision, precision)
    np.testing.assert_allclose(curve.recall, recall)


def test_one_image_curve_follows_the_published_steps():
    truth = squares([(2, 2), (2, 20), (20, 2)])
    target = {"masks": truth, "labels": np.array([SPIRAL, ELLIPTICAL, SPIRAL])}
    # ranked: right, on nothing, right, and one below the 0.5 confidence cut that would match
    pred = squares([(2, 2), (30, 30), (2, 20), (20, 2)])
    curves = image_curves(
        prediction(pred, [SPIRAL, SPIRAL, ELLIPTICAL, SPIRAL], [0.9, 0.8, 0.7, 0.4]),
        target,
        CLASSES,
    )
    precision, recall = their_curve([True, False, True], 3)
    np.testing.assert_allclose(curves["galaxy"].precision, precision)
    np.testing.assert_allclose(curves["galaxy"].recall, recall)
    assert curves["galaxy"].max_recall == pytest.approx(2 / 3)
    assert curves["star"] is None  # no truth star: left out of the stars' mean


def test_a_detection_of_the_other_group_neither_matches_nor_counts():
    truth = squares([(2, 2), (20, 20)])
    target = {"masks": truth, "labels": np.array([STAR, SPIRAL])}
    # the galaxy is called a star: a false star, and the galaxy is missed
    pred = squares([(2, 2), (20, 20)])
    curves = image_curves(prediction(pred, [STAR, STAR], [0.9, 0.8]), target, CLASSES)
    assert_curve(curves["star"], [True, False], 1)
    assert_curve(curves["galaxy"], [], 1)


def test_masks_must_overlap_at_half_to_match():
    truth = squares([(2, 2)], side=6)
    target = {"masks": truth, "labels": np.array([SPIRAL])}
    shifted = squares([(2, 5)], side=6)  # 3 of 6 columns shared: IoU 18 / 54
    curves = image_curves(prediction(shifted, [SPIRAL], [0.9]), target, CLASSES)
    assert_curve(curves["galaxy"], [False], 1)


def test_perfect_images_read_precision_one():
    truth = squares([(2, 2), (2, 20), (20, 2), (20, 20)])
    target = {"masks": truth, "labels": np.array([SPIRAL] * 4)}
    curves = image_curves(prediction(truth, [SPIRAL] * 4, [0.9, 0.8, 0.7, 0.6]), target, CLASSES)
    result = read_mean_curve([curves["galaxy"]] * 3)
    assert result["images"] == 3
    assert result["precision"] == pytest.approx(1.0)
    assert result["max_recall"] == pytest.approx(1.0)


def test_mean_is_over_images_not_detections():
    """An image with one detection weighs as much as an image with many: the reading differs
    from the pooled curve's."""
    many = squares([(2, 2 + 6 * k) for k in range(5)], side=4)
    target_many = {"masks": many, "labels": np.array([SPIRAL] * 5)}
    good = image_curves(prediction(many, [SPIRAL] * 5, [0.9] * 5), target_many, CLASSES)
    one = squares([(2, 2)])
    target_one = {"masks": one, "labels": np.array([SPIRAL])}
    bad = image_curves(prediction(squares([(30, 30)]), [SPIRAL], [0.9]), target_one, CLASSES)
    mean = read_mean_curve([good["galaxy"], bad["galaxy"]])
    expected = (np.stack(their_curve([True] * 5, 5)) + np.stack(their_curve([False], 1))) / 2
    np.testing.assert_allclose(mean["curve_precision"], expected[0])
    np.testing.assert_allclose(mean["curve_recall"], expected[1])
    # mean recall reaches 0.8 only on the ramp to the end points, which pull precision down
    assert mean["max_recall"] == pytest.approx(0.5)
    assert mean["precision"] < 0.6


def test_no_curves_and_bad_interval_options():
    assert read_mean_curve([None, None])["images"] == 0
    assert np.isnan(read_mean_curve([])["precision"])
    with pytest.raises(InvalidParameterError, match="confidence"):
        mean_curve_interval([None], confidence=1.5)
    with pytest.raises(InvalidParameterError, match="points"):
        image_curves(
            prediction(squares([(2, 2)]), [STAR], [0.9]),
            {"masks": squares([(2, 2)]), "labels": np.array([STAR])},
            CLASSES,
            points=1,
        )


def test_ranking_curve_takes_a_figure_entry_and_the_confidence_cut():
    """An entry of figure_rankings (scores, right, n_true) gives the same curve as the
    published steps on the detections at or above 0.5, in score order."""
    curve = ranking_curve(np.array([0.3, 0.9, 0.6, 0.7]), np.array([1, 0, 1, 1], bool), 4)
    assert_curve(curve, [False, True, True], 4)
    assert curve.max_recall == pytest.approx(0.5)
    assert ranking_curve(np.array([0.9]), np.array([True]), 0) is None
    empty = ranking_curve(np.zeros(0), np.zeros(0, bool), 2)
    assert_curve(empty, [], 2)
    assert empty.max_recall == 0.0


def test_interval_brackets_the_reading():
    rng = np.random.default_rng(3)
    curves = []
    for _ in range(20):
        n = int(rng.integers(2, 6))
        truth = squares([(2, 2 + 6 * k) for k in range(n)])
        target = {"masks": truth, "labels": np.array([SPIRAL] * n)}
        hit = rng.random(n) < 0.8
        pred = squares([(2 if h else 30, 2 + 6 * k) for k, h in enumerate(hit)])
        curves.append(
            image_curves(
                prediction(pred, [SPIRAL] * n, rng.random(n) * 0.5 + 0.5), target, CLASSES
            )["galaxy"]
        )
    result = mean_curve_interval(curves, n_resamples=200)
    assert result["low"] <= result["precision"] <= result["high"]
    assert result["precision"] == read_mean_curve(curves)["precision"]


def test_rankings_pool_as_one_larger_image():
    """Four fields pooled give the curve of one field holding all their detections."""
    entries = [
        (np.array([0.9, 0.6]), np.array([True, False]), 2),
        (np.array([0.8]), np.array([True]), 1),
        (np.array([0.7, 0.55]), np.array([True, True]), 3),
        (np.zeros(0), np.zeros(0, bool), 1),
        (np.array([0.95]), np.array([False]), 1),
    ]
    pools = pooled_in_groups(entries, 4)
    assert len(pools) == 1  # the fifth field does not fill a pool
    assert_curve(ranking_curve(*pools[0]), [True, True, True, False, True], 7)
    assert pooled_in_groups(entries, 1)[4][2] == 1
    with pytest.raises(InvalidParameterError, match="size"):
        pooled_in_groups(entries, 0)


def test_image_rankings_give_the_curves_entries():
    truth = squares([(2, 2), (20, 20)])
    target = {"masks": truth, "labels": np.array([SPIRAL, STAR])}
    pred = prediction(squares([(2, 2), (20, 20), (30, 2)]), [SPIRAL, STAR, SPIRAL], [0.9, 0.8, 0.3])
    rankings = image_rankings(pred, target, CLASSES)
    np.testing.assert_array_equal(rankings["galaxy"][0], [0.9])  # 0.3 is below the cut
    np.testing.assert_array_equal(rankings["galaxy"][1], [True])
    assert rankings["galaxy"][2] == 1
    assert rankings["star"][2] == 1
    kept_all = image_rankings(pred, target, CLASSES, min_score=0.0)
    np.testing.assert_array_equal(kept_all["galaxy"][1], [True, False])
