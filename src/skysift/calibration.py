"""Probability calibration: Platt scaling and ASID-C's logit-transformed Platt scaling.

Platt scaling maps a classifier score ``f`` to ``P = 1 / (1 + exp(A f + B))``. ASID-C's
logit-transformed (L-T) variant applies it to ``logit(f)`` instead,
``P = 1 / (1 + exp(A logit(f) + B))`` (Stoppa et al. 2023, eq. 4), which suits networks whose
sigmoid outputs pile up near 0 and 1. ``A`` and ``B`` are maximum-likelihood estimates on a
held-out calibration split (scikit-learn's unpenalized logistic regression), stored with the
model weights in its card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["PlattCalibration", "fit_platt"]

#: Scores are clipped to [EPS, 1 - EPS] before the logit.
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class PlattCalibration:
    """A fitted Platt (``logit_input=False``) or L-T Platt (``logit_input=True``) map."""

    a: float
    b: float
    logit_input: bool = True

    def __call__(self, scores) -> np.ndarray:
        """Calibrated probabilities of raw scores in [0, 1]."""
        x = _logit(scores) if self.logit_input else np.asarray(scores, dtype=float)
        return 1.0 / (1.0 + np.exp(self.a * x + self.b))

    def to_dict(self) -> dict:
        return {"method": "lt-platt" if self.logit_input else "platt", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PlattCalibration:
        return cls(a=float(data["a"]), b=float(data["b"]), logit_input=bool(data["logit_input"]))


def fit_platt(scores, labels, *, logit_input: bool = True) -> PlattCalibration:
    """Fit ``A`` and ``B`` by maximum likelihood on a calibration split.

    Parameters
    ----------
    scores : array_like
        Raw classifier outputs in [0, 1].
    labels : array_like
        True classes, 0 or 1.
    logit_input : bool
        True for ASID-C's L-T Platt scaling, False for classic Platt scaling.
    """
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=float).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape or scores.size < 2:
        raise InvalidParameterError(
            f"need matching scores and labels (at least 2); got {scores.size} and {labels.size}"
        )
    if not np.isin(labels, (0, 1)).all() or labels.min() == labels.max():
        raise InvalidParameterError("labels must be 0/1 and contain both classes")
    x = _logit(scores) if logit_input else scores
    # C=inf: no penalty (maximum likelihood), the form scikit-learn >= 1.8 asks for
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000, tol=1e-10)
    model.fit(x[:, np.newaxis], labels)
    # scikit-learn: P = 1 / (1 + exp(-(w x + c)))  ->  A = -w, B = -c
    return PlattCalibration(
        a=-float(model.coef_[0, 0]), b=-float(model.intercept_[0]), logit_input=logit_input
    )
