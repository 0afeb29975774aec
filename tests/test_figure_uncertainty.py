"""Burke et al.'s figure image by image, and its bootstrap interval over the images."""

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.evaluate.figure_uncertainty import (
    precision_at_recall_interval,
    precision_at_recall_intervals_by_snr,
)
from skysift.evaluate.segmentation import figure_rankings, precision_at_recall_by_snr

CLASSES = ("star", "galaxy")


def _image(n_galaxies: int, *, spurious_score: float | None) -> tuple[dict, dict, np.ndarray]:
    """An image with ``n_galaxies`` bright galaxies, all found (scores 0.9 down), a faint star
    found too, and optionally a spurious galaxy detection scored ``spurious_score``."""
    boxes = [[10 * k, 0, 10 * k + 5, 5] for k in range(n_galaxies)] + [[0, 50, 5, 55]]
    truth = {"boxes": np.array(boxes, np.float32), "labels": [2] * n_galaxies + [1]}
    snr = np.array([60.0] * n_galaxies + [3.0])
    found = list(boxes)
    labels = [2] * n_galaxies + [1]
    scores = [0.9 - 0.01 * k for k in range(n_galaxies)] + [0.5]
    if spurious_score is not None:
        found.append([100, 100, 105, 105])
        labels.append(2)
        scores.append(spurious_score)
    prediction = {"boxes": np.array(found, np.float32), "labels": labels, "scores": scores}
    return prediction, truth, snr


def _images(specs):
    predictions, targets, snr = zip(*(_image(n, spurious_score=s) for n, s in specs), strict=True)
    return list(predictions), list(targets), list(snr)


def test_the_rankings_image_by_image_give_the_figure():
    predictions, targets, snr = _images([(3, 0.99), (2, None), (4, 0.1)])
    (ranked,) = figure_rankings(predictions, targets, snr, CLASSES, cuts=(50.0,), by="box")
    assert ranked["snr_min"] == 50.0
    assert [image[2] for image in ranked["galaxy"]] == [3, 2, 4]
    assert [image[2] for image in ranked["star"]] == [0, 0, 0]  # the star is below the cut
    first = ranked["galaxy"][0]
    assert first[0].tolist() == pytest.approx([0.9, 0.89, 0.88, 0.99])
    assert first[1].tolist() == [True, True, True, False]
    (row,) = precision_at_recall_by_snr(predictions, targets, snr, CLASSES, cuts=(50.0,), by="box")
    # 9 galaxies; the spurious 0.99 ranks first, the 0.1 one last: 80 % recall needs 8 of them
    assert row["galaxy_n"] == 9
    assert row["galaxy_precision"] == pytest.approx(8 / 9)


def test_identical_images_give_an_interval_of_one_point():
    predictions, targets, snr = _images([(4, 0.95)] * 6)
    (row,) = precision_at_recall_intervals_by_snr(
        predictions, targets, snr, CLASSES, cuts=(50.0,), by="box", n_resamples=50
    )
    assert row["galaxy_n"] == 24
    # the six spurious detections rank first; 80 % recall needs 20 of the 24: 20 / 26.
    # Any resample of identical images holds the same ranking, scaled.
    assert row["galaxy_precision"] == pytest.approx(20 / 26)
    assert row["galaxy_low"] == pytest.approx(20 / 26)
    assert row["galaxy_high"] == pytest.approx(20 / 26)
    assert row["galaxy_reached"] == 1.0
    assert np.isnan(row["star_precision"])
    assert row["star_reached"] == 0.0


def test_the_interval_spans_what_resampled_images_give_and_is_seeded():
    clean = (np.array([0.9, 0.8]), np.array([True, True]), 2)
    dirty = (np.array([0.99, 0.9]), np.array([False, True]), 1)
    per_image = [clean] * 5 + [dirty] * 5
    interval = precision_at_recall_interval(per_image, n_resamples=400, seed=3)
    assert interval == precision_at_recall_interval(per_image, n_resamples=400, seed=3)
    # every image clean gives 1; the false ones ranked first lower it
    assert interval["low"] < interval["precision"] < interval["high"] <= 1.0
    assert interval["reached"] == 1.0
    wider = precision_at_recall_interval(per_image, n_resamples=400, seed=3, confidence=0.99)
    assert wider["low"] <= interval["low"]
    assert wider["high"] >= interval["high"]


def test_a_recall_reached_in_few_resamples_has_a_low_end_of_zero():
    missed = (np.array([0.9]), np.array([True]), 3)  # one of three found
    found = (np.array([0.9]), np.array([True]), 1)
    interval = precision_at_recall_interval([missed] + [found] * 9, n_resamples=300)
    assert interval["precision"] == pytest.approx(1.0)  # 10 of 12 found: 83 %
    assert 0.0 < interval["reached"] < 1.0
    assert interval["low"] == 0.0
    empty = precision_at_recall_interval([])
    assert np.isnan(empty["precision"])
    assert np.isnan(empty["reached"])


def test_bad_interval_options_are_refused():
    with pytest.raises(InvalidParameterError, match="confidence"):
        precision_at_recall_interval([], confidence=1.0)
    with pytest.raises(InvalidParameterError, match="n_resamples"):
        precision_at_recall_interval([], n_resamples=0)
