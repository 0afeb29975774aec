"""Matching, detection metrics and classification metrics on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.evaluate.classification import (
    binned_classification_metrics,
    classification_metrics,
    expected_calibration_error,
    reliability_curve,
)
from skysift.evaluate.matching import match_catalogs
from skysift.evaluate.metrics import binned_detection_metrics, detection_metrics, local_density


def test_two_detections_near_one_truth_give_one_tp_one_fp():
    match = match_catalogs([10.0, 10.9], [5.0, 5.0], [10.2], [5.0], radius=1.5)
    assert (match.tp, match.fp, match.fn) == (1, 1, 0)
    assert list(match.tp_detections) == [0]  # the closer one wins
    assert list(match.fp_detections) == [1]
    assert match.dx[0] == pytest.approx(-0.2)


def test_assignment_maximizes_matches_not_greedy_distance():
    # detection 0 is closest to truth 0 but also the only one that can reach truth 1;
    # greedy nearest-first would match (0, 0) and leave truth 1 unmatched
    detections_x, detections_y = [1.0, 0.0], [0.0, 0.0]
    truth_x, truth_y = [0.9, 2.2], [0.0, 0.0]
    match = match_catalogs(detections_x, detections_y, truth_x, truth_y, radius=1.3)
    assert (match.tp, match.fp, match.fn) == (2, 0, 0)
    assert dict(zip(match.detection_index, match.truth_index, strict=True)) == {0: 1, 1: 0}


def test_empty_inputs():
    empty = np.zeros(0)
    match = match_catalogs(empty, empty, [1.0, 2.0], [1.0, 2.0])
    assert (match.tp, match.fp, match.fn) == (0, 0, 2)
    metrics = detection_metrics(match)
    assert metrics["recall"] == 0.0
    assert np.isnan(metrics["precision"])
    assert metrics["f1"] == 0.0
    match = match_catalogs([1.0], [1.0], empty, empty)
    assert (match.tp, match.fp, match.fn) == (0, 1, 0)
    both = detection_metrics(match_catalogs(empty, empty, empty, empty))
    assert np.isnan(both["f1"])
    assert np.isnan(both["centroid_rms"])


def test_all_matched_and_none_matched():
    truth = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 20.0]])
    offsets = np.array([[0.3, 0.0], [0.0, -0.4], [0.0, 0.0]])
    found = truth + offsets
    metrics = detection_metrics(match_catalogs(found[:, 0], found[:, 1], truth[:, 0], truth[:, 1]))
    assert metrics["f1"] == 1.0
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == 1.0
    assert metrics["centroid_rms"] == pytest.approx(np.sqrt((0.09 + 0.16) / 3))
    far = found + 20
    metrics = detection_metrics(match_catalogs(far[:, 0], far[:, 1], truth[:, 0], truth[:, 1]))
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (0, 3, 3)
    assert metrics["f1"] == 0.0


def test_not_required_truth_is_neutral():
    truth_x, truth_y = [0.0, 10.0, 20.0], [0.0, 0.0, 0.0]
    required = [True, False, False]
    # finds the required one and one faint one; misses the other faint one
    match = match_catalogs([0.1, 10.1], [0.0, 0.0], truth_x, truth_y, required=required)
    assert (match.tp, match.fp, match.fn) == (1, 0, 0)
    assert list(match.neutral_detections) == [1]
    metrics = detection_metrics(match)
    assert metrics["neutral"] == 1
    assert metrics["f1"] == 1.0


def test_per_area_counts():
    match = match_catalogs([0.0], [0.0], [0.0, 50.0], [0.0, 50.0])
    metrics = detection_metrics(match, pixel_scale=0.6, area_pixels=100 * 100)
    assert metrics["area_arcmin2"] == pytest.approx(1.0)
    assert metrics["fn_per_arcmin2"] == pytest.approx(1.0)


def test_match_is_fast_and_exact_on_a_dense_field(rng):
    truth = rng.uniform(0, 2000, (20000, 2))
    detections = truth + rng.normal(0, 0.3, truth.shape)
    match = match_catalogs(detections[:, 0], detections[:, 1], truth[:, 0], truth[:, 1])
    assert match.tp >= 19900


def test_invalid_match_inputs():
    with pytest.raises(InvalidParameterError, match="radius must be a positive"):
        match_catalogs([0.0], [0.0], [0.0], [0.0], radius=0)
    with pytest.raises(InvalidParameterError, match="detected x and y differ"):
        match_catalogs([0.0, 1.0], [0.0], [0.0], [0.0])
    with pytest.raises(InvalidParameterError, match="NaN"):
        match_catalogs([np.nan], [0.0], [0.0], [0.0])
    with pytest.raises(InvalidParameterError, match="one value per truth source"):
        match_catalogs([0.0], [0.0], [0.0], [0.0], required=[True, False])


def test_binned_metrics_put_fn_and_fp_in_their_bins():
    truth_x = np.array([0.0, 10.0, 20.0, 30.0])
    truth_snr = np.array([3.0, 8.0, 30.0, 100.0])
    detected_x = np.array([0.1, 20.1, 60.0])
    detected_snr = np.array([3.1, 29.0, 6.0])
    match = match_catalogs(detected_x, np.zeros(3), truth_x, np.zeros(4))
    table = binned_detection_metrics(
        match,
        truth_values=truth_snr,
        detection_values=detected_snr,
        bins=[0, 5, 20, 1000],
        name="snr",
    )
    assert list(table["tp"]) == [1, 0, 1]
    assert list(table["fn"]) == [0, 1, 1]
    assert list(table["fp"]) == [0, 1, 0]
    assert table["recall"][2] == 0.5
    assert table["precision"][1] == 0.0


def test_local_density():
    density = local_density(
        [0.0], [0.0], [0.0, 1.0, 100.0], [0.0, 0.0, 0.0], radius=10.0, pixel_scale=6.0
    )
    # two sources within 10 px = 1 arcmin of the point: 2 / (pi * 1 arcmin^2)
    assert density[0] == pytest.approx(2 / np.pi)


def test_classification_perfect_and_random():
    y = np.array([1, 1, 1, 0, 0, 0])
    perfect = classification_metrics(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert perfect["roc_auc"] == 1.0
    assert perfect["auprc_positive"] == 1.0
    assert perfect["auprc_negative"] == 1.0
    assert perfect["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.09, 0.09, 0.04, 0.01]))
    inverted = classification_metrics(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert inverted["roc_auc"] == 0.0


def test_ece_by_hand():
    # bin [0.2, 0.3): p = 0.25 twice, one positive -> gap |0.5 - 0.25| = 0.25
    # bin [0.9, 1.0]: p = 0.95 twice, both positive -> gap 0.05
    y = [0, 1, 1, 1]
    p = [0.25, 0.25, 0.95, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    curve = reliability_curve(y, p)
    assert curve["count"][2] == 2
    assert curve["count"][9] == 2
    assert curve["fraction_positive"][2] == 0.5


def test_single_class_gives_nan_auc_not_an_error():
    metrics = classification_metrics([1, 1, 1], [0.9, 0.8, 0.7])
    assert np.isnan(metrics["roc_auc"])
    assert metrics["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.09]))


def test_binned_classification_metrics(rng):
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, 400), 0, 1)
    snr = rng.uniform(1, 100, 400)
    table = binned_classification_metrics(y, p, snr, bins=[1, 10, 100])
    assert len(table) == 2
    assert table["n"].sum() == 400
    assert np.all(table["roc_auc"] == 1.0)


def test_classification_input_validation():
    with pytest.raises(InvalidParameterError, match="labels must be 0 or 1"):
        classification_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(InvalidParameterError, match="within \\[0, 1\\]"):
        classification_metrics([0, 1], [0.1, 1.2])


def test_match_to_truth_applies_the_standard_rules():
    from skysift.evaluate.matching import match_to_truth

    truth_x, truth_y = [0.0, 10.0, 20.0, 30.0], [0.0, 0.0, 0.0, 0.0]
    snr = [50.0, 3.0, 1.0, 8.0]  # required, neutral, left out, required
    detected = [0.2, 10.1, 20.0]  # finds the bright one, the neutral one and the too-faint one
    match, kept = match_to_truth(detected, [0.0] * 3, truth_x, truth_y, snr)
    assert list(kept) == [0, 1, 3]
    assert (match.tp, match.fp, match.fn) == (1, 1, 1)
    assert list(match.neutral_detections) == [1]
