"""Metrics of probabilistic binary classifiers (star vs galaxy, shred vs galaxy).

The positive class is label 1 with predicted probability ``p`` (for the star/galaxy classifier,
1 = star and ``p = p_star``). ROC-AUC, average precision and the Brier score come from
scikit-learn; the expected calibration error and reliability curve use equal-width probability
bins: ``ECE = sum_b (n_b / N) |mean(y)_b - mean(p)_b|``.
"""

from __future__ import annotations

import itertools

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = [
    "binned_classification_metrics",
    "classification_metrics",
    "expected_calibration_error",
    "precision_at_recall",
    "reliability_curve",
]


def _validate(y_true, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    prob = np.asarray(p, dtype=float).ravel()
    if y.shape != prob.shape:
        raise InvalidParameterError(
            f"labels and probabilities differ in length: {y.size} and {prob.size}"
        )
    if y.size and not np.isin(y, (0, 1)).all():
        raise InvalidParameterError("labels must be 0 or 1 (or booleans)")
    if y.size and not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
        raise InvalidParameterError("probabilities must be finite and within [0, 1]")
    return y.astype(int), prob


def precision_at_recall(y_true, score, recall: float = 0.8) -> float:
    """Precision at the highest score threshold whose recall reaches ``recall``.

    Burke et al.'s operating point for star/galaxy typing (precision at 80 % recall);
    ``score`` may be any ranking (higher = more likely positive). NaN without positives.
    """
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true, dtype=bool).ravel()
    score = np.asarray(score, dtype=float).ravel()
    if y_true.shape != score.shape:
        raise InvalidParameterError(
            f"y_true and score differ in length: {y_true.size} vs {score.size}"
        )
    if not 0 < recall <= 1:
        raise InvalidParameterError(f"recall must be in (0, 1]; got {recall}")
    if not y_true.any():
        return float("nan")
    precision, recalls, _ = precision_recall_curve(y_true, score)
    # recalls fall along the curve: the last point still reaching ``recall`` is the strictest
    reached = np.flatnonzero(recalls >= recall)
    return float(precision[reached[-1]])


def reliability_curve(y_true, p, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability-diagram data in ``n_bins`` equal-width bins of predicted probability.

    Returns ``bin_lo, bin_hi, mean_predicted, fraction_positive, count`` (NaN for empty bins).
    """
    y, prob = _validate(y_true, p)
    if n_bins < 1:
        raise InvalidParameterError(f"n_bins must be >= 1; got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=prob, minlength=n_bins) / count
        fraction_positive = np.bincount(index, weights=y, minlength=n_bins) / count
    return {
        "bin_lo": edges[:-1],
        "bin_hi": edges[1:],
        "mean_predicted": mean_predicted,
        "fraction_positive": fraction_positive,
        "count": count,
    }


def expected_calibration_error(y_true, p, *, n_bins: int = 10) -> float:
    """Count-weighted mean gap between predicted probability and observed frequency."""
    curve = reliability_curve(y_true, p, n_bins=n_bins)
    total = curve["count"].sum()
    if total == 0:
        return float("nan")
    filled = curve["count"] > 0
    gaps = np.abs(curve["fraction_positive"][filled] - curve["mean_predicted"][filled])
    return float(np.sum(curve["count"][filled] * gaps) / total)


def classification_metrics(y_true, p, *, n_bins: int = 10) -> dict[str, float]:
    """ROC-AUC, AUPRC (each class as positive), Brier score and ECE.

    Returns
    -------
    dict
        ``n, n_positive, roc_auc, auprc_positive, auprc_negative, brier, ece``. Metrics that
        need both classes are NaN when only one is present.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y, prob = _validate(y_true, p)
    n_pos = int(y.sum())
    both = 0 < n_pos < y.size
    return {
        "n": int(y.size),
        "n_positive": n_pos,
        "roc_auc": float(roc_auc_score(y, prob)) if both else float("nan"),
        "auprc_positive": float(average_precision_score(y, prob)) if both else float("nan"),
        "auprc_negative": float(average_precision_score(1 - y, 1 - prob)) if both else np.nan,
        "brier": float(brier_score_loss(y, prob)) if y.size else float("nan"),
        "ece": expected_calibration_error(y, prob, n_bins=n_bins),
    }


def binned_classification_metrics(y_true, p, values, *, bins, name: str = "snr"):
    """:func:`classification_metrics` per bin of ``values`` (e.g. S/N), as a Table."""
    from astropy.table import Table

    y, prob = _validate(y_true, p)
    values = np.asarray(values, dtype=float).ravel()
    if values.shape != y.shape:
        raise InvalidParameterError(f"values needs {y.size} entries; got {values.size}")
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InvalidParameterError(f"bins must be increasing edges; got {bins}")
    rows = []
    for lo, hi in itertools.pairwise(edges):
        last = hi == edges[-1]
        selected = (values >= lo) & ((values <= hi) if last else (values < hi))
        rows.append(
            {
                f"{name}_lo": lo,
                f"{name}_hi": hi,
                **classification_metrics(y[selected], prob[selected]),
            }
        )
    return Table(rows=rows)
