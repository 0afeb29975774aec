"""Platt and logit-transformed Platt scaling against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.calibration import PlattCalibration, fit_platt
from skysift.errors import InvalidParameterError
from skysift.evaluate.classification import expected_calibration_error


def _logit(p):
    return np.log(p / (1 - p))


def test_two_score_groups_are_fitted_exactly():
    # Two distinct scores; with two parameters the maximum-likelihood fit reproduces each
    # group's observed frequency, so A and B follow from two linear equations:
    #   A * logit(0.2) + B = -logit(0.25)      (score 0.2: 1 positive in 4)
    #   A * logit(0.9) + B = -logit(0.75)      (score 0.9: 3 positives in 4)
    scores = np.array([0.2] * 4 + [0.9] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    x1, x2 = _logit(0.2), _logit(0.9)
    y1, y2 = -_logit(0.25), -_logit(0.75)
    a = (y2 - y1) / (x2 - x1)
    b = y1 - a * x1
    fitted = fit_platt(scores, labels, logit_input=True)
    assert fitted.a == pytest.approx(a, abs=1e-5)
    assert fitted.b == pytest.approx(b, abs=1e-5)
    np.testing.assert_allclose(fitted(np.array([0.2, 0.9])), [0.25, 0.75], atol=1e-6)
    classic = fit_platt(scores, labels, logit_input=False)
    np.testing.assert_allclose(classic(np.array([0.2, 0.9])), [0.25, 0.75], atol=1e-6)


def test_overconfident_scores_get_calibrated(rng):
    # truth: P(y=1) = sigmoid(0.5 * logit(f)): the scores are far too confident
    f = rng.uniform(0.001, 0.999, 50_000)
    y = (rng.random(f.size) < 1 / (1 + np.exp(-0.5 * _logit(f)))).astype(int)
    before = expected_calibration_error(y, f)
    calibration = fit_platt(f, y)
    assert calibration.a == pytest.approx(-0.5, abs=0.03)
    assert calibration.b == pytest.approx(0.0, abs=0.03)
    after = expected_calibration_error(y, calibration(f))
    assert before > 0.08
    assert after < 0.01


def test_round_trip_and_validation():
    calibration = PlattCalibration(a=-1.3, b=0.2, logit_input=True)
    assert PlattCalibration.from_dict(calibration.to_dict()) == calibration
    assert calibration.to_dict()["method"] == "lt-platt"
    with pytest.raises(InvalidParameterError, match="both classes"):
        fit_platt([0.1, 0.2], [1, 1])
    with pytest.raises(InvalidParameterError, match="matching scores and labels"):
        fit_platt([0.1, 0.2, 0.3], [1, 0])
